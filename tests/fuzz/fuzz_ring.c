/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for src/xpartition/ring.c (and ring_map.c).
 *
 * One ring is driven by both a ring_reader and a ring_writer (host writes,
 * host reads back), while the input also plays a hostile guest that sets
 * the initial control page and data and can poke any header field or data
 * byte between operations.
 *
 * Input layout (all little-endian, short input reads as zeros):
 *   u8  cfg       bit 0: real ring_map over a memfd with a scrambled page
 *                        order (else a malloc'd buffer with the data area
 *                        duplicated by hand, so ASan sees every stray byte)
 *                 bit 1: strict mode: no guest pokes; every result is
 *                        predicted by a model and every packet written
 *                        must come back byte for byte
 *                 bit 2: a u16 follows the header words: writer max_pkt
 *   u16 size      data area size selector
 *   u32 x 5       write_index, read_index, interrupt_mask,
 *                 pending_send_sz, feature_bits
 *   [u16 max_pkt selector, if cfg bit 2]
 *   u16 n + n bytes   initial data area contents
 *   then operations: u8 opcode + operands, until the input ends.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz_input.h"
#include "xpartition/ring.h"
#include "xpartition/ring_map.h"

#define PG 4096u
#define EMU_MAX_UNITS 1024u /* emulated sizes: 24 .. 8208 bytes */
#define MAP_MAX_DATA_PAGES 4u
#define MEMFD_PAGES 8u
#define QMAX 2048u /* > max packets in a ring (16384 / 24) */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct env {
    struct vmbus_ring_header *hdr;
    uint8_t *data;
    uint32_t size;
    bool emulated;
    uint8_t *alloc;
    struct ring_mapping m;
};

/* Packets written by the host and not yet read (strict mode model). */
struct model {
    uint8_t *q[QMAX];
    uint32_t qlen[QMAX]; /* len8 * 8 */
    unsigned head, count;
    uint32_t w, rc, rp;  /* write, committed read, private read */
    uint32_t blocked_need;
    bool woken;
};

static int memfd = -1;

static uint32_t dist(uint32_t size, uint32_t from, uint32_t to)
{
    return to >= from ? to - from : size - from + to;
}

static bool idx_ok(const struct env *e, uint32_t v)
{
    return v < e->size && (v & 7u) == 0;
}

/* Keep both copies of the emulated data area identical after bytes in
 * [start, start + len) of the doubled area were written. */
static void mirror(struct env *e, uint32_t start, uint32_t len)
{
    if (!e->emulated)
        return;
    for (uint64_t i = start; i < (uint64_t)start + len; i++) {
        if (i >= e->size)
            e->data[i - e->size] = e->data[i];
        else
            e->data[i + e->size] = e->data[i];
    }
}

static bool env_open(struct env *e, struct fuzz_in *in, uint8_t cfg)
{
    memset(e, 0, sizeof(*e));
    uint16_t sel = fuzz_u16(in);
    if (cfg & 1) {
        if (memfd < 0) {
            memfd = memfd_create("fuzz-ring", MFD_CLOEXEC);
            if (memfd < 0 || ftruncate(memfd, (off_t)MEMFD_PAGES * PG) < 0)
                abort();
        }
        unsigned ndata = 1 + sel % MAP_MAX_DATA_PAGES;
        /* Scrambled page order: a permutation of the memfd pages chosen by sel. */
        unsigned perm[MEMFD_PAGES];
        for (unsigned i = 0; i < MEMFD_PAGES; i++)
            perm[i] = i;
        unsigned s = sel >> 2;
        for (unsigned i = MEMFD_PAGES - 1; i > 0; i--) {
            unsigned j = s % (i + 1);
            s = s / (i + 1) + i * 7;
            unsigned t = perm[i];
            perm[i] = perm[j];
            perm[j] = t;
        }
        struct ring_page_src src[1 + MAP_MAX_DATA_PAGES];
        for (unsigned i = 0; i < 1 + ndata; i++) {
            src[i].fd = memfd;
            src[i].offset = (uint64_t)perm[i] * PG;
        }
        if (ring_map(&e->m, src, 1 + ndata) != 0)
            abort();
        e->hdr = ring_mapping_hdr(&e->m);
        e->data = ring_mapping_data(&e->m);
        e->size = e->m.data_size;
        memset(e->m.base, 0, PG + e->size);
    } else {
        e->emulated = true;
        e->size = 8u * (3u + sel % EMU_MAX_UNITS);
        e->alloc = calloc(1, PG + 2 * (size_t)e->size);
        if (!e->alloc)
            abort();
        e->hdr = (struct vmbus_ring_header *)(void *)e->alloc;
        e->data = e->alloc + PG;
    }
    return true;
}

