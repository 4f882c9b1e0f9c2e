/* SPDX-License-Identifier: MIT */
/*
 * Channels: the LOCAL_OFFER list, relids, open/close/rescind, and the event
 * endpoint (guest HvSignalEvent) plus host -> guest notification.
 *
 * Channel life:  PENDING --offer--> OFFERED --open--> OPENING --VSP ok--> OPEN
 *                OPEN --close/unload/fault--> CLOSING --VSP closed--> OFFERED
 *                (or PENDING after an unload, or RESCINDED after a rescind)
 *                RESCINDED --RELID_RELEASED--> removed
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/guid.h"
#include "common/log.h"
#include "xpartition/fuzz_hook.h"
#include "xpartition/internal.h"
#include "xpartition/versions.h"

#define STATUS_UNSUCCESSFUL 0xC0000001u

static const char *const state_names[] = {"pending", "offered", "opening",
                                          "open",    "closing", "rescinded"};

const char *xp_chan_state_name(int state)
{
    return state >= 0 && state <= XP_CHAN_RESCINDED ? state_names[state] : "?";
}

struct xp_channel *xp_channel_by_relid(struct xpartition *xp, uint32_t relid)
{
    return relid >= 1 && relid <= VMBUS_MAX_RELID ? xp->relids[relid] : NULL;
}

static bool per_channel_events(const struct xpartition *xp)
{
    return xp->vinfo && xp->vinfo->per_channel_events;
}

/* ------------------------------------------------------------------ */
/* Offers                                                              */

static struct xp_channel *channel_new(struct xpartition *xp, const struct vmbus_channel_offer *o,
                                      void *vsp)
{
    struct xp_channel *ch = calloc(1, sizeof(*ch));
    if (!ch)
        return NULL;
    ch->xp = xp;
    ch->offer = *o;
    ch->vsp = vsp;
    atomic_init(&ch->state, XP_CHAN_PENDING);
    pthread_mutex_init(&ch->send_lock, NULL);
    pthread_mutex_init(&ch->recv_lock, NULL);
    return ch;
}

struct xp_channel *xp_offer_channel(struct xpartition *xp, const struct vmbus_channel_offer *o,
                                    void *vsp, struct xp_channel **out)
{
    struct xp_channel *ch = channel_new(xp, o, vsp);
    if (!ch)
        return NULL;
    pthread_mutex_lock(&xp->lock);
    if (!xp->chan_ops) {
        pthread_mutex_unlock(&xp->lock);
        log_err("partition %s: offer made before xp_set_channel_ops; refused", xp->name);
        xp_channel_free(ch);
        return NULL;
    }
    if (out)
        *out = ch;
    STAILQ_INSERT_TAIL(&xp->offers, ch, link);
    char cls[GUID_STR_LEN], inst[GUID_STR_LEN];
    guid_format(&o->if_type, cls);
    guid_format(&o->if_instance, inst);
    xp_event(xp, "offer added: class=%s instance=%s subchannel=%u", cls, inst,
             o->sub_channel_index);
    xp_post_pending_offers(xp);
    pthread_mutex_unlock(&xp->lock);
    return ch;
}

static uint32_t alloc_relid(struct xpartition *xp)
{
    for (uint32_t r = 1; r <= VMBUS_MAX_RELID; r++)
        if (!xp->relids[r])
            return r;
    return 0;
}

/* Send what waits on the LOCAL_OFFER list, once the guest asked for offers.
 * An offer that finds the message queue full, no free relid or no event
 * connection stays pending; it is retried on the next flush
 * (xp_flush_locked) or when a relid is released. */
