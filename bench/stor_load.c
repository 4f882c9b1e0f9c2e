/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/vfs.h>
#include <linux/magic.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "stor_load.h"
#include "vsp/storvsp/backend.h"

#define MAX_QD 256

/* xorshift: cheap, reproducible offsets */
static uint64_t next_off(const struct stor_load *l, uint64_t *state, uint64_t *seq, uint64_t size)
{
    uint64_t slots = size / l->bs;
    if (!l->random) {
        uint64_t o = (*seq % slots) * l->bs;
        (*seq)++;
        return o;
    }
    uint64_t x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    return (x % slots) * l->bs;
}

static void finish(struct stor_load_result *res, const struct stor_load *l, uint64_t ops, double dt,
                   double cpu)
{
    res->ops = ops;
    res->cpu_us = ops ? cpu * 1e6 / (double)ops : 0;
    res->iops = (double)ops / dt;
    res->mbps = res->iops * (double)l->bs / 1e6;
}

/* Queue a read or write of iov at off, as request i (submitted later). */
static void queue_io(struct io_uring *ring, int fd, const struct stor_load *l, struct iovec *iov,
                     uint64_t off, unsigned i)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
    if (l->write)
        io_uring_prep_writev(sqe, fd, iov, 1, off);
    else
        io_uring_prep_readv(sqe, fd, iov, 1, off);
    io_uring_sqe_set_data64(sqe, i);
}

static int run_direct(int fd, uint64_t size, const struct stor_load *l, uint8_t *bufs,
                      struct stor_load_result *res)
{
    struct io_uring ring;
    int r = io_uring_queue_init(l->qd, &ring, 0);
    if (r < 0)
        return r;
    struct iovec iov[MAX_QD];
    uint64_t state = 0x9e3779b97f4a7c15ull, seq = 0, ops = 0;
    for (unsigned i = 0; i < l->qd; i++) {
        iov[i] = (struct iovec){ bufs + (size_t)i * l->bs, l->bs };
        queue_io(&ring, fd, l, &iov[i], next_off(l, &state, &seq, size), i);
    }
    double t0 = now_s(), t1 = t0, end = t0 + l->seconds, c0 = cpu_s();
    io_uring_submit(&ring);
    while (t1 < end) {
        struct io_uring_cqe *cqe;
        r = io_uring_wait_cqe(&ring, &cqe);
        if (r < 0)
            break;
        unsigned head, seen = 0;
        io_uring_for_each_cqe(&ring, head, cqe) {
            if (cqe->res != (int)l->bs) {
                fprintf(stderr, "stor-load: direct I/O returned %d\n", cqe->res);
                io_uring_queue_exit(&ring);
                return -EIO;
            }
            unsigned i = (unsigned)io_uring_cqe_get_data64(cqe);
            queue_io(&ring, fd, l, &iov[i], next_off(l, &state, &seq, size), i);
            seen++;
        }
        io_uring_cq_advance(&ring, seen);
        ops += seen;
        io_uring_submit(&ring);
        t1 = now_s();
    }
    finish(res, l, ops, t1 - t0, cpu_s() - c0);
    io_uring_queue_exit(&ring); /* cancels and waits for what is in flight */
    return 0;
}

struct qslot {
    struct stor_req req;
    struct iovec iov;
    struct qctx *ctx;
};

struct qctx {
    struct stor_queue *q;
    const struct stor_load *l;
    uint64_t size, state, seq, ops;
    bool stop, failed;
};

static void qsubmit(struct qslot *s)
{
    struct qctx *c = s->ctx;
    s->req.op = c->l->write ? STOR_OP_WRITE : STOR_OP_READ;
    s->req.offset = next_off(c->l, &c->state, &c->seq, c->size);
    s->req.iov = &s->iov;
    s->req.iovcnt = 1;
    if (stor_queue_submit(c->q, &s->req) < 0)
        c->failed = true;
}

