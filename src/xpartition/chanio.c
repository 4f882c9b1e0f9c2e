/* SPDX-License-Identifier: MIT */
/*
 * Packet I/O on an open channel: the one place that drives a channel's two
 * rings (ring.c) for the VSP layer.
 *
 * Receiving (guest->host ring, recv_lock): packets are copied into the
 * channel's private packet buffer one at a time.  The read index is
 * published when the ring looks empty (then the ring is re-armed and
 * checked once more), in the middle of a batch once a quarter of the ring
 * was consumed or the guest waits for less space than is now free
 * (ring_reader_commit_due), and at the end of every receive callback
 * (xp_channel_recv_done).  Whenever a commit moves the free space across
 * the guest's pending_send_sz the guest is signalled.  A quiet channel
 * (xp_channel_recv_quiet) keeps the ring masked when it looks empty: its
 * VSP comes back without being signalled.
 *
 * Sending (host->guest ring, send_lock): one packet per call; a full ring
 * leaves pending_send_sz set in the ring and remembers the size, so the
 * next kick can tell the VSP it may send again (xp_channel_writable).
 *
 * A batch (xp_channel_send_batch_begin/end) defers publishing this
 * thread's sends on one channel: the packets go into the ring (room and
 * reservations as usual), the write index and the interrupt wait for the
 * batch's end, where the usual rule (mask clear, guest had read all that
 * was published) decides the one interrupt, and a sender blocked for room
 * is looked at again.  Any other send publishes what the ring holds, the
 * deferred packets with it.
 *
 * Reservations (send_reserved, under send_lock): room a VSP set aside for
 * completions it owes, counted in ring bytes exactly as ring_write takes
 * them (descriptor + payload padded to 8 + trailer).  Ordinary sends and
 * new reservations see the free space minus what is reserved; a send into
 * a reservation may use all of it, so it cannot find the ring full unless
 * the guest moved its read index back (then the channel is torn down).
 * Invariant: free space > send_reserved while the channel is open.  The
 * count starts at 0 with every open (unmap_rings clears it).
 *
 * A ring the guest corrupted tears the channel down (xp_channel_fault);
 * the caller gets -EIO.  The guest is signalled inside the ring's lock: a
 * guest reset fences on these locks (xp_reset) before the old guest's
 * memory is let go.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>

#include "common/guid.h"
#include "xpartition/fuzz_hook.h"
#include "xpartition/internal.h"

#define SEND_MAX_IOV 16

/* Where a send puts its packet into the ring (send_lock held); in
 * vmbusd-guestfuzz the packet's mutation decided by xp_fuzz_pkt_begin is
 * carried out there. */
#ifdef VMBUSD_GUESTFUZZ
#define PKT_WRITE(ch, fp, v, n, keep, signal) xp_fuzz_pkt_write(ch, fp, v, n, keep, signal)
#else
#define PKT_WRITE(ch, fp, v, n, keep, signal) pkt_write(ch, v, n, keep, signal)
#endif

/* The channel whose sends this thread batches (xp_channel_send_batch_*). */
static __thread struct xp_channel *batch_ch;
static __thread unsigned batch_depth;

static bool rings_up(const struct xp_channel *ch, const struct ring *r)
{
    return atomic_load(&ch->state) == XP_CHAN_OPEN && r->hdr;
}

#ifndef VMBUSD_GUESTFUZZ
/* One packet into the ring: published now, or at the batch's end. */
static int pkt_write(struct xp_channel *ch, const struct iovec *v, int n, uint32_t keep,
                     bool *signal)
{
    if (batch_ch != ch)
        return ring_write_keep(&ch->out, v, n, keep, signal);
    *signal = false;
    return ring_write_keep_deferred(&ch->out, v, n, keep);
}
#endif

void xp_channel_send_batch_begin(struct xp_channel *ch)
{
    if (!batch_ch)
        batch_ch = ch;
    if (batch_ch == ch)
        batch_depth++;
    /* a begin on another channel meanwhile: no effect, nor its end */
}

static bool room_for_blocked_locked(struct xp_channel *ch);
static void kick_writable(struct xp_channel *ch);

void xp_channel_send_batch_end(struct xp_channel *ch)
{
    if (batch_ch != ch || --batch_depth)
        return;
    batch_ch = NULL;
    bool kick = false;
    pthread_mutex_lock(&ch->send_lock);
    /* Closed meanwhile: the ring is gone, and the packets with it. */
    if (rings_up(ch, &ch->out.r)) {
        if (ring_writer_publish(&ch->out))
            xp_channel_notify_guest(ch);
        /* A pending_send_sz the batch's sends left for a blocked sender
         * was measured against packets the guest could not see: reading
         * the ones before them, it found the ring roomy enough before
         * each read and did not signal, though it freed what was asked
         * for; from now on every read finds more than that.  Look again
         * now that it sees them all. */
        kick = room_for_blocked_locked(ch);
    }
    pthread_mutex_unlock(&ch->send_lock);
    if (kick)
        kick_writable(ch);
}

