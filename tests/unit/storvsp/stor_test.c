/* SPDX-License-Identifier: MIT */
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

#include "stor_test.h"

unsigned stor_test_queue_flags;
static char dir_path[256];

static void remove_dir(void)
{
    if (!dir_path[0])
        return;
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir_path);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir_path);
}

void stor_test_init(int argc, char **argv)
{
    if (argc < 2 || (strcmp(argv[1], "uring") && strcmp(argv[1], "threads"))) {
        fprintf(stderr, "usage: %s uring|threads\n", argv[0]);
        exit(2);
    }
    stor_test_queue_flags = strcmp(argv[1], "threads") == 0 ? STOR_QUEUE_THREADS : 0;
    const char *tmp = getenv("TMPDIR");
    snprintf(dir_path, sizeof(dir_path), "%s/stor-test-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir_path)) {
        perror("mkdtemp");
        exit(1);
    }
    atexit(remove_dir);
    if (!stor_test_queue_flags) {
        /* the io_uring run must run on io_uring, or visibly not at all */
        char *p = stor_test_file(dir_path, "probe", 4096);
        struct stor_backend *b;
        struct stor_queue *q;
        char err[128];
        if (stor_backend_open(p, true, 0, &b, err, sizeof(err)) < 0 ||
            stor_queue_create(b, 4, 0, &q) < 0) {
            fprintf(stderr, "probe: %s\n", err);
            exit(1);
        }
        bool uring = stor_queue_engine(q) == STOR_ENGINE_IO_URING;
        int why = stor_queue_uring_errno(q);
        stor_queue_destroy(q);
        stor_backend_close(b);
        if (!uring) {
            fprintf(stderr, "SKIP: io_uring unavailable here (%s)\n", strerror(why));
            exit(77);
        }
    }
}

const char *stor_test_dir(void) { return dir_path; }

uint8_t stor_test_pattern(uint64_t off)
{
    return (uint8_t)((off * 131) ^ (off >> 9) ^ (off >> 17));
}

char *stor_test_file(const char *dir, const char *name, uint64_t size)
{
    static char paths[8][300];
    static int slot;
    char *p = paths[slot++ % 8];
    snprintf(p, 300, "%s/%s", dir, name);
    int fd = open(p, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) {
        perror(p);
        exit(1);
    }
    uint8_t buf[65536];
    for (uint64_t off = 0; off < size; off += sizeof(buf)) {
        size_t n = size - off < sizeof(buf) ? (size_t)(size - off) : sizeof(buf);
        for (size_t i = 0; i < n; i++)
            buf[i] = stor_test_pattern(off + i);
        if (pwrite(fd, buf, n, (off_t)off) != (ssize_t)n) {
            perror("pwrite");
            exit(1);
        }
    }
    fsync(fd);
    close(fd);
    return p;
}

void stor_test_open(const char *path, bool readonly, unsigned depth,
                    struct stor_backend **b, struct stor_queue **q)
{
    char err[256] = "";
    int r = stor_backend_open(path, readonly, 0, b, err, sizeof(err));
    if (r < 0)
        fail_msg("open %s: %s", path, err);
    assert_int_equal(stor_queue_create(*b, depth, stor_test_queue_flags, q), 0);
    assert_int_equal(stor_queue_engine(*q),
                     stor_test_queue_flags ? STOR_ENGINE_THREADS : STOR_ENGINE_IO_URING);
}

void stor_test_wait(struct stor_queue *q, const bool *flag)
{
    stor_queue_kick(q);
    while (!*flag) {
        struct pollfd pfd = { .fd = stor_queue_fd(q), .events = POLLIN };
        int r = poll(&pfd, 1, 10000);
        if (r == 0)
            fail_msg("no completion within 10 s (hang)");
        if (r < 0 && errno != EINTR)
            fail_msg("poll: %s", strerror(errno));
        stor_queue_reap(q, 0);
    }
}

uint64_t stor_test_st_blocks(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return (uint64_t)st.st_blocks;
}
