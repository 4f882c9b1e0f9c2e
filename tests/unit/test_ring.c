/* SPDX-License-Identifier: MIT */
/* Unit tests for src/xpartition/ring.c over a real double mapping. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ring_fixture.h"

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    if (!f || fx_open(f) != 0)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    fx_close(f);
    free(f);
    return 0;
}

static void fill_pattern(uint8_t *p, size_t n, uint8_t seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(seed + i * 7);
}

/* Build a host packet: inband descriptor + payload; returns bytes used. */
static size_t build_pkt(uint8_t *out, uint16_t type, uint64_t tid, const void *payload,
                        size_t plen)
{
    struct vmpacket_descriptor d = {.type = type,
                                    .offset8 = 2,
                                    .len8 = (uint16_t)((16 + plen + 7) / 8),
                                    .flags = 0,
                                    .trans_id = tid};
    memcpy(out, &d, sizeof(d));
    memcpy(out + 16, payload, plen);
    return 16 + plen;
}

static int host_write(struct ring_writer *wr, uint64_t tid, size_t plen, bool *sig)
{
    uint8_t pkt[20000], payload[20000];
    fill_pattern(payload, plen, (uint8_t)tid);
    size_t n = build_pkt(pkt, VM_PKT_DATA_INBAND, tid, payload, plen);
    struct iovec iov = {pkt, n};
    return ring_write(wr, &iov, 1, sig);
}

/* ---- reader: happy paths ------------------------------------------ */

/* Guest writes three packets; the host reads them back in order, then EMPTY. */
static void test_read_roundtrip(void **state)
{
    struct fx *f = *state;
    struct ring_reader rd;
    ring_reader_init(&rd, f->hdr, f->data, f->size);
    assert_int_equal(f->size, FX_DATA_PAGES * 4096);

    uint8_t p[3][100];
    size_t plen[3] = {0, 13, 100};
    for (int i = 0; i < 3; i++) {
        fill_pattern(p[i], plen[i], (uint8_t)i);
        g_put_pkt(f, VM_PKT_DATA_INBAND, 1000 + i, p[i], (uint32_t)plen[i]);
    }
    assert_int_equal(ring_reader_avail(&rd), 16 + 8 + 32 + 8 + 120 + 8);

    for (int i = 0; i < 3; i++) {
        uint8_t buf[256];
        struct ring_pkt pkt;
        assert_int_equal(ring_read_next(&rd, buf, sizeof(buf), &pkt), RING_OK);
        assert_int_equal(pkt.desc.type, VM_PKT_DATA_INBAND);
        assert_int_equal(pkt.desc.trans_id, 1000 + i);
        assert_int_equal(pkt.payload_off, 16);
        assert_int_equal(pkt.total_len, (16 + plen[i] + 7) & ~7u);
        assert_int_equal(pkt.desc.len8 * 8, pkt.total_len);
        if (plen[i])
            assert_memory_equal(buf + 16, p[i], plen[i]);
    }
    uint8_t buf[64];
    struct ring_pkt pkt;
    assert_int_equal(ring_read_next(&rd, buf, sizeof(buf), &pkt), RING_EMPTY);
    /* Private index only: the shared one moves at commit. */
    assert_int_equal(f->hdr->read_index, 0);
    assert_false(ring_reader_commit(&rd));
    assert_int_equal(g_hdr(f)->read_index, g_hdr(f)->write_index);
    assert_int_equal(ring_reader_avail(&rd), 0);
}

/* A packet that wraps the end of the data area is read with one copy
 * through the double mapping. */
static void test_read_wrap(void **state)
{
    struct fx *f = *state;
    g_hdr(f)->write_index = g_hdr(f)->read_index = f->size - 32;
    struct ring_reader rd;
    ring_reader_init(&rd, f->hdr, f->data, f->size);

    uint8_t p[5000];
    fill_pattern(p, sizeof(p), 0x5a); /* spans 2 data pages after the wrap */
    g_put_pkt(f, VM_PKT_COMP, 77, p, sizeof(p));

    static uint8_t buf[8192];
    struct ring_pkt pkt;
    assert_int_equal(ring_read_next(&rd, buf, sizeof(buf), &pkt), RING_OK);
    assert_int_equal(pkt.desc.type, VM_PKT_COMP);
    assert_int_equal(pkt.desc.trans_id, 77);
    assert_int_equal(pkt.total_len, 16 + 5000);
    assert_memory_equal(buf + 16, p, sizeof(p));
    assert_int_equal(rd.read, (f->size - 32 + 5016 + 8) % f->size);
    assert_int_equal(ring_read_next(&rd, buf, sizeof(buf), &pkt), RING_EMPTY);
}

