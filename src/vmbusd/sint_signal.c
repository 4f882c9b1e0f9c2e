/* SPDX-License-Identifier: MIT */
/* The per-partition thread that writes SINT irqfds (see sint_signal.h). */
#include "vmbusd/sint_signal.h"

#include <errno.h>
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

struct sint_signaller {
    _Atomic uint64_t pending[WORDS]; /* vCPUs whose SINT is to be raised */
    _Atomic uint32_t sleeping;       /* 1: the thread waits (futex word) */
    atomic_bool stop;
    _Atomic int irqfd[XP_MAX_VCPUS]; /* -1: no route yet */
    _Atomic int writing_vp;          /* vCPU whose irqfd the thread writes, or -1 */
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

static void install_handler(void)
{
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
    for (uint32_t i = 0; i < XP_MAX_VCPUS; i++) {
        int fd = atomic_load(&s->irqfd[i]);
        if (fd >= 0)
            close(fd);
    }
    free(s);
}
