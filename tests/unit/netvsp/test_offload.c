/* SPDX-License-Identifier: MIT */
/*
 * Receive offloads: a GSO frame read into pieces (receive sub-allocations)
 * becomes one valid TCP segment whatever the piece sizes and the frame's
 * length (odd lengths, a last piece of one byte); frames that are not what
 * their virtio-net header says are refused; a frame too long for the
 * guest's allocator is split in two valid segments; a partial checksum of
 * any length is completed.  Checked against a plain byte-pair sum here.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "vsp/netvsp/offload.h"

static uint16_t be16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }

/* Reference: one's-complement sum of big-endian words, folded. */
static uint16_t ref_sum(const uint8_t *p, size_t n, uint32_t s)
{
    for (size_t i = 0; i < n; i++)
        s += i & 1 ? p[i] : (uint32_t)p[i] << 8;
    while (s >> 16)
        s = (s & 0xffff) + (s >> 16);
    return (uint16_t)s;
}

static uint8_t frame[70000];

/* A TCP frame of `payload` bytes as the host's stack hands a GSO frame
 * over (lengths whatever they were, the TCP checksum field not final). */
static size_t gso_frame(bool v6, size_t payload, struct vnet_hdr *vh)
{
    size_t l4 = v6 ? 54 : 34, len = l4 + 20 + payload;
    memset(frame, 0, len);
    frame[12] = v6 ? 0x86 : 0x08;
    frame[13] = v6 ? 0xdd : 0x00;
    if (v6) {
        frame[14] = 0x60;
        frame[20] = 6;
        frame[22] = 0x20;
        frame[53] = 2;
    } else {
        frame[14] = 0x45;
        frame[23] = 6;
        frame[26] = 192;
        frame[29] = 1;
        frame[30] = 192;
        frame[33] = 2;
    }
    frame[l4 + 12] = 0x50;
    frame[l4 + 16] = 0x12; /* a partial sum, or the first segment's */
    for (size_t i = 0; i < payload; i++)
        frame[l4 + 20 + i] = (uint8_t)(i * 31 + 5);
    memset(vh, 0, sizeof(*vh));
    vh->flags = VNET_HDR_F_NEEDS_CSUM;
    vh->gso_type = v6 ? VNET_HDR_GSO_TCPV6 : VNET_HDR_GSO_TCPV4;
    vh->gso_size = 1448;
    vh->csum_start = (uint16_t)l4;
    vh->csum_offset = 16;
    return len;
}

/* frame[0..len) cut into pieces of `room` bytes (the last shorter). */
static unsigned cut(size_t len, size_t room, struct iovec *piece)
{
    unsigned n = 0;
    for (size_t at = 0; at < len; at += room, n++)
        piece[n] = (struct iovec){frame + at, len - at < room ? len - at : room};
    return n;
}

/* The TCP checksum and lengths of the segment in buf[0..len). */
static void check_segment_in(const uint8_t *buf, bool v6, size_t len)
{
    size_t l4 = v6 ? 54 : 34;
    uint32_t ps;
    if (v6) {
        assert_int_equal(be16(buf + 18), len - 54);
        ps = ref_sum(buf + 22, 32, 0);
    } else {
        assert_int_equal(be16(buf + 16), len - 14);
        assert_int_equal(ref_sum(buf + 14, 20, 0), 0xffff);
        ps = ref_sum(buf + 26, 8, 0);
    }
    assert_int_equal(ref_sum(buf + l4, len - l4, ps + 6 + (uint32_t)(len - l4)), 0xffff);
}

static void check_segment(bool v6, size_t len) { check_segment_in(frame, v6, len); }

static void test_gso_pieces(void **state)
{
    (void)state;
    static const size_t payloads[] = {1, 1447, 30001, 60000, 65535 - 40};
    static const size_t rooms[] = {1588, 9076, 2000, 70000};
    for (int v6 = 0; v6 < 2; v6++)
        for (size_t p = 0; p < sizeof(payloads) / sizeof(payloads[0]); p++)
            for (size_t r = 0; r < sizeof(rooms) / sizeof(rooms[0]); r++) {
                struct vnet_hdr vh;
                size_t len = gso_frame(v6, payloads[p], &vh);
                struct iovec piece[64];
                unsigned n = cut(len, rooms[r], piece);
                uint32_t ppi = 0;
                assert_int_equal(offload_rx_gso(piece, n, &vh, &ppi), 0);
                assert_true(ppi & (1u << 3)); /* TCP checksum succeeded */
                check_segment(v6, len);
            }
    /* a last piece of one byte */
    struct vnet_hdr vh;
    size_t len = gso_frame(false, 1588 - 54 + 1, &vh);
    struct iovec piece[4];
    unsigned n = cut(len, 1588, piece);
    assert_int_equal(piece[n - 1].iov_len, 1);
    uint32_t ppi;
    assert_int_equal(offload_rx_gso(piece, n, &vh, &ppi), 0);
    check_segment(false, len);
}