/* A packet whose trailer ends exactly at the end of the area: read index wraps to 0. */
static void test_read_exact_end(void **state)
{
    struct fx *f = *state;
    g_hdr(f)->write_index = g_hdr(f)->read_index = f->size - 48;
    struct ring_reader rd;
    ring_reader_init(&rd, f->hdr, f->data, f->size);
    uint8_t p[24] = {1, 2, 3};
    g_put_pkt(f, VM_PKT_DATA_INBAND, 1, p, sizeof(p));
    uint8_t buf[64];
    struct ring_pkt pkt;
    assert_int_equal(ring_read_next(&rd, buf, sizeof(buf), &pkt), RING_OK);
    assert_int_equal(rd.read, 0);
    assert_int_equal(pkt.total_len, 40);
}

/* offset8 == len8 is a packet with an empty payload: legal. */
static void test_read_offset_at_end(void **state)
{
    struct fx *f = *state;
    struct ring_reader rd;
    ring_reader_init(&rd, f->hdr, f->data, f->size);
    g_put_desc(f, VM_PKT_DATA_INBAND, 4, 4, 5);
    g_hdr(f)->write_index = 40;
    uint8_t buf[64];
    struct ring_pkt pkt;
    assert_int_equal(ring_read_next(&rd, buf, sizeof(buf), &pkt), RING_OK);
    assert_int_equal(pkt.payload_off, 32);
    assert_int_equal(pkt.total_len, 32);
}

/* ---- reader: hostile guest ---------------------------------------- */

static void expect_read(struct fx *f, int want)
{
    struct ring_reader rd;
    ring_reader_init(&rd, f->hdr, f->data, f->size);
    uint8_t buf[256];
    struct ring_pkt pkt;
    uint32_t before = rd.read;
    assert_int_equal(ring_read_next(&rd, buf, sizeof(buf), &pkt), want);
    if (want != RING_OK)
        assert_int_equal(rd.read, before);
}

static void test_bad_write_index(void **state)
{
    struct fx *f = *state;
    const uint32_t bad[] = {f->size, f->size + 8, 12, 4, f->size - 4, 0xfffffff8u, 0xffffffffu};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        g_hdr(f)->write_index = bad[i];
        expect_read(f, RING_ERR_INDEX);
        struct ring_reader rd;
        ring_reader_init(&rd, f->hdr, f->data, f->size);
        assert_int_equal(ring_reader_avail(&rd), 0);
        assert_true(ring_reader_rearm(&rd)); /* so the caller sees the error */
    }
}

static void test_bad_read_index(void **state)
{
    struct fx *f = *state;
    g_put_pkt(f, VM_PKT_DATA_INBAND, 1, "abcd", 4);
    const uint32_t bad[] = {f->size, 0x80000000u, 20, 0xfffffff8u};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        g_hdr(f)->read_index = bad[i];
        expect_read(f, RING_ERR_INDEX);
    }
    /* Corrupting the shared read_index after init does not matter to the
     * reader: it keeps its own copy. */
    g_hdr(f)->read_index = 0;
    struct ring_reader rd;
    ring_reader_init(&rd, f->hdr, f->data, f->size);
    g_hdr(f)->read_index = f->size + 8;
    uint8_t buf[64];
    struct ring_pkt pkt;
    assert_int_equal(ring_read_next(&rd, buf, sizeof(buf), &pkt), RING_OK);
    assert_memory_equal(buf + 16, "abcd", 4);
}

static void test_sliver(void **state)
{
    struct fx *f = *state;
    g_put_desc(f, VM_PKT_DATA_INBAND, 2, 2, 0);
    g_hdr(f)->write_index = 8; /* less than one descriptor + trailer */
    expect_read(f, RING_ERR_OVERRUN);
    g_hdr(f)->write_index = 16; /* descriptor but no trailer */
    expect_read(f, RING_ERR_OVERRUN);
    g_hdr(f)->write_index = 24; /* minimal packet */
    expect_read(f, RING_OK);
}

static void test_bad_len8(void **state)
{
    struct fx *f = *state;
    for (uint16_t len8 = 0; len8 < 2; len8++) {
        g_put_desc(f, VM_PKT_DATA_INBAND, 2, len8, 0);
        g_hdr(f)->write_index = 64;
        expect_read(f, RING_ERR_DESC);
        g_hdr(f)->write_index = 0;
    }
}

static void test_bad_offset8(void **state)
{
    struct fx *f = *state;
    const uint16_t bad_off[] = {0, 1, 5, 0xffff};
    for (size_t i = 0; i < sizeof(bad_off) / sizeof(bad_off[0]); i++) {
        g_put_desc(f, VM_PKT_DATA_INBAND, bad_off[i], 4, 0);
        g_hdr(f)->write_index = 40;
        expect_read(f, RING_ERR_DESC);
        g_hdr(f)->write_index = 0;
    }
}