int xp_channel_recv(struct xp_channel *ch, struct xp_packet *pkt)
{
    pthread_mutex_lock(&ch->recv_lock);
    if (!rings_up(ch, &ch->in.r)) {
        pthread_mutex_unlock(&ch->recv_lock);
        return 0;
    }
    struct ring_pkt rp;
    bool signal = false;
    int ret;
    for (;;) {
        ret = ring_read_next(&ch->in, ch->pktbuf, ch->pktbuf_len, &rp);
        if (ret != RING_EMPTY)
            break;
        /* Empty: publish the read index, then look once more so a packet
         * the guest wrote meanwhile (without signalling, since the ring did
         * not look empty to it) is not left behind. */
        signal |= ring_reader_commit(&ch->in);
        if (ch->recv_quiet || !ring_reader_rearm(&ch->in))
            break;
    }
    /* The packet is in pktbuf already: its ring bytes are free. */
    if (ret == RING_OK && ring_reader_commit_due(&ch->in))
        signal |= ring_reader_commit(&ch->in);
    if (signal)
        xp_channel_notify_guest(ch);
    pthread_mutex_unlock(&ch->recv_lock);
    if (ret == RING_EMPTY)
        return 0;
    XP_FUZZ(if (ret == RING_OK) xp_fuzz_guest_pkt(ch, ch->pktbuf, rp.total_len);)
    if (ret != RING_OK) {
        char why[96];
        snprintf(why, sizeof(why), "guest->host ring: %s", ring_strerror(ret));
        xp_channel_fault(ch, why);
        return -EIO;
    }
    pkt->type = rp.desc.type;
    pkt->flags = rp.desc.flags;
    pkt->trans_id = rp.desc.trans_id;
    pkt->buf = ch->pktbuf;
    pkt->total_len = rp.total_len;
    pkt->payload_off = rp.payload_off;
    return 1;
}

bool xp_channel_recv_quiet(struct xp_channel *ch, bool quiet)
{
    bool waiting = false;
    pthread_mutex_lock(&ch->recv_lock);
    if (rings_up(ch, &ch->in.r) && quiet != ch->recv_quiet) {
        ch->recv_quiet = quiet;
        if (quiet)
            ring_reader_set_mask(&ch->in, true);
        else
            waiting = ring_reader_rearm(&ch->in); /* [C]: unmask, then look */
    }
    pthread_mutex_unlock(&ch->recv_lock);
    return waiting;
}

void xp_channel_recv_done(struct xp_channel *ch)
{
    pthread_mutex_lock(&ch->recv_lock);
    if (rings_up(ch, &ch->in.r) && ring_reader_commit(&ch->in))
        xp_channel_notify_guest(ch);
    pthread_mutex_unlock(&ch->recv_lock);
}

/* Descriptor + iov list for one packet; *body gets the bytes after the
 * descriptor (hdr + payload).  0, -EINVAL or -EMSGSIZE. */
static int build_packet(struct iovec *v, int *nv, struct vmpacket_descriptor *d, uint16_t type,
                        uint16_t flags, uint64_t trans_id, const void *hdr, size_t hdr_len,
                        const struct iovec *iov, int iovcnt, size_t *body)
{
    if (iovcnt < 0 || iovcnt > SEND_MAX_IOV || (hdr_len && !hdr) || (iovcnt && !iov))
        return -EINVAL;
    size_t payload = 0;
    for (int i = 0; i < iovcnt; i++) {
        if (iov[i].iov_len > RING_MAX_PKT_LEN)
            return -EMSGSIZE;
        payload += iov[i].iov_len;
    }
    if (hdr_len > RING_MAX_PKT_LEN)
        return -EMSGSIZE;
    size_t off = sizeof(struct vmpacket_descriptor) + hdr_len;
    if (off & 7)
        return -EINVAL; /* offset8 must be exact */
    size_t total = off + payload;
    if (total > RING_MAX_PKT_LEN)
        return -EMSGSIZE;
    *d = (struct vmpacket_descriptor){
        .type = type,
        .offset8 = (uint16_t)(off / 8),
        .len8 = (uint16_t)((total + 7) / 8),
        .flags = flags,
        .trans_id = trans_id,
    };
    v[0] = (struct iovec){.iov_base = d, .iov_len = sizeof(*d)};
    int n = 1;
    if (hdr_len)
        v[n++] = (struct iovec){.iov_base = (void *)hdr, .iov_len = hdr_len};
    for (int i = 0; i < iovcnt; i++)
        v[n++] = iov[i];
    *nv = n;
    *body = hdr_len + payload;
    return 0;
}

