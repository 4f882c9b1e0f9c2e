/* SPDX-License-Identifier: MIT */
/*
 * Wake-ups of the worker pool (src/vmbusd/workq.c): idle workers sleep in
 * epoll on the guests' signal eventfds and the VSPs' fd watches, queued
 * work wakes one of them through an eventfd, and a worker that woke for an
 * fd runs the work its callback queued without waking another.  A lost
 * wake-up there is a hang: every case repeats its exchange many times and
 * waits for each step (bounded, for a hang only).  A wake VSP linked into
 * the test records what ran.
 *
 *   test_work_from_outside   a thread that is no worker queues a work item
 *                            and waits for it, 3000 times: each runs
 *   test_watch_pingpong      an fd watch written 3000 times, each write
 *                            waited for: one callback each (the one-shot
 *                            watch is armed again every time)
 *   test_guest_pingpong      a guest sends one packet and waits for its
 *                            completion, 3000 times over two channels: the
 *                            guest's signal reaches the VSP every time
 *   test_work_pair           (2+ workers) two work items of different
 *                            channels queued back to back from outside, 300
 *                            times; the first waits for the second: the two
 *                            wake-ups may reach one sleeper as one, so the
 *                            worker that takes the first must wake another
 *                            for the second rather than keep it behind
 *   test_send_batch          a VSP sends three completions in a batch
 *                            (vsp_send_batch_begin/end): the guest's ring
 *                            shows none of them before the end, all three
 *                            after; with the guest's interrupts masked the
 *                            batch raises none
 *   test_worker_sched_*      the workers run SCHED_BATCH by default
 *                            ([daemon] worker-sched), the policy vmbusd
 *                            started with when it says normal, and the
 *                            key refuses other values with FILE:LINE
 */
#include "sim_test.h"
#include "sim_conf.h"

#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "vmbusd/config.h"
#include "vmbusd/vsp.h"

#define VM_WAKE "vm-wake"
#define ROUNDS 3000
#define PAIR_ROUNDS 300

static const struct hv_guid wake_class = {
    {0x6e, 0x1d, 0x42, 0x90, 0x0b, 0x5a, 0x4c, 0x37, 0x9d, 0x21, 0x5f, 0x73, 0xc8, 0x04, 0xe6, 0x1b}};

static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct vsp_partition *p;
    struct vsp_channel *ch[2];
    int efd[2];
    struct vsp_fd_watch *w[2];
    int works;        /* work items run */
    int calls[2];     /* watch callbacks */
    int pair_stuck;   /* the first of a pair gave up waiting for the second */
    int pair_first, pair_second; /* test_work_pair's items run */
    int policy;       /* sched_getscheduler() of the worker that ran record_policy */
    struct vmbus_ring_header *guest_in; /* test_send_batch: the guest's receive ring */
    uint32_t idx_before, idx_in_batch;  /* its write index before the batch, inside */
} ks = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER, .efd = {-1, -1}};

static struct timespec deadline(int ms)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    t.tv_sec += ms / 1000;
    t.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (t.tv_nsec >= 1000000000L) {
        t.tv_sec++;
        t.tv_nsec -= 1000000000L;
    }
    return t;
}

static void bump(int *v)
{
    pthread_mutex_lock(&ks.lock);
    (*v)++;
    pthread_cond_broadcast(&ks.cond);
    pthread_mutex_unlock(&ks.lock);
}

/* Wait (bounded, for a hang only) until *v >= want; what it is then. */
static int wait_count(const int *v, int want)
{
    struct timespec end = deadline(10000);
    pthread_mutex_lock(&ks.lock);
    while (*v < want)
        if (pthread_cond_timedwait(&ks.cond, &ks.lock, &end) != 0)
            break;
    int got = *v;
    pthread_mutex_unlock(&ks.lock);
    return got;
}

/* The first of a pair: waits (bounded) for the second, which another
 * worker must run meanwhile. */
static void pair_first(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&ks.lock);
    int want = ks.pair_first + 1;
    struct timespec end = deadline(5000);
    while (ks.pair_second < want)
        if (pthread_cond_timedwait(&ks.cond, &ks.lock, &end) != 0)
            break;
    if (ks.pair_second < want)
        ks.pair_stuck++;
    ks.pair_first++;
    pthread_cond_broadcast(&ks.cond);
    pthread_mutex_unlock(&ks.lock);
}

static void pair_second(void *arg)
{
    (void)arg;
    bump(&ks.pair_second);
}

