/* SPDX-License-Identifier: MIT */
/*
 * Fuzz the GPA-direct range-list parser (src/xpartition/gpa_direct.c, what
 * vsp_packet_gpa runs on every type 9 packet a guest sends).
 *
 * The partition's RAM is two memfd regions with a hole between them
 * (pages [0, 64) at GPA 0 and [64, 128) at GPA 1 MiB), so a list may
 * straddle the hole or leave RAM anywhere.
 *
 * Input: u32 max_len, u8 max_iov (0..32), then the packet's header after
 * its 16-byte descriptor (reserved, rangecount, ranges), truncated to a
 * multiple of 8 bytes as offset8 makes it.
 *
 * Checked on success: at most max_iov iovecs, none empty, each inside guest
 * RAM's host mappings, their lengths adding up to *len <= max_len; on
 * failure, only the documented errors.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/log.h"
#include "fuzz_input.h"
#include "xpartition/internal.h"
#include "xpartition/tests/fake_host.h"
#include "xpartition/xpartition.h"

#define REGION_PAGES 64u
#define REGION_SIZE (REGION_PAGES * 4096u)
#define HIGH_GPA (1u << 20)
#define MAX_HDR 4096u

static struct fake_host host;
static struct xpartition *xp;
static struct xp_channel *ch;
static const uint8_t *hva[2];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    log_set_level(getenv("FUZZ_LOG") ? LOG_DEBUG : LOG_ERR); /* guest errors by the thousand */
    int memfd = memfd_create("fuzz-gpa", MFD_ALLOW_SEALING);
    if (memfd < 0 || ftruncate(memfd, 2 * REGION_SIZE) < 0 ||
        fcntl(memfd, F_ADD_SEALS, F_SEAL_SHRINK) < 0)
        abort();
    fake_host_init(&host);
    xp = fake_host_partition(&host, 1, "fuzz", 1);
    if (!xp || xp_add_region(xp, 0, REGION_SIZE, dup(memfd), 0) != 0 ||
        xp_add_region(xp, HIGH_GPA, REGION_SIZE, dup(memfd), REGION_SIZE) != 0)
        abort();
    hva[0] = xp_gpa_to_hva(xp, 0, REGION_SIZE);
    hva[1] = xp_gpa_to_hva(xp, HIGH_GPA, REGION_SIZE);
    struct vmbus_channel_offer o = {0};
    ch = xp_offer_channel(xp, &o, NULL, NULL);
    if (!hva[0] || !hva[1] || !ch)
        abort();
    close(memfd);
    return 0;
}

/* Whether [b, b + len) is RAM: inside one region's host mapping, or
 * running from one into the other where the two mappings happen to be
 * adjacent in host memory (then vmbusd rightly merges across them). */
static bool in_ram(const uint8_t *b, size_t len)
{
    for (int i = 0; i < 2; i++) {
        if (b < hva[i] || b >= hva[i] + REGION_SIZE)
            continue;
        size_t room = (size_t)(hva[i] + REGION_SIZE - b);
        if (len <= room)
            return true;
        return hva[1 - i] == hva[i] + REGION_SIZE && len - room <= REGION_SIZE;
    }
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    size_t max_len = fuzz_u32(&in);
    int max_iov = fuzz_u8(&in) % 33;
    size_t n = in.left < MAX_HDR ? in.left : MAX_HDR;
    n &= ~(size_t)7;
    /* Exactly the header's size: AddressSanitizer sees any read past it. */
    uint8_t *pkt = malloc(16 + n);
    FUZZ_CHECK(pkt);
    struct vmpacket_descriptor d = {.type = VM_PKT_DATA_USING_GPA_DIRECT, .trans_id = 7};
    memcpy(pkt, &d, sizeof(d));
    fuzz_take(&in, pkt + 16, n);

    struct iovec iov[32];
    size_t len = 0;
    int ret = xp_channel_gpa_direct(ch, pkt, 16 + n, max_len, iov, max_iov, &len);
    free(pkt);
    if (ret < 0) {
        FUZZ_CHECK(ret == -EPROTO || ret == -EFAULT || ret == -E2BIG);
        return 0;
    }
    FUZZ_CHECK(ret <= max_iov);
    size_t sum = 0;
    for (int i = 0; i < ret; i++) {
        FUZZ_CHECK(iov[i].iov_len > 0);
        FUZZ_CHECK(in_ram(iov[i].iov_base, iov[i].iov_len));
        sum += iov[i].iov_len;
    }
    FUZZ_CHECK(sum == len && len <= max_len && len > 0);
    return 0;
}
