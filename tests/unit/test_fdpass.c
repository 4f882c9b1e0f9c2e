/* SPDX-License-Identifier: MIT */
/* Unit tests for src/common/fdpass.c: datagrams with descriptors attached. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/fdpass.h"

static int sp[2];

static int setup(void **state)
{
    (void)state;
    return socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp);
}

static int teardown(void **state)
{
    (void)state;
    close(sp[0]);
    close(sp[1]);
    return 0;
}

/* Two iovecs and two pipe ends arrive as one datagram; the received
 * descriptors are working duplicates, close-on-exec. */
static void test_roundtrip(void **state)
{
    (void)state;
    int p1[2], p2[2];
    assert_int_equal(pipe(p1), 0);
    assert_int_equal(pipe(p2), 0);
    struct iovec iov[2] = {{.iov_base = "head", .iov_len = 4}, {.iov_base = "tail", .iov_len = 4}};
    int out[2] = {p1[1], p2[1]};
    assert_int_equal(fdpass_send(sp[0], iov, 2, out, 2, 0), 8);

    char buf[64];
    int fds[4], nfds = -1;
    bool trunc = true;
    assert_int_equal(fdpass_recv(sp[1], buf, sizeof(buf), fds, 4, &nfds, &trunc, 0), 8);
    assert_memory_equal(buf, "headtail", 8);
    assert_int_equal(nfds, 2);
    assert_false(trunc);
    for (int i = 0; i < 2; i++) {
        assert_true(fcntl(fds[i], F_GETFD) & FD_CLOEXEC);
        assert_int_equal(write(fds[i], "x", 1), 1);
    }
    char c;
    assert_int_equal(read(p1[0], &c, 1), 1);
    assert_int_equal(read(p2[0], &c, 1), 1);
    fdpass_close(fds, nfds);
    close(p1[0]), close(p1[1]), close(p2[0]), close(p2[1]);
}

/* More descriptors than the caller keeps: the rest are closed and the
 * message reported truncated; likewise a datagram longer than the buffer. */
static void test_truncation(void **state)
{
    (void)state;
    int p[2];
    assert_int_equal(pipe(p), 0);
    int out[3] = {p[1], p[1], p[1]};
    struct iovec iov = {.iov_base = "abcdefgh", .iov_len = 8};
    assert_int_equal(fdpass_send(sp[0], &iov, 1, out, 3, 0), 8);
    char buf[16];
    int fds[3], nfds;
    bool trunc;
    assert_int_equal(fdpass_recv(sp[1], buf, sizeof(buf), fds, 1, &nfds, &trunc, 0), 8);
    assert_int_equal(nfds, 1);
    assert_true(trunc);
    fdpass_close(fds, nfds);
    /* the two surplus write ends were closed: with ours gone too the
     * reader sees EOF (a leaked one would leave it waiting: EAGAIN) */
    close(p[1]);
    assert_int_equal(fcntl(p[0], F_SETFL, O_NONBLOCK), 0);
    char c;
    assert_int_equal(read(p[0], &c, 1), 0);
    close(p[0]);

    assert_int_equal(fdpass_send(sp[0], &iov, 1, NULL, 0, 0), 8);
    assert_int_equal(fdpass_recv(sp[1], buf, 4, fds, 3, &nfds, &trunc, 0), 4);
    assert_int_equal(nfds, 0);
    assert_true(trunc);
}

static void test_limits_and_eof(void **state)
{
    (void)state;
    int many[FDPASS_MAX_FDS + 1];
    for (int i = 0; i <= FDPASS_MAX_FDS; i++)
        many[i] = sp[0];
    struct iovec iov = {.iov_base = "x", .iov_len = 1};
    errno = 0;
    assert_int_equal(fdpass_send(sp[0], &iov, 1, many, FDPASS_MAX_FDS + 1, 0), -1);
    assert_int_equal(errno, EINVAL);

    char buf[8];
    int fds[1], nfds;
    bool trunc;
    errno = 0;
    assert_int_equal(fdpass_recv(sp[1], buf, sizeof(buf), fds, 1, &nfds, &trunc, MSG_DONTWAIT),
                     -1);
    assert_int_equal(errno, EAGAIN);
    shutdown(sp[0], SHUT_WR);
    assert_int_equal(fdpass_recv(sp[1], buf, sizeof(buf), fds, 1, &nfds, &trunc, 0), 0);
    assert_int_equal(nfds, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_limits_and_eof, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