void xp_post_pending_offers(struct xpartition *xp)
{
    if (!xp->connected || !xp->offers_requested)
        return;
    for (struct xp_channel *ch = STAILQ_FIRST(&xp->offers); ch; ch = STAILQ_NEXT(ch, link)) {
        if (atomic_load(&ch->state) != XP_CHAN_PENDING || ch->removed)
            continue;
        if (xp_msgq_free(xp) < 2)
            return; /* keep one slot for replies */
        uint32_t relid = alloc_relid(xp);
        if (!relid) {
            xp_guest_warn(xp, "no free relid for another offer");
            return;
        }
        uint32_t conn = per_channel_events(xp) ? XP_CHANNEL_CONN_ID_BASE + relid
                                               : VMBUS_EVENT_CONNECTION_ID;
        if (per_channel_events(xp) && xp->transport->eventfd_add(xp->transport_ctx, conn) < 0) {
            log_err("partition %s: cannot set up the event connection for relid %u", xp->name,
                    relid);
            return;
        }
        ch->relid = relid;
        ch->conn_id = conn;
        xp->relids[relid] = ch;
        struct vmbus_channel_offer_channel m = {
            .header.msgtype = CHANNELMSG_OFFERCHANNEL,
            .offer = ch->offer,
            .child_relid = relid,
            .monitorid = 0xff,
            .monitor_allocated = 0,
            .is_dedicated_interrupt = per_channel_events(xp) ? 1 : 0,
            .connection_id = conn,
        };
        xp_queue_msg(xp, &m, sizeof(m));
        atomic_store(&ch->state, XP_CHAN_OFFERED);
        char cls[GUID_STR_LEN];
        guid_format(&ch->offer.if_type, cls);
        xp_event(xp, "relid %u offered (class %s, connection id %#x)", relid,
                 cls, conn);
    }
    if (!xp->alloffers_sent && xp->offers_ready && xp_msgq_free(xp) >= 1) {
        struct vmbus_channel_message_header h = {.msgtype = CHANNELMSG_ALLOFFERS_DELIVERED};
        xp_queue_msg(xp, &h, sizeof(h));
        xp->alloffers_sent = true;
    }
}

static void release_relid(struct xpartition *xp, struct xp_channel *ch)
{
    if (!ch->relid)
        return;
    /* The relid's GPADLs are forgotten below.  A close may still be in
     * flight (Linux sends CLOSECHANNEL and RELID_RELEASED back to back after
     * a rescind): it must not put the ring GPADL after it was freed. */
    if (ch->ring_gpadl) {
        ch->ring_gpadl->users--;
        ch->ring_gpadl = NULL;
    }
    if (per_channel_events(xp) || ch->conn_id != VMBUS_EVENT_CONNECTION_ID)
        xp->transport->eventfd_del(xp->transport_ctx, ch->conn_id);
    xp_gpadl_forget(xp, ch->relid);
    xp->relids[ch->relid] = NULL;
    ch->relid = 0;
    ch->conn_id = 0;
}

static void send_rescind(struct xpartition *xp, struct xp_channel *ch)
{
    struct vmbus_channel_rescind_offer m = {.header.msgtype = CHANNELMSG_RESCIND_CHANNELOFFER,
                                            .child_relid = ch->relid};
    if (xp_queue_msg(xp, &m, sizeof(m)) < 0)
        xp_guest_warn(xp, "relid %u: RESCIND dropped: message queue full", ch->relid);
}

/* ------------------------------------------------------------------ */
/* Open                                                                */

static void send_open_result(struct xpartition *xp, uint32_t relid, uint32_t openid,
                             uint32_t status)
{
    struct vmbus_channel_open_result r = {.header.msgtype = CHANNELMSG_OPENCHANNEL_RESULT,
                                          .child_relid = relid,
                                          .openid = openid,
                                          .status = status};
    if (xp_queue_msg(xp, &r, sizeof(r)) < 0)
        xp_guest_warn(xp, "relid %u: OPENCHANNEL_RESULT dropped: message queue full", relid);
}

static int map_ring(struct xpartition *xp, const struct xp_gpadl *g, uint32_t first, uint32_t n,
                    struct ring_mapping *m)
{
    struct ring_page_src *src = calloc(n, sizeof(*src));
    if (!src)
        return -ENOMEM;
    int ret = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (xp_gpa_to_fd(xp, g->pfns[first + i] << HV_PAGE_SHIFT, &src[i].fd, &src[i].offset) <
            0) {
            ret = -EFAULT;
            goto out;
        }
    }
    ret = ring_map(m, src, n);
out:
    free(src);
    return ret;
}

static void unmap_rings(struct xpartition *xp, struct xp_channel *ch)
{
    /* No sender or reader may be inside the rings while they go away. */
    pthread_mutex_lock(&ch->send_lock);
    pthread_mutex_lock(&ch->recv_lock);
    if (ch->in_map.base)
        ring_unmap(&ch->in_map);
    if (ch->out_map.base)
        ring_unmap(&ch->out_map);
    memset(&ch->in_map, 0, sizeof(ch->in_map));
    memset(&ch->out_map, 0, sizeof(ch->out_map));
    memset(&ch->in, 0, sizeof(ch->in));
    memset(&ch->out, 0, sizeof(ch->out));
    free(ch->pktbuf);
    ch->pktbuf = NULL;
    ch->pktbuf_len = 0;
    atomic_store(&ch->send_blocked, 0);
    ch->send_reserved = 0;
    ch->recv_quiet = false;
    pthread_mutex_unlock(&ch->recv_lock);
    pthread_mutex_unlock(&ch->send_lock);
    if (ch->ring_gpadl) {
        struct xp_gpadl *g = ch->ring_gpadl;
        ch->ring_gpadl = NULL;
        xp_gpadl_put(xp, g);
    }
}