/* len8 claims more than the guest published (the trailer must fit too). */
static void test_len8_overrun(void **state)
{
    struct fx *f = *state;
    g_put_desc(f, VM_PKT_DATA_INBAND, 2, 4, 0); /* 32 bytes + 8 trailer */
    g_hdr(f)->write_index = 32;
    expect_read(f, RING_ERR_OVERRUN);
    g_hdr(f)->write_index = 0;
    g_put_desc(f, VM_PKT_DATA_INBAND, 2, 0xffff, 0);
    g_hdr(f)->write_index = f->size - 8;
    expect_read(f, RING_ERR_OVERRUN);
    g_hdr(f)->write_index = 0;
    g_put_desc(f, VM_PKT_DATA_INBAND, 2, 4, 0);
    g_hdr(f)->write_index = 40;
    expect_read(f, RING_OK);
}

/* Packet larger than the caller's buffer: TOOBIG, size reported, no
 * progress; a retry with a big enough buffer succeeds. */
static void test_too_big(void **state)
{
    struct fx *f = *state;
    uint8_t p[100];
    fill_pattern(p, sizeof(p), 3);
    g_put_pkt(f, VM_PKT_DATA_INBAND, 9, p, sizeof(p));
    struct ring_reader rd;
    ring_reader_init(&rd, f->hdr, f->data, f->size);
    uint8_t *small = malloc(119), *big = malloc(120);
    struct ring_pkt pkt;
    assert_int_equal(ring_read_next(&rd, small, 119, &pkt), RING_ERR_TOOBIG);
    assert_int_equal(pkt.total_len, 120);
    assert_int_equal(rd.read, 0);
    assert_int_equal(ring_read_next(&rd, big, 120, &pkt), RING_OK);
    assert_memory_equal(big + 16, p, sizeof(p));
    free(small);
    free(big);
}

/* After the copy, the guest rewrites descriptor and payload in the ring:
 * what the host got must not change, and the next read is unaffected. */
static void test_change_after_copy(void **state)
{
    struct fx *f = *state;
    uint8_t p[64];
    fill_pattern(p, sizeof(p), 1);
    g_put_pkt(f, VM_PKT_DATA_INBAND, 42, p, sizeof(p));
    g_put_pkt(f, VM_PKT_COMP, 43, p, 8);
    struct ring_reader rd;
    ring_reader_init(&rd, f->hdr, f->data, f->size);
    uint8_t buf[128] = {0}, saved[128];
    struct ring_pkt pkt, saved_pkt;
    assert_int_equal(ring_read_next(&rd, buf, sizeof(buf), &pkt), RING_OK);
    memcpy(saved, buf, sizeof(buf));
    saved_pkt = pkt;

    g_put_desc(f, 0xdead, 0xffff, 0xffff, 0); /* write_index moved: rewrite at 0 */
    struct vmpacket_descriptor evil = {.type = 0xdead, .offset8 = 0xffff, .len8 = 0xffff};
    g_write(f, 0, &evil, sizeof(evil));
    memset(f->data + 16, 0xee, 64);

    assert_memory_equal(buf, saved, sizeof(buf));
    assert_memory_equal(&pkt, &saved_pkt, sizeof(pkt));
    assert_int_equal(ring_read_next(&rd, buf, sizeof(buf), &pkt), RING_OK);
    assert_int_equal(pkt.desc.trans_id, 43);
    assert_int_equal(pkt.desc.type, VM_PKT_COMP);
}

/* A guest thread flips len8/offset8 of the packet under the reader while it
 * reads it again and again: whatever the host returns must be consistent
 * with what it copied. */
struct flipper {
    struct fx *f;
    volatile int stop;
};

static void *flip_thread(void *arg)
{
    struct flipper *fl = arg;
    uint16_t *len8 = (uint16_t *)(void *)g_byte(fl->f, 4);
    uint16_t *off8 = (uint16_t *)(void *)g_byte(fl->f, 2);
    const uint16_t lens[] = {4, 6, 1, 0xffff, 2}, offs[] = {2, 7, 0, 3, 6};
    unsigned i = 0;
    while (!fl->stop) {
        __atomic_store_n(len8, lens[i % 5], __ATOMIC_RELAXED);
        __atomic_store_n(off8, offs[(i / 5) % 5], __ATOMIC_RELAXED);
        i++;
    }
    return NULL;
}

