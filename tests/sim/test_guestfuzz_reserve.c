/* SPDX-License-Identifier: MIT */
/*
 * vmbusd-guestfuzz against completions written into send reservations
 * (vsp_send_reserve / vsp_send_reserved, as storvsp and netvsp send them):
 * every packet of the channel is mutated (grown past its reservation, cut,
 * dropped, duplicated), yet the VSP sees what it would see without the
 * fuzzer and the reservation books stay exact.
 *
 *   test_mutated_completions_keep_reservations
 *       a VSP that reserves a completion before it pulls each request
 *       fills the host->guest ring with reservations; its I/O thread
 *       completes every request into its reservation while each packet is
 *       mutated.  Every completion gets 0 (none -EIO: a grown completion
 *       does not take room reserved for another, and is replaced by the
 *       VSP's own when there is no other room; a duplicate goes only into
 *       room nobody reserved; a dropped one still gives its reservation
 *       back), the channel stays open, and once the guest has taken what
 *       the ring holds, exactly as many completions can be reserved as on
 *       an empty ring: nothing is left on the books.
 *
 * The guest drops what it receives unparsed (sim_chan_discard: mutated
 * packets need not frame), so only the host's accounting is under test.
 * Deterministic: the completion thread sends only when the test opens its
 * gate, the guest discards only when the test says so, and the mutations
 * come from a fixed seed.  This binary links the partition code built with
 * -DVMBUSD_GUESTFUZZ.
 */
#include "sim_test.h"

#include <pthread.h>
#include <time.h>

#include "gf_sim.h"
#include "resv_vsp.h"
#include "vmbusd/vsp.h"

#define VM_RESV "vm-gf-resv"
#define NREQ 100
/* Completion payload: 73 completions of 56 ring bytes reserve all but 8
 * bytes of the ring, so a completion grown by 8 bytes (a length edit) has
 * no room of its own: it fits only into another one's reservation. */
#define REPLY_LEN 32
#define RECV_PAGES 2   /* host->guest ring: one data page */
#define RING_DATA 4096u
#define PKT_BYTES(len) ((((16u + (len)) + 7u) & ~7u) + 8u) /* as the ring counts */

static const struct hv_guid resv_class = {
    {0x4b, 0x71, 0x0c, 0x9e, 0x2d, 0x53, 0x4a, 0x18, 0x9f, 0x60, 0x3e, 0xa1, 0x77, 0xc4, 0x05, 0xd2}};

/* The daemon with one VM offered the reserving test VSP, fuzzed by run. */
static int start(void **state, struct gf_run *run, const char *const *knobs)
{
    resv_vsp_init(&resv_class, REPLY_LEN);
    resv_vsp_reset();
    /* Each test's transcript is the only one: no ".N" suffix to look for. */
    if (gf_tdir_clear() != 0 || gf_sim_run_init(run, knobs) != 0)
        return -1;
    static const struct sim_vm_cfg vms[] = {{VM_RESV, "resv"}};
    return fx_setup_linked(state, vms, resv_vsp_linked);
}

/* Every packet of the fuzzed VM is mutated: structure edits (grown past
 * the guest's limit, cut, descriptor fields), drops and duplicates;
 * nothing else (ring header lies would make the guest move its read index
 * where the host never wrote). */
static int setup_seeded(void **state)
{
    struct gf_run run = {.mode = GF_MODE_FUZZ, .seed = 0x7e5e7e5e};
    static const char *const knobs[] = {
        "vm=" VM_RESV, "p=0", "p.packet=1", "w.flip=1", "w.struct=4", "w.drop=2", "w.dup=2",
        "w.delay=0", NULL};
    return start(state, &run, knobs);
}

/* The first completion grown by 8 bytes (len8 saying so), while every
 * other completion's room is reserved; the second duplicated, the third
 * dropped.  A replay, so each lands on exactly that completion. */
static int setup_replayed(void **state)
{
    struct gf_mutation *m = calloc(3, sizeof(*m));
    if (!m)
        return -1;
    for (int i = 0; i < 3; i++)
        m[i].key = (struct gf_key){.kind = GF_K_PKT, .subtype = VM_PKT_COMP,
                                   .trig_type = GF_TRIG_PKT, .trig_k = 1, .n = 1,
                                   .class_id = resv_class};
    m[0].op = GF_OP_PATCH;
    m[0].mutator = GF_M_LENGTH;
    m[0].new_len = 16 + REPLY_LEN + 8;
    uint16_t len8 = (16 + REPLY_LEN + 8) / 8;
    gf_mut_add_patch(&m[0], offsetof(struct vmpacket_descriptor, len8), &len8, 2);
    m[1].op = GF_OP_DUP;
    m[2].op = GF_OP_DROP;
    struct gf_run run = {.mode = GF_MODE_REPLAY, .replay = m, .nreplay = 3};
    return start(state, &run, NULL);
}

static int teardown(void **state)
{
    int ret = fx_teardown(state);
    gf_run_reset();
    return ret;
}

/* Wait (bounded) until the VSP stopped pulling after a reserve's -EAGAIN
 * later than the eagain-th, or took every request. */
static bool wait_pulled(int eagain)
{
    struct timespec end;
    clock_gettime(CLOCK_REALTIME, &end);
    end.tv_sec += 20;
    pthread_mutex_lock(&resv.lock);
    while (resv.eagain <= eagain && resv.taken < NREQ)
        if (pthread_cond_timedwait(&resv.cond, &resv.lock, &end) != 0)
            break;
    bool done = resv.eagain > eagain || resv.taken == NREQ;
    pthread_mutex_unlock(&resv.lock);
    return done;
}

struct muts {
    int n, drops, dups, grown;
};