void xp_handle_open(struct xpartition *xp, const struct vmbus_channel_open_channel *m)
{
    struct xp_channel *ch = xp_channel_by_relid(xp, m->child_relid);
    const char *why = NULL;
    struct xp_gpadl *g = NULL;
    uint32_t d = m->downstream_ringbuffer_pageoffset;

    if (!ch)
        why = "names a relid that was never offered";
    else if (atomic_load(&ch->state) != XP_CHAN_OFFERED)
        why = "targets a channel that is not closed";
    else if (!(g = xp_gpadl_find(xp, m->ringbuffer_gpadlhandle)) || !g->complete ||
             g->teardown_requested)
        why = "names a ring GPADL that does not exist";
    else if (g->relid != m->child_relid)
        /* it would be freed under the open ring when its own channel's
         * relid is released (xp_gpadl_forget) */
        why = "names a ring GPADL created for another channel";
    else if (g->users > 0)
        why = "names a ring GPADL that is already in use";
    else if (g->byte_offset != 0 || (g->byte_count & (HV_PAGE_SIZE - 1)))
        why = "names a ring GPADL that is not page-aligned";
    else if (d < 2 || d > g->npages || g->npages - d < 2)
        why = "has a downstream ring offset outside the GPADL";
    else if (m->target_vp >= xp->nvcpus)
        why = "targets a vCPU that does not exist";
    if (why) {
        xp_guest_warn(xp, "relid %u: OPENCHANNEL (gpadl 0x%x, downstream %u, vp %u) %s",
                      m->child_relid, m->ringbuffer_gpadlhandle, d, m->target_vp, why);
        send_open_result(xp, m->child_relid, m->openid, STATUS_UNSUCCESSFUL);
        return;
    }

    /* pages [0, d) carry guest -> host, [d, n) host -> guest */
    const char *fail = NULL;
    if (map_ring(xp, g, 0, d, &ch->in_map) < 0 ||
        map_ring(xp, g, d, g->npages - d, &ch->out_map) < 0) {
        fail = "cannot map the ring buffers";
    } else {
        /* The private copy of one inbound packet.  No packet is longer than
         * len8 (16 bits) * 8 bytes whatever the ring size, so a guest with a
         * 32 MiB ring does not make us allocate 32 MiB per channel. */
        ch->pktbuf_len = ch->in_map.data_size < RING_MAX_PKT_LEN ? ch->in_map.data_size
                                                                   : RING_MAX_PKT_LEN;
        ch->pktbuf = malloc(ch->pktbuf_len);
        if (!ch->pktbuf)
            fail = "out of memory for the packet buffer";
    }
    if (fail) {
        log_err("partition %s: relid %u: %s; the open fails", xp->name, ch->relid, fail);
        if (ch->in_map.base)
            ring_unmap(&ch->in_map);
        if (ch->out_map.base)
            ring_unmap(&ch->out_map);
        memset(&ch->in_map, 0, sizeof(ch->in_map));
        memset(&ch->out_map, 0, sizeof(ch->out_map));
        ch->pktbuf_len = 0;
        send_open_result(xp, m->child_relid, m->openid, STATUS_UNSUCCESSFUL);
        return;
    }
    ring_reader_init(&ch->in, ch->in_map.base, (uint8_t *)ch->in_map.base + HV_PAGE_SIZE,
                     ch->in_map.data_size);
    ring_writer_init(&ch->out, ch->out_map.base, (uint8_t *)ch->out_map.base + HV_PAGE_SIZE,
                     ch->out_map.data_size);
    XP_FUZZ(xp_fuzz_rings_attach(ch);)
    g->users++;
    ch->ring_gpadl = g;
    ch->openid = m->openid;
    atomic_store(&ch->target_vp, m->target_vp);
    atomic_store(&ch->state, XP_CHAN_OPENING);
    xp_event(xp, "relid %u opening (rings %u/%u KiB, vp %u)", ch->relid,
             (d * HV_PAGE_SIZE) / 1024, ((g->npages - d) * HV_PAGE_SIZE) / 1024, m->target_vp);
    xp->chan_ops->channel_open(xp->chan_ctx, ch, m->userdata, sizeof(m->userdata));
}

