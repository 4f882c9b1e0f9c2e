/* SPDX-License-Identifier: MIT */
/*
 * Delta debugging (ddmin) over a list of mutations: the smallest subset
 * for which an oracle still reports a crash, 1-minimal (removing any one
 * element loses it).  The oracle sees subsets as sorted index lists into
 * the original list, so the order of the kept mutations never changes.
 */
#ifndef VMBUSD_GUESTFUZZ_MINIMIZE_H
#define VMBUSD_GUESTFUZZ_MINIMIZE_H

#include <stddef.h>

/* 1: the subset still crashes; 0: it does not; < 0: the oracle failed
 * (the minimization stops with that error). */
typedef int (*gf_oracle_fn)(const size_t *idx, size_t n, void *arg);

/* Minimize {0 .. total-1}; the caller has checked that the full set
 * crashes.  out (total entries) receives the kept indices; returns their
 * count, or the oracle's error.  *runs (may be NULL) counts oracle calls. */
long gf_minimize(size_t total, gf_oracle_fn oracle, void *arg, size_t *out, unsigned *runs);

#endif