static void test_concurrent_descriptor_change(void **state)
{
    struct fx *f = *state;
    uint8_t p[32];
    fill_pattern(p, sizeof(p), 9);
    g_put_pkt(f, VM_PKT_DATA_INBAND, 1, p, sizeof(p)); /* len8 6, avail 56 */
    struct flipper fl = {.f = f};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, flip_thread, &fl), 0);
    int ok = 0;
    for (int iter = 0; iter < 200000; iter++) {
        struct ring_reader rd;
        ring_reader_init(&rd, f->hdr, f->data, f->size);
        uint8_t buf[48];
        struct ring_pkt pkt;
        int rc = ring_read_next(&rd, buf, sizeof(buf), &pkt);
        if (rc == RING_OK) {
            ok++;
            assert_true(pkt.total_len == 32 || pkt.total_len == 48 || pkt.total_len == 16);
            assert_int_equal(pkt.desc.len8 * 8u, pkt.total_len);
            struct vmpacket_descriptor in_buf;
            memcpy(&in_buf, buf, sizeof(in_buf));
            assert_int_equal(in_buf.len8, pkt.desc.len8);
            assert_int_equal(in_buf.offset8, pkt.desc.offset8);
            assert_true(pkt.payload_off >= 16 && pkt.payload_off <= pkt.total_len);
            assert_int_equal(rd.read, pkt.total_len + 8);
        } else {
            assert_true(rc == RING_ERR_DESC || rc == RING_ERR_OVERRUN ||
                        rc == RING_ERR_TOOBIG);
            assert_int_equal(rd.read, 0);
        }
    }
    fl.stop = 1;
    pthread_join(t, NULL);
    /* How many reads raced into a valid descriptor depends on scheduling
     * (under valgrind the threads barely interleave); once the guest stops
     * scribbling, a valid descriptor must read cleanly again. */
    print_message("%d of 200000 racing reads saw a consistent packet\n", ok);
    struct vmpacket_descriptor good = {.type = VM_PKT_DATA_INBAND, .offset8 = 2, .len8 = 6,
                                       .trans_id = 1};
    g_write(f, 0, &good, sizeof(good));
    struct ring_reader rd;
    ring_reader_init(&rd, f->hdr, f->data, f->size);
    uint8_t buf[48];
    struct ring_pkt pkt;
    assert_int_equal(ring_read_next(&rd, buf, sizeof(buf), &pkt), RING_OK);
    assert_int_equal(pkt.total_len, 48);
}

/* ---- reader: signalling ------------------------------------------- */

/* Guest blocked with pending_send_sz: only the commit that moves free space
 * from <= pending to > pending asks for a signal. */
static void test_commit_pending(void **state)
{
    struct fx *f = *state;
    struct vmbus_ring_header *g = g_hdr(f);
    static uint8_t p[3000];
    /* 5 packets of 16 + 2976 + 8 = 3000 bytes: 15000 used, 1384 free. */
    for (int i = 0; i < 5; i++)
        g_put_pkt(f, VM_PKT_DATA_INBAND, i, p, 2976);
    g->feature_bits = VMBUS_RING_FEAT_PENDING_SEND_SZ;
    g->pending_send_sz = 4384;

    struct ring_reader rd;
    ring_reader_init(&rd, f->hdr, f->data, f->size);
    static uint8_t buf[4096];
    struct ring_pkt pkt;
    assert_false(ring_reader_commit(&rd)); /* nothing read */
    assert_int_equal(ring_read_next(&rd, buf, sizeof(buf), &pkt), RING_OK);
    assert_false(ring_reader_commit(&rd)); /* 1384 -> 4384: not > pending */
    assert_int_equal(g->read_index, 3000);
    assert_int_equal(ring_read_next(&rd, buf, sizeof(buf), &pkt), RING_OK);
    assert_true(ring_reader_commit(&rd)); /* 4384 -> 7384: crossed */
    assert_int_equal(ring_read_next(&rd, buf, sizeof(buf), &pkt), RING_OK);
    assert_false(ring_reader_commit(&rd)); /* already above: no new signal */

    /* Two packets in one batch crossing the threshold: one signal. */
    g->pending_send_sz = 12000;
    assert_int_equal(ring_read_next(&rd, buf, sizeof(buf), &pkt), RING_OK);
    assert_int_equal(ring_read_next(&rd, buf, sizeof(buf), &pkt), RING_OK);
    assert_true(ring_reader_commit(&rd)); /* 10384 -> 16384 */
}

static void test_commit_no_pending(void **state)
{
    struct fx *f = *state;
    struct vmbus_ring_header *g = g_hdr(f);
    static uint8_t p[3000];
    for (int i = 0; i < 5; i++)
        g_put_pkt(f, VM_PKT_DATA_INBAND, i, p, 2976);
    static uint8_t buf[4096];
    struct ring_pkt pkt;
    struct ring_reader rd;

    /* pending_send_sz set but feature bit clear: guest polls, no signal. */
    g->feature_bits = 0;
    g->pending_send_sz = 2000;
    ring_reader_init(&rd, f->hdr, f->data, f->size);
    assert_int_equal(ring_read_next(&rd, buf, sizeof(buf), &pkt), RING_OK);
    assert_false(ring_reader_commit(&rd));

    /* Feature bit set, pending_send_sz 0: nobody is blocked. */
    g->feature_bits = 1;
    g->pending_send_sz = 0;
    assert_int_equal(ring_read_next(&rd, buf, sizeof(buf), &pkt), RING_OK);
    assert_false(ring_reader_commit(&rd));

    /* Corrupt write_index at commit time: no signal, no crash. */
    g->pending_send_sz = 100000;
    assert_int_equal(ring_read_next(&rd, buf, sizeof(buf), &pkt), RING_OK);
    g->write_index = f->size + 8;
    assert_false(ring_reader_commit(&rd));
}

