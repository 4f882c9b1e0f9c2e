/* SPDX-License-Identifier: MIT */
/*
 * The worker pool (workq.h).
 *
 * An idle worker sleeps in epoll_wait on the pool's epoll fd: the fds
 * handed to workq_fd_add, an eventfd that announces queued work (`wakefd`,
 * edge-triggered: one write wakes one sleeper, as the kernel queues epoll
 * sleepers exclusively) and one that tells every sleeper the pool stops
 * (`stopfd`, level-triggered).  A worker that wakes for an fd runs its
 * callback and then the ready serial queues, beginning with the work the
 * callback queued: no other thread is woken for that item (`own_next_ready`
 * below), so a guest signal or an I/O completion reaches the VSP on the
 * thread the kernel woke.  (Only the first: more work made ready there
 * wakes sleepers as usual.)
 *
 * Waking: work queued while a worker sleeps writes wakefd (`idle` counts
 * the sleepers; the write comes right after the lock is dropped); every
 * worker that takes an item while more are ready wakes the next sleeper,
 * so queued work never waits for a thread that sleeps, and a worker that
 * finished an item takes its queue's next one itself without waking
 * anyone.  The checks are under `lock`: an item queued between a worker's
 * look at the ready list and its sleep sees it counted idle, and the
 * wakefd edge written is still reported to the epoll_wait that follows.
 *
 * fds are named in epoll by a slot index and a generation, never by a
 * pointer: an event that epoll_wait returned just before its fd was
 * deleted finds the generation changed and is dropped, and the fd's state
 * can be freed at once (or when its running callbacks end).
 */
#include "vmbusd/workq.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/queue.h>
#include <unistd.h>

#include "common/log.h"

#define EV_BATCH 16
#define TAG_WAKE 0
#define TAG_STOP 1
#define TAG_FD0 2 /* slot i is tagged (gen << 32) | (i + TAG_FD0) */

struct work_item {
    STAILQ_ENTRY(work_item) link;
    work_fn fn;
    void *arg;
};

struct workq_serial {
    struct workq *wq;
    TAILQ_ENTRY(workq_serial) ready_link; /* in wq->ready while in_ready */
    bool in_ready;
    STAILQ_HEAD(, work_item) items;
    bool scheduled;                  /* in the ready list or running */
    bool running;                    /* an item of it runs right now */
    unsigned long queued, done;      /* for drain */
    pthread_cond_t drained;
};

struct workq_fd {
    struct workq *wq;
    int fd;
    uint32_t slot;
    uint64_t tag;    /* its epoll tag: slot and generation */
    uint32_t events;
    work_fn fn;
    void *arg;
    int running;     /* callbacks running now (lock) */
    bool dead;       /* deleted (lock) */
    bool free_at_end; /* deleted while running: the last callback to end frees it */
    work_fn fin;
    void *fin_arg;
};

struct fd_slot {
    struct workq_fd *w; /* NULL: free */
    uint32_t gen;
};

struct workq {
    pthread_mutex_t lock;
    pthread_cond_t wake;     /* stopping: idle workers wait for running == 0 */
    pthread_cond_t fd_ended; /* a deleted fd's last callback ended */
    TAILQ_HEAD(, workq_serial) ready; /* serial queues with items to run, FIFO */
    struct workq_serial unserialised; /* pseudo-queue for workq_submit */
    bool stopping;
    int running;   /* items and fd callbacks being run right now */
    int idle;      /* workers in (or about to enter) epoll_wait */
    int epfd, wakefd, stopfd;
    struct fd_slot *slots;
    uint32_t nslots;
    int nthreads;
    pthread_t *threads;
    bool batch;                /* workers run SCHED_BATCH */
    _Atomic bool batch_failed; /* said once */
};

static __thread const struct workq_serial *current_serial;
static __thread bool on_worker; /* this thread is one of a pool's workers */
static __thread const struct workq_fd *current_fd;
/* This worker runs fd callbacks and takes the ready list right after: the
 * first queue they make ready is its own, no sleeper needs waking for it
 * (the next ones wake sleepers as usual). */
static __thread bool own_next_ready;

/* Wake-ups this thread owes sleeping workers: counted under the lock,
 * paid (an eventfd write each) once it is dropped, so a woken worker does
 * not find the lock still held by its waker. */
