/* SPDX-License-Identifier: MIT */
/* The per-partition thread that writes SINT irqfds (see sint_signal.h). */
#include "vmbusd/sint_signal.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "xpartition/xpartition.h"

#define WORDS (XP_MAX_VCPUS / 64)
#define STOP_RETRY_MS 20
/* How long a direct irqfd write may sit in the kernel before the thread's
 * guard timer interrupts it (and again every period, so a signal that came
 * just before the write cannot be the last one). */
#define DIRECT_GUARD_MS 10

struct sint_signaller {
    _Atomic uint64_t pending[WORDS]; /* vCPUs whose SINT is to be raised */
    _Atomic uint32_t sleeping;       /* 1: the thread waits (futex word) */
    atomic_bool stop;
    _Atomic int irqfd[XP_MAX_VCPUS]; /* -1: no route yet */
    _Atomic int writing_vp;          /* vCPU whose irqfd the thread writes, or -1 */
    _Atomic uint32_t direct_writers; /* raise_here calls between fd load and write end */
    atomic_bool direct_off;          /* a direct write failed: the thread writes from now on */
    uint32_t nvcpus;
    pthread_t thread;
    bool warned;
    char name[64];
};

/* Sent to the thread to cut a write the VMM keeps blocked: the handler does
 * nothing, and without SA_RESTART the write returns EINTR. */
static int interrupt_signal(void) { return SIGRTMIN + 1; }

static void interrupt_handler(int sig) { (void)sig; }

static pthread_once_t handler_once = PTHREAD_ONCE_INIT;

atomic_bool sint_direct_test_any_mode;

/* A thread's guard for its direct irqfd writes: a POSIX timer that sends
 * interrupt_signal() to this very thread. */
struct write_guard {
    timer_t timer;
    bool ok;
};

static pthread_key_t guard_key;

static void guard_free(void *p)
{
    struct write_guard *g = p;
    if (g->ok)
        timer_delete(g->timer);
    free(g);
}

static void install_handler(void)
{
    pthread_key_create(&guard_key, guard_free);
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = interrupt_handler;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; /* no SA_RESTART: interrupted writes must fail */
    sigaction(interrupt_signal(), &sa, NULL);
}

/* The wake-up is a futex on a word of ours: nothing the VMM can touch, and
 * no fd per partition. */
static void futex_wait_while(_Atomic uint32_t *word, uint32_t val)
{
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}

static void futex_wake_one(_Atomic uint32_t *word)
{
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

static void raise_one(struct sint_signaller *s, uint32_t vp)
{
    int fd = atomic_load(&s->irqfd[vp]);
    if (fd < 0)
        return; /* no route yet: re-raised when it comes (xp_set_sint_route) */
    uint64_t one = 1;
    atomic_store(&s->writing_vp, (int)vp);
    ssize_t n = write(fd, &one, sizeof(one));
    int err = errno;
    atomic_store(&s->writing_vp, -1);
    if (n < 0 && !atomic_load(&s->stop) && !s->warned) {
        /* A sane irqfd never fills up: KVM consumes it at once. */
        s->warned = true;
        log_warn("partition %s: SINT irqfd of vp %u: %s; this VM's interrupts are lost "
                 "(said once)",
                 s->name, vp, err == EAGAIN ? "counter full" : strerror(err));
    }
}

static void *signaller_main(void *arg)
{
    struct sint_signaller *s = arg;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, interrupt_signal());
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
    while (!atomic_load(&s->stop)) {
        for (uint32_t w = 0; w < WORDS; w++) {
            uint64_t bits = atomic_exchange(&s->pending[w], 0);
            while (bits && !atomic_load(&s->stop)) {
                uint32_t b = (uint32_t)__builtin_ctzll(bits);
                bits &= bits - 1;
                raise_one(s, w * 64 + b);
            }
        }
        /* Announce the sleep, then look again: a raiser either sees
         * `sleeping` and wakes us, or its bit is seen here. */
        atomic_store(&s->sleeping, 1);
        bool more = atomic_load(&s->stop);
        for (uint32_t w = 0; w < WORDS && !more; w++)
            more = atomic_load(&s->pending[w]) != 0;
        if (!more)
            futex_wait_while(&s->sleeping, 1); /* returns at once if a raiser cleared it */
        atomic_store(&s->sleeping, 0);
    }
    return NULL;
}

struct sint_signaller *sint_signaller_new(const char *name, uint32_t nvcpus)
{
    if (nvcpus == 0 || nvcpus > XP_MAX_VCPUS) {
        errno = EINVAL;
        return NULL;
    }
    pthread_once(&handler_once, install_handler);
    struct sint_signaller *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    snprintf(s->name, sizeof(s->name), "%s", name);
    s->nvcpus = nvcpus;
    for (uint32_t i = 0; i < XP_MAX_VCPUS; i++)
        atomic_init(&s->irqfd[i], -1);
    atomic_init(&s->writing_vp, -1);
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setstacksize(&a, 256 * 1024);
    int ret = pthread_create(&s->thread, &a, signaller_main, s);
    pthread_attr_destroy(&a);
    if (ret == 0)
        pthread_setname_np(s->thread, "vmbusd-sint");
    if (ret != 0) {
        free(s);
        errno = ret;
        return NULL;
    }
    return s;
}

void sint_signaller_set_irqfd(struct sint_signaller *s, uint32_t vp, int fd)
{
    if (vp >= s->nvcpus)
        return;
    int old = atomic_exchange(&s->irqfd[vp], fd);
    if (old >= 0)
        close(old); /* not reached: vmm_conn refuses a second route */
}