static void record_policy(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&ks.lock);
    ks.policy = sched_getscheduler(0);
    pthread_mutex_unlock(&ks.lock);
    bump(&ks.works);
}

static void count_work(void *arg)
{
    (void)arg;
    bump(&ks.works);
}

static void watch_fn(void *arg)
{
    int i = (int)(intptr_t)arg;
    uint64_t v;
    (void)!read(ks.efd[i], &v, sizeof(v));
    bump(&ks.calls[i]);
}

/* Every packet gets a completion (its id, no payload); a packet starting
 * with 'B' gets three (ids id, id + 1000, id + 2000) in one batch, and the
 * guest ring's write index is noted inside the batch. */
static void wake_receive(struct vsp_channel *ch)
{
    struct vsp_packet pkt;
    while (vsp_recv(ch, &pkt) > 0) {
        if (pkt.len < 1 || ((const uint8_t *)pkt.data)[0] != 'B') {
            vsp_send_completion(ch, pkt.trans_id, NULL, 0);
            continue;
        }
        vsp_send_batch_begin(ch);
        for (uint64_t k = 0; k < 3; k++)
            vsp_send_completion(ch, pkt.trans_id + 1000 * k, NULL, 0);
        uint32_t idx = __atomic_load_n(&ks.guest_in->write_index, __ATOMIC_ACQUIRE);
        vsp_send_batch_end(ch);
        pthread_mutex_lock(&ks.lock);
        ks.idx_in_batch = idx;
        pthread_mutex_unlock(&ks.lock);
        bump(&ks.works);
    }
}

static const struct vsp_channel_ops wake_ops = {.receive = wake_receive};

