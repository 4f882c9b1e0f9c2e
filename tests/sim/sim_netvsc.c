/* SPDX-License-Identifier: MIT */
#include "sim_netvsc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "vsp/netvsp/protocol.h"

#define SNV_PKT_MAX 16384u
#define SNV_SCRATCH_PAGES 20u /* a 64 KiB LSO frame and its RNDIS header */
#define SNV_GPA_OFF 100u  /* where a GPA-direct request starts in them */

const struct hv_guid *snv_class(void)
{
    /* f8615163-df3e-46c5-913f-f2d2f965ed0e in wire order */
    static const struct hv_guid g = {{0x63, 0x51, 0x61, 0xf8, 0x3e, 0xdf, 0xc5, 0x46, 0x91,
                                      0x3f, 0xf2, 0xd2, 0xf9, 0x65, 0xed, 0x0e}};
    return &g;
}

struct sim_netvsc *snv_open(struct sim_vm *vm, uint32_t ring_pages)
{
    struct sim_offer *of = sim_offer_by_class(vm, snv_class(), 0);
    if (!of) {
        fprintf(stderr, "snv_open: %s has no netvsp offer\n", vm->name);
        return NULL;
    }
    int status = 0;
    struct sim_chan *ch = sim_chan_open(vm, of->relid, ring_pages, ring_pages, &status);
    if (!ch) {
        fprintf(stderr, "snv_open: open failed (%d)\n", status);
        return NULL;
    }
    ch->recv_whole = true;
    struct sim_netvsc *nv = calloc(1, sizeof(*nv));
    nv->vm = vm;
    nv->ch = ch;
    nv->chans[0] = ch;
    nv->nch = 1;
    nv->scratch_off = sim_alloc_pages(vm, SNV_SCRATCH_PAGES);
    return nv;
}

/* Subchannel offers of the NIC the guest holds rescinded. */
static int rescinded_subs(struct sim_vm *vm)
{
    int n = 0;
    for (int i = 0; i < vm->noffers; i++) {
        const struct sim_offer *o = &vm->offers[i];
        n += o->valid && o->rescinded && o->sub_channel_index != 0 &&
             memcmp(&o->if_type, snv_class(), 16) == 0;
    }
    return n;
}

void snv_free(struct sim_netvsc *nv)
{
    if (!nv)
        return;
    /* vmbus_close: the subchannels first, then the primary; vmbusd then
     * rescinds the subchannels and the guest releases them */
    for (int i = nv->nch - 1; i >= 1; i--)
        if (nv->chans[i] && nv->chans[i]->open)
            sim_chan_close(nv->chans[i]);
    if (nv->ch && nv->ch->open)
        sim_chan_close(nv->ch);
    if (nv->nch > 1) {
        uint64_t end = sim_now_ms() + (uint64_t)sim_timeout_ms;
        while (rescinded_subs(nv->vm) < nv->nch - 1 && sim_now_ms() < end)
            sim_poll(nv->vm, 10);
        if (!nv->defer_release)
            sim_release_subchannels(nv->vm);
    }
    for (int i = 0; i < nv->rxq_n; i++)
        free(nv->rxq[i].data);
    free(nv);
}

static int send_raw_on(struct sim_netvsc *nv, int chan, uint16_t type, uint16_t flags,
                       uint64_t tid, const void *hdr, uint32_t hdr_len, const void *payload,
                       uint32_t len)
{
    /* A full ring is waited out (the host drains it), like Linux's
     * netvsc which retries once the host signals room. */
    uint64_t end = sim_now_ms() + (uint64_t)sim_timeout_ms;
    for (;;) {
        int r = sim_chan_send_hdr(nv->chans[chan], type, flags, tid, hdr, hdr_len, payload,
                                  len);
        if (r != -EAGAIN || sim_now_ms() > end)
            return r;
        snv_poll(nv, 10, false);
    }
}

int snv_send_raw(struct sim_netvsc *nv, uint16_t type, uint16_t flags, uint64_t tid,
                 const void *hdr, uint32_t hdr_len, const void *payload, uint32_t len)
{
    uint64_t end = sim_now_ms() + (uint64_t)sim_timeout_ms;
    for (;;) {
        int r = sim_chan_send_hdr(nv->ch, type, flags, tid, hdr, hdr_len, payload, len);
        if (r != -EAGAIN || sim_now_ms() > end)
            return r;
        snv_poll(nv, 10, false);
    }
}

/* Complete a transfer-page packet on the channel it came on (as Linux's
 * per-queue receive completions). */
static void complete_xfer(struct sim_netvsc *nv, int chan, uint64_t tid, uint32_t status)
{
    if (nv->hold_completions && nv->nheld < (int)(sizeof(nv->held_tids) / 8)) {
        nv->held_chan[nv->nheld] = chan;
        nv->held_tids[nv->nheld++] = tid;
        return;
    }
    struct {
        uint32_t type, status;
    } m = {NVSP_MSG1_SEND_RNDIS_PKT_COMPLETE, status};
    send_raw_on(nv, chan, VM_PKT_COMP, 0, tid, NULL, 0, &m, sizeof(m));
}

void snv_release_held(struct sim_netvsc *nv)
{
    bool hold = nv->hold_completions;
    nv->hold_completions = false;
    for (int i = 0; i < nv->nheld; i++)
        complete_xfer(nv, nv->held_chan[i], nv->held_tids[i], NVSP_STAT_SUCCESS);
    nv->nheld = 0;
    nv->hold_completions = hold;
}

static void bad(struct sim_netvsc *nv, const char *why, uint64_t v)
{
    nv->host_bad++;
    fprintf(stderr, "sim_netvsc %s: host sent a bad packet: %s (%llu)\n", nv->vm->name, why,
            (unsigned long long)v);
}

/* A whole frame (a plain one, or the fragments of a coalesced one joined)
 * reaches the guest's stack. */
static void deliver(struct sim_netvsc *nv, int chan)
{
    uint32_t len = 0;
    for (uint32_t i = 0; i < nv->rsc_cnt; i++)
        len += nv->rsc_len[i];
    nv->rx_frames++;
    nv->rx_frames_on[chan]++;
    nv->rx_bytes += len;
    nv->rx_coalesced += nv->rsc_cnt > 1;
    if (nv->rxq_n == SNV_RXQ)
        return; /* the test does not read them: count only */
    uint8_t *c = malloc(len ? len : 1);
    for (uint32_t i = 0, at = 0; i < nv->rsc_cnt; at += nv->rsc_len[i++])
        memcpy(c + at, nv->rsc_data[i], nv->rsc_len[i]);
    nv->rxq[nv->rxq_n].data = c;
    nv->rxq[nv->rxq_n].len = len;
    nv->rxq[nv->rxq_n].has_csum = nv->rsc_has_csum;
    nv->rxq[nv->rxq_n].csum = nv->rsc_csum;
    nv->rxq[nv->rxq_n].chan = chan;
    nv->rxq_n++;
}

/* One RNDIS message in a receive-buffer range, checked like
 * rndis_filter_receive; a PACKET's fragments joined like
 * rndis_filter_receive_data (is_last: the packet's last range).  false
 * where Linux fails the range (its frame is dropped). */
