/* SPDX-License-Identifier: MIT */
#include "stor_sim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim_storvsc.h"
#include "bench.h"
#include "simvm.h"

#define VM_NAME "bench-stor"
#define MAX_INFLIGHT 256
#define TRANS_SLOTS 4096 /* > MAX_INFLIGHT: requests overtaken by this many are lost */

/* Signals the guest got on all its channels so far. */
static uint64_t events(const struct sim_stor *s)
{
    uint64_t ev = 0;
    for (int c = 0; c < s->nch; c++)
        ev += s->ch[c]->events;
    return ev;
}

int stor_sim_run(const char *path, uint64_t size, int channels, const struct stor_load *l,
                 struct stor_load_result *res)
{
    if (channels < 1 || channels > SIM_STOR_MAX_CHANNELS)
        return -1;
    char disk[300], sub[8];
    snprintf(disk, sizeof(disk), "%s lun=0", path);
    snprintf(sub, sizeof(sub), "%d", channels - 1);
    const struct sim_vm_cfg vms[] = {{VM_NAME, "storvsp"}};
    const struct sim_vm_param vp[] = {{VM_NAME, "storvsp", "disk", disk},
                                      {NULL, NULL, NULL, NULL}};
    const struct sim_vsp_param gp[] = {{"storvsp", "max_subchannels", sub}};
    simd_vm_params = vp;
    sim_expect_offers_default = 0;
    struct sim_daemon *d = simd_start_params(vms, 1, 1, gp, 1);
    simd_vm_params = NULL;
    if (!d)
        return -1;
    int ret = -1;
    struct sim_stor *s = NULL;
    struct sim_vm *vm = sim_vm_new(d, &(struct sim_vm_opts){.name = VM_NAME,
                                                            .mem_size = 256ull << 20});
    static const uint16_t v[] = {VSTOR_VERSION_WIN10};
    if (!vm || sim_bringup(vm, VMBUS_VERSION_WIN10_V5_3) < 0 || !(s = sim_stor_open(vm, 0)) ||
        sim_stor_init(s, v, 1, VSTOR_PACKET_SIZE) < 0 ||
        (channels > 1 && sim_stor_subchannels(s, (uint16_t)(channels - 1)) < 0)) {
        fprintf(stderr, "stor-sim: cannot bring storvsp up\n");
        goto out;
    }
    /* A request longer than max_transfer_bytes is split into requests of
     * that size, all in flight at once, as the guest splits it. */
    uint32_t max = s->props.max_transfer_bytes & ~4095u;
    uint32_t bs = max && l->bs > max ? max : (uint32_t)l->bs;
    unsigned qd = l->qd * (unsigned)(l->bs / bs);
    if (qd > MAX_INFLIGHT) {
        fprintf(stderr, "stor-sim: %u requests in flight, more than %u\n", qd, MAX_INFLIGHT);
        goto out;
    }
    uint32_t pages = (bs + 4095) / 4096;
    uint64_t buf = sim_alloc_pages(vm, pages * qd);
    /* Buffers by index; a completion finds its buffer by transaction id
     * (ids are sequential: a small table, as storvsc's request table). */
    unsigned freelist[MAX_INFLIGHT], nfree = qd;
    uint64_t trans_of[MAX_INFLIGHT] = {0};
    static uint16_t idx_of[TRANS_SLOTS];
    for (unsigned k = 0; k < qd; k++)
        freelist[k] = qd - 1 - k;
    uint64_t blocks = size / bs, next = 0, ops = 0, seed = 0x9e3779b97f4a7c15ull;
    uint64_t end = sim_now_ns() + (uint64_t)(l->seconds * 1e9), t0 = sim_now_ns();
    double c0 = cpu_s();
    unsigned inflight = 0, rr = 0;
    bool stop = false;
    for (;;) {
        /* Keep qd requests in flight: what completed is sent again, in
         * one go (as fio in a guest reaps, then submits). */
        while (!stop && nfree) {
            uint64_t blk;
            if (l->random) {
                seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
                blk = seed % blocks;
            } else {
                blk = next++ % blocks;
            }
            uint64_t lba = blk * (bs / 512);
            uint8_t cdb[16] = {l->write ? 0x8A : 0x88};
            for (int k = 0; k < 8; k++)
                cdb[2 + k] = (uint8_t)(lba >> (56 - 8 * k));
            uint32_t nb = bs / 512;
            cdb[10] = (uint8_t)(nb >> 24), cdb[11] = (uint8_t)(nb >> 16);
            cdb[12] = (uint8_t)(nb >> 8), cdb[13] = (uint8_t)nb;
            unsigned idx = freelist[--nfree];
            int ch = (int)(rr++ % (unsigned)s->nch);
            uint64_t t = sim_stor_srb_send(s, ch, 0, cdb, 16,
                                           l->write ? VSTOR_DATA_OUT : VSTOR_DATA_IN,
                                           buf + 4096ull * pages * idx, 0, bs);
            if (!t) {
                fprintf(stderr, "stor-sim: send failed\n");
                goto out;
            }
            uint16_t other = idx_of[t % TRANS_SLOTS];
            if (other < qd && trans_of[other] && trans_of[other] % TRANS_SLOTS == t % TRANS_SLOTS) {
                fprintf(stderr, "stor-sim: request %#llx still in flight after %u more\n",
                        (unsigned long long)trans_of[other], TRANS_SLOTS);
                goto out;
            }
            idx_of[t % TRANS_SLOTS] = (uint16_t)idx;
            trans_of[idx] = t;
            inflight++;
        }
        if (!inflight)
            break;
        /* Every channel's completions, in the order they come (storvsc's
         * channel callback); then wait for a signal if there were none. */
        uint64_t ev = events(s);
        unsigned got = 0;
        for (int c = 0; c < s->nch; c++) {
            uint64_t t;
            struct vstor_packet rep;
            while (sim_stor_take_any(s, c, &t, &rep) == 1) {
                unsigned idx = idx_of[t % TRANS_SLOTS];
                if (idx >= qd || trans_of[idx] != t || rep.u.srb.srb_status != 0x01) {
                    fprintf(stderr, "stor-sim: request %#llx failed or unknown\n",
                            (unsigned long long)t);
                    goto out;
                }
                trans_of[idx] = 0;
                freelist[nfree++] = idx;
                inflight--;
                ops++;
                got++;
            }
        }
        if (!got) {
            uint64_t now = sim_now_ms(), give_up = now + 10000, seen = ev;
            while (seen == ev && now < give_up) {
                sim_poll(vm, 50);
                seen = events(s);
                now = sim_now_ms();
            }
            if (seen == ev) {
                fprintf(stderr, "stor-sim: %u requests lost\n", inflight);
                goto out;
            }
        }
        if (!stop && sim_now_ns() >= end)
            stop = true;
    }
    double secs = (double)(sim_now_ns() - t0) / 1e9;
    double cpu = cpu_s() - c0;
    res->ops = ops * bs / l->bs;
    res->iops = (double)res->ops / secs;
    res->mbps = (double)ops * bs / secs / 1e6;
    res->cpu_us = res->ops ? cpu * 1e6 / (double)res->ops : 0;
    ret = 0;
out:
    sim_stor_free(s);
    if (vm)
        sim_vm_free(vm);
    simd_stop(d);
    return ret;
}