static void wake(struct sint_signaller *s)
{
    if (atomic_exchange(&s->sleeping, 0))
        futex_wake_one(&s->sleeping);
}

void sint_signaller_raise(struct sint_signaller *s, uint32_t vp)
{
    if (vp >= s->nvcpus)
        return;
    atomic_fetch_or(&s->pending[vp / 64], 1ull << (vp % 64));
    if (atomic_load(&s->sleeping))
        wake(s);
}

/* The calling thread's write guard, made on first use; NULL if it cannot
 * have one (then it never writes an irqfd itself). */
static struct write_guard *thread_guard(void)
{
    struct write_guard *g = pthread_getspecific(guard_key);
    if (g)
        return g->ok ? g : NULL;
    g = calloc(1, sizeof(*g));
    if (!g)
        return NULL;
    /* A worker inherits the mask of whoever started the pool (a test, an
     * embedding program): the guard's signal must get through. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, interrupt_signal());
    struct sigevent ev;
    memset(&ev, 0, sizeof(ev));
    ev.sigev_notify = SIGEV_THREAD_ID;
    ev.sigev_signo = interrupt_signal();
    ev._sigev_un._tid = gettid();
    g->ok = pthread_sigmask(SIG_UNBLOCK, &set, NULL) == 0 &&
            timer_create(CLOCK_MONOTONIC, &ev, &g->timer) == 0;
    if (pthread_setspecific(guard_key, g) != 0) {
        guard_free(g);
        return NULL;
    }
    return g->ok ? g : NULL;
}

static bool guard_arm(struct write_guard *g, bool on)
{
    long ns = on ? DIRECT_GUARD_MS * 1000000L : 0;
    struct itimerspec its = {.it_interval = {0, ns}, .it_value = {0, ns}};
    return timer_settime(g->timer, 0, &its, NULL) == 0;
}

/* Write vp's irqfd from this thread.  False if that was not tried or did
 * not go through (the caller then hands the raise to the SINT thread).
 *
 * The VMM shares the file description, so O_NONBLOCK is its to set and
 * clear: vmbusd never sets it (a VMM that reads or writes the fd itself
 * would start seeing EAGAIN; KVM's irqfd, which consumes the counter from
 * the eventfd's wake-up, does not look at it) and writes here only when the
 * VMM made it non-blocking.  The VMM can clear the flag between that check
 * and the write; the guard timer then cuts the write within
 * DIRECT_GUARD_MS, and from then on this partition's irqfds are written by
 * its SINT thread only.  So only the writes under way when the VMM
 * switched the flag can wait on its irqfd, each for a bounded time. */
static bool write_direct(struct sint_signaller *s, uint32_t vp)
{
    struct write_guard *g = thread_guard();
    if (!g)
        return false;
    bool done = false;
    atomic_fetch_add(&s->direct_writers, 1); /* sint_signaller_free waits for 0 */
    int fd = atomic_load(&s->irqfd[vp]);
    if (fd >= 0 && !atomic_load(&s->stop) && !atomic_load(&s->direct_off)) {
        int fl = fcntl(fd, F_GETFL);
        /* unguarded, the write is not tried: the SINT thread does it */
        if (fl >= 0 && ((fl & O_NONBLOCK) || atomic_load(&sint_direct_test_any_mode)) &&
            guard_arm(g, true)) {
            uint64_t one = 1;
            ssize_t n = write(fd, &one, sizeof(one));
            int err = errno;
            guard_arm(g, false);
            done = n == (ssize_t)sizeof(one);
            if (!done && !atomic_exchange(&s->direct_off, true))
                log_warn("partition %s: SINT irqfd of vp %u refused a write from a worker (%s); "
                         "the SINT thread writes this VM's irqfds from now on",
                         s->name, vp,
                         n >= 0         ? "short write"
                         : err == EINTR ? "it blocked"
                         : err == EAGAIN ? "counter full"
                                         : strerror(err));
        }
    }
    atomic_fetch_sub(&s->direct_writers, 1);
    return done;
}

void sint_signaller_raise_here(struct sint_signaller *s, uint32_t vp)
{
    if (vp >= s->nvcpus)
        return;
    if (!write_direct(s, vp))
        sint_signaller_raise(s, vp);
}

void sint_signaller_free(struct sint_signaller *s)
{
    if (!s)
        return;
    atomic_store(&s->stop, true);
    wake(s);
    /* A signal sent just before the thread enters write() is lost, so send
     * it again until the thread is gone. */
    int stuck_vp = -1;
    for (;;) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += STOP_RETRY_MS * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        if (pthread_timedjoin_np(s->thread, NULL, &ts) == 0)
            break;
        if (stuck_vp < 0)
            stuck_vp = atomic_load(&s->writing_vp);
        pthread_kill(s->thread, interrupt_signal());
    }
    if (stuck_vp >= 0)
        log_warn("partition %s: the VMM kept the SINT irqfd of vp %d blocked; write "
                 "interrupted, SINT thread stopped",
                 s->name, stuck_vp);
    /* A direct write ends within DIRECT_GUARD_MS, and none starts after
     * `stop`: then the fds can go. */
    while (atomic_load(&s->direct_writers))
        usleep(1000);
    for (uint32_t i = 0; i < XP_MAX_VCPUS; i++) {
        int fd = atomic_load(&s->irqfd[i]);
        if (fd >= 0)
            close(fd);
    }
    free(s);
}