static uint32_t be32(const uint8_t *p) { return (uint32_t)be16(p) << 16 | be16(p + 2); }

/* A 45-segment frame (what Linux's TCP hands a TAP: 65160 bytes of
 * payload) is cut after 44 segments; each part a valid segment, the
 * payload unchanged and in order, the rest numbered after the first part,
 * the end-of-data flags moved to it, the IPv4 ID advanced, whatever the
 * pieces (the cut inside one, on a boundary, a whole piece of rest). */
static void test_gso_split(void **state)
{
    (void)state;
    static uint8_t orig[70000], tail[20000];
    static const size_t rooms[] = {16300, 31884, 63766, 70000};
    const size_t mss = 1448, segs = 45;
    for (int v6 = 0; v6 < 2; v6++)
        for (size_t r = 0; r < sizeof(rooms) / sizeof(rooms[0]); r++) {
            struct vnet_hdr vh;
            size_t len = gso_frame(v6, segs * mss, &vh), l3 = 14, l4 = v6 ? 54 : 34;
            size_t hdrs = l4 + 20;
            frame[l4 + 4] = 0xff; /* sequence number 0xfffff000: wraps */
            frame[l4 + 5] = 0xff;
            frame[l4 + 6] = 0xf0;
            frame[l4 + 13] = 0x80 | 0x10 | 0x08 | 0x01; /* CWR ACK PSH FIN */
            if (!v6) {
                frame[l3 + 4] = 0xff;
                frame[l3 + 5] = 0xf0;
            }
            memcpy(orig, frame, len);
            struct iovec piece[64];
            unsigned n = cut(len, rooms[r], piece);
            long t = offload_rx_gso_split(piece, &n, &vh, OFFLOAD_RSC_FRAME_MAX, tail,
                                          sizeof(tail));
            size_t first = 44 * mss, alen = hdrs + first;
            assert_int_equal(t, hdrs + mss);
            size_t sum = 0;
            for (unsigned i = 0; i < n; i++)
                sum += piece[i].iov_len;
            assert_int_equal(sum, alen);
            assert_true(alen <= OFFLOAD_RSC_FRAME_MAX);
            uint32_t ppi = 0;
            assert_int_equal(offload_rx_gso(piece, n, &vh, &ppi), 0);
            check_segment_in(frame, v6, alen);
            struct iovec tp = {tail, (size_t)t};
            assert_int_equal(offload_rx_gso(&tp, 1, &vh, &ppi), 0);
            check_segment_in(tail, v6, (size_t)t);
            assert_memory_equal(frame + hdrs, orig + hdrs, first);
            assert_memory_equal(tail + hdrs, orig + hdrs + first, mss);
            assert_int_equal(be32(frame + l4 + 4), 0xfffff000u);
            assert_int_equal(be32(tail + l4 + 4), (uint32_t)(0xfffff000u + first));
            assert_int_equal(frame[l4 + 13], 0x80 | 0x10);
            assert_int_equal(tail[l4 + 13], 0x10 | 0x08 | 0x01);
            if (!v6) {
                assert_int_equal(be16(frame + l3 + 4), 0xfff0);
                assert_int_equal(be16(tail + l3 + 4), (0xfff0 + 44) & 0xffff);
            }
        }
}

/* Frames left whole: short enough, no MSS, urgent data, a rest longer
 * than the room; one that is not TCP is refused. */
