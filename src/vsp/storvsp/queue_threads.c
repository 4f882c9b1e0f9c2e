/* SPDX-License-Identifier: MIT */
/* The thread-pool engine of a backend queue, for hosts without io_uring:
 * a few threads per queue doing blocking preadv/pwritev2/fdatasync/fallocate,
 * finished requests handed back through the queue's eventfd like io_uring's
 * completions. */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "backend_priv.h"

#define POOL_MAX_THREADS 4

_Atomic(void (*)(void)) stor_test_pool_hook;

struct req_list {
    struct stor_req *head, *tail;
};

struct stor_pool {
    struct stor_queue *q;
    pthread_mutex_t lock;
    pthread_cond_t work_cond;  /* work non-empty or stop */
    pthread_cond_t done_cond;  /* done non-empty */
    struct req_list pending;   /* submitted, not kicked: the queue's owner only */
    struct req_list work;      /* kicked, waiting for a thread */
    struct req_list done;      /* finished, waiting for reap */
    bool stop;
    int nthreads;
    pthread_t threads[POOL_MAX_THREADS];
};

static void list_push(struct req_list *l, struct stor_req *r)
{
    r->priv.next = NULL;
    if (l->tail)
        l->tail->priv.next = r;
    else
        l->head = r;
    l->tail = r;
}

static struct stor_req *list_pop(struct req_list *l)
{
    struct stor_req *r = l->head;
    if (r) {
        l->head = r->priv.next;
        if (!l->head)
            l->tail = NULL;
    }
    return r;
}

static void list_append(struct req_list *dst, struct req_list *src)
{
    if (!src->head)
        return;
    if (dst->tail)
        dst->tail->priv.next = src->head;
    else
        dst->head = src->head;
    dst->tail = src->tail;
    src->head = src->tail = NULL;
}

static ssize_t attempt(int fd, struct stor_req *req)
{
    const struct iovec *iov;
    int n;
    off_t off = (off_t)(req->offset + req->priv.done_bytes);
    ssize_t r;

    switch (req->op) {
    case STOR_OP_READ:
        stor_req_buffers(req, &iov, &n);
        r = preadv(fd, iov, n, off);
        break;
    case STOR_OP_WRITE:
        stor_req_buffers(req, &iov, &n);
        r = pwritev2(fd, iov, n, off, req->fua ? RWF_DSYNC : 0);
        break;
    case STOR_OP_FLUSH:
        r = fdatasync(fd);
        break;
    case STOR_OP_DISCARD:
        r = fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, (off_t)req->len);
        break;
    default:
        r = -1;
        errno = EINVAL;
    }
    return r < 0 ? -errno : r;
}

static void execute(int fd, struct stor_req *req)
{
    for (;;) {
        ssize_t r = attempt(fd, req);
        if (r == -EINTR)
            continue;
        if (stor_req_advance(req, r))
            return;
    }
}

static void *worker(void *arg)
{
    struct stor_pool *p = arg;
    int fd = p->q->b->fd;

    pthread_mutex_lock(&p->lock);
    for (;;) {
        struct stor_req *req = list_pop(&p->work);
        if (!req) {
            if (p->stop)
                break;
            pthread_cond_wait(&p->work_cond, &p->lock);
            continue;
        }
        pthread_mutex_unlock(&p->lock);
        void (*hook)(void) = atomic_load(&stor_test_pool_hook);
        if (hook)
            hook();
        execute(fd, req);
        pthread_mutex_lock(&p->lock);
        list_push(&p->done, req);
        pthread_cond_signal(&p->done_cond);
        eventfd_write(p->q->efd, 1);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

int stor_pool_init(struct stor_queue *q)
{
    struct stor_pool *p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    p->q = q;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->work_cond, NULL);
    pthread_cond_init(&p->done_cond, NULL);
    int want = q->depth < POOL_MAX_THREADS ? (int)q->depth : POOL_MAX_THREADS;
    for (int i = 0; i < want; i++) {
        if (pthread_create(&p->threads[i], NULL, worker, p) != 0)
            break;
        p->nthreads++;
    }
    q->pool = p;
    if (p->nthreads == 0) {
        stor_pool_fini(q);
        return -EAGAIN;
    }
    return 0;
}

void stor_pool_fini(struct stor_queue *q)
{
    struct stor_pool *p = q->pool;
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    p->stop = true;
    pthread_cond_broadcast(&p->work_cond);
    pthread_mutex_unlock(&p->lock);
    for (int i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    pthread_cond_destroy(&p->work_cond);
    pthread_cond_destroy(&p->done_cond);
    pthread_mutex_destroy(&p->lock);
    free(p);
    q->pool = NULL;
}

int stor_pool_start(struct stor_queue *q, struct stor_req *req)
{
    list_push(&q->pool->pending, req);
    return 0;
}

void stor_pool_kick(struct stor_queue *q)
{
    struct stor_pool *p = q->pool;
    if (!p->pending.head)
        return;
    pthread_mutex_lock(&p->lock);
    list_append(&p->work, &p->pending);
    pthread_cond_broadcast(&p->work_cond);
    pthread_mutex_unlock(&p->lock);
}

unsigned stor_pool_reap(struct stor_queue *q, unsigned max, bool wait)
{
    struct stor_pool *p = q->pool;
    struct req_list got = { 0 };
    uint64_t v;
    unsigned n = 0;

    if (read(q->efd, &v, sizeof(v)) < 0) {
        /* EAGAIN: nothing signalled */
    }
    pthread_mutex_lock(&p->lock);
    while (wait && !p->done.head && q->inflight)
        pthread_cond_wait(&p->done_cond, &p->lock);
    if (max == 0) {
        got = p->done;
        p->done.head = p->done.tail = NULL;
    } else {
        struct stor_req *r;
        for (unsigned i = 0; i < max && (r = list_pop(&p->done)); i++)
            list_push(&got, r);
    }
    if (p->done.head)
        eventfd_write(q->efd, 1); /* the budget left some: stay readable */
    pthread_mutex_unlock(&p->lock);

    struct stor_req *r;
    while ((r = list_pop(&got))) {
        stor_queue_finish(q, r);
        n++;
    }
    return n;
}