static void env_close(struct env *e)
{
    if (e->emulated)
        free(e->alloc);
    else
        ring_unmap(&e->m);
}

static void model_push(struct model *md, const uint8_t *pkt, uint32_t len)
{
    FUZZ_CHECK(md->count < QMAX);
    unsigned slot = (md->head + md->count) % QMAX;
    md->q[slot] = malloc(len);
    if (!md->q[slot])
        abort();
    memcpy(md->q[slot], pkt, len);
    md->qlen[slot] = len;
    md->count++;
}

static void model_pop(struct model *md)
{
    free(md->q[md->head]);
    md->q[md->head] = NULL;
    md->head = (md->head + 1) % QMAX;
    md->count--;
}

static void model_free(struct model *md)
{
    while (md->count)
        model_pop(md);
}

/* ---- operations ----------------------------------------------------- */

static void op_read(struct env *e, struct ring_reader *rd, struct model *md, bool strict,
                    struct fuzz_in *in)
{
    size_t buflen = fuzz_u16(in) % (e->size + 64);
    uint8_t *buf = malloc(buflen ? buflen : 1); /* exact size: ASan guards the end */
    if (!buf)
        abort();
    uint32_t old_r = rd->read;
    uint32_t w0 = e->hdr->write_index;
    struct ring_pkt pkt;
    memset(&pkt, 0xa5, sizeof(pkt));
    int rc = ring_read_next(rd, buf, buflen, &pkt);

    if (rc == RING_OK) {
        FUZZ_CHECK(idx_ok(e, w0) && idx_ok(e, old_r));
        FUZZ_CHECK(pkt.total_len >= 16 && pkt.total_len % 8 == 0 && pkt.total_len <= buflen);
        FUZZ_CHECK(pkt.desc.len8 * 8u == pkt.total_len);
        FUZZ_CHECK(pkt.payload_off >= 16 && pkt.payload_off <= pkt.total_len);
        FUZZ_CHECK(pkt.desc.offset8 * 8u == pkt.payload_off);
        FUZZ_CHECK(idx_ok(e, rd->read));
        FUZZ_CHECK(dist(e->size, old_r, rd->read) == pkt.total_len + 8);
        FUZZ_CHECK(pkt.total_len + 8 <= dist(e->size, old_r, w0));
        /* Single-threaded here, so the copy equals the ring bytes. */
        FUZZ_CHECK(memcmp(buf, e->data + old_r, pkt.total_len) == 0);
        FUZZ_CHECK(memcmp(&pkt.desc, buf, sizeof(pkt.desc)) == 0);
    } else {
        FUZZ_CHECK(rd->read == old_r);
        FUZZ_CHECK(rc == RING_EMPTY || rc == RING_ERR_INDEX || rc == RING_ERR_DESC ||
                   rc == RING_ERR_OVERRUN || rc == RING_ERR_TOOBIG);
        if (rc == RING_ERR_TOOBIG)
            FUZZ_CHECK(pkt.total_len > buflen && pkt.total_len >= 16);
        if (rc == RING_EMPTY)
            FUZZ_CHECK(w0 == old_r);
    }

    if (strict) {
        FUZZ_CHECK(old_r == md->rp);
        if (md->count == 0) {
            FUZZ_CHECK(rc == RING_EMPTY);
        } else {
            uint32_t len = md->qlen[md->head];
            if (len > buflen) {
                FUZZ_CHECK(rc == RING_ERR_TOOBIG && pkt.total_len == len);
            } else {
                FUZZ_CHECK(rc == RING_OK && pkt.total_len == len);
                FUZZ_CHECK(memcmp(buf, md->q[md->head], len) == 0);
                md->rp = rd->read;
                model_pop(md);
            }
        }
    }
    free(buf);
}

