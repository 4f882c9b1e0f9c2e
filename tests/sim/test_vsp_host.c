/* SPDX-License-Identifier: MIT */
/*
 * The VSP host layer (src/vmbusd/vsp_host.c) seen from a VSP: a probe VSP
 * linked into this test (simd_linked_plugins) offers two channels and
 * records what vmbusd does to it.
 *
 *   test_no_timer_after_detach   when the VM goes, no timer callback runs
 *                                once detach() was called (detach frees what
 *                                the callbacks use; issue 7 item 3)
 *   test_oneshot_timers_freed    a one-shot timer per open, 500 open/close
 *                                cycles: only the two periodic timers remain
 *   test_gpadl_map_users         a GPADL mapped twice stays mapped until the
 *                                second unmap; another channel cannot unmap
 *                                it; the guest's teardown waits for the last
 *   test_hot_offer_opened_at_once  a channel offered while the guest runs and
 *                                opened at once, before vsp_channel_offer has
 *                                returned to the VSP, opens (the channel knew
 *                                its model channel only once it returned)
 */
#include "sim_test.h"

#include <pthread.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "vmbusd/internal.h"
#include "vmbusd/vsp.h"

#define VM_PROBE "vm-probe"
#define PROBE_CHANNELS 2
#define PROBE_ALIVE 0x600dcafe
#define PROBE_DEAD 0xdeadbeef

/* The probe's per-partition state (one partition per test). */
static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct vsp_partition *p;
    struct vsp_channel *ch[PROBE_CHANNELS];
    unsigned magic;          /* PROBE_ALIVE from attach, PROBE_DEAD from detach on */
    int ticks;               /* periodic callbacks while alive */
    int ticks_after_detach;  /* callbacks that found the state detached */
    int oneshots_started, oneshots_fired;
    bool detached;
} pr = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

/* test_hot_offer_opened_at_once's (a lock of its own: attach offers with
 * pr.lock held). */
static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool hold_offer;         /* __wrap_xp_offer_channel waits for opened */
    bool opened;             /* the guest's open of the hot-added channel was answered */
    struct vsp_channel *ch;  /* what vsp_channel_offer returned for it */
} hot = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

static const struct hv_guid probe_class = {
    {0x3a, 0x6c, 0x1e, 0x52, 0x77, 0x0b, 0x4f, 0x4d, 0x9a, 0x21, 0x5e, 0x0f, 0x6b, 0x13, 0x88, 0x40}};

static void probe_tick(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&pr.lock);
    if (pr.magic == PROBE_ALIVE)
        pr.ticks++;
    else
        pr.ticks_after_detach++; /* a use after free if detach had freed it */
    pthread_cond_broadcast(&pr.cond);
    pthread_mutex_unlock(&pr.lock);
}

static void probe_oneshot(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&pr.lock);
    pr.oneshots_fired++;
    pthread_mutex_unlock(&pr.lock);
}

static int probe_open(struct vsp_channel *ch, const uint8_t *ud, size_t len)
{
    (void)ud;
    (void)len;
    pthread_mutex_lock(&pr.lock);
    pr.oneshots_started++;
    pthread_mutex_unlock(&pr.lock);
    /* a one-shot timer per open (e.g. a start-up retry) */
    return vsp_timer_start(vsp_channel_partition(ch), ch, 1, 0, probe_oneshot, NULL) ? 0 : -ENOMEM;
}

static void probe_receive(struct vsp_channel *ch)
{
    struct vsp_packet pkt;
    while (vsp_recv(ch, &pkt) > 0)
        ;
}

static const struct vsp_channel_ops probe_ops = {.open = probe_open, .receive = probe_receive};

