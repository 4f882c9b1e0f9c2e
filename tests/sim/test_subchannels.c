/* SPDX-License-Identifier: MIT */
/*
 * Subchannels on demand (vsp_subchannel_offer), seen from both ends: a
 * test VSP linked into the test (simd_linked_plugins) creates subchannels
 * when the simulated Linux guest asks on the primary, as storvsc's
 * CREATE_SUB_CHANNELS does, and records its callbacks.
 *
 *   test_offered_and_used        3 subchannels: the guest gets late offers
 *                                with the primary's class and instance and
 *                                indexes 1..3, opens them, and its packets
 *                                reach the VSP's subchannel callbacks with
 *                                the right vsp_channel_subindex; vmbusctl
 *                                list shows them; Linux's rmmod order
 *                                (subchannels, then primary) ends with the
 *                                subchannels rescinded and released
 *   test_run_concurrently        two subchannels are inside receive at once
 *                                (a barrier the VSP can pass only so) with
 *                                a pool of two workers
 *   test_primary_close_first     the guest closes the primary while its
 *                                subchannels are open: their closes run and
 *                                return before the primary's starts, and
 *                                they are rescinded
 *   test_reopen_cycles           50 x (open, 3 subchannels, rmmod order):
 *                                every cycle gets the same relids back and
 *                                the list ends with the primary alone
 *   test_unload_reset            UNLOAD and a VM reset with subchannels
 *                                open: subchannel closes before the
 *                                primary's, the reconnected guest gets the
 *                                primary alone, and can create them again
 *   test_vm_gone                 the VMM goes away with subchannels open:
 *                                their closes come before the primary's
 *   test_bad_offers              index 0 and 65, a duplicate, an offer on a
 *                                subchannel and on a closed primary are
 *                                refused (NULL, logged with the VM and the
 *                                primary's relid); the good ones still work
 *
 * No timing decides an outcome: the waits have deadlines only so that a
 * broken daemon fails instead of hanging.
 */
#include "sim_test.h"

#include <pthread.h>
#include <time.h>

#include "vmbusd/vsp.h"

#define VM_SC "vm-subch"
#define NSUB 3
#define MAX_EVENTS 64

enum { OP_CREATE = 1, OP_OFFER_ONE, OP_ECHO, OP_BARRIER, OP_OFFER_FROM_SUB };

struct sc_req {
    uint32_t op, arg;
};
struct sc_rep {
    uint32_t op, result, subindex, relid, primary_ok, pad;
};

/* The VSP's state (one partition per test). */
static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct vsp_channel *primary;
    int subs_open;                /* subchannel opens minus closes */
    int primary_closes;
    bool primary_closing;         /* the primary's close has started */
    bool close_order_broken;      /* the primary's close ran with a subchannel open */
    bool subclose_saw_primary;    /* a subchannel close found the primary's close started */
    bool slow_sub_close;          /* subchannel closes wait a little for a racing primary close */
    bool offer_in_close_refused;  /* vsp_subchannel_offer from the primary's close got NULL */
    int offer_in_close_tries;
    int events[MAX_EVENTS];       /* closes: subchannel index, or 0 for the primary */
    int nevents;
    int packets[VSP_MAX_SUBCHANNELS + 1]; /* ECHO packets per subchannel index */
    int in_barrier;
} sc = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

static const struct hv_guid sc_class = {
    {0x8e, 0x2d, 0x44, 0x1a, 0x63, 0x0c, 0x4b, 0x12, 0xa0, 0x7d, 0x19, 0x35, 0xc4, 0x2f, 0x61, 0x0b}};
static const struct hv_guid sc_instance = {
    {0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x47, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xf0, 0x01}};