/* When to commit in the middle of a batch: a quarter of the ring read since
 * the last commit, or once for a guest blocked on pending_send_sz that the
 * private read index can satisfy. */
static void test_commit_due(void **state)
{
    struct fx *f = *state;
    struct vmbus_ring_header *g = g_hdr(f);
    static uint8_t p[3000];
    /* 5 packets of 3000 bytes: 15000 of 16384 used, 1384 free. */
    for (int i = 0; i < 5; i++)
        g_put_pkt(f, VM_PKT_DATA_INBAND, i, p, 2976);
    static uint8_t buf[4096];
    struct ring_pkt pkt;
    struct ring_reader rd;

    g->feature_bits = VMBUS_RING_FEAT_PENDING_SEND_SZ;
    ring_reader_init(&rd, f->hdr, f->data, f->size);
    assert_false(ring_reader_commit_due(&rd)); /* nothing read */
    assert_int_equal(ring_read_next(&rd, buf, sizeof(buf), &pkt), RING_OK);
    assert_false(ring_reader_commit_due(&rd)); /* 3000 < 16384 / 4, nobody waits */
    assert_int_equal(ring_read_next(&rd, buf, sizeof(buf), &pkt), RING_OK);
    assert_true(ring_reader_commit_due(&rd)); /* 6000: a quarter */
    ring_reader_commit(&rd);
    assert_false(ring_reader_commit_due(&rd));
    assert_int_equal(g->read_index, 6000);

    /* From the start again: the guest waits for 2000 free bytes and 1384
     * are published. */
    g->read_index = 0;
    ring_reader_init(&rd, f->hdr, f->data, f->size);
    g->pending_send_sz = 2000;
    g->feature_bits = 0; /* without the feature bit the guest polls */
    assert_int_equal(ring_read_next(&rd, buf, sizeof(buf), &pkt), RING_OK);
    assert_false(ring_reader_commit_due(&rd));
    g->feature_bits = VMBUS_RING_FEAT_PENDING_SEND_SZ;
    assert_true(ring_reader_commit_due(&rd)); /* private: 4384 free */
    assert_true(ring_reader_commit(&rd));     /* crossed: signal */
    assert_int_equal(ring_read_next(&rd, buf, sizeof(buf), &pkt), RING_OK);
    assert_false(ring_reader_commit_due(&rd)); /* published 4384 already satisfies it */
}

static void test_mask_and_rearm(void **state)
{
    struct fx *f = *state;
    struct ring_reader rd;
    ring_reader_init(&rd, f->hdr, f->data, f->size);
    ring_reader_set_mask(&rd, true);
    assert_int_equal(g_hdr(f)->interrupt_mask, 1);
    assert_false(ring_reader_rearm(&rd));
    assert_int_equal(g_hdr(f)->interrupt_mask, 0);

    ring_reader_set_mask(&rd, true);
    g_put_pkt(f, VM_PKT_DATA_INBAND, 1, "x", 1); /* arrives while "draining" */
    assert_true(ring_reader_rearm(&rd));
    assert_int_equal(g_hdr(f)->interrupt_mask, 0);
    uint8_t buf[64];
    struct ring_pkt pkt;
    assert_int_equal(ring_read_next(&rd, buf, sizeof(buf), &pkt), RING_OK);
    assert_false(ring_reader_rearm(&rd));
}

/* ---- writer -------------------------------------------------------- */

/* Host writes packets made of several iovecs; the guest reads them back
 * through the scrambled pages: padding zeroed, trailer = start index. */
static void test_write_roundtrip(void **state)
{
    struct fx *f = *state;
    struct ring_writer wr;
    ring_writer_init(&wr, f->hdr, f->data, f->size);
    assert_int_equal(g_hdr(f)->feature_bits & 1, 1);
    assert_int_equal(ring_writer_free(&wr), f->size);

    uint8_t p[29];
    fill_pattern(p, sizeof(p), 0x11);
    struct vmpacket_descriptor d = {.type = VM_PKT_DATA_INBAND, .offset8 = 2, .len8 = 6,
                                    .trans_id = 0x1122334455667788ull};
    struct iovec iov[3] = {{&d, 10}, {(uint8_t *)&d + 10, 6}, {p, sizeof(p)}};
    bool sig;
    assert_int_equal(ring_write(&wr, iov, 3, &sig), RING_OK);
    assert_int_equal(g_hdr(f)->write_index, 56);
    assert_int_equal(ring_writer_free(&wr), f->size - 56);

    uint8_t buf[64];
    bool trailer_ok = false;
    assert_int_equal(g_get_pkt(f, buf, sizeof(buf), &trailer_ok), 48);
    assert_true(trailer_ok);
    assert_memory_equal(buf, &d, 16);
    assert_memory_equal(buf + 16, p, sizeof(p));
    for (int i = 16 + 29; i < 48; i++)
        assert_int_equal(buf[i], 0);

    /* Second packet: trailer carries 56 << 32. */
    assert_int_equal(host_write(&wr, 2, 8, &sig), RING_OK);
    assert_int_equal(g_get_pkt(f, buf, sizeof(buf), &trailer_ok), 24);
    assert_true(trailer_ok);
}

