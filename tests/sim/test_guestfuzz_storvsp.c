/* SPDX-License-Identifier: MIT */
/*
 * vmbusd-guestfuzz over storvsp (its completions go into send
 * reservations, on the primary channel and on subchannels): a simulated
 * storvsc does SCSI I/O on a fuzzed VM while a third of storvsp's packets
 * are mutated (VSTOR fields, lengths, descriptors, drops, duplicates).
 * Whatever the guest makes of it, vmbusd stays up, another VM's disk keeps
 * working, the control socket answers, and the transcript shows that
 * storvsp's completions were mutated by the VSTOR mutator among others.
 *
 * This binary links the partition code built with -DVMBUSD_GUESTFUZZ.
 */
#include "stor_fx.h"

#include "gf_sim.h"

/* A lie often ends a guest session early: many short sessions, one per
 * seed (the same seed would lie the same way again). */
#define SEEDS 10

static int start(void **state, uint64_t seed)
{
    struct gf_run run = {.mode = GF_MODE_FUZZ, .seed = seed};
    static const char *const knobs[] = {"vm=" VM_STOR_A, "p=0", "p.packet=0.2", "w.delay=0",
                                        NULL};
    if (gf_sim_run_init(&run, knobs) != 0)
        return -1;
    return stor_fx_start(state, NULL);
}

/* One session of the fuzzed guest: initialise the controller (each step
 * may fail: the host lies), two subchannels, reads and writes on every
 * channel.  Returns the partition id. */
static uint32_t fuzzed_session(struct stor_fx *f)
{
    int saved = sim_timeout_ms;
    sim_timeout_ms = 300; /* what a dropped or garbled completion costs */
    struct sim_vm *vm = stor_vm(f, VM_STOR_A);
    uint32_t id = vm ? vm->partition_id : 0;
    struct sim_stor *s = vm ? stor_up(vm, 0) : NULL;
    if (s) {
        int nch = sim_stor_subchannels(s, 2) == 0 ? 3 : 1;
        uint64_t buf = sim_alloc_pages(vm, 16);
        for (int r = 0; r < 12; r++) {
            struct vstor_srb srb;
            sim_stor_rw(s, r % nch, 0, r & 1, (uint32_t)r * 16, 8, buf, &srb);
        }
    }
    if (s)
        sim_stor_free(s);
    if (vm)
        sim_vm_free(vm);
    sim_timeout_ms = saved;
    return id;
}

static void test_storvsp_survives_fuzzing(void **state)
{
    (void)state;
    unsigned vstor_edits = 0, muts = 0;
    for (uint64_t seed = 1; seed <= SEEDS; seed++) {
        void *st = NULL;
        SIM_ASSERT(start(&st, seed * 0x9e3779b97f4a7c15ull) == 0, "daemon (seed %llu)",
                   (unsigned long long)seed);
        struct stor_fx *f = st;
        uint32_t id = fuzzed_session(f);
        SIM_ASSERT(id != 0, "the fuzzed VM connected (seed %llu)", (unsigned long long)seed);

        /* Another VM's disk works as if nothing happened. */
        struct sim_vm *good = stor_vm(f, VM_STOR_B);
        SIM_ASSERT(good != NULL, "the other VM connects (seed %llu)", (unsigned long long)seed);
        struct sim_stor *s = stor_up(good, 0);
        SIM_ASSERT(s != NULL, "the other VM's controller (seed %llu)", (unsigned long long)seed);
        uint64_t buf = sim_alloc_pages(good, 2);
        struct vstor_srb srb;
        SIM_ASSERT(sim_stor_rw(s, 0, 0, false, 0, 8, buf, &srb) == 0 &&
                       srb.srb_status == SRB_STATUS_SUCCESS,
                   "the other VM's read (seed %llu)", (unsigned long long)seed);
        uint8_t want[4096];
        stor_read_image(f->img[1], 0, want, sizeof(want));
        SIM_ASSERT(memcmp(sim_gpa_ptr(good, sim_off_to_gpa(good, buf)), want, sizeof(want)) == 0,
                   "the other VM read its disk's bytes (seed %llu)", (unsigned long long)seed);
        char out[8192];
        SIM_ASSERT(sim_ctl_call(f->ctl, "list", out, sizeof(out)) && strstr(out, VM_STOR_B),
                   "control socket after fuzzing (seed %llu)", (unsigned long long)seed);
        sim_stor_free(s);
        sim_vm_free(good);
        stor_fx_teardown(&st);
        gf_run_reset();

        struct gf_mutation *m;
        int n = gf_partition_mutations(VM_STOR_A, id, &m);
        for (int i = 0; i < n; i++) {
            muts++;
            vstor_edits += m[i].op == GF_OP_PATCH && m[i].mutator == GF_M_VSTOR;
        }
        free(m);
        SIM_ASSERT(gf_tdir_clear() == 0, "removing the transcripts");
    }
    SIM_ASSERT(muts >= 10 && vstor_edits >= 1, "%u mutations, %u of VSTOR fields", muts,
               vstor_edits);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_storvsp_survives_fuzzing),
    };
    const char *flt = getenv("SIM_FILTER");
    if (flt && *flt)
        cmocka_set_test_filter(flt);
    return cmocka_run_group_tests_name("guestfuzz_storvsp", tests, gf_tdir_setup,
                                       gf_tdir_teardown);
}
