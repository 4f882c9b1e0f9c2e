/* SPDX-License-Identifier: MIT */
#include "vmbusd/workq.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/queue.h>

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

struct workq {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    TAILQ_HEAD(, workq_serial) ready; /* serial queues with items to run, FIFO */
    struct workq_serial unserialised; /* pseudo-queue for workq_submit */
    bool stopping;
    int running;   /* items being run right now */
    int nthreads;
    pthread_t *threads;
};

static __thread const struct workq_serial *current_serial;

static void make_ready(struct workq *wq, struct workq_serial *s)
{
    s->scheduled = true;
    s->in_ready = true;
    TAILQ_INSERT_TAIL(&wq->ready, s, ready_link);
    pthread_cond_signal(&wq->wake);
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

static void *worker(void *arg)
{
    struct workq *wq = arg;
    pthread_mutex_lock(&wq->lock);
    for (;;) {
        /* When stopping, an idle worker stays until no item runs any more:
         * a running item may still queue work it then waits for (a
         * partition teardown drains the partition's serial queue). */
        while (TAILQ_EMPTY(&wq->ready) && !(wq->stopping && wq->running == 0))
            pthread_cond_wait(&wq->wake, &wq->lock);
        struct workq_serial *s = TAILQ_FIRST(&wq->ready);
        if (!s)
            break; /* stopping and nothing left */
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
            if (!STAILQ_EMPTY(&s->items))
                make_ready(wq, s);
        }
        wq->running++;
        pthread_mutex_unlock(&wq->lock);

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
            if (!STAILQ_EMPTY(&s->items))
                make_ready(wq, s);
            else
                s->scheduled = false;
        }
        pthread_cond_broadcast(&s->drained);
    }
    pthread_mutex_unlock(&wq->lock);
    return NULL;
}

struct workq *workq_create(int nthreads)
{
    if (nthreads < 1)
        nthreads = 1;
    struct workq *wq = calloc(1, sizeof(*wq));
    if (!wq)
        return NULL;
    pthread_mutex_init(&wq->lock, NULL);
    pthread_cond_init(&wq->wake, NULL);
    TAILQ_INIT(&wq->ready);
    wq->unserialised.wq = wq;
    STAILQ_INIT(&wq->unserialised.items);
    pthread_cond_init(&wq->unserialised.drained, NULL);
    wq->threads = calloc((size_t)nthreads, sizeof(pthread_t));
    for (int i = 0; i < nthreads; i++) {
        if (pthread_create(&wq->threads[i], NULL, worker, wq) != 0)
            break;
        wq->nthreads++;
    }
    if (wq->nthreads == 0) {
        free(wq->threads);
        free(wq);
        return NULL;
    }
    return wq;
}

void workq_destroy(struct workq *wq)
{
    if (!wq)
        return;
    pthread_mutex_lock(&wq->lock);
    wq->stopping = true;
    pthread_cond_broadcast(&wq->wake);
    pthread_mutex_unlock(&wq->lock);
    for (int i = 0; i < wq->nthreads; i++)
        pthread_join(wq->threads[i], NULL);
    free(wq->threads);
    pthread_cond_destroy(&wq->unserialised.drained);
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
    pthread_mutex_unlock(&wq->lock);
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
            pthread_mutex_unlock(&wq->lock);

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
        pthread_cond_wait(&s->drained, &wq->lock);
    }
    pthread_mutex_unlock(&wq->lock);
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

bool workq_others_waiting(const struct workq_serial *s)
{
    struct workq *wq = s->wq;
    pthread_mutex_lock(&wq->lock);
    /* s itself is not on the ready list while one of its items runs. */
    bool waiting = !TAILQ_EMPTY(&wq->ready);
    pthread_mutex_unlock(&wq->lock);
    return waiting;
}
