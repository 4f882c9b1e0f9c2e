/* SPDX-License-Identifier: MIT */
/*
 * The VSP plugin API (include/vmbusd/vsp.h) on top of the partition model.
 * Every callback of a channel runs on that channel's serial work queue;
 * attach and detach on the partition's; control on the vmbusctl client's
 * thread.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/guid.h"
#include "common/log.h"
#include "vmbusd/internal.h"

#define MAX_STATUS 256

/*
 * Packets one receive callback may take before it yields to other work
 * waiting for a worker (vsp_recv then returns 0 and the channel's receive
 * is queued again behind that work).  Without a bound, a guest that keeps
 * its ring full keeps a worker inside its receive for ever and, on a small
 * pool, every other channel waits.  64 amortises a turn's fixed costs
 * (queueing, publishing the read index, signalling) over many packets, yet
 * bounds another channel's wait to a few dozen packets' work; storvsc's
 * ring holds about 200 of its largest requests, so a full ring takes a
 * handful of turns.  When nothing else waits the turn goes on: yielding to
 * nobody would only cost a work item, a worker wake-up and a read-index
 * publish per turn.
 */
#define RECV_BATCH_BUDGET 64

struct vsp_channel {
    SLIST_ENTRY(vsp_channel) link; /* p->channels, or primary->subs */
    struct vsp_partition *p;
    struct vsp_channel *primary;   /* NULL for a primary channel */
    uint16_t subindex;             /* 0 for a primary channel */
    SLIST_HEAD(, vsp_channel) subs; /* a primary's subchannels (p->lock) */
    bool released;                 /* subchannel: the model let go of xc during teardown */
    struct xp_channel *xc;
    const struct vsp_channel_ops *ops;
    void *opaque;
    struct workq_serial *serial;
    atomic_bool kick_pending;
    atomic_uint recv_left; /* packets vsp_recv may still return this turn */
    uint8_t open_data[120];
    size_t open_len;
};

struct plugin_slot {
    const struct vsp_plugin *pl;
    void *state;
    void *part_state;     /* what attach returned for this partition */
    bool attach_ran;      /* detach is owed */
    struct vsp_param *params; /* the VM's "NAME.key = value" lines for this VSP */
    int nparams;
    atomic_bool attached; /* attach succeeded: control may be called */
};

struct status_kv {
    char key[64];
    char value[192];
};

/* What a timer and an fd watch share: an event (a timer on the loop, an
 * fd the worker pool waits on) whose callback queues the VSP's fn on the
 * channel's (or, without a channel, the partition's) serial queue, so fn
 * never runs on the loop.  Listed on its partition until cancelled or
 * stopped with it; freed by the last of the list's reference and those of
 * its queued runs. */
struct loop_hook {
    LIST_ENTRY(loop_hook) link; /* p->timers or p->watches while listed, under p->lock */
    bool listed;          /* off the list: cancelled, ran once, or stopped with the partition */
    struct vsp_partition *p;
    struct vsp_channel *ch;
    struct event *ev;     /* a timer's */
    int fd;               /* an fd watch's fd (-1 for a timer) */
    struct workq_fd *wfd; /* an fd watch's, while armed in the pool (under p->lock) */
    vsp_work_fn fn;
    void *arg;
    atomic_int refs;      /* the list + queued work items */
    atomic_bool cancelled;
};
LIST_HEAD(hook_list, loop_hook);

struct vsp_timer {
    struct loop_hook h; /* first: the hook is freed as the whole timer */
    unsigned period_ms;
};

/* An fd a VSP asked to be called back on (vsp_fd_watch_add): the worker
 * pool watches it (one-shot, workq_fd), watch_cb queues watch_work when it
 * is readable (run next by the worker that saw it, when that queue is
 * idle), and watch_work arms it again after the VSP's fn returned, so fn
 * never runs twice at once. */
struct vsp_fd_watch {
    struct loop_hook h; /* first: the hook is freed as the whole watch */
};

struct vsp_partition {
    struct vmm_conn *conn;
    struct vmbusd *d;
    struct xpartition *xp;
    struct workq_serial *serial;
    pthread_mutex_t lock; /* channels, timers, status */
    SLIST_HEAD(, vsp_channel) channels; /* primaries, freed with the partition */
    struct hook_list timers;
    struct hook_list watches;
    struct plugin_slot slots[CFG_MAX_VSPS];
    int nslots;
    struct status_kv status[MAX_STATUS];
    int nstatus;
    char refusal[VSP_REFUSAL_MAX]; /* vsp_partition_refuse() of the attach running */
    bool dying;  /* teardown started: no new timers or fd watches */
    bool closed; /* host_partition_close ran */
    /* Channel closes handed to the VSPs and not yet returned, and the
     * fences (host_partition_fence) waiting for that count to reach 0. */
    atomic_uint closes;
    struct fence *fences; /* lock */
};

/* ------------------------------------------------------------------ */
/* Partition                                                           */

/* The plugin slot whose attach, detach or control runs on this thread:
 * how vsp_partition_params() knows which VSP asks. */
static __thread struct plugin_slot *current_slot;

