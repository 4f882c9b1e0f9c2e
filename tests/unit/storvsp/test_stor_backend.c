/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for the storage backend (src/vsp/storvsp/backend.c, queue*.c),
 * run twice by meson: once on io_uring ("uring"), once on the thread pool
 * ("threads").  Images live in a temporary directory under $TMPDIR (/tmp:
 * a disk file system, so O_DIRECT is exercised; tests that need it skip
 * visibly elsewhere).  io_uring_queue_init is wrapped (--wrap) so a test
 * can make it fail as seccomp or kernel.io_uring_disabled would.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <liburing.h>

#include "stor_test.h"

#define IMG_SIZE (8u << 20)

int __real_io_uring_queue_init(unsigned entries, struct io_uring *ring, unsigned flags);
int __wrap_io_uring_queue_init(unsigned entries, struct io_uring *ring, unsigned flags);
static int uring_init_fails; /* -errno to return, 0 = pass through */

int __wrap_io_uring_queue_init(unsigned entries, struct io_uring *ring, unsigned flags)
{
    if (uring_init_fails)
        return uring_init_fails;
    return __real_io_uring_queue_init(entries, ring, flags);
}

struct done_rec {
    bool done;
    ssize_t res;
    int order;
};
static int completions;

static void rec_done(struct stor_req *req, ssize_t res)
{
    struct done_rec *r = req->arg;
    r->done = true;
    r->res = res;
    r->order = ++completions;
}

/* one request, waited for */
static ssize_t run_req(struct stor_queue *q, enum stor_op op, uint64_t off, uint64_t len,
                       const struct iovec *iov, int iovcnt)
{
    struct done_rec rec = { 0 };
    struct stor_req req = { .op = op, .offset = off, .len = len, .iov = iov, .iovcnt = iovcnt,
                            .done = rec_done, .arg = &rec };
    int r = stor_queue_submit(q, &req);
    if (r < 0)
        return r;
    stor_test_wait(q, &rec.done);
    return rec.res;
}

static void check_pattern(const uint8_t *buf, size_t len, uint64_t off)
{
    for (size_t i = 0; i < len; i++)
        if (buf[i] != stor_test_pattern(off + i))
            fail_msg("byte %zu (file offset %llu) is %#x, want %#x", i,
                     (unsigned long long)(off + i), buf[i], stor_test_pattern(off + i));
}

static bool dir_supports_direct(const char *path)
{
    struct statx sx;
    return statx(AT_FDCWD, path, 0, STATX_DIOALIGN, &sx) == 0 &&
           (sx.stx_mask & STATX_DIOALIGN) && sx.stx_dio_mem_align &&
           sx.stx_dio_offset_align <= 512;
}

static void test_open_info(void **state)
{
    char *p = stor_test_file(stor_test_dir(), "info", IMG_SIZE + 100);
    struct stor_backend *b;
    struct stor_queue *q;
    stor_test_open(p, false, 8, &b, &q);
    const struct stor_backend_info *i = stor_backend_info(b);
    assert_int_equal(i->size, IMG_SIZE); /* the partial block is not served */
    assert_int_equal(i->block_size, 512);
    assert_false(i->readonly);
    assert_false(i->blockdev);
    assert_true(i->discard);
    assert_int_not_equal(i->file_id, 0);
    if (dir_supports_direct(p)) {
        assert_true(i->direct);
        assert_true(i->dio_mem_align >= 1);
    }
    char line[256];
    stor_backend_describe(b, line, sizeof(line));
    assert_non_null(strstr(line, "file"));
    assert_non_null(strstr(line, i->direct ? "O_DIRECT" : "buffered"));
    assert_int_equal(stor_queue_depth(q), 8);
    assert_string_equal(stor_queue_engine_name(q),
                        stor_test_queue_flags ? "thread pool" : "io_uring");
    stor_queue_destroy(q);
    stor_backend_close(b);
}

