/* SPDX-License-Identifier: MIT */
/* The io_uring engine of a backend queue: one ring per queue, its
 * completions signalled on the queue's eventfd. */
#include <errno.h>
#include <linux/falloc.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "backend_priv.h"

#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#else
#define VALGRIND_MAKE_MEM_DEFINED(p, n) ((void)(p), (void)(n))
#endif

/* memcheck cannot see the kernel fill buffers from io_uring: tell it what a
 * read completed (a no-op outside valgrind) */
static void mark_read(struct stor_req *req, ssize_t res)
{
    if (req->op != STOR_OP_READ || res <= 0)
        return;
    const struct iovec *iov;
    int n;
    stor_req_buffers(req, &iov, &n);
    for (int i = 0; i < n && res > 0; i++) {
        size_t c = iov[i].iov_len < (size_t)res ? iov[i].iov_len : (size_t)res;
        VALGRIND_MAKE_MEM_DEFINED(iov[i].iov_base, c);
        res -= (ssize_t)c;
    }
}

static const int needed_ops[] = {
    IORING_OP_READV, IORING_OP_WRITEV, IORING_OP_FSYNC, IORING_OP_FALLOCATE,
};

int stor_uring_init(struct stor_queue *q)
{
    /* No SINGLE_ISSUER or COOP_TASKRUN: a channel's callbacks, and so this
     * ring's submissions, run on whichever worker-pool thread is free, and
     * a submitter asleep in the pool must still get its completions. */
    int r = io_uring_queue_init(q->depth, &q->ring, 0);
    if (r < 0)
        return r;
    struct io_uring_probe *probe = io_uring_get_probe_ring(&q->ring);
    if (!probe) {
        io_uring_queue_exit(&q->ring);
        return -ENOSYS;
    }
    for (size_t i = 0; i < sizeof(needed_ops) / sizeof(needed_ops[0]); i++) {
        if (!io_uring_opcode_supported(probe, needed_ops[i])) {
            io_uring_free_probe(probe);
            io_uring_queue_exit(&q->ring);
            return -EOPNOTSUPP;
        }
    }
    io_uring_free_probe(probe);
    r = io_uring_register_eventfd(&q->ring, q->efd);
    if (r < 0) {
        io_uring_queue_exit(&q->ring);
        return r;
    }
    return 0;
}

void stor_uring_fini(struct stor_queue *q)
{
    io_uring_queue_exit(&q->ring);
}

int stor_uring_start(struct stor_queue *q, struct stor_req *req)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&q->ring);
    if (!sqe) {
        stor_uring_kick(q);
        sqe = io_uring_get_sqe(&q->ring);
        if (!sqe)
            return -EAGAIN;
    }
    int fd = q->b->fd;
    const struct iovec *iov;
    int iovcnt;
    off_t off = (off_t)(req->offset + req->priv.done_bytes);

    switch (req->op) {
    case STOR_OP_READ:
        stor_req_buffers(req, &iov, &iovcnt);
        io_uring_prep_readv(sqe, fd, iov, (unsigned)iovcnt, (uint64_t)off);
        break;
    case STOR_OP_WRITE:
        stor_req_buffers(req, &iov, &iovcnt);
        io_uring_prep_writev(sqe, fd, iov, (unsigned)iovcnt, (uint64_t)off);
        if (req->fua)
            sqe->rw_flags = RWF_DSYNC;
        break;
    case STOR_OP_FLUSH:
        io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
        break;
    case STOR_OP_DISCARD:
        io_uring_prep_fallocate(sqe, fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off,
                                (off_t)req->len);
        break;
    }
    io_uring_sqe_set_data(sqe, req);
    q->unsubmitted++;
    return 0;
}

void stor_uring_kick(struct stor_queue *q)
{
    if (!q->unsubmitted)
        return;
    int r = io_uring_submit(&q->ring);
    /* what the kernel did not take stays in the SQ ring for the next call
     * (-EAGAIN/-EBUSY: short of memory or CQ room; reap makes room) */
    if (r > 0)
        q->unsubmitted = (unsigned)r >= q->unsubmitted ? 0 : q->unsubmitted - (unsigned)r;
}

bool stor_uring_quiet(struct stor_queue *q, bool quiet)
{
    /* A flag in the CQ ring the kernel reads before each signal (it has
     * one since 5.8; without it the eventfd just keeps signalling). */
    io_uring_cq_eventfd_toggle(&q->ring, !quiet);
    /* after the flag: a completion posted later signals (or stays quiet) */
    atomic_thread_fence(memory_order_seq_cst);
    return io_uring_cq_ready(&q->ring) > 0;
}

unsigned stor_uring_reap(struct stor_queue *q, unsigned max, bool wait)
{
    uint64_t v;
    unsigned n = 0;
    struct io_uring_cqe *cqe;

    /* clear first: a completion posted after this read signals again */
    if (read(q->efd, &v, sizeof(v)) < 0) {
        /* EAGAIN: nothing signalled (a spurious or waiting call) */
    }
    for (;;) {
        while (max == 0 || n < max) {
            if (io_uring_peek_cqe(&q->ring, &cqe) != 0)
                break;
            struct stor_req *req = io_uring_cqe_get_data(cqe);
            ssize_t res = cqe->res;
            io_uring_cqe_seen(&q->ring, cqe);
            mark_read(req, res);
            if (stor_queue_attempt_done(q, req, res)) {
                stor_queue_finish(q, req);
                n++;
            }
        }
        if (!wait || n > 0 || q->inflight == 0)
            break;
        q->unsubmitted = 0;
        if (io_uring_submit_and_wait(&q->ring, 1) < 0 && errno != EINTR) {
            /* nothing sensible is left but to try again */
        }
    }
    if (io_uring_cq_ready(&q->ring))
        eventfd_write(q->efd, 1); /* the budget left some: stay readable */
    return n;
}
