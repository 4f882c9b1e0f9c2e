/* SPDX-License-Identifier: MIT */
#include "vsp/netvsp/offload.h"

#include <errno.h>
#include <string.h>

static uint16_t be16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static void put_be16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}
static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }

/* One's-complement sum of big-endian 16-bit words (an odd last byte as
 * the high byte of a word) added to s.  The sum does not depend on the
 * byte order it is taken in: it is taken over 32-bit host-order words
 * (whole frames are summed on receive) and swapped back at the end. */
static uint32_t sum16(const uint8_t *p, size_t n, uint32_t s)
{
    /* four independent sums of 32-bit words (no carry to track below 2^32
     * words, the adds overlap), loaded 8 bytes at a time: the loads are
     * what costs most, natively and more so under an emulated L1 */
    uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        uint64_t w[2];
        memcpy(w, p + i, 16);
        a0 += (uint32_t)w[0];
        a1 += w[0] >> 32;
        a2 += (uint32_t)w[1];
        a3 += w[1] >> 32;
    }
    uint64_t acc = a0 + a1 + a2 + a3;
    for (; i + 4 <= n; i += 4) {
        uint32_t w;
        memcpy(&w, p + i, 4);
        acc += w;
    }
    if (i + 2 <= n) {
        uint16_t w;
        memcpy(&w, p + i, 2);
        acc += w;
        i += 2;
    }
    if (i < n) {
        uint8_t last[2] = {p[i], 0};
        uint16_t w;
        memcpy(&w, last, 2);
        acc += w;
    }
    while (acc >> 16)
        acc = (acc & 0xffff) + (acc >> 16);
    uint8_t b[2];
    uint16_t h = (uint16_t)acc;
    memcpy(b, &h, 2);
    return s + be16(b);
}

static uint16_t fold(uint32_t s)
{
    while (s >> 16)
        s = (s & 0xffff) + (s >> 16);
    return (uint16_t)s;
}

/* A TCP frame made one segment of len bytes (IP header at l3, TCP at l4):
 * the IPv4 total length and header checksum or the IPv6 payload length
 * set for it (the stack or the guest left others, or zero); returns the
 * pseudo-header's address sum, length and protocol not yet added. */
static uint32_t ip_set_lengths(uint8_t *f, size_t l3, size_t l4, size_t len, bool v4)
{
    if (v4) {
        put_be16(f + l3 + 2, (uint16_t)(len - l3));
        put_be16(f + l3 + 10, 0);
        put_be16(f + l3 + 10, (uint16_t)~fold(sum16(f + l3, l4 - l3, 0)));
        return sum16(f + l3 + 12, 8, 0);
    }
    put_be16(f + l3 + 4, (uint16_t)(len - l3 - 40));
    return sum16(f + l3 + 8, 32, 0);
}

/* Ethernet header length (one 802.1Q tag allowed) and the ethertype. */
static int l3_start(const uint8_t *f, size_t len, uint16_t *etype)
{
    if (len < 14)
        return -1;
    *etype = be16(f + 12);
    if (*etype == 0x8100) {
        if (len < 18)
            return -1;
        *etype = be16(f + 16);
        return 18;
    }
    return 14;
}

