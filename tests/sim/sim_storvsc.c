/* SPDX-License-Identifier: MIT */
#include "sim_storvsc.h"

#include <errno.h>

#include "common/guid.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VMBUS_RQST_INIT 0xFFFFFFFFFFFFFFFDull
/* Page lists up to 256 KiB + an offset page built on the stack. */
#define SIM_STOR_STACK_PFNS 65

static bool is_storvsp(const struct sim_offer *o)
{
    struct hv_guid cls;
    guid_parse(VSTOR_CLASS_SCSI, &cls);
    return o->valid && !o->rescinded && memcmp(&o->if_type, &cls, sizeof(cls)) == 0;
}

struct sim_stor *sim_stor_open(struct sim_vm *vm, int n)
{
    return sim_stor_open_rings(vm, n, SIM_STOR_RING_PAGES, SIM_STOR_RING_PAGES);
}

struct sim_stor *sim_stor_open_rings(struct sim_vm *vm, int n, uint32_t send_pages,
                                     uint32_t recv_pages)
{
    struct sim_offer *of = NULL;
    for (int i = 0; i < vm->noffers && !of; i++)
        if (is_storvsp(&vm->offers[i]) && vm->offers[i].sub_channel_index == 0 && n-- == 0)
            of = &vm->offers[i];
    if (!of) {
        fprintf(stderr, "sim_stor_open(%s): no storvsp offer #%d\n", vm->name, n);
        return NULL;
    }
    struct sim_stor *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->vm = vm;
    s->relid = of->relid;
    s->pkt_size = VSTOR_PACKET_SIZE;
    s->next_trans = 1;
    /* Linux copies each host packet into an 80-byte buffer (descriptor +
     * vstor packet): a longer completion would be cut. */
    vm->max_pkt = 16 + VSTOR_PACKET_SIZE;
    int status = 0;
    s->ch[0] = sim_chan_open(vm, of->relid, send_pages, recv_pages, &status);
    if (!s->ch[0]) {
        fprintf(stderr, "sim_stor_open(%s): open relid %u: %d\n", vm->name, of->relid, status);
        free(s);
        return NULL;
    }
    s->nch = 1;
    return s;
}

void sim_stor_free(struct sim_stor *s)
{
    if (!s)
        return;
    for (int i = s->nch - 1; i >= 0; i--)
        if (s->ch[i] && s->ch[i]->open)
            sim_chan_close(s->ch[i]);
    free(s);
}

int sim_stor_send(struct sim_stor *s, int i, const void *pkt, uint32_t len, uint64_t trans_id)
{
    uint64_t end = sim_now_ms() + (uint64_t)SIM_TIMEOUT_MS;
    for (;;) {
        int r = sim_chan_send(s->ch[i], VM_PKT_DATA_INBAND,
                              VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED, trans_id, pkt, len);
        if (r != -EAGAIN || sim_now_ms() > end)
            return r;
        sim_poll(s->vm, 10);
    }
}

static struct sim_stor_comp *pending_find(struct sim_stor *s, uint64_t trans_id)
{
    for (int k = 0; k < SIM_STOR_PENDING; k++)
        if (s->pending[k].used && s->pending[k].trans_id == trans_id)
            return &s->pending[k];
    return NULL;
}

/* One host packet taken from channel i: an unsolicited one is counted, a
 * completion kept.  What Linux would drop counts as bad. */
static void take(struct sim_stor *s, const struct vmpacket_descriptor *d, const uint8_t *buf,
                 uint32_t len)
{
    if (d->trans_id == 0) {
        uint32_t op = 0;
        if (len < 4) {
            s->bad_packets++;
            return;
        }
        memcpy(&op, buf, 4);
        if (op == VSTOR_OP_ENUMERATE_BUS || op == VSTOR_OP_REMOVE_DEVICE)
            s->enumerate_bus++;
        else
            s->bad_packets++;
        return;
    }
    if (d->type != VM_PKT_COMP || len < s->pkt_size) {
        fprintf(stderr, "sim_stor(%s): host packet type %u len %u for %#llx dropped\n",
                s->vm->name, d->type, len, (unsigned long long)d->trans_id);
        s->bad_packets++;
        return;
    }
    for (int k = 0; k < SIM_STOR_PENDING; k++)
        if (!s->pending[k].used) {
            s->pending[k].used = true;
            s->pending[k].trans_id = d->trans_id;
            s->pending[k].len = len;
            memset(&s->pending[k].pkt, 0, sizeof(s->pending[k].pkt));
            memcpy(&s->pending[k].pkt, buf, len < VSTOR_PACKET_SIZE ? len : VSTOR_PACKET_SIZE);
            return;
        }
    s->bad_packets++;
}