static int probe_attach(void *state, struct vsp_partition *p, void **part_state)
{
    (void)state;
    (void)part_state;
    pthread_mutex_lock(&pr.lock);
    pr.p = p;
    pr.magic = PROBE_ALIVE;
    for (int i = 0; i < PROBE_CHANNELS; i++) {
        struct vsp_offer o = {.class_id = probe_class, .ops = &probe_ops};
        o.instance_id.b[0] = (uint8_t)(i + 1);
        pr.ch[i] = vsp_channel_offer(p, &o);
    }
    pthread_mutex_unlock(&pr.lock);
    /* one periodic timer of the partition, one of a channel, 1 ms apart */
    if (!vsp_timer_start(p, NULL, 1, 1, probe_tick, NULL) ||
        !vsp_timer_start(p, pr.ch[0], 1, 1, probe_tick, NULL))
        return -ENOMEM;
    return 0;
}

/* Poisons the state the timers use, then - if a timer of this partition is
 * still live - waits until one has run: with teardown in the wrong order
 * this makes the use after free certain instead of a matter of luck. */
static void probe_detach(void *state, struct vsp_partition *p, void *part_state)
{
    (void)state;
    (void)part_state;
    pthread_mutex_lock(&pr.lock);
    pr.magic = PROBE_DEAD;
    /* the bound ends a hang only; the assertion is on the count */
    struct timespec end = sim_deadline_ms(10000);
    while (host_timer_count(p) > 0 && pr.ticks_after_detach == 0)
        if (pthread_cond_timedwait(&pr.cond, &pr.lock, &end) != 0)
            break;
    pr.detached = true;
    pthread_mutex_unlock(&pr.lock);
}

static const struct vsp_plugin probe_plugin = {
    .api_version = VSP_API_VERSION,
    .name = "probe",
    .attach = probe_attach,
    .detach = probe_detach,
};
static const struct vsp_plugin *const linked[] = {&probe_plugin, NULL};

static int setup(void **state)
{
    static const struct sim_vm_cfg vms[] = {{VM_PROBE, "probe"}};
    pthread_mutex_lock(&pr.lock);
    memset(pr.ch, 0, sizeof(pr.ch));
    pr.p = NULL;
    pr.magic = 0;
    pr.ticks = pr.ticks_after_detach = pr.oneshots_started = pr.oneshots_fired = 0;
    pr.detached = false;
    pthread_mutex_unlock(&pr.lock);
    pthread_mutex_lock(&hot.lock);
    hot.hold_offer = hot.opened = false;
    hot.ch = NULL;
    pthread_mutex_unlock(&hot.lock);
    return fx_setup_linked(state, vms, linked);
}

static struct sim_vm *probe_up(struct fx *f)
{
    return sim_up_offers(f->d, VM_PROBE, PROBE_CHANNELS);
}

/* Wait (sim deadline) until cond holds; the lock is held while it is read. */
#define WAIT_FOR(cond)                                                                   \
    ({                                                                                   \
        uint64_t end_ = sim_now_ms() + (uint64_t)sim_timeout_ms;                         \
        bool ok_;                                                                        \
        for (;;) {                                                                       \
            pthread_mutex_lock(&pr.lock);                                                \
            ok_ = (cond);                                                                \
            pthread_mutex_unlock(&pr.lock);                                              \
            if (ok_ || sim_now_ms() > end_)                                              \
                break;                                                                   \
            usleep(1000);                                                                \
        }                                                                                \
        ok_;                                                                             \
    })

static void test_no_timer_after_detach(void **state)
{
    struct fx *f = *state;
    struct sim_vm *vm = probe_up(f);
    SIM_ASSERT(WAIT_FOR(pr.ticks >= 4), "the probe's timers never ran (%d ticks)", pr.ticks);
    sim_vm_free(vm); /* the VMM goes away: partition teardown */
    SIM_ASSERT(WAIT_FOR(pr.detached), "detach never ran");
    simd_stop(f->d);
    f->d = NULL;
    SIM_ASSERT(pr.ticks_after_detach == 0,
               "%d timer callback(s) ran after detach (on state detach had freed)",
               pr.ticks_after_detach);
}