/* Host packet wraps the end of the data area. */
static void test_write_wrap(void **state)
{
    struct fx *f = *state;
    g_hdr(f)->write_index = g_hdr(f)->read_index = f->size - 40;
    struct ring_writer wr;
    ring_writer_init(&wr, f->hdr, f->data, f->size);
    bool sig;
    assert_int_equal(host_write(&wr, 7, 6000, &sig), RING_OK);
    assert_true(sig);
    assert_int_equal(g_hdr(f)->write_index, (f->size - 40 + 6016 + 8) % f->size);

    static uint8_t buf[8192], want[6000];
    bool trailer_ok = false;
    assert_int_equal(g_get_pkt(f, buf, sizeof(buf), &trailer_ok), 6016);
    assert_true(trailer_ok);
    fill_pattern(want, sizeof(want), 7);
    assert_memory_equal(buf + 16, want, sizeof(want));
}

/* Full ring: the writer never fills exactly, returns -EAGAIN with
 * pending_send_sz = bytes needed, and clears it after the next success. */
static void test_write_full(void **state)
{
    struct fx *f = *state;
    struct ring_writer wr;
    ring_writer_init(&wr, f->hdr, f->data, f->size);
    bool sig;
    /* 8192 bytes in the ring (16 + 8168 + 8): 8192 free. */
    assert_int_equal(host_write(&wr, 1, 8168, &sig), RING_OK);
    assert_int_equal(ring_writer_free(&wr), 8192);
    /* Exactly 8192 needed: would fill the ring exactly -> full. */
    assert_int_equal(host_write(&wr, 2, 8168, &sig), -EAGAIN);
    assert_false(sig);
    assert_int_equal(g_hdr(f)->pending_send_sz, 8192);
    assert_int_equal(g_hdr(f)->write_index, 8192); /* nothing written */
    /* 8184 needed: fits, leaving 8 bytes; pending_send_sz cleared. */
    assert_int_equal(host_write(&wr, 3, 8160, &sig), RING_OK);
    assert_int_equal(g_hdr(f)->pending_send_sz, 0);
    assert_int_equal(ring_writer_free(&wr), 8);
    assert_int_equal(host_write(&wr, 4, 0, &sig), -EAGAIN);
    assert_int_equal(g_hdr(f)->pending_send_sz, 24);

    /* Guest consumes the first packet: room again. */
    static uint8_t buf[9000];
    assert_int_equal(g_get_pkt(f, buf, sizeof(buf), NULL), 8184);
    assert_int_equal(host_write(&wr, 5, 0, &sig), RING_OK);
    assert_false(sig); /* ring was not empty */
    assert_int_equal(g_hdr(f)->pending_send_sz, 0);
}

/* Room kept for reservations: a write leaves `keep` bytes of the free space
 * alone and asks the guest (pending_send_sz) for need + keep when blocked;
 * ring_writer_room answers the same question without writing. */
static void test_write_keep(void **state)
{
    struct fx *f = *state;
    struct ring_writer wr;
    ring_writer_init(&wr, f->hdr, f->data, f->size);
    bool sig;
    uint8_t pkt[64], payload[40] = {0};
    size_t n = build_pkt(pkt, VM_PKT_DATA_INBAND, 1, payload, sizeof(payload)); /* 56 -> 64 */
    struct iovec iov = {pkt, n};
    uint32_t need = ring_packet_size((uint32_t)n);
    assert_int_equal(need, 64);
    /* 16384 free: keeping 16320 leaves exactly 64, not more: full */
    assert_int_equal(ring_writer_room(&wr, need, 16384 - need), -EAGAIN);
    assert_int_equal(g_hdr(f)->pending_send_sz, 16384);
    assert_int_equal(ring_write_keep(&wr, &iov, 1, 16384 - need, &sig), -EAGAIN);
    assert_int_equal(g_hdr(f)->write_index, 0);
    /* one byte less kept: it fits, and the write clears the request */
    assert_int_equal(ring_writer_room(&wr, need, 16384 - need - 8), RING_OK);
    assert_int_equal(ring_write_keep(&wr, &iov, 1, 16384 - need - 8, &sig), RING_OK);
    assert_int_equal(g_hdr(f)->pending_send_sz, 0);
    assert_int_equal(ring_writer_free(&wr), 16384 - need);
    /* the kept room is writable by a write that does not keep it */
    assert_int_equal(ring_write_keep(&wr, &iov, 1, 0, &sig), RING_OK);
    assert_int_equal(ring_writer_free(&wr), 16384 - 2 * need);
    /* lengths that can never fit are refused whatever is free */
    assert_int_equal(ring_writer_check_len(&wr, 16384), -EMSGSIZE);
    assert_int_equal(ring_writer_check_len(&wr, 16384 - 8 - 8), 0);
    ring_writer_set_max_pkt(&wr, 256);
    assert_int_equal(ring_writer_check_len(&wr, 257), -EMSGSIZE);
}

