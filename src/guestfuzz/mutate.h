/* SPDX-License-Identifier: MIT */
/*
 * Host->guest mutation for fuzzing a guest's VMBus drivers (vmbusd-guestfuzz
 * only; the production vmbusd never contains this code).
 *
 * Every host->guest action is one "host action": a channel message posted
 * into the SynIC queue, a packet a VSP writes into a host->guest ring, a
 * store into a ring header field the host owns, or an interrupt.  Each is
 * named by a key that depends only on what the GUEST did before it:
 *
 *   (kind, subtype, class)  what the action is: message type, packet type
 *                           or ring field; the channel class for channel
 *                           actions (and offers), zero otherwise
 *   (trig_type, trig_k)     the guest event it follows: the trig_k-th guest
 *                           channel message of type trig_type, or (trig_type
 *                           GF_TRIG_PKT) the trig_k-th packet the guest wrote
 *                           on a channel of this class
 *   n                       1 for the first action with this (kind, subtype,
 *                           class) since that guest event, 2 for the next...
 *
 * so the same guest requests give the same keys whatever the timing, and a
 * replay applies the recorded mutation at the same key (or, when timing
 * merged or split guest batches, at the first action of that kind at or
 * after it).
 *
 * A mutation = key + op + an edit of the action's bytes (a new length and a
 * few byte patches), so the structure-aware mutators, the blind flips and a
 * replay all go through one apply function (gf_edit_apply).
 */
#ifndef VMBUSD_GUESTFUZZ_MUTATE_H
#define VMBUSD_GUESTFUZZ_MUTATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "guestfuzz/prng.h"
#include "vmbusd/hv_wire.h"

/* ---- keys ---- */
enum gf_kind {
    GF_K_MSG = 1,    /* channel message; subtype = CHANNELMSG_* */
    GF_K_PKT = 2,    /* packet in a host->guest ring; subtype = descriptor type */
    GF_K_RING = 3,   /* host-owned ring header field; subtype = enum gf_ring_field */
    GF_K_SIGNAL = 4, /* interrupt; subtype 0: channel event, 1: message SINT */
};

enum gf_ring_field {
    GF_RF_WRITE_INDEX = 0,     /* of the host->guest ring (guest's inbound) */
    GF_RF_READ_INDEX = 1,      /* of the guest->host ring (guest's outbound) */
    GF_RF_INTERRUPT_MASK = 2,  /* of the guest->host ring */
    GF_RF_PENDING_SEND_SZ = 3, /* of the host->guest ring */
    GF_RF_COUNT
};

#define GF_TRIG_PKT 0x100u /* trig_type of "a guest packet on this class" */

struct gf_key {
    uint8_t kind;           /* enum gf_kind */
    uint8_t reserved0;
    uint16_t subtype;
    uint16_t trig_type;     /* CHANNELMSG_* the guest sent, or GF_TRIG_PKT; 0: none yet */
    uint16_t reserved1;
    uint32_t trig_k;        /* 1-based count of that guest event; 0: none yet */
    uint32_t n;             /* 1-based ordinal of this action since the trigger */
    struct hv_guid class_id; /* channel class, zero for partition-wide actions */
} HV_PACKED;
HV_ASSERT_SIZE(struct gf_key, 32);

/* ---- mutations ---- */
enum gf_op {
    GF_OP_NONE = 0,
    GF_OP_PATCH = 1,   /* bytes edited (length and/or content) */
    GF_OP_DROP = 2,    /* never sent (a missing message/packet/interrupt) */
    GF_OP_DUP = 3,     /* sent twice */
    GF_OP_DELAY = 4,   /* sent param ms later (messages: queued behind later ones) */
    GF_OP_REORDER = 5, /* held and sent after the next action of the same kind */
    GF_OP_RESCIND = 6, /* sent, then a RESCIND_CHANNELOFFER for relid param follows
                          (the host's own state does not change: a rescind the
                          host did not mean, at this protocol step) */
    GF_OP_STORM = 7,   /* interrupt raised param more times */
    GF_OP_VALUE = 8,   /* ring field: param is stored instead of the real value */
    GF_OP_COUNT
};

/* In a transcript's host record: the action could not be carried out
 * (ring full, channel gone, queue full); a VSP's retry is a new action. */
#define GF_HOST_NOT_SENT 0x100u

