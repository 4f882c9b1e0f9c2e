/* SPDX-License-Identifier: MIT */
/* ddmin over index lists (minimize.h). */
#include "guestfuzz/minimize.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* Chunk i of n (near-equal sizes) of c[0..len). */
static void chunk(size_t len, size_t n, size_t i, size_t *start, size_t *end)
{
    *start = len * i / n;
    *end = len * (i + 1) / n;
}

long gf_minimize(size_t total, gf_oracle_fn oracle, void *arg, size_t *out, unsigned *runs)
{
    unsigned dummy;
    if (!runs)
        runs = &dummy;
    *runs = 0;
    size_t *c = malloc((total ? total : 1) * sizeof(*c));
    size_t *t = malloc((total ? total : 1) * sizeof(*t));
    if (!c || !t) {
        free(c);
        free(t);
        return -ENOMEM;
    }
    size_t len = total;
    for (size_t i = 0; i < total; i++)
        c[i] = i;
    long ret = 0;

    /* No mutation at all may be enough (a crash the guest has anyway). */
    (*runs)++;
    int r = oracle(c, 0, arg);
    if (r < 0) {
        ret = r;
        goto out;
    }
    if (r > 0) {
        len = 0;
        goto done;
    }
    size_t n = 2;
    while (len >= 2) {
        if (n > len)
            n = len;
        bool reduced = false;
        /* A chunk alone... */
        for (size_t i = 0; i < n && !reduced; i++) {
            size_t s, e;
            chunk(len, n, i, &s, &e);
            (*runs)++;
            r = oracle(c + s, e - s, arg);
            if (r < 0) {
                ret = r;
                goto out;
            }
            if (r > 0) {
                memmove(c, c + s, (e - s) * sizeof(*c));
                len = e - s;
                n = 2;
                reduced = true;
            }
        }
        /* ...or everything but a chunk. */
        for (size_t i = 0; i < n && !reduced; i++) {
            size_t s, e, tl = 0;
            chunk(len, n, i, &s, &e);
            for (size_t j = 0; j < len; j++)
                if (j < s || j >= e)
                    t[tl++] = c[j];
            (*runs)++;
            r = oracle(t, tl, arg);
            if (r < 0) {
                ret = r;
                goto out;
            }
            if (r > 0) {
                memcpy(c, t, tl * sizeof(*c));
                len = tl;
                n = n - 1 < 2 ? 2 : n - 1;
                reduced = true;
            }
        }
        if (!reduced) {
            if (n >= len)
                break; /* every single element is needed: 1-minimal */
            n = 2 * n < len ? 2 * n : len;
        }
    }
    /* One element left: the empty-set run above showed it is needed. */
done:
    memcpy(out, c, len * sizeof(*c));
    ret = (long)len;
out:
    free(c);
    free(t);
    return ret;
}
