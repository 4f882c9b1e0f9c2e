/* SPDX-License-Identifier: MIT */
/*
 * fd watches (vsp_fd_watch_add / vsp_fd_watch_remove): a VSP hands vmbusd
 * an eventfd (as it would an io_uring completion eventfd) and is called
 * back on the worker pool, as a work item of its channel, whenever it is
 * readable.  A watch VSP linked into this test records where and when.
 *
 *   test_watch_on_channel_queue   every write to the eventfd gives one
 *                                 callback, on a worker (never the loop),
 *                                 never while a callback of the channel
 *                                 runs: a write made from the channel's
 *                                 receive is handled after receive returned
 *   test_remove_waits             remove from another thread returns only
 *                                 once a running callback has finished;
 *                                 remove from the callback itself stops the
 *                                 watch although the fd stays readable
 *   test_no_callback_after_detach the VM goes while its fd is readable all
 *                                 the time: vmbusd stops the watch before
 *                                 detach, so no callback sees the VSP's
 *                                 state freed
 */
#include "sim_test.h"

#include <pthread.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "vmbusd/internal.h"
#include "vmbusd/vsp.h"

#define VM_WATCH "vm-watch"
#define ALIVE 0x600dcafe
#define DEAD 0xdeadbeef

static const struct hv_guid watch_class = {
    {0x4c, 0x0d, 0x95, 0x1b, 0x77, 0x2e, 0x41, 0x6a, 0x83, 0x5c, 0x0e, 0x19, 0xa2, 0x66, 0x7d, 0x30}};

enum mode {
    MODE_CONSUME,   /* read the eventfd: one callback per write */
    MODE_BLOCK,     /* consume, then wait for the test's gate */
    MODE_SELF_REMOVE, /* leave the fd readable and remove the watch */
    MODE_SPIN,      /* leave the fd readable: called again and again */
};

static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct vsp_partition *p;
    struct vsp_channel *ch;
    struct vsp_fd_watch *w;
    int efd;
    unsigned magic;
    enum mode mode;
    bool gate;
    bool in_channel_cb;   /* a callback of the channel runs */
    bool receive_wrote;   /* receive wrote the eventfd and returned */
    int calls;            /* watch callbacks */
    int calls_on_loop;    /* ... that ran on the event loop thread */
    int calls_overlapping;/* ... while another callback of the channel ran */
    int calls_after_receive; /* ... that came after receive's write */
    int calls_after_detach;
    bool in_watch;        /* the callback runs now */
    bool watch_done;      /* the blocked callback returned */
    int barriers;
} ws = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER, .efd = -1};

static pthread_t loop_thread;

static void watch_fn(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&ws.lock);
    if (ws.magic != ALIVE) {
        ws.calls_after_detach++;
        pthread_mutex_unlock(&ws.lock);
        return;
    }
    ws.calls++;
    if (pthread_equal(pthread_self(), loop_thread))
        ws.calls_on_loop++;
    if (ws.in_channel_cb)
        ws.calls_overlapping++;
    if (ws.receive_wrote)
        ws.calls_after_receive++;
    ws.in_watch = true;
    enum mode mode = ws.mode;
    pthread_cond_broadcast(&ws.cond);
    pthread_mutex_unlock(&ws.lock);

    uint64_t v;
    if (mode == MODE_CONSUME || mode == MODE_BLOCK)
        (void)!read(ws.efd, &v, sizeof(v));
    if (mode == MODE_SELF_REMOVE)
        vsp_fd_watch_remove(ws.w);

    pthread_mutex_lock(&ws.lock);
    if (mode == MODE_BLOCK) {
        while (!ws.gate)
            pthread_cond_wait(&ws.cond, &ws.lock);
        ws.watch_done = true;
    }
    ws.in_watch = false;
    pthread_cond_broadcast(&ws.cond);
    pthread_mutex_unlock(&ws.lock);
}

/* Receive writes the eventfd itself, then stays a while: a watch callback
 * serialised with the channel cannot run before it returns. */
static void watch_receive(struct vsp_channel *ch)
{
    struct vsp_packet pkt;
    bool got = false;
    while (vsp_recv(ch, &pkt) > 0)
        got = true;
    if (!got)
        return;
    pthread_mutex_lock(&ws.lock);
    ws.in_channel_cb = true;
    pthread_mutex_unlock(&ws.lock);
    uint64_t one = 1;
    (void)!write(ws.efd, &one, sizeof(one));
    /* Give a wrongly unserialised callback every chance to show up. */
    struct timespec end = sim_deadline_ms(200);
    pthread_mutex_lock(&ws.lock);
    while (pthread_cond_timedwait(&ws.cond, &ws.lock, &end) == 0)
        ;
    ws.in_channel_cb = false;
    ws.receive_wrote = true;
    pthread_mutex_unlock(&ws.lock);
}

