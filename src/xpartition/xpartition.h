/* SPDX-License-Identifier: MIT */
/*
 * XPartition: everything vmbusd knows about one child VM.
 *
 * The model is transport-free: the daemon feeds it what the VMM reports
 * (memory regions, SynIC pages, posted messages, EOMs, guest signals) and
 * it calls back through two tables: struct xp_transport_ops for what must
 * leave the process (SINT interrupts, eventfd registration, the retry
 * timer), struct xp_channel_ops for the VSP layer (channel open, close,
 * receive).  The entry points below that change the model lock the
 * partition and may be called from any thread.
 *
 * struct xpartition and struct xp_channel are opaque here: their fields live
 * in partition.h and channel.h, which only src/xpartition (and its own tests
 * and fuzzers) include; the daemon asks through calls (xp_id, xp_snapshot,
 * xp_channel_*).
 *
 * Two endpoints, as the Windows root has them:
 *   message endpoint - xp_post_message(): the guest's HvPostMessage
 *   event endpoint   - xp_connection_signalled(): the guest's HvSignalEvent
 *                      on a connection id, routed to the channel behind it
 */
#ifndef VMBUSD_XPARTITION_H
#define VMBUSD_XPARTITION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "vmbusd/hv_wire.h"

#define XP_MAX_VCPUS 256
#define XP_MAX_REGIONS 32
#define XP_MAX_GPADLS 1024       /* per partition */
#define XP_MAX_PENDING_GPADLS 16 /* headers whose bodies have not all arrived */
#define XP_MAX_GPADL_PAGES 8190  /* range_buflen is u16 */
#define XP_CHANNEL_CONN_ID_BASE 0x10000u
#define XP_MAX_SUBCHANNELS 64    /* per primary: sub_channel_index 1..64 */

struct xpartition;
struct xp_channel;
struct vmbus_version_info;

enum xp_chan_state {
    XP_CHAN_PENDING,   /* on the LOCAL_OFFER list, not yet sent to the guest */
    XP_CHAN_OFFERED,   /* offer sent; closed */
    XP_CHAN_OPENING,   /* OPENCHANNEL accepted, waiting for the VSP */
    XP_CHAN_OPEN,
    XP_CHAN_CLOSING,   /* waiting for the VSP's close to finish */
    XP_CHAN_RESCINDED, /* rescind sent, waiting for RELID_RELEASED */
};

/* What a partition needs from the transport that connects it to its VMM
 * (src/vmbusd/vmm_conn.c): interrupts, guest signals, a timer. */
struct xp_transport_ops {
    /* Raise the VMBus SINT on vCPU vp (write its irqfd). */
    void (*signal_vp)(void *ctx, uint32_t vp);
    /* Create an eventfd for guest HvSignalEvent(conn_id), hand it to the VMM
     * and watch it; on a signal call xp_connection_signalled(). */
    int (*eventfd_add)(void *ctx, uint32_t conn_id);
    void (*eventfd_del)(void *ctx, uint32_t conn_id);
    /* Messages wait for the guest's slot: call xp_flush() a little later
     * (the EOM the guest owes may never come).  Called with the partition
     * locked, possibly many times per wait.  May be NULL. */
    void (*msgs_waiting)(void *ctx);
};

/* What a partition needs from the layer that runs the VSPs behind its
 * channels (src/vmbusd/vsp_host.c).  Called with the partition locked; the
 * lock is recursive, so the *_done calls may come from inside, but a VSP
 * that may block belongs on another thread (vsp_host.c queues it). */
struct xp_channel_ops {
    /* The guest opened ch: run the VSP's open and then call
     * xp_channel_open_done().  */
    void (*channel_open)(void *ctx, struct xp_channel *ch, const uint8_t *user_data, size_t len);
    /* The channel closed (guest close, rescind, unload, teardown): run the
     * VSP's close, then call xp_channel_close_done().  */
    void (*channel_close)(void *ctx, struct xp_channel *ch);
    /* The guest signalled an open channel: schedule the VSP's receive. */
    void (*channel_kick)(void *ctx, struct xp_channel *ch);
    /* A subchannel is finished (its primary closed, its own close
     * returned, the guest released or forgot its relid; the primary's
     * channel_close was called before): the model has let go of it and
     * makes no more calls for it.  The VSP layer frees it with
     * xp_channel_destroy() once none of its own work uses it.  NULL: the
     * model frees it at once. */
    void (*channel_released)(void *ctx, struct xp_channel *ch);
};