static void test_write_too_big(void **state)
{
    struct fx *f = *state;
    struct ring_writer wr;
    ring_writer_init(&wr, f->hdr, f->data, f->size);
    bool sig;
    /* need = size: can never fit, even in an empty ring. */
    assert_int_equal(host_write(&wr, 1, f->size - 24, &sig), -EMSGSIZE);
    assert_int_equal(g_hdr(f)->pending_send_sz, 0);
    assert_int_equal(host_write(&wr, 1, f->size - 32, &sig), RING_OK);

    struct ring_writer wr2;
    g_consume_all(f);
    ring_writer_init(&wr2, f->hdr, f->data, f->size);
    ring_writer_set_max_pkt(&wr2, 80);
    assert_int_equal(host_write(&wr2, 1, 64, &sig), RING_OK);
    assert_int_equal(host_write(&wr2, 1, 65, &sig), -EMSGSIZE);
}

static void test_write_bad_desc(void **state)
{
    struct fx *f = *state;
    struct ring_writer wr;
    ring_writer_init(&wr, f->hdr, f->data, f->size);
    uint8_t pkt[64] = {0};
    struct vmpacket_descriptor d = {.type = 6, .offset8 = 2, .len8 = 5};
    memcpy(pkt, &d, sizeof(d));
    struct iovec iov = {pkt, 33}; /* padded 40 = len8 5: fine */
    bool sig;
    assert_int_equal(ring_write(&wr, &iov, 1, &sig), RING_OK);
    iov.iov_len = 32; /* len8 says 40 */
    assert_int_equal(ring_write(&wr, &iov, 1, &sig), -EINVAL);
    d.len8 = 4;
    d.offset8 = 5;
    memcpy(pkt, &d, sizeof(d));
    assert_int_equal(ring_write(&wr, &iov, 1, &sig), -EINVAL);
    d.offset8 = 1;
    memcpy(pkt, &d, sizeof(d));
    assert_int_equal(ring_write(&wr, &iov, 1, &sig), -EINVAL);
    iov.iov_len = 12; /* shorter than a descriptor */
    assert_int_equal(ring_write(&wr, &iov, 1, &sig), -EINVAL);
    assert_int_equal(ring_write(&wr, NULL, 0, &sig), -EINVAL);
    assert_int_equal(g_hdr(f)->write_index, 48);
}

static void test_write_bad_indices(void **state)
{
    struct fx *f = *state;
    struct ring_writer wr;
    bool sig;
    const uint32_t bad[] = {f->size, 4, f->size + 8, 0xfffffff8u};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        g_hdr(f)->write_index = 0;
        g_hdr(f)->read_index = bad[i];
        ring_writer_init(&wr, f->hdr, f->data, f->size);
        assert_int_equal(host_write(&wr, 1, 8, &sig), RING_ERR_INDEX);
        assert_int_equal(ring_writer_free(&wr), 0);
        assert_int_equal(g_hdr(f)->write_index, 0);

        g_hdr(f)->read_index = 0;
        g_hdr(f)->write_index = bad[i];
        ring_writer_init(&wr, f->hdr, f->data, f->size);
        assert_int_equal(host_write(&wr, 1, 8, &sig), RING_ERR_INDEX);
        assert_int_equal(ring_writer_free(&wr), 0);
    }
    /* Guest scribbling on write_index after init does not move our writes. */
    g_hdr(f)->read_index = g_hdr(f)->write_index = 0;
    ring_writer_init(&wr, f->hdr, f->data, f->size);
    g_hdr(f)->write_index = 4000;
    assert_int_equal(host_write(&wr, 1, 8, &sig), RING_OK);
    assert_int_equal(g_hdr(f)->write_index, 32);
}

/* Signal iff interrupt_mask == 0 and the ring was empty before the write. */
static void test_write_signal(void **state)
{
    struct fx *f = *state;
    struct ring_writer wr;
    ring_writer_init(&wr, f->hdr, f->data, f->size);
    bool sig = false;
    assert_int_equal(host_write(&wr, 1, 8, &sig), RING_OK);
    assert_true(sig);
    assert_int_equal(host_write(&wr, 2, 8, &sig), RING_OK);
    assert_false(sig); /* not empty before */
    g_consume_all(f);
    assert_int_equal(host_write(&wr, 3, 8, &sig), RING_OK);
    assert_true(sig);
    g_consume_all(f);
    g_hdr(f)->interrupt_mask = 1; /* guest is draining */
    assert_int_equal(host_write(&wr, 4, 8, &sig), RING_OK);
    assert_false(sig);
    g_hdr(f)->interrupt_mask = 0;
    assert_int_equal(host_write(&wr, 5, 8, NULL), RING_OK); /* NULL signal is fine */
}