static __thread unsigned wakes_owed;

static void pay_wakes(struct workq *wq)
{
    for (; wakes_owed; wakes_owed--) {
        uint64_t one = 1;
        (void)!write(wq->wakefd, &one, sizeof(one));
    }
}

static void unlock(struct workq *wq)
{
    pthread_mutex_unlock(&wq->lock);
    pay_wakes(wq);
}

/* One sleeping worker comes out for queued work; lock held. */
static void wake_one(struct workq *wq)
{
    if (wq->stopping)
        pthread_cond_broadcast(&wq->wake); /* idle workers wait there now */
    if (wq->idle > (int)wakes_owed)
        wakes_owed++;
}

static void make_ready(struct workq *wq, struct workq_serial *s)
{
    s->scheduled = true;
    s->in_ready = true;
    TAILQ_INSERT_TAIL(&wq->ready, s, ready_link);
    if (own_next_ready)
        own_next_ready = false;
    else
        wake_one(wq);
}

static void unlink_ready(struct workq *wq, struct workq_serial *s)
{
    if (!s->in_ready)
        return;
    TAILQ_REMOVE(&wq->ready, s, ready_link);
    s->in_ready = false;
}

/* The next item of s (there is one); lock held. */
static struct work_item *take_item(struct workq_serial *s)
{
    struct work_item *it = STAILQ_FIRST(&s->items);
    STAILQ_REMOVE_HEAD(&s->items, link);
    return it;
}

/* ------------------------------------------------------------------ */
/* fd events                                                           */

static uint64_t fd_tag(const struct workq *wq, uint32_t slot)
{
    return ((uint64_t)wq->slots[slot].gen << 32) | (slot + TAG_FD0);
}

/* A callback of w ended; lock held.  true: the caller frees w (and runs
 * its fin) after dropping the lock. */
static bool fd_callback_ended(struct workq *wq, struct workq_fd *w)
{
    w->running--;
    wq->running--;
    if (wq->stopping && wq->running == 0)
        pthread_cond_broadcast(&wq->wake);
    if (w->running > 0 || !w->dead)
        return false;
    pthread_cond_broadcast(&wq->fd_ended);
    return w->free_at_end;
}

static void fd_free(struct workq_fd *w)
{
    if (w->fin)
        w->fin(w->fin_arg);
    free(w);
}

/* Run the callbacks of the events epoll_wait returned; lock held on entry
 * and exit, dropped meanwhile. */
static void dispatch(struct workq *wq, const struct epoll_event *ev, int n)
{
    struct workq_fd *got[EV_BATCH];
    int ng = 0;
    for (int i = 0; i < n; i++) {
        uint64_t tag = ev[i].data.u64;
        if (tag == TAG_WAKE || tag == TAG_STOP)
            continue; /* the wakefd edge is spent; stopfd stays readable */
        uint32_t slot = (uint32_t)(tag & 0xffffffffu) - TAG_FD0;
        /* Deleted since epoll_wait returned: the generation moved on. */
        if (slot >= wq->nslots || !wq->slots[slot].w || fd_tag(wq, slot) != tag)
            continue;
        struct workq_fd *w = wq->slots[slot].w;
        w->running++;
        wq->running++;
        got[ng++] = w;
    }
    if (!ng)
        return;
    unlock(wq);
    for (int i = 0; i < ng; i++) {
        current_fd = got[i];
        got[i]->fn(got[i]->arg);
        current_fd = NULL;
    }
    pthread_mutex_lock(&wq->lock);
    for (int i = 0; i < ng; i++) {
        if (fd_callback_ended(wq, got[i])) {
            unlock(wq);
            fd_free(got[i]);
            pthread_mutex_lock(&wq->lock);
        }
    }
}

/* Sleep until an fd is readable or work is queued, run the fds'
 * callbacks; lock held on entry and exit. */
static void wait_events(struct workq *wq)
{
    struct epoll_event ev[EV_BATCH];
    wq->idle++;
    unlock(wq);
    int n = epoll_wait(wq->epfd, ev, EV_BATCH, -1);
    pthread_mutex_lock(&wq->lock);
    wq->idle--;
    if (n > 0) {
        own_next_ready = true;
        dispatch(wq, ev, n);
        own_next_ready = false;
    }
}

