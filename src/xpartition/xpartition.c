/* SPDX-License-Identifier: MIT */
/*
 * XPartition lifetime, guest memory, SynIC state, and the partition's use of
 * its host->guest message queue (the queue and slot protocol: synic.c).
 */
#include "xpartition/xpartition.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "xpartition/fuzz_hook.h"
#include "xpartition/internal.h"

/* Guest-triggered log lines per partition: burst, then lines per second
 * (see log_token). */
#define LOG_BURST 200
#define LOG_RATE 20


struct xpartition *xp_create(uint32_t id, const char *name, uint32_t nvcpus,
                             const struct xp_transport_ops *transport, void *ctx)
{
    if (nvcpus == 0 || nvcpus > XP_MAX_VCPUS)
        return NULL;
    struct xpartition *xp = calloc(1, sizeof(*xp));
    if (!xp)
        return NULL;
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&xp->lock, &a);
    pthread_mutexattr_destroy(&a);
    xp->id = id;
    STAILQ_INIT(&xp->offers);
    snprintf(xp->name, sizeof(xp->name), "%s", name && *name ? name : "vm");
    xp->nvcpus = nvcpus;
    xp->transport = transport;
    xp->transport_ctx = ctx;
    xp->log_rl = (struct ratelimit)RATELIMIT_INIT(LOG_BURST, LOG_RATE);
    XP_FUZZ(xp_fuzz_attach(xp);)
    return xp;
}

void xp_set_channel_ops(struct xpartition *xp, const struct xp_channel_ops *ops, void *ctx)
{
    pthread_mutex_lock(&xp->lock);
    xp->chan_ops = ops;
    xp->chan_ctx = ctx;
    pthread_mutex_unlock(&xp->lock);
}

void xp_destroy(struct xpartition *xp)
{
    if (!xp)
        return;
    pthread_mutex_lock(&xp->lock);
    xp->destroying = true;
    xp_disconnect_locked(xp, true);
    while (!STAILQ_EMPTY(&xp->offers)) {
        struct xp_channel *ch = STAILQ_FIRST(&xp->offers);
        STAILQ_REMOVE_HEAD(&xp->offers, link);
        xp_channel_free(ch);
    }
    while (!SLIST_EMPTY(&xp->orphans)) {
        struct xp_orphan_map *o = SLIST_FIRST(&xp->orphans);
        SLIST_REMOVE_HEAD(&xp->orphans, link);
        munmap(o->addr, o->len);
        free(o);
    }
    for (int i = 0; i < atomic_load(&xp->nregions); i++) {
        munmap(xp->regions[i].hva, xp->regions[i].size);
        close(xp->regions[i].fd);
    }
    XP_FUZZ(xp_fuzz_detach(xp);)
    pthread_mutex_unlock(&xp->lock);
    pthread_mutex_destroy(&xp->lock);
    free(xp);
}

/*
 * Everything a guest can trigger is logged through a per-partition token
 * bucket, so a guest looping on open/close or INITIATE_CONTACT cannot flood
 * the log: LOG_BURST lines at once, LOG_RATE more per second, and a count of
 * what was suppressed once lines flow again.
 */
static bool log_token(struct xpartition *xp)
{
    uint64_t dropped;
    if (!ratelimit_allow(&xp->log_rl, &dropped))
        return false;
    if (dropped)
        log_warn("partition %s (id %u): %llu log lines about this guest were suppressed", xp->name,
                 xp->id, (unsigned long long)dropped);
    return true;
}

static void xp_vlog(struct xpartition *xp, enum log_level lvl, const char *fmt, va_list ap)
{
    if (lvl > log_get_level() || !log_token(xp))
        return;
    char buf[512];
    vsnprintf(buf, sizeof(buf), fmt, ap);
    if (lvl <= LOG_WARN)
        log_msg(lvl, "partition %s (id %u): %s", xp->name, xp->id, buf);
    else
        log_msg(lvl, "partition %s: %s", xp->name, buf);
}

