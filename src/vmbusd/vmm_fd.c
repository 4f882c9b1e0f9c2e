/* SPDX-License-Identifier: MIT */
/* Checks and non-blocking reads on fds a VMM shares with vmbusd. */
#include "vmbusd/vmm_fd.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/uio.h>
#include <unistd.h>
#include <linux/magic.h>

#include "common/log.h"

int vmm_fd_check_eventfd(int fd, bool we_read, char *why, size_t len)
{
    /* The kernel names every eventfd this way; regular files show an
     * absolute path, pipes and sockets "pipe:[..]" / "socket:[..]". */
    char path[64], target[64];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    ssize_t n = readlink(path, target, sizeof(target) - 1);
    if (n < 0) {
        snprintf(why, len, "cannot inspect fd (%s: %s)", path, strerror(errno));
        return -1;
    }
    target[n] = 0;
    if (strcmp(target, "anon_inode:[eventfd]") != 0) {
        snprintf(why, len, "not an eventfd but %.40s", target);
        return -1;
    }
    if (!we_read)
        return 0;
    /* A semaphore eventfd gives 1 per read: a preloaded counter would keep
     * the event loop reading it for ever. */
    snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
    FILE *f = fopen(path, "re");
    if (!f) {
        snprintf(why, len, "cannot inspect fd (%s: %s)", path, strerror(errno));
        return -1;
    }
    char line[128];
    bool sem = false;
    while (fgets(line, sizeof(line), f)) {
        unsigned v;
        if (sscanf(line, "eventfd-semaphore: %u", &v) == 1)
            sem = v != 0;
    }
    fclose(f);
    if (sem) {
        snprintf(why, len, "an eventfd in semaphore mode");
        return -1;
    }
    return 0;
}

/* RWF_NOWAIT makes an eventfd read return EAGAIN instead of sleeping even
 * when the VMM cleared O_NONBLOCK.  Kernels without it for eventfds answer
 * EOPNOTSUPP: then O_NONBLOCK is set again before each read, which a VMM
 * racing us can still defeat (said once in the log). */
static bool nowait_missing;
static pthread_once_t nowait_once = PTHREAD_ONCE_INIT;

static void nowait_probe(void)
{
    int fd = eventfd(0, EFD_CLOEXEC); /* blocking, count 0: a plain read would sleep */
    if (fd < 0)
        return;
    uint64_t v;
    struct iovec iov = {.iov_base = &v, .iov_len = sizeof(v)};
    if (preadv2(fd, &iov, 1, -1, RWF_NOWAIT) < 0 && errno != EAGAIN) {
        nowait_missing = true;
        log_warn("this kernel cannot read eventfds with RWF_NOWAIT (%s): a VMM that switches "
                 "its eventfds to blocking mode can stall vmbusd",
                 strerror(errno));
    }
    close(fd);
}

bool vmm_eventfd_drain(int fd)
{
    pthread_once(&nowait_once, nowait_probe);
    uint64_t v;
    ssize_t n;
    if (!nowait_missing) {
        struct iovec iov = {.iov_base = &v, .iov_len = sizeof(v)};
        do
            n = preadv2(fd, &iov, 1, -1, RWF_NOWAIT);
        while (n < 0 && errno == EINTR);
    } else {
        int fl = fcntl(fd, F_GETFL);
        if (fl >= 0 && !(fl & O_NONBLOCK))
            fcntl(fd, F_SETFL, fl | O_NONBLOCK);
        n = read(fd, &v, sizeof(v));
    }
    return n == (ssize_t)sizeof(v) && v != 0;
}

/* A close that cannot end up waiting on a party the VMM controls. */
static bool close_is_harmless(int fd)
{
    struct stat st;
    struct statfs sf;
    if (fstat(fd, &st) < 0 || fstatfs(fd, &sf) < 0)
        return false;
    if (S_ISFIFO(st.st_mode))
        return true; /* pipes and FIFOs: no flush, nothing queued in them */
    if (S_ISREG(st.st_mode))
        return sf.f_type == TMPFS_MAGIC || sf.f_type == HUGETLBFS_MAGIC; /* memfds */
    if (sf.f_type == ANON_INODE_FS_MAGIC) {
        char why[8];
        return vmm_fd_check_eventfd(fd, false, why, sizeof(why)) == 0;
    }
    return false; /* sockets (linger, queued fds), FUSE/NFS files, devices, ... */
}

#define MAX_SIDE_CLOSES 64

static atomic_int side_closes; /* closes running on their own thread */
static atomic_ulong kept_open;

static void *side_close_main(void *arg)
{
    close((int)(intptr_t)arg);
    atomic_fetch_sub(&side_closes, 1);
    return NULL;
}

void vmm_fd_close(int fd)
{
    if (fd < 0)
        return;
    if (close_is_harmless(fd)) {
        close(fd);
        return;
    }
    /* One thread per such close: one that never returns holds only itself.
     * Past the cap the fd stays open (bounded by the fd limit) rather than
     * risking the caller. */
    if (atomic_fetch_add(&side_closes, 1) < MAX_SIDE_CLOSES) {
        pthread_attr_t a;
        pthread_t t;
        pthread_attr_init(&a);
        pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
        pthread_attr_setstacksize(&a, 64 * 1024);
        int ret = pthread_create(&t, &a, side_close_main, (void *)(intptr_t)fd);
        pthread_attr_destroy(&a);
        if (ret == 0)
            return;
    }
    atomic_fetch_sub(&side_closes, 1);
    unsigned long n = atomic_fetch_add(&kept_open, 1) + 1;
    if ((n & (n - 1)) == 0) /* 1, 2, 4, 8, ...: a flood does not flood the log */
        log_warn("%d closes of fds from VMMs are still blocked; leaving fd %d open "
                 "(%lu so far)",
                 MAX_SIDE_CLOSES, fd, n);
}