void xp_channel_open_done(struct xp_channel *ch, uint32_t status)
{
    struct xpartition *xp = ch->xp;
    pthread_mutex_lock(&xp->lock);
    if (atomic_load(&ch->state) != XP_CHAN_OPENING) {
        pthread_mutex_unlock(&xp->lock); /* closed or unloaded meanwhile */
        return;
    }
    if (status == 0) {
        atomic_store(&ch->state, XP_CHAN_OPEN);
        send_open_result(xp, ch->relid, ch->openid, 0);
        xp_event(xp, "relid %u open", ch->relid);
        /* The guest may have written before we were ready. */
        xp->chan_ops->channel_kick(xp->chan_ctx, ch);
    } else {
        log_warn("partition %s: relid %u: the VSP refused the open (status %#x)", xp->name,
                 ch->relid, status);
        unmap_rings(xp, ch);
        atomic_store(&ch->state, XP_CHAN_OFFERED);
        send_open_result(xp, ch->relid, ch->openid, status);
    }
    pthread_mutex_unlock(&xp->lock);
}

/* ------------------------------------------------------------------ */
/* Close, rescind, release                                              */

static void subchannels_teardown(struct xp_channel *primary);

void xp_channel_shutdown(struct xp_channel *ch)
{
    int st = atomic_load(&ch->state);
    if (st != XP_CHAN_OPEN && st != XP_CHAN_OPENING)
        return;
    atomic_store(&ch->state, XP_CHAN_CLOSING);
    if (!ch->primary) {
        subchannels_teardown(ch);
        if (ch->subs_closing) {
            ch->close_deferred = true; /* handed on by the last subchannel close */
            return;
        }
    }
    ch->xp->chan_ops->channel_close(ch->xp->chan_ctx, ch);
}

/* A subchannel's close returned: the primary's close may go on now. */
static void subchannel_closed(struct xp_channel *sub)
{
    struct xp_channel *primary = sub->primary;
    if (!sub->holds_primary)
        return;
    sub->holds_primary = false;
    if (--primary->subs_closing == 0 && primary->close_deferred) {
        primary->close_deferred = false;
        primary->xp->chan_ops->channel_close(primary->xp->chan_ctx, primary);
    }
}

void xp_channel_close_done(struct xp_channel *ch)
{
    struct xpartition *xp = ch->xp;
    pthread_mutex_lock(&xp->lock);
    if (atomic_load(&ch->state) == XP_CHAN_CLOSING) {
        uint32_t relid = ch->relid;
        unmap_rings(xp, ch);
        if (ch->rescind_requested)
            atomic_store(&ch->state, XP_CHAN_RESCINDED);
        else if (ch->relid)
            atomic_store(&ch->state, XP_CHAN_OFFERED);
        else
            atomic_store(&ch->state, XP_CHAN_PENDING); /* unloaded: offer again later */
        if (relid)
            xp_event(xp, "relid %u closed (now %s)", relid,
                     xp_chan_state_name(atomic_load(&ch->state)));
        else
            xp_event(xp, "channel closed after the guest disconnected");
        if (ch->primary)
            subchannel_closed(ch);
        xp_post_pending_offers(xp);
        xp_reap_subchannels(xp);
    }
    pthread_mutex_unlock(&xp->lock);
}

void xp_handle_close(struct xpartition *xp, uint32_t relid)
{
    struct xp_channel *ch = xp_channel_by_relid(xp, relid);
    if (!ch) {
        xp_guest_warn(xp, "CLOSECHANNEL for relid %u, which was never offered", relid);
        return;
    }
    int st = atomic_load(&ch->state);
    if (st == XP_CHAN_RESCINDED || (st == XP_CHAN_CLOSING && ch->rescind_requested))
        return; /* the guest closing a channel we rescinded: expected */
    if (st != XP_CHAN_OPEN && st != XP_CHAN_OPENING) {
        xp_guest_warn(xp, "CLOSECHANNEL for relid %u, which is %s", relid,
                      xp_chan_state_name(st));
        return;
    }
    xp_event(xp, "relid %u closed by the guest", relid);
    xp_channel_shutdown(ch);
    xp_reap_subchannels(xp);
}

static void rescind_locked(struct xpartition *xp, struct xp_channel *ch)
{
    int st = atomic_load(&ch->state);
    if (ch->rescind_requested || ch->removed)
        return;
    if (st == XP_CHAN_PENDING || !ch->relid) {
        /* The guest does not know the channel: it was never offered, or its
         * relid went with an UNLOAD or reset while the VSP was still closing
         * it.  There is nobody to send a rescind to; it is just never
         * offered (again). */
        ch->removed = true;
        return;
    }
    ch->rescind_requested = true;
    if (st == XP_CHAN_OFFERED) {
        send_rescind(xp, ch);
        atomic_store(&ch->state, XP_CHAN_RESCINDED);
    } else {
        /* A primary's subchannels are rescinded inside the shutdown: their
         * rescinds go out before the primary's. */
        xp_channel_shutdown(ch);
        send_rescind(xp, ch);
    }
}