static int wake_attach(void *state, struct vsp_partition *p, void **part_state)
{
    (void)state;
    (void)part_state;
    for (int i = 0; i < 2; i++) {
        struct vsp_offer o = {.class_id = wake_class, .ops = &wake_ops};
        o.instance_id.b[0] = (uint8_t)(i + 1);
        ks.ch[i] = vsp_channel_offer(p, &o);
        if (!ks.ch[i])
            return -ENOMEM;
        ks.efd[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (ks.efd[i] < 0)
            return -errno;
    }
    ks.p = p;
    /* Watch 0 on channel 0's queue, watch 1 on the partition's: two
     * queues, so both may run at once. */
    ks.w[0] = vsp_fd_watch_add(p, ks.ch[0], ks.efd[0], watch_fn, (void *)(intptr_t)0);
    ks.w[1] = vsp_fd_watch_add(p, NULL, ks.efd[1], watch_fn, (void *)(intptr_t)1);
    return ks.w[0] && ks.w[1] ? 0 : -ENOMEM;
}

static void wake_detach(void *state, struct vsp_partition *p, void *part_state)
{
    (void)state;
    (void)p;
    (void)part_state;
    for (int i = 0; i < 2; i++) {
        vsp_fd_watch_remove(ks.w[i]);
        close(ks.efd[i]);
        ks.efd[i] = -1;
    }
}

static const struct vsp_plugin wake_plugin = {
    .api_version = VSP_API_VERSION,
    .name = "wake",
    .attach = wake_attach,
    .detach = wake_detach,
};
static const struct vsp_plugin *const linked[] = {&wake_plugin, NULL};

static int setup(void **state)
{
    static const struct sim_vm_cfg vms[] = {{VM_WAKE, "wake"}};
    pthread_mutex_lock(&ks.lock);
    ks.works = ks.calls[0] = ks.calls[1] = 0;
    ks.pair_first = ks.pair_second = ks.pair_stuck = 0;
    pthread_mutex_unlock(&ks.lock);
    return fx_setup_linked(state, vms, linked);
}

static int setup_batch(void **state)
{
    simd_worker_sched = "batch";
    int r = setup(state);
    simd_worker_sched = NULL;
    return r;
}

static struct sim_vm *up(struct fx *f, struct sim_chan **chans)
{
    struct sim_vm *vm = sim_vm_create(f->d, VM_WAKE);
    SIM_ASSERT(vm != NULL, "create");
    vm->expect_offers = 2;
    SIM_ASSERT(sim_bringup(vm, VMBUS_VERSION_WIN10_V5_3) == 2, "bringup");
    for (int i = 0; chans && i < 2; i++) {
        struct sim_offer *of = sim_offer_by_class(vm, &wake_class, i);
        SIM_ASSERT(of != NULL, "offer %d", i);
        int st;
        chans[i] = sim_chan_open(vm, of->relid, 4, 4, &st);
        SIM_ASSERT(chans[i] != NULL, "open %d: status %d", i, st);
    }
    return vm;
}

static void poke(int i)
{
    uint64_t one = 1;
    SIM_ASSERT(write(ks.efd[i], &one, sizeof(one)) == sizeof(one), "eventfd write");
}

static void test_work_from_outside(void **state)
{
    struct sim_vm *vm = up(*state, NULL);
    for (int i = 1; i <= ROUNDS; i++) {
        SIM_ASSERT(vsp_queue_work(ks.ch[i % 2], count_work, NULL) == 0, "queue");
        SIM_ASSERT(wait_count(&ks.works, i) == i, "work item %d of %d never ran", i, ROUNDS);
    }
    sim_vm_free(vm);
}

static void test_watch_pingpong(void **state)
{
    struct sim_vm *vm = up(*state, NULL);
    for (int i = 1; i <= ROUNDS; i++) {
        poke(0);
        SIM_ASSERT(wait_count(&ks.calls[0], i) == i, "write %d of %d: no callback", i, ROUNDS);
    }
    sim_vm_free(vm);
}

static void test_guest_pingpong(void **state)
{
    struct sim_chan *ch[2];
    struct sim_vm *vm = up(*state, ch);
    uint8_t payload[64];
    sim_fill_pattern(payload, sizeof(payload), 9);
    for (int i = 1; i <= ROUNDS; i++) {
        struct sim_chan *c = ch[i % 2];
        SIM_ASSERT(sim_chan_send(c, VM_PKT_DATA_INBAND, VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED,
                                 (uint64_t)i, payload, sizeof(payload)) == 0,
                   "send %d", i);
        struct vmpacket_descriptor d;
        uint32_t len;
        SIM_ASSERT(sim_chan_recv(c, &d, NULL, 0, &len, 10000) == 1,
                   "round trip %d of %d: no completion", i, ROUNDS);
        SIM_ASSERT(d.type == VM_PKT_COMP && d.trans_id == (uint64_t)i,
                   "round trip %d: type %u id %llu", i, d.type, (unsigned long long)d.trans_id);
    }
    for (int i = 0; i < 2; i++)
        SIM_ASSERT(sim_chan_close(ch[i]) == 0, "close %d", i);
    sim_vm_free(vm);
}

static void test_work_pair(void **state)
{
    const char *w = getenv("SIM_WORKERS");
    if (w && atoi(w) < 2) {
        /* One worker runs one item at a time: the pair would wait by design. */
        print_message("  skipped: needs two workers\n");
        skip();
    }
    struct sim_vm *vm = up(*state, NULL);
    for (int i = 1; i <= PAIR_ROUNDS; i++) {
        SIM_ASSERT(vsp_queue_work(ks.ch[0], pair_first, NULL) == 0 &&
                       vsp_queue_work(ks.ch[1], pair_second, NULL) == 0,
                   "queue");
        SIM_ASSERT(wait_count(&ks.pair_first, i) == i, "round %d: the pair never ran", i);
    }
    pthread_mutex_lock(&ks.lock);
    int stuck = ks.pair_stuck;
    pthread_mutex_unlock(&ks.lock);
    SIM_ASSERT(stuck == 0, "%d of %d times the second item waited behind the first", stuck,
               PAIR_ROUNDS);
    sim_vm_free(vm);
}

static void test_send_batch(void **state)
{
    struct sim_chan *ch[2];
    struct sim_vm *vm = up(*state, ch);
    struct sim_chan *c = ch[0];
    ks.guest_in = c->in.hdr;
    uint8_t b[8] = {'B'};
    for (int round = 1; round <= 2; round++) {
        bool masked = round == 2;
        __atomic_store_n(&c->in.hdr->interrupt_mask, masked ? 1u : 0u, __ATOMIC_SEQ_CST);
        sim_poll(vm, 50); /* the interrupt of the round before, if still unseen */
        uint64_t events = c->events;
        ks.idx_before = __atomic_load_n(&c->in.hdr->write_index, __ATOMIC_ACQUIRE);
        uint64_t id = 10 * (uint64_t)round;
        SIM_ASSERT(sim_chan_send(c, VM_PKT_DATA_INBAND, VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED,
                                 id, b, sizeof(b)) == 0,
                   "send");
        SIM_ASSERT(wait_count(&ks.works, round) == round, "round %d: the batch never ran", round);
        pthread_mutex_lock(&ks.lock);
        uint32_t inside = ks.idx_in_batch;
        pthread_mutex_unlock(&ks.lock);
        SIM_ASSERT(inside == ks.idx_before, "round %d: the guest saw the batch's packets before "
                   "its end (write index %u, was %u)", round, inside, ks.idx_before);
        for (uint64_t k = 0; k < 3; k++) {
            struct vmpacket_descriptor d;
            uint32_t len;
            int r = masked ? sim_chan_try_recv(c, &d, NULL, 0, &len)
                           : sim_chan_recv(c, &d, NULL, 0, &len, 10000);
            SIM_ASSERT(r == 1 && d.type == VM_PKT_COMP && d.trans_id == id + 1000 * k,
                       "round %d: completion %llu missing (got %d, id %llu)", round,
                       (unsigned long long)k, r, (unsigned long long)d.trans_id);
        }
        if (masked) {
            sim_poll(vm, 50);
            SIM_ASSERT(c->events == events, "masked, the batch still raised an interrupt");
        }
    }
    __atomic_store_n(&c->in.hdr->interrupt_mask, 0u, __ATOMIC_SEQ_CST);
    for (int i = 0; i < 2; i++)
        SIM_ASSERT(sim_chan_close(ch[i]) == 0, "close %d", i);
    sim_vm_free(vm);
}

/* The policy of the workers that run a channel's work items (3 rounds:
 * several workers may take them). */
static void check_worker_policy(void **state, int want, const char *name)
{
    struct sim_vm *vm = up(*state, NULL);
    for (int i = 1; i <= 3; i++) {
        pthread_mutex_lock(&ks.lock);
        ks.policy = -1;
        pthread_mutex_unlock(&ks.lock);
        SIM_ASSERT(vsp_queue_work(ks.ch[i % 2], record_policy, NULL) == 0, "queue");
        SIM_ASSERT(wait_count(&ks.works, i) == i, "work item %d never ran", i);
        pthread_mutex_lock(&ks.lock);
        int got = ks.policy;
        pthread_mutex_unlock(&ks.lock);
        SIM_ASSERT(got == want, "a worker runs policy %d, not %s (%d)", got, name, want);
    }
    sim_vm_free(vm);
}

static void test_worker_sched_batch(void **state)
{
    check_worker_policy(state, SCHED_BATCH, "SCHED_BATCH");
}

/* The default: the workers keep the policy vmbusd runs with. */
static void test_worker_sched_default(void **state)
{
    /* what this test process runs (SCHED_OTHER, unless started otherwise) */
    if (sched_getscheduler(0) == SCHED_BATCH) {
        print_message("  skipped: this test runs SCHED_BATCH itself\n");
        skip();
    }
    check_worker_policy(state, sched_getscheduler(0), "this process's policy");
}

static void test_worker_sched_config(void **state)
{
    (void)state;
    static const struct {
        const char *value;
        int want; /* enum cfg_worker_sched, or -1: refused */
    } cases[] = {
        {"batch", CFG_WORKER_SCHED_BATCH},
        {"normal", CFG_WORKER_SCHED_NORMAL},
        {"fifo", -1},
        {"", -1},
    };
    struct sim_conf conf;
    SIM_ASSERT(sim_conf_open(&conf), "mkdtemp");
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        SIM_ASSERT(sim_conf_write(&conf, "[daemon]\nworkers = 2\nworker-sched = %s\n",
                                  cases[k].value),
                   "config file");
        struct vmbusd_config cfg;
        config_defaults(&cfg);
        /* the opposite of what the file says, so a key that is ignored shows */
        cfg.worker_sched = cases[k].want == CFG_WORKER_SCHED_BATCH ? CFG_WORKER_SCHED_NORMAL
                                                                   : CFG_WORKER_SCHED_BATCH;
        char err[512] = "";
        int r = config_load(&cfg, conf.path, err, sizeof(err));
        int got = (int)cfg.worker_sched;
        config_free(&cfg);
        if (cases[k].want >= 0) {
            SIM_ASSERT(r == 0 && got == cases[k].want, "'%s': %d (%s), want %d", cases[k].value,
                       got, err, cases[k].want);
            continue;
        }
        SIM_ASSERT(r < 0 &&
                       sim_conf_error_is(&conf, err, 3, "worker-sched must be batch or normal"),
                   "'%s': got '%s'", cases[k].value, err);
    }
    sim_conf_close(&conf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_work_from_outside, setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_watch_pingpong, setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_guest_pingpong, setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_work_pair, setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_send_batch, setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_worker_sched_default, setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_worker_sched_batch, setup_batch, fx_teardown),
        cmocka_unit_test(test_worker_sched_config),
    };
    SIM_RUN("sim_wakeups", tests);
}