bool xp_log_allowed(struct xpartition *xp)
{
    pthread_mutex_lock(&xp->lock);
    bool ok = log_token(xp);
    pthread_mutex_unlock(&xp->lock);
    return ok;
}

void xp_guest_warn(struct xpartition *xp, const char *fmt, ...)
{
    xp->stats.violations++;
    va_list ap;
    va_start(ap, fmt);
    xp_vlog(xp, LOG_WARN, fmt, ap);
    va_end(ap);
}

void xp_event(struct xpartition *xp, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    xp_vlog(xp, LOG_INFO, fmt, ap);
    va_end(ap);
}

void xp_warn(struct xpartition *xp, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    xp_vlog(xp, LOG_WARN, fmt, ap);
    va_end(ap);
}

/* ------------------------------------------------------------------ */
/* Guest memory                                                        */

static void synic_resolve_locked(struct xpartition *xp, uint32_t vp, bool warn);

int xp_add_region(struct xpartition *xp, uint64_t gpa, uint64_t size, int fd, uint64_t fd_offset)
{
    if (size == 0 || (gpa | size | fd_offset) & (HV_PAGE_SIZE - 1) || gpa + size < gpa ||
        fd_offset + size < fd_offset)
        return -EINVAL;
    pthread_mutex_lock(&xp->lock);
    int ret = 0;
    int nreg = atomic_load(&xp->nregions);
    if (nreg == XP_MAX_REGIONS) {
        ret = -ENOSPC;
        goto out;
    }
    for (int i = 0; i < nreg; i++) {
        const struct xp_region *r = &xp->regions[i];
        if (gpa < r->gpa + r->size && r->gpa < gpa + size) {
            ret = -EEXIST;
            goto out;
        }
    }
    /* vmbusd touches these pages at any time, and touching a page beyond
     * the end of the file raises SIGBUS, which would kill vmbusd with every
     * partition in it.  Checking the size now is not enough: the VMM could
     * shrink the file later.  Only a memfd sealed with F_SEAL_SHRINK stays
     * as large as it is (seals cannot be removed), so nothing else is
     * accepted: not /dev/zero or a regular file either, which would leave
     * vmbusd writing memory the guest never sees. */
    int seals = fcntl(fd, F_GET_SEALS);
    if (seals < 0) {
        ret = -EBADF; /* not a memfd */
        goto out;
    }
    if (!(seals & F_SEAL_SHRINK)) {
        ret = -EPERM;
        goto out;
    }
    /* vmbusd writes guest memory (SynIC pages, rings): a write-sealed memfd
     * cannot be mapped writable (now or, with F_SEAL_FUTURE_WRITE, later). */
    if (seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE)) {
        ret = -EROFS;
        goto out;
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        ret = -errno;
        goto out;
    }
    if (fd_offset + size > (uint64_t)st.st_size) {
        ret = -ERANGE;
        goto out;
    }
    void *hva = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)fd_offset);
    if (hva == MAP_FAILED) {
        ret = -errno;
        goto out;
    }
    /* Where the host lets shared memory have transparent huge pages, a page
     * vmbusd touches first (an I/O landing in untouched guest RAM) is then
     * allocated huge too, as the VMM's own mapping asks (docs/vmm.md). */
    madvise(hva, size, MADV_HUGEPAGE);
    xp->regions[nreg] =
        (struct xp_region){.gpa = gpa, .size = size, .fd = fd, .fd_offset = fd_offset, .hva = hva};
    atomic_store_explicit(&xp->nregions, nreg + 1, memory_order_release); /* publishes it */
    /* SynIC pages announced before their memory become usable now, and the
     * messages that waited for them go out. */
    for (uint32_t vp = 0; vp < xp->nvcpus; vp++)
        synic_resolve_locked(xp, vp, false);
    xp_flush_locked(xp);
out:
    pthread_mutex_unlock(&xp->lock);
    return ret;
}