/* Which mutator produced an edit (for logs and the transcript; replay does
 * not need it). */
enum gf_mutator {
    GF_M_NONE = 0,
    GF_M_FLIP = 1,     /* blind: 1..8 random bytes xor'ed with random values */
    GF_M_FIELD = 2,    /* a field of the message/packet layout set to an edge value */
    GF_M_LENGTH = 3,   /* length set just under/over the layout's size or limit */
    GF_M_RELID = 4,    /* relid / id set to another channel's, 0, or >= 2048 */
    GF_M_DESC = 5,     /* packet descriptor type/offset8/len8/flags/trans_id */
    GF_M_ORDER = 6,    /* drop / dup / reorder / delay / rescind */
    GF_M_INDEX = 7,    /* ring header field value */
    GF_M_SIGNAL = 8,   /* missing interrupt / storm */
    GF_M_VSTOR = 9,    /* a field of a storvsp VSTOR completion (mutate_vsp.c) */
    GF_M_NVSP = 10,    /* a field of a netvsp NVSP message or transfer-page header */
};

#define GF_MAX_PATCHES 8
#define GF_MAX_PATCH_BYTES 128

struct gf_patch {
    uint16_t off, len; /* len bytes at bytes[] + sum of earlier patches' len */
};

struct gf_mutation {
    struct gf_key key;
    uint8_t op;        /* enum gf_op */
    uint8_t mutator;   /* enum gf_mutator */
    uint16_t npatch;
    uint32_t new_len;  /* GF_OP_PATCH: length after the edit */
    uint32_t param;    /* DELAY ms, RESCIND relid, STORM count, VALUE value */
    struct gf_patch patch[GF_MAX_PATCHES];
    uint8_t bytes[GF_MAX_PATCH_BYTES];
};

/* Transcript wire form of the fixed part (after the key): 12 bytes, then
 * npatch times {u16 off, u16 len, len bytes}. */
struct gf_edit_wire {
    uint8_t op;
    uint8_t mutator;
    uint16_t npatch;
    uint32_t new_len;
    uint32_t param;
} HV_PACKED;
HV_ASSERT_SIZE(struct gf_edit_wire, 12);

/* Add a patch of len bytes at off; false when the mutation has no room. */
bool gf_mut_add_patch(struct gf_mutation *m, uint32_t off, const void *bytes, uint32_t len);
/* Apply a GF_OP_PATCH edit: in (len bytes) -> out (cap bytes).  Growth is
 * zero-filled; patches beyond the new length are cut.  Returns the new
 * length (<= cap; the edit's new_len is clamped to cap). */
size_t gf_edit_apply(const struct gf_mutation *m, const void *in, size_t len, void *out,
                     size_t cap);

/* ---- knobs ---- */
/* What gets a probability of its own: every host channel message type,
 * packets, each ring field, and the two interrupt kinds. */
enum gf_slot {
    GF_S_MSG0 = 0, /* + CHANNELMSG_* (0..CHANNELMSG_COUNT-1) */
    GF_S_PKT = CHANNELMSG_COUNT,
    GF_S_RING0,    /* + enum gf_ring_field */
    GF_S_SIGNAL = GF_S_RING0 + GF_RF_COUNT,
    GF_S_SINT,
    GF_S_COUNT
};

enum gf_family { /* weights of the kinds of mutation, when one is made */
    GF_F_FLIP, GF_F_STRUCT, GF_F_DROP, GF_F_DUP, GF_F_REORDER, GF_F_DELAY, GF_F_RESCIND,
    GF_F_STORM, GF_F_COUNT
};

#define GF_MAX_CLASSES 16

struct gf_knobs {
    double prob[GF_S_COUNT];       /* per action; default p (0.02) */
    unsigned weight[GF_F_COUNT];   /* relative; 0 disables a family */
    uint32_t after;                /* no mutation before N guest messages + packets */
    uint32_t max_mutations;        /* per VM; 0: no limit */
    uint32_t delay_max_ms;         /* GF_OP_DELAY upper bound (default 6000: past 5 s timeouts) */
    uint32_t storm_max;            /* GF_OP_STORM upper bound (default 256) */
    unsigned nclasses;             /* 0: all channels; else only these classes' */
    struct hv_guid classes[GF_MAX_CLASSES]; /* channel actions (and their offers) */
    char vm[64];                   /* "": every VM; else only the VM of this name */
    bool msgs_with_classes;        /* class filter given: still mutate partition-wide
                                      messages (knob msgs=1) */
};