void xp_offers_ready(struct xpartition *xp)
{
    pthread_mutex_lock(&xp->lock);
    xp->offers_ready = true;
    xp_post_pending_offers(xp);
    pthread_mutex_unlock(&xp->lock);
}

void xp_rescind_channel(struct xp_channel *ch)
{
    struct xpartition *xp = ch->xp;
    pthread_mutex_lock(&xp->lock);
    if (ch->relid) {
        xp_event(xp, "relid %u rescinded by its VSP", ch->relid);
    } else {
        char cls[GUID_STR_LEN];
        guid_format(&ch->offer.if_type, cls);
        xp_event(xp, "channel (class %s) withdrawn by its VSP while the guest has no relid for it",
                 cls);
    }
    rescind_locked(xp, ch);
    xp_reap_subchannels(xp);
    pthread_mutex_unlock(&xp->lock);
}

void xp_channel_fault(struct xp_channel *ch, const char *why)
{
    struct xpartition *xp = ch->xp;
    pthread_mutex_lock(&xp->lock);
    if (!ch->rescind_requested) {
        char cls[GUID_STR_LEN];
        guid_format(&ch->offer.if_type, cls);
        xp->stats.violations++;
        log_warn("partition %s (id %u): relid %u (class %s): %s; tearing the channel down",
                 xp->name, xp->id, ch->relid, cls, why);
        rescind_locked(xp, ch);
        xp_reap_subchannels(xp);
    }
    pthread_mutex_unlock(&xp->lock);
}

void xp_handle_relid_released(struct xpartition *xp, uint32_t relid)
{
    struct xp_channel *ch = xp_channel_by_relid(xp, relid);
    if (!ch || !ch->rescind_requested) {
        xp_guest_warn(xp, "RELID_RELEASED for relid %u, which was not rescinded", relid);
        return;
    }
    if (atomic_load(&ch->state) == XP_CHAN_CLOSING) {
        /* The VSP's close is still running; the relid is freed after it. */
        xp_guest_warn(xp, "RELID_RELEASED for relid %u before its close finished", relid);
    }
    xp_event(xp, "relid %u released by the guest", relid);
    release_relid(xp, ch);
    ch->removed = true;
    xp_post_pending_offers(xp); /* one may have waited for a free relid */
    xp_reap_subchannels(xp);
}

void xp_handle_modify(struct xpartition *xp, const struct vmbus_channel_modifychannel *m)
{
    struct xp_channel *ch = xp_channel_by_relid(xp, m->child_relid);
    uint32_t status = 0;
    if (!ch || atomic_load(&ch->state) != XP_CHAN_OPEN) {
        xp_guest_warn(xp, "MODIFYCHANNEL for relid %u, which is not open", m->child_relid);
        status = STATUS_UNSUCCESSFUL;
    } else if (m->target_vp >= xp->nvcpus) {
        xp_guest_warn(xp, "relid %u: MODIFYCHANNEL to vp %u of %u", m->child_relid, m->target_vp,
                      xp->nvcpus);
        status = STATUS_UNSUCCESSFUL;
    } else {
        atomic_store(&ch->target_vp, m->target_vp);
        xp_event(xp, "relid %u now signals vp %u", ch->relid, m->target_vp);
    }
    if (xp->vinfo->modify_response) { /* MODIFYCHANNEL needs a connection */
        struct vmbus_channel_modifychannel_response r = {
            .header.msgtype = CHANNELMSG_MODIFYCHANNEL_RESPONSE,
            .child_relid = m->child_relid,
            .status = status};
        xp_queue_msg(xp, &r, sizeof(r));
    }
}

/* ------------------------------------------------------------------ */
/* Subchannels                                                          */

