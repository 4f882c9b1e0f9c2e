/* SPDX-License-Identifier: MIT */
/* Inside the storage backend: the backend and queue structures, shared by
 * backend.c (open), queue.c (validation, bounce buffers, short transfers)
 * and the two engines (queue_uring.c, queue_threads.c). */
#ifndef VMBUSD_STORVSP_BACKEND_PRIV_H
#define VMBUSD_STORVSP_BACKEND_PRIV_H

#include <pthread.h>
#include <liburing.h>

#include "backend.h"

struct stor_backend {
    int fd;
    struct stor_backend_info info;
};

struct stor_pool; /* queue_threads.c */

struct stor_queue {
    struct stor_backend *b;
    enum stor_engine engine;
    int uring_errno;
    unsigned depth;
    unsigned inflight;  /* submitted and not yet handed to done */
    bool closing;
    int efd;
    /* io_uring */
    struct io_uring ring;
    unsigned unsubmitted; /* SQEs prepared since the last io_uring_submit */
    /* thread pool */
    struct stor_pool *pool;
};

/* engine -> queue.c: req finished one attempt with res (bytes or -errno);
 * returns true if it is complete (done may run), false if the remainder was
 * resubmitted. */
bool stor_queue_attempt_done(struct stor_queue *q, struct stor_req *req, ssize_t res);
/* Finish req: copy out a read bounce, free private buffers, run done. */
void stor_queue_finish(struct stor_queue *q, struct stor_req *req);

/* Account res (bytes or -errno) of one attempt of req: 1 when req is
 * complete (priv.res holds its result), 0 when a remainder is left (the
 * buffers for it are ready: stor_req_buffers). */
int stor_req_advance(struct stor_req *req, ssize_t res);
/* the buffers of req's next attempt (bounce, remainder or the caller's) */
void stor_req_buffers(struct stor_req *req, const struct iovec **iov, int *iovcnt);

int stor_uring_init(struct stor_queue *q);
void stor_uring_fini(struct stor_queue *q);
int stor_uring_start(struct stor_queue *q, struct stor_req *req);
void stor_uring_kick(struct stor_queue *q);
unsigned stor_uring_reap(struct stor_queue *q, unsigned max, bool wait);
bool stor_uring_quiet(struct stor_queue *q, bool quiet);

int stor_pool_init(struct stor_queue *q);
void stor_pool_fini(struct stor_queue *q);
int stor_pool_start(struct stor_queue *q, struct stor_req *req);
void stor_pool_kick(struct stor_queue *q);
unsigned stor_pool_reap(struct stor_queue *q, unsigned max, bool wait);

#endif