static const struct xp_channel_ops host_channel_ops;

struct vsp_partition *host_partition_create(struct vmm_conn *c)
{
    struct vsp_partition *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->conn = c;
    p->d = c->d;
    p->xp = c->xp;
    p->serial = workq_serial_create(c->d->wq);
    pthread_mutex_init(&p->lock, NULL);
    const struct cfg_vm *vm = config_vm(&c->d->cfg, c->name);
    for (int i = 0; vm && i < vm->nvsps && p->nslots < CFG_MAX_VSPS; i++) {
        struct loaded_plugin *lp = plugins_find(c->d, vm->vsps[i]);
        if (!lp) {
            log_err("partition %s: VSP '%s' is configured but not loaded", c->name, vm->vsps[i]);
            continue;
        }
        struct plugin_slot *s = &p->slots[p->nslots++];
        *s = (struct plugin_slot){.pl = lp->pl, .state = lp->state};
        /* The strings stay in the daemon's configuration for its lifetime. */
        s->params = calloc(vm->nparams ? (size_t)vm->nparams : 1, sizeof(*s->params));
        for (int j = 0; s->params && j < vm->nparams; j++)
            if (strcmp(vm->params[j].vsp, vm->vsps[i]) == 0)
                s->params[s->nparams++] = (struct vsp_param){.key = vm->params[j].key,
                                                             .value = vm->params[j].value,
                                                             .where = vm->params[j].where};
    }
    xp_set_channel_ops(p->xp, &host_channel_ops, p);
    return p;
}

/* "VSP NAME: " and the VSP's reason fit the VMM's ERROR whole. */
_Static_assert(VSP_REFUSAL_MAX + 64 <= VU_ERROR_MESSAGE_MAX, "refusal and ERROR sizes");

static void attach_work(void *arg)
{
    struct vsp_partition *p = arg;
    int refused = 0;
    char why[VU_ERROR_MESSAGE_MAX] = "";
    for (int i = 0; i < p->nslots && !refused; i++) {
        struct plugin_slot *s = &p->slots[i];
        current_slot = s;
        p->refusal[0] = 0;
        int ret = s->pl->attach ? s->pl->attach(s->state, p, &s->part_state) : 0;
        current_slot = NULL;
        s->attach_ran = true;
        if (ret < 0) {
            /* The VM cannot have what its configuration promises: refuse
             * it (answer to HELLO) rather than run it without the VSP. */
            refused = ret > -4096 ? -ret : EIO;
            snprintf(why, sizeof(why), "VSP %s: %s", s->pl->name,
                     p->refusal[0] ? p->refusal : strerror(refused));
            log_err("partition %s: refused: %s", p->conn->name, why);
        } else {
            atomic_store(&s->attached, true); /* publishes part_state to control */
        }
    }
    conn_attached(p->conn, refused, why);
    /* Boot-time offers are all in: a waiting REQUESTOFFERS completes now. */
    if (!refused)
        xp_offers_ready(p->xp);
}

void vsp_partition_refuse(struct vsp_partition *p, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->refusal, sizeof(p->refusal), fmt, ap);
    va_end(ap);
}

void host_partition_attach_all(struct vsp_partition *p)
{
    workq_serial_submit(p->serial, attach_work, p);
}

static void hook_unref(struct loop_hook *h)
{
    if (atomic_fetch_sub(&h->refs, 1) == 1) {
        if (h->ev)
            event_free(h->ev);
        free(h); /* the vsp_timer or vsp_fd_watch it begins */
    }
}

/* Wait for the work queued so far on every channel: a primary's
 * subchannels first, since the primary's close is queued only when theirs
 * have returned. */
static void drain_channels(struct vsp_partition *p)
{
    for (struct vsp_channel *ch = SLIST_FIRST(&p->channels); ch; ch = SLIST_NEXT(ch, link)) {
        for (struct vsp_channel *sub = SLIST_FIRST(&ch->subs); sub; sub = SLIST_NEXT(sub, link))
            workq_serial_drain(sub->serial);
        workq_serial_drain(ch->serial);
    }
}

void host_partition_close(struct vsp_partition *p)
{
    if (p->closed)
        return;
    p->closed = true;
    /* Attach may still be running: let it finish first. */
    workq_serial_drain(p->serial);

    /* The closes run while the timers and fd watches still do, so a VSP
     * may cancel or remove its own there (host_partition_destroy stops the
     * rest before the detaches); new ones are refused from now on. */
    pthread_mutex_lock(&p->lock);
    p->dying = true;
    pthread_mutex_unlock(&p->lock);
    /* Subchannels freed before `dying` was set are freed on their
     * primary's queue (reap_work): let that finish before the lists are
     * walked; from now on the lists only shrink at destroy. */
    for (struct vsp_channel *ch = SLIST_FIRST(&p->channels); ch; ch = SLIST_NEXT(ch, link))
        workq_serial_drain(ch->serial);

    xp_close_all(p->xp); /* queues the VSP closes */
    drain_channels(p);
}

static void watch_cb(void *arg);

/* Arm h: a timer on the loop (after tv), an fd watch in the worker pool.
 * 0, or -1 with errno; p->lock held. */