struct xp_stats {
    uint64_t msgs_in, msgs_out, msgs_dropped, violations;
};

/* ---- lifetime ---- */
struct xpartition *xp_create(uint32_t id, const char *name, uint32_t nvcpus,
                             const struct xp_transport_ops *transport, void *ctx);
/* Who runs the VSPs behind the channels; set before the first offer. */
void xp_set_channel_ops(struct xpartition *xp, const struct xp_channel_ops *ops, void *ctx);
/* Unmap memory and free the partition with its channels.  Close them
 * first (xp_close_all(), then wait for the VSP closes it queued): a close
 * finishing later would find its channel freed.  */
void xp_destroy(struct xpartition *xp);

/* ---- VMM-reported state ---- */
/* Map guest RAM [gpa, gpa + size) from fd at fd_offset; on success the
 * partition owns fd.  fd must be a memfd sealed with F_SEAL_SHRINK and not
 * write-sealed.  -EINVAL unaligned/empty/wrapping, -ENOSPC too many regions,
 * -EEXIST overlap, -EBADF not a memfd, -EPERM no F_SEAL_SHRINK, -EROFS
 * write-sealed, -ERANGE beyond the end of the fd, or mmap's error. */
int xp_add_region(struct xpartition *xp, uint64_t gpa, uint64_t size, int fd, uint64_t fd_offset);
int xp_set_sint_route(struct xpartition *xp, uint32_t vp);
int xp_set_synic(struct xpartition *xp, uint32_t vp, uint64_t scontrol, uint64_t simp,
                 uint64_t siefp);
/* The partition is going away: close every channel (VSP closes are queued
 * through the channel ops) and forget the guest connection; nothing is
 * re-offered. */
void xp_close_all(struct xpartition *xp);
/* Guest reset: forget all VMBus state (offers go back to pending). */
void xp_reset(struct xpartition *xp);

/* ---- message endpoint ---- */
/* A guest HvPostMessage.  Returns the HV_STATUS_* for the hypercall. */
uint32_t xp_post_message(struct xpartition *xp, uint32_t vp, const struct hv_post_message_input *in,
                         size_t in_len);
/* The guest signalled end-of-message on vp (or anything that may have freed
 * a slot): deliver queued messages. */
void xp_eom(struct xpartition *xp, uint32_t vp);
/* Retry of stuck deliveries (after transport msgs_waiting); returns true
 * while messages wait. */
bool xp_flush(struct xpartition *xp);

/* ---- event endpoint ---- */
/* The guest signalled connection id conn_id. */
void xp_connection_signalled(struct xpartition *xp, uint32_t conn_id);

/* ---- guest memory ---- */
void *xp_gpa_to_hva(struct xpartition *xp, uint64_t gpa, size_t len);
/* fd/offset behind a guest page, for mapping; -1 if outside memory. */
int xp_gpa_to_fd(struct xpartition *xp, uint64_t gpa, int *fd, uint64_t *off);

/* ---- channels (VSP side) ---- */
/* The offer reaches the guest at once if it has asked for offers already,
 * and a guest that opens it at once gets channel_open before this returns:
 * out (may be NULL) gets the channel first, as xp_offer_subchannel's. */
struct xp_channel *xp_offer_channel(struct xpartition *xp, const struct vmbus_channel_offer *o,
                                    void *vsp, struct xp_channel **out);
