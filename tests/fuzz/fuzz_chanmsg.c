/* SPDX-License-Identifier: MIT */
/*
 * Fuzz the message endpoint (channel-management messages) together with
 * everything a guest controls around it: guest memory contents (GPADL
 * pages, ring headers and packets), SynIC page addresses, EOMs, signals.
 *
 * The partition has 1 MiB of memfd-backed guest RAM at GPA 0 and a hole
 * above it, 2 vCPUs, and two offers from a fake VSP (the fake host ops of
 * src/xpartition/tests/fake_host.c) that opens at once and drains its
 * guest->host ring on every signal.
 *
 * Input: a sequence of operations, each starting with an op byte:
 *   0  post:      u8 vp, u8 conn selector, u8 len, len bytes of payload
 *   1  eom:       the guest takes the message in vp 0's slot
 *   2  poke:      u16 page, u16 offset, u8 len, len bytes into guest RAM
 *   3  signal:    u16 connection id
 *   4  synic:     u8 vp, u8 simp page, u8 siefp page
 *   5  rescind:   u8 b: b < 0x80: rescind channel b & 1; else the VSP offers
 *                 subchannel (b >> 1) & 63 of channel b & 1 (storvsc's
 *                 CREATE_SUB_CHANNELS: refused unless that channel is open)
 *   6  reset
 *   7  poke-ring: u16 page, then a write_index/read_index pair (u32, u32)
 */
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

#define RAM_PAGES 256
#define RAM_SIZE (RAM_PAGES * 4096u)
#define SIMP_PAGE 1
#define SIEFP_PAGE 2

static int memfd = -1;
static uint8_t *ram;

/* Invariants of what the partition asks of its host, and a fake VSP that
 * drains its guest->host ring on every signal and echoes one packet. */
static void fuzz_host_hook(struct fake_host *fh, const struct fake_call *c)
{
    struct xp_channel *ch = c->ch;
    switch (c->op) {
    case FAKE_SIGNAL_VP:
        FUZZ_CHECK(c->arg < 2);
        break;
    case FAKE_CHANNEL_OPEN:
        FUZZ_CHECK(c->arg == 120);
        FUZZ_CHECK(ch->in.r.size >= 4096 && ch->out.r.size >= 4096);
        /* a subchannel opens only while its primary is open */
        FUZZ_CHECK(!ch->primary || atomic_load(&ch->primary->state) == XP_CHAN_OPEN);
        break;
    case FAKE_CHANNEL_CLOSE:
        /* a primary's close comes after its subchannels' closes returned */
        FUZZ_CHECK(ch->subs_closing == 0 && !ch->close_deferred);
        break;
    case FAKE_CHANNEL_KICK: {
        /* What the VSP layer does (src/xpartition/chanio.c): drain, checking
         * every packet handed out, then echo one. */
        struct xp_packet pkt;
        for (int i = 0; i < 64 && xp_channel_recv(ch, &pkt) == 1; i++) {
            FUZZ_CHECK(pkt.total_len >= 16 && pkt.total_len <= ch->pktbuf_len);
            FUZZ_CHECK(pkt.payload_off >= 16 && pkt.payload_off <= pkt.total_len);
        }
        xp_channel_recv_done(ch);
        uint64_t body = 0x1122334455667788ull;
        struct iovec iov = {&body, sizeof(body)};
        xp_channel_writable(ch);
        xp_channel_send(ch, VM_PKT_DATA_INBAND, 0, 0, NULL, 0, &iov, 1);
        break;
    }
    default:
        break;
    }
}