static void *worker(void *arg)
{
    struct workq *wq = arg;
    on_worker = true;
    if (wq->batch) {
        /* Per thread; io-wq threads this worker's io_uring submissions
         * spawn inherit it.  Allowed unprivileged (a lower priority). */
        struct sched_param sp = {0};
        if (sched_setscheduler(0, SCHED_BATCH, &sp) != 0 &&
            !atomic_exchange(&wq->batch_failed, true))
            log_warn("worker pool: cannot switch a worker to SCHED_BATCH (%s); it keeps its "
                     "policy",
                     strerror(errno));
    }
    pthread_mutex_lock(&wq->lock);
    for (;;) {
        struct workq_serial *s = TAILQ_FIRST(&wq->ready);
        if (!s) {
            /* When stopping, an idle worker stays until no item runs any
             * more: a running item may still queue work it then waits for
             * (a partition teardown drains the partition's serial queue). */
            if (wq->stopping) {
                if (wq->running == 0)
                    break;
                pay_wakes(wq);
                pthread_cond_wait(&wq->wake, &wq->lock);
            } else {
                wait_events(wq);
            }
            continue;
        }
        unlink_ready(wq, s);
        struct work_item *it = take_item(s);
        bool unserialised = s == &wq->unserialised;
        if (!unserialised)
            s->running = true;
        if (unserialised) {
            /* For the unserialised queue `scheduled` means "in the ready
             * list": it just left it, so put it back if items remain (other
             * workers may take the next one now) and let enqueue() re-add it
             * otherwise. */
            s->scheduled = false;
            own_next_ready = true; /* woken for just below */
            if (!STAILQ_EMPTY(&s->items))
                make_ready(wq, s);
            own_next_ready = false;
        }
        /* More work than this thread: the next sleeper takes it. */
        if (!TAILQ_EMPTY(&wq->ready))
            wake_one(wq);
        wq->running++;
        unlock(wq);

        current_serial = s;
        it->fn(it->arg);
        current_serial = NULL;
        free(it);

        pthread_mutex_lock(&wq->lock);
        wq->running--;
        if (wq->stopping && wq->running == 0)
            pthread_cond_broadcast(&wq->wake); /* idle workers may leave now */
        s->done++;
        if (!unserialised) {
            s->running = false;
            /* This worker looks at the ready list next (and wakes a
             * sleeper if there is more than it takes): no wake-up for s. */
            own_next_ready = true;
            if (!STAILQ_EMPTY(&s->items))
                make_ready(wq, s);
            else
                s->scheduled = false;
            own_next_ready = false;
        }
        pthread_cond_broadcast(&s->drained);
    }
    unlock(wq);
    return NULL;
}

static int epoll_add_tag(int epfd, int fd, uint32_t events, uint64_t tag)
{
    struct epoll_event e = {.events = events, .data.u64 = tag};
    return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &e);
}

struct workq *workq_create(int nthreads, bool batch)
{
    if (nthreads < 1)
        nthreads = 1;
    struct workq *wq = calloc(1, sizeof(*wq));
    if (!wq)
        return NULL;
    pthread_mutex_init(&wq->lock, NULL);
    pthread_cond_init(&wq->wake, NULL);
    pthread_cond_init(&wq->fd_ended, NULL);
    TAILQ_INIT(&wq->ready);
    wq->batch = batch;
    wq->unserialised.wq = wq;
    STAILQ_INIT(&wq->unserialised.items);
    pthread_cond_init(&wq->unserialised.drained, NULL);
    wq->epfd = epoll_create1(EPOLL_CLOEXEC);
    wq->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    wq->stopfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    wq->threads = calloc((size_t)nthreads, sizeof(pthread_t));
    if (wq->epfd < 0 || wq->wakefd < 0 || wq->stopfd < 0 || !wq->threads ||
        epoll_add_tag(wq->epfd, wq->wakefd, EPOLLIN | EPOLLET, TAG_WAKE) < 0 ||
        epoll_add_tag(wq->epfd, wq->stopfd, EPOLLIN, TAG_STOP) < 0)
        goto fail;
    for (int i = 0; i < nthreads; i++) {
        if (pthread_create(&wq->threads[i], NULL, worker, wq) != 0)
            break;
        pthread_setname_np(wq->threads[i], "vmbusd-worker"); /* for top -H and perf */
        wq->nthreads++;
    }
    if (wq->nthreads > 0)
        return wq;
fail:
    if (wq->epfd >= 0)
        close(wq->epfd);
    if (wq->wakefd >= 0)
        close(wq->wakefd);
    if (wq->stopfd >= 0)
        close(wq->stopfd);
    free(wq->threads);
    free(wq);
    return NULL;
}

