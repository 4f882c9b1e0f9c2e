/* SPDX-License-Identifier: MIT */
/*
 * struct xp_channel: private to src/xpartition (and its tests).  Everything
 * outside goes through the xp_channel_* functions of xpartition.h, so the
 * rings, their locks and the channel state have one owner.
 */
#ifndef VMBUSD_XP_CHANNEL_H
#define VMBUSD_XP_CHANNEL_H

#include "xpartition/ring.h"
#include "xpartition/ring_map.h"
#include "xpartition/partition.h"

struct xp_channel {
    struct xpartition *xp;
    STAILQ_ENTRY(xp_channel) link; /* xp->offers */
    struct vmbus_channel_offer offer;
    /* Written under xp->lock, read lock-free by senders and loggers. */
    _Atomic uint32_t relid;    /* 0 until offered */
    _Atomic uint32_t conn_id;
    _Atomic int state;         /* enum xp_chan_state */
    bool rescind_requested;
    bool removed;              /* VSP asked to rescind before it was ever offered */
    _Atomic uint32_t target_vp;
    uint32_t openid;
    struct xp_gpadl *ring_gpadl;
    struct ring_mapping in_map, out_map;
    struct ring_reader in;     /* guest -> host */
    struct ring_writer out;    /* host -> guest */
    pthread_mutex_t send_lock; /* serialises writers of `out` */
    pthread_mutex_t recv_lock; /* serialises readers of `in` */
    bool recv_quiet;           /* the VSP reads without signals: mask kept (recv_lock) */
    _Atomic uint32_t send_blocked; /* bytes a sender waits for (pending_send_sz) */
    uint32_t send_reserved;    /* ring bytes reserved for later sends (send_lock) */
    uint8_t *pktbuf;           /* private copy of the packet being read */
    size_t pktbuf_len;
    void *vsp;                 /* VSP layer's object */

    /* Subchannels (channel.c, "Subchannels"); all under xp->lock. */
    struct xp_channel *primary;  /* NULL for a primary channel */
    /* primary: subchannel closes its own close waits for; the close is
     * handed to the VSP layer when the count drops to 0 */
    unsigned subs_closing;
    bool close_deferred;         /* primary: CLOSING, its close not yet handed on */
    bool holds_primary;          /* subchannel: counted in primary->subs_closing */
    bool orphaned;               /* subchannel: its primary closed; freed once finished */
};

/* Tear a channel down because its guest broke the protocol (ring
 * corruption); takes xp->lock. */
void xp_channel_fault(struct xp_channel *ch, const char *why);
/* Signal the guest that ch has data / space (event flag + SINT); lock-free,
 * callers hold the ring's lock so a guest reset can fence on it. */
void xp_channel_notify_guest(struct xp_channel *ch);

#endif
