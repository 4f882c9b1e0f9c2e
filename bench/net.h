/* SPDX-License-Identifier: MIT */
/* vmbusd-bench --net: what the socketpair run (net.c) and the TAP run
 * (net_tap.c) share. */
#ifndef VMBUSD_BENCH_NET_H
#define VMBUSD_BENCH_NET_H

#include <stdint.h>

#include "sim_netvsc.h"

/* Guest -> backend for `seconds`: frame[0..len) with per-packet info ppi
 * (may be NULL) through send sections, or GPA-direct ranges when it does
 * not fit one, up to 128 in flight.  A thread drains peer unless it is -1.
 * Returns the completions the guest got per second. */
double guest_tx(struct sim_netvsc *nv, int peer, const uint8_t *frame, uint32_t len,
                const void *ppi, uint32_t ppi_len, double seconds);

/* The TAP figures (net_tap.c), in a network namespace of this process's
 * own: 0, or 1 on a failure (a skip is 0 with a line saying why). */
int net_tap(void);

#endif
