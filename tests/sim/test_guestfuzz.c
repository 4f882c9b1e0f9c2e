/* SPDX-License-Identifier: MIT */
/*
 * vmbusd-guestfuzz's hook in-process against the simulated guest
 * (docs/fuzzing-guest-drivers.md): a seeded run corrupts what one VM is
 * told; vmbusd survives it (and another VM is unaffected), the transcript
 * records it, and a replay of the transcript sends the guest the same
 * host-side bytes at the same guest-keyed points.
 *
 * This binary links the partition code built with -DVMBUSD_GUESTFUZZ.
 */
#include "sim_test.h"

#include <dirent.h>
#include <unistd.h>

#include "gf_sim.h"

#define VM_FUZZ "vm-fuzz"

/* One boot of a guest driver stack: connect, offers, open each echo
 * channel, a few round trips, close, unload.  Every step may fail (the
 * host lies to it); the guest carries on like a driver that gives up on a
 * device and probes the next one. */
static uint32_t guest_session(struct sim_daemon *d, unsigned rounds, int wait_ms)
{
    int saved = sim_timeout_ms;
    sim_timeout_ms = wait_ms; /* a dropped reply costs the guest this much */
    struct sim_vm *vm = sim_vm_create(d, VM_FUZZ);
    if (!vm) {
        sim_timeout_ms = saved;
        return 0;
    }
    uint32_t id = vm->partition_id;
    vm->expect_offers = ECHO_CHANNELS;
    if (sim_bringup(vm, VMBUS_VERSION_WIN10_V5_3) > 0) {
        for (int i = 0; i < ECHO_CHANNELS; i++) {
            struct sim_offer *of = sim_offer_by_class(vm, sim_echo_class(), i);
            int st;
            struct sim_chan *ch = of ? sim_chan_open(vm, of->relid, 4, 4, &st) : NULL;
            if (!ch)
                continue;
            for (unsigned r = 0; r < rounds; r++)
                sim_echo_roundtrip(ch, 40 + 24 * r, 1 + r, r & 1);
            sim_chan_close(ch);
        }
        sim_unload(vm);
    }
    sim_vm_free(vm);
    sim_timeout_ms = saved;
    return id;
}

static struct sim_daemon *start(enum gf_mode mode, uint64_t seed, const char *const *knobs,
                                struct gf_mutation *replay, size_t nreplay)
{
    struct gf_run run = {.mode = mode, .seed = seed, .replay = replay, .nreplay = nreplay};
    assert_int_equal(gf_sim_run_init(&run, knobs), 0);
    static const struct sim_vm_cfg vms[] = {{VM_FUZZ, "echo"}, {VM_GOOD, "echo"}};
    sim_log_clear();
    sim_expect_offers_default = ECHO_CHANNELS;
    struct sim_daemon *d = simd_start(vms, 2, ECHO_CHANNELS);
    assert_non_null(d);
    return d;
}

/* A HOST record of a message or packet: key, op, bytes. */
struct host_rec {
    uint32_t len;
    uint8_t data[512];
};

static int cmp_rec(const void *a, const void *b)
{
    const struct host_rec *x = a, *y = b;
    if (x->len != y->len)
        return x->len < y->len ? -1 : 1;
    return memcmp(x->data, y->data, x->len);
}

struct summary {
    unsigned guest_msgs, guest_pkts, host, muts, vm_recs;
    unsigned muts_unmatched; /* mutations (not held back) with no host record at their key */
    struct host_rec *recs; /* GF_K_MSG / GF_K_PKT host records, sorted */
    unsigned nrecs;
};