static void test_oneshot_timers_freed(void **state)
{
    struct fx *f = *state;
    struct sim_vm *vm = probe_up(f);
    struct sim_offer *of = sim_offer_by_class(vm, &probe_class, 0);
    SIM_ASSERT(of != NULL, "probe offer");
    enum { CYCLES = 500 };
    for (int i = 0; i < CYCLES; i++) {
        int st;
        struct sim_chan *ch = sim_chan_open(vm, of->relid, 2, 2, &st);
        SIM_ASSERT(ch != NULL, "open %d: status %d", i, st);
        SIM_ASSERT(sim_chan_close(ch) == 0, "close %d", i);
    }
    SIM_ASSERT(WAIT_FOR(pr.oneshots_fired == CYCLES), "%d of %d one-shot timers fired",
               pr.oneshots_fired, CYCLES);
    /* vmbusd frees a one-shot timer right after its callback returned */
    SIM_ASSERT(WAIT_FOR(host_timer_count(pr.p) == 2),
               "%u timers live after %d open/close cycles (2 periodic ones expected)",
               host_timer_count(pr.p), CYCLES);
    sim_vm_free(vm);
}

/* True if [p, p+len) is mapped in this process. */
static bool mapped(const void *p, size_t len)
{
    unsigned char vec[64];
    uintptr_t a = (uintptr_t)p & ~(uintptr_t)(HV_PAGE_SIZE - 1);
    return len / HV_PAGE_SIZE + 2 <= sizeof(vec) &&
           mincore((void *)a, (uintptr_t)p + len - a, vec) == 0;
}

static bool match_torndown(const struct sim_qmsg *m, const void *arg)
{
    const struct vmbus_channel_gpadl_torndown *t = (const void *)m->payload;
    return t->gpadl == *(const uint32_t *)arg;
}

static void test_gpadl_map_users(void **state)
{
    struct fx *f = *state;
    struct sim_vm *vm = probe_up(f);
    struct sim_offer *of = sim_offer_by_class(vm, &probe_class, 0);
    SIM_ASSERT(of != NULL, "probe offer");
    struct vsp_channel *mine = NULL, *other = NULL;
    for (int i = 0; i < PROBE_CHANNELS; i++) {
        if (vsp_channel_relid(pr.ch[i]) == of->relid)
            mine = pr.ch[i];
        else
            other = pr.ch[i];
    }
    SIM_ASSERT(mine && other, "probe channels");
    uint32_t handle;
    uint64_t off;
    SIM_ASSERT(sim_gpadl_create_pages(vm, of->relid, 3, &handle, &off) == 0, "GPADL");
    sim_fill_pattern(vm->mem + off, 3 * HV_PAGE_SIZE, 77);

    size_t len1 = 0, len2 = 0;
    uint8_t *m1 = vsp_gpadl_map(mine, handle, &len1);
    uint8_t *m2 = vsp_gpadl_map(mine, handle, &len2);
    SIM_ASSERT(m1 && m2 && len1 == 3 * HV_PAGE_SIZE && len2 == len1, "two maps");
    vsp_gpadl_unmap(mine, handle);
    SIM_ASSERT(mapped(m2, len2), "the first unmap took the second user's mapping away");
    SIM_ASSERT(memcmp(m2, vm->mem + off, len2) == 0, "mapping shows the guest's pages");

    vsp_gpadl_unmap(other, handle); /* not its GPADL: nothing happens */
    SIM_ASSERT(mapped(m2, len2), "another channel unmapped this channel's GPADL");

    struct vmbus_channel_gpadl_teardown t = {
        .header.msgtype = CHANNELMSG_GPADL_TEARDOWN, .child_relid = of->relid, .gpadl = handle};
    SIM_ASSERT(sim_post_msg(vm, &t, sizeof(t)) == 0, "GPADL_TEARDOWN");
    sim_poll(vm, 0);
    SIM_ASSERT(!sim_take_msg(vm, CHANNELMSG_GPADL_TORNDOWN, match_torndown, &handle, NULL),
               "GPADL_TORNDOWN while the VSP still maps the GPADL");
    SIM_ASSERT(mapped(m2, len2), "the guest's teardown unmapped a GPADL still in use");
    vsp_gpadl_unmap(mine, handle);
    SIM_ASSERT(sim_wait_msg(vm, CHANNELMSG_GPADL_TORNDOWN, match_torndown, &handle, NULL,
                            sim_timeout_ms),
               "no GPADL_TORNDOWN after the last unmap");
    sim_vm_free(vm);
}