static void test_gso_split_not(void **state)
{
    (void)state;
    static uint8_t tail[20000];
    struct vnet_hdr vh;
    struct iovec piece[64];
    size_t len = gso_frame(false, 44 * 1448, &vh);
    unsigned n = cut(len, 16300, piece), n0 = n;
    assert_int_equal(offload_rx_gso_split(piece, &n, &vh, OFFLOAD_RSC_FRAME_MAX, tail,
                                          sizeof(tail)), 0);
    assert_int_equal(n, n0);
    len = gso_frame(false, 45 * 1448, &vh);
    n = n0 = cut(len, 16300, piece);
    vh.gso_size = 0;
    assert_int_equal(offload_rx_gso_split(piece, &n, &vh, OFFLOAD_RSC_FRAME_MAX, tail,
                                          sizeof(tail)), 0);
    vh.gso_size = 1448;
    frame[34 + 13] |= 0x20;
    assert_int_equal(offload_rx_gso_split(piece, &n, &vh, OFFLOAD_RSC_FRAME_MAX, tail,
                                          sizeof(tail)), 0);
    frame[34 + 13] &= (uint8_t)~0x20;
    assert_int_equal(offload_rx_gso_split(piece, &n, &vh, OFFLOAD_RSC_FRAME_MAX, tail, 1000),
                     0);
    vh.gso_size = 100; /* a rest of many segments */
    assert_int_equal(offload_rx_gso_split(piece, &n, &vh, 60000, tail, 1000), 0);
    assert_int_equal(n, n0);
    frame[23] = 17; /* UDP */
    assert_int_equal(offload_rx_gso_split(piece, &n, &vh, OFFLOAD_RSC_FRAME_MAX, tail,
                                          sizeof(tail)), -1);
    assert_int_equal(n, n0);
}

static void test_gso_refused(void **state)
{
    (void)state;
    struct vnet_hdr vh;
    struct iovec piece[64];
    uint32_t ppi;
    size_t len = gso_frame(false, 20000, &vh);
    /* an odd piece before the last */
    struct iovec odd[2] = {{frame, 1001}, {frame + 1001, len - 1001}};
    assert_int_equal(offload_rx_gso(odd, 2, &vh, &ppi), -1);
    /* the headers not in the first piece */
    struct iovec short1[2] = {{frame, 40}, {frame + 40, len - 40}};
    assert_int_equal(offload_rx_gso(short1, 2, &vh, &ppi), -1);
    /* an IPv4 frame said to be TCPV6; UDP said to be TCP; GSO_UDP */
    vh.gso_type = VNET_HDR_GSO_TCPV6;
    assert_int_equal(offload_rx_gso(piece, cut(len, 1588, piece), &vh, &ppi), -1);
    vh.gso_type = VNET_HDR_GSO_TCPV4;
    frame[23] = 17;
    assert_int_equal(offload_rx_gso(piece, cut(len, 1588, piece), &vh, &ppi), -1);
    frame[23] = 6;
    vh.gso_type = 3;
    assert_int_equal(offload_rx_gso(piece, cut(len, 1588, piece), &vh, &ppi), -1);
    /* longer than the IPv4 total length can say */
    len = gso_frame(false, 65535 - 40 + 1, &vh);
    assert_int_equal(offload_rx_gso(piece, cut(len, 9076, piece), &vh, &ppi), -1);
    /* IPv6 with an extension header before TCP */
    len = gso_frame(true, 2000, &vh);
    frame[20] = 0; /* hop-by-hop */
    assert_int_equal(offload_rx_gso(piece, cut(len, 1588, piece), &vh, &ppi), -1);
    assert_int_equal(offload_rx_gso(piece, 0, &vh, &ppi), -1);
}

/* A partial checksum over every length from 0 to 40 bytes of UDP payload
 * (all the tails of the word sum) is completed right. */
static void test_rx_complete_lengths(void **state)
{
    (void)state;
    for (size_t pl = 0; pl <= 40; pl++) {
        struct vnet_hdr vh;
        size_t len = gso_frame(false, 0, &vh) - 20 + 8 + pl; /* UDP: 8-byte header */
        frame[23] = 17;
        for (size_t i = 0; i < 8 + pl; i++)
            frame[34 + i] = (uint8_t)(i * 7 + pl);
        frame[16] = (uint8_t)((len - 14) >> 8);
        frame[17] = (uint8_t)(len - 14);
        uint16_t ps = ref_sum(frame + 26, 8, 17 + (uint32_t)(len - 34));
        frame[40] = (uint8_t)(ps >> 8);
        frame[41] = (uint8_t)ps;
        vh.gso_type = VNET_HDR_GSO_NONE;
        vh.csum_offset = 6;
        uint32_t ppi = 0;
        assert_int_equal(offload_rx_complete(frame, len, &vh, &ppi), 1);
        assert_int_equal(ref_sum(frame + 34, len - 34,
                                 ref_sum(frame + 26, 8, 17 + (uint32_t)(len - 34))),
                         0xffff);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gso_pieces),
        cmocka_unit_test(test_gso_refused),
        cmocka_unit_test(test_gso_split),
        cmocka_unit_test(test_gso_split_not),
        cmocka_unit_test(test_rx_complete_lengths),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