static struct fake_host host;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    log_set_level(getenv("FUZZ_LOG") ? LOG_DEBUG : LOG_ERR); /* guest errors are expected by the thousand */
    /* xp_add_region takes only a memfd sealed against shrinking. */
    memfd = memfd_create("fuzz-ram", MFD_ALLOW_SEALING);
    if (memfd < 0 || ftruncate(memfd, RAM_SIZE) < 0 || fcntl(memfd, F_ADD_SEALS, F_SEAL_SHRINK) < 0)
        abort();
    ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
    if (ram == MAP_FAILED)
        abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    memset(ram, 0, RAM_SIZE);
    fake_host_init(&host);
    host.hook = fuzz_host_hook;
    struct xpartition *xp = fake_host_partition(&host, 1, "fuzz", 2);
    FUZZ_CHECK(xp);
    /* xp_destroy closes the fd it was given: hand it a duplicate. */
    FUZZ_CHECK(xp_add_region(xp, 0, RAM_SIZE, dup(memfd), 0) == 0);
    xp_set_sint_route(xp, 0);
    xp_set_sint_route(xp, 1);
    for (uint32_t vp = 0; vp < 2; vp++)
        xp_set_synic(xp, vp, 1, (SIMP_PAGE * 4096u) | 1, (SIEFP_PAGE * 4096u) | 1);
    struct xp_channel *chans[2];
    for (int i = 0; i < 2; i++) {
        struct vmbus_channel_offer o = {0};
        o.if_type.b[0] = (uint8_t)(0x10 + i);
        o.if_instance.b[0] = (uint8_t)i;
        chans[i] = xp_offer_channel(xp, &o, NULL, NULL);
        FUZZ_CHECK(chans[i]);
    }
    xp_offers_ready(xp);
    struct hv_message *slot = (struct hv_message *)(ram + SIMP_PAGE * 4096 + 2 * 256);

    for (int steps = 0; in.left && steps < 512; steps++) {
        switch (fuzz_u8(&in) & 7) {
        case 0: {
            struct hv_post_message_input m = {0};
            uint8_t vp = fuzz_u8(&in) & 1;
            uint8_t sel = fuzz_u8(&in);
            m.connection_id = sel < 200 ? 1 : sel < 250 ? 4 : sel;
            m.message_type = sel == 255 ? 7 : 1;
            uint8_t len = fuzz_u8(&in);
            m.payload_size = sel == 254 ? 241 : len > 240 ? 240 : len;
            fuzz_take(&in, m.payload, len > 240 ? 240 : len);
            uint32_t st = xp_post_message(xp, vp, &m, sizeof(m));
            FUZZ_CHECK(st == 0 || st == 5 || st == 18 || st == 19 || st == 3);
            break;
        }
        case 1:
            /* The slot is guest memory: op 2 may have scribbled on it, so
             * nothing about its contents is asserted here. */
            slot->header.message_type = 0;
            xp_eom(xp, 0);
            break;
        case 2: {
            uint16_t page = fuzz_u16(&in) % RAM_PAGES;
            uint16_t off = fuzz_u16(&in) % 4096;
            uint8_t len = fuzz_u8(&in);
            size_t n = len;
            if (off + n > 4096)
                n = 4096 - off;
            fuzz_take(&in, ram + page * 4096u + off, n);
            break;
        }
        case 3:
            xp_connection_signalled(xp, fuzz_u16(&in) + (fuzz_u8(&in) & 1 ? 0x10000u : 0));
            break;
        case 4: {
            uint8_t vp = fuzz_u8(&in) % 3; /* 2 is out of range on purpose */
            uint64_t simp = (uint64_t)fuzz_u8(&in) * 4096 * 3; /* may leave RAM */
            uint64_t siefp = (uint64_t)fuzz_u8(&in) * 4096;
            int ret = xp_set_synic(xp, vp, 1, simp | 1, siefp | 1);
            FUZZ_CHECK(vp < 2 ? ret == 0 : ret < 0);
            if (vp == 0) {
                uint8_t *p = xp_gpa_to_hva(xp, simp, 4096);
                slot = p ? (struct hv_message *)(p + 512) : slot;
            }
            break;
        }
        case 5: {
            uint8_t b = fuzz_u8(&in);
            if (b < 0x80)
                xp_rescind_channel(chans[b & 1]);
            else
                xp_offer_subchannel(chans[b & 1], (b >> 1) & 63, NULL, NULL);
            break;
        }
        case 6:
            xp_reset(xp);
            for (uint32_t vp = 0; vp < 2; vp++)
                xp_set_synic(xp, vp, 1, (SIMP_PAGE * 4096u) | 1, (SIEFP_PAGE * 4096u) | 1);
            slot = (struct hv_message *)(ram + SIMP_PAGE * 4096 + 2 * 256);
            break;
        case 7: {
            uint16_t page = fuzz_u16(&in) % RAM_PAGES;
            uint32_t *h = (uint32_t *)(ram + page * 4096u);
            h[0] = fuzz_u32(&in);
            h[1] = fuzz_u32(&in);
            break;
        }
        }
    }
    xp_close_all(xp);
    xp_destroy(xp);
    return 0;
}