static bool take_rndis(struct sim_netvsc *nv, int chan, const uint8_t *data, uint32_t buflen,
                       bool is_last)
{
    struct rndis_hdr h;
    if (buflen < 8) {
        bad(nv, "RNDIS message shorter than its header", buflen);
        return false;
    }
    memcpy(&h, data, 8);
    if (h.len < 8 || h.len > buflen) {
        bad(nv, "RNDIS msg_len past the range", h.len);
        return false;
    }
    if (h.type == RNDIS_MSG_PACKET) {
        struct rndis_packet p;
        if (buflen < 8 + sizeof(p)) {
            bad(nv, "RNDIS PACKET too short", buflen);
            return false;
        }
        memcpy(&p, data + 8, sizeof(p));
        if (p.data_offset >= buflen - 8 || buflen - 8 - p.data_offset < p.data_len) {
            bad(nv, "RNDIS PACKET data past the range", p.data_offset);
            return false;
        }
        /* per-packet info, checked as rndis_get_ppi does (a record it
         * cannot step over would make Linux loop for ever) */
        bool has_csum = false, has_id = false;
        uint32_t csum = 0, id = 0, rpkt_len = buflen - 8;
        if (p.ppi_offset) {
            if (p.ppi_offset < sizeof(p) || p.ppi_offset > rpkt_len || p.ppi_len < 12 ||
                p.ppi_len > rpkt_len - p.ppi_offset) {
                bad(nv, "RNDIS PACKET per-packet info out of range", p.ppi_offset);
                return false;
            }
            const uint8_t *ppi = data + 8 + p.ppi_offset;
            for (uint32_t off = 0; off < p.ppi_len;) {
                uint32_t rec[3];
                if (p.ppi_len - off < 12) {
                    bad(nv, "per-packet info record cut short", off);
                    return false;
                }
                memcpy(rec, ppi + off, 12);
                if (rec[0] < 12 || rec[0] > p.ppi_len - off || rec[2] >= rec[0]) {
                    bad(nv, "per-packet info record size/offset", rec[0]);
                    return false;
                }
                if (rec[1] == NDIS_PPI_CHECKSUM && rec[0] - rec[2] >= 4) {
                    has_csum = true;
                    memcpy(&csum, ppi + off + rec[2], 4);
                }
                if (rec[1] == NDIS_PPI_PKTINFO_ID && rec[0] - rec[2] >= 4) {
                    has_id = true;
                    memcpy(&id, ppi + off + rec[2], 4);
                }
                off += rec[0];
            }
        }
        /* fragments of a coalesced frame (flags in the id's second byte) */
        uint8_t flags = (uint8_t)(id >> 8);
        bool more = false;
        if (has_id && (flags & NDIS_PKTINFO_SUBALLOC)) {
            if (!nv->rsc_offered || nv->lro_off) {
                bad(nv, "coalesced-frame fragment the guest did not ask for", flags);
                return false;
            }
            if (flags & NDIS_PKTINFO_1ST_FRAG) {
                if (nv->rsc_cnt) {
                    bad(nv, "RSC first fragment before the last one came", nv->rsc_cnt);
                    nv->rsc_cnt = 0;
                }
            } else if (nv->rsc_cnt == 0) {
                bad(nv, "RSC fragment without a first one", flags);
                return false;
            }
            more = !(flags & NDIS_PKTINFO_LAST_FRAG);
            if (more && is_last) {
                bad(nv, "RSC frame not finished at the packet's end", nv->rsc_cnt);
                return false;
            }
        } else {
            if (nv->rsc_cnt)
                bad(nv, "plain frame inside a coalesced one", nv->rsc_cnt);
            nv->rsc_cnt = 0;
        }
        if (nv->rsc_cnt >= 562) {
            bad(nv, "RSC frame of more than 562 fragments", nv->rsc_cnt);
            return false;
        }
        if (nv->rsc_cnt == 0) {
            /* the first fragment's checksum info stands for the frame */
            nv->rsc_has_csum = has_csum;
            nv->rsc_csum = csum;
        }
        nv->rsc_data[nv->rsc_cnt] = data + 8 + p.data_offset;
        nv->rsc_len[nv->rsc_cnt++] = p.data_len;
        if (!more) {
            deliver(nv, chan);
            nv->rsc_cnt = 0;
        }
        return true;
    }
    if (h.type == RNDIS_MSG_INDICATE) {
        struct rndis_indicate in;
        if (h.len < 8 + sizeof(in)) {
            bad(nv, "INDICATE_STATUS too short", h.len);
            return false;
        }
        memcpy(&in, data + 8, sizeof(in));
        if (nv->nind < 16)
            nv->indications[nv->nind++] = in.status;
        return true;
    }
    if (chan != 0) {
        bad(nv, "RNDIS control message on a subchannel", h.type);
        return false;
    }
    if (!(h.type & RNDIS_MSG_COMPLETION)) {
        bad(nv, "unexpected RNDIS message type from the host", h.type);
        return false;
    }
    if (h.len > sizeof(nv->ctl)) {
        bad(nv, "RNDIS completion too long", h.len);
        return false;
    }
    memcpy(nv->ctl, data, h.len);
    nv->ctl_len = h.len;
    nv->ctl_valid = true;
    return true;
}

static void take_xfer(struct sim_netvsc *nv, int chan, const uint8_t *pkt, uint32_t len)
{
    struct vmpacket_descriptor d;
    memcpy(&d, pkt, sizeof(d));
    uint32_t off = (uint32_t)d.offset8 << 3;
    if (len - off < 4) {
        bad(nv, "xfer packet without an NVSP header", len - off);
        return;
    }
    uint32_t type;
    memcpy(&type, pkt + off, 4);
    if (type != NVSP_MSG1_SEND_RNDIS_PKT) {
        bad(nv, "xfer packet NVSP type", type);
        return;
    }
    if (off < 24) {
        bad(nv, "xfer packet offset too small", off);
        return;
    }
    uint16_t pageset;
    uint32_t cnt;
    memcpy(&pageset, pkt + 16, 2);
    memcpy(&cnt, pkt + 20, 4);
    if (pageset != NVSP_RECV_BUF_ID) {
        bad(nv, "xfer pageset id", pageset);
        return;
    }
    if (24 + 8 * (uint64_t)cnt > off) {
        bad(nv, "xfer range count", cnt);
        return;
    }
    /* Linux reads packets of at most 562 ranges, an NVSP message and a
     * send table (NETVSC_MAX_PKT_SIZE); a longer one is cut short */
    if (cnt > 562 || len > 24 + 562 * 8 + 40 + 64) {
        bad(nv, "xfer packet longer than Linux reads", cnt);
        return;
    }
    if (cnt > nv->rx_max_ranges)
        nv->rx_max_ranges = cnt;
    nv->rx_packets++;
    uint32_t status = NVSP_STAT_SUCCESS;
    uint8_t *recv = sim_gpa_ptr(nv->vm, sim_off_to_gpa(nv->vm, nv->recv_off));
    uint64_t recv_size = (uint64_t)nv->recv_pages * 4096;
    for (uint32_t i = 0; i < cnt; i++) {
        struct vmtransfer_page_range r;
        memcpy(&r, pkt + 24 + 8 * i, 8);
        if (r.byte_offset > recv_size || r.byte_count > recv_size - r.byte_offset ||
            r.byte_count > nv->sub_size) {
            bad(nv, "xfer range outside the receive buffer / sub-allocation", r.byte_offset);
            nv->rsc_cnt = 0;
            status = NVSP_STAT_FAIL;
            continue;
        }
        if (!take_rndis(nv, chan, recv + r.byte_offset, r.byte_count, i + 1 == cnt)) {
            nv->rsc_cnt = 0; /* the frame being joined is dropped */
            status = NVSP_STAT_FAIL;
        }
    }
    complete_xfer(nv, chan, d.trans_id, status);
}