static void read_transcript(const char *path, struct summary *s)
{
    memset(s, 0, sizeof(*s));
    s->recs = calloc(4096, sizeof(*s->recs));
    assert_non_null(s->recs);
    struct gf_tr_reader *r = gf_tr_open(path, NULL);
    SIM_ASSERT(r != NULL, "transcript %s", path);
    struct gf_tr_record rec;
    int ret;
    struct gf_key pending[64]; /* keys of mutations waiting for their host record */
    unsigned npending = 0;
    while ((ret = gf_tr_next(r, &rec)) == 1) {
        if (rec.type == GF_REC_HOST || rec.type == GF_REC_MUT)
            assert_true(rec.len >= sizeof(struct gf_key));
        if (rec.type == GF_REC_HOST) {
            for (unsigned i = 0; i < npending; i++) {
                if (!memcmp(&pending[i], rec.data, sizeof(struct gf_key))) {
                    pending[i] = pending[--npending];
                    break;
                }
            }
        }
        switch (rec.type) {
        case GF_REC_VM:
            s->vm_recs++;
            assert_int_equal(rec.len, strlen(VM_FUZZ));
            assert_memory_equal(rec.data, VM_FUZZ, rec.len);
            break;
        case GF_REC_GUEST_MSG: s->guest_msgs++; break;
        case GF_REC_GUEST_PKT: s->guest_pkts++; break;
        case GF_REC_MUT: {
            s->muts++;
            struct gf_mutation m;
            assert_true(gf_tr_decode_mut(rec.data, rec.len, &m));
            /* A held message is recorded when (if) it goes out. */
            if (m.op != GF_OP_DELAY && m.op != GF_OP_REORDER && npending < 64)
                pending[npending++] = m.key;
            break;
        }
        case GF_REC_HOST: {
            s->host++;
            assert_true(rec.len >= sizeof(struct gf_key) + 4);
            uint8_t kind = rec.data[0];
            uint32_t outcome;
            memcpy(&outcome, rec.data + sizeof(struct gf_key), 4);
            /* What reached the guest (a send the ring could not take yet
             * depends on timing, and is retried as a new action). */
            if ((kind == GF_K_MSG || kind == GF_K_PKT) && !(outcome & GF_HOST_NOT_SENT) &&
                s->nrecs < 4096 &&
                rec.len <= sizeof(s->recs[0].data)) {
                s->recs[s->nrecs].len = rec.len;
                memcpy(s->recs[s->nrecs].data, rec.data, rec.len);
                s->nrecs++;
            }
            break;
        }
        default: break;
        }
    }
    assert_int_equal(ret, 0);
    s->muts_unmatched = npending;
    gf_tr_close_reader(r);
    qsort(s->recs, s->nrecs, sizeof(*s->recs), cmp_rec);
}

/* Every kind of mutation, several seeds: vmbusd stays up, the other VM
 * keeps working, the fuzzed VM can still connect afterwards with a clean
 * slate, and the transcript holds what happened. */
static void test_survives(void **state)
{
    (void)state;
    /* after=5: INITIATE_CONTACT, REQUESTOFFERS, GPADL_HEADER, OPENCHANNEL
     * and the first packet go through untouched, so every seed reaches the
     * data path, where the mutations then start. */
    static const char *const knobs[] = {"vm=" VM_FUZZ, "p=0.15", "w.delay=1", "after=5",
                                        "delay_max_ms=150", "storm_max=64", NULL};
    for (uint64_t seed = 1; seed <= 6; seed++) {
        struct sim_daemon *d = start(GF_MODE_FUZZ, seed * 0x9e3779b97f4a7c15ull, knobs, NULL, 0);
        struct fx f = {.d = d};
        fx_good_start(&f);
        uint32_t id = guest_session(d, 8, 300);
        fx_good_check(&f, "a fuzzed session of another VM");
        /* The control socket answers and lists both VMs. */
        char out[8192];
        SIM_ASSERT(sim_ctl_call(simd_control_path(d), "list", out, sizeof(out)),
                   "control socket after fuzzing (seed %llu)", (unsigned long long)seed);
        SIM_ASSERT(strstr(out, VM_GOOD) != NULL, "list: %s", out);
        sim_vm_free(f.good);
        simd_stop(d);

        char path[600];
        gf_transcript_path(path, sizeof(path), VM_FUZZ, id);
        struct summary s;
        read_transcript(path, &s);
        /* The guest's side and the host's are both there, and every
         * mutation with what it sent. */
        SIM_ASSERT(s.vm_recs == 1 && s.guest_msgs >= 4 && s.guest_pkts >= 1 && s.host >= 1,
                   "seed %llu: transcript %s: %u guest msgs, %u host", (unsigned long long)seed,
                   path, s.guest_msgs, s.host);
        SIM_ASSERT(s.muts >= 1, "seed %llu: no mutation recorded", (unsigned long long)seed);
        SIM_ASSERT(s.muts_unmatched == 0, "seed %llu: %u mutations without a host record",
                   (unsigned long long)seed, s.muts_unmatched);
        free(s.recs);
        /* The healthy VM is not fuzzed: no transcript of its own. */
        DIR *dir = opendir(gf_tdir);
        struct dirent *e;
        while ((e = readdir(dir)))
            SIM_ASSERT(strncmp(e->d_name, VM_GOOD, strlen(VM_GOOD)) != 0, "%s", e->d_name);
        closedir(dir);
    }
}