int offload_tx_prepare(uint8_t *f, size_t len, const struct tx_offload *o, struct vnet_hdr *vh,
                       const char **why)
{
    memset(vh, 0, sizeof(*vh));
    if (!o->has_csum && !o->has_lso)
        return 0;
    uint16_t etype = 0;
    int l3 = l3_start(f, len, &etype);
    bool v4 = etype == 0x0800, v6 = etype == 0x86dd;
    if (l3 < 0 || (!v4 && !v6)) {
        *why = "offload requested for a frame that is not IPv4 or IPv6";
        return -EPROTO;
    }
    if (o->has_lso) {
        uint32_t mss = o->lso & 0xfffff, l4 = (o->lso >> 20) & 0x3ff;
        bool lso_v6 = (o->lso >> 31) & 1, v2 = (o->lso >> 30) & 1;
        if (!v2 || mss == 0 || lso_v6 != v6) {
            *why = "LSO request is not LSOv2, has MSS 0 or the wrong IP version";
            return -EPROTO;
        }
        size_t iphl = v4 ? (size_t)(f[l3] & 0xf) * 4 : 40;
        if ((size_t)l3 + (v4 ? 20 : 40) > len || (v4 && (f[l3] >> 4 != 4 || iphl < 20)) ||
            (v6 && f[l3] >> 4 != 6) || l4 < l3 + iphl || (size_t)l4 + 20 > len ||
            (v4 && (l4 != l3 + iphl || f[l3 + 9] != 6))) {
            *why = "LSO TCP header offset does not match the frame's IP header";
            return -EPROTO;
        }
        size_t thl = (size_t)(f[l4 + 12] >> 4) * 4;
        if (thl < 20 || l4 + thl > len || len - (size_t)l3 > 65535) {
            *why = "LSO frame's TCP header or length out of range";
            return -EPROTO;
        }
        uint32_t tcp_len = (uint32_t)(len - l4);
        uint32_t ps = ip_set_lengths(f, (size_t)l3, l4, len, v4);
        /* the pseudo-header sum, length included, uncomplemented: what a
         * partial checksum starts from */
        put_be16(f + l4 + 16, fold(ps + 6 + tcp_len));
        vh->flags = VNET_HDR_F_NEEDS_CSUM;
        vh->gso_type = v4 ? VNET_HDR_GSO_TCPV4 : VNET_HDR_GSO_TCPV6;
        vh->gso_size = (uint16_t)(mss > 0xffff ? 0xffff : mss);
        vh->hdr_len = (uint16_t)(l4 + thl);
        vh->csum_start = (uint16_t)l4;
        vh->csum_offset = 16;
        return 0;
    }
    bool is4 = o->csum & 1, is6 = (o->csum >> 1) & 1, tcp = (o->csum >> 2) & 1,
         udp = (o->csum >> 3) & 1, ipcsum = (o->csum >> 4) & 1;
    uint32_t l4 = (o->csum >> 16) & 0x3ff;
    if ((is4 && !v4) || (is6 && !v6) || (tcp && udp)) {
        *why = "checksum request does not match the frame";
        return -EPROTO;
    }
    if (v4 && ipcsum) {
        size_t iphl = (size_t)(f[l3] & 0xf) * 4;
        if (iphl < 20 || (size_t)l3 + iphl > len) {
            *why = "IPv4 header checksum request past the frame";
            return -EPROTO;
        }
        put_be16(f + l3 + 10, 0);
        put_be16(f + l3 + 10, (uint16_t)~fold(sum16(f + l3, iphl, 0)));
    }
    if (!tcp && !udp)
        return 0;
    if (l4 < (uint32_t)l3 + 20 || (size_t)l4 + (tcp ? 20 : 8) > len) {
        *why = "checksum request's transport header offset past the frame";
        return -EPROTO;
    }
    vh->flags = VNET_HDR_F_NEEDS_CSUM;
    vh->csum_start = (uint16_t)l4;
    vh->csum_offset = tcp ? 16 : 6;
    return 0;
}

int offload_rx_complete(uint8_t *f, size_t len, const struct vnet_hdr *vh, uint32_t *ppi)
{
    if (!(vh->flags & (VNET_HDR_F_NEEDS_CSUM | VNET_HDR_F_DATA_VALID)))
        return 0;
    uint16_t etype = 0;
    int l3 = l3_start(f, len, &etype);
    uint8_t proto;
    if (l3 < 0)
        return -1;
    if (etype == 0x0800 && (size_t)l3 + 20 <= len)
        proto = f[l3 + 9];
    else if (etype == 0x86dd && (size_t)l3 + 40 <= len)
        proto = f[l3 + 6]; /* extension headers: told nothing below */
    else
        return vh->flags & VNET_HDR_F_NEEDS_CSUM ? -1 : 0;
    if (vh->flags & VNET_HDR_F_NEEDS_CSUM) {
        size_t start = vh->csum_start, at = start + vh->csum_offset;
        if (start < (size_t)l3 || start >= len || at + 2 > len)
            return -1;
        /* the field holds the pseudo-header sum: add the rest */
        put_be16(f + at, (uint16_t)~fold(sum16(f + start, len - start, 0)));
    }
    /* receive form: TCP checksum succeeded (bit 3), UDP (bit 4) */
    if (proto == 6)
        *ppi = 1u << 3;
    else if (proto == 17)
        *ppi = 1u << 4;
    else
        return 0;
    return 1;
}

