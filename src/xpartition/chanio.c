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
 * the guest's pending_send_sz the guest is signalled.
 *
 * Sending (host->guest ring, send_lock): one packet per call; a full ring
 * leaves pending_send_sz set in the ring and remembers the size, so the
 * next kick can tell the VSP it may send again (xp_channel_writable).
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
#include "xpartition/internal.h"

#define SEND_MAX_IOV 16

static bool rings_up(const struct xp_channel *ch, const struct ring *r)
{
    return atomic_load(&ch->state) == XP_CHAN_OPEN && r->hdr;
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
        if (!ring_reader_rearm(&ch->in))
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

void xp_channel_recv_done(struct xp_channel *ch)
{
    pthread_mutex_lock(&ch->recv_lock);
    if (rings_up(ch, &ch->in.r) && ring_reader_commit(&ch->in))
        xp_channel_notify_guest(ch);
    pthread_mutex_unlock(&ch->recv_lock);
}

int xp_channel_send(struct xp_channel *ch, uint16_t type, uint16_t flags, uint64_t trans_id,
                    const void *hdr, size_t hdr_len, const struct iovec *iov, int iovcnt)
{
    struct iovec v[SEND_MAX_IOV + 2];
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
    struct vmpacket_descriptor d = {
        .type = type,
        .offset8 = (uint16_t)(off / 8),
        .len8 = (uint16_t)((total + 7) / 8),
        .flags = flags,
        .trans_id = trans_id,
    };
    v[0] = (struct iovec){.iov_base = &d, .iov_len = sizeof(d)};
    int n = 1;
    if (hdr_len)
        v[n++] = (struct iovec){.iov_base = (void *)hdr, .iov_len = hdr_len};
    for (int i = 0; i < iovcnt; i++)
        v[n++] = iov[i];

    bool signal = false;
    int ret;
    pthread_mutex_lock(&ch->send_lock);
    if (!rings_up(ch, &ch->out.r)) {
        ret = -EPIPE;
    } else {
        ret = ring_write(&ch->out, v, n, &signal);
        if (ret == -EAGAIN)
            atomic_store(&ch->send_blocked, ring_packet_size((uint32_t)total));
    }
    if (ret == RING_OK && signal)
        xp_channel_notify_guest(ch);
    pthread_mutex_unlock(&ch->send_lock);
    if (ret == RING_ERR_INDEX) {
        xp_channel_fault(ch, "host->guest ring: indices corrupted by the guest");
        return -EIO;
    }
    return ret;
}

bool xp_channel_writable(struct xp_channel *ch)
{
    uint32_t need = atomic_load(&ch->send_blocked);
    if (!need)
        return false;
    pthread_mutex_lock(&ch->send_lock);
    bool room = rings_up(ch, &ch->out.r) && ring_writer_free(&ch->out) > need;
    pthread_mutex_unlock(&ch->send_lock);
    if (room)
        atomic_store(&ch->send_blocked, 0);
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