/* Ring bytes a packet with `body` bytes after its descriptor takes. */
static uint32_t body_ring_size(size_t body)
{
    return ring_packet_size((uint32_t)(sizeof(struct vmpacket_descriptor) + body));
}

/* After the free or reserved space changed (a write, a reservation given
 * back): if a sender waits for room, either it is there now (true: the
 * caller kicks the VSP's writable), or pending_send_sz asks the guest for
 * it again.  A write clears pending_send_sz, and a completion written into
 * a reservation must not cancel the request of a reserve that is waiting,
 * or the guest would never signal.  send_lock held. */
static bool room_for_blocked_locked(struct xp_channel *ch)
{
    uint32_t need = atomic_load(&ch->send_blocked);
    if (!need || !rings_up(ch, &ch->out.r))
        return false;
    return ring_writer_room(&ch->out, need, ch->send_reserved) == RING_OK;
}

/* Tell the VSP layer that a blocked sender may go on (its writable runs
 * through the channel's receive kick).  No ring lock held: xp_reset takes
 * them under xp->lock. */
static void kick_writable(struct xp_channel *ch)
{
    struct xpartition *xp = ch->xp;
    pthread_mutex_lock(&xp->lock);
    if (atomic_load(&ch->state) == XP_CHAN_OPEN && xp->chan_ops)
        xp->chan_ops->channel_kick(xp->chan_ctx, ch);
    pthread_mutex_unlock(&xp->lock);
}

/* The end of every send: report a corrupt ring, wake a blocked sender. */
static int send_finish(struct xp_channel *ch, int ret, bool kick)
{
    if (ret == RING_ERR_INDEX) {
        xp_channel_fault(ch, "host->guest ring: indices corrupted by the guest");
        return -EIO;
    }
    if (kick)
        kick_writable(ch);
    return ret;
}

int xp_channel_send(struct xp_channel *ch, uint16_t type, uint16_t flags, uint64_t trans_id,
                    const void *hdr, size_t hdr_len, const struct iovec *iov, int iovcnt)
{
    struct iovec v[SEND_MAX_IOV + 2];
    struct vmpacket_descriptor d;
    int n;
    size_t body;
    int ret = build_packet(v, &n, &d, type, flags, trans_id, hdr, hdr_len, iov, iovcnt, &body);
    if (ret)
        return ret;
    XP_FUZZ(struct xp_fuzz_pkt fp; xp_fuzz_pkt_begin(ch, v, n, &fp);)

    bool signal = false;
    pthread_mutex_lock(&ch->send_lock);
    if (!rings_up(ch, &ch->out.r)) {
        ret = -EPIPE;
    } else {
        /* The reserved room is not this packet's to take. */
        ret = PKT_WRITE(ch, &fp, v, n, ch->send_reserved, &signal);
        if (ret == -EAGAIN)
            atomic_store(&ch->send_blocked, body_ring_size(body));
    }
    if (ret == RING_OK && signal)
        xp_channel_notify_guest(ch);
    bool kick = ret == RING_OK && room_for_blocked_locked(ch);
    pthread_mutex_unlock(&ch->send_lock);
    XP_FUZZ(xp_fuzz_pkt_end(ch, &fp, ret);)
    return send_finish(ch, ret, kick);
}

int xp_channel_reserve(struct xp_channel *ch, size_t len)
{
    if (len > RING_MAX_PKT_LEN)
        return -EMSGSIZE;
    size_t total = sizeof(struct vmpacket_descriptor) + len;
    int ret;
    pthread_mutex_lock(&ch->send_lock);
    if (!rings_up(ch, &ch->out.r)) {
        ret = -EPIPE;
    } else if ((ret = ring_writer_check_len(&ch->out, total)) == 0) {
        uint32_t need = ring_packet_size((uint32_t)total);
        ret = ring_writer_room(&ch->out, need, ch->send_reserved);
        if (ret == RING_OK)
            ch->send_reserved += need; /* stays below the ring size: it fitted */
        else if (ret == -EAGAIN)
            atomic_store(&ch->send_blocked, need);
    }
    pthread_mutex_unlock(&ch->send_lock);
    return send_finish(ch, ret, false);
}

/* Take a reservation of len bytes off the books; send_lock held.  A
 * reservation from before the channel was closed (and the count reset) is
 * gone already: never below 0. */