int sim_stor_wait(struct sim_stor *s, int i, uint64_t trans_id, struct vstor_packet *rep,
                  uint32_t *len, int timeout_ms)
{
    uint64_t end = sim_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        struct sim_stor_comp *c = pending_find(s, trans_id);
        if (c) {
            if (rep)
                *rep = c->pkt;
            if (len)
                *len = c->len;
            s->last_len = c->len;
            c->used = false;
            return 1;
        }
        int64_t left = (int64_t)(end - sim_now_ms());
        if (left <= 0)
            return 0;
        struct vmpacket_descriptor d;
        uint8_t buf[256];
        uint32_t l = 0;
        if (sim_chan_recv(s->ch[i], &d, buf, sizeof(buf), &l, (int)left) != 1)
            return 0;
        take(s, &d, buf, l);
    }
}

int sim_stor_take_any(struct sim_stor *s, int i, uint64_t *trans_id, struct vstor_packet *rep)
{
    for (;;) {
        struct vmpacket_descriptor d;
        uint8_t buf[256];
        uint32_t l = 0;
        if (sim_chan_recv_batched(s->ch[i], &d, buf, sizeof(buf), &l) != 1)
            return 0;
        if (d.trans_id == 0 || d.type != VM_PKT_COMP || l < s->pkt_size) {
            take(s, &d, buf, l); /* counted: unsolicited or bad */
            continue;
        }
        *trans_id = d.trans_id;
        memset(rep, 0, sizeof(*rep));
        memcpy(rep, buf, l < sizeof(*rep) ? l : sizeof(*rep));
        s->last_len = l;
        return 1;
    }
}

int sim_stor_call(struct sim_stor *s, int i, const struct vstor_packet *req, uint32_t len,
                  struct vstor_packet *rep, uint32_t *replen)
{
    uint64_t t = s->next_trans++;
    int r = sim_stor_send(s, i, req, len, t);
    if (r < 0)
        return r;
    if (sim_stor_wait(s, i, t, rep, replen, SIM_TIMEOUT_MS) != 1)
        return -ETIMEDOUT;
    return 0;
}

static int init_step(struct sim_stor *s, uint32_t op, const void *body, size_t blen,
                     uint32_t size, struct vstor_packet *rep)
{
    struct vstor_packet req = {.operation = op, .flags = 1};
    if (body)
        memcpy(&req.u, body, blen);
    memset(rep, 0, sizeof(*rep)); /* the callers print its status when a step fails */
    uint32_t rl = 0;
    /* Linux's init requests all carry the same transaction id. */
    int r = sim_stor_send(s, 0, &req, size, VMBUS_RQST_INIT);
    if (r < 0)
        return r;
    if (sim_stor_wait(s, 0, VMBUS_RQST_INIT, rep, &rl, SIM_TIMEOUT_MS) != 1)
        return -ETIMEDOUT;
    if (rep->operation != VSTOR_OP_COMPLETE_IO)
        return -EPROTO;
    return 0;
}

int sim_stor_init(struct sim_stor *s, const uint16_t *versions, int n, uint32_t init_size)
{
    struct vstor_packet rep;
    s->pkt_size = init_size;
    if (init_step(s, VSTOR_OP_BEGIN_INITIALIZATION, NULL, 0, init_size, &rep) < 0 ||
        rep.status != 0) {
        fprintf(stderr, "sim_stor_init: BEGIN_INITIALIZATION failed (status %#x)\n", rep.status);
        return -1;
    }
    s->version = 0;
    for (int k = 0; k < n && !s->version; k++) {
        struct vstor_version v = {.major_minor = versions[k]};
        if (init_step(s, VSTOR_OP_QUERY_PROTOCOL_VERSION, &v, sizeof(v), init_size, &rep) < 0) {
            fprintf(stderr, "sim_stor_init: QUERY_PROTOCOL_VERSION %#x: no answer\n",
                    versions[k]);
            return -1;
        }
        if (rep.status == 0)
            s->version = versions[k];
        else if (rep.status != VSTOR_STATUS_REVISION_MISMATCH) {
            fprintf(stderr, "sim_stor_init: QUERY_PROTOCOL_VERSION %#x: status %#x\n",
                    versions[k], rep.status);
            return -1;
        }
    }
    if (!s->version) {
        fprintf(stderr, "sim_stor_init: no version accepted\n");
        return -1;
    }
    s->pkt_size = s->version >= VSTOR_VERSION_WIN8 ? VSTOR_PACKET_SIZE
                                                     : VSTOR_PACKET_SIZE_PRE_WIN8;
    if (init_step(s, VSTOR_OP_QUERY_PROPERTIES, NULL, 0, s->pkt_size, &rep) < 0 ||
        rep.status != 0) {
        fprintf(stderr, "sim_stor_init: QUERY_PROPERTIES failed (status %#x)\n", rep.status);
        return -1;
    }
    s->props = rep.u.props;
    if (init_step(s, VSTOR_OP_END_INITIALIZATION, NULL, 0, s->pkt_size, &rep) < 0 ||
        rep.status != 0) {
        fprintf(stderr, "sim_stor_init: END_INITIALIZATION failed (status %#x)\n", rep.status);
        return -1;
    }
    return 0;
}