/* A seeded run and its replay: same mutations, same host->guest bytes at
 * the same keys.  Delays and reorders (which release on wall-clock time)
 * and ring/interrupt mutations (whose points follow the host's batching)
 * are left out, so the guest's reaction is the same both times. */
static void test_replay_same_bytes(void **state)
{
    (void)state;
    static const char *const knobs[] = {
        "vm=" VM_FUZZ, "p=0.12", "w.reorder=0", "w.delay=0", "p.ring_write_index=0",
        "p.ring_read_index=0", "p.ring_interrupt_mask=0", "p.ring_pending_send_sz=0",
        "p.signal=0", "p.sint=0", NULL};
    /* Each wait long enough that only a reply the host never sends times
     * out, not one a loaded machine sends late. */
    struct sim_daemon *d = start(GF_MODE_FUZZ, 0x5eed0001, knobs, NULL, 0);
    uint32_t id1 = guest_session(d, 16, 1500);
    simd_stop(d);
    char p1[600], p2[600];
    gf_transcript_path(p1, sizeof(p1), VM_FUZZ, id1);
    struct gf_mutation *m;
    struct gf_tr_header h;
    int n = gf_tr_load_mutations(p1, &h, &m);
    SIM_ASSERT(n >= 3, "seeded run made %d mutations", n);
    assert_int_equal(h.seed, 0x5eed0001);

    d = start(GF_MODE_REPLAY, 0, knobs, m, (size_t)n);
    uint32_t id2 = guest_session(d, 16, 1500);
    simd_stop(d);
    gf_transcript_path(p2, sizeof(p2), VM_FUZZ, id2);
    SIM_ASSERT(strcmp(p1, p2) != 0, "the replay wrote its own transcript (%s)", p2);
    struct summary a, b;
    read_transcript(p1, &a);
    read_transcript(p2, &b);
    SIM_ASSERT(b.muts == a.muts, "replay applied %u of %u mutations", b.muts, a.muts);
    SIM_ASSERT(a.nrecs > 20 && b.nrecs == a.nrecs, "host messages+packets: %u vs %u", a.nrecs,
               b.nrecs);
    for (unsigned i = 0; i < a.nrecs; i++)
        SIM_ASSERT(cmp_rec(&a.recs[i], &b.recs[i]) == 0, "host record %u differs", i);
    SIM_ASSERT(a.guest_msgs == b.guest_msgs && a.guest_pkts == b.guest_pkts,
               "guest side: %u/%u msgs, %u/%u pkts", a.guest_msgs, b.guest_msgs, a.guest_pkts,
               b.guest_pkts);
    free(a.recs);
    free(b.recs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_survives),
        cmocka_unit_test(test_replay_same_bytes),
    };
    const char *flt = getenv("SIM_FILTER");
    if (flt && *flt)
        cmocka_set_test_filter(flt);
    return cmocka_run_group_tests_name("guestfuzz", tests, gf_tdir_setup, gf_tdir_teardown);
}
