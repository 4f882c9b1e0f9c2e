/* SPDX-License-Identifier: MIT */
/*
 * Transcripts of a guest-driver fuzzing run (one file per VM).
 *
 * A transcript is at once the log of a run and its reproducer: it records
 * what the host sent after mutation, what the guest sent, and every
 * mutation with the key it was applied at (guestfuzz/mutate.h).  Replay
 * reads only the mutation records; the minimizer rewrites a transcript
 * keeping a subset of them.  docs/fuzzing-guest-drivers.md documents the
 * format for tools written outside this tree.
 *
 * Layout, all little-endian:
 *   file header (32 bytes)
 *     char     magic[8]      "VMBFZTR1"
 *     uint16_t version       1
 *     uint16_t header_len    32 (readers skip what they do not know)
 *     uint32_t flags         GF_TR_REPLAYED: written by a replay run
 *     uint64_t seed          the run's seed (0 for a replay)
 *     uint32_t partition_id
 *     uint32_t reserved
 *   records, each: struct gf_rec_hdr (8 bytes) + len bytes of payload
 *     GF_REC_VM         payload: the partition's name (no NUL)
 *     GF_REC_GUEST_MSG  payload: the guest's channel message (header included)
 *     GF_REC_GUEST_PKT  payload: class GUID (16) + relid (u32) + packet
 *                       (descriptor through payload, as the VSP read it)
 *     GF_REC_HOST       payload: struct gf_key (32) + outcome (u32, enum
 *                       gf_op that was applied, GF_OP_NONE if untouched,
 *                       | GF_HOST_NOT_SENT if the host could not send it:
 *                       ring full, channel closed, queue full) +
 *                       the bytes that reached the guest (message body,
 *                       packet from its descriptor, or a u32 ring field value;
 *                       empty for a signal or a dropped action)
 *     GF_REC_MUT        payload: struct gf_key (32) + struct gf_edit_wire +
 *                       patches (guestfuzz/mutate.h)
 *     GF_REC_NOTE       payload: free text (seed line, knobs), ignored by replay
 * A reader stops at the first truncated record (a run killed mid-write
 * leaves a readable prefix).  Mutation records are flushed at once, the
 * others at least every 32 records and at close.
 */
#ifndef VMBUSD_GUESTFUZZ_TRANSCRIPT_H
#define VMBUSD_GUESTFUZZ_TRANSCRIPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "guestfuzz/mutate.h"

#define GF_TR_MAGIC "VMBFZTR1"
#define GF_TR_VERSION 1
#define GF_TR_HEADER_LEN 32
#define GF_TR_REPLAYED 0x1u
#define GF_REC_MAX_LEN (1u << 20)

enum gf_rec_type {
    GF_REC_VM = 1,
    GF_REC_GUEST_MSG = 2,
    GF_REC_GUEST_PKT = 3,
    GF_REC_HOST = 4,
    GF_REC_MUT = 5,
    GF_REC_NOTE = 6,
};

struct gf_rec_hdr {
    uint8_t type;      /* enum gf_rec_type */
    uint8_t reserved[3];
    uint32_t len;      /* payload bytes that follow, <= GF_REC_MAX_LEN */
};

struct gf_tr_header {
    uint64_t seed;
    uint32_t flags;
    uint32_t partition_id;
};

/* ---- writing ---- */
struct gf_tr_writer;
/* Create path and write the file header.  NULL (errno set) on failure. */
struct gf_tr_writer *gf_tr_create(const char *path, const struct gf_tr_header *h);
/* Same, but fail with EEXIST if path exists. */
struct gf_tr_writer *gf_tr_create_excl(const char *path, const struct gf_tr_header *h);
/* Append one record; the payload is given in up to three pieces (NULL/0
 * for unused ones) so callers need not assemble it.  Thread-safe.
 * 0 or -errno (the writer stops recording after the first error). */
int gf_tr_write(struct gf_tr_writer *w, enum gf_rec_type type, const void *a, size_t alen,
                const void *b, size_t blen, const void *c, size_t clen);
/* Record a mutation (GF_REC_MUT). */
int gf_tr_write_mut(struct gf_tr_writer *w, const struct gf_mutation *m);
/* Flush and close; returns 0 or -errno of the first failed write. */
int gf_tr_close(struct gf_tr_writer *w);

/* ---- reading ---- */
struct gf_tr_record {
    enum gf_rec_type type;
    uint32_t len;
    uint8_t *data; /* len bytes, owned by the reader until the next call */
};
struct gf_tr_reader;
struct gf_tr_reader *gf_tr_open(const char *path, struct gf_tr_header *h);
/* 1: *rec filled; 0: end of file (or a truncated tail); -EINVAL: not a
 * transcript / corrupt record header. */
int gf_tr_next(struct gf_tr_reader *r, struct gf_tr_record *rec);
void gf_tr_close_reader(struct gf_tr_reader *r);

/* A GF_REC_MUT payload -> *m; false when it is inconsistent. */
bool gf_tr_decode_mut(const uint8_t *in, size_t len, struct gf_mutation *m);
/* Every GF_REC_MUT of path, in file order (*out malloc'ed, free() it).
 * Returns the count, or -errno / -EINVAL. */
int gf_tr_load_mutations(const char *path, struct gf_tr_header *h, struct gf_mutation **out);
/* Write a transcript holding only header h, a note and the given
 * mutations (what the minimizer produces). 0 or -errno. */
int gf_tr_save_mutations(const char *path, const struct gf_tr_header *h,
                         const struct gf_mutation *m, size_t n);

#endif