int sim_stor_subchannels(struct sim_stor *s, uint16_t n)
{
    struct vstor_packet req = {.operation = VSTOR_OP_CREATE_SUB_CHANNELS, .flags = 1}, rep;
    req.u.sub_channel_count = n;
    if (init_step(s, VSTOR_OP_CREATE_SUB_CHANNELS, &req.u, sizeof(req.u), s->pkt_size, &rep) <
            0 ||
        rep.status != 0) {
        fprintf(stderr, "sim_stor_subchannels(%u): status %#x\n", n, rep.status);
        return -1;
    }
    const struct sim_offer *prim = sim_find_offer(s->vm, s->relid);
    uint64_t end = sim_now_ms() + (uint64_t)SIM_TIMEOUT_MS;
    for (uint16_t idx = 1; idx <= n; idx++) {
        struct sim_offer *of = NULL;
        while (!of) {
            for (int k = 0; k < s->vm->noffers && !of; k++) {
                struct sim_offer *o = &s->vm->offers[k];
                if (is_storvsp(o) && o->sub_channel_index == idx &&
                    memcmp(&o->if_instance, &prim->if_instance, 16) == 0)
                    of = o;
            }
            if (!of) {
                if (sim_now_ms() > end) {
                    fprintf(stderr, "sim_stor_subchannels: no offer for subchannel %u\n", idx);
                    return -1;
                }
                sim_poll(s->vm, 10);
            }
        }
        if (s->nch == SIM_STOR_MAX_CHANNELS)
            return -1;
        int status = 0;
        s->ch[s->nch] =
            sim_chan_open(s->vm, of->relid, SIM_STOR_RING_PAGES, SIM_STOR_RING_PAGES, &status);
        if (!s->ch[s->nch]) {
            fprintf(stderr, "sim_stor_subchannels: open subchannel %u: %d\n", idx, status);
            return -1;
        }
        s->nch++;
    }
    return 0;
}

int sim_stor_send_gpa(struct sim_stor *s, int i, uint64_t trans_id, uint32_t range_len,
                      uint32_t pgoff, const uint64_t *pfns, uint32_t npfn, const void *pkt,
                      uint32_t len)
{
    /* reserved u32, range count u32, then {len u32, offset u32, pfn[]} */
    uint32_t hlen = 16 + 8 * npfn;
    uint64_t onstack[2 + SIM_STOR_STACK_PFNS] = {0}; /* storvsc's own request holds it */
    uint8_t *hdr = npfn <= SIM_STOR_STACK_PFNS ? (uint8_t *)onstack : calloc(1, hlen);
    if (!hdr)
        return -ENOMEM;
    uint32_t one = 1;
    memcpy(hdr + 4, &one, 4);
    memcpy(hdr + 8, &range_len, 4);
    memcpy(hdr + 12, &pgoff, 4);
    memcpy(hdr + 16, pfns, 8 * (size_t)npfn);
    uint64_t end = sim_now_ms() + (uint64_t)SIM_TIMEOUT_MS;
    int r;
    for (;;) {
        r = sim_chan_send_hdr(s->ch[i], VM_PKT_DATA_USING_GPA_DIRECT,
                              VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED, trans_id, hdr, hlen,
                              pkt, len);
        if (r != -EAGAIN || sim_now_ms() > end)
            break;
        sim_poll(s->vm, 10);
    }
    if (hdr != (uint8_t *)onstack)
        free(hdr);
    return r;
}