static void test_open_tmpfs_buffered(void **state)
{
    char dir[] = "/dev/shm/stor-test-XXXXXX";
    if (access("/dev/shm", W_OK) != 0 || !mkdtemp(dir))
        skip();
    char *p = stor_test_file(dir, "img", 1 << 20);
    struct stor_backend *b;
    char err[128];
    assert_int_equal(stor_backend_open(p, false, 0, &b, err, sizeof(err)), 0);
    const struct stor_backend_info *i = stor_backend_info(b);
    assert_false(i->direct);
    assert_non_null(strstr(i->why_buffered, "tmpfs"));
    assert_true(i->discard);
    stor_backend_close(b);
    unlink(p);
    rmdir(dir);
}

static void test_open_no_direct_flag(void **state)
{
    char *p = stor_test_file(stor_test_dir(), "nodirect", 1 << 20);
    struct stor_backend *b;
    assert_int_equal(stor_backend_open(p, false, STOR_OPEN_NO_DIRECT, &b, NULL, 0), 0);
    assert_false(stor_backend_info(b)->direct);
    assert_int_equal(stor_backend_info(b)->dio_mem_align, 1);
    stor_backend_close(b);
}

static void test_open_errors(void **state)
{
    struct stor_backend *b = NULL;
    char err[256];
    char path[300];
    snprintf(path, sizeof(path), "%s/missing", stor_test_dir());
    assert_int_equal(stor_backend_open(path, false, 0, &b, err, sizeof(err)), -ENOENT);
    assert_non_null(strstr(err, "missing"));

    assert_int_equal(stor_backend_open(stor_test_dir(), true, 0, &b, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "not a regular file or block device"));

    assert_int_equal(stor_backend_open("/dev/null", true, 0, &b, err, sizeof(err)), -EINVAL);

    char *p = stor_test_file(stor_test_dir(), "tiny", 511);
    assert_int_equal(stor_backend_open(p, false, 0, &b, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "smaller than one 512-byte block"));
}

static void test_read_write_iovecs(void **state)
{
    char *p = stor_test_file(stor_test_dir(), "rw", IMG_SIZE);
    struct stor_backend *b;
    struct stor_queue *q;
    stor_test_open(p, false, 8, &b, &q);

    /* three page-aligned pieces, as guest pages arrive */
    uint8_t *m = aligned_alloc(4096, 3 * 4096);
    struct iovec iov[3] = {
        { m, 4096 }, { m + 4096, 8192 - 4096 }, { m + 8192, 4096 },
    };
    assert_int_equal(run_req(q, STOR_OP_READ, 64 * 1024, 0, iov, 3), 3 * 4096);
    check_pattern(m, 3 * 4096, 64 * 1024);

    memset(m, 0xa5, 3 * 4096);
    assert_int_equal(run_req(q, STOR_OP_WRITE, 1 << 20, 0, iov, 3), 3 * 4096);
    assert_int_equal(run_req(q, STOR_OP_FLUSH, 0, 0, NULL, 0), 0);
    memset(m, 0, 3 * 4096);
    assert_int_equal(run_req(q, STOR_OP_READ, 1 << 20, 0, iov, 3), 3 * 4096);
    for (int i = 0; i < 3 * 4096; i++)
        assert_int_equal(m[i], 0xa5);

    /* and in the file itself, around the write */
    int fd = open(p, O_RDONLY);
    uint8_t chk[4 * 4096];
    assert_int_equal(pread(fd, chk, sizeof(chk), (1 << 20) - 512), sizeof(chk));
    check_pattern(chk, 512, (1 << 20) - 512);
    for (int i = 512; i < 512 + 3 * 4096; i++)
        assert_int_equal(chk[i], 0xa5);
    check_pattern(chk + 512 + 3 * 4096, sizeof(chk) - 512 - 3 * 4096, (1 << 20) + 3 * 4096);
    close(fd);

    free(m);
    stor_queue_destroy(q);
    stor_backend_close(b);
}

/* Guest buffers O_DIRECT cannot take (odd addresses, odd piece lengths)
 * go through a bounce buffer: data must land right both ways. */