static void op_commit(struct env *e, struct ring_reader *rd, struct model *md, bool strict)
{
    uint32_t pending = e->hdr->pending_send_sz;
    bool sig = ring_reader_commit(rd);
    FUZZ_CHECK(e->hdr->read_index == rd->read);
    FUZZ_CHECK(rd->start_read == rd->read);
    uint32_t w = e->hdr->write_index;
    if (sig) {
        FUZZ_CHECK(pending != 0 && (e->hdr->feature_bits & 1));
        FUZZ_CHECK(idx_ok(e, w));
        FUZZ_CHECK(e->size - dist(e->size, rd->read, w) > pending);
    }
    if (!strict)
        return;
    md->rc = md->rp;
    uint32_t free_now = e->size - dist(e->size, md->rc, md->w);
    if (md->blocked_need) {
        if (md->woken) {
            FUZZ_CHECK(!sig); /* already told; no second signal for the same wait */
        } else if (free_now > md->blocked_need) {
            FUZZ_CHECK(sig); /* a blocked host writer must be woken */
            md->woken = true;
        } else {
            FUZZ_CHECK(!sig);
        }
    } else {
        FUZZ_CHECK(!sig);
    }
}

static uint32_t max_pkt; /* what the writer was told, 0 = none */

static void op_write(struct env *e, struct ring_writer *wr, struct model *md, bool strict,
                     struct fuzz_in *in)
{
    uint8_t mode = fuzz_u8(in);
    uint32_t len = 16 + fuzz_u16(in) % (e->size + 64);
    uint8_t *pkt = calloc(1, len);
    if (!pkt)
        abort();
    uint32_t padded = (len + 7) & ~7u;
    struct vmpacket_descriptor d;
    if (mode & 1) { /* raw descriptor from the input: usually inconsistent */
        fuzz_take(in, &d, sizeof(d));
    } else {
        d.type = fuzz_u16(in);
        d.len8 = (uint16_t)(padded / 8);
        d.offset8 = (uint16_t)(2 + fuzz_u8(in) % (d.len8 - 1));
        d.flags = fuzz_u16(in);
        d.trans_id = fuzz_u64(in);
    }
    memcpy(pkt, &d, sizeof(d));
    size_t got = fuzz_take(in, pkt + 16, len - 16);
    for (size_t i = 16 + got; i < len; i++)
        pkt[i] = (uint8_t)(i * 13 + mode);

    /* Up to three iovecs, split where the input says (an empty piece too). */
    struct iovec iov[3];
    int niov = 1 + (mode >> 1) % 3;
    uint32_t cut1 = niov > 1 ? fuzz_u16(in) % (len + 1) : len;
    uint32_t cut2 = niov > 2 ? cut1 + fuzz_u16(in) % (len - cut1 + 1) : len;
    iov[0] = (struct iovec){pkt, cut1};
    iov[1] = (struct iovec){pkt + cut1, cut2 - cut1};
    iov[2] = (struct iovec){pkt + cut2, len - cut2};
    if (niov == 2)
        iov[1].iov_len = len - cut1;

    /* Predict the result from the state before the call. */
    uint32_t need = padded + 8;
    bool desc_ok = d.len8 * 8u == padded && d.offset8 >= 2 && d.offset8 <= d.len8;
    uint32_t old_w = wr->write;
    uint32_t r0 = e->hdr->read_index;
    uint32_t mask0 = e->hdr->interrupt_mask;
    int want;
    if (need >= e->size || padded > RING_MAX_PKT_LEN || (max_pkt && padded > max_pkt))
        want = -EMSGSIZE;
    else if (!desc_ok)
        want = -EINVAL;
    else if (!idx_ok(e, old_w) || !idx_ok(e, r0))
        want = RING_ERR_INDEX;
    else if (e->size - dist(e->size, r0, old_w) <= need)
        want = -EAGAIN;
    else
        want = RING_OK;

    bool sig = true;
    int rc = ring_write(wr, iov, niov, &sig);
    FUZZ_CHECK(rc == want);
    if (rc == RING_OK) {
        mirror(e, old_w, need);
        uint32_t new_w = (old_w + need) % e->size;
        FUZZ_CHECK(wr->write == new_w && e->hdr->write_index == new_w);
        FUZZ_CHECK(memcmp(e->data + old_w, pkt, len) == 0);
        for (uint32_t i = len; i < padded; i++)
            FUZZ_CHECK(e->data[old_w + i] == 0);
        uint64_t trailer;
        memcpy(&trailer, e->data + old_w + padded, 8);
        FUZZ_CHECK(trailer == (uint64_t)old_w << 32);
        FUZZ_CHECK(sig == (mask0 == 0 && r0 == old_w));
        FUZZ_CHECK(e->hdr->pending_send_sz == 0 || !strict);
    } else {
        FUZZ_CHECK(!sig);
        FUZZ_CHECK(wr->write == old_w);
        if (rc == -EAGAIN)
            FUZZ_CHECK(e->hdr->pending_send_sz == need);
    }