static void take_comp(struct sim_netvsc *nv, const uint8_t *pkt, uint32_t len)
{
    struct vmpacket_descriptor d;
    memcpy(&d, pkt, sizeof(d));
    uint32_t off = (uint32_t)d.offset8 << 3;
    uint32_t msglen = len - off;
    uint32_t type = 0;
    if (msglen < 4) {
        bad(nv, "completion without an NVSP header", msglen);
        return;
    }
    memcpy(&type, pkt + off, 4);
    uint32_t need = type == NVSP_MSG_INIT_COMPLETE || type == NVSP_MSG1_SEND_RECV_BUF_COMPLETE
                        ? 28
                    : type == NVSP_MSG1_SEND_SEND_BUF_COMPLETE || type == NVSP_MSG5_SUBCHANNEL
                        ? 12
                    : type == NVSP_MSG1_SEND_RNDIS_PKT_COMPLETE ? 8
                                                                : 0;
    if (!need) {
        bad(nv, "unknown completion type", type);
        return;
    }
    if (msglen < need) {
        bad(nv, "completion too short for its type", msglen);
        return;
    }
    /* 28 bytes before NVSP 6 and 40 from it, padded to 8 by the ring. */
    uint32_t want = nv->version >= NVSP_VERSION_6 ? 40 : 32;
    if (nv->version && type != NVSP_MSG_INIT_COMPLETE && msglen != want) {
        bad(nv, "completion not sized to the negotiated version", msglen);
        return;
    }
    if (type == NVSP_MSG1_SEND_RNDIS_PKT_COMPLETE) {
        if (nv->tx_done < sizeof(nv->tx_tids) / sizeof(nv->tx_tids[0]))
            nv->tx_tids[nv->tx_done] = d.trans_id;
        nv->tx_done++;
    }
    nv->comp_tid = d.trans_id;
    nv->comp_len = msglen < sizeof(nv->comp) ? msglen : sizeof(nv->comp);
    memcpy(nv->comp, pkt + off, nv->comp_len);
    nv->comp_valid = true;
}

/* An inband host message: the send indirection table, checked as
 * netvsc_send_table does. */
static void take_inband(struct sim_netvsc *nv, const uint8_t *pkt, uint32_t len)
{
    struct vmpacket_descriptor d;
    memcpy(&d, pkt, sizeof(d));
    uint32_t off = (uint32_t)d.offset8 << 3;
    uint32_t msglen = len - off;
    const uint8_t *m = pkt + off;
    uint32_t type = 0, count = 0, toff = 0;
    if (msglen >= 4)
        memcpy(&type, m, 4);
    if (type != NVSP_MSG5_SEND_INDIRECTION_TABLE) {
        bad(nv, "unexpected inband message type", type);
        return;
    }
    if (nv->version < NVSP_VERSION_5 || msglen < 12) {
        bad(nv, "send table before NVSP 5 or too short", msglen);
        return;
    }
    memcpy(&count, m + 4, 4);
    memcpy(&toff, m + 8, 4);
    if (count != 16) {
        bad(nv, "send table size", count);
        return;
    }
    /* Linux <= 6.0 assumes offset 40 when the message is long enough */
    if (nv->version <= NVSP_VERSION_6 && msglen >= 40 + 64)
        toff = 40;
    if (msglen < 64 || toff > msglen - 64) {
        bad(nv, "send table offset", toff);
        return;
    }
    uint32_t tab[16];
    memcpy(tab, m + toff, sizeof(tab));
    /* the table the host meant: right after the message of the version */
    uint32_t want_off = nv->version >= NVSP_VERSION_6 ? 40 : 28;
    if (toff != want_off) {
        bad(nv, "send table not where the host put it", toff);
        return;
    }
    memcpy(nv->send_table, tab, sizeof(tab));
    nv->send_tables++;
}

static void take_packet(struct sim_netvsc *nv, int chan, const struct vmpacket_descriptor *d,
                        const uint8_t *pkt, uint32_t len)
{
    if (d->type == VM_PKT_COMP)
        take_comp(nv, pkt, len);
    else if (d->type == VM_PKT_DATA_USING_XFER_PAGES)
        take_xfer(nv, chan, pkt, len);
    else if (d->type == VM_PKT_DATA_INBAND)
        take_inband(nv, pkt, len);
    else
        bad(nv, "unexpected packet type", d->type);
}

/* A packet read on channel chan into pkt (len: its length, which may be
 * more than was read): taken, or counted as one larger than the guest's
 * buffer (false). */
static bool take_read(struct sim_netvsc *nv, int chan, const struct vmpacket_descriptor *d,
                      const uint8_t *pkt, uint32_t len)
{
    if (len > SNV_PKT_MAX) {
        bad(nv, "packet larger than the guest's buffer", len);
        return false;
    }
    take_packet(nv, chan, d, pkt, len);
    return true;
}

void snv_poll(struct sim_netvsc *nv, int timeout_ms, bool want_frame)
{
    static __thread uint8_t pkt[SNV_PKT_MAX];
    if (nv->nch == 1) {
        /* A packet there already is taken without reading the clock (a
         * guest driver reads none per packet; the benchmarks count this
         * guest's CPU time). */
        struct vmpacket_descriptor d;
        uint32_t len = 0;
        if (sim_chan_recv(nv->ch, &d, pkt, sizeof(pkt), &len, 0) > 0) {
            take_read(nv, 0, &d, pkt, len);
            if (!want_frame || nv->rxq_n)
                return;
        }
    }
    uint64_t end = sim_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        int64_t left = (int64_t)(end - sim_now_ms());
        if (left < 0)
            left = 0;
        /* A ring that still yields packets long past the deadline holds
         * garbage a lying host framed badly (the reader clamps, as Linux
         * does, and may never reach the write index): give up. */
        if (left == 0 && sim_now_ms() > end + 2000)
            return;
        struct vmpacket_descriptor d;
        uint32_t len = 0;
        if (nv->nch == 1) {
            int r = sim_chan_recv(nv->ch, &d, pkt, sizeof(pkt), &len, (int)left);
            if (r <= 0)
                return;
            if (!take_read(nv, 0, &d, pkt, len))
                continue;
            if (!want_frame || nv->rxq_n)
                return;
            continue;
        }
        /* several channels: one packet from each that has one, then wait
         * for any event of the VM */
        bool got = false;
        for (int c = 0; c < nv->nch; c++) {
            if (!nv->chans[c]->open)
                continue;
            if (sim_chan_recv_batched(nv->chans[c], &d, pkt, sizeof(pkt), &len) <= 0)
                continue;
            got = true;
            take_read(nv, c, &d, pkt, len);
        }
        if (got && (!want_frame || nv->rxq_n))
            return;
        if (!got) {
            if (left == 0)
                return;
            sim_poll(nv->vm, left < 5 ? (int)left : 5);
        }
    }
}

/* Wait for the completion of tid. */
static int wait_comp(struct sim_netvsc *nv, uint64_t tid)
{
    uint64_t end = sim_now_ms() + (uint64_t)sim_timeout_ms;
    while (!(nv->comp_valid && nv->comp_tid == tid)) {
        if (sim_now_ms() > end || !nv->ch->open)
            return -ETIMEDOUT;
        snv_poll(nv, 50, false);
    }
    nv->comp_valid = false;
    uint32_t st = 0;
    memcpy(&st, nv->comp + 4, 4);
    return (int)st;
}

