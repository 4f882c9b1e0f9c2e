/* SPDX-License-Identifier: MIT */
/* A backend queue, whatever the engine: checking requests, the eventfd,
 * bounce buffers for guest memory O_DIRECT cannot take, and continuing
 * short transfers.  The engines (queue_uring.c, queue_threads.c) only move
 * requests to the kernel and back. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "backend_priv.h"

int stor_queue_create(struct stor_backend *b, unsigned depth, unsigned flags,
                      struct stor_queue **out)
{
    if (!b || depth == 0 || depth > 4096)
        return -EINVAL;
    struct stor_queue *q = calloc(1, sizeof(*q));
    if (!q)
        return -ENOMEM;
    q->b = b;
    q->depth = depth;
    q->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (q->efd < 0) {
        int e = -errno;
        free(q);
        return e;
    }
    int r = -1;
    if (!(flags & STOR_QUEUE_THREADS)) {
        r = stor_uring_init(q);
        if (r == 0)
            q->engine = STOR_ENGINE_IO_URING;
        else
            q->uring_errno = -r;
    }
    if (r != 0) {
        r = stor_pool_init(q);
        if (r < 0) {
            close(q->efd);
            free(q);
            return r;
        }
        q->engine = STOR_ENGINE_THREADS;
    }
    *out = q;
    return 0;
}

void stor_queue_destroy(struct stor_queue *q)
{
    if (!q)
        return;
    q->closing = true;
    stor_queue_kick(q);
    while (q->inflight) {
        if (q->engine == STOR_ENGINE_IO_URING)
            stor_uring_reap(q, 0, true);
        else
            stor_pool_reap(q, 0, true);
    }
    if (q->engine == STOR_ENGINE_IO_URING)
        stor_uring_fini(q);
    else
        stor_pool_fini(q);
    close(q->efd);
    free(q);
}

enum stor_engine stor_queue_engine(const struct stor_queue *q) { return q->engine; }

const char *stor_queue_engine_name(const struct stor_queue *q)
{
    return q->engine == STOR_ENGINE_IO_URING ? "io_uring" : "thread pool";
}

int stor_queue_uring_errno(const struct stor_queue *q) { return q->uring_errno; }
unsigned stor_queue_depth(const struct stor_queue *q) { return q->depth; }
unsigned stor_queue_inflight(const struct stor_queue *q) { return q->inflight; }
int stor_queue_fd(const struct stor_queue *q) { return q->efd; }

/* O_DIRECT takes a buffer whose address is aligned to dio_mem_align and
 * whose pieces are whole logical blocks (512 bytes; whole dio_mem_align
 * units too when that is larger, as kernels without STATX_DIOALIGN want). */
static bool needs_bounce(const struct stor_backend_info *info, const struct iovec *iov, int n)
{
    if (!info->direct)
        return false;
    uintptr_t amask = info->dio_mem_align - 1;
    uintptr_t lmask = (info->dio_mem_align > STOR_BLOCK_SIZE ? info->dio_mem_align
                                                             : STOR_BLOCK_SIZE) - 1;
    for (int i = 0; i < n; i++)
        if (((uintptr_t)iov[i].iov_base & amask) || (iov[i].iov_len & lmask))
            return true;
    return false;
}

static void copy_from_iov(void *dst, const struct iovec *iov, int n)
{
    uint8_t *p = dst;
    for (int i = 0; i < n; i++) {
        memcpy(p, iov[i].iov_base, iov[i].iov_len);
        p += iov[i].iov_len;
    }
}

static void copy_to_iov(const struct iovec *iov, int n, const void *src, size_t len)
{
    const uint8_t *p = src;
    for (int i = 0; i < n && len; i++) {
        size_t c = iov[i].iov_len < len ? iov[i].iov_len : len;
        memcpy(iov[i].iov_base, p, c);
        p += c;
        len -= c;
    }
}