static int hook_arm(struct loop_hook *h, const struct timeval *tv)
{
    if (h->ev)
        return event_add(h->ev, tv);
    h->wfd = workq_fd_add(h->p->d->wq, h->fd, WORKQ_FD_ONESHOT, watch_cb, h);
    return h->wfd ? 0 : -1;
}

/* Stop h's event: event_del waits for a timer callback running on the
 * loop, workq_fd_del for a watch callback running on a worker. */
static void hook_disarm(struct loop_hook *h)
{
    if (h->ev) {
        event_del(h->ev);
        return;
    }
    pthread_mutex_lock(&h->p->lock);
    struct workq_fd *wfd = h->wfd;
    h->wfd = NULL; /* watch_work does not arm it again */
    pthread_mutex_unlock(&h->p->lock);
    workq_fd_del(wfd);
}

/* Take every timer and fd watch off the partition into `stopped` and stop
 * them (hook_disarm), and the runs they queued skip fn. */
static void hooks_stop(struct vsp_partition *p, struct hook_list *stopped)
{
    struct hook_list *lists[] = {&p->timers, &p->watches};
    struct loop_hook *h;
    pthread_mutex_lock(&p->lock);
    for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++)
        while ((h = LIST_FIRST(lists[i]))) {
            LIST_REMOVE(h, link);
            h->listed = false;
            LIST_INSERT_HEAD(stopped, h, link);
        }
    pthread_mutex_unlock(&p->lock);
    LIST_FOREACH(h, stopped, link) {
        atomic_store(&h->cancelled, true);
        hook_disarm(h);
    }
}