void xp_rescind_channel(struct xp_channel *ch);
/* Subchannel `index` (1..XP_MAX_SUBCHANNELS) of the open primary channel
 * primary: its offer with sub_channel_index = index, sent to the guest at
 * once.  NULL (a warning naming the VM and the primary's relid) if primary
 * is a subchannel or not open, the index is out of range or live already,
 * the version predates subchannels or the partition has no relid left.
 * When the primary closes, its subchannels are closed and rescinded first
 * and its channel_close waits for their closes (channel.c explains). */
/* out (may be NULL) gets the channel under the partition's lock, before
 * the offer can reach the guest: a VSP layer that keeps it in its own
 * object has it there before any callback for it runs. */
struct xp_channel *xp_offer_subchannel(struct xp_channel *primary, uint16_t index, void *vsp,
                                       struct xp_channel **out);
/* Free a subchannel handed back through channel_released. */
void xp_channel_destroy(struct xp_channel *ch);
/* The VSPs have made the offers a guest should find at boot: from now on
 * REQUESTOFFERS is completed with ALLOFFERS_DELIVERED (later offers are hot
 * adds).  Until then the guest's request waits. */
void xp_offers_ready(struct xpartition *xp);
void xp_channel_open_done(struct xp_channel *ch, uint32_t status);
void xp_channel_close_done(struct xp_channel *ch);
/* What the VSP layer may know about a channel.  relid is 0 until the
 * channel is offered; the class never changes. */
bool xp_channel_is_open(const struct xp_channel *ch);
uint32_t xp_channel_relid(const struct xp_channel *ch);
void *xp_channel_vsp(const struct xp_channel *ch);
const struct hv_guid *xp_channel_class(const struct xp_channel *ch);
/* A guest-caused problem on ch: warning prefixed with the partition, relid
 * and class, counted and rate limited with the partition's own. */