int stor_queue_submit(struct stor_queue *q, struct stor_req *req)
{
    const struct stor_backend_info *info = &q->b->info;
    if (q->closing)
        return -ESHUTDOWN;
    if (q->inflight >= q->depth)
        return -EAGAIN;
    if (!req->done)
        return -EINVAL;
    if (req->op != STOR_OP_FLUSH && (req->offset % STOR_BLOCK_SIZE))
        return -EINVAL;

    switch (req->op) {
    case STOR_OP_READ:
    case STOR_OP_WRITE: {
        if (!req->iov || req->iovcnt < 1 || req->iovcnt > STOR_MAX_IOV)
            return -EINVAL;
        uint64_t len = 0;
        for (int i = 0; i < req->iovcnt; i++)
            len += req->iov[i].iov_len;
        req->len = len;
        break;
    }
    case STOR_OP_DISCARD:
        break;
    case STOR_OP_FLUSH:
        req->len = 0;
        break;
    default:
        return -EINVAL;
    }
    if (req->op != STOR_OP_FLUSH) {
        if (req->len == 0 || req->len % STOR_BLOCK_SIZE || req->offset > info->size ||
            req->len > info->size - req->offset)
            return -EINVAL;
    }
    if ((req->op == STOR_OP_WRITE || req->op == STOR_OP_DISCARD) && info->readonly)
        return -EROFS;
    if (req->op == STOR_OP_DISCARD && !info->discard)
        return -EOPNOTSUPP;

    memset(&req->priv, 0, sizeof(req->priv));
    if ((req->op == STOR_OP_READ || req->op == STOR_OP_WRITE) &&
        needs_bounce(info, req->iov, req->iovcnt)) {
        size_t align = info->dio_mem_align;
        if (posix_memalign(&req->priv.bounce, align, req->len) != 0)
            return -ENOMEM;
        if (req->op == STOR_OP_WRITE)
            copy_from_iov(req->priv.bounce, req->iov, req->iovcnt);
    }
    int r = q->engine == STOR_ENGINE_IO_URING ? stor_uring_start(q, req) : stor_pool_start(q, req);
    if (r < 0) {
        free(req->priv.bounce);
        req->priv.bounce = NULL;
        return r;
    }
    q->inflight++;
    return 0;
}

void stor_queue_kick(struct stor_queue *q)
{
    if (q->engine == STOR_ENGINE_IO_URING)
        stor_uring_kick(q);
    else
        stor_pool_kick(q);
}

bool stor_queue_quiet(struct stor_queue *q, bool quiet)
{
    return q->engine == STOR_ENGINE_IO_URING && stor_uring_quiet(q, quiet);
}

unsigned stor_queue_reap(struct stor_queue *q, unsigned max)
{
    unsigned n = q->engine == STOR_ENGINE_IO_URING ? stor_uring_reap(q, max, false)
                                                   : stor_pool_reap(q, max, false);
    /* continuations of short transfers and requests the callbacks queued */
    stor_queue_kick(q);
    return n;
}

void stor_req_buffers(struct stor_req *req, const struct iovec **iov, int *iovcnt)
{
    if (req->priv.bounce) {
        /* in the request: io_uring reads the array only at io_uring_submit */
        req->priv.bounce_iov.iov_base = (uint8_t *)req->priv.bounce + req->priv.done_bytes;
        req->priv.bounce_iov.iov_len = req->len - req->priv.done_bytes;
        *iov = &req->priv.bounce_iov;
        *iovcnt = 1;
    } else if (req->priv.rest) {
        *iov = req->priv.rest;
        *iovcnt = req->priv.restcnt;
    } else {
        *iov = req->iov;
        *iovcnt = req->iovcnt;
    }
}

/* The caller's iovecs from byte `skip` on, in a new array (rare path). */
static int build_rest(struct stor_req *req)
{
    uint64_t skip = req->priv.done_bytes;
    int i = 0;
    while (i < req->iovcnt && skip >= req->iov[i].iov_len)
        skip -= req->iov[i++].iov_len;
    int n = req->iovcnt - i;
    struct iovec *rest = malloc(sizeof(*rest) * (size_t)n);
    if (!rest)
        return -ENOMEM;
    for (int k = 0; k < n; k++)
        rest[k] = req->iov[i + k];
    rest[0].iov_base = (uint8_t *)rest[0].iov_base + skip;
    rest[0].iov_len -= skip;
    free(req->priv.rest);
    req->priv.rest = rest;
    req->priv.restcnt = n;
    return 0;
}

int stor_req_advance(struct stor_req *req, ssize_t res)
{
    if (res < 0) {
        req->priv.res = res;
        return 1;
    }
    if (req->op != STOR_OP_READ && req->op != STOR_OP_WRITE) {
        req->priv.res = 0;
        return 1;
    }
    if (res == 0) {
        /* the image shrank under us: no progress is possible */
        req->priv.res = -EIO;
        return 1;
    }
    req->priv.done_bytes += (uint64_t)res;
    if (req->priv.done_bytes >= req->len) {
        req->priv.res = (ssize_t)req->len;
        return 1;
    }
    int r = req->priv.bounce ? 0 : build_rest(req);
    if (r < 0) {
        req->priv.res = r;
        return 1;
    }
    return 0;
}

bool stor_queue_attempt_done(struct stor_queue *q, struct stor_req *req, ssize_t res)
{
    if (stor_req_advance(req, res))
        return true;
    int r = stor_uring_start(q, req);
    if (r < 0) {
        req->priv.res = r;
        return true;
    }
    return false;
}

void stor_queue_finish(struct stor_queue *q, struct stor_req *req)
{
    ssize_t res = req->priv.res;
    if (req->priv.bounce) {
        if (req->op == STOR_OP_READ && res > 0)
            copy_to_iov(req->iov, req->iovcnt, req->priv.bounce, (size_t)res);
        free(req->priv.bounce);
        req->priv.bounce = NULL;
    }
    free(req->priv.rest);
    req->priv.rest = NULL;
    q->inflight--;
    req->done(req, res);
}
