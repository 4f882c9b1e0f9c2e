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

struct vsp_timer {
    LIST_ENTRY(vsp_timer) link; /* p->timers while listed, under p->lock */
    bool listed;          /* off the list: cancelled, ran once, or stopped with the partition */
    struct vsp_partition *p;
    struct vsp_channel *ch;
    struct event *ev;
    unsigned period_ms;
    vsp_work_fn fn;
    void *arg;
    atomic_int refs;      /* the timer list + queued work items */
    atomic_bool cancelled;
};

/* An fd a VSP asked to be called back on (vsp_fd_watch_add): the worker
 * pool watches it (one-shot, workq_fd), watch_cb queues watch_work on the
 * channel's or partition's serial queue when it is readable (run next by
 * the worker that saw it, when that queue is idle), and watch_work arms it
 * again after the VSP's fn returned, so fn never runs twice at once and
 * never on the loop. */
struct vsp_fd_watch {
    LIST_ENTRY(vsp_fd_watch) link; /* p->watches while listed, under p->lock */
    bool listed;          /* off the list: removed or stopped with the partition */
    struct vsp_partition *p;
    struct vsp_channel *ch;
    struct workq_fd *wfd; /* until removed or stopped */
    vsp_work_fn fn;
    void *arg;
    atomic_int refs;      /* the list + queued work items */
    atomic_bool cancelled;
};

