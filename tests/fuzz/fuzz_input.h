/* SPDX-License-Identifier: MIT */
/*
 * Tiny input cursor for libFuzzer harnesses: take integers and byte runs
 * from the front of the fuzz input; when the input runs out every getter
 * returns zeros, so a harness never has to special-case short inputs.
 */
#ifndef VMBUSD_FUZZ_INPUT_H
#define VMBUSD_FUZZ_INPUT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Abort (a crash libFuzzer records) when a harness invariant breaks; works
 * with NDEBUG too. */
#define FUZZ_CHECK(cond)                                                                    \
    do {                                                                                    \
        if (!(cond))                                                                        \
            fuzz_check_failed(#cond, __FILE__, __LINE__);                                   \
    } while (0)

#include <stdio.h>
#include <stdlib.h>

static inline void fuzz_check_failed(const char *what, const char *file, int line)
{
    fprintf(stderr, "%s:%d: invariant broken: %s\n", file, line, what);
    abort();
}

struct fuzz_in {
    const uint8_t *p;
    size_t left;
};

static inline size_t fuzz_take(struct fuzz_in *in, void *dst, size_t n)
{
    size_t k = n < in->left ? n : in->left;
    if (k)
        memcpy(dst, in->p, k);
    if (k < n)
        memset((uint8_t *)dst + k, 0, n - k);
    in->p += k;
    in->left -= k;
    return k;
}

static inline uint8_t fuzz_u8(struct fuzz_in *in)
{
    uint8_t v;
    fuzz_take(in, &v, 1);
    return v;
}

static inline uint16_t fuzz_u16(struct fuzz_in *in)
{
    uint16_t v;
    fuzz_take(in, &v, 2);
    return v;
}

static inline uint32_t fuzz_u32(struct fuzz_in *in)
{
    uint32_t v;
    fuzz_take(in, &v, 4);
    return v;
}

static inline uint64_t fuzz_u64(struct fuzz_in *in)
{
    uint64_t v;
    fuzz_take(in, &v, 8);
    return v;
}

#endif