/*
 * A VSP offers subchannels of an open primary when its guest asks for them
 * (storvsc's CREATE_SUB_CHANNELS, netvsc's SUBCHANNEL request): the
 * primary's offer with sub_channel_index = index, and a relid and
 * connection id of their own like any offer.  Linux 6.1 takes such an offer
 * at any time after ALLOFFERS_DELIVERED: it finds the primary by class and
 * instance, puts the new channel on the primary's sc_list
 * (drivers/hv/channel_mgmt.c: vmbus_process_offer) and calls the driver's
 * sc_creation_callback, which opens it (vmbus_add_channel_work).
 *
 * A subchannel lives no longer than its primary is open.  When the primary
 * closes (the guest's CLOSECHANNEL, a rescind, a ring fault, UNLOAD, reset,
 * the VM going) every subchannel is closed first (the VSP's close, if it
 * was open) and rescinded, and the primary's close is handed to the VSP
 * layer only once those closes have returned.  Why the rescind: on rmmod
 * Linux closes the subchannels itself before the primary
 * (drivers/hv/channel.c: vmbus_disconnect_ring, from storvsc_remove ->
 * storvsc_dev_remove -> vmbus_close) but keeps them on sc_list, closed,
 * until the host rescinds them; a rescinded subchannel is then freed and
 * its relid released with RELID_RELEASED at once if it is closed, or after
 * the driver's close if it is open (channel_mgmt.c: vmbus_onoffer_rescind
 * -> hv_process_channel_removal -> vmbus_release_relid; channel.c:
 * vmbus_disconnect_ring).  Without the rescind, the next modprobe's
 * CREATE_SUB_CHANNELS would add new subchannels next to stale ones the
 * guest never frees, and their relids would never come back.
 *
 * A subchannel is freed ("reaped") once its primary's close has been
 * handed on, its own close has returned and the guest has released its
 * relid (or forgotten it with UNLOAD or a reset): the VSP layer gets it
 * back through channel_released and frees it when no work of it runs.
 */

#define XP_MAX_SUBCHANNEL_OBJECTS (2 * XP_MAX_SUBCHANNELS)

static bool is_sub_of(const struct xp_channel *ch, const struct xp_channel *primary)
{
    return ch->primary == primary && !ch->orphaned;
}

/* The live subchannel `index` of primary (not rescinded), or NULL. */
static struct xp_channel *subchannel_find(struct xp_channel *primary, uint16_t index)
{
    struct xp_channel *ch;
    STAILQ_FOREACH(ch, &primary->xp->offers, link)
        if (is_sub_of(ch, primary) && ch->offer.sub_channel_index == index &&
            !ch->rescind_requested && !ch->removed)
            return ch;
    return NULL;
}

/* Subchannel objects of primary, live or rescinded: a rescinded one stays
 * until the primary closes (the VSP may still hold its handle). */
static unsigned subchannels_kept(const struct xp_channel *primary)
{
    unsigned n = 0;
    const struct xp_channel *ch;
    STAILQ_FOREACH(ch, &primary->xp->offers, link)
        n += is_sub_of(ch, primary);
    return n;
}

/* Channels that hold a relid or will want one: the partition's limit. */
static unsigned channels_counted(const struct xpartition *xp)
{
    unsigned n = 0;
    const struct xp_channel *ch;
    STAILQ_FOREACH(ch, &xp->offers, link)
        n += !(ch->removed && !ch->relid);
    return n;
}

struct xp_channel *xp_offer_subchannel(struct xp_channel *primary, uint16_t index, void *vsp,
                                       struct xp_channel **out)
{
    struct xpartition *xp = primary->xp;
    pthread_mutex_lock(&xp->lock);
    const char *why = NULL;
    if (primary->primary || primary->offer.sub_channel_index)
        why = "the channel is a subchannel itself";
    else if (atomic_load(&primary->state) != XP_CHAN_OPEN)
        why = "the primary is not open";
    else if (index < 1 || index > XP_MAX_SUBCHANNELS)
        why = "the index is outside 1..64";
    else if (!per_channel_events(xp))
        why = "the negotiated VMBus version has no subchannels";
    else if (subchannel_find(primary, index))
        why = "the index is offered already";
    else if (subchannels_kept(primary) >= XP_MAX_SUBCHANNEL_OBJECTS)
        /* a guest that gets subchannels rescinded (ring faults) and asks
         * for new ones again and again must not grow the list */
        why = "too many subchannels rescinded while the primary is open";
    else if (channels_counted(xp) >= VMBUS_MAX_RELID)
        why = "the partition has no relid left";
    struct xp_channel *ch = NULL;
    if (!why) {
        struct vmbus_channel_offer o = primary->offer;
        o.sub_channel_index = index;
        ch = channel_new(xp, &o, vsp);
        if (!ch)
            why = "out of memory";
    }
    if (why) {
        xp_warn(xp, "relid %u: subchannel %u refused: %s", atomic_load(&primary->relid), index,
                why);
        pthread_mutex_unlock(&xp->lock);
        return NULL;
    }
    ch->primary = primary;
    if (out)
        *out = ch;
    STAILQ_INSERT_TAIL(&xp->offers, ch, link); /* after its primary, as Linux needs */
    xp_event(xp, "relid %u: subchannel %u added", atomic_load(&primary->relid), index);
    xp_post_pending_offers(xp);
    pthread_mutex_unlock(&xp->lock);
    return ch;
}

