/* SPDX-License-Identifier: MIT */
/*
 * The guest buffers a VM_PKT_DATA_USING_GPA_DIRECT packet names, turned
 * into host iovecs for the VSP (vsp_packet_gpa).
 *
 * After the descriptor: reserved (u32), rangecount (u32), then rangecount
 * ranges back to back, each { byte_count u32, byte_offset u32, pfn u64[] }
 * whose PFN count is not stated: it is the number of 4 KiB pages that
 * byte_offset + byte_count touch.  storvsc sends one range of many pages
 * (its request's scatter list); netvsc's page-buffer form sends one range
 * per page.  Everything is parsed from the packet's private copy (the
 * guest cannot change it under us); the pages it names are guest RAM the
 * guest may change at any time, which is the VSP's concern.
 *
 * Bytes between the last range and the end of the header are ignored
 * (offset8 rounds the header to 8 bytes; every range already is).
 *
 * The pointers stay valid while the partition lives: guest RAM regions are
 * only ever added (xp_add_region) and unmapped by xp_destroy, after every
 * channel's close finished.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "xpartition/internal.h"

#define RANGE_HDR 8u  /* byte_count + byte_offset */
#define RANGES_OFF 24u /* descriptor + reserved + rangecount */

struct gpa_range {
    uint32_t count, offset, npfn;
    size_t pfn_off; /* in the packet */
};

static uint32_t get_u32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof(v));
    return v;
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof(v));
    return v;
}

/* Walk the range list once: structure only.  0 with *total (bytes of all
 * ranges), or -EPROTO with *why. */
static int check_ranges(const uint8_t *buf, size_t hdr_len, uint32_t *nranges, uint64_t *total,
                        char *why, size_t why_len)
{
    if (hdr_len < RANGES_OFF) {
        snprintf(why, why_len, "header of %zu bytes has no range count", hdr_len);
        return -EPROTO;
    }
    uint32_t n = get_u32(buf + 20);
    /* A range takes at least its 8-byte header and one PFN. */
    if (n == 0 || n > (hdr_len - RANGES_OFF) / (RANGE_HDR + 8)) {
        snprintf(why, why_len, "range count %u does not fit a header of %zu bytes", n, hdr_len);
        return -EPROTO;
    }
    size_t off = RANGES_OFF;
    uint64_t sum = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (hdr_len - off < RANGE_HDR) {
            snprintf(why, why_len, "range %u of %u starts past the header (%zu bytes)", i, n,
                     hdr_len);
            return -EPROTO;
        }
        uint32_t count = get_u32(buf + off), offset = get_u32(buf + off + 4);
        if (count == 0) {
            snprintf(why, why_len, "range %u of %u is empty", i, n);
            return -EPROTO;
        }
        if (offset >= HV_PAGE_SIZE) {
            snprintf(why, why_len, "range %u of %u starts at offset %u, past its first page", i,
                     n, offset);
            return -EPROTO;
        }
        uint64_t npfn = ((uint64_t)offset + count + HV_PAGE_SIZE - 1) / HV_PAGE_SIZE;
        off += RANGE_HDR;
        if (npfn > (hdr_len - off) / 8) {
            snprintf(why, why_len,
                     "range %u of %u (%u bytes at offset %u) needs %llu PFNs, more than the "
                     "header holds", i, n, count, offset, (unsigned long long)npfn);
            return -EPROTO;
        }
        off += (size_t)npfn * 8;
        sum += count; /* n < 2^15 ranges of < 2^32 bytes: no overflow */
    }
    *nranges = n;
    *total = sum;
    return 0;
}

int xp_channel_gpa_direct(struct xp_channel *ch, const void *pkt, size_t hdr_len, size_t max_len,
                          struct iovec *iov, int max_iov, size_t *len)
{
    const uint8_t *buf = pkt;
    char why[160];
    uint32_t n;
    uint64_t total;
    uint64_t trans_id = get_u64(buf + offsetof(struct vmpacket_descriptor, trans_id));
    int ret = check_ranges(buf, hdr_len, &n, &total, why, sizeof(why));
    if (ret) {
        xp_channel_guest_warn(ch, "GPA-direct packet (trans_id %llu): %s",
                              (unsigned long long)trans_id, why);
        return ret;
    }
    if (total > max_len)
        return -E2BIG;

    struct xpartition *xp = ch->xp;
    size_t off = RANGES_OFF;
    int niov = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t left = get_u32(buf + off), page_off = get_u32(buf + off + 4);
        off += RANGE_HDR;
        for (uint32_t pg = 0; left; pg++, off += 8, page_off = 0) {
            uint64_t pfn = get_u64(buf + off);
            uint32_t chunk = HV_PAGE_SIZE - page_off < left ? HV_PAGE_SIZE - page_off : left;
            uint8_t *hva = pfn <= UINT64_MAX >> HV_PAGE_SHIFT
                               ? xp_gpa_to_hva(xp, (pfn << HV_PAGE_SHIFT) + page_off, chunk)
                               : NULL;
            if (!hva) {
                xp_channel_guest_warn(ch, "GPA-direct packet (trans_id %llu): range %u page %u "
                                      "(PFN 0x%llx) is outside guest RAM",
                                      (unsigned long long)trans_id, i, pg,
                                      (unsigned long long)pfn);
                return -EFAULT;
            }
            left -= chunk;
            if (niov && (uint8_t *)iov[niov - 1].iov_base + iov[niov - 1].iov_len == hva) {
                iov[niov - 1].iov_len += chunk;
                continue;
            }
            if (niov == max_iov)
                return -E2BIG;
            iov[niov++] = (struct iovec){.iov_base = hva, .iov_len = chunk};
        }
        /* check_ranges counted the PFNs the same way: off is at the next range */
    }
    if (len)
        *len = (size_t)total;
    return niov;
}