static void qdone(struct stor_req *req, ssize_t r)
{
    struct qslot *s = req->arg;
    struct qctx *c = s->ctx;
    if (r != (ssize_t)c->l->bs)
        c->failed = true;
    c->ops++;
    if (!c->stop && !c->failed)
        qsubmit(s);
}

static int run_queue(int threads, const char *path, uint64_t size, const struct stor_load *l,
                     uint8_t *bufs, struct stor_load_result *res)
{
    struct stor_backend *b;
    char err[256];
    int r = stor_backend_open(path, !l->write, 0, &b, err, sizeof(err));
    if (r < 0) {
        fprintf(stderr, "stor-load: %s\n", err);
        return r;
    }
    struct qctx c = { .l = l, .size = size, .state = 0x9e3779b97f4a7c15ull };
    r = stor_queue_create(b, l->qd, threads ? STOR_QUEUE_THREADS : 0, &c.q);
    if (r < 0) {
        stor_backend_close(b);
        return r;
    }
    static struct qslot slots[MAX_QD];
    for (unsigned i = 0; i < l->qd; i++) {
        slots[i] = (struct qslot){ .iov = { bufs + (size_t)i * l->bs, l->bs }, .ctx = &c };
        slots[i].req.done = qdone;
        slots[i].req.arg = &slots[i];
        qsubmit(&slots[i]);
    }
    double t0 = now_s(), t1 = t0, end = t0 + l->seconds, c0 = cpu_s();
    stor_queue_kick(c.q);
    /* as vmbusd's fd watch would: wait for the eventfd, reap */
    while (t1 < end && !c.failed) {
        struct pollfd p = { .fd = stor_queue_fd(c.q), .events = POLLIN };
        if (poll(&p, 1, 5000) <= 0)
            break;
        stor_queue_reap(c.q, 0);
        t1 = now_s();
    }
    c.stop = true;
    uint64_t ops = c.ops;
    double cpu = cpu_s() - c0;
    stor_queue_destroy(c.q);
    stor_backend_close(b);
    if (c.failed) {
        fprintf(stderr, "stor-load: a backend request failed\n");
        return -EIO;
    }
    finish(res, l, ops, t1 - t0, cpu);
    return 0;
}

int stor_load_run(const char *path, uint64_t size, enum stor_load_path how,
                  const struct stor_load *l, struct stor_load_result *res)
{
    if (l->qd == 0 || l->qd > MAX_QD || l->bs == 0 || l->bs % 512 || size < l->bs)
        return -EINVAL;
    uint8_t *bufs = aligned_alloc(4096, (size_t)l->qd * l->bs);
    if (!bufs)
        return -ENOMEM;
    memset(bufs, 0x5a, (size_t)l->qd * l->bs);
    int r;
    if (how == STOR_LOAD_DIRECT) {
        int fd = open(path, l->write ? O_RDWR : O_RDONLY);
        if (fd < 0) {
            r = -errno;
        } else {
            r = run_direct(fd, size, l, bufs, res);
            close(fd);
        }
    } else {
        r = run_queue(how == STOR_LOAD_QUEUE_THREADS, path, size, l, bufs, res);
    }
    free(bufs);
    if (r < 0)
        fprintf(stderr, "stor-load: %s\n", strerror(-r));
    return r;
}

const char *stor_load_tmpfs_file(uint64_t size)
{
    static char path[64];
    struct statfs s;
    if (statfs("/dev/shm", &s) != 0 || s.f_type != TMPFS_MAGIC)
        return NULL;
    snprintf(path, sizeof(path), "/dev/shm/vmbusd-bench-XXXXXX");
    int fd = mkstemp(path);
    if (fd < 0)
        return NULL;
    static uint8_t chunk[1 << 20];
    memset(chunk, 0xa5, sizeof(chunk));
    for (uint64_t off = 0; off < size; off += sizeof(chunk)) {
        if (pwrite(fd, chunk, sizeof(chunk), (off_t)off) != (ssize_t)sizeof(chunk)) {
            close(fd);
            unlink(path);
            return NULL;
        }
    }
    close(fd);
    return path;
}