/* The primary is closing: close and rescind its subchannels (see above).
 * Closes still running are counted in primary->subs_closing. */
static void subchannels_teardown(struct xp_channel *primary)
{
    struct xpartition *xp = primary->xp;
    struct xp_channel *ch;
    xp->offers_walkers++;
    STAILQ_FOREACH(ch, &xp->offers, link) {
        if (!is_sub_of(ch, primary))
            continue;
        ch->orphaned = true;
        xp_channel_shutdown(ch);
        if (atomic_load(&ch->state) == XP_CHAN_CLOSING && !ch->holds_primary) {
            ch->holds_primary = true;
            primary->subs_closing++;
        }
        if (xp->connected)
            rescind_locked(xp, ch);
        else
            ch->removed = true; /* UNLOAD / reset: the guest forgets it anyway */
    }
    xp->offers_walkers--;
}

static bool reapable(const struct xp_channel *ch)
{
    int st = atomic_load(&ch->state);
    return ch->primary && ch->orphaned && ch->removed && !ch->relid && st != XP_CHAN_OPENING &&
           st != XP_CHAN_OPEN && st != XP_CHAN_CLOSING && !ch->primary->close_deferred;
}

void xp_reap_subchannels(struct xpartition *xp)
{
    if (xp->destroying || xp->offers_walkers)
        return; /* xp_destroy frees the list; a walk of it reaps when done */
    struct xp_channel *ch = STAILQ_FIRST(&xp->offers);
    while (ch) {
        struct xp_channel *next = STAILQ_NEXT(ch, link);
        if (reapable(ch)) {
            STAILQ_REMOVE(&xp->offers, ch, xp_channel, link);
            xp_event(xp, "subchannel %u of relid %u freed", ch->offer.sub_channel_index,
                     atomic_load(&ch->primary->relid));
            if (xp->chan_ops && xp->chan_ops->channel_released)
                xp->chan_ops->channel_released(xp->chan_ctx, ch);
            else
                xp_channel_free(ch);
        }
        ch = next;
    }
}

void xp_channel_destroy(struct xp_channel *ch) { xp_channel_free(ch); }

/* ------------------------------------------------------------------ */
/* Disconnect (UNLOAD, reset, reconnect, destroy)                      */

void xp_disconnect_locked(struct xpartition *xp, bool final)
{
    /* First: nothing the closes below do may reach the guest (no rescinds
     * of subchannels, no offers): it is told nothing but UNLOAD_RESPONSE. */
    xp->connected = false;
    xp->offers_walkers++;
    for (struct xp_channel *ch = STAILQ_FIRST(&xp->offers); ch; ch = STAILQ_NEXT(ch, link)) {
        xp_channel_shutdown(ch);
        /* The GPADLs are forgotten below; a close still in flight must not
         * touch its ring GPADL afterwards. */
        if (ch->ring_gpadl) {
            ch->ring_gpadl->users--;
            ch->ring_gpadl = NULL;
        }
        if (ch->relid)
            release_relid(xp, ch);
        if (ch->rescind_requested)
            ch->removed = true;
        int st = atomic_load(&ch->state);
        if (st == XP_CHAN_OFFERED || st == XP_CHAN_RESCINDED)
            atomic_store(&ch->state, XP_CHAN_PENDING);
        if (final && st == XP_CHAN_CLOSING)
            log_debug("partition %s: channel close still running at teardown", xp->name);
    }
    xp->offers_walkers--;
    xp_gpadl_forget(xp, 0);
    if (xp->legacy_eventfd) {
        xp->transport->eventfd_del(xp->transport_ctx, VMBUS_EVENT_CONNECTION_ID);
        xp->legacy_eventfd = false;
    }
    xp_drop_queued_msgs(xp);
    xp_reap_subchannels(xp);
    xp->offers_requested = false;
    xp->alloffers_sent = false;
    xp->version = 0;
    xp->vinfo = NULL;
    xp->interrupt_page = 0;
    atomic_store(&xp->interrupt_page_hva, NULL);
}

void xp_close_all(struct xpartition *xp)
{
    pthread_mutex_lock(&xp->lock);
    xp_disconnect_locked(xp, true);
    pthread_mutex_unlock(&xp->lock);
}