static const struct vsp_channel_ops watch_ops = {.receive = watch_receive};

static int watch_attach(void *state, struct vsp_partition *p, void **part_state)
{
    (void)state;
    (void)part_state;
    struct vsp_offer o = {.class_id = watch_class, .ops = &watch_ops};
    struct vsp_channel *ch = vsp_channel_offer(p, &o);
    if (!ch)
        return -ENOMEM;
    int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (efd < 0)
        return -errno;
    pthread_mutex_lock(&ws.lock);
    ws.p = p;
    ws.ch = ch;
    ws.efd = efd;
    ws.magic = ALIVE;
    pthread_mutex_unlock(&ws.lock);
    ws.w = vsp_fd_watch_add(p, ch, efd, watch_fn, NULL);
    return ws.w ? 0 : -errno;
}

static void watch_detach(void *state, struct vsp_partition *p, void *part_state)
{
    (void)state;
    (void)p;
    (void)part_state;
    /* The eventfd stays open (and readable, in test_no_callback_after_detach)
     * until the test closes it: a watch vmbusd failed to stop would go on. */
    pthread_mutex_lock(&ws.lock);
    ws.magic = DEAD;
    pthread_cond_broadcast(&ws.cond);
    /* Stay a while, as a detach freeing much would: a watch still on would
     * be called meanwhile (the assertion is on that count, not on time). */
    struct timespec end = sim_deadline_ms(100);
    while (pthread_cond_timedwait(&ws.cond, &ws.lock, &end) == 0)
        ;
    pthread_mutex_unlock(&ws.lock);
}

static const struct vsp_plugin watch_plugin = {
    .api_version = VSP_API_VERSION,
    .name = "watch",
    .attach = watch_attach,
    .detach = watch_detach,
};
static const struct vsp_plugin *const linked[] = {&watch_plugin, NULL};

static int setup(void **state)
{
    static const struct sim_vm_cfg vms[] = {{VM_WATCH, "watch"}};
    pthread_mutex_lock(&ws.lock);
    if (ws.efd >= 0)
        close(ws.efd); /* the previous test's (its daemon is stopped) */
    ws.efd = -1;
    ws.mode = MODE_CONSUME;
    ws.gate = ws.in_channel_cb = ws.receive_wrote = ws.in_watch = ws.watch_done = false;
    ws.calls = ws.calls_on_loop = ws.calls_overlapping = ws.calls_after_receive = 0;
    ws.calls_after_detach = ws.barriers = 0;
    pthread_mutex_unlock(&ws.lock);
    int ret = fx_setup_linked(state, vms, linked);
    if (ret == 0)
        loop_thread = simd_vmbusd(((struct fx *)*state)->d)->thread;
    return ret;
}

static int wait_count(const int *v, int want)
{
    return sim_wait_count(&ws.lock, &ws.cond, v, want);
}
static int get(const int *v) { return sim_count(&ws.lock, v); }

static void poke(void)
{
    uint64_t one = 1;
    pthread_mutex_lock(&ws.lock);
    int fd = ws.efd;
    pthread_mutex_unlock(&ws.lock);
    SIM_ASSERT(write(fd, &one, sizeof(one)) == sizeof(one), "eventfd write");
}

static struct sim_vm *up(struct fx *f, struct sim_chan **out)
{
    struct sim_vm *vm = sim_up_offers(f->d, VM_WATCH, 1);
    if (out)
        *out = sim_open_class(vm, &watch_class, 0, 4, 4);
    return vm;
}

/* A barrier through the loop and the channel's queue: a one-shot timer
 * fires on the loop (which then also sees a readable watched fd) and its
 * callback queues a work item on the channel behind anything that loop
 * turn queued. */
static void barrier_work(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&ws.lock);
    ws.barriers++;
    pthread_cond_broadcast(&ws.cond);
    pthread_mutex_unlock(&ws.lock);
}

static void barrier_timer(void *arg)
{
    vsp_queue_work(ws.ch, barrier_work, arg);
}

static void barrier(void)
{
    int want = get(&ws.barriers) + 1;
    SIM_ASSERT(vsp_timer_start(ws.p, ws.ch, 1, 0, barrier_timer, NULL) != NULL, "timer");
    SIM_ASSERT(wait_count(&ws.barriers, want) == want, "barrier");
}