void workq_destroy(struct workq *wq)
{
    if (!wq)
        return;
    pthread_mutex_lock(&wq->lock);
    wq->stopping = true;
    pthread_cond_broadcast(&wq->wake);
    unlock(wq);
    uint64_t one = 1;
    (void)!write(wq->stopfd, &one, sizeof(one)); /* every sleeper comes out */
    for (int i = 0; i < wq->nthreads; i++)
        pthread_join(wq->threads[i], NULL);
    free(wq->threads);
    for (uint32_t i = 0; i < wq->nslots; i++)
        free(wq->slots[i].w); /* not reached: the fds' owners delete them first */
    free(wq->slots);
    close(wq->epfd);
    close(wq->wakefd);
    close(wq->stopfd);
    pthread_cond_destroy(&wq->unserialised.drained);
    pthread_cond_destroy(&wq->fd_ended);
    pthread_cond_destroy(&wq->wake);
    pthread_mutex_destroy(&wq->lock);
    free(wq);
}

static int enqueue(struct workq_serial *s, work_fn fn, void *arg)
{
    struct work_item *it = malloc(sizeof(*it));
    if (!it)
        return -ENOMEM;
    it->fn = fn;
    it->arg = arg;
    struct workq *wq = s->wq;
    pthread_mutex_lock(&wq->lock);
    STAILQ_INSERT_TAIL(&s->items, it, link);
    s->queued++;
    if (!s->scheduled)
        make_ready(wq, s);
    unlock(wq);
    return 0;
}

int workq_submit(struct workq *wq, work_fn fn, void *arg)
{
    return enqueue(&wq->unserialised, fn, arg);
}

struct workq_serial *workq_serial_create(struct workq *wq)
{
    struct workq_serial *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->wq = wq;
    STAILQ_INIT(&s->items);
    pthread_cond_init(&s->drained, NULL);
    return s;
}

int workq_serial_submit(struct workq_serial *s, work_fn fn, void *arg)
{
    return enqueue(s, fn, arg);
}

void workq_serial_drain(struct workq_serial *s)
{
    struct workq *wq = s->wq;
    pthread_mutex_lock(&wq->lock);
    unsigned long target = s->queued;
    /* A work item that drains another queue (a partition teardown waiting
     * for its channels' closes) runs that queue's items itself rather than
     * wait for a free worker: with every worker doing the same (or a pool
     * of one) nobody would be left to run them. */
    bool help = current_serial && current_serial != s && s != &wq->unserialised;
    while (s->done < target) {
        if (help && !STAILQ_EMPTY(&s->items) && !s->running) {
            unlink_ready(wq, s); /* queued, not running: it is on the ready list */
            struct work_item *it = take_item(s);
            s->running = true;
            wq->running++;
            unlock(wq);

            const struct workq_serial *outer = current_serial;
            current_serial = s;
            it->fn(it->arg);
            current_serial = outer;
            free(it);

            pthread_mutex_lock(&wq->lock);
            wq->running--;
            s->running = false;
            s->done++;
            if (!STAILQ_EMPTY(&s->items))
                make_ready(wq, s);
            else
                s->scheduled = false;
            if (wq->stopping && wq->running == 0)
                pthread_cond_broadcast(&wq->wake);
            pthread_cond_broadcast(&s->drained);
            continue;
        }
        pay_wakes(wq); /* what the help above made ready */
        pthread_cond_wait(&s->drained, &wq->lock);
    }
    unlock(wq);
}

void workq_serial_destroy(struct workq_serial *s)
{
    if (!s)
        return;
    workq_serial_drain(s);
    pthread_cond_destroy(&s->drained);
    free(s);
}

bool workq_serial_current(const struct workq_serial *s)
{
    return current_serial == s;
}

bool workq_on_worker(void) { return on_worker; }