void gf_knobs_default(struct gf_knobs *k);
/* One "KEY=VALUE" (see docs/fuzzing-guest-drivers.md for the names).
 * 0, or -EINVAL with a reason in err. */
int gf_knob_set(struct gf_knobs *k, const char *kv, char *err, size_t errlen);
/* Every non-empty, non-# line of path through gf_knob_set. */
int gf_knobs_load(struct gf_knobs *k, const char *path, char *err, size_t errlen);
/* The slot of a host action (GF_S_COUNT if it has none). */
unsigned gf_slot_of(const struct gf_key *key);
const char *gf_slot_name(unsigned slot);
const char *gf_op_name(unsigned op);
const char *gf_mutator_name(unsigned m);

/* ---- mutators ---- */
/* Facts a structure-aware mutator may use: relids it can pick for "another
 * channel", the guest's packet size limit and ring size. */
struct gf_ctx {
    uint32_t relids[16];
    unsigned nrelids;
    uint32_t max_pkt;    /* 0 unknown */
    uint32_t ring_size;  /* data area of the ring concerned (GF_K_RING/PKT), 0 unknown */
    uint32_t cur_value;  /* GF_K_RING: the value the host meant to store */
};

/* Pick a mutation for the host action key whose natural bytes are buf/len
 * (maximum cap bytes after an edit), following the knobs' weights; the
 * caller has already decided, with the action's probability, to mutate.
 * Returns false if no family applies (the action is left alone). */
bool gf_mutate(struct gf_rng *rng, const struct gf_knobs *k, const struct gf_ctx *ctx,
               const struct gf_key *key, const void *buf, size_t len, size_t cap,
               struct gf_mutation *out);
/* The relid a host channel message is about (0: none), from its bytes. */
uint32_t gf_msg_relid(const void *buf, size_t len);
/* The individual mutators (tests call them directly). */
void gf_mut_flip(struct gf_rng *rng, const void *buf, size_t len, struct gf_mutation *m);
/* Channel message of type msgtype: one field of its layout, its length, or
 * a relid/id. */
void gf_mut_msg(struct gf_rng *rng, const struct gf_ctx *ctx, uint32_t msgtype, const void *buf,
                size_t len, struct gf_mutation *m);
/* Packet (descriptor first): descriptor fields, length around max_pkt, or
 * 32-bit fields of the payload. */
void gf_mut_pkt(struct gf_rng *rng, const struct gf_ctx *ctx, const void *buf, size_t len,
                size_t cap, struct gf_mutation *m);
/* Integration-service packet (descriptor, pipe + IC headers, body): IC
 * header fields, negotiate version counts around the guest's limit of 100,
 * a body shorter than its type needs.  Never longer than len. */
void gf_mut_ic(struct gf_rng *rng, const void *buf, size_t len, struct gf_mutation *m);
bool gf_class_is_ic(const struct hv_guid *cls);
/* storvsp's packets (mutate_vsp.c): a VSTOR completion's status, operation,
 * SRB and SCSI status, data_transfer_length around the request's, sense
 * length and autosense data, QUERY_PROPERTIES counts, or a packet cut
 * short of the negotiated size.  Never longer than len. */
void gf_mut_vstor(struct gf_rng *rng, const void *buf, size_t len, struct gf_mutation *m);
bool gf_class_is_storvsc(const struct hv_guid *cls);
/* netvsp's packets (mutate_vsp.c): an NVSP message's type, a completion's
 * status and per-type fields (receive-buffer section shape, send section
 * size, subchannel count, NVSP version), a send indirection table (count,
 * offset, queue numbers; the packet may grow by the table, up to cap), a
 * message cut short of 28 bytes, or a transfer-page packet's page set,
 * range count and ranges. */
void gf_mut_nvsp(struct gf_rng *rng, const void *buf, size_t len, size_t cap,
                 struct gf_mutation *m);
bool gf_class_is_netvsc(const struct hv_guid *cls);
/* Ring field: a value out of range, unaligned, at the ring's edges... */
void gf_mut_ring(struct gf_rng *rng, const struct gf_ctx *ctx, unsigned field,
                 struct gf_mutation *m);

#endif
