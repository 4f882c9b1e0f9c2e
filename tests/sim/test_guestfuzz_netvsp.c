/* SPDX-License-Identifier: MIT */
/*
 * vmbusd-guestfuzz over netvsp (its NVSP completions and receive
 * transfer-page packets go into send reservations): a simulated hv_netvsc
 * brings its NIC up and moves frames both ways on a fuzzed VM while a fifth
 * of netvsp's packets are mutated (NVSP fields, transfer-page ranges, send
 * indirection tables, lengths, descriptors, drops, duplicates).  Whatever
 * the guest makes of it, vmbusd stays up, another VM's NIC moves frames
 * both ways, the control socket answers, and the transcripts show that the
 * NVSP mutator edited netvsp's packets.
 *
 * This binary links the partition code built with -DVMBUSD_GUESTFUZZ.
 */
#include "sim_test.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "gf_sim.h"
#include "sim_netvsc.h"
#include "vsp/netvsp/protocol.h"

#define VM_NIC "vm-gf-nic"
#define VM_NIC2 "vm-gf-nic2"
/* A lie often ends a guest session early: many short sessions, one per
 * seed (the same seed would lie the same way again). */
#define SEEDS 10

struct nfx {
    struct sim_daemon *d;
    int peer[2], host[2]; /* the test's and vmbusd's ends of each NIC's backend */
    char fdstr[2][16];
};

static int start(struct nfx *f, uint64_t seed)
{
    struct gf_run run = {.mode = GF_MODE_FUZZ, .seed = seed};
    static const char *const knobs[] = {"vm=" VM_NIC, "p=0", "p.packet=0.2", "w.delay=0",
                                        NULL};
    if (gf_sim_run_init(&run, knobs) != 0)
        return -1;
    for (int i = 0; i < 2; i++) {
        int sp[2];
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0)
            return -1;
        f->peer[i] = sp[0];
        f->host[i] = sp[1];
        snprintf(f->fdstr[i], sizeof(f->fdstr[i]), "%d", sp[1]);
    }
    const struct sim_vm_param params[] = {{VM_NIC, "netvsp", "fd", f->fdstr[0]},
                                          {VM_NIC2, "netvsp", "fd", f->fdstr[1]},
                                          {NULL, NULL, NULL, NULL}};
    simd_vm_params = params;
    static const struct sim_vm_cfg vms[] = {{VM_NIC, "netvsp"}, {VM_NIC2, "netvsp"}};
    sim_log_clear();
    f->d = simd_start(vms, 2, 1);
    simd_vm_params = NULL;
    return f->d ? 0 : -1;
}

static void stop(struct nfx *f)
{
    simd_stop(f->d);
    for (int i = 0; i < 2; i++) {
        close(f->peer[i]);
        close(f->host[i]);
    }
    gf_run_reset();
}

static struct sim_vm *nic_vm(struct nfx *f, const char *name)
{
    struct sim_vm *vm = sim_vm_create(f->d, name);
    if (!vm)
        return NULL;
    vm->expect_offers = 1;
    if (sim_bringup(vm, VMBUS_VERSION_WIN10_V5_3) != 1) {
        sim_vm_free(vm);
        return NULL;
    }
    return vm;
}

static void make_frame(uint8_t *buf, uint32_t len, const uint8_t dst[6], uint64_t seed)
{
    static const uint8_t src[6] = {0x02, 0, 0, 0, 0, 0x99};
    sim_fill_pattern(buf, len, seed);
    memcpy(buf, dst, 6);
    memcpy(buf + 6, src, 6);
    buf[12] = 0x88; /* local experimental ethertype */
    buf[13] = 0xb5;
}

/* Whatever the NIC transmitted into the backend meanwhile. */
static void drain_peer(int fd)
{
    uint8_t buf[2048];
    while (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) > 0)
        ;
}

/* One session of the fuzzed guest: bring-up (each step may fail: the host
 * lies), frames out through sections and GPA ranges, frames in.  Returns
 * the partition id. */