int snv_nvsp_request(struct sim_netvsc *nv, const void *msg, uint32_t len)
{
    uint64_t tid = ++nv->tid;
    nv->comp_valid = false;
    int r = snv_send_raw(nv, VM_PKT_DATA_INBAND, VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED,
                         tid, NULL, 0, msg, len);
    if (r < 0)
        return r;
    return wait_comp(nv, tid);
}

int snv_nvsp_init(struct sim_netvsc *nv, uint32_t version)
{
    struct nvsp_msg m;
    memset(&m, 0, sizeof(m));
    m.type = NVSP_MSG_INIT;
    m.u.init.min_version = m.u.init.max_version = version;
    int st = snv_nvsp_request(nv, &m, sizeof(m));
    if (st < 0)
        return st;
    struct nvsp_init_complete ic;
    memcpy(&ic, nv->comp + 4, sizeof(ic));
    if (ic.status != NVSP_STAT_SUCCESS)
        return 0;
    if (ic.version != version) {
        fprintf(stderr, "snv_nvsp_init: host accepted 0x%x as 0x%x\n", version, ic.version);
        return -EPROTO;
    }
    nv->version = version;
    return 1;
}

/* pages guest pages in a GPADL handed to the host with `type` (SEND_RECV_BUF
 * or SEND_SEND_BUF) and buffer id: 0 (the answer in nv->comp), or -errno. */
static int hand_buffer(struct sim_netvsc *nv, uint32_t type, uint16_t id, uint32_t pages,
                       uint32_t *gpadl, uint64_t *off, const char *what)
{
    int r = sim_gpadl_create_pages(nv->vm, nv->ch->relid, pages, gpadl, off);
    if (r != 0)
        return r < 0 ? r : -EIO;
    struct nvsp_msg m = {.type = type};
    m.u.send_buf.gpadl = *gpadl;
    m.u.send_buf.id = id;
    int st = snv_nvsp_request(nv, &m, sizeof(m));
    if (st != NVSP_STAT_SUCCESS) {
        fprintf(stderr, "snv_buffers: %s status %d\n", what, st);
        return st < 0 ? st : -EPROTO;
    }
    return 0;
}

int snv_buffers(struct sim_netvsc *nv, uint32_t recv_pages, uint32_t send_pages)
{
    struct nvsp_msg m;
    if (nv->version > NVSP_VERSION_1) {
        memset(&m, 0, sizeof(m));
        m.type = NVSP_MSG2_SEND_NDIS_CONFIG;
        uint32_t mtu = (nv->ndis_mtu ? nv->ndis_mtu : 1500) + 14;
        memcpy(m.u.raw, &mtu, 4);
        /* netvsc_connect_vsp: 802.1Q; SR-IOV and teaming from NVSP 5;
         * RSC from 6.1 */
        uint64_t cap = 1ull << 3;
        if (nv->version >= NVSP_VERSION_5)
            cap |= 1ull << 2 | 1ull << 5;
        if (nv->version >= NVSP_VERSION_61)
            cap |= NVSP_NDIS_CONFIG_CAP_RSC;
        memcpy(m.u.raw + 8, &cap, 8);
        snv_send_raw(nv, VM_PKT_DATA_INBAND, 0, ++nv->tid, NULL, 0, &m, sizeof(m));
    }
    memset(&m, 0, sizeof(m));
    m.type = NVSP_MSG1_SEND_NDIS_VERSION;
    m.u.ndis_version.major = 6;
    m.u.ndis_version.minor = nv->version >= NVSP_VERSION_5 ? 30 : 1;
    snv_send_raw(nv, VM_PKT_DATA_INBAND, 0, ++nv->tid, NULL, 0, &m, sizeof(m));

    int r = hand_buffer(nv, NVSP_MSG1_SEND_RECV_BUF, NVSP_RECV_BUF_ID, recv_pages,
                        &nv->recv_gpadl, &nv->recv_off, "SEND_RECV_BUF");
    if (r < 0)
        return r;
    nv->recv_pages = recv_pages;
    struct nvsp_recv_buf_complete rc;
    memcpy(&rc, nv->comp + 4, sizeof(rc));
    /* netvsc_init_buf's checks */
    if (rc.num_sections != 1 || rc.section.offset != 0 || rc.section.sub_alloc_size < 68 ||
        (uint64_t)rc.section.sub_alloc_size * rc.section.num_sub_allocs >
            (uint64_t)recv_pages * 4096) {
        fprintf(stderr, "snv_buffers: bad receive section\n");
        return -EPROTO;
    }
    nv->sub_size = rc.section.sub_alloc_size;
    nv->sub_count = rc.section.num_sub_allocs;

    r = hand_buffer(nv, NVSP_MSG1_SEND_SEND_BUF, NVSP_SEND_BUF_ID, send_pages, &nv->send_gpadl,
                    &nv->send_off, "SEND_SEND_BUF");
    if (r < 0)
        return r;
    nv->send_pages = send_pages;
    struct nvsp_send_buf_complete sc;
    memcpy(&sc, nv->comp + 4, sizeof(sc));
    if (sc.section_size < 68) {
        fprintf(stderr, "snv_buffers: send section size %u\n", sc.section_size);
        return -EPROTO;
    }
    nv->section_size = sc.section_size;
    nv->nsections = send_pages * 4096 / sc.section_size;
    return 0;
}

/* GPA-direct SEND_RNDIS_PKT of bytes placed in the scratch pages. */
static int send_gpa_section(struct sim_netvsc *nv, uint32_t channel_type, const void *bytes,
                            uint32_t len, uint32_t page_off, uint64_t tid, uint32_t section,
                            uint32_t section_size);

static int send_gpa(struct sim_netvsc *nv, uint32_t channel_type, const void *bytes,
                    uint32_t len, uint32_t page_off, uint64_t tid)
{
    return send_gpa_section(nv, channel_type, bytes, len, page_off, tid, NVSP_INVALID_SECTION,
                            0);
}

/* GPA-direct SEND_RNDIS_PKT whose first section_size bytes are in send
 * section `section` (NVSP_INVALID_SECTION: none): hv_netvsc's partial copy. */
static int send_gpa_section(struct sim_netvsc *nv, uint32_t channel_type, const void *bytes,
                            uint32_t len, uint32_t page_off, uint64_t tid, uint32_t section,
                            uint32_t section_size)
{
    uint8_t *scratch = sim_gpa_ptr(nv->vm, sim_off_to_gpa(nv->vm, nv->scratch_off));
    if (page_off + len > SNV_SCRATCH_PAGES * 4096)
        return -E2BIG;
    if (bytes != scratch + page_off) /* else built in place */
        memcpy(scratch + page_off, bytes, len);
    uint32_t first = page_off / 4096, last = (page_off + len - 1) / 4096;
    uint8_t hdr[8 + 8 + 8 * SNV_SCRATCH_PAGES];
    uint32_t cnt = 1, npfn = last - first + 1;
    memset(hdr, 0, sizeof(hdr));
    memcpy(hdr + 4, &cnt, 4);
    uint32_t bc = len, bo = page_off % 4096;
    memcpy(hdr + 8, &bc, 4);
    memcpy(hdr + 12, &bo, 4);
    for (uint32_t i = 0; i < npfn; i++) {
        uint64_t pfn = sim_page_pfn(nv->vm, nv->scratch_off + (uint64_t)(first + i) * 4096);
        memcpy(hdr + 16 + 8 * i, &pfn, 8);
    }
    struct nvsp_msg m;
    memset(&m, 0, sizeof(m));
    m.type = NVSP_MSG1_SEND_RNDIS_PKT;
    m.u.rndis_pkt.channel_type = channel_type;
    m.u.rndis_pkt.section_index = section;
    m.u.rndis_pkt.section_size = section_size;
    /* control messages go on the primary, frames on tx_chan */
    return send_raw_on(nv, channel_type == 1 ? 0 : nv->tx_chan, VM_PKT_DATA_USING_GPA_DIRECT,
                       VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED, tid, hdr, 16 + 8 * npfn, &m,
                       sizeof(m));
}

