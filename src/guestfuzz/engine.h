/* SPDX-License-Identifier: MIT */
/*
 * The per-VM fuzzing engine of vmbusd-guestfuzz: counts guest events to key
 * host actions (mutate.h), decides each action's mutation (from the seeded
 * PRNG, or from a replayed transcript), and records the transcript.
 *
 * The process-wide run (mode, seed, knobs, where transcripts go) is set once
 * by main before any VM connects; each partition gets a struct gf_vm from
 * xp_create.  All calls on one gf_vm are serialised by its own lock: host
 * actions come from the loop thread and from VSP workers.
 */
#ifndef VMBUSD_GUESTFUZZ_ENGINE_H
#define VMBUSD_GUESTFUZZ_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "guestfuzz/mutate.h"

enum gf_mode {
    GF_MODE_FUZZ = 0,   /* random mutations from the seed */
    GF_MODE_REPLAY = 1, /* only the mutations of a transcript, at their keys */
};

struct gf_run {
    enum gf_mode mode;
    uint64_t seed;
    struct gf_knobs knobs;
    char transcript_dir[512];      /* "" : no transcripts */
    struct gf_mutation *replay;    /* GF_MODE_REPLAY: the mutations to apply */
    char replay_path[512];         /* where they came from (for the warning line) */
    size_t nreplay;
};

/* Set the run (copied; replay array owned from now on).  Prints the loud
 * warning line with the seed.  Call once, before any partition exists. */
void gf_run_init(const struct gf_run *run);
/* NULL until gf_run_init (then nothing is fuzzed: unit tests of the
 * partition code built with the hook see an idle engine). */
const struct gf_run *gf_run_get(void);
/* Forget the run (tests; frees the replay array). */
void gf_run_reset(void);

struct gf_vm;
/* A partition connected: warn loudly (name, id, seed, transcript path) and
 * open its transcript.  NULL when no run is set or the knob vm= names
 * another VM (then the partition is served unchanged). */
struct gf_vm *gf_vm_new(uint32_t partition_id, const char *name);
/* Close the transcript. */
void gf_vm_free(struct gf_vm *vm);
/* The per-VM seed (derived from the run's seed and the partition's name). */
uint64_t gf_vm_seed(const struct gf_vm *vm);
const char *gf_vm_transcript_path(const struct gf_vm *vm);
/* Mutations applied so far. */
unsigned gf_vm_mutations(const struct gf_vm *vm);

/* ---- what the guest sent (recorded; advances the keys) ---- */
void gf_vm_guest_msg(struct gf_vm *vm, const void *msg, size_t len);
void gf_vm_guest_pkt(struct gf_vm *vm, const struct hv_guid *cls, uint32_t relid,
                     const void *pkt, size_t len);

/* ---- a host action ----
 * key: kind, subtype and class_id filled by the caller; the engine fills
 * the trigger and n.  buf/len: the natural bytes (NULL/0 for a signal; a
 * ring field passes its u32 value in ctx->cur_value).  Returns the op to
 * apply (GF_OP_NONE: send as is) with *m filled; the mutation is already
 * recorded.  The caller then reports what reached the guest with
 * gf_vm_host_sent. */
enum gf_op gf_vm_decide(struct gf_vm *vm, struct gf_key *key, const struct gf_ctx *ctx,
                        const void *buf, size_t len, size_t cap, struct gf_mutation *m);
void gf_vm_host_sent(struct gf_vm *vm, const struct gf_key *key, unsigned op,
                     const void *buf, size_t len);

#endif