static void test_unaligned_guest_buffers(void **state)
{
    char *p = stor_test_file(stor_test_dir(), "bounce", IMG_SIZE);
    if (!dir_supports_direct(p))
        skip();
    struct stor_backend *b;
    struct stor_queue *q;
    stor_test_open(p, false, 8, &b, &q);
    assert_true(stor_backend_info(b)->direct);

    uint8_t *m = malloc(8192 + 64);
    uint8_t *base = m + 3; /* misaligned on purpose */
    struct iovec iov[3] = { { base, 700 }, { base + 700, 1000 }, { base + 1700, 2396 } };
    assert_int_equal(run_req(q, STOR_OP_READ, 4096 * 5 + 512, 0, iov, 3), 4096);
    check_pattern(base, 4096, 4096 * 5 + 512);

    for (int i = 0; i < 4096; i++)
        base[i] = (uint8_t)(i * 7 + 1);
    assert_int_equal(run_req(q, STOR_OP_WRITE, 512 * 3, 0, iov, 3), 4096);
    int fd = open(p, O_RDONLY);
    uint8_t chk[4096];
    assert_int_equal(pread(fd, chk, sizeof(chk), 512 * 3), sizeof(chk));
    for (int i = 0; i < 4096; i++)
        assert_int_equal(chk[i], (uint8_t)(i * 7 + 1));
    close(fd);
    free(m);
    stor_queue_destroy(q);
    stor_backend_close(b);
}

/* Discard punches holes: the file's allocated blocks shrink, the range
 * reads back as zeros, the bytes around it are untouched. */
static void test_discard_punches_holes(void **state)
{
    char *p = stor_test_file(stor_test_dir(), "discard", IMG_SIZE);
    struct stor_backend *b;
    struct stor_queue *q;
    stor_test_open(p, false, 8, &b, &q);
    uint64_t before = stor_test_st_blocks(p);
    assert_true(before >= IMG_SIZE / 512);

    assert_int_equal(run_req(q, STOR_OP_DISCARD, 1 << 20, 2 << 20, NULL, 0), 0);
    uint64_t after = stor_test_st_blocks(p);
    assert_true(after <= before - (2 << 20) / 512);

    uint8_t *m = aligned_alloc(4096, 8192);
    struct iovec iov = { m, 8192 };
    assert_int_equal(run_req(q, STOR_OP_READ, (1 << 20) - 4096, 0, &iov, 1), 8192);
    check_pattern(m, 4096, (1 << 20) - 4096);
    for (int i = 4096; i < 8192; i++)
        assert_int_equal(m[i], 0);
    free(m);
    stor_queue_destroy(q);
    stor_backend_close(b);
}

static void test_refused_requests(void **state)
{
    char *p = stor_test_file(stor_test_dir(), "refuse", 1 << 20);
    struct stor_backend *b;
    struct stor_queue *q;
    stor_test_open(p, true, 2, &b, &q);
    uint8_t *m = aligned_alloc(4096, 4096);
    struct iovec iov = { m, 4096 };
    struct iovec odd = { m, 100 };
    struct done_rec rec = { 0 };
    struct stor_req req = { .done = rec_done, .arg = &rec };

    /* read-only: writes and discards */
    req.op = STOR_OP_WRITE, req.iov = &iov, req.iovcnt = 1, req.offset = 0;
    assert_int_equal(stor_queue_submit(q, &req), -EROFS);
    req.op = STOR_OP_DISCARD, req.len = 4096;
    assert_int_equal(stor_queue_submit(q, &req), -EROFS);
    /* past the end, across the end, misaligned, empty, too many iovecs */
    req.op = STOR_OP_READ, req.offset = 1 << 20;
    assert_int_equal(stor_queue_submit(q, &req), -EINVAL);
    req.offset = (1 << 20) - 512;
    assert_int_equal(stor_queue_submit(q, &req), -EINVAL);
    req.offset = 100;
    assert_int_equal(stor_queue_submit(q, &req), -EINVAL);
    req.offset = 0, req.iov = &odd;
    assert_int_equal(stor_queue_submit(q, &req), -EINVAL);
    req.iov = &iov, req.iovcnt = 0;
    assert_int_equal(stor_queue_submit(q, &req), -EINVAL);
    req.iovcnt = STOR_MAX_IOV + 1;
    assert_int_equal(stor_queue_submit(q, &req), -EINVAL);
    req.iovcnt = 1;
    req.offset = UINT64_MAX - 511;
    assert_int_equal(stor_queue_submit(q, &req), -EINVAL);
    assert_false(rec.done);
    assert_int_equal(stor_queue_inflight(q), 0);

    /* depth: the third request of a depth-2 queue waits for room */
    struct done_rec r2[3] = { 0 };
    struct stor_req rq[3];
    for (int i = 0; i < 3; i++)
        rq[i] = (struct stor_req){ .op = STOR_OP_READ, .offset = 0, .iov = &iov, .iovcnt = 1,
                                   .done = rec_done, .arg = &r2[i] };
    assert_int_equal(stor_queue_submit(q, &rq[0]), 0);
    assert_int_equal(stor_queue_submit(q, &rq[1]), 0);
    assert_int_equal(stor_queue_submit(q, &rq[2]), -EAGAIN);
    assert_int_equal(stor_queue_inflight(q), 2);
    stor_test_wait(q, &r2[0].done);
    stor_test_wait(q, &r2[1].done);
    assert_false(r2[2].done);
    free(m);
    stor_queue_destroy(q);
    stor_backend_close(b);
}