static void unreserve_locked(struct xp_channel *ch, size_t len)
{
    uint32_t r = len > RING_MAX_PKT_LEN ? UINT32_MAX : body_ring_size(len);
    ch->send_reserved = r < ch->send_reserved ? ch->send_reserved - r : 0;
}

void xp_channel_unreserve(struct xp_channel *ch, size_t len)
{
    pthread_mutex_lock(&ch->send_lock);
    unreserve_locked(ch, len);
    bool kick = room_for_blocked_locked(ch);
    pthread_mutex_unlock(&ch->send_lock);
    if (kick)
        kick_writable(ch);
}

int xp_channel_send_reserved(struct xp_channel *ch, size_t reserved, uint16_t type,
                             uint16_t flags, uint64_t trans_id, const void *hdr, size_t hdr_len,
                             const struct iovec *iov, int iovcnt)
{
    struct iovec v[SEND_MAX_IOV + 2];
    struct vmpacket_descriptor d;
    int n;
    size_t body;
    int built = build_packet(v, &n, &d, type, flags, trans_id, hdr, hdr_len, iov, iovcnt, &body);
    if (built == 0 && body > reserved)
        built = -EMSGSIZE;
    XP_FUZZ(struct xp_fuzz_pkt fp; xp_fuzz_pkt_begin(ch, v, built ? 0 : n, &fp);)

    bool signal = false, kick = false;
    int ret;
    pthread_mutex_lock(&ch->send_lock);
    /* Not on the books: reserved before the channel was last closed (the
     * VSP's close did not wait for its I/O), not the guest's doing. */
    bool booked = reserved <= RING_MAX_PKT_LEN && ch->send_reserved >= body_ring_size(reserved);
    /* Used up whatever happens next. */
    unreserve_locked(ch, reserved);
    if (built) {
        ret = built;
    } else if (!rings_up(ch, &ch->out.r)) {
        ret = -EPIPE;
    } else {
        ret = PKT_WRITE(ch, &fp, v, n, ch->send_reserved, &signal);
        if (ret == RING_OK && signal)
            xp_channel_notify_guest(ch);
    }
    /* What the packet did not use of its reservation may let a blocked
     * sender go on. */
    if (ret == RING_OK || built)
        kick = room_for_blocked_locked(ch);
    pthread_mutex_unlock(&ch->send_lock);
    XP_FUZZ(xp_fuzz_pkt_end(ch, &fp, ret);)
    if (ret == -EAGAIN && !booked)
        return -EPIPE; /* the channel it was reserved on is gone */
    if (ret == -EAGAIN) {
        /* The room was there when it was reserved, and only the guest's
         * reading changes free space besides our own writes: it moved its
         * read index backwards. */
        xp_channel_fault(ch, "host->guest ring: the guest's read index took back room reserved "
                             "for completions");
        return -EIO;
    }
    return send_finish(ch, ret, kick);
}

bool xp_channel_writable(struct xp_channel *ch)
{
    /* send_blocked is read under send_lock: a sender on another thread (a
     * VSP's I/O thread) that found the ring full has stored it before the
     * lock is free, so the kick the guest sends for the room it frees
     * meanwhile cannot miss it. */
    pthread_mutex_lock(&ch->send_lock);
    uint32_t need = atomic_load(&ch->send_blocked);
    bool room = need && rings_up(ch, &ch->out.r) &&
                ring_writer_free(&ch->out) > need + ch->send_reserved;
    if (room)
        atomic_store(&ch->send_blocked, 0);
    pthread_mutex_unlock(&ch->send_lock);
    return room;
}

/* ------------------------------------------------------------------ */
/* What the VSP layer may know about a channel                         */

bool xp_channel_is_open(const struct xp_channel *ch)
{
    return atomic_load(&ch->state) == XP_CHAN_OPEN;
}

uint32_t xp_channel_relid(const struct xp_channel *ch) { return atomic_load(&ch->relid); }
void *xp_channel_vsp(const struct xp_channel *ch) { return ch->vsp; }
const struct hv_guid *xp_channel_class(const struct xp_channel *ch) { return &ch->offer.if_type; }

void xp_channel_guest_warn(struct xp_channel *ch, const char *fmt, ...)
{
    char buf[384], cls[GUID_STR_LEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    guid_format(&ch->offer.if_type, cls);
    struct xpartition *xp = ch->xp;
    pthread_mutex_lock(&xp->lock);
    xp_guest_warn(xp, "relid %u (class %s): %s", atomic_load(&ch->relid), cls, buf);
    pthread_mutex_unlock(&xp->lock);
}