static void test_watch_on_channel_queue(void **state)
{
    struct fx *f = *state;
    struct sim_chan *ch;
    struct sim_vm *vm = up(f, &ch);
    for (int i = 1; i <= 3; i++) {
        poke();
        SIM_ASSERT(wait_count(&ws.calls, i) == i, "call %d", i);
        barrier(); /* level-triggered: consumed, so no extra call */
        SIM_ASSERT(get(&ws.calls) == i, "%d calls for %d writes", get(&ws.calls), i);
    }
    /* a write from the channel's own receive: handled after it returned */
    uint8_t pl[8] = {0};
    SIM_ASSERT(sim_chan_send(ch, VM_PKT_DATA_INBAND, 0, 1, pl, sizeof(pl)) == 0, "send");
    SIM_ASSERT(wait_count(&ws.calls, 4) == 4, "call after receive's write");
    SIM_ASSERT(get(&ws.calls_after_receive) == 1 && get(&ws.calls_overlapping) == 0,
               "the callback ran while receive ran (%d overlapping, %d after)",
               get(&ws.calls_overlapping), get(&ws.calls_after_receive));
    SIM_ASSERT(get(&ws.calls_on_loop) == 0, "%d callbacks on the event loop",
               get(&ws.calls_on_loop));
    SIM_ASSERT(sim_chan_close(ch) == 0, "close");
    sim_vm_free(vm);
}

struct remover {
    pthread_t t;
    bool returned;
    bool fn_done_at_return;
};

static void *remove_thread(void *arg)
{
    struct remover *r = arg;
    vsp_fd_watch_remove(ws.w);
    pthread_mutex_lock(&ws.lock);
    r->fn_done_at_return = ws.watch_done;
    r->returned = true;
    pthread_cond_broadcast(&ws.cond);
    pthread_mutex_unlock(&ws.lock);
    return NULL;
}

static void test_remove_waits(void **state)
{
    struct fx *f = *state;
    struct sim_vm *vm = up(f, NULL);
    pthread_mutex_lock(&ws.lock);
    ws.mode = MODE_BLOCK;
    pthread_mutex_unlock(&ws.lock);
    poke();
    SIM_ASSERT(wait_count(&ws.calls, 1) == 1, "callback");

    /* the callback is blocked in fn: remove must wait for it */
    struct remover r = {0};
    SIM_ASSERT(pthread_create(&r.t, NULL, remove_thread, &r) == 0, "thread");
    struct timespec end = sim_deadline_ms(300); /* how long remove gets to return wrongly early */
    pthread_mutex_lock(&ws.lock);
    while (!r.returned && pthread_cond_timedwait(&ws.cond, &ws.lock, &end) == 0)
        ;
    ws.gate = true;
    pthread_cond_broadcast(&ws.cond);
    pthread_mutex_unlock(&ws.lock);
    pthread_join(r.t, NULL);
    SIM_ASSERT(r.fn_done_at_return, "remove returned while the callback still ran");
    poke();
    barrier();
    SIM_ASSERT(get(&ws.calls) == 1, "%d callbacks after remove", get(&ws.calls) - 1);

    /* a second watch that removes itself from its callback, fd left readable */
    pthread_mutex_lock(&ws.lock);
    ws.mode = MODE_SELF_REMOVE;
    /* Stored under ws.lock, which watch_fn takes first: the fd is readable,
     * so fn may run before vsp_fd_watch_add returns, and would remove the
     * old watch instead. */
    ws.w = vsp_fd_watch_add(ws.p, ws.ch, ws.efd, watch_fn, NULL);
    pthread_mutex_unlock(&ws.lock);
    SIM_ASSERT(ws.w != NULL, "second watch");
    SIM_ASSERT(wait_count(&ws.calls, 2) == 2, "second watch's callback");
    barrier();
    barrier();
    SIM_ASSERT(get(&ws.calls) == 2, "%d callbacks after the watch removed itself",
               get(&ws.calls) - 2);
    sim_vm_free(vm);
}

static void test_no_callback_after_detach(void **state)
{
    struct fx *f = *state;
    struct sim_vm *vm = up(f, NULL);
    pthread_mutex_lock(&ws.lock);
    ws.mode = MODE_SPIN;
    pthread_mutex_unlock(&ws.lock);
    poke(); /* readable from now on: called again after every return */
    SIM_ASSERT(wait_count(&ws.calls, 20) >= 20, "callbacks while alive");
    sim_vm_free(vm); /* the VM goes; the watch is still on */
    struct timespec end = sim_deadline_ms(20000); /* bounds a hang only */
    pthread_mutex_lock(&ws.lock);
    while (ws.magic != DEAD && pthread_cond_timedwait(&ws.cond, &ws.lock, &end) == 0)
        ;
    bool detached = ws.magic == DEAD;
    pthread_mutex_unlock(&ws.lock);
    SIM_ASSERT(detached, "detach never ran");
    simd_stop(f->d); /* every worker gone: the count is final */
    f->d = NULL;
    SIM_ASSERT(ws.calls_after_detach == 0, "%d callbacks after detach", ws.calls_after_detach);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_watch_on_channel_queue, setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_remove_waits, setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_no_callback_after_detach, setup, fx_teardown),
    };
    SIM_RUN("sim_fd_watch", tests);
}