/* Deferred writes: in the ring at once, visible to the guest only when
 * published, with one interrupt decided by the single-write rule. */
static void test_write_deferred(void **state)
{
    struct fx *f = *state;
    struct ring_writer wr;
    ring_writer_init(&wr, f->hdr, f->data, f->size);
    uint8_t pkt[64], payload[40] = {0}, buf[64];
    size_t n = build_pkt(pkt, VM_PKT_DATA_INBAND, 1, payload, sizeof(payload));
    struct iovec iov = {pkt, n};
    uint32_t need = ring_packet_size((uint32_t)n);

    for (int i = 0; i < 3; i++)
        assert_int_equal(ring_write_keep_deferred(&wr, &iov, 1, 0), RING_OK);
    assert_int_equal(g_hdr(f)->write_index, 0);      /* the guest sees nothing yet */
    assert_int_equal(g_get_pkt(f, buf, sizeof(buf), NULL), 0);
    assert_int_equal(ring_writer_free(&wr), 16384 - 3 * need); /* but the room is taken */
    assert_true(ring_writer_publish(&wr));           /* empty before, unmasked */
    assert_int_equal(g_hdr(f)->write_index, 3 * need);
    assert_false(ring_writer_publish(&wr));          /* nothing new */
    for (int i = 0; i < 3; i++) {
        bool ok = false;
        assert_int_equal(g_get_pkt(f, buf, sizeof(buf), &ok), need - 8);
        assert_true(ok);
    }

    /* the guest had not read everything published: no interrupt */
    assert_int_equal(ring_write_keep_deferred(&wr, &iov, 1, 0), RING_OK);
    assert_true(ring_writer_publish(&wr));
    assert_int_equal(ring_write_keep_deferred(&wr, &iov, 1, 0), RING_OK);
    assert_false(ring_writer_publish(&wr));
    g_consume_all(f);
    /* masked: none either */
    g_hdr(f)->interrupt_mask = 1;
    assert_int_equal(ring_write_keep_deferred(&wr, &iov, 1, 0), RING_OK);
    assert_false(ring_writer_publish(&wr));
    g_hdr(f)->interrupt_mask = 0;
    g_consume_all(f);

    /* an ordinary write publishes the deferred packets with its own; the
     * guest had read all before them: one interrupt */
    assert_int_equal(ring_write_keep_deferred(&wr, &iov, 1, 0), RING_OK);
    uint32_t before = g_hdr(f)->write_index;
    bool sig = false;
    assert_int_equal(ring_write_keep(&wr, &iov, 1, 0, &sig), RING_OK);
    assert_true(sig);
    assert_int_equal(g_hdr(f)->write_index, (before + 2 * need) % f->size);
    assert_false(ring_writer_publish(&wr));
    g_consume_all(f);

    /* reserved room (keep) is left alone by deferred writes too */
    uint32_t free_now = ring_writer_free(&wr);
    assert_int_equal(ring_write_keep_deferred(&wr, &iov, 1, free_now - need), -EAGAIN);
    assert_int_equal(g_hdr(f)->pending_send_sz, free_now);
    assert_int_equal(ring_write_keep_deferred(&wr, &iov, 1, free_now - need - 8), RING_OK);
    assert_int_equal(g_hdr(f)->pending_send_sz, 0);
    assert_true(ring_writer_publish(&wr));
}

static void test_strerror(void **state)
{
    (void)state;
    const int codes[] = {RING_OK, RING_EMPTY, RING_ERR_INDEX, RING_ERR_DESC, RING_ERR_OVERRUN,
                         RING_ERR_TOOBIG, -EAGAIN, -EMSGSIZE, -EINVAL, 12345};
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
        assert_non_null(ring_strerror(codes[i]));
    assert_string_not_equal(ring_strerror(RING_ERR_DESC), ring_strerror(RING_ERR_INDEX));
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_read_roundtrip),
        T(test_read_wrap),
        T(test_read_exact_end),
        T(test_read_offset_at_end),
        T(test_bad_write_index),
        T(test_bad_read_index),
        T(test_sliver),
        T(test_bad_len8),
        T(test_bad_offset8),
        T(test_len8_overrun),
        T(test_too_big),
        T(test_change_after_copy),
        T(test_concurrent_descriptor_change),
        T(test_commit_pending),
        T(test_commit_no_pending),
        T(test_commit_due),
        T(test_mask_and_rearm),
        T(test_write_roundtrip),
        T(test_write_wrap),
        T(test_write_full),
        T(test_write_keep),
        T(test_write_deferred),
        T(test_write_too_big),
        T(test_write_bad_desc),
        T(test_write_bad_indices),
        T(test_write_signal),
        cmocka_unit_test(test_strerror),
    };
    return cmocka_run_group_tests_name("ring", tests, NULL, NULL);
}