    if (strict) {
        FUZZ_CHECK(old_w == md->w && r0 == md->rc);
        if (rc == RING_OK) {
            uint8_t *copy = calloc(1, padded);
            if (!copy)
                abort();
            memcpy(copy, pkt, len);
            model_push(md, copy, padded);
            free(copy);
            md->w = wr->write;
            md->blocked_need = 0;
            md->woken = false;
        } else if (rc == -EAGAIN) {
            md->blocked_need = need;
            md->woken = false;
        }
    }
    free(pkt);
}

static void op_poke_hdr(struct env *e, struct fuzz_in *in)
{
    static const size_t offs[] = {
        offsetof(struct vmbus_ring_header, write_index),
        offsetof(struct vmbus_ring_header, read_index),
        offsetof(struct vmbus_ring_header, interrupt_mask),
        offsetof(struct vmbus_ring_header, pending_send_sz),
        offsetof(struct vmbus_ring_header, feature_bits),
    };
    uint8_t which = fuzz_u8(in) % 5;
    uint32_t v = fuzz_u32(in);
    if (fuzz_u8(in) & 1) /* mostly plausible values */
        v = (v % (e->size + 16)) & ~7u;
    memcpy((uint8_t *)e->hdr + offs[which], &v, 4);
}

static void op_poke_data(struct env *e, struct fuzz_in *in)
{
    uint32_t off = fuzz_u16(in) % e->size;
    uint8_t n = fuzz_u8(in) % 17;
    for (uint8_t i = 0; i < n; i++) {
        uint32_t j = (off + i) % e->size;
        e->data[j] = fuzz_u8(in);
        mirror(e, j, 1);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    uint8_t cfg = fuzz_u8(&in);
    bool strict = cfg & 2;
    struct env e;
    env_open(&e, &in, cfg);

    uint32_t h[5];
    for (int i = 0; i < 5; i++)
        h[i] = fuzz_u32(&in);
    if (strict) { /* consistent start: empty ring at a valid index */
        h[0] = (h[0] % e.size) & ~7u;
        h[1] = h[0];
        h[3] = 0;
    }
    e.hdr->write_index = h[0];
    e.hdr->read_index = h[1];
    e.hdr->interrupt_mask = h[2];
    e.hdr->pending_send_sz = h[3];
    e.hdr->feature_bits = h[4];
    max_pkt = (cfg & 4) ? 16u + fuzz_u16(&in) % (e.size + 64) : 0;
    uint16_t n = fuzz_u16(&in);
    fuzz_take(&in, e.data, n < e.size ? n : e.size);
    mirror(&e, 0, e.size);

    struct ring_reader rd;
    struct ring_writer wr;
    ring_reader_init(&rd, e.hdr, e.data, e.size);
    ring_writer_init(&wr, e.hdr, e.data, e.size);
    FUZZ_CHECK(e.hdr->feature_bits & 1);
    if (max_pkt)
        ring_writer_set_max_pkt(&wr, max_pkt);

    struct model md;
    memset(&md, 0, sizeof(md));
    md.w = md.rc = md.rp = h[0];

    for (unsigned steps = 0; in.left && steps < 4096; steps++) {
        switch (fuzz_u8(&in) % 10) {
        case 0:
        case 1:
            op_read(&e, &rd, &md, strict, &in);
            break;
        case 2:
            op_commit(&e, &rd, &md, strict);
            break;
        case 3: {
            bool more = ring_reader_rearm(&rd);
            FUZZ_CHECK(e.hdr->interrupt_mask == 0);
            if (strict)
                FUZZ_CHECK(more == (md.rp != md.w));
            break;
        }
        case 4: {
            bool m = fuzz_u8(&in) & 1;
            ring_reader_set_mask(&rd, m);
            FUZZ_CHECK(e.hdr->interrupt_mask == (uint32_t)m);
            break;
        }
        case 5:
        case 6:
            op_write(&e, &wr, &md, strict, &in);
            break;
        case 7: {
            uint32_t avail = ring_reader_avail(&rd);
            uint32_t fr = ring_writer_free(&wr);
            FUZZ_CHECK(avail < e.size && fr <= e.size);
            if (strict) {
                FUZZ_CHECK(avail == dist(e.size, md.rp, md.w));
                FUZZ_CHECK(fr == e.size - dist(e.size, md.rc, md.w));
            }
            break;
        }
        case 8:
            if (!strict)
                op_poke_hdr(&e, &in);
            break;
        case 9:
            if (!strict)
                op_poke_data(&e, &in);
            break;
        }
    }

    model_free(&md);
    env_close(&e);
    return 0;
}