int snv_rndis_request(struct sim_netvsc *nv, const void *msg, uint32_t len)
{
    uint64_t tid = ++nv->tid;
    nv->ctl_valid = false;
    nv->comp_valid = false;
    int r = send_gpa(nv, 1, msg, len, 0, tid);
    if (r < 0)
        return r;
    int st = wait_comp(nv, tid);
    if (st != NVSP_STAT_SUCCESS)
        return st < 0 ? st : -EPROTO;
    uint64_t end = sim_now_ms() + (uint64_t)sim_timeout_ms;
    while (!nv->ctl_valid) {
        if (sim_now_ms() > end)
            return -ETIMEDOUT;
        snv_poll(nv, 50, false);
    }
    uint32_t req_id, sent_id;
    memcpy(&req_id, nv->ctl + 8, 4);
    memcpy(&sent_id, (const uint8_t *)msg + 8, 4);
    if (req_id != sent_id) {
        fprintf(stderr, "snv_rndis_request: reply for request %u, not %u\n", req_id, sent_id);
        return -EPROTO;
    }
    return 0;
}

int64_t snv_query(struct sim_netvsc *nv, uint32_t oid, const void *in, uint32_t inlen,
                  void *out, uint32_t cap, uint32_t *outlen)
{
    uint8_t msg[512];
    struct rndis_hdr h = {RNDIS_MSG_QUERY, 28 + inlen};
    struct rndis_query_req q = {++nv->req_id, oid, inlen, 20, 0};
    memcpy(msg, &h, 8);
    memcpy(msg + 8, &q, sizeof(q));
    if (inlen)
        memcpy(msg + 28, in, inlen);
    int r = snv_rndis_request(nv, msg, h.len);
    if (r < 0)
        return r;
    struct rndis_query_complete qc;
    if (nv->ctl_len < 24)
        return -EPROTO;
    memcpy(&qc, nv->ctl + 8, sizeof(qc));
    /* rndis_filter_query_device's checks */
    *outlen = 0;
    if (qc.info_len) {
        if (qc.info_offset < 16 || qc.info_offset > nv->ctl_len - 8 ||
            qc.info_len > nv->ctl_len - 8 - qc.info_offset || qc.info_len > cap)
            return -EPROTO;
        memcpy(out, nv->ctl + 8 + qc.info_offset, qc.info_len);
        *outlen = qc.info_len;
    }
    return qc.status;
}

int64_t snv_set(struct sim_netvsc *nv, uint32_t oid, const void *in, uint32_t inlen)
{
    static __thread uint8_t msg[8192];
    if (28 + inlen > sizeof(msg))
        return -E2BIG;
    struct rndis_hdr h = {RNDIS_MSG_SET, 28 + inlen};
    struct rndis_query_req q = {++nv->req_id, oid, inlen, 20, 0};
    memcpy(msg, &h, 8);
    memcpy(msg + 8, &q, sizeof(q));
    memcpy(msg + 28, in, inlen);
    int r = snv_rndis_request(nv, msg, h.len);
    if (r < 0)
        return r;
    if (nv->ctl_len < 16)
        return -EPROTO;
    uint32_t st;
    memcpy(&st, nv->ctl + 12, 4);
    return st;
}