struct vsp_partition {
    struct vmm_conn *conn;
    struct vmbusd *d;
    struct xpartition *xp;
    struct workq_serial *serial;
    pthread_mutex_t lock; /* channels, timers, status */
    SLIST_HEAD(, vsp_channel) channels; /* primaries, freed with the partition */
    LIST_HEAD(, vsp_timer) timers;
    LIST_HEAD(, vsp_fd_watch) watches;
    struct plugin_slot slots[CFG_MAX_VSPS];
    int nslots;
    struct status_kv status[MAX_STATUS];
    int nstatus;
    char refusal[112]; /* vsp_partition_refuse() of the attach running */
    bool dying;  /* teardown started: no new timers or fd watches */
    bool closed; /* host_partition_close ran */
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

static void attach_work(void *arg)
{
    struct vsp_partition *p = arg;
    int refused = 0;
    char why[128] = "";
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

static void watch_unref(struct vsp_fd_watch *w)
{
    if (atomic_fetch_sub(&w->refs, 1) == 1)
        free(w);
}

static void timer_unref(struct vsp_timer *t)
{
    if (atomic_fetch_sub(&t->refs, 1) == 1) {
        event_free(t->ev);
        free(t);
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

void host_partition_destroy(struct vsp_partition *p)
{
    host_partition_close(p);

    /* Stop every timer before any detach: detach frees the state the timers
     * were given as arg.  event_del waits for a timer_cb running on the
     * loop; the drains then wait out the runs it queued (they see
     * `cancelled` and skip fn).  The timers are freed only after detach, so
     * a VSP may still vsp_timer_cancel() them there. */
    LIST_HEAD(, vsp_timer) stopped = LIST_HEAD_INITIALIZER(stopped);
    struct vsp_timer *t;
    pthread_mutex_lock(&p->lock);
    while ((t = LIST_FIRST(&p->timers))) {
        LIST_REMOVE(t, link);
        t->listed = false;
        LIST_INSERT_HEAD(&stopped, t, link);
    }
    pthread_mutex_unlock(&p->lock);
    LIST_FOREACH(t, &stopped, link) {
        atomic_store(&t->cancelled, true);
        event_del(t->ev);
    }
    /* The fd watches likewise: detach may close their fds. */
    LIST_HEAD(, vsp_fd_watch) unwatched = LIST_HEAD_INITIALIZER(unwatched);
    struct vsp_fd_watch *w;
    pthread_mutex_lock(&p->lock);
    while ((w = LIST_FIRST(&p->watches))) {
        LIST_REMOVE(w, link);
        w->listed = false;
        LIST_INSERT_HEAD(&unwatched, w, link);
    }
    pthread_mutex_unlock(&p->lock);
    LIST_FOREACH(w, &unwatched, link) {
        atomic_store(&w->cancelled, true);
        workq_fd_del(w->wfd); /* waits for a watch_cb running on a worker */
        w->wfd = NULL;
    }
    drain_channels(p);
    workq_serial_drain(p->serial);

    for (int i = 0; i < p->nslots; i++)
        if (p->slots[i].attach_ran && p->slots[i].pl->detach) {
            current_slot = &p->slots[i];
            p->slots[i].pl->detach(p->slots[i].state, p, p->slots[i].part_state);
            current_slot = NULL;
        }

    while ((t = LIST_FIRST(&stopped))) {
        LIST_REMOVE(t, link);
        timer_unref(t);
    }
    while ((w = LIST_FIRST(&unwatched))) {
        LIST_REMOVE(w, link);
        watch_unref(w);
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

int host_partition_fence(struct vsp_partition *p, void (*done)(void *arg), void *arg)
{
    struct fence *f = malloc(sizeof(*f));
    if (!f)
        return -ENOMEM;
    *f = (struct fence){.p = p, .done = done, .arg = arg};
    int ret = workq_serial_submit(p->serial, fence_work, f);
    if (ret < 0)
        free(f);
    return ret;
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
    ch->xc = xp_offer_channel(p->xp, &wire, ch);
    if (!ch->xc) {
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
    if (ch->ops->close)
        ch->ops->close(ch);
    xp_channel_close_done(ch->xc);
}

static void host_channel_close(void *ctx, struct xp_channel *xc)
{
    struct vsp_channel *ch = xp_channel_vsp(xc);
    workq_serial_submit(ch->serial, close_work, ch);
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

/* Take t off its partition's list; true if it was there (the caller then
 * owns the list's reference). */
static bool timer_unlink(struct vsp_timer *t)
{
    struct vsp_partition *p = t->p;
    pthread_mutex_lock(&p->lock);
    bool found = t->listed;
    if (found) {
        LIST_REMOVE(t, link);
        t->listed = false;
    }
    pthread_mutex_unlock(&p->lock);
    return found;
}

static void timer_work(void *arg)
{
    struct vsp_timer *t = arg;
    if (!atomic_load(&t->cancelled))
        t->fn(t->arg);
    /* A one-shot timer is done once it ran: free it now rather than with
     * the partition (a guest opening and closing a channel in a loop would
     * otherwise grow the list without bound). */
    if (t->period_ms == 0 && timer_unlink(t))
        timer_unref(t);
    timer_unref(t);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct vsp_timer *t = arg;
    if (atomic_load(&t->cancelled))
        return;
    atomic_fetch_add(&t->refs, 1);
    struct workq_serial *s = t->ch ? t->ch->serial : t->p->serial;
    if (workq_serial_submit(s, timer_work, t) < 0)
        timer_unref(t);
    if (t->period_ms) {
        struct timeval tv = {t->period_ms / 1000, (t->period_ms % 1000) * 1000};
        event_add(t->ev, &tv);
    }
}

struct vsp_timer *vsp_timer_start(struct vsp_partition *p, struct vsp_channel *ch,
                                  unsigned first_ms, unsigned period_ms, vsp_work_fn fn,
                                  void *arg)
{
    struct vsp_timer *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->p = p;
    t->ch = ch;
    t->period_ms = period_ms;
    t->fn = fn;
    t->arg = arg;
    atomic_init(&t->refs, 1);
    t->ev = event_new(p->d->base, -1, 0, timer_cb, t);
    pthread_mutex_lock(&p->lock);
    if (p->dying) {
        pthread_mutex_unlock(&p->lock);
        event_free(t->ev);
        free(t);
        return NULL;
    }
    LIST_INSERT_HEAD(&p->timers, t, link);
    t->listed = true;
    pthread_mutex_unlock(&p->lock);
    struct timeval tv = {first_ms / 1000, (first_ms % 1000) * 1000};
    event_add(t->ev, &tv);
    return t;
}

void vsp_timer_cancel(struct vsp_timer *t)
{
    if (!t)
        return;
    struct vsp_partition *p = t->p;
    if (!timer_unlink(t))
        return; /* already stopped with the partition */
    atomic_store(&t->cancelled, true);
    event_del(t->ev);
    struct workq_serial *s = t->ch ? t->ch->serial : p->serial;
    if (!workq_serial_current(s))
        workq_serial_drain(s); /* a callback in flight finishes first */
    timer_unref(t);
}

/* ------------------------------------------------------------------ */
/* fd watches                                                          */

static struct workq_serial *watch_serial(const struct vsp_fd_watch *w)
{
    return w->ch ? w->ch->serial : w->p->serial;
}

static void watch_work(void *arg)
{
    struct vsp_fd_watch *w = arg;
    if (!atomic_load(&w->cancelled))
        w->fn(w->arg);
    /* Armed again under p->lock: a remove either finds it listed (and
     * deletes it only after this) or has unlisted it first (then it stays
     * off). */
    pthread_mutex_lock(&w->p->lock);
    if (w->listed && !atomic_load(&w->cancelled))
        workq_fd_rearm(w->wfd);
    pthread_mutex_unlock(&w->p->lock);
    watch_unref(w);
}

/* On a worker, when the fd is readable (no callback of the channel may
 * run now: only queue). */
static void watch_cb(void *arg)
{
    struct vsp_fd_watch *w = arg;
    if (atomic_load(&w->cancelled))
        return;
    atomic_fetch_add(&w->refs, 1);
    if (workq_serial_submit(watch_serial(w), watch_work, w) < 0) {
        /* Out of memory: drop the ref and arm it again (it is still
         * readable: the pool looks at it at once) rather than lose the
         * watch. */
        atomic_fetch_sub(&w->refs, 1);
        pthread_mutex_lock(&w->p->lock);
        if (w->listed)
            workq_fd_rearm(w->wfd);
        pthread_mutex_unlock(&w->p->lock);
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
    w->p = p;
    w->ch = ch;
    w->fn = fn;
    w->arg = arg;
    atomic_init(&w->refs, 1);
    pthread_mutex_lock(&p->lock);
    if (p->dying) {
        pthread_mutex_unlock(&p->lock);
        free(w);
        errno = ESHUTDOWN;
        return NULL;
    }
    /* Listed and watched under p->lock: watch_cb may run at once on a
     * worker, and its watch_work rearms under p->lock only a listed watch
     * whose wfd is set. */
    w->wfd = workq_fd_add(p->d->wq, fd, WORKQ_FD_ONESHOT, watch_cb, w);
    if (!w->wfd) {
        int err = errno ? errno : EINVAL; /* e.g. EPERM: a regular file cannot be polled */
        pthread_mutex_unlock(&p->lock);
        free(w);
        vsp_plog(p, VSP_LOG_ERROR, "cannot watch fd %d: %s", fd, strerror(err));
        errno = err;
        return NULL;
    }
    LIST_INSERT_HEAD(&p->watches, w, link);
    w->listed = true;
    pthread_mutex_unlock(&p->lock);
    return w;
}

void vsp_fd_watch_remove(struct vsp_fd_watch *w)
{
    if (!w)
        return;
    struct vsp_partition *p = w->p;
    pthread_mutex_lock(&p->lock);
    bool listed = w->listed;
    w->listed = false;
    if (listed)
        LIST_REMOVE(w, link);
    pthread_mutex_unlock(&p->lock);
    if (!listed)
        return; /* already stopped with the partition, which frees it */
    atomic_store(&w->cancelled, true);
    workq_fd_del(w->wfd); /* waits for a watch_cb running on a worker */
    w->wfd = NULL;
    struct workq_serial *s = watch_serial(w);
    if (!workq_serial_current(s))
        workq_serial_drain(s); /* a running fn finishes first */
    watch_unref(w);
}

unsigned host_timer_count(struct vsp_partition *p)
{
    unsigned n = 0;
    pthread_mutex_lock(&p->lock);
    struct vsp_timer *t;
    LIST_FOREACH(t, &p->timers, link)
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