/* A failing backend fails that request only: over an fd opened write-only,
 * reads fail (EBADF) while writes on the same queue succeed. */
static void test_io_error_this_request_only(void **state)
{
    char *p = stor_test_file(stor_test_dir(), "wronly", 1 << 20);
    int fd = open(p, O_WRONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    struct stor_backend *b;
    struct stor_queue *q;
    assert_int_equal(stor_backend_open_fd(fd, false, &b, NULL, 0), 0);
    assert_int_equal(stor_queue_create(b, 4, stor_test_queue_flags, &q), 0);
    uint8_t *m = aligned_alloc(4096, 8192);
    struct iovec rd = { m, 4096 }, wr = { m + 4096, 4096 };
    memset(m + 4096, 0x3c, 4096);

    struct done_rec a = { 0 }, c = { 0 };
    struct stor_req ra = { .op = STOR_OP_READ, .offset = 0, .iov = &rd, .iovcnt = 1,
                           .done = rec_done, .arg = &a };
    struct stor_req rc = { .op = STOR_OP_WRITE, .offset = 8192, .iov = &wr, .iovcnt = 1,
                           .done = rec_done, .arg = &c };
    assert_int_equal(stor_queue_submit(q, &ra), 0);
    assert_int_equal(stor_queue_submit(q, &rc), 0);
    stor_test_wait(q, &a.done);
    stor_test_wait(q, &c.done);
    assert_int_equal(a.res, -EBADF);
    assert_int_equal(c.res, 4096);
    free(m);
    stor_queue_destroy(q);
    stor_backend_close(b);
}

/* An image that shrinks under the backend: a read across the new end gets
 * the part before it (a short transfer, continued) and then nothing, and
 * fails with EIO instead of retrying forever; reads before the end work. */
static void test_image_shrank(void **state)
{
    char *p = stor_test_file(stor_test_dir(), "shrink", 1 << 20);
    struct stor_backend *b;
    struct stor_queue *q;
    stor_test_open(p, true, 4, &b, &q);
    assert_int_equal(truncate(p, (1 << 20) - 2048), 0);
    uint8_t *m = aligned_alloc(4096, 8192);
    struct iovec iov[2] = { { m, 1024 }, { m + 4096, 3072 } };
    assert_int_equal(run_req(q, STOR_OP_READ, (1 << 20) - 4096, 0, iov, 2), -EIO);
    assert_int_equal(run_req(q, STOR_OP_READ, (1 << 20) - 8192, 0, iov, 2), 4096);
    check_pattern(m, 1024, (1 << 20) - 8192);
    check_pattern(m + 4096, 3072, (1 << 20) - 8192 + 1024);
    free(m);
    stor_queue_destroy(q);
    stor_backend_close(b);
}

/* reap's budget: what is left keeps the eventfd readable */
static void test_reap_budget(void **state)
{
    char *p = stor_test_file(stor_test_dir(), "budget", 1 << 20);
    struct stor_backend *b;
    struct stor_queue *q;
    stor_test_open(p, true, 8, &b, &q);
    uint8_t *m = aligned_alloc(4096, 4 * 4096);
    struct iovec iov[4];
    struct done_rec rec[4] = { 0 };
    struct stor_req rq[4];
    for (int i = 0; i < 4; i++) {
        iov[i] = (struct iovec){ m + 4096 * i, 4096 };
        rq[i] = (struct stor_req){ .op = STOR_OP_READ, .offset = 4096u * i, .iov = &iov[i],
                                   .iovcnt = 1, .done = rec_done, .arg = &rec[i] };
        assert_int_equal(stor_queue_submit(q, &rq[i]), 0);
    }
    stor_queue_kick(q);
    unsigned total = 0;
    while (total < 4) {
        struct pollfd pfd = { .fd = stor_queue_fd(q), .events = POLLIN };
        assert_int_equal(poll(&pfd, 1, 10000), 1); /* readable while any is left */
        unsigned n = stor_queue_reap(q, 1);
        assert_true(n <= 1);
        total += n;
    }
    for (int i = 0; i < 4; i++) {
        assert_int_equal(rec[i].res, 4096);
        check_pattern(m + 4096 * i, 4096, 4096u * i);
    }
    assert_int_equal(stor_queue_inflight(q), 0);
    free(m);
    stor_queue_destroy(q);
    stor_backend_close(b);
}

/* A quiet queue does not signal its eventfd for what finishes; ending quiet
 * says that requests wait (storvsp reaps them then), and signalling is back
 * for the next one. */
static void test_quiet(void **state)
{
    char *p = stor_test_file(stor_test_dir(), "quiet", 1 << 20);
    struct stor_backend *b;
    struct stor_queue *q;
    stor_test_open(p, true, 8, &b, &q);
    if (stor_queue_engine(q) != STOR_ENGINE_IO_URING) {
        stor_queue_destroy(q);
        stor_backend_close(b);
        skip(); /* the thread pool always signals */
    }
    uint8_t *m = aligned_alloc(4096, 4096);
    struct iovec iov = { m, 4096 };
    struct done_rec rec = { 0 };
    struct stor_req rq = { .op = STOR_OP_READ, .offset = 8192, .iov = &iov, .iovcnt = 1,
                           .done = rec_done, .arg = &rec };
    struct pollfd pfd = { .fd = stor_queue_fd(q), .events = POLLIN };

    assert_false(stor_queue_quiet(q, true));
    assert_int_equal(stor_queue_submit(q, &rq), 0);
    stor_queue_kick(q);
    int i;
    for (i = 0; i < 10000 && !stor_queue_quiet(q, true); i++)
        usleep(1000);
    assert_true(i < 10000);                   /* it finished... */
    assert_int_equal(poll(&pfd, 1, 0), 0);    /* ...and signalled nobody */
    assert_true(stor_queue_quiet(q, false));  /* so ending quiet says it waits */
    assert_int_equal(stor_queue_reap(q, 0), 1);
    assert_true(rec.done);
    assert_int_equal(rec.res, 4096);
    check_pattern(m, 4096, 8192);

    /* not quiet any more: the next completion signals */
    rec = (struct done_rec){ 0 };
    assert_int_equal(stor_queue_submit(q, &rq), 0);
    stor_queue_kick(q);
    assert_int_equal(poll(&pfd, 1, 10000), 1);
    assert_int_equal(stor_queue_reap(q, 0), 1);
    assert_true(rec.done);
    free(m);
    stor_queue_destroy(q);
    stor_backend_close(b);
}

/* destroy waits for what is in flight and runs its callbacks */
static void test_destroy_completes_inflight(void **state)
{
    char *p = stor_test_file(stor_test_dir(), "destroy", 1 << 20);
    struct stor_backend *b;
    struct stor_queue *q;
    stor_test_open(p, true, 8, &b, &q);
    uint8_t *m = aligned_alloc(4096, 3 * 4096);
    struct iovec iov[3];
    struct done_rec rec[3] = { 0 };
    struct stor_req rq[3];
    for (int i = 0; i < 3; i++) {
        iov[i] = (struct iovec){ m + 4096 * i, 4096 };
        rq[i] = (struct stor_req){ .op = STOR_OP_READ, .offset = 0, .iov = &iov[i],
                                   .iovcnt = 1, .done = rec_done, .arg = &rec[i] };
        assert_int_equal(stor_queue_submit(q, &rq[i]), 0);
    }
    stor_queue_kick(q);
    /* the third never kicked: destroy must hand it over too */
    stor_queue_destroy(q);
    for (int i = 0; i < 3; i++) {
        assert_true(rec[i].done);
        assert_int_equal(rec[i].res, 4096);
    }
    free(m);
    stor_backend_close(b);
}

/* Where io_uring cannot be set up the queue runs on the thread pool and
 * says why. */
static void test_fallback_when_uring_unavailable(void **state)
{
    char *p = stor_test_file(stor_test_dir(), "fallback", 1 << 20);
    struct stor_backend *b;
    struct stor_queue *q;
    assert_int_equal(stor_backend_open(p, false, 0, &b, NULL, 0), 0);
    uring_init_fails = -EPERM;
    int r = stor_queue_create(b, 4, 0, &q);
    uring_init_fails = 0;
    assert_int_equal(r, 0);
    assert_int_equal(stor_queue_engine(q), STOR_ENGINE_THREADS);
    assert_string_equal(stor_queue_engine_name(q), "thread pool");
    assert_int_equal(stor_queue_uring_errno(q), EPERM);
    uint8_t *m = aligned_alloc(4096, 4096);
    struct iovec iov = { m, 4096 };
    assert_int_equal(run_req(q, STOR_OP_READ, 8192, 0, &iov, 1), 4096);
    check_pattern(m, 4096, 8192);
    free(m);
    stor_queue_destroy(q);
    stor_backend_close(b);
}

static void test_fua_write(void **state)
{
    char *p = stor_test_file(stor_test_dir(), "fua", 1 << 20);
    struct stor_backend *b;
    struct stor_queue *q;
    stor_test_open(p, false, 4, &b, &q);
    uint8_t *m = aligned_alloc(4096, 4096);
    memset(m, 0x77, 4096);
    struct iovec iov = { m, 4096 };
    struct done_rec rec = { 0 };
    struct stor_req req = { .op = STOR_OP_WRITE, .fua = true, .offset = 0, .iov = &iov,
                            .iovcnt = 1, .done = rec_done, .arg = &rec };
    assert_int_equal(stor_queue_submit(q, &req), 0);
    stor_test_wait(q, &rec.done);
    assert_int_equal(rec.res, 4096);
    free(m);
    stor_queue_destroy(q);
    stor_backend_close(b);
}

int main(int argc, char **argv)
{
    stor_test_init(argc, argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_open_info),
        cmocka_unit_test(test_open_tmpfs_buffered),
        cmocka_unit_test(test_open_no_direct_flag),
        cmocka_unit_test(test_open_errors),
        cmocka_unit_test(test_read_write_iovecs),
        cmocka_unit_test(test_unaligned_guest_buffers),
        cmocka_unit_test(test_discard_punches_holes),
        cmocka_unit_test(test_refused_requests),
        cmocka_unit_test(test_io_error_this_request_only),
        cmocka_unit_test(test_image_shrank),
        cmocka_unit_test(test_reap_budget),
        cmocka_unit_test(test_quiet),
        cmocka_unit_test(test_destroy_completes_inflight),
        cmocka_unit_test(test_fallback_when_uring_unavailable),
        cmocka_unit_test(test_fua_write),
    };
    return cmocka_run_group_tests_name(stor_test_queue_flags ? "stor backend (thread pool)"
                                                             : "stor backend (io_uring)",
                                       tests, NULL, NULL);
}
