/* SPDX-License-Identifier: MIT */
#include "sim_tcprx.h"

#include <string.h>

#include "simvm.h"

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static uint32_t rd32(const uint8_t *p) { return (uint32_t)rd16(p) << 16 | rd16(p + 2); }
static void wr16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}
static void wr32(uint8_t *p, uint32_t v)
{
    wr16(p, (uint16_t)(v >> 16));
    wr16(p + 2, (uint16_t)v);
}

/* The guest's segment to the host: flags, with opts[0..olen) (olen a
 * multiple of 4).  Checksums complete (no offload asked). */
static int send_seg(struct sim_netvsc *nv, const struct snv_tcprx *t, uint8_t flags,
                    uint32_t seq, const uint8_t *opts, uint32_t olen)
{
    uint8_t f[14 + 20 + 20 + 40];
    uint32_t len = 54 + olen;
    memset(f, 0, sizeof(f));
    memcpy(f, t->host_mac, 6);
    memcpy(f + 6, nv->mac, 6);
    f[12] = 0x08;
    uint8_t *ip = f + 14, *th = f + 34;
    ip[0] = 0x45;
    wr16(ip + 2, (uint16_t)(len - 14));
    ip[6] = 0x40; /* DF */
    ip[8] = 64;
    ip[9] = 6;
    memcpy(ip + 12, (const uint8_t[8]){192, 0, 2, 2, 192, 0, 2, 1}, 8);
    wr16(ip + 10, (uint16_t)~snv_csum_fold(snv_csum_add(ip, 20, 0)));
    wr16(th, t->port);
    wr16(th + 2, t->host_port);
    wr32(th + 4, seq);
    wr32(th + 8, t->rcv_nxt);
    th[12] = (uint8_t)((20 + olen) / 4 << 4);
    th[13] = flags;
    wr16(th + 14, 0xffff); /* x 128 with the window scale offered */
    if (olen)
        memcpy(th + 20, opts, olen);
    uint32_t ps = snv_csum_add(ip + 12, 8, 6 + 20 + olen);
    wr16(th + 16, (uint16_t)~snv_csum_fold(snv_csum_add(th, 20 + olen, ps)));
    return snv_send_frame(nv, f, len, 0) == 1 ? 0 : -1; /* NVSP_STAT_SUCCESS */
}

/* A frame of the flow from the host: its TCP header, or NULL. */
static const uint8_t *flow_seg(const struct snv_tcprx *t, const uint8_t *f, int n)
{
    if (n < 54 || f[12] != 0x08 || f[13] != 0 || f[14 + 9] != 6 ||
        memcmp(f + 26, (const uint8_t[8]){192, 0, 2, 1, 192, 0, 2, 2}, 8) != 0)
        return NULL;
    const uint8_t *th = f + 14 + (f[14] & 0xf) * 4;
    if (th + 20 > f + n || rd16(th + 2) != t->port ||
        (t->established && rd16(th) != t->host_port))
        return NULL;
    return th;
}

int snv_tcprx_accept(struct sim_netvsc *nv, struct snv_tcprx *t, const uint8_t host_mac[6],
                     uint16_t port, int timeout_ms)
{
    memset(t, 0, sizeof(*t));
    memcpy(t->host_mac, host_mac, 6);
    t->port = port;
    t->iss = 0x10000000;
    static uint8_t f[70000];
    uint64_t end = sim_now_ms() + (uint64_t)timeout_ms;
    while (sim_now_ms() < end) {
        int n = snv_recv_frame(nv, f, sizeof(f), 100);
        const uint8_t *th = n > 0 ? flow_seg(t, f, n) : NULL;
        if (!th || th[13] != 0x02) /* SYN alone */
            continue;
        t->host_port = rd16(th);
        t->rcv_nxt = rd32(th + 4) + 1;
        /* MSS 1448, what a Linux guest's peers send it with timestamps
         * (so the host's 64 KB frames hold 45 segments, as they do in
         * the nested rig); window scale 7 (with a NOP before it) */
        static const uint8_t opts[8] = {2, 4, 0x05, 0xa8, 1, 3, 3, 7};
        if (send_seg(nv, t, 0x12, t->iss, opts, sizeof(opts)) < 0)
            return -1;
        t->established = true;
        return 0;
    }
    return -1;
}

uint64_t snv_tcprx_take(struct sim_netvsc *nv, struct snv_tcprx *t, uint64_t until,
                        int timeout_ms)
{
    static uint8_t f[70000];
    uint64_t end = sim_now_ms() + (uint64_t)timeout_ms;
    while (t->bytes < until && sim_now_ms() < end) {
        int n = snv_recv_frame(nv, f, sizeof(f), nv->rxq_n ? 0 : 20);
        const uint8_t *th = n > 0 ? flow_seg(t, f, n) : NULL;
        if (th) {
            uint32_t hl = (uint32_t)(th[12] >> 4) * 4;
            uint32_t payload = (uint32_t)(f + n - th) - hl;
            bool good = t->fast && nv->last_has_csum && (nv->last_csum & (1u << 3));
            if ((!good && !snv_tcp_frame_ok(f, (uint32_t)n)) || hl < 20 || th + hl > f + n) {
                t->bad++;
            } else if (payload) {
                if (rd32(th + 4) != t->rcv_nxt) {
                    t->out_of_order++;
                    t->unacked = 2 * 1448; /* a duplicate ACK asks again */
                } else {
                    for (uint32_t i = 0; !t->fast && i < payload; i++)
                        t->data_check = t->data_check * 31 + th[hl + i];
                    t->rcv_nxt += payload;
                    t->bytes += payload;
                    t->unacked += payload;
                    t->segments++;
                    if (payload > t->max_segment)
                        t->max_segment = payload;
                }
            }
        }
        /* every second full segment, and when nothing more waits */
        if (t->unacked && (t->unacked >= 2 * 1448 || !nv->rxq_n)) {
            if (send_seg(nv, t, 0x10, t->iss + 1, NULL, 0) < 0)
                break;
            t->unacked = 0;
        }
    }
    return t->bytes;
}