static uint32_t fuzzed_session(struct nfx *f)
{
    int saved = sim_timeout_ms;
    sim_timeout_ms = 300; /* what a dropped or garbled reply costs */
    struct sim_vm *vm = nic_vm(f, VM_NIC);
    uint32_t id = vm ? vm->partition_id : 0;
    struct sim_netvsc *nv = vm ? snv_open(vm, 32) : NULL;
    if (nv && snv_bringup(nv, NVSP_VERSION_61) == 0) {
        static uint8_t fr[1514];
        for (int i = 0; i < 8; i++) {
            make_frame(fr, 60 + 180 * (uint32_t)i, (const uint8_t[6]){2, 1, 2, 3, 4, 5},
                       (uint64_t)i);
            snv_send_frame(nv, fr, 60 + 180 * (uint32_t)i, i % 3 == 2 ? -1 : i);
            make_frame(fr, 100 + 150 * (uint32_t)i, nv->mac, 100 + (uint64_t)i);
            if (send(f->peer[0], fr, 100 + 150 * (size_t)i, 0) > 0)
                snv_recv_frame(nv, fr, sizeof(fr), sim_timeout_ms);
        }
    }
    drain_peer(f->peer[0]);
    snv_free(nv);
    if (vm)
        sim_vm_free(vm);
    sim_timeout_ms = saved;
    return id;
}

/* The other VM's NIC: up, one frame each way. */
static void other_nic_works(struct nfx *f, uint64_t seed)
{
    struct sim_vm *vm = nic_vm(f, VM_NIC2);
    SIM_ASSERT(vm != NULL, "the other VM connects (seed %llu)", (unsigned long long)seed);
    struct sim_netvsc *nv = snv_open(vm, 32);
    SIM_ASSERT(nv && snv_bringup(nv, NVSP_VERSION_61) == 0, "the other NIC's bring-up (seed %llu)",
               (unsigned long long)seed);
    static uint8_t out[600], in[2048];
    make_frame(out, sizeof(out), (const uint8_t[6]){2, 9, 9, 9, 9, 9}, seed);
    SIM_ASSERT(snv_send_frame(nv, out, sizeof(out), 1) == NVSP_STAT_SUCCESS,
               "the other NIC transmits (seed %llu)", (unsigned long long)seed);
    struct pollfd p = {f->peer[1], POLLIN, 0};
    int got = poll(&p, 1, SIM_TIMEOUT_MS) == 1 ? (int)recv(f->peer[1], in, sizeof(in), 0) : -1;
    SIM_ASSERT(got == (int)sizeof(out) && memcmp(in, out, sizeof(out)) == 0,
               "the other NIC's frame reached its backend (seed %llu)", (unsigned long long)seed);
    make_frame(out, sizeof(out), nv->mac, seed + 1);
    SIM_ASSERT(send(f->peer[1], out, sizeof(out), 0) == (ssize_t)sizeof(out), "inject");
    got = snv_recv_frame(nv, in, sizeof(in), SIM_TIMEOUT_MS);
    SIM_ASSERT(got == (int)sizeof(out) && memcmp(in, out, sizeof(out)) == 0,
               "the other NIC received its frame (seed %llu)", (unsigned long long)seed);
    SIM_ASSERT(nv->host_bad == 0, "the other NIC got packets Linux rejects (seed %llu)",
               (unsigned long long)seed);
    char outl[8192];
    SIM_ASSERT(sim_ctl_call(simd_control_path(f->d), "list", outl, sizeof(outl)) &&
                   strstr(outl, VM_NIC2),
               "control socket after fuzzing (seed %llu)", (unsigned long long)seed);
    snv_free(nv);
    sim_vm_free(vm);
}

static void test_netvsp_survives_fuzzing(void **state)
{
    (void)state;
    unsigned nvsp_edits = 0, muts = 0;
    for (uint64_t seed = 1; seed <= SEEDS; seed++) {
        struct nfx f = {0};
        SIM_ASSERT(start(&f, seed * 0x9e3779b97f4a7c15ull) == 0, "daemon (seed %llu)",
                   (unsigned long long)seed);
        uint32_t id = fuzzed_session(&f);
        SIM_ASSERT(id != 0, "the fuzzed VM connected (seed %llu)", (unsigned long long)seed);
        other_nic_works(&f, seed);
        stop(&f);

        struct gf_mutation *m;
        int n = gf_partition_mutations(VM_NIC, id, &m);
        for (int i = 0; i < n; i++) {
            muts++;
            nvsp_edits += m[i].op == GF_OP_PATCH && m[i].mutator == GF_M_NVSP;
        }
        free(m);
        SIM_ASSERT(gf_tdir_clear() == 0, "removing the transcripts");
    }
    SIM_ASSERT(muts >= 10 && nvsp_edits >= 1, "%u mutations, %u of NVSP fields", muts,
               nvsp_edits);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_netvsp_survives_fuzzing),
    };
    const char *flt = getenv("SIM_FILTER");
    if (flt && *flt)
        cmocka_set_test_filter(flt);
    return cmocka_run_group_tests_name("guestfuzz_netvsp", tests, gf_tdir_setup,
                                       gf_tdir_teardown);
}