struct vstor_packet sim_stor_srb_packet(const struct sim_stor *s, uint8_t lun, const uint8_t *cdb,
                                        uint8_t cdb_len, uint8_t data_in, uint32_t len)
{
    struct vstor_packet p = {.operation = VSTOR_OP_EXECUTE_SRB, .flags = 1};
    struct vstor_srb *srb = &p.u.srb;
    srb->length = s->pkt_size == VSTOR_PACKET_SIZE ? VSTOR_SRB_SIZE : VSTOR_SRB_SIZE_PRE_WIN8;
    srb->lun = lun;
    srb->cdb_length = cdb_len;
    srb->sense_info_length =
        s->pkt_size == VSTOR_PACKET_SIZE ? VSTOR_SENSE_SIZE : VSTOR_SENSE_SIZE_PRE_WIN8;
    srb->data_in = data_in;
    srb->data_transfer_length = len;
    memcpy(srb->cdb_sense, cdb, cdb_len > 16 ? 16 : cdb_len);
    srb->queue_tag = 0xFF;
    srb->queue_action = 0x20;
    srb->srb_flags = 0x08 | (data_in == VSTOR_DATA_IN ? 0x40 : data_in == VSTOR_DATA_OUT ? 0x80 : 0);
    srb->time_out_value = 60;
    return p;
}

uint64_t sim_stor_srb_send(struct sim_stor *s, int i, uint8_t lun, const uint8_t *cdb,
                           uint8_t cdb_len, uint8_t data_in, uint64_t buf_off, uint32_t buf_pgoff,
                           uint32_t len)
{
    struct vstor_packet p = sim_stor_srb_packet(s, lun, cdb, cdb_len, data_in, len);
    uint64_t t = s->next_trans++;
    int r;
    if (!len) {
        r = sim_stor_send(s, i, &p, s->pkt_size, t);
    } else {
        uint32_t npfn = (buf_pgoff + len + 4095) / 4096;
        uint64_t onstack[SIM_STOR_STACK_PFNS];
        uint64_t *pfns = npfn <= SIM_STOR_STACK_PFNS ? onstack : calloc(npfn, sizeof(*pfns));
        if (!pfns)
            return 0;
        for (uint32_t k = 0; k < npfn; k++)
            pfns[k] = sim_page_pfn(s->vm, buf_off + 4096ull * k);
        r = sim_stor_send_gpa(s, i, t, len, buf_pgoff, pfns, npfn, &p, s->pkt_size);
        if (pfns != onstack)
            free(pfns);
    }
    return r < 0 ? 0 : t;
}

int sim_stor_srb(struct sim_stor *s, int i, uint8_t lun, const uint8_t *cdb, uint8_t cdb_len,
                 uint8_t data_in, uint64_t buf_off, uint32_t len, struct vstor_srb *srb,
                 uint32_t *status)
{
    uint64_t t = sim_stor_srb_send(s, i, lun, cdb, cdb_len, data_in, buf_off, 0, len);
    if (!t)
        return -1;
    struct vstor_packet rep;
    if (sim_stor_wait(s, i, t, &rep, NULL, SIM_TIMEOUT_MS) != 1)
        return -1;
    if (srb)
        *srb = rep.u.srb;
    if (status)
        *status = rep.status;
    return 0;
}

void sim_stor_rw10_cdb(uint8_t cdb[10], bool write, uint32_t lba, uint16_t nblocks)
{
    memset(cdb, 0, 10);
    cdb[0] = write ? 0x2A : 0x28;
    cdb[2] = (uint8_t)(lba >> 24);
    cdb[3] = (uint8_t)(lba >> 16);
    cdb[4] = (uint8_t)(lba >> 8);
    cdb[5] = (uint8_t)lba;
    cdb[7] = (uint8_t)(nblocks >> 8);
    cdb[8] = (uint8_t)nblocks;
}

uint64_t sim_stor_rw_send(struct sim_stor *s, int i, uint8_t lun, bool write, uint32_t lba,
                          uint16_t nblocks, uint64_t buf_off)
{
    uint8_t cdb[10];
    sim_stor_rw10_cdb(cdb, write, lba, nblocks);
    return sim_stor_srb_send(s, i, lun, cdb, 10, write ? VSTOR_DATA_OUT : VSTOR_DATA_IN, buf_off,
                             0, nblocks * 512u);
}

int sim_stor_rw(struct sim_stor *s, int i, uint8_t lun, bool write, uint32_t lba,
                uint16_t nblocks, uint64_t buf_off, struct vstor_srb *srb)
{
    uint8_t cdb[10];
    sim_stor_rw10_cdb(cdb, write, lba, nblocks);
    return sim_stor_srb(s, i, lun, cdb, 10, write ? VSTOR_DATA_OUT : VSTOR_DATA_IN, buf_off,
                        nblocks * 512u, srb, NULL);
}