static void deadline_in(struct timespec *ts, int ms)
{
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

static void reply(struct vsp_channel *ch, const struct vsp_packet *pkt, uint32_t op,
                  uint32_t result)
{
    struct sc_rep r = {.op = op,
                       .result = result,
                       .subindex = vsp_channel_subindex(ch),
                       .relid = vsp_channel_relid(ch)};
    pthread_mutex_lock(&sc.lock);
    r.primary_ok = vsp_channel_subindex(ch) ? vsp_channel_primary(ch) == sc.primary
                                            : vsp_channel_primary(ch) == ch;
    pthread_mutex_unlock(&sc.lock);
    vsp_send_inband(ch, &r, sizeof(r), pkt->trans_id, false);
}

static bool take_req(const struct vsp_packet *pkt, struct sc_req *req)
{
    if (pkt->len < sizeof(*req))
        return false;
    memcpy(req, pkt->data, sizeof(*req));
    return true;
}

/* Two subchannels must be inside receive at the same time to pass. */
static uint32_t barrier(void)
{
    struct timespec ts;
    deadline_in(&ts, 20000);
    pthread_mutex_lock(&sc.lock);
    sc.in_barrier++;
    pthread_cond_broadcast(&sc.cond);
    int rc = 0;
    while (sc.in_barrier < 2 && rc == 0)
        rc = pthread_cond_timedwait(&sc.cond, &sc.lock, &ts);
    uint32_t ok = sc.in_barrier >= 2;
    pthread_mutex_unlock(&sc.lock);
    return ok;
}

static const struct vsp_channel_ops sub_ops;

static void sub_receive(struct vsp_channel *ch)
{
    struct vsp_packet pkt;
    struct sc_req req;
    while (vsp_recv(ch, &pkt) > 0) {
        if (!take_req(&pkt, &req))
            continue;
        switch (req.op) {
        case OP_ECHO:
            pthread_mutex_lock(&sc.lock);
            sc.packets[vsp_channel_subindex(ch)]++;
            pthread_mutex_unlock(&sc.lock);
            reply(ch, &pkt, req.op, 1);
            break;
        case OP_BARRIER:
            reply(ch, &pkt, req.op, barrier());
            break;
        case OP_OFFER_FROM_SUB:
            reply(ch, &pkt, req.op,
                  vsp_subchannel_offer(ch, (uint16_t)req.arg, &sub_ops, NULL) != NULL);
            break;
        }
    }
}

static int sub_open(struct vsp_channel *ch, const uint8_t *ud, size_t len)
{
    (void)ch, (void)ud, (void)len;
    pthread_mutex_lock(&sc.lock);
    sc.subs_open++;
    pthread_mutex_unlock(&sc.lock);
    return 0;
}

static void sub_close(struct vsp_channel *ch)
{
    pthread_mutex_lock(&sc.lock);
    if (sc.slow_sub_close) {
        /* Give a primary close that does not wait for us the chance to
         * start; the correct daemon never lets it. */
        struct timespec ts;
        deadline_in(&ts, 500);
        while (!sc.primary_closing &&
               pthread_cond_timedwait(&sc.cond, &sc.lock, &ts) == 0)
            ;
    }
    if (sc.primary_closing)
        sc.subclose_saw_primary = true;
    sc.subs_open--;
    if (sc.nevents < MAX_EVENTS)
        sc.events[sc.nevents++] = vsp_channel_subindex(ch);
    pthread_cond_broadcast(&sc.cond);
    pthread_mutex_unlock(&sc.lock);
}

static const struct vsp_channel_ops sub_ops = {
    .open = sub_open, .close = sub_close, .receive = sub_receive};

static void primary_receive(struct vsp_channel *ch)
{
    struct vsp_packet pkt;
    struct sc_req req;
    while (vsp_recv(ch, &pkt) > 0) {
        if (!take_req(&pkt, &req))
            continue;
        uint32_t n = 0;
        switch (req.op) {
        case OP_CREATE:
            for (uint32_t i = 1; i <= req.arg; i++)
                n += vsp_subchannel_offer(ch, (uint16_t)i, &sub_ops, NULL) != NULL;
            reply(ch, &pkt, req.op, n);
            break;
        case OP_OFFER_ONE:
            reply(ch, &pkt, req.op,
                  vsp_subchannel_offer(ch, (uint16_t)req.arg, &sub_ops, NULL) != NULL);
            break;
        case OP_ECHO:
            reply(ch, &pkt, req.op, 1);
            break;
        }
    }
}

static void primary_close(struct vsp_channel *ch)
{
    pthread_mutex_lock(&sc.lock);
    sc.primary_closing = true;
    pthread_cond_broadcast(&sc.cond);
    if (sc.subs_open != 0)
        sc.close_order_broken = true;
    pthread_mutex_unlock(&sc.lock);
    /* Too late: the primary is closing. */
    bool refused = vsp_subchannel_offer(ch, 7, &sub_ops, NULL) == NULL;
    pthread_mutex_lock(&sc.lock);
    sc.offer_in_close_tries++;
    sc.offer_in_close_refused = refused;
    sc.primary_closes++;
    sc.primary_closing = false;
    if (sc.nevents < MAX_EVENTS)
        sc.events[sc.nevents++] = 0;
    pthread_cond_broadcast(&sc.cond);
    pthread_mutex_unlock(&sc.lock);
}

static const struct vsp_channel_ops primary_ops = {.close = primary_close,
                                                   .receive = primary_receive};

static int sc_attach(void *state, struct vsp_partition *p, void **part_state)
{
    (void)state, (void)part_state;
    struct vsp_offer o = {.class_id = sc_class, .instance_id = sc_instance, .ops = &primary_ops};
    struct vsp_channel *ch = vsp_channel_offer(p, &o);
    pthread_mutex_lock(&sc.lock);
    sc.primary = ch;
    pthread_mutex_unlock(&sc.lock);
    return ch ? 0 : -ENOMEM;
}

static const struct vsp_plugin sc_plugin = {
    .api_version = VSP_API_VERSION,
    .name = "subch",
    .attach = sc_attach,
};
static const struct vsp_plugin *const linked[] = {&sc_plugin, NULL};

static void sc_reset_state(void)
{
    pthread_mutex_lock(&sc.lock);
    sc.primary = NULL;
    sc.subs_open = sc.primary_closes = sc.nevents = sc.in_barrier = 0;
    sc.offer_in_close_tries = 0;
    sc.primary_closing = sc.close_order_broken = sc.subclose_saw_primary = false;
    sc.slow_sub_close = sc.offer_in_close_refused = false;
    memset(sc.packets, 0, sizeof(sc.packets));
    pthread_mutex_unlock(&sc.lock);
}

static int setup(void **state)
{
    static const struct sim_vm_cfg vms[] = {{VM_SC, "subch"}};
    /* Two workers unless the run asks for another pool (the 1-worker
     * variant): test_run_concurrently needs two callbacks at once, and
     * nothing here may need more. */
    setenv("SIM_WORKERS", "2", 0);
    sc_reset_state();
    return fx_setup_linked(state, vms, linked);
}

/* A pool with a worker free for a primary close that would not wait for
 * the subchannels' (one per subchannel, one for the partition teardown,
 * one spare), unless the run asks for a smaller pool. */
static int setup_many_workers(void **state)
{
    const char *w = getenv("SIM_WORKERS");
    char was[16];
    snprintf(was, sizeof(was), "%s", w ? w : "2");
    bool small = atoi(was) < 2;
    if (!small)
        setenv("SIM_WORKERS", "6", 1);
    int ret = setup(state);
    setenv("SIM_WORKERS", was, 1);
    return ret;
}

/* ------------------------------------------------------------------ */
/* Guest side                                                          */

static struct sim_vm *vm_up(struct fx *f)
{
    return sim_up_offers(f->d, VM_SC, 1); /* one primary offer */
}

static struct sim_offer *primary_offer(struct sim_vm *vm)
{
    for (int i = 0; i < vm->noffers; i++) {
        struct sim_offer *o = &vm->offers[i];
        if (o->valid && !o->rescinded && o->sub_channel_index == 0 &&
            memcmp(&o->if_type, &sc_class, sizeof(sc_class)) == 0)
            return o;
    }
    return NULL;
}

/* Live subchannel offers of our class: relids[index - 1] for index 1..n;
 * returns how many there are (of any index). */
static int live_subs(struct sim_vm *vm, uint32_t *relids, int n)
{
    int found = 0;
    for (int i = 0; i < vm->noffers; i++) {
        struct sim_offer *o = &vm->offers[i];
        if (!o->valid || o->rescinded || o->sub_channel_index == 0 ||
            memcmp(&o->if_type, &sc_class, sizeof(sc_class)) != 0)
            continue;
        found++;
        if (relids && o->sub_channel_index <= n)
            relids[o->sub_channel_index - 1] = o->relid;
    }
    return found;
}

static int wait_subs(struct sim_vm *vm, uint32_t *relids, int n)
{
    uint64_t end = sim_now_ms() + (uint64_t)sim_timeout_ms;
    int found;
    while ((found = live_subs(vm, relids, n)) < n && sim_now_ms() < end)
        sim_poll(vm, 10);
    return found;
}

/* Offers of our class the guest holds rescinded (waiting for release). */
static int rescinded_subs(struct sim_vm *vm)
{
    int n = 0;
    for (int i = 0; i < vm->noffers; i++) {
        struct sim_offer *o = &vm->offers[i];
        n += o->valid && o->rescinded && o->sub_channel_index != 0;
    }
    return n;
}

static bool wait_rescinded(struct sim_vm *vm, int n)
{
    uint64_t end = sim_now_ms() + (uint64_t)sim_timeout_ms;
    while (rescinded_subs(vm) < n && sim_now_ms() < end)
        sim_poll(vm, 10);
    return rescinded_subs(vm) >= n;
}

static struct sc_rep call(struct sim_chan *ch, uint32_t op, uint32_t arg)
{
    static uint64_t trans = 100;
    struct sc_req req = {.op = op, .arg = arg};
    struct sc_rep rep;
    memset(&rep, 0xff, sizeof(rep));
    uint64_t t = trans++;
    SIM_ASSERT(sim_chan_send(ch, VM_PKT_DATA_INBAND, 0, t, &req, sizeof(req)) == 0,
               "send op %u on relid %u", op, ch->relid);
    struct vmpacket_descriptor d;
    uint32_t len = 0;
    SIM_ASSERT(sim_chan_recv(ch, &d, &rep, sizeof(rep), &len, sim_timeout_ms) == 1,
               "no answer to op %u on relid %u", op, ch->relid);
    SIM_ASSERT(len >= sizeof(rep) && d.trans_id == t && rep.op == op, "answer to op %u", op);
    return rep;
}

static struct sim_chan *open_relid(struct sim_vm *vm, uint32_t relid)
{
    int st;
    struct sim_chan *ch = sim_chan_open(vm, relid, 4, 4, &st);
    SIM_ASSERT(ch != NULL, "open relid %u: status %d", relid, st);
    return ch;
}

/* Open the primary, have NSUB subchannels made and open them. */
static struct sim_chan *open_with_subs(struct sim_vm *vm, struct sim_chan **subs,
                                       uint32_t *relids)
{
    struct sim_offer *po = primary_offer(vm);
    SIM_ASSERT(po != NULL, "primary offer");
    struct sim_chan *p = open_relid(vm, po->relid);
    SIM_ASSERT(call(p, OP_CREATE, NSUB).result == NSUB, "the VSP made %d subchannels", NSUB);
    SIM_ASSERT(wait_subs(vm, relids, NSUB) == NSUB, "the guest sees %d subchannel offers", NSUB);
    for (int i = 0; i < NSUB; i++)
        subs[i] = open_relid(vm, relids[i]);
    return p;
}

/* storvsc_remove -> vmbus_close: subchannels, then the primary; then the
 * host's rescinds of the subchannels are answered with RELID_RELEASED. */
static void rmmod(struct sim_vm *vm, struct sim_chan *p, struct sim_chan **subs)
{
    for (int i = 0; i < NSUB; i++)
        SIM_ASSERT(sim_chan_close(subs[i]) == 0, "close subchannel %d", i + 1);
    SIM_ASSERT(sim_chan_close(p) == 0, "close primary");
    SIM_ASSERT(wait_rescinded(vm, NSUB), "the subchannels are rescinded after the primary "
                                         "closed (%d of %d)", rescinded_subs(vm), NSUB);
    SIM_ASSERT(sim_release_subchannels(vm) == NSUB, "released %d subchannels", NSUB);
}

static bool wait_primary_closes(int n)
{
    struct timespec ts;
    deadline_in(&ts, sim_timeout_ms);
    pthread_mutex_lock(&sc.lock);
    int rc = 0;
    while (sc.primary_closes < n && rc == 0)
        rc = pthread_cond_timedwait(&sc.cond, &sc.lock, &ts);
    bool ok = sc.primary_closes >= n;
    pthread_mutex_unlock(&sc.lock);
    return ok;
}

/* The close events since `from`: every subchannel close before the
 * primary's, which comes last. */
static void assert_close_order(int from, int nsub)
{
    pthread_mutex_lock(&sc.lock);
    int n = sc.nevents - from, subs = 0, primary_at = -1;
    for (int i = from; i < sc.nevents; i++) {
        if (sc.events[i] == 0)
            primary_at = i - from;
        else
            subs++;
    }
    bool broken = sc.close_order_broken, saw = sc.subclose_saw_primary;
    pthread_mutex_unlock(&sc.lock);
    SIM_ASSERT(subs == nsub, "%d subchannel closes, expected %d", subs, nsub);
    SIM_ASSERT(primary_at == n - 1, "the primary's close came at %d of %d closes", primary_at, n);
    SIM_ASSERT(!broken && !saw, "the primary's close ran while a subchannel was open");
}

/* vmbusctl list: channels of the VM and how many are subchannels. */
static void list_channels(struct fx *f, int *total, int *subs)
{
    static char buf[65536];
    SIM_ASSERT(sim_ctl_call(simd_control_path(f->d), "list", buf, sizeof(buf)), "list");
    *total = *subs = 0;
    for (const char *s = buf; (s = strstr(s, "\"subchannel\":")); s++) {
        (*total)++;
        *subs += atoi(s + strlen("\"subchannel\":")) != 0;
    }
}

/* ------------------------------------------------------------------ */
/* Tests                                                               */

static void test_offered_and_used(void **state)
{
    struct fx *f = *state;
    struct sim_vm *vm = vm_up(f);
    struct sim_offer *po = primary_offer(vm);
    SIM_ASSERT(po != NULL, "primary offer");
    struct sim_offer prim = *po;
    struct sim_chan *p = open_relid(vm, prim.relid);
    SIM_ASSERT(call(p, OP_CREATE, NSUB).result == NSUB, "the VSP made %d subchannels", NSUB);

    uint32_t relids[NSUB] = {0};
    SIM_ASSERT(wait_subs(vm, relids, NSUB) == NSUB, "%d late subchannel offers", NSUB);
    for (int i = 0; i < NSUB; i++) {
        struct sim_offer *o = sim_find_offer(vm, relids[i]);
        SIM_ASSERT(o && o->sub_channel_index == i + 1, "index %d offered", i + 1);
        SIM_ASSERT(memcmp(&o->if_type, &prim.if_type, 16) == 0 &&
                       memcmp(&o->if_instance, &prim.if_instance, 16) == 0,
                   "subchannel %d has the primary's class and instance", i + 1);
        SIM_ASSERT(o->relid != prim.relid && o->is_dedicated_interrupt &&
                       o->connection_id == 0x10000u + o->relid &&
                       o->connection_id != prim.connection_id,
                   "subchannel %d: own relid %u and connection id %#x", i + 1, o->relid,
                   o->connection_id);
        SIM_ASSERT(o->monitorid == prim.monitorid &&
                       o->monitor_allocated == prim.monitor_allocated,
                   "subchannel %d: monitor settings of the primary", i + 1);
    }
    int total, subs;
    list_channels(f, &total, &subs);
    SIM_ASSERT(total == 1 + NSUB && subs == NSUB, "list shows %d channels, %d subchannels",
               total, subs);

    struct sim_chan *sch[NSUB];
    for (int i = 0; i < NSUB; i++)
        sch[i] = open_relid(vm, relids[i]);
    for (int round = 0; round < 2; round++)
        for (int i = 0; i < NSUB; i++) {
            struct sc_rep r = call(sch[i], OP_ECHO, 0);
            SIM_ASSERT(r.subindex == (uint32_t)i + 1 && r.relid == relids[i] && r.primary_ok,
                       "subchannel %d: the VSP saw index %u relid %u primary_ok %u", i + 1,
                       r.subindex, r.relid, r.primary_ok);
        }
    struct sc_rep r = call(p, OP_ECHO, 0);
    SIM_ASSERT(r.subindex == 0 && r.primary_ok, "the primary is index 0 and its own primary");
    pthread_mutex_lock(&sc.lock);
    for (int i = 1; i <= NSUB; i++)
        SIM_ASSERT(sc.packets[i] == 2, "subchannel %d got %d packets", i, sc.packets[i]);
    pthread_mutex_unlock(&sc.lock);

    rmmod(vm, p, sch);
    SIM_ASSERT(wait_primary_closes(1), "the primary's close");
    assert_close_order(0, NSUB);
    list_channels(f, &total, &subs);
    SIM_ASSERT(total == 1 && subs == 0, "after rmmod: %d channels, %d subchannels", total, subs);
    SIM_ASSERT(vm->bad_host_msgs == 0, "the guest dropped %llu host messages",
               (unsigned long long)vm->bad_host_msgs);
    sim_vm_free(vm);
}

static void test_run_concurrently(void **state)
{
    struct fx *f = *state;
    if (atoi(getenv("SIM_WORKERS")) < 2) {
        fprintf(stderr, "SKIP: two subchannels in receive at once need two workers\n");
        skip();
    }
    struct sim_vm *vm = vm_up(f);
    struct sim_chan *subs[NSUB];
    uint32_t relids[NSUB];
    struct sim_chan *p = open_with_subs(vm, subs, relids);

    /* Both requests are in the rings before either answer is awaited. */
    struct sc_req req = {.op = OP_BARRIER};
    SIM_ASSERT(sim_chan_send(subs[0], VM_PKT_DATA_INBAND, 0, 1, &req, sizeof(req)) == 0, "send");
    SIM_ASSERT(sim_chan_send(subs[1], VM_PKT_DATA_INBAND, 0, 2, &req, sizeof(req)) == 0, "send");
    for (int i = 0; i < 2; i++) {
        struct sc_rep rep;
        struct vmpacket_descriptor d;
        uint32_t len;
        SIM_ASSERT(sim_chan_recv(subs[i], &d, &rep, sizeof(rep), &len, 30000) == 1,
                   "barrier answer on subchannel %d", i + 1);
        SIM_ASSERT(rep.op == OP_BARRIER && rep.result == 1,
                   "subchannel %d passed the barrier alone: callbacks of different subchannels "
                   "do not run concurrently",
                   i + 1);
    }
    rmmod(vm, p, subs);
    sim_vm_free(vm);
}

static void test_primary_close_first(void **state)
{
    struct fx *f = *state;
    struct sim_vm *vm = vm_up(f);
    struct sim_chan *subs[NSUB];
    uint32_t relids[NSUB];
    struct sim_chan *p = open_with_subs(vm, subs, relids);
    pthread_mutex_lock(&sc.lock);
    sc.slow_sub_close = true;
    pthread_mutex_unlock(&sc.lock);

    SIM_ASSERT(sim_chan_close(p) == 0, "close the primary with its subchannels open");
    SIM_ASSERT(wait_primary_closes(1), "the primary's close");
    assert_close_order(0, NSUB);
    SIM_ASSERT(wait_rescinded(vm, NSUB), "the open subchannels are rescinded");
    /* The guest closes what was rescinded (no GPADL teardown) and releases. */
    for (int i = 0; i < NSUB; i++)
        SIM_ASSERT(sim_chan_close(subs[i]) == 0, "close rescinded subchannel %d", i + 1);
    SIM_ASSERT(sim_release_subchannels(vm) == NSUB, "released");
    int total, nsubs;
    list_channels(f, &total, &nsubs);
    SIM_ASSERT(total == 1 && nsubs == 0, "%d channels, %d subchannels left", total, nsubs);
    SIM_ASSERT(vm->bad_host_msgs == 0, "bad host messages");
    sim_vm_free(vm);
}

static void test_reopen_cycles(void **state)
{
    struct fx *f = *state;
    struct sim_vm *vm = vm_up(f);
    uint32_t first[NSUB] = {0};
    for (int cycle = 0; cycle < 50; cycle++) {
        struct sim_chan *subs[NSUB];
        uint32_t relids[NSUB];
        struct sim_chan *p = open_with_subs(vm, subs, relids);
        for (int i = 0; i < NSUB; i++) {
            if (cycle == 0)
                first[i] = relids[i];
            SIM_ASSERT(relids[i] == first[i], "cycle %d: subchannel %d got relid %u, not %u",
                       cycle, i + 1, relids[i], first[i]);
            SIM_ASSERT(call(subs[i], OP_ECHO, 0).subindex == (uint32_t)i + 1, "echo");
        }
        rmmod(vm, p, subs);
        SIM_ASSERT(wait_primary_closes(cycle + 1), "cycle %d: primary close", cycle);
    }
    int total, nsubs;
    list_channels(f, &total, &nsubs);
    SIM_ASSERT(total == 1 && nsubs == 0, "%d channels, %d subchannels left", total, nsubs);
    SIM_ASSERT(vm->bad_host_msgs == 0, "bad host messages");
    sim_vm_free(vm);
}

static void test_unload_reset(void **state)
{
    struct fx *f = *state;
    struct sim_vm *vm = vm_up(f);
    for (int how = 0; how < 2; how++) {
        struct sim_chan *subs[NSUB];
        uint32_t relids[NSUB];
        int from;
        pthread_mutex_lock(&sc.lock);
        from = sc.nevents;
        pthread_mutex_unlock(&sc.lock);
        open_with_subs(vm, subs, relids);
        pthread_mutex_lock(&sc.lock);
        sc.slow_sub_close = true;
        pthread_mutex_unlock(&sc.lock);
        if (how == 0)
            SIM_ASSERT(sim_unload(vm) == 0, "UNLOAD with subchannels open");
        else
            SIM_ASSERT(sim_vmm_reset(vm) == 0, "reset with subchannels open");
        SIM_ASSERT(wait_primary_closes(how + 1), "%s: the primary's close",
                   how ? "reset" : "UNLOAD");
        assert_close_order(from, NSUB);
        pthread_mutex_lock(&sc.lock);
        sc.slow_sub_close = false;
        pthread_mutex_unlock(&sc.lock);

        /* The guest comes back: the primary alone is offered. */
        vm->expect_offers = 1;
        SIM_ASSERT(sim_bringup(vm, VMBUS_VERSION_WIN10_V5_3) == 1, "reconnect: one offer");
        sim_poll(vm, 0);
        SIM_ASSERT(live_subs(vm, NULL, 0) == 0, "a subchannel was offered again");
        int total, nsubs;
        list_channels(f, &total, &nsubs);
        SIM_ASSERT(total == 1 && nsubs == 0, "%d channels, %d subchannels left", total, nsubs);
    }
    /* ... and can have them again. */
    struct sim_chan *subs[NSUB];
    uint32_t relids[NSUB];
    struct sim_chan *p = open_with_subs(vm, subs, relids);
    rmmod(vm, p, subs);
    SIM_ASSERT(vm->bad_host_msgs == 0, "bad host messages");
    sim_vm_free(vm);
}

static void test_vm_gone(void **state)
{
    struct fx *f = *state;
    struct sim_vm *vm = vm_up(f);
    struct sim_chan *subs[NSUB];
    uint32_t relids[NSUB];
    open_with_subs(vm, subs, relids);
    int from;
    pthread_mutex_lock(&sc.lock);
    from = sc.nevents;
    sc.slow_sub_close = true;
    pthread_mutex_unlock(&sc.lock);
    /* The VMM goes away with the primary and its subchannels open. */
    sim_vm_free(vm);
    SIM_ASSERT(wait_primary_closes(1), "the primary's close");
    assert_close_order(from, NSUB);
}

static void test_bad_offers(void **state)
{
    struct fx *f = *state;
    struct sim_vm *vm = vm_up(f);
    struct sim_offer *po = primary_offer(vm);
    SIM_ASSERT(po != NULL, "primary offer");
    uint32_t prelid = po->relid;
    char relid_s[16];
    snprintf(relid_s, sizeof(relid_s), "relid %u:", prelid);
    struct sim_chan *p = open_relid(vm, prelid);

    sim_log_clear();
    SIM_ASSERT(call(p, OP_OFFER_ONE, 0).result == 0, "index 0 refused");
    SIM_ASSERT(sim_log_count(LOG_WARN, VM_SC, relid_s, "subchannel 0 refused") == 1,
               "index 0: logged with the VM and the primary's relid");
    SIM_ASSERT(call(p, OP_OFFER_ONE, VSP_MAX_SUBCHANNELS + 1).result == 0, "index 65 refused");
    SIM_ASSERT(sim_log_count(LOG_WARN, VM_SC, relid_s, "subchannel 65 refused") == 1,
               "index 65 logged");
    SIM_ASSERT(call(p, OP_CREATE, 2).result == 2, "indexes 1 and 2");
    SIM_ASSERT(call(p, OP_OFFER_ONE, 2).result == 0, "index 2 again refused");
    SIM_ASSERT(sim_log_count(LOG_WARN, VM_SC, relid_s, "subchannel 2 refused") == 1,
               "duplicate logged");
    SIM_ASSERT(call(p, OP_OFFER_ONE, VSP_MAX_SUBCHANNELS).result == 1, "index 64 is fine");

    uint32_t relids[2];
    SIM_ASSERT(wait_subs(vm, relids, 2) >= 2, "subchannel offers");
    struct sim_chan *s1 = open_relid(vm, relids[0]);
    SIM_ASSERT(call(s1, OP_OFFER_FROM_SUB, 5).result == 0, "a subchannel of a subchannel");
    char sub_relid[16];
    snprintf(sub_relid, sizeof(sub_relid), "relid %u:", relids[0]);
    SIM_ASSERT(sim_log_count(LOG_WARN, VM_SC, sub_relid, "is a subchannel itself") == 1,
               "offer on a subchannel logged");
    SIM_ASSERT(call(s1, OP_ECHO, 0).subindex == 1, "subchannel 1 still works");
    SIM_ASSERT(live_subs(vm, NULL, 0) == 3, "the guest has 3 subchannels (1, 2, 64), not %d",
               live_subs(vm, NULL, 0));

    /* The primary's close tries once more: too late. */
    SIM_ASSERT(sim_chan_close(s1) == 0, "close subchannel 1");
    SIM_ASSERT(sim_chan_close(p) == 0, "close primary");
    SIM_ASSERT(wait_primary_closes(1), "primary close");
    pthread_mutex_lock(&sc.lock);
    bool refused = sc.offer_in_close_refused && sc.offer_in_close_tries == 1;
    pthread_mutex_unlock(&sc.lock);
    SIM_ASSERT(refused, "an offer from the primary's close was accepted");
    SIM_ASSERT(sim_log_count(LOG_WARN, VM_SC, relid_s, "the primary is not open") == 1,
               "offer on a closed primary logged");
    SIM_ASSERT(wait_rescinded(vm, 3), "rescinds");
    SIM_ASSERT(sim_release_subchannels(vm) == 3, "released");
    SIM_ASSERT(vm->bad_host_msgs == 0, "bad host messages");
    sim_vm_free(vm);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_offered_and_used, setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_run_concurrently, setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_primary_close_first, setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_reopen_cycles, setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_unload_reset, setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_vm_gone, setup_many_workers, fx_teardown),
        cmocka_unit_test_setup_teardown(test_bad_offers, setup, fx_teardown),
    };
    SIM_RUN("sim_subchannels", tests);
}