void xp_reset(struct xpartition *xp)
{
    pthread_mutex_lock(&xp->lock);
    xp_event(xp, "guest reset; VMBus state cleared");
    xp_disconnect_locked(xp, false);
    for (uint32_t i = 0; i < xp->nvcpus; i++) {
        struct xp_vcpu *v = &xp->vcpus[i];
        v->scontrol = v->simp = v->siefp = 0;
        atomic_store(&v->msg_slot, NULL);
        atomic_store(&v->event_flags, NULL);
    }
    /* Fence: a VSP sender or reader inside a ring (or about to set an event
     * bit) finishes now; every later one sees the channel closing.  After
     * this the old guest's memory is not written again. */
    for (struct xp_channel *ch = STAILQ_FIRST(&xp->offers); ch; ch = STAILQ_NEXT(ch, link)) {
        pthread_mutex_lock(&ch->send_lock);
        pthread_mutex_unlock(&ch->send_lock);
        pthread_mutex_lock(&ch->recv_lock);
        pthread_mutex_unlock(&ch->recv_lock);
    }
    pthread_mutex_unlock(&xp->lock);
}

void xp_channel_free(struct xp_channel *ch)
{
    if (ch->in_map.base)
        ring_unmap(&ch->in_map);
    if (ch->out_map.base)
        ring_unmap(&ch->out_map);
    free(ch->pktbuf);
    pthread_mutex_destroy(&ch->send_lock);
    pthread_mutex_destroy(&ch->recv_lock);
    free(ch);
}

/* ------------------------------------------------------------------ */
/* Event endpoint                                                      */

static void kick_relid(struct xpartition *xp, uint32_t relid)
{
    struct xp_channel *ch = xp_channel_by_relid(xp, relid);
    if (ch && atomic_load(&ch->state) == XP_CHAN_OPEN)
        xp->chan_ops->channel_kick(xp->chan_ctx, ch);
}

void xp_connection_signalled(struct xpartition *xp, uint32_t conn_id)
{
    pthread_mutex_lock(&xp->lock);
    if (conn_id == VMBUS_EVENT_CONNECTION_ID && xp->legacy_eventfd) {
        /* Pre-WIN8: the guest set bit relid in the second half of the
         * interrupt page before signalling. */
        uint8_t *page = atomic_load(&xp->interrupt_page_hva);
        if (page) {
            uint64_t *bits = (uint64_t *)(page + HV_PAGE_SIZE / 2);
            for (unsigned w = 0; w < HV_EVENT_FLAGS_COUNT / 64; w++) {
                uint64_t v = __atomic_exchange_n(&bits[w], 0, __ATOMIC_ACQ_REL);
                while (v) {
                    unsigned b = (unsigned)__builtin_ctzll(v);
                    v &= v - 1;
                    kick_relid(xp, w * 64 + b);
                }
            }
        }
    } else if (conn_id > XP_CHANNEL_CONN_ID_BASE &&
               conn_id <= XP_CHANNEL_CONN_ID_BASE + VMBUS_MAX_RELID) {
        kick_relid(xp, conn_id - XP_CHANNEL_CONN_ID_BASE);
    }
    pthread_mutex_unlock(&xp->lock);
}

void xp_channel_notify_guest(struct xp_channel *ch)
{
    struct xpartition *xp = ch->xp;
    uint32_t vp = atomic_load(&ch->target_vp);
    uint32_t relid = ch->relid;
    if (vp >= xp->nvcpus || relid == 0 || relid > VMBUS_MAX_RELID)
        return;
    uint8_t *flags = atomic_load(&xp->vcpus[vp].event_flags);
    if (!flags)
        return;
    uint8_t *ipage = atomic_load(&xp->interrupt_page_hva);
    if (ipage) {
        /* Pre-WIN8: bit relid in the first half of the interrupt page, and
         * event flag 0 says "look at the interrupt page". */
        __atomic_fetch_or(&ipage[relid / 8], (uint8_t)(1u << (relid % 8)), __ATOMIC_SEQ_CST);
        __atomic_fetch_or(&flags[0], 1, __ATOMIC_SEQ_CST);
    } else {
        __atomic_fetch_or(&flags[relid / 8], (uint8_t)(1u << (relid % 8)), __ATOMIC_SEQ_CST);
    }
    unsigned n = 1;
    XP_FUZZ(n = xp_fuzz_signals(xp, ch);)
    for (; n; n--)
        xp->transport->signal_vp(xp->transport_ctx, vp);
}
