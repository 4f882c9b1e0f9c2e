/* SPDX-License-Identifier: MIT */
/*
 * netvsp's RNDIS side: a session of control messages (each with a length
 * prefix, so a device state carries over: INITIALIZE, then QUERY/SET...)
 * through rndis_control, and transmit buffers through rndis_tx_walk.
 * Each frame's offload requests go through offload_tx_prepare, and
 * received frames with a virtio-net header through offload_rx_complete,
 * or, GSO ones, cut into pieces, through offload_rx_gso_split (at a
 * length the input picks) and offload_rx_gso.
 * Invariants: a reply fits RNDIS_REPLY_MAX, carries its own length and a
 * completion type and, for requests with one, the request id; every frame
 * handed to the backend lies inside the buffer and inside its message;
 * malformed input is refused with a reason; accepted RSS parameters name
 * only queues the NIC has.  A prefix rndis_tx_prefix_ok accepts holds all
 * the walk and the offload fix-ups read: the bytes after it do not change
 * what the backend is told (netvsp leaves them in guest memory).
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "fuzz_input.h"
#include "vsp/netvsp/offload.h"
#include "vsp/netvsp/protocol.h"
#include "vsp/netvsp/rndis.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct walk {
    const uint8_t *buf;
    size_t len;
    int frames;
};

static int on_frame(void *arg, uint8_t *frame, size_t len, const struct tx_offload *o)
{
    struct walk *w = arg;
    FUZZ_CHECK(frame >= w->buf && len >= 14 && len <= w->len &&
               (size_t)(frame - w->buf) <= w->len - len);
    w->frames++;
    /* the offload fix-ups stay inside the frame and describe it */
    struct vnet_hdr vh;
    const char *why = NULL;
    if (offload_tx_prepare(frame, len, o, &vh, &why) == 0) {
        FUZZ_CHECK(!vh.flags || (size_t)vh.csum_start + vh.csum_offset + 2 <= len);
        FUZZ_CHECK(vh.gso_type == 0 || (vh.hdr_len <= len && vh.gso_size > 0));
    } else {
        FUZZ_CHECK(why != NULL);
    }
    return 0;
}

/* What the walk makes of a transmit's first frame. */
struct first {
    int frames;
    size_t off, len;
    int r;
    struct vnet_hdr vh;
    uint8_t hdr[2048]; /* the frame's first bytes after the fix-ups */
};

static int on_first(void *arg, uint8_t *frame, size_t len, const struct tx_offload *o)
{
    struct first *f = arg;
    if (f->frames++)
        return 0;
    f->len = len;
    const char *why = NULL;
    f->r = offload_tx_prepare(frame, len, o, &f->vh, &why);
    memcpy(f->hdr, frame, len < sizeof(f->hdr) ? len : sizeof(f->hdr));
    f->off = (size_t)(uintptr_t)frame; /* walk_first makes it an offset */
    return 0;
}

/* Walk a copy of msg[0..len) whose bytes from `have` on are flipped when
 * flip: the first frame's view. */