/* The model's offer, as vsp_channel_offer calls it (linked with
 * --wrap=xp_offer_channel): with hold_offer set, its return to the VSP
 * layer waits until the guest's open has been answered, as when the VSP's
 * thread is preempted right after the offer went out.  The bound only ends
 * a hang; with the channel known too late the open crashes or fails. */
struct xp_channel *__real_xp_offer_channel(struct xpartition *xp,
                                           const struct vmbus_channel_offer *o, void *vsp,
                                           struct xp_channel **out);
struct xp_channel *__wrap_xp_offer_channel(struct xpartition *xp,
                                           const struct vmbus_channel_offer *o, void *vsp,
                                           struct xp_channel **out);
struct xp_channel *__wrap_xp_offer_channel(struct xpartition *xp,
                                           const struct vmbus_channel_offer *o, void *vsp,
                                           struct xp_channel **out)
{
    struct xp_channel *xc = __real_xp_offer_channel(xp, o, vsp, out);
    struct timespec end = sim_deadline_ms(10000);
    pthread_mutex_lock(&hot.lock);
    while (hot.hold_offer && !hot.opened)
        if (pthread_cond_timedwait(&hot.cond, &hot.lock, &end) != 0)
            break;
    pthread_mutex_unlock(&hot.lock);
    return xc;
}

/* A hot add from a thread of the VSP's own. */
static void *hot_offer(void *arg)
{
    (void)arg;
    struct vsp_offer o = {.class_id = probe_class, .ops = &probe_ops};
    o.instance_id.b[0] = PROBE_CHANNELS + 1;
    struct vsp_channel *ch = vsp_channel_offer(pr.p, &o);
    pthread_mutex_lock(&hot.lock);
    hot.ch = ch;
    pthread_mutex_unlock(&hot.lock);
    return NULL;
}

static void test_hot_offer_opened_at_once(void **state)
{
    struct fx *f = *state;
    struct sim_vm *vm = probe_up(f);
    pthread_mutex_lock(&hot.lock);
    hot.hold_offer = true;
    pthread_mutex_unlock(&hot.lock);
    pthread_t t;
    SIM_ASSERT(pthread_create(&t, NULL, hot_offer, NULL) == 0, "thread");

    struct sim_qmsg m;
    bool offered = sim_wait_msg(vm, CHANNELMSG_OFFERCHANNEL, NULL, NULL, &m, sim_timeout_ms);
    struct vmbus_channel_offer_channel offer = {0};
    memcpy(&offer, m.payload, sizeof(offer) < m.size ? sizeof(offer) : m.size);
    int st = -1;
    struct sim_chan *ch = offered ? sim_chan_open(vm, offer.child_relid, 2, 2, &st) : NULL;
    pthread_mutex_lock(&hot.lock);
    hot.opened = true;
    pthread_cond_broadcast(&hot.cond);
    pthread_mutex_unlock(&hot.lock);
    pthread_join(t, NULL);

    SIM_ASSERT(offered, "no offer reached the guest for the hot-added channel");
    SIM_ASSERT(ch != NULL, "the guest's open of relid %u failed (status %d)", offer.child_relid,
               st);
    SIM_ASSERT(hot.ch != NULL && vsp_channel_relid(hot.ch) == offer.child_relid,
               "vsp_channel_offer returned a channel of relid %u, the guest opened %u",
               hot.ch ? vsp_channel_relid(hot.ch) : 0, offer.child_relid);
    SIM_ASSERT(vsp_channel_is_open(hot.ch), "the VSP does not see its channel open");
    SIM_ASSERT(sim_chan_close(ch) == 0, "close");
    sim_vm_free(vm);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_no_timer_after_detach, setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_oneshot_timers_freed, setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_gpadl_map_users, setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_hot_offer_opened_at_once, setup, fx_teardown),
    };
    SIM_RUN("sim_vsp_host", tests);
}
