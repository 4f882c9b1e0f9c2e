/* SPDX-License-Identifier: MIT */
/*
 * The one PRNG of a fuzzing run: xoshiro256** seeded through splitmix64
 * (both public-domain algorithms, written here from their definitions).
 * Deterministic: the same seed gives the same sequence on every machine.
 */
#ifndef VMBUSD_GUESTFUZZ_PRNG_H
#define VMBUSD_GUESTFUZZ_PRNG_H

#include <stdint.h>

struct gf_rng {
    uint64_t s[4];
};

uint64_t gf_splitmix64(uint64_t *state);
void gf_rng_seed(struct gf_rng *r, uint64_t seed);
uint64_t gf_rng_next(struct gf_rng *r);
/* Uniform in [0, n) (n > 0), without modulo bias. */
uint64_t gf_rng_below(struct gf_rng *r, uint64_t n);
/* true with probability p (0..1). */
int gf_rng_chance(struct gf_rng *r, double p);

#endif