static const struct xp_region *find_region(const struct xpartition *xp, uint64_t gpa, size_t len)
{
    if (gpa + len < gpa)
        return NULL;
    /* Lock-free (see partition.h): the entries below n are complete. */
    int n = atomic_load_explicit(&((struct xpartition *)xp)->nregions, memory_order_acquire);
    for (int i = 0; i < n; i++) {
        const struct xp_region *r = &xp->regions[i];
        if (gpa >= r->gpa && gpa + len <= r->gpa + r->size)
            return r;
    }
    return NULL;
}

void *xp_gpa_to_hva(struct xpartition *xp, uint64_t gpa, size_t len)
{
    const struct xp_region *r = find_region(xp, gpa, len);
    return r ? r->hva + (gpa - r->gpa) : NULL;
}

int xp_gpa_to_fd(struct xpartition *xp, uint64_t gpa, int *fd, uint64_t *off)
{
    const struct xp_region *r = find_region(xp, gpa, HV_PAGE_SIZE);
    if (!r)
        return -1;
    *fd = r->fd;
    *off = r->fd_offset + (gpa - r->gpa);
    return 0;
}

/* ------------------------------------------------------------------ */
/* SynIC                                                               */

int xp_set_sint_route(struct xpartition *xp, uint32_t vp)
{
    if (vp >= xp->nvcpus)
        return -EINVAL;
    pthread_mutex_lock(&xp->lock);
    struct xp_vcpu *v = &xp->vcpus[vp];
    v->has_route = true;
    /* Messages and events may have been placed while the route was missing;
     * their interrupt went nowhere, so raise it now. */
    if (synic_sint_work_waiting(atomic_load(&v->msg_slot), atomic_load(&v->event_flags)))
        xp->transport->signal_vp(xp->transport_ctx, vp);
    xp_flush_locked(xp);
    pthread_mutex_unlock(&xp->lock);
    return 0;
}

/* Point vp's message slot and event flags at its SIMP / SIEFP pages, if
 * enabled and inside the guest memory known so far.  warn: say when a page
 * lies outside it (the pages are looked up again when memory is added). */
static void synic_resolve_locked(struct xpartition *xp, uint32_t vp, bool warn)
{
    struct xp_vcpu *v = &xp->vcpus[vp];
    struct hv_message *slot = NULL;
    uint8_t *flags = NULL;
    if ((v->scontrol & 1) && (v->simp & 1)) {
        uint8_t *page = xp_gpa_to_hva(xp, v->simp & ~(uint64_t)(HV_PAGE_SIZE - 1), HV_PAGE_SIZE);
        if (page)
            slot = (struct hv_message *)(page + VMBUS_MESSAGE_SINT * HV_MESSAGE_SIZE);
        else if (warn)
            xp_guest_warn(xp, "vp %u: SIMP 0x%llx is outside guest memory", vp,
                          (unsigned long long)v->simp);
    }
    if ((v->scontrol & 1) && (v->siefp & 1)) {
        uint8_t *page =
            xp_gpa_to_hva(xp, v->siefp & ~(uint64_t)(HV_PAGE_SIZE - 1), HV_PAGE_SIZE);
        if (page)
            flags = page + VMBUS_MESSAGE_SINT * HV_EVENT_FLAGS_BYTES;
        else if (warn)
            xp_guest_warn(xp, "vp %u: SIEFP 0x%llx is outside guest memory", vp,
                          (unsigned long long)v->siefp);
    }
    atomic_store(&v->msg_slot, slot);
    atomic_store(&v->event_flags, flags);
}