/* Where a coalesced TCP frame's headers are (first: the bytes of its
 * first piece, len: the whole frame's): 0 with *l3, *l4 (even), *thl and
 * *v4, or -1 for a frame that is not TCP over IPv4 / IPv6 (no extension
 * headers) as vh says, or too long for its length fields. */
static int gso_layout(const uint8_t *f, size_t first, size_t len, const struct vnet_hdr *vh,
                      size_t *l3p, size_t *l4p, size_t *thlp, bool *v4p)
{
    uint16_t etype = 0;
    int l3 = l3_start(f, first, &etype);
    uint8_t gso = vh->gso_type & 0x7f; /* without the ECN bit */
    bool v4 = etype == 0x0800 && gso == VNET_HDR_GSO_TCPV4;
    bool v6 = etype == 0x86dd && gso == VNET_HDR_GSO_TCPV6;
    if (l3 < 0 || (!v4 && !v6) || (size_t)l3 + 40 > first)
        return -1;
    size_t l4;
    if (v4) {
        size_t iphl = (size_t)(f[l3] & 0xf) * 4;
        if (f[l3] >> 4 != 4 || iphl < 20 || f[l3 + 9] != 6 || len - (size_t)l3 > 65535)
            return -1;
        l4 = (size_t)l3 + iphl;
    } else {
        /* extension headers: not coalesced (the host's TCP sends none) */
        if (f[l3] >> 4 != 6 || f[l3 + 6] != 6 || len - (size_t)l3 - 40 > 65535)
            return -1;
        l4 = (size_t)l3 + 40;
    }
    if (l4 + 20 > first || (l4 & 1))
        return -1;
    size_t thl = (size_t)(f[l4 + 12] >> 4) * 4;
    if (thl < 20 || l4 + thl > first)
        return -1;
    *l3p = (size_t)l3;
    *l4p = l4;
    *thlp = thl;
    *v4p = v4;
    return 0;
}

int offload_rx_gso(const struct iovec *piece, unsigned n, const struct vnet_hdr *vh,
                   uint32_t *ppi)
{
    if (n == 0)
        return -1;
    uint8_t *f = piece[0].iov_base;
    size_t first = piece[0].iov_len, len = 0;
    for (unsigned i = 0; i < n; i++) {
        /* pieces joined at odd offsets would need their sums swapped */
        if (i + 1 < n && (piece[i].iov_len & 1))
            return -1;
        len += piece[i].iov_len;
    }
    size_t l3, l4, thl;
    bool v4;
    if (gso_layout(f, first, len, vh, &l3, &l4, &thl, &v4) < 0)
        return -1;
    /* one segment of the whole length: the lengths the stack gave the
     * unsegmented frame may not be this one's */
    uint32_t tcp_len = (uint32_t)(len - l4);
    uint32_t ps = ip_set_lengths(f, l3, l4, len, v4);
    /* The TCP checksum computed afresh (the field may hold a partial sum
     * or, for a frame the host checked, the first segment's). */
    put_be16(f + l4 + 16, 0);
    uint32_t s = sum16(f + l4, first - l4, ps + 6 + tcp_len);
    for (unsigned i = 1; i < n; i++)
        s = fold(sum16(piece[i].iov_base, piece[i].iov_len, s));
    uint16_t c = (uint16_t)~fold(s);
    put_be16(f + l4 + 16, c ? c : 0xffff);
    /* receive form: TCP checksum succeeded (bit 3); IPv4: IP checksum
     * succeeded (bit 5) */
    *ppi = 1u << 3 | (v4 ? 1u << 5 : 0);
    return 0;
}