int snv_rndis_up(struct sim_netvsc *nv)
{
    uint8_t msg[24];
    struct rndis_hdr h = {RNDIS_MSG_INIT, 24};
    struct rndis_init_req in = {++nv->req_id, 1, 0, 0x4000};
    memcpy(msg, &h, 8);
    memcpy(msg + 8, &in, sizeof(in));
    int r = snv_rndis_request(nv, msg, sizeof(msg));
    if (r < 0)
        return r;
    struct rndis_init_complete ic;
    if (nv->ctl_len < 8 + sizeof(ic)) {
        fprintf(stderr, "snv_rndis_up: INIT_C too short\n");
        return -EPROTO;
    }
    memcpy(&ic, nv->ctl + 8, sizeof(ic));
    if (ic.status != RNDIS_STATUS_SUCCESS || ic.max_pkt_per_msg == 0) {
        fprintf(stderr, "snv_rndis_up: INIT_C status 0x%x\n", ic.status);
        return -EPROTO;
    }
    uint8_t buf[512];
    uint32_t n;
    /* Linux keeps the MTU it has (1500, or what `ip link set mtu` asked
     * for) unless the host's maximum frame size is smaller. */
    int64_t st = snv_query(nv, OID_GEN_MAXIMUM_FRAME_SIZE, NULL, 0, buf, 4, &n);
    nv->mtu = nv->ndis_mtu ? nv->ndis_mtu : 1500;
    uint32_t host_max;
    memcpy(&host_max, buf, 4);
    if (st == 0 && n == 4 && host_max < nv->mtu)
        nv->mtu = host_max;
    st = snv_query(nv, OID_802_3_PERMANENT_ADDRESS, NULL, 0, buf, 6, &n);
    if (st != 0 || n != 6) {
        fprintf(stderr, "snv_rndis_up: MAC query failed (%lld, %u)\n", (long long)st, n);
        return -EPROTO;
    }
    memcpy(nv->mac, buf, 6);
    st = snv_query(nv, OID_GEN_FRIENDLY_NAME, NULL, 0, buf, 512, &n); /* optional */
    if (st < 0)
        return (int)st;
    /* offload capabilities: the request carries the header of the
     * revision the guest understands */
    uint32_t size = nv->version >= NVSP_VERSION_5   ? NDIS_OFFLOAD_SIZE_REV3
                    : nv->version >= NVSP_VERSION_4 ? NDIS_OFFLOAD_SIZE_REV2
                                                    : NDIS_OFFLOAD_SIZE_REV1;
    uint8_t caps[NDIS_OFFLOAD_SIZE_REV3];
    memset(caps, 0, sizeof(caps));
    struct ndis_object_header oh = {NDIS_OBJECT_TYPE_OFFLOAD,
                                    (uint8_t)(size == NDIS_OFFLOAD_SIZE_REV3   ? 3
                                              : size == NDIS_OFFLOAD_SIZE_REV2 ? 2
                                                                               : 1),
                                    (uint16_t)size};
    memcpy(caps, &oh, sizeof(oh));
    st = snv_query(nv, OID_TCP_OFFLOAD_HARDWARE_CAPS, caps, size, buf, NDIS_OFFLOAD_SIZE_REV3,
                   &n);
    struct ndis_object_header got;
    memcpy(&got, buf, sizeof(got));
    if (st != 0 || n < 4 || got.type != NDIS_OBJECT_TYPE_OFFLOAD || got.revision < 1 ||
        got.size < NDIS_OFFLOAD_SIZE_REV1 || got.size > n) {
        fprintf(stderr, "snv_rndis_up: offload caps query failed (%lld, %u)\n", (long long)st,
                n);
        return -EPROTO;
    }
    memcpy(nv->offload_caps, buf, n < sizeof(nv->offload_caps) ? n : sizeof(nv->offload_caps));
    uint8_t params[28];
    memset(params, 0, sizeof(params));
    params[0] = 0x80; /* NDIS_OBJECT_TYPE_DEFAULT */
    params[1] = nv->version >= NVSP_VERSION_5 ? 3 : 2;
    uint16_t psize = nv->version >= NVSP_VERSION_5 ? 28 : 22;
    memcpy(params + 2, &psize, 2);
    /* rndis_netdev_set_hwcaps: LRO (on by default) when the host offers
     * RSC for both IP versions */
    nv->rsc_offered = n > NDIS_OFFLOAD_RSC_IP6_OFF && got.size > NDIS_OFFLOAD_RSC_IP6_OFF &&
                      buf[NDIS_OFFLOAD_RSC_IP4_OFF] && buf[NDIS_OFFLOAD_RSC_IP6_OFF];
    if (nv->rsc_offered && psize == 28)
        params[NDIS_OFFLOAD_PARAMS_RSC_IP4_OFF] = params[NDIS_OFFLOAD_PARAMS_RSC_IP6_OFF] =
            nv->lro_off ? NDIS_OFFLOAD_PARAMS_RSC_DISABLED : NDIS_OFFLOAD_PARAMS_RSC_ENABLED;
    st = snv_set(nv, OID_TCP_OFFLOAD_PARAMETERS, params, psize);
    if (st != 0) {
        fprintf(stderr, "snv_rndis_up: offload parameters refused (%lld)\n", (long long)st);
        return -EPROTO;
    }
    st = snv_query(nv, OID_GEN_MEDIA_CONNECT_STATUS, NULL, 0, buf, 4, &n);
    if (st < 0)
        return (int)st;
    if (n == 4)
        memcpy(&nv->link_status, buf, 4);
    if (nv->version >= NVSP_VERSION_5) {
        st = snv_query(nv, OID_GEN_LINK_SPEED, NULL, 0, buf, 4, &n);
        if (st < 0)
            return (int)st;
        uint8_t rss[18];
        memset(rss, 0, sizeof(rss));
        rss[0] = 0x88;
        rss[1] = 2;
        rss[2] = 18;
        st = snv_query(nv, OID_GEN_RECEIVE_SCALE_CAPABILITIES, rss, 18, buf, 18, &n);
        if (st < 0)
            return (int)st;
        /* rndis_filter_device_add: a failure or fewer than 2 queues
         * is one queue */
        nv->rss_queues = 0;
        nv->rss_table_entries = 0;
        if (st == 0 && n >= 18) {
            memcpy(&nv->rss_queues, buf + 12, 4);
            memcpy(&nv->rss_table_entries, buf + 16, 2);
            if (buf[0] != 0x88) {
                fprintf(stderr, "snv_rndis_up: RSS capabilities object type 0x%x\n", buf[0]);
                return -EPROTO;
            }
        } else if (st == 0) {
            fprintf(stderr, "snv_rndis_up: RSS capabilities of %u bytes\n", n);
            return -EPROTO;
        }
    }
    return 0;
}

int snv_bringup(struct sim_netvsc *nv, uint32_t version)
{
    int r = snv_nvsp_init(nv, version);
    if (r != 1) {
        fprintf(stderr, "snv_bringup: NVSP 0x%x refused (%d)\n", version, r);
        return r < 0 ? r : -EPROTO;
    }
    r = snv_buffers(nv, 512, 255);
    if (r < 0)
        return r;
    r = snv_rndis_up(nv);
    if (r < 0)
        return r;
    uint32_t filter = NDIS_PACKET_TYPE_DIRECTED | NDIS_PACKET_TYPE_ALL_MULTICAST |
                      NDIS_PACKET_TYPE_BROADCAST;
    int64_t st = snv_set(nv, OID_GEN_CURRENT_PACKET_FILTER, &filter, 4);
    return st == 0 ? 0 : -EPROTO;
}

int snv_send_frame(struct sim_netvsc *nv, const void *frame, uint32_t len, int section)
{
    uint64_t tid;
    nv->comp_valid = false;
    int r = snv_send_frame_async(nv, frame, len, section, &tid);
    if (r < 0)
        return r;
    return wait_comp(nv, tid);
}

int snv_send_frame_async(struct sim_netvsc *nv, const void *frame, uint32_t len, int section,
                         uint64_t *tid_out)
{
    return snv_send_frame_ppi(nv, frame, len, section, NULL, 0, tid_out);
}

int snv_send_frame_ppi(struct sim_netvsc *nv, const void *frame, uint32_t len, int section,
                       const void *ppi, uint32_t ppi_len, uint64_t *tid_out)
{
    /* The RNDIS message is built where the host reads it (the send section,
     * or the scratch pages at SNV_GPA_OFF for GPA-direct): the frame is
     * copied once, as hv_netvsc copies a frame into a section (not at all
     * when the caller built it there: snv_gpa_frame). */
    if (len + ppi_len + RNDIS_BODY_OFF + sizeof(struct rndis_packet) >
        SNV_SCRATCH_PAGES * 4096 - SNV_GPA_OFF)
        return -E2BIG;
    struct rndis_hdr h = {RNDIS_MSG_PACKET, 44 + ppi_len + len};
    struct rndis_packet p = {.data_offset = 36 + ppi_len, .data_len = len,
                             .ppi_offset = ppi_len ? 36 : 0, .ppi_len = ppi_len};
    uint8_t *msg;
    if (section >= 0) {
        if ((uint32_t)section >= nv->nsections || h.len > nv->section_size)
            return -EINVAL;
        msg = (uint8_t *)sim_gpa_ptr(nv->vm, sim_off_to_gpa(nv->vm, nv->send_off)) +
              (size_t)section * nv->section_size;
    } else {
        msg = (uint8_t *)sim_gpa_ptr(nv->vm, sim_off_to_gpa(nv->vm, nv->scratch_off)) + SNV_GPA_OFF;
    }
    memcpy(msg, &h, 8);
    memcpy(msg + 8, &p, sizeof(p));
    if (ppi_len)
        memcpy(msg + 44, ppi, ppi_len);
    if (msg + 44 + ppi_len != (const uint8_t *)frame)
        memcpy(msg + 44 + ppi_len, frame, len);
    uint64_t tid = ++nv->tid;
    *tid_out = tid;
    if (section < 0)
        return send_gpa(nv, 0, msg, h.len, SNV_GPA_OFF, tid);
    struct nvsp_msg m;
    memset(&m, 0, sizeof(m));
    m.type = NVSP_MSG1_SEND_RNDIS_PKT;
    m.u.rndis_pkt.channel_type = 0;
    m.u.rndis_pkt.section_index = (uint32_t)section;
    m.u.rndis_pkt.section_size = h.len;
    return send_raw_on(nv, nv->tx_chan, VM_PKT_DATA_INBAND,
                       VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED, tid, NULL, 0, &m, sizeof(m));
}