/* Requests until the ring is reserved full, then rounds of: complete what
 * was taken (mutated), the guest drops it all, the VSP takes the next
 * batch, until every request was answered; every completion must get 0
 * and nothing may stay reserved.  *mu: the mutations the transcript
 * records. */
static void run_rounds(struct fx *f, struct muts *mu)
{
    struct sim_vm *vm = sim_vm_create(f->d, VM_RESV);
    SIM_ASSERT(vm != NULL, "create");
    vm->expect_offers = 1;
    SIM_ASSERT(sim_bringup(vm, VMBUS_VERSION_WIN10_V5_3) == 1, "bringup");
    struct sim_offer *of = sim_offer_by_class(vm, &resv_class, 0);
    SIM_ASSERT(of != NULL, "offer");
    int st;
    struct sim_chan *ch = sim_chan_open(vm, of->relid, 8, RECV_PAGES, &st);
    SIM_ASSERT(ch != NULL && ch->in.size == RING_DATA, "open: status %d", st);
    /* Completions an empty ring takes: a packet needs strictly more free
     * bytes than it uses. */
    const int k = (int)((RING_DATA - 1) / PKT_BYTES(REPLY_LEN));

    uint8_t req[8] = {0};
    for (int i = 0; i < NREQ; i++)
        SIM_ASSERT(sim_chan_send(ch, VM_PKT_DATA_INBAND,
                                 VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED, 1 + (uint64_t)i, req,
                                 sizeof(req)) == 0,
                   "request %d", i);
    SIM_ASSERT(resv_wait(&resv.eagain, 1) >= 1, "reserve never got -EAGAIN");
    SIM_ASSERT(resv_count(taken) == k, "took %d requests with room for %d completions",
               resv_count(taken), k);

    /* Rounds: complete what was taken (mutated), the guest drops it all,
     * the VSP takes the next batch, until every request was answered. */
    for (int round = 0; resv_count(sent) < NREQ; round++) {
        SIM_ASSERT(round < NREQ, "no progress after %d rounds", round);
        int taken = resv_count(taken);
        resv_set_gate(true);
        SIM_ASSERT(resv_wait(&resv.sent, taken) >= taken, "%d of %d completions sent",
                   resv_count(sent), taken);
        resv_set_gate(false);
        SIM_ASSERT(resv_count(sent_ok) == resv_count(sent),
                   "mutated completions failed: %d -EIO, %d -EPIPE, %d other, after %d ok",
                   resv_count(sent_eio), resv_count(sent_epipe), resv_count(sent_other),
                   resv_count(sent_ok));
        int eagain = resv_count(eagain);
        sim_chan_discard(ch);
        if (taken < NREQ)
            SIM_ASSERT(resv_wait(&resv.taken, taken + 1) > taken,
                       "no request taken after the guest emptied the ring (round %d)", round);
        /* The VSP stops pulling again when the ring is reserved full or
         * it has taken every request. */
        SIM_ASSERT(wait_pulled(eagain), "round %d: the VSP keeps pulling", round);
    }
    SIM_ASSERT(resv_count(sent_ok) == NREQ, "%d of %d completions went out", resv_count(sent_ok),
               NREQ);
    SIM_ASSERT(sim_log_count(LOG_WARN, "took back room", NULL, NULL) == 0,
               "the channel was faulted for the fuzzer's doing");

    /* Nothing left on the books: with the ring emptied, exactly as many
     * completions can be reserved as on a fresh channel. */
    sim_chan_discard(ch);
    struct vsp_channel *vc = resv.ch;
    int n = 0;
    while (n <= k && vsp_send_reserve(vc, REPLY_LEN) == 0)
        n++;
    for (int i = 0; i < n; i++)
        vsp_send_unreserve(vc, REPLY_LEN);
    SIM_ASSERT(n == k, "%d completions reservable after the run, %d on an empty ring", n, k);
    SIM_ASSERT(sim_chan_close(ch) == 0, "close");
    uint32_t id = vm->partition_id;
    sim_vm_free(vm);

    /* The completions were mutated in every way under test. */
    struct gf_mutation *m;
    int nm = gf_partition_mutations(VM_RESV, id, &m);
    int drops = 0, dups = 0, grown = 0;
    for (int i = 0; i < nm; i++) {
        drops += m[i].op == GF_OP_DROP;
        dups += m[i].op == GF_OP_DUP;
        grown += m[i].op == GF_OP_PATCH && m[i].new_len > 16 + REPLY_LEN;
    }
    free(m);
    *mu = (struct muts){.n = nm, .drops = drops, .dups = dups, .grown = grown};
}

static void test_mutated_completions_keep_reservations(void **state)
{
    struct muts mu;
    run_rounds(*state, &mu);
    SIM_ASSERT(mu.n >= NREQ && mu.drops && mu.dups && mu.grown,
               "%d mutations, %d drops, %d duplicates, %d grown", mu.n, mu.drops, mu.dups,
               mu.grown);
}

static void test_grown_dup_dropped_in_full_ring(void **state)
{
    struct muts mu;
    run_rounds(*state, &mu);
    SIM_ASSERT(mu.n == 3 && mu.grown == 1 && mu.dups == 1 && mu.drops == 1,
               "replay applied %d of 3 mutations", mu.n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_mutated_completions_keep_reservations,
                                        setup_seeded, teardown),
        cmocka_unit_test_setup_teardown(test_grown_dup_dropped_in_full_ring, setup_replayed,
                                        teardown),
    };
    const char *flt = getenv("SIM_FILTER");
    if (flt && *flt)
        cmocka_set_test_filter(flt);
    return cmocka_run_group_tests_name("guestfuzz_reserve", tests, gf_tdir_setup,
                                       gf_tdir_teardown);
}
