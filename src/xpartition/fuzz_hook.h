/* SPDX-License-Identifier: MIT */
/*
 * Where vmbusd-guestfuzz's mutation layer (src/guestfuzz) sits in the
 * partition code.  Only the fuzzing binary defines VMBUSD_GUESTFUZZ; in
 * vmbusd every XP_FUZZ(...) below expands to nothing, so the production
 * daemon contains no trace of it.
 *
 * Every host->guest action passes one of these:
 *   xp_fuzz_queue_msg   channel messages (the partition's only way into the
 *                       SynIC queue, xp_queue_msg)
 *   xp_fuzz_pkt_*       packets (xp_channel_send, xp_channel_send_reserved)
 *   xp_fuzz_ring_field  the ring header fields the host owns (ring.c)
 *   xp_fuzz_signals     interrupts: how many to raise (0, 1, a storm)
 * and every guest action is recorded by xp_fuzz_guest_msg / _guest_pkt.
 */
#ifndef VMBUSD_XP_FUZZ_HOOK_H
#define VMBUSD_XP_FUZZ_HOOK_H

#ifdef VMBUSD_GUESTFUZZ

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "guestfuzz/mutate.h"

struct xpartition;
struct xp_channel;
struct gf_vm;

#define XP_FUZZ(...) __VA_ARGS__

/* xp_create / xp_destroy: the partition's engine (loud line, transcript). */
void xp_fuzz_attach(struct xpartition *xp);
void xp_fuzz_detach(struct xpartition *xp);
/* The body of xp_queue_msg in the fuzzing build (xp->lock held). */
int xp_fuzz_queue_msg(struct xpartition *xp, const void *body, size_t len);
/* Messages held back (delay, reorder) whose time has come go into the
 * queue (xp_flush_locked); true while some are still held. */
bool xp_fuzz_release_held(struct xpartition *xp);
bool xp_fuzz_holding(const struct xpartition *xp);
/* Straight into the SynIC queue (any length up to 240: a mutated message
 * may be shorter than a header), then deliver; xpartition.c. */
int xp_queue_msg_unfuzzed(struct xpartition *xp, const void *body, size_t len);
/* The guest connection is gone: forget held messages. */
void xp_fuzz_drop_held(struct xpartition *xp);
/* How many interrupts to raise instead of one: for a message delivery
 * (ch NULL) or a channel's event. */
unsigned xp_fuzz_signals(struct xpartition *xp, struct xp_channel *ch);
/* The guest's channel message (after the one copy) / a packet the guest
 * wrote, as the host read it. */
void xp_fuzz_guest_msg(struct xpartition *xp, const void *payload, size_t len);
void xp_fuzz_guest_pkt(struct xp_channel *ch, const void *pkt, size_t len);
/* A packet on its way into a host->guest ring (xp_channel_send and
 * xp_channel_send_reserved, so every VSP's packets, completions written
 * into a reservation included): _begin decides its mutation (and sleeps a
 * delay) before send_lock is taken, _write puts it into the ring under
 * send_lock in place of ring_write_keep, _end records what reached the
 * guest once the lock is released.  The sender sees only results it could
 * have had without the fuzzer: a mutated packet the ring cannot take is
 * replaced by its own, a dropped one looks sent, a duplicate goes only
 * into room nobody reserved. */
struct xp_fuzz_pkt {
    struct gf_vm *vm;        /* NULL: not fuzzed, written as is */
    struct gf_key key;
    uint8_t op;              /* enum gf_op decided */
    uint8_t copies;          /* how many copies reached the ring */
    bool fell_back;          /* the mutated packet did not fit: the original went */
    uint8_t *buf, *out;      /* the packet as built / as mutated */
    size_t total, olen;
};
void xp_fuzz_pkt_begin(struct xp_channel *ch, const struct iovec *v, int n,
                       struct xp_fuzz_pkt *fp);
int xp_fuzz_pkt_write(struct xp_channel *ch, struct xp_fuzz_pkt *fp, const struct iovec *v,
                      int n, uint32_t keep, bool *signal);
void xp_fuzz_pkt_end(struct xp_channel *ch, struct xp_fuzz_pkt *fp, int ret);
/* After the channel's rings were set up: route their header stores. */
void xp_fuzz_rings_attach(struct xp_channel *ch);

#else

#define XP_FUZZ(...)

#endif
#endif