uint8_t *snv_gpa_frame(struct sim_netvsc *nv, uint32_t len, uint32_t ppi_len)
{
    if ((uint64_t)len + ppi_len + 44 > SNV_SCRATCH_PAGES * 4096 - SNV_GPA_OFF)
        return NULL;
    return (uint8_t *)sim_gpa_ptr(nv->vm, sim_off_to_gpa(nv->vm, nv->scratch_off)) + SNV_GPA_OFF +
           44 + ppi_len;
}

int snv_recv_frame(struct sim_netvsc *nv, void *buf, uint32_t cap, int timeout_ms)
{
    if (!nv->rxq_n)
        snv_poll(nv, timeout_ms, true);
    if (!nv->rxq_n)
        return -1;
    uint32_t len = nv->rxq[0].len;
    nv->last_has_csum = nv->rxq[0].has_csum;
    nv->last_csum = nv->rxq[0].csum;
    nv->last_chan = nv->rxq[0].chan;
    memcpy(buf, nv->rxq[0].data, len < cap ? len : cap);
    free(nv->rxq[0].data);
    memmove(&nv->rxq[0], &nv->rxq[1], sizeof(nv->rxq[0]) * (size_t)(nv->rxq_n - 1));
    nv->rxq_n--;
    return (int)len;
}

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }

uint32_t snv_csum_add(const uint8_t *p, size_t n, uint32_t s)
{
    for (size_t i = 0; i + 1 < n; i += 2)
        s += rd16(p + i);
    if (n & 1)
        s += (uint32_t)p[n - 1] << 8;
    return s;
}

uint16_t snv_csum_fold(uint32_t s)
{
    while (s >> 16)
        s = (s & 0xffff) + (s >> 16);
    return (uint16_t)s;
}

uint32_t snv_lso_frame(uint8_t *f, bool v6, uint32_t payload, const uint8_t dst[6])
{
    uint32_t l3 = 14, l4 = v6 ? 54 : 34, len = l4 + 20 + payload;
    memset(f, 0, len);
    memcpy(f, dst, 6);
    memcpy(f + 6, (const uint8_t[6]){0x00, 0x15, 0x5d, 9, 9, 9}, 6);
    f[12] = v6 ? 0x86 : 0x08;
    f[13] = v6 ? 0xdd : 0x00;
    if (v6) {
        f[l3] = 0x60;
        f[l3 + 6] = 6;    /* next header TCP */
        f[l3 + 7] = 64;
        f[l3 + 8] = 0x20; /* 2001:db8::1 -> 2001:db8::2 */
        f[l3 + 9] = 0x01;
        f[l3 + 10] = 0x0d;
        f[l3 + 11] = 0xb8;
        f[l3 + 23] = 1;
        memcpy(f + l3 + 24, f + l3 + 8, 16);
        f[l3 + 39] = 2;
    } else {
        f[l3] = 0x45;
        f[l3 + 8] = 64;
        f[l3 + 9] = 6;
        memcpy(f + l3 + 12, (const uint8_t[8]){192, 0, 2, 1, 192, 0, 2, 2}, 8);
    }
    f[l4 + 1] = 80;   /* ports */
    f[l4 + 3] = 99;
    f[l4 + 12] = 0x50; /* 20-byte header */
    f[l4 + 13] = 0x18;
    for (uint32_t i = 0; i < payload; i++)
        f[l4 + 20 + i] = (uint8_t)(i * 7 + 3);
    uint32_t ps = v6 ? snv_csum_add(f + l3 + 8, 32, 0) : snv_csum_add(f + l3 + 12, 8, 0);
    uint16_t c = snv_csum_fold(ps + 6);
    f[l4 + 16] = (uint8_t)(c >> 8);
    f[l4 + 17] = (uint8_t)c;
    return len;
}


uint32_t snv_gso_frame(uint8_t *b, bool v6, uint32_t payload, const uint8_t dst[6],
                       bool data_valid)
{
    uint8_t *f = b + 10;
    uint32_t len = snv_lso_frame(f, v6, payload, dst), l4 = v6 ? 54 : 34;
    uint32_t ps;
    if (v6) {
        f[18] = (uint8_t)((len - 54) >> 8);
        f[19] = (uint8_t)(len - 54);
        ps = snv_csum_add(f + 22, 32, 0);
    } else {
        f[16] = (uint8_t)((len - 14) >> 8);
        f[17] = (uint8_t)(len - 14);
        uint16_t ic = (uint16_t)~snv_csum_fold(snv_csum_add(f + 14, 20, 0));
        f[24] = (uint8_t)(ic >> 8);
        f[25] = (uint8_t)ic;
        ps = snv_csum_add(f + 26, 8, 0);
    }
    uint16_t c = data_valid ? 0xdead : snv_csum_fold(ps + 6 + len - l4);
    f[l4 + 16] = (uint8_t)(c >> 8);
    f[l4 + 17] = (uint8_t)c;
    uint16_t hl = (uint16_t)(l4 + 20), mss = 1448;
    uint16_t cs = data_valid ? 0 : (uint16_t)l4, co = data_valid ? 0 : 16;
    b[0] = data_valid ? 2 : 1;
    b[1] = v6 ? 4 : 1;
    memcpy(b + 2, &hl, 2);
    memcpy(b + 4, &mss, 2);
    memcpy(b + 6, &cs, 2);
    memcpy(b + 8, &co, 2);
    return 10 + len;
}

bool snv_tcp_frame_ok(const uint8_t *f, uint32_t len)
{
    if (len < 54)
        return false;
    bool v6 = f[12] == 0x86 && f[13] == 0xdd;
    uint32_t l4 = v6 ? 54 : 34;
    uint32_t ps;
    if (v6) {
        if (len < 74 || rd16(f + 18) != len - 54)
            return false;
        ps = snv_csum_add(f + 22, 32, 0);
    } else {
        if (rd16(f + 16) != len - 14 || snv_csum_fold(snv_csum_add(f + 14, 20, 0)) != 0xffff)
            return false;
        ps = snv_csum_add(f + 26, 8, 0);
    }
    return snv_csum_fold(snv_csum_add(f + l4, len - l4, ps + 6 + len - l4)) == 0xffff;
}

/* 192.0.2.1/24 on the interface, and 192.0.2.2 at mac (no ARP needed). */
int snv_ipv4_setup(const char *name, const uint8_t mac[6])
{
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
    struct sockaddr_in *sin = (struct sockaddr_in *)&ifr.ifr_addr;
    sin->sin_family = AF_INET;
    inet_pton(AF_INET, "192.0.2.1", &sin->sin_addr);
    int r = ioctl(s, SIOCSIFADDR, &ifr);
    inet_pton(AF_INET, "255.255.255.0", &sin->sin_addr);
    if (r == 0)
        r = ioctl(s, SIOCSIFNETMASK, &ifr);
    struct arpreq ar;
    memset(&ar, 0, sizeof(ar));
    sin = (struct sockaddr_in *)&ar.arp_pa;
    sin->sin_family = AF_INET;
    inet_pton(AF_INET, "192.0.2.2", &sin->sin_addr);
    ar.arp_ha.sa_family = ARPHRD_ETHER;
    memcpy(ar.arp_ha.sa_data, mac, 6);
    ar.arp_flags = ATF_COM | ATF_PERM;
    snprintf(ar.arp_dev, sizeof(ar.arp_dev), "%s", name);
    if (r == 0)
        r = ioctl(s, SIOCSARP, &ar);
    close(s);
    return r;
}