int xp_set_synic(struct xpartition *xp, uint32_t vp, uint64_t scontrol, uint64_t simp,
                 uint64_t siefp)
{
    if (vp >= xp->nvcpus)
        return -EINVAL;
    pthread_mutex_lock(&xp->lock);
    struct xp_vcpu *v = &xp->vcpus[vp];
    v->scontrol = scontrol;
    v->simp = simp;
    v->siefp = siefp;
    /* The pages are guest memory the guest chose; a page outside RAM simply
     * leaves the endpoint unusable (messages wait) rather than failing. */
    synic_resolve_locked(xp, vp, true);
    log_debug("partition %s: vp %u synic control=%#llx simp=%#llx siefp=%#llx", xp->name, vp,
              (unsigned long long)scontrol, (unsigned long long)simp, (unsigned long long)siefp);
    xp_flush_locked(xp);
    pthread_mutex_unlock(&xp->lock);
    return 0;
}

/* ------------------------------------------------------------------ */
/* Host -> guest messages                                              */

/* Put the head of the queue into the target vCPU's slot if the guest freed
 * it (and raise the SINT); ask for a retry while messages wait. */
static void deliver_locked(struct xpartition *xp)
{
    uint32_t vp = xp->target_vcpu;
    struct hv_message *slot = vp < xp->nvcpus ? atomic_load(&xp->vcpus[vp].msg_slot) : NULL;
    bool delivered = synic_queue_deliver(&xp->msgq, slot);
    if (delivered) {
        xp->stats.msgs_out++;
        unsigned n = 1;
        XP_FUZZ(n = xp_fuzz_signals(xp, NULL);)
        for (; n; n--)
            xp->transport->signal_vp(xp->transport_ctx, vp);
    }
    /* Only now is a retry needed: nothing polls a partition whose queue
     * is empty, so idle partitions cost no CPU. */
    bool waiting = synic_queue_len(&xp->msgq) > 0;
    XP_FUZZ(waiting |= xp_fuzz_holding(xp);)
    if (waiting && xp->transport->msgs_waiting)
        xp->transport->msgs_waiting(xp->transport_ctx);
}

void xp_flush_locked(struct xpartition *xp)
{
    XP_FUZZ(xp_fuzz_release_held(xp);)
    deliver_locked(xp);
    /* The queue only tells how much room it has; what goes into it is the
     * offer code's decision: offers that found it full, or whose event
     * connection could not be set up, are retried here. */
    if (synic_queue_room(&xp->msgq) > 0)
        xp_post_pending_offers(xp);
}

void xp_eom(struct xpartition *xp, uint32_t vp)
{
    (void)vp; /* messages go to the target vCPU only, whichever vCPU freed a slot */
    pthread_mutex_lock(&xp->lock);
    xp_flush_locked(xp);
    pthread_mutex_unlock(&xp->lock);
}

bool xp_flush(struct xpartition *xp)
{
    pthread_mutex_lock(&xp->lock);
    xp_flush_locked(xp);
    bool waiting = synic_queue_len(&xp->msgq) > 0;
    pthread_mutex_unlock(&xp->lock);
    return waiting;
}

unsigned xp_msgq_free(const struct xpartition *xp)
{
    return synic_queue_room(&xp->msgq);
}

int xp_queue_msg(struct xpartition *xp, const void *body, size_t len)
{
    XP_FUZZ(return xp_fuzz_queue_msg(xp, body, len);)
    int ret = synic_queue_push(&xp->msgq, body, len);
    if (ret < 0)
        return ret;
    log_debug("partition %s: queued host message type %u (%zu bytes, %u waiting)", xp->name,
              ((const struct vmbus_channel_message_header *)body)->msgtype, len,
              synic_queue_len(&xp->msgq));
    /* The caller is filling the queue: the room this may free is not
     * reported back to it. */
    deliver_locked(xp);
    return 0;
}

void xp_drop_queued_msgs(struct xpartition *xp)
{
    synic_queue_clear(&xp->msgq);
    XP_FUZZ(xp_fuzz_drop_held(xp);)
}

#ifdef VMBUSD_GUESTFUZZ
int xp_queue_msg_unfuzzed(struct xpartition *xp, const void *body, size_t len)
{
    int ret = synic_queue_push_raw(&xp->msgq, body, len);
    if (ret < 0)
        return ret;
    deliver_locked(xp);
    return 0;
}
#endif
