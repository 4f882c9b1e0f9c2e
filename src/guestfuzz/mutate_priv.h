/* SPDX-License-Identifier: MIT */
/*
 * Helpers the mutators share (mutate.c, mutate_vsp.c): edge values and
 * little-endian patches of a mutation's edit.
 */
#ifndef VMBUSD_GUESTFUZZ_MUTATE_PRIV_H
#define VMBUSD_GUESTFUZZ_MUTATE_PRIV_H

#include <stddef.h>
#include <stdint.h>

#include "guestfuzz/mutate.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* A value near cur, random, or a classic edge (0, 0x7fffffff, ~0...),
 * truncated to size (1, 2 or 4) bytes. */
uint32_t gf_pick_edge(struct gf_rng *rng, uint32_t cur, unsigned size);
/* size bytes at p, little endian. */
uint32_t gf_load_le(const uint8_t *p, unsigned size);
/* Patch v as size little-endian bytes at off (dropped when m is full). */
void gf_patch_le(struct gf_mutation *m, uint32_t off, uint32_t v, unsigned size);
/* Start m as a PATCH edit of a len-byte action by mutator which. */
void gf_begin_patch(struct gf_mutation *m, size_t len, enum gf_mutator which);

#endif