void xp_channel_guest_warn(struct xp_channel *ch, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* ---- packet I/O on an open channel (chanio.c) ---- */
/* One packet from the guest->host ring, validated, in a private copy that
 * stays valid until the next xp_channel_recv on the channel. */
struct xp_packet {
    uint16_t type;         /* descriptor fields, from the copy */
    uint16_t flags;
    uint64_t trans_id;
    const uint8_t *buf;    /* descriptor through payload */
    uint32_t total_len;    /* len8 * 8 */
    uint32_t payload_off;  /* offset8 * 8, in [16, total_len] */
};
/* 1: *pkt filled; 0: ring empty or channel not open; -EIO: the guest
 * corrupted the ring and the channel is being torn down.  Publishes the
 * read index when the ring is empty and during long batches, signalling a
 * guest whose pending_send_sz the freed space crosses. */
int xp_channel_recv(struct xp_channel *ch, struct xp_packet *pkt);
/* End of a receive batch: publish what was consumed (and signal as above). */
void xp_channel_recv_done(struct xp_channel *ch);
/* Quiet on: the ring stays masked (the guest does not signal new packets)
 * until it is turned off; off (the state after every open): the ring is
 * unmasked and true returned if packets are waiting (nobody will signal
 * them).  For the channel's one reader. */
bool xp_channel_recv_quiet(struct xp_channel *ch, bool quiet);
/* Write one packet: descriptor built here, hdr (hdr_len bytes, making
 * 16 + hdr_len a multiple of 8) after it, then iov (at most 16).  0,
 * -EAGAIN ring full (xp_channel_writable tells when it has room), -EPIPE
 * not open, -EMSGSIZE can never fit, -EINVAL bad arguments, -EIO the guest
 * corrupted the ring (the channel is being torn down). */
int xp_channel_send(struct xp_channel *ch, uint16_t type, uint16_t flags, uint64_t trans_id,
                    const void *hdr, size_t hdr_len, const struct iovec *iov, int iovcnt);
/* True once, after a send returned -EAGAIN, when the packet would now fit. */
bool xp_channel_writable(struct xp_channel *ch);
/* Reserve room for one later packet of len bytes after the descriptor
 * (ring_packet_size(16 + len) ring bytes): 0, -EAGAIN (xp_channel_writable
 * and a kick follow once it fits), -EPIPE not open, -EMSGSIZE never fits,
 * -EIO corrupt ring.  Ordinary sends leave reserved room alone. */
int xp_channel_reserve(struct xp_channel *ch, size_t len);
/* Give back a reservation of len bytes. */
void xp_channel_unreserve(struct xp_channel *ch, size_t len);
/* xp_channel_send into a reservation of `reserved` bytes, used up whatever
 * the result: never -EAGAIN (-EIO and the channel torn down if the guest
 * took the room back by moving its read index backwards), -EMSGSIZE if the
 * packet is larger than reserved. */
int xp_channel_send_reserved(struct xp_channel *ch, size_t reserved, uint16_t type,
                             uint16_t flags, uint64_t trans_id, const void *hdr, size_t hdr_len,
                             const struct iovec *iov, int iovcnt);
/* Sends of this thread on ch between begin and end (nested pairs count)
 * are copied into the ring at once but published together at the end:
 * one write-index update, at most one interrupt.  Other threads' sends
 * are not held back (they publish what is in the ring).  One channel per
 * thread at a time: a begin on another channel meanwhile has no effect. */
void xp_channel_send_batch_begin(struct xp_channel *ch);
void xp_channel_send_batch_end(struct xp_channel *ch);
/* The guest buffers of a GPA-direct packet (gpa_direct.c): buf/hdr_len is
 * the packet's private copy from its descriptor through its type-specific
 * header.  Fills iov[0..n) with host pointers into guest RAM (adjacent
 * pages merged) and *len with the byte count; n, or -EPROTO malformed
 * ranges / -EFAULT a page outside guest RAM (both logged as guest errors
 * on ch), -E2BIG more than max_len bytes or max_iov entries. */
int xp_channel_gpa_direct(struct xp_channel *ch, const void *buf, size_t hdr_len, size_t max_len,
                          struct iovec *iov, int max_iov, size_t *len);
/* Map / unmap a complete GPADL for the VSP. */
void *xp_gpadl_map(struct xp_channel *ch, uint32_t id, size_t *len);
void xp_gpadl_unmap(struct xp_channel *ch, uint32_t id);

/* ---- status for the control socket (snapshot.c) ---- */
uint32_t xp_id(const struct xpartition *xp); /* fixed at xp_create */
struct xp_chan_snapshot {
    uint32_t relid;             /* 0 while not offered */
    struct hv_guid class_id, instance_id;
    uint16_t sub_channel_index;
    int state;                  /* enum xp_chan_state */
    uint32_t target_vp;
    uint32_t in_fill_pct, out_fill_pct; /* ring fill (guest->host, host->guest); 0 unless open */
    /* the rings' shared header words (guest->host, host->guest); 0 unless open */
    uint32_t in_write, in_read, in_mask, in_pending;
    uint32_t out_write, out_read, out_mask, out_pending;
};
struct xp_snapshot {
    uint32_t id, nvcpus;
    bool connected;
    uint32_t version;           /* negotiated, 0 if none */
    struct xp_stats stats;
    unsigned nchannels;
    struct xp_chan_snapshot *channels; /* in offer order; free with xp_snapshot_free */
};
/* A consistent copy of the partition's state (taken under its lock).
 * 0, or -ENOMEM: then only the partition's own fields are filled (no
 * channels).  Either way xp_snapshot_free may be called. */
int xp_snapshot(struct xpartition *xp, struct xp_snapshot *out);
void xp_snapshot_free(struct xp_snapshot *s);

const char *xp_chan_state_name(int state);
/* Log a guest-caused problem (warning) or a guest-triggered event (info),
 * prefixed with the partition and rate limited per partition. */
void xp_guest_warn(struct xpartition *xp, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void xp_event(struct xpartition *xp, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A warning about the partition that is not the guest's doing (not counted
 * as a violation), rate limited with the lines above. */
void xp_warn(struct xpartition *xp, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Take a token from the partition's log bucket (for VSP lines a guest can
 * trigger); false: drop the line. */
bool xp_log_allowed(struct xpartition *xp);

#endif