void host_partition_destroy(struct vsp_partition *p)
{
    host_partition_close(p);

    /* Stop every timer and fd watch before any detach: detach frees the
     * state they were given as arg and may close the watched fds.  The
     * drains then wait out the runs queued before (they see `cancelled` and
     * skip fn).  They are freed only after detach, so a VSP may still cancel
     * or remove its own there. */
    struct hook_list stopped = LIST_HEAD_INITIALIZER(stopped);
    hooks_stop(p, &stopped);
    drain_channels(p);
    workq_serial_drain(p->serial);

    for (int i = 0; i < p->nslots; i++)
        if (p->slots[i].attach_ran && p->slots[i].pl->detach) {
            current_slot = &p->slots[i];
            p->slots[i].pl->detach(p->slots[i].state, p, p->slots[i].part_state);
            current_slot = NULL;
        }

    struct loop_hook *h;
    while ((h = LIST_FIRST(&stopped))) {
        LIST_REMOVE(h, link);
        hook_unref(h);
    }
    /* Work a detach queued. */
    drain_channels(p);
    workq_serial_drain(p->serial);

    struct vsp_channel *ch;
    while ((ch = SLIST_FIRST(&p->channels))) {
        SLIST_REMOVE_HEAD(&p->channels, link);
        struct vsp_channel *sub;
        while ((sub = SLIST_FIRST(&ch->subs))) {
            SLIST_REMOVE_HEAD(&ch->subs, link);
            workq_serial_destroy(sub->serial);
            if (sub->released)
                xp_channel_destroy(sub->xc); /* else xp_destroy frees it */
            free(sub);
        }
        workq_serial_destroy(ch->serial);
        free(ch);
    }
    workq_serial_destroy(p->serial);
    for (int i = 0; i < p->nslots; i++)
        free(p->slots[i].params);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

struct fence {
    struct fence *next; /* p->fences */
    struct vsp_partition *p;
    void (*done)(void *arg);
    void *arg;
};

static void fence_work(void *arg)
{
    struct fence *f = arg;
    struct vsp_partition *p = f->p;
    /* Channels are only ever added at the head and freed with the
     * partition, which drains p->serial (this item) first. */
    pthread_mutex_lock(&p->lock);
    struct vsp_channel *first = SLIST_FIRST(&p->channels);
    pthread_mutex_unlock(&p->lock);
    for (struct vsp_channel *ch = first; ch; ch = SLIST_NEXT(ch, link))
        workq_serial_drain(ch->serial);
    f->done(f->arg);
    free(f);
}

/* A fence runs once no channel close is outstanding: a primary's close is
 * handed on only after its subchannels' closes returned (src/xpartition/
 * channel.c, "Subchannels"), so at the moment of a reset it is not queued
 * anywhere yet, and draining the primaries' queues alone would answer
 * while the subchannels' closes (and then the primary's) still end I/O
 * into the old guest's memory. */
int host_partition_fence(struct vsp_partition *p, void (*done)(void *arg), void *arg)
{
    struct fence *f = malloc(sizeof(*f));
    if (!f)
        return -ENOMEM;
    *f = (struct fence){.p = p, .done = done, .arg = arg};
    pthread_mutex_lock(&p->lock);
    bool now = atomic_load(&p->closes) == 0;
    if (!now) {
        f->next = p->fences;
        p->fences = f;
    }
    pthread_mutex_unlock(&p->lock);
    if (!now)
        return 0;
    int ret = workq_serial_submit(p->serial, fence_work, f);
    if (ret < 0)
        free(f);
    return ret;
}

/* A channel close returned: the last one lets the waiting fences go, on
 * the partition's queue. */
static void close_returned(struct vsp_partition *p)
{
    if (atomic_fetch_sub(&p->closes, 1) != 1)
        return;
    pthread_mutex_lock(&p->lock);
    struct fence *f = p->fences;
    p->fences = NULL;
    pthread_mutex_unlock(&p->lock);
    while (f) {
        struct fence *next = f->next;
        if (workq_serial_submit(p->serial, fence_work, f) < 0) {
            /* out of memory: every close has returned, only the primaries'
             * other queued work is not waited for */
            log_err("partition %s: cannot queue the wait after a reset; answering it now",
                    vsp_partition_name(p));
            f->done(f->arg);
            free(f);
        }
        f = next;
    }
}

const char *vsp_partition_name(const struct vsp_partition *p) { return p->conn->name; }
uint32_t vsp_partition_id(const struct vsp_partition *p) { return xp_id(p->xp); }

int vsp_partition_reference_time(struct vsp_partition *p, uint64_t *ref)
{
    /* Only the VMM (KVM) knows the guest's counter, and vmbus-user has no
     * message for it yet. */
    return -ENOTSUP;
}

int vsp_partition_params(struct vsp_partition *p, const struct vsp_param **params)
{
    struct plugin_slot *s = current_slot;
    if (!s || s < p->slots || s >= p->slots + p->nslots)
        return -EINVAL;
    *params = s->params;
    return s->nparams;
}

void vsp_partition_set_status(struct vsp_partition *p, const char *key, const char *value)
{
    pthread_mutex_lock(&p->lock);
    int i;
    for (i = 0; i < p->nstatus; i++)
        if (strcmp(p->status[i].key, key) == 0)
            break;
    if (i == p->nstatus && p->nstatus < MAX_STATUS) {
        snprintf(p->status[i].key, sizeof(p->status[i].key), "%s", key);
        p->nstatus++;
    }
    if (i < p->nstatus)
        snprintf(p->status[i].value, sizeof(p->status[i].value), "%s", value);
    pthread_mutex_unlock(&p->lock);
}

char *host_partition_status_text(struct vsp_partition *p)
{
    pthread_mutex_lock(&p->lock);
    size_t cap = (size_t)p->nstatus * 260 + 1;
    char *out = malloc(cap), *w = out;
    if (out) {
        *w = 0;
        for (int i = 0; i < p->nstatus; i++)
            w += snprintf(w, cap - (size_t)(w - out), "%s=%s\n", p->status[i].key,
                          p->status[i].value);
    }
    pthread_mutex_unlock(&p->lock);
    return out;
}

int host_partition_control(struct vsp_partition *p, const char *vsp, const char *cmd,
                           const char *args, char *reply, size_t len)
{
    for (int i = 0; i < p->nslots; i++) {
        struct plugin_slot *s = &p->slots[i];
        if (strcmp(s->pl->name, vsp) != 0)
            continue;
        if (!s->pl->control) {
            snprintf(reply, len, "VSP %s takes no commands", vsp);
            return -ENOTSUP;
        }
        if (!atomic_load(&s->attached)) {
            snprintf(reply, len, "%s: not attached to partition %s", vsp, p->conn->name);
            return -ENODEV;
        }
        current_slot = s;
        int ret = s->pl->control(s->state, p, s->part_state, cmd, args ? args : "", reply, len);
        current_slot = NULL;
        return ret;
    }
    snprintf(reply, len, "partition %s has no VSP %s", p->conn->name, vsp);
    return -ENOENT;
}

/* ------------------------------------------------------------------ */
/* Channels                                                            */

struct vsp_channel *vsp_channel_offer(struct vsp_partition *p, const struct vsp_offer *o)
{
    if (!o || !o->ops) {
        vsp_plog(p, VSP_LOG_ERROR, "vsp_channel_offer without channel ops");
        return NULL;
    }
    struct vsp_channel *ch = calloc(1, sizeof(*ch));
    if (!ch)
        return NULL;
    ch->p = p;
    ch->ops = o->ops;
    ch->opaque = o->opaque;
    atomic_init(&ch->recv_left, RECV_BATCH_BUDGET);
    ch->serial = workq_serial_create(p->d->wq);
    struct vmbus_channel_offer wire = {
        .if_type = o->class_id,
        .if_instance = o->instance_id,
        .chn_flags = o->chn_flags,
        .mmio_megabytes = o->mmio_megabytes,
        .sub_channel_index = o->sub_channel_index,
    };
    memcpy(wire.u.user_def, o->user_def, sizeof(wire.u.user_def));
    pthread_mutex_lock(&p->lock);
    SLIST_INSERT_HEAD(&p->channels, ch, link);
    pthread_mutex_unlock(&p->lock);
    /* ch->xc is set before the offer can reach the guest: a guest that
     * opens it at once has open_work use it before this returns. */
    if (!xp_offer_channel(p->xp, &wire, ch, &ch->xc)) {
        vsp_plog(p, VSP_LOG_ERROR, "cannot create the offer");
        return NULL; /* ch stays on the list and is freed with the partition */
    }
    return ch;
}

struct vsp_channel *vsp_subchannel_offer(struct vsp_channel *primary, uint16_t index,
                                         const struct vsp_channel_ops *ops, void *opaque)
{
    struct vsp_partition *p = primary->p;
    if (!ops) {
        vsp_log(primary, VSP_LOG_ERROR, "vsp_subchannel_offer without channel ops");
        return NULL;
    }
    struct vsp_channel *sub = calloc(1, sizeof(*sub));
    if (!sub)
        return NULL;
    sub->p = p;
    sub->primary = primary;
    sub->subindex = index;
    sub->ops = ops;
    sub->opaque = opaque;
    sub->serial = workq_serial_create(p->d->wq); /* its own: N subchannels, N-way */
    if (!sub->serial) {
        free(sub);
        return NULL;
    }
    /* p->lock across the offer: the model calls back only by queueing work,
     * and reap_work (which takes p->lock) cannot find sub before it is on
     * the list; a partition being torn down takes no new subchannel. */
    pthread_mutex_lock(&p->lock);
    if (!p->dying) /* sub->xc is set before the guest can open it; a refusal is logged */
        xp_offer_subchannel(primary->xc, index, sub, &sub->xc);
    if (sub->xc)
        SLIST_INSERT_HEAD(&sub->primary->subs, sub, link);
    pthread_mutex_unlock(&p->lock);
    if (!sub->xc) {
        workq_serial_destroy(sub->serial);
        free(sub);
        return NULL;
    }
    return sub;
}

uint16_t vsp_channel_subindex(const struct vsp_channel *ch) { return ch->subindex; }
struct vsp_channel *vsp_channel_primary(struct vsp_channel *ch)
{
    return ch->primary ? ch->primary : ch;
}

void vsp_channel_rescind(struct vsp_channel *ch) { xp_rescind_channel(ch->xc); }
void *vsp_channel_opaque(const struct vsp_channel *ch) { return ch->opaque; }
struct vsp_partition *vsp_channel_partition(const struct vsp_channel *ch) { return ch->p; }
uint32_t vsp_channel_relid(const struct vsp_channel *ch) { return xp_channel_relid(ch->xc); }
bool vsp_channel_is_open(const struct vsp_channel *ch) { return xp_channel_is_open(ch->xc); }

static void open_work(void *arg)
{
    struct vsp_channel *ch = arg;
    int ret = ch->ops->open ? ch->ops->open(ch, ch->open_data, ch->open_len) : 0;
    if (ret > 0)
        vsp_log(ch, VSP_LOG_ERROR, "open returned %d, which is not 0 or a negative errno "
                "(vsp.h); refusing the open", ret);
    /* The guest learns only that the open failed: STATUS_UNSUCCESSFUL.
     * In this work item, not a later one: vsp.h promises that work the VSP
     * queued from open runs after the channel is open and answered. */
    xp_channel_open_done(ch->xc, ret == 0 ? 0 : 0xC0000001u);
}

/* The xp_channel_ops below run with the partition locked: they only queue
 * work on the channel's serial queue.  ctx is the vsp_partition (unused: the
 * channel's vsp_channel is xp_channel_vsp(xc)). */
static void host_channel_open(void *ctx, struct xp_channel *xc, const uint8_t *ud, size_t len)
{
    struct vsp_channel *ch = xp_channel_vsp(xc);
    ch->open_len = len < sizeof(ch->open_data) ? len : sizeof(ch->open_data);
    memcpy(ch->open_data, ud, ch->open_len);
    workq_serial_submit(ch->serial, open_work, ch);
}

static void close_work(void *arg)
{
    struct vsp_channel *ch = arg;
    struct vsp_partition *p = ch->p; /* a subchannel may be freed once closed */
    if (ch->ops->close)
        ch->ops->close(ch);
    /* a subchannel's last close hands its primary's on (counted) here */
    xp_channel_close_done(ch->xc);
    close_returned(p);
}

static void host_channel_close(void *ctx, struct xp_channel *xc)
{
    struct vsp_channel *ch = xp_channel_vsp(xc);
    atomic_fetch_add(&ch->p->closes, 1);
    /* Out of memory: the channel stays closing; so does a fence waiting
     * for it (the VMM gives up on RESET_DONE after a while).  Not
     * close_returned: the model's lock is held here, and p->lock nests
     * outside it (vsp_subchannel_offer). */
    if (workq_serial_submit(ch->serial, close_work, ch) < 0)
        atomic_fetch_sub(&ch->p->closes, 1);
}

static void kick_work(void *arg);

/* Queue the channel's receive (writable, receive, publish). */
static void queue_kick(struct vsp_channel *ch)
{
    /* Coalesce: one queued receive covers any number of signals. */
    if (!atomic_exchange(&ch->kick_pending, true))
        workq_serial_submit(ch->serial, kick_work, ch);
}

static void kick_work(void *arg)
{
    struct vsp_channel *ch = arg;
    atomic_store(&ch->kick_pending, false);
    if (!xp_channel_is_open(ch->xc))
        return;
    atomic_store(&ch->recv_left, RECV_BATCH_BUDGET);
    if (xp_channel_writable(ch->xc) && ch->ops->writable)
        ch->ops->writable(ch);
    if (ch->ops->receive)
        ch->ops->receive(ch);
    /* Publish what the VSP consumed; the guest may wait for room. */
    xp_channel_recv_done(ch->xc);
}

static void host_channel_kick(void *ctx, struct xp_channel *xc)
{
    queue_kick(xp_channel_vsp(xc));
}

/* A finished subchannel (see src/xpartition/channel.c, "Subchannels"):
 * freed on its primary's queue, after the primary's close (queued before
 * this), once its own queued work has run.  During partition teardown the
 * lists are walked by host_partition_close/destroy: leave it to them. */
static void reap_work(void *arg)
{
    struct vsp_channel *sub = arg;
    struct vsp_partition *p = sub->p;
    pthread_mutex_lock(&p->lock);
    bool dying = p->dying;
    if (dying)
        sub->released = true;
    else
        SLIST_REMOVE(&sub->primary->subs, sub, vsp_channel, link);
    pthread_mutex_unlock(&p->lock);
    if (dying)
        return;
    workq_serial_destroy(sub->serial);
    xp_channel_destroy(sub->xc);
    free(sub);
}

static void host_channel_released(void *ctx, struct xp_channel *xc)
{
    struct vsp_channel *sub = xp_channel_vsp(xc);
    if (workq_serial_submit(sub->primary->serial, reap_work, sub) < 0)
        sub->released = true; /* out of memory: freed with the partition */
}

static const struct xp_channel_ops host_channel_ops = {
    .channel_open = host_channel_open,
    .channel_close = host_channel_close,
    .channel_kick = host_channel_kick,
    .channel_released = host_channel_released,
};

/* ------------------------------------------------------------------ */
/* Packets (the rings are driven by src/xpartition/chanio.c)           */

bool vsp_recv_quiet(struct vsp_channel *ch, bool quiet)
{
    return xp_channel_recv_quiet(ch->xc, quiet);
}

int vsp_recv(struct vsp_channel *ch, struct vsp_packet *pkt)
{
    /* Only the channel's own (serialised) callbacks receive: a plain
     * load/store pair is enough. */
    unsigned left = atomic_load(&ch->recv_left);
    if (left == 0) {
        if (workq_others_waiting(ch->serial)) {
            /* Budget spent: the rest waits for a receive queued behind the
             * other work (the guest will not signal a ring that is not
             * empty). */
            queue_kick(ch);
            return 0;
        }
        left = RECV_BATCH_BUDGET; /* nobody to yield to */
    }
    struct xp_packet xpkt;
    int ret = xp_channel_recv(ch->xc, &xpkt);
    if (ret <= 0)
        return ret;
    atomic_store(&ch->recv_left, left - 1);
    pkt->type = xpkt.type;
    pkt->flags = xpkt.flags;
    pkt->trans_id = xpkt.trans_id;
    pkt->header = xpkt.buf;
    pkt->header_len = xpkt.payload_off;
    pkt->data = xpkt.buf + xpkt.payload_off;
    pkt->len = xpkt.total_len - xpkt.payload_off;
    return 1;
}

int vsp_send_packet(struct vsp_channel *ch, uint16_t type, uint16_t flags, uint64_t trans_id,
                    const void *hdr, size_t hdr_len, const struct iovec *iov, int iovcnt)
{
    return xp_channel_send(ch->xc, type, flags, trans_id, hdr, hdr_len, iov, iovcnt);
}

int vsp_send_inband(struct vsp_channel *ch, const void *data, size_t len, uint64_t trans_id,
                    bool completion_requested)
{
    struct iovec iov = {.iov_base = (void *)data, .iov_len = len};
    return vsp_send_packet(ch, VM_PKT_DATA_INBAND,
                           completion_requested ? VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED : 0,
                           trans_id, NULL, 0, &iov, len ? 1 : 0);
}

int vsp_send_completion(struct vsp_channel *ch, uint64_t trans_id, const void *data, size_t len)
{
    struct iovec iov = {.iov_base = (void *)data, .iov_len = len};
    return vsp_send_packet(ch, VM_PKT_COMP, 0, trans_id, NULL, 0, &iov, len ? 1 : 0);
}

int vsp_send_reserve(struct vsp_channel *ch, size_t len)
{
    return xp_channel_reserve(ch->xc, len);
}

void vsp_send_unreserve(struct vsp_channel *ch, size_t len)
{
    xp_channel_unreserve(ch->xc, len);
}

int vsp_send_reserved(struct vsp_channel *ch, size_t reserved, uint16_t type, uint16_t flags,
                      uint64_t trans_id, const void *hdr, size_t hdr_len,
                      const struct iovec *iov, int iovcnt)
{
    return xp_channel_send_reserved(ch->xc, reserved, type, flags, trans_id, hdr, hdr_len, iov,
                                    iovcnt);
}

void vsp_send_batch_begin(struct vsp_channel *ch)
{
    xp_channel_send_batch_begin(ch->xc);
}

void vsp_send_batch_end(struct vsp_channel *ch)
{
    xp_channel_send_batch_end(ch->xc);
}

/* ------------------------------------------------------------------ */
/* Guest memory                                                        */

void *vsp_gpadl_map(struct vsp_channel *ch, uint32_t gpadl_id, size_t *len)
{
    return xp_gpadl_map(ch->xc, gpadl_id, len);
}

void vsp_gpadl_unmap(struct vsp_channel *ch, uint32_t gpadl_id)
{
    xp_gpadl_unmap(ch->xc, gpadl_id);
}

int vsp_packet_gpa(struct vsp_channel *ch, const struct vsp_packet *pkt, size_t max_len,
                   struct iovec *iov, int max_iov, size_t *len)
{
    if (!pkt || pkt->type != VM_PKT_DATA_USING_GPA_DIRECT || !pkt->header || max_iov < 0 ||
        (max_iov && !iov))
        return -EINVAL;
    return xp_channel_gpa_direct(ch->xc, pkt->header, pkt->header_len, max_len, iov, max_iov,
                                 len);
}

void *vsp_guest_ptr(struct vsp_partition *p, uint64_t gpa, size_t len)
{
    return xp_gpa_to_hva(p->xp, gpa, len);
}

/* ------------------------------------------------------------------ */
/* Work items and timers                                               */

int vsp_queue_work(struct vsp_channel *ch, vsp_work_fn fn, void *arg)
{
    return ch ? workq_serial_submit(ch->serial, fn, arg) : -EINVAL;
}

/* The queue a hook's runs go on: its channel's, else its partition's. */
static struct workq_serial *hook_serial(const struct loop_hook *h)
{
    return h->ch ? h->ch->serial : h->p->serial;
}

static void hook_init(struct loop_hook *h, struct vsp_partition *p, struct vsp_channel *ch,
                      vsp_work_fn fn, void *arg)
{
    h->p = p;
    h->ch = ch;
    h->fn = fn;
    h->arg = arg;
    h->fd = -1;
    atomic_init(&h->refs, 1);
}

/* List h on its partition and arm it (tv NULL: no timeout), under p->lock
 * so that a stop either finds it listed and armed or not at all.  On
 * failure (-ESHUTDOWN: the partition is being torn down; or event_add's
 * errno) h is freed. */
static int hook_publish(struct loop_hook *h, struct hook_list *list, const struct timeval *tv)
{
    struct vsp_partition *p = h->p;
    int err = ESHUTDOWN;
    pthread_mutex_lock(&p->lock);
    if (!p->dying) {
        LIST_INSERT_HEAD(list, h, link);
        h->listed = true;
        errno = 0;
        if (hook_arm(h, tv) == 0) {
            pthread_mutex_unlock(&p->lock);
            return 0;
        }
        err = errno ? errno : EINVAL; /* e.g. EPERM: a regular file cannot be polled */
        LIST_REMOVE(h, link);
    }
    pthread_mutex_unlock(&p->lock);
    if (h->ev)
        event_free(h->ev);
    free(h);
    return -err;
}

/* Take h off its partition's list; true if it was there (the caller then
 * owns the list's reference). */
static bool hook_unlink(struct loop_hook *h)
{
    struct vsp_partition *p = h->p;
    pthread_mutex_lock(&p->lock);
    bool found = h->listed;
    if (found) {
        LIST_REMOVE(h, link);
        h->listed = false;
    }
    pthread_mutex_unlock(&p->lock);
    return found;
}

/* vsp_timer_cancel and vsp_fd_watch_remove: when this returns, fn is not
 * running (unless the caller is fn itself) and will not run again. */
static void hook_cancel(struct loop_hook *h)
{
    if (!hook_unlink(h))
        return; /* already stopped with the partition, which frees it */
    atomic_store(&h->cancelled, true);
    hook_disarm(h); /* waits for a callback running on the loop or a worker */
    struct workq_serial *s = hook_serial(h);
    if (!workq_serial_current(s))
        workq_serial_drain(s); /* a run in flight finishes first */
    hook_unref(h);
}

static void timer_work(void *arg)
{
    struct vsp_timer *t = arg;
    if (!atomic_load(&t->h.cancelled))
        t->h.fn(t->h.arg);
    /* A one-shot timer is done once it ran: free it now rather than with
     * the partition (a guest opening and closing a channel in a loop would
     * otherwise grow the list without bound). */
    if (t->period_ms == 0 && hook_unlink(&t->h))
        hook_unref(&t->h);
    hook_unref(&t->h);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct vsp_timer *t = arg;
    if (atomic_load(&t->h.cancelled))
        return;
    atomic_fetch_add(&t->h.refs, 1);
    if (workq_serial_submit(hook_serial(&t->h), timer_work, t) < 0)
        hook_unref(&t->h);
    if (t->period_ms) {
        struct timeval tv = {t->period_ms / 1000, (t->period_ms % 1000) * 1000};
        event_add(t->h.ev, &tv);
    }
}

struct vsp_timer *vsp_timer_start(struct vsp_partition *p, struct vsp_channel *ch,
                                  unsigned first_ms, unsigned period_ms, vsp_work_fn fn,
                                  void *arg)
{
    struct vsp_timer *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    hook_init(&t->h, p, ch, fn, arg);
    t->period_ms = period_ms;
    t->h.ev = event_new(p->d->base, -1, 0, timer_cb, t);
    if (!t->h.ev) {
        free(t);
        return NULL;
    }
    struct timeval tv = {first_ms / 1000, (first_ms % 1000) * 1000};
    return hook_publish(&t->h, &p->timers, &tv) == 0 ? t : NULL;
}

void vsp_timer_cancel(struct vsp_timer *t)
{
    if (t)
        hook_cancel(&t->h);
}

/* ------------------------------------------------------------------ */
/* fd watches                                                          */

static void watch_work(void *arg)
{
    struct vsp_fd_watch *w = arg;
    struct vsp_partition *p = w->h.p;
    if (!atomic_load(&w->h.cancelled))
        w->h.fn(w->h.arg);
    /* Armed again under p->lock: a remove either finds it armed (and
     * deletes it) or has taken wfd away first (then it stays off). */
    pthread_mutex_lock(&p->lock);
    if (w->h.wfd && !atomic_load(&w->h.cancelled))
        workq_fd_rearm(w->h.wfd);
    pthread_mutex_unlock(&p->lock);
    hook_unref(&w->h);
}

/* On a worker, when the fd is readable: only queue (a callback of the
 * channel may be running). */
static void watch_cb(void *arg)
{
    struct vsp_fd_watch *w = arg;
    if (atomic_load(&w->h.cancelled))
        return;
    atomic_fetch_add(&w->h.refs, 1);
    if (workq_serial_submit(hook_serial(&w->h), watch_work, w) < 0) {
        /* Out of memory: drop the ref and arm it again (still readable, a
         * worker looks at once) rather than lose the watch. */
        atomic_fetch_sub(&w->h.refs, 1);
        pthread_mutex_lock(&w->h.p->lock);
        if (w->h.wfd)
            workq_fd_rearm(w->h.wfd);
        pthread_mutex_unlock(&w->h.p->lock);
    }
}

struct vsp_fd_watch *vsp_fd_watch_add(struct vsp_partition *p, struct vsp_channel *ch, int fd,
                                      vsp_work_fn fn, void *arg)
{
    if (!p || fd < 0 || !fn || (ch && ch->p != p)) {
        errno = EINVAL;
        return NULL;
    }
    struct vsp_fd_watch *w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    hook_init(&w->h, p, ch, fn, arg);
    w->h.fd = fd; /* one-shot in the pool: watch_work arms it again once fn ran */
    int ret = hook_publish(&w->h, &p->watches, NULL);
    if (ret < 0) {
        if (ret != -ESHUTDOWN)
            vsp_plog(p, VSP_LOG_ERROR, "cannot watch fd %d: %s", fd, strerror(-ret));
        errno = -ret;
        return NULL;
    }
    errno = 0;
    return w;
}

void vsp_fd_watch_remove(struct vsp_fd_watch *w)
{
    if (w)
        hook_cancel(&w->h);
}

unsigned host_timer_count(struct vsp_partition *p)
{
    unsigned n = 0;
    pthread_mutex_lock(&p->lock);
    struct loop_hook *h;
    LIST_FOREACH(h, &p->timers, link)
        n++;
    pthread_mutex_unlock(&p->lock);
    return n;
}

int vsp_guid_parse(const char *s, struct hv_guid *g)
{
    return guid_parse(s, g);
}

/* ------------------------------------------------------------------ */
/* Logging                                                             */

static enum log_level map_level(enum vsp_log_level l)
{
    switch (l) {
    case VSP_LOG_ERROR: return LOG_ERR;
    case VSP_LOG_WARN: return LOG_WARN;
    case VSP_LOG_INFO: return LOG_INFO;
    default: return LOG_DEBUG;
    }
}

void vsp_log(const struct vsp_channel *ch, enum vsp_log_level lvl, const char *fmt, ...)
{
    if (map_level(lvl) > log_get_level())
        return;
    /* What a VSP logs about a channel is usually the guest's doing: it
     * shares the partition's rate limit. */
    if (ch && !xp_log_allowed(ch->p->xp))
        return;
    char buf[768], cls[GUID_STR_LEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (!ch) {
        log_msg(map_level(lvl), "vsp: %s", buf);
        return;
    }
    guid_format(xp_channel_class(ch->xc), cls);
    log_msg(map_level(lvl), "partition %s: relid %u (class %s): %s", ch->p->conn->name,
            xp_channel_relid(ch->xc), cls, buf);
}

void vsp_plog(const struct vsp_partition *p, enum vsp_log_level lvl, const char *fmt, ...)
{
    if (map_level(lvl) > log_get_level() || !xp_log_allowed(p->xp))
        return;
    char buf[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    log_msg(map_level(lvl), "partition %s: %s", p->conn->name, buf);
}

void vsp_guest_error(const struct vsp_channel *ch, const char *fmt, ...)
{
    char buf[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    /* Counted and rate limited with the model's own guest warnings. */
    xp_channel_guest_warn(ch->xc, "%s", buf);
}