int snv_if_mac(const char *ifname, uint8_t mac[6])
{
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
    int r = s < 0 ? -1 : ioctl(s, SIOCGIFHWADDR, &ifr);
    if (r == 0)
        memcpy(mac, ifr.ifr_hwaddr.sa_data, 6);
    if (s >= 0)
        close(s);
    return r < 0 ? -1 : 0;
}

int snv_link_up(const char *ifname)
{
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return -1;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
    int r = ioctl(s, SIOCGIFFLAGS, &ifr);
    if (r == 0) {
        ifr.ifr_flags |= IFF_UP;
        r = ioctl(s, SIOCSIFFLAGS, &ifr);
    }
    int e = errno;
    close(s);
    errno = e;
    return r;
}

int snv_send_partial(struct sim_netvsc *nv, const void *a, uint32_t alen, const void *b,
                     uint32_t blen, uint32_t section)
{
    if (section >= nv->nsections)
        return -EINVAL;
    /* A, then B's RNDIS header, in the section; B's frame in GPA ranges */
    uint8_t *sb = sim_gpa_ptr(nv->vm, sim_off_to_gpa(nv->vm, nv->send_off)) +
                  (size_t)section * nv->section_size;
    uint32_t amsg = (44 + alen + 7) & ~7u;
    if (amsg + 44 > nv->section_size)
        return -E2BIG;
    struct rndis_hdr h = {RNDIS_MSG_PACKET, amsg};
    struct rndis_packet p = {.data_offset = 36, .data_len = alen};
    memset(sb, 0, amsg);
    memcpy(sb, &h, 8);
    memcpy(sb + 8, &p, sizeof(p));
    memcpy(sb + 44, a, alen);
    h.len = 44 + blen;
    p.data_len = blen;
    memcpy(sb + amsg, &h, 8);
    memcpy(sb + amsg + 8, &p, sizeof(p));
    uint64_t tid = ++nv->tid;
    nv->comp_valid = false;
    int r = send_gpa_section(nv, 0, b, blen, 300, tid, section, amsg + 44);
    if (r < 0)
        return r;
    return wait_comp(nv, tid);
}

int snv_subchannel_request(struct sim_netvsc *nv, uint32_t n, uint32_t *allocated)
{
    struct nvsp_msg m;
    memset(&m, 0, sizeof(m));
    m.type = NVSP_MSG5_SUBCHANNEL;
    m.u.subchannel.op = NVSP_SUBCHANNEL_ALLOCATE;
    m.u.subchannel.num_subchannels = n;
    int st = snv_nvsp_request(nv, &m, sizeof(m));
    if (st < 0)
        return st;
    struct nvsp_subchannel_complete c;
    memcpy(&c, nv->comp + 4, sizeof(c));
    *allocated = c.num_subchannels;
    return st;
}

int snv_open_subchannels(struct sim_netvsc *nv, uint32_t n)
{
    const struct sim_offer *prim = sim_find_offer(nv->vm, nv->ch->relid);
    uint64_t end = sim_now_ms() + (uint64_t)sim_timeout_ms;
    for (uint32_t idx = 1; idx <= n; idx++) {
        struct sim_offer *of = NULL;
        while (!of) {
            for (int k = 0; k < nv->vm->noffers && !of; k++) {
                struct sim_offer *o = &nv->vm->offers[k];
                if (o->valid && !o->rescinded && o->sub_channel_index == idx &&
                    memcmp(&o->if_type, snv_class(), 16) == 0 &&
                    memcmp(&o->if_instance, &prim->if_instance, 16) == 0)
                    of = o;
            }
            if (!of) {
                if (sim_now_ms() > end) {
                    fprintf(stderr, "snv_open_subchannels: no offer for subchannel %u\n", idx);
                    return -ETIMEDOUT;
                }
                sim_poll(nv->vm, 10);
            }
        }
        if (nv->nch == SNV_MAX_CHANNELS)
            return -E2BIG;
        int status = 0;
        struct sim_chan *ch = sim_chan_open(nv->vm, of->relid, nv->ch->out.size / 4096 + 1,
                                            nv->ch->in.size / 4096 + 1, &status);
        if (!ch) {
            fprintf(stderr, "snv_open_subchannels: open subchannel %u: %d\n", idx, status);
            return -EIO;
        }
        ch->recv_whole = true;
        nv->chans[nv->nch++] = ch;
    }
    return 0;
}

int64_t snv_set_rss(struct sim_netvsc *nv, uint16_t flags, uint32_t entries, uint32_t channels,
                    uint16_t key_size, uint32_t table_bytes)
{
    static uint8_t info[8000];
    struct ndis_rss_params p;
    memset(&p, 0, sizeof(p));
    p.hdr.type = NDIS_OBJECT_TYPE_RSS_PARAMETERS;
    p.hdr.revision = 2;
    p.hdr.size = sizeof(p);
    p.flags = flags;
    p.hash_info = NDIS_HASH_FUNC_TOEPLITZ | 0x100 | 0x200 | 0x400 | 0x1000;
    p.table_size = (uint16_t)table_bytes;
    p.table_offset = sizeof(p);
    p.key_size = key_size;
    p.key_offset = sizeof(p) + 4 * entries;
    uint32_t len = sizeof(p) + 4 * entries + key_size;
    if (len > sizeof(info))
        return -E2BIG;
    memcpy(info, &p, sizeof(p));
    for (uint32_t i = 0; i < entries; i++) {
        uint32_t q = channels ? i % channels : 0;
        memcpy(info + sizeof(p) + 4 * i, &q, 4);
    }
    for (uint32_t i = 0; i < key_size; i++)
        info[sizeof(p) + 4 * entries + i] = (uint8_t)(0x6d + 13 * i);
    return snv_set(nv, OID_GEN_RECEIVE_SCALE_PARAMETERS, info, len);
}

int snv_vrss(struct sim_netvsc *nv, uint32_t cpus)
{
    uint32_t chn = cpus < nv->rss_queues ? cpus : nv->rss_queues;
    if (chn > 64)
        chn = 64;
    if (chn < 2)
        return 1;
    uint32_t allocated = 0;
    int st = snv_subchannel_request(nv, chn - 1, &allocated);
    if (st != NVSP_STAT_SUCCESS) {
        fprintf(stderr, "snv_vrss: subchannel request status %d\n", st);
        return st < 0 ? st : -EPROTO;
    }
    if (allocated > chn - 1) {
        fprintf(stderr, "snv_vrss: %u subchannels allocated, %u asked for\n", allocated,
                chn - 1);
        return -EPROTO;
    }
    int r = snv_open_subchannels(nv, allocated);
    if (r < 0)
        return r;
    uint32_t entries = nv->rss_table_entries && nv->rss_table_entries <= 256
                           ? nv->rss_table_entries
                           : 128;
    /* failures are only logged by Linux: the test checks the statuses */
    int64_t s1 = snv_set_rss(nv, NDIS_RSS_PARAM_FLAG_DISABLE_RSS, entries, 1 + allocated, 40,
                             4 * entries);
    int64_t s2 = snv_set_rss(nv, 0, entries, 1 + allocated, 40, 4 * entries);
    if (s1 != 0 || s2 != 0) {
        fprintf(stderr, "snv_vrss: RSS parameters refused (0x%llx, 0x%llx)\n",
                (unsigned long long)s1, (unsigned long long)s2);
        return -EPROTO;
    }
    return (int)(1 + allocated);
}