static int walk_first(const uint8_t *msg, size_t len, size_t have, bool flip, struct first *f)
{
    static uint8_t copy[70000];
    memcpy(copy, msg, len);
    if (flip)
        for (size_t i = have; i < len; i++)
            copy[i] = (uint8_t)~copy[i];
    memset(f, 0, sizeof(*f));
    const char *why = NULL;
    int n = rndis_tx_walk(copy, len, on_first, f, &why);
    f->off -= (size_t)(uintptr_t)copy;
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    struct rndis_state st = {0};
    struct rndis_dev_info dev = {.mac = {0, 0x15, 0x5d, 1, 2, 3}, .mtu = 1500, .link_up = true,
                                 .link_speed = 100000000, .queues = 4};
    /* inputs of odd length: a NIC with offloads and receive coalescing */
    dev.offload = dev.rsc = size & 1;
    static uint8_t msg[70000];
    while (in.left) {
        uint8_t op = fuzz_u8(&in);
        uint16_t len = fuzz_u16(&in);
        size_t got = fuzz_take(&in, msg, len);
        if ((op & 3) == 2) {
            /* a received frame and the TAP's virtio-net header for it */
            struct vnet_hdr vh;
            memcpy(&vh, msg, got < sizeof(vh) ? got : sizeof(vh));
            if (got < sizeof(vh))
                continue;
            uint32_t ppi = 0;
            if (vh.gso_type != VNET_HDR_GSO_NONE) {
                /* a coalesced frame read into sub-allocations of an even
                 * size the input picks */
                size_t room = 2 * (32 + (size_t)(op >> 2) * 64), flen = got - sizeof(vh);
                struct iovec piece[64];
                unsigned n = 0;
                for (size_t at = 0; at < flen && n < 64; at += room, n++)
                    piece[n] = (struct iovec){msg + sizeof(vh) + at,
                                              flen - at < room ? flen - at : room};
                if (n == 64)
                    continue;
                /* cut where the input says (op's high bits) into a tail
                 * buffer of the same room: both parts stay inside what was
                 * read, the first no longer than the cut */
                static uint8_t tail[4096];
                size_t max = 60 + (size_t)(op >> 2) * 256, before = 0, after = 0;
                unsigned n0 = n;
                for (unsigned i = 0; i < n; i++)
                    before += piece[i].iov_len;
                long t = offload_rx_gso_split(piece, &n, &vh, max, tail,
                                              room < sizeof(tail) ? room : sizeof(tail));
                for (unsigned i = 0; i < n; i++)
                    after += piece[i].iov_len;
                FUZZ_CHECK(t >= -1 && (t <= 0 ? n == n0 && after == before
                                              : n <= n0 && after <= max &&
                                                    (size_t)t <= room && after < before));
                int r = offload_rx_gso(piece, n, &vh, &ppi);
                FUZZ_CHECK(r == -1 || (r == 0 && (ppi & 8) && flen >= 54));
                if (t > 0) {
                    struct iovec tp = {tail, (size_t)t};
                    r = offload_rx_gso(&tp, 1, &vh, &ppi);
                    FUZZ_CHECK(r == 0 && (ppi & 8));
                }
                continue;
            }
            int r = offload_rx_complete(msg + sizeof(vh), got - sizeof(vh), &vh, &ppi);
            FUZZ_CHECK(r >= -1 && r <= 1 && (r != 1 || ppi == 8 || ppi == 16));
            continue;
        }
        if (op & 1) {
            struct walk w = {msg, got, 0};
            const char *why = NULL;
            size_t have = got ? fuzz_u16(&in) % (got + 1) : 0;
            bool prefix = rndis_tx_prefix_ok(msg, have, got, 2048);
            struct first a, b;
            int na = prefix ? walk_first(msg, got, have, false, &a) : 0;
            int n = rndis_tx_walk(msg, got, on_frame, &w, &why);
            FUZZ_CHECK(n < 0 ? why != NULL : n == w.frames);
            if (prefix) {
                int nb = walk_first(msg, got, have, true, &b);
                FUZZ_CHECK(na == nb && a.frames == b.frames && a.frames <= 1);
                if (a.frames) {
                    size_t h = a.len < sizeof(a.hdr) ? a.len : sizeof(a.hdr);
                    FUZZ_CHECK(a.off == b.off && a.len == b.len && a.r == b.r &&
                               memcmp(&a.vh, &b.vh, sizeof(a.vh)) == 0 &&
                               a.off + h <= have && memcmp(a.hdr, b.hdr, h) == 0);
                }
            }
            continue;
        }
        uint8_t out[RNDIS_REPLY_MAX + 16];
        memset(out, 0xa5, sizeof(out));
        const char *why = NULL;
        int n = rndis_control(&st, &dev, msg, got, out, RNDIS_REPLY_MAX, &why);
        if (n < 0) {
            FUZZ_CHECK(n == -EPROTO && why != NULL);
            continue;
        }
        FUZZ_CHECK((size_t)n <= RNDIS_REPLY_MAX);
        FUZZ_CHECK(st.rss_table_len <= NDIS_RSS_TABLE_MAX);
        for (uint32_t i = 0; i < st.rss_table_len; i++)
            FUZZ_CHECK(st.rss_table[i] < dev.queues);
        FUZZ_CHECK(out[RNDIS_REPLY_MAX] == 0xa5); /* nothing written past the cap */
        if (n == 0)
            continue;
        struct rndis_hdr rh, qh;
        memcpy(&rh, out, 8);
        memcpy(&qh, msg, 8);
        FUZZ_CHECK(rh.len == (uint32_t)n);
        FUZZ_CHECK(rh.type == (qh.type | RNDIS_MSG_COMPLETION));
        if (qh.type != RNDIS_MSG_RESET)
            FUZZ_CHECK(memcmp(out + 8, msg + 8, 4) == 0); /* request id echoed */
        if (rh.type == (RNDIS_MSG_QUERY | RNDIS_MSG_COMPLETION)) {
            struct rndis_query_complete qc;
            memcpy(&qc, out + 8, sizeof(qc));
            FUZZ_CHECK(qc.info_len == 0 ||
                       (qc.info_offset >= 16 && 8 + qc.info_offset + qc.info_len == rh.len));
        }
    }
    return 0;
}