bool workq_others_waiting(const struct workq_serial *s)
{
    struct workq *wq = s->wq;
    pthread_mutex_lock(&wq->lock);
    /* s itself is not on the ready list while one of its items runs. */
    bool waiting = !TAILQ_EMPTY(&wq->ready);
    if (!waiting && wq->idle == 0) {
        /* Every worker is busy, so nobody sleeps in epoll to see another
         * channel's signal: look now, or a guest that keeps one channel
         * busy would hide the others for as long as it likes. */
        struct epoll_event ev[EV_BATCH];
        unlock(wq);
        int n = epoll_wait(wq->epfd, ev, EV_BATCH, 0);
        pthread_mutex_lock(&wq->lock);
        if (n > 0)
            dispatch(wq, ev, n);
        waiting = !TAILQ_EMPTY(&wq->ready);
    }
    unlock(wq);
    return waiting;
}

/* ------------------------------------------------------------------ */
/* fds                                                                 */

struct workq_fd *workq_fd_add(struct workq *wq, int fd, unsigned mode, work_fn fn, void *arg)
{
    if (fd < 0 || !fn || (mode != WORKQ_FD_EDGE && mode != WORKQ_FD_ONESHOT)) {
        errno = EINVAL;
        return NULL;
    }
    struct workq_fd *w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    *w = (struct workq_fd){.wq = wq, .fd = fd, .fn = fn, .arg = arg,
                           .events = EPOLLIN | (mode == WORKQ_FD_EDGE ? EPOLLET : EPOLLONESHOT)};
    pthread_mutex_lock(&wq->lock);
    uint32_t slot = 0;
    while (slot < wq->nslots && wq->slots[slot].w)
        slot++;
    if (slot == wq->nslots) {
        uint32_t n = wq->nslots ? wq->nslots * 2 : 64;
        struct fd_slot *ns = realloc(wq->slots, n * sizeof(*ns));
        if (!ns) {
            unlock(wq);
            free(w);
            errno = ENOMEM;
            return NULL;
        }
        for (uint32_t i = wq->nslots; i < n; i++)
            ns[i] = (struct fd_slot){0};
        wq->slots = ns;
        wq->nslots = n;
    }
    w->slot = slot;
    w->tag = fd_tag(wq, slot);
    wq->slots[slot].w = w;
    if (epoll_add_tag(wq->epfd, fd, w->events, w->tag) < 0) {
        int err = errno;
        wq->slots[slot].w = NULL;
        unlock(wq);
        free(w);
        errno = err;
        return NULL;
    }
    unlock(wq);
    return w;
}

int workq_fd_rearm(struct workq_fd *w)
{
    /* No lock: w lives until the delete, which the caller does not run
     * concurrently. */
    struct epoll_event e = {.events = w->events, .data.u64 = w->tag};
    return epoll_ctl(w->wq->epfd, EPOLL_CTL_MOD, w->fd, &e) < 0 ? -errno : 0;
}

/* Take w out of epoll and its slot; lock held.  An event already returned
 * for it is dropped by dispatch (generation). */
static void fd_unlink(struct workq *wq, struct workq_fd *w)
{
    epoll_ctl(wq->epfd, EPOLL_CTL_DEL, w->fd, NULL);
    wq->slots[w->slot].w = NULL;
    wq->slots[w->slot].gen++;
    w->dead = true;
}

void workq_fd_del(struct workq_fd *w)
{
    if (!w)
        return;
    struct workq *wq = w->wq;
    pthread_mutex_lock(&wq->lock);
    fd_unlink(wq, w);
    if (current_fd == w) {
        w->free_at_end = true; /* this callback is the last one */
        unlock(wq);
        return;
    }
    while (w->running > 0)
        pthread_cond_wait(&wq->fd_ended, &wq->lock); /* (it owes no wake-ups) */
    unlock(wq);
    free(w);
}

void workq_fd_del_async(struct workq_fd *w, work_fn fin, void *fin_arg)
{
    if (!w)
        return;
    struct workq *wq = w->wq;
    pthread_mutex_lock(&wq->lock);
    fd_unlink(wq, w);
    w->fin = fin;
    w->fin_arg = fin_arg;
    bool now = w->running == 0;
    if (!now)
        w->free_at_end = true;
    unlock(wq);
    if (now)
        fd_free(w);
}