#define TCP_FIN 0x01
#define TCP_PSH 0x08
#define TCP_URG 0x20
#define TCP_CWR 0x80

long offload_rx_gso_split(struct iovec *piece, unsigned *n, const struct vnet_hdr *vh,
                          size_t max, uint8_t *tail, size_t room)
{
    size_t len = 0;
    for (unsigned i = 0; i < *n; i++)
        len += piece[i].iov_len;
    if (*n == 0 || len <= max)
        return 0;
    uint8_t *f = piece[0].iov_base;
    size_t l3, l4, thl;
    bool v4;
    if (gso_layout(f, piece[0].iov_len, len, vh, &l3, &l4, &thl, &v4) < 0)
        return -1;
    size_t hdrs = l4 + thl, mss = vh->gso_size;
    /* urgent data points into one part only: left whole */
    if (mss == 0 || hdrs >= max || (f[l4 + 13] & TCP_URG))
        return 0;
    /* the first part: as many whole segments as fit; the rest after it */
    size_t first = (max - hdrs) / mss * mss;
    if (first == 0 || hdrs + first >= len)
        return 0;
    size_t rest = len - hdrs - first;
    if (hdrs + rest > room)
        return 0;
    memcpy(tail, f, hdrs);
    /* the rest's bytes, from wherever the pieces hold them */
    size_t at = 0, cut = hdrs + first, got = 0;
    unsigned keep = 0;
    for (unsigned i = 0; i < *n; i++) {
        size_t pl = piece[i].iov_len;
        if (at + pl > cut) {
            size_t from = at < cut ? cut - at : 0;
            memcpy(tail + hdrs + got, (uint8_t *)piece[i].iov_base + from, pl - from);
            got += pl - from;
        }
        if (at < cut) {
            keep = i + 1;
            if (at + pl > cut)
                piece[i].iov_len = cut - at;
        }
        at += pl;
    }
    *n = keep;
    /* The rest follows the first part in sequence and takes its end-of-
     * data flags; congestion-window-reduced stays with the first. */
    uint8_t *th = tail + l4;
    uint32_t seq = (uint32_t)be16(th + 4) << 16 | be16(th + 6);
    seq += (uint32_t)first;
    put_be16(th + 4, (uint16_t)(seq >> 16));
    put_be16(th + 6, (uint16_t)seq);
    th[13] &= (uint8_t)~TCP_CWR;
    f[l4 + 13] &= (uint8_t)~(TCP_FIN | TCP_PSH);
    if (v4) {
        /* the IP ID the segments after the first part's would have had */
        uint16_t id = (uint16_t)(be16(tail + l3 + 4) + first / mss);
        put_be16(tail + l3 + 4, id);
    }
    return (long)(hdrs + rest);
}

void offload_caps(uint8_t *caps, size_t size)
{
    if (size < 112)
        return;
    /* checksums: 802.3 encapsulation; TCP (with options) and UDP over IPv4
     * and IPv6 (with extension headers), transmit */
    put32(caps + 4, 2);
    put32(caps + 8, 0x004 | 0x010 | 0x040);
    put32(caps + 20, 2);
    put32(caps + 24, 0x001 | 0x004 | 0x010 | 0x040);
    /* receive: the host tells which TCP/UDP checksums it checked */
    put32(caps + 12, 2);
    put32(caps + 16, 0x004 | 0x010 | 0x040);
    put32(caps + 28, 2);
    put32(caps + 32, 0x001 | 0x004 | 0x010 | 0x040);
    /* LSOv2 over IPv4 and IPv6 (extension headers, TCP options) */
    put32(caps + 80, 2);
    put32(caps + 84, OFFLOAD_LSO_MAX);
    put32(caps + 88, 2);
    put32(caps + 92, 2);
    put32(caps + 96, OFFLOAD_LSO_MAX);
    put32(caps + 100, 2);
    put32(caps + 104, 0x001 | 0x004);
}
