/* SPDX-License-Identifier: MIT */
#include "vmbusd/workq.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

struct work_item {
    struct work_item *next;
    work_fn fn;
    void *arg;
};

struct workq_serial {
    struct workq *wq;
    struct workq_serial *next_ready; /* link in wq's ready list */
    struct work_item *head, *tail;
    bool scheduled;                  /* in the ready list or running */
    bool running;                    /* an item of it runs right now */
    unsigned long queued, done;      /* for drain */
    pthread_cond_t drained;
};

struct workq {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    struct workq_serial *ready_head, *ready_tail;
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
    s->next_ready = NULL;
    if (wq->ready_tail)
        wq->ready_tail->next_ready = s;
    else
        wq->ready_head = s;
    wq->ready_tail = s;
    pthread_cond_signal(&wq->wake);
}

static void *worker(void *arg)
{
    struct workq *wq = arg;
    pthread_mutex_lock(&wq->lock);
    for (;;) {
        /* When stopping, an idle worker stays until no item runs any more:
         * a running item may still queue work it then waits for (a
         * partition teardown drains the partition's serial queue). */
        while (!wq->ready_head && !(wq->stopping && wq->running == 0))
            pthread_cond_wait(&wq->wake, &wq->lock);
        struct workq_serial *s = wq->ready_head;
        if (!s)
            break; /* stopping and nothing left */
        wq->ready_head = s->next_ready;
        if (!wq->ready_head)
            wq->ready_tail = NULL;
        struct work_item *it = s->head;
        s->head = it->next;
        if (!s->head)
            s->tail = NULL;
        bool unserialised = s == &wq->unserialised;
        if (!unserialised)
            s->running = true;
        if (unserialised) {
            /* For the unserialised queue `scheduled` means "in the ready
             * list": it just left it, so put it back if items remain (other
             * workers may take the next one now) and let enqueue() re-add it
             * otherwise. */
            s->scheduled = false;
            if (s->head)
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
            if (s->head)
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
    wq->unserialised.wq = wq;
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
    it->next = NULL;
    struct workq *wq = s->wq;
    pthread_mutex_lock(&wq->lock);
    if (s->tail)
        s->tail->next = it;
    else
        s->head = it;
    s->tail = it;
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
    pthread_cond_init(&s->drained, NULL);
    return s;
}

int workq_serial_submit(struct workq_serial *s, work_fn fn, void *arg)
{
    return enqueue(s, fn, arg);
}

static void unlink_ready(struct workq *wq, struct workq_serial *s)
{
    struct workq_serial *prev = NULL;
    for (struct workq_serial *q = wq->ready_head; q; prev = q, q = q->next_ready) {
        if (q != s)
            continue;
        if (prev)
            prev->next_ready = q->next_ready;
        else
            wq->ready_head = q->next_ready;
        if (wq->ready_tail == q)
            wq->ready_tail = prev;
        return;
    }
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
        if (help && s->head && !s->running) {
            unlink_ready(wq, s); /* queued, not running: it is on the ready list */
            struct work_item *it = s->head;
            s->head = it->next;
            if (!s->head)
                s->tail = NULL;
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
            if (s->head)
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
