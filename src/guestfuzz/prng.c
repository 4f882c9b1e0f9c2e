/* SPDX-License-Identifier: MIT */
/* splitmix64 and xoshiro256** from their published definitions (prng.h). */
#include "guestfuzz/prng.h"

uint64_t gf_splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void gf_rng_seed(struct gf_rng *r, uint64_t seed)
{
    /* splitmix spreads any seed, 0 included, over the 256-bit state, which
     * must not be all zero (it never is: splitmix outputs are a bijection
     * of distinct counters). */
    uint64_t s = seed;
    for (int i = 0; i < 4; i++)
        r->s[i] = gf_splitmix64(&s);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t gf_rng_next(struct gf_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

uint64_t gf_rng_below(struct gf_rng *r, uint64_t n)
{
    if (n <= 1)
        return 0;
    /* Reject the top partial block so every residue is equally likely. */
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t v;
    do
        v = gf_rng_next(r);
    while (v >= limit);
    return v % n;
}

int gf_rng_chance(struct gf_rng *r, double p)
{
    if (p <= 0)
        return 0;
    if (p >= 1)
        return 1;
    /* 53 random bits -> [0, 1) */
    double u = (double)(gf_rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
    return u < p;
}
