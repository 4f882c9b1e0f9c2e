/* SPDX-License-Identifier: MIT */
/*
 * Fair draining: one receive callback takes a bounded batch of packets
 * (vsp_recv then returns 0) and vmbusd queues the channel's receive again
 * behind the work already waiting, so a channel whose guest keeps its ring
 * full cannot starve the other channels of a small worker pool.
 *
 *   test_busy_channel_yields  with one worker, channel A's ring full and a
 *                             work item of channel B queued while A drains:
 *                             B's item runs before A has taken the last
 *                             packet, and A still gets every packet without
 *                             another signal from the guest
 *
 * Deterministic with one worker (SIM_WORKERS=1, set by meson; skipped
 * otherwise): what runs when follows from the queue order alone.
 */
#include "sim_test.h"

#include <pthread.h>
#include <time.h>

#include "vmbusd/vsp.h"

#define VM_BUSY "vm-busy"
#define PAYLOAD 64

static const struct hv_guid busy_class = {
    {0x3a, 0x71, 0x0c, 0x5e, 0x92, 0x1f, 0x4b, 0x08, 0xb6, 0x4d, 0x27, 0x80, 0x1e, 0x6a, 0xc3, 0x5f}};

static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct vsp_channel *ch[2];
    bool go;             /* A may consume */
    bool b_queued;
    int a_taken;         /* packets A took */
    int a_receives;      /* receive callbacks of A that took packets */
    int b_ran_at;        /* a_taken when B's work item ran (-1: not yet) */
} bs = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

static void b_work(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&bs.lock);
    bs.b_ran_at = bs.a_taken;
    pthread_cond_broadcast(&bs.cond);
    pthread_mutex_unlock(&bs.lock);
}

static void busy_receive(struct vsp_channel *ch)
{
    if (ch != bs.ch[0])
        return;
    pthread_mutex_lock(&bs.lock);
    bool go = bs.go, queue_b = go && !bs.b_queued;
    if (queue_b)
        bs.b_queued = true;
    pthread_mutex_unlock(&bs.lock);
    if (!go)
        return; /* the guest is still filling the ring */
    /* Other work arrives while A is busy: here, B's item, queued now so the
     * order does not depend on when a signal reaches the loop. */
    if (queue_b)
        vsp_queue_work(bs.ch[1], b_work, NULL);
    struct vsp_packet pkt;
    int n = 0;
    while (vsp_recv(ch, &pkt) > 0)
        n++;
    pthread_mutex_lock(&bs.lock);
    bs.a_taken += n;
    if (n)
        bs.a_receives++;
    pthread_cond_broadcast(&bs.cond);
    pthread_mutex_unlock(&bs.lock);
}

static const struct vsp_channel_ops busy_ops = {.receive = busy_receive};

static int busy_attach(void *state, struct vsp_partition *p, void **part_state)
{
    (void)state;
    (void)part_state;
    for (int i = 0; i < 2; i++) {
        struct vsp_offer o = {.class_id = busy_class, .ops = &busy_ops};
        o.instance_id.b[0] = (uint8_t)(i + 1);
        bs.ch[i] = vsp_channel_offer(p, &o);
        if (!bs.ch[i])
            return -ENOMEM;
    }
    return 0;
}

static const struct vsp_plugin busy_plugin = {
    .api_version = VSP_API_VERSION,
    .name = "busy",
    .attach = busy_attach,
};
static const struct vsp_plugin *const linked[] = {&busy_plugin, NULL};

static int setup(void **state)
{
    static const struct sim_vm_cfg vms[] = {{VM_BUSY, "busy"}};
    pthread_mutex_lock(&bs.lock);
    bs.go = bs.b_queued = false;
    bs.a_taken = bs.a_receives = 0;
    bs.b_ran_at = -1;
    pthread_mutex_unlock(&bs.lock);
    return fx_setup_linked(state, vms, linked);
}

static void test_busy_channel_yields(void **state)
{
    struct fx *f = *state;
    struct sim_vm *vm = sim_up_offers(f->d, VM_BUSY, 2);
    struct sim_chan *a = NULL, *b = NULL;
    for (int i = 0; i < 2; i++) {
        struct sim_offer *of = sim_offer_by_class(vm, &busy_class, i);
        SIM_ASSERT(of != NULL, "offer %d", i);
        int st;
        struct sim_chan *c = sim_chan_open(vm, of->relid, 16, 2, &st);
        SIM_ASSERT(c != NULL, "open %d: status %d", i, st);
        if (of->if_instance.b[0] == 1)
            a = c;
        else
            b = c;
    }
    SIM_ASSERT(a && b, "both channels");

    uint8_t payload[PAYLOAD];
    sim_fill_pattern(payload, sizeof(payload), 5);
    int n = 0;
    while (sim_chan_send(a, VM_PKT_DATA_INBAND, 0, (uint64_t)n, payload, sizeof(payload)) == 0)
        n++;
    SIM_ASSERT(n > 2 * 64, "only %d packets fit", n);

    struct sim_offer *of = sim_find_offer(vm, a->relid);
    pthread_mutex_lock(&bs.lock);
    bs.go = true;
    pthread_mutex_unlock(&bs.lock);
    uint64_t signals = a->signals_sent;
    SIM_ASSERT(sim_signal_event(vm, of->connection_id) == 0, "signal");

    struct timespec end;
    clock_gettime(CLOCK_REALTIME, &end);
    end.tv_sec += 20; /* bounds a hang only */
    pthread_mutex_lock(&bs.lock);
    while (bs.a_taken < n || bs.b_ran_at < 0)
        if (pthread_cond_timedwait(&bs.cond, &bs.lock, &end) != 0)
            break;
    int taken = bs.a_taken, b_at = bs.b_ran_at, turns = bs.a_receives;
    pthread_mutex_unlock(&bs.lock);
    SIM_ASSERT(taken == n, "A took %d of %d packets (%d turns)", taken, n, turns);
    SIM_ASSERT(b_at >= 0 && b_at < n,
               "B's work ran after A took %d of %d packets (the busy channel starved it)", b_at,
               n);
    SIM_ASSERT(turns >= 2, "A drained %d packets in %d turn(s)", n, turns);
    SIM_ASSERT(a->signals_sent == signals, "the guest signalled %llu more times",
               (unsigned long long)(a->signals_sent - signals));
    sim_vm_free(vm);
}

int main(void)
{
    const char *w = getenv("SIM_WORKERS");
    if (!w || strcmp(w, "1") != 0) {
        printf("SKIP: sim_budget needs a one-worker pool (SIM_WORKERS=1)\n");
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_busy_channel_yields, setup, fx_teardown),
    };
    SIM_RUN("sim_budget", tests);
}
