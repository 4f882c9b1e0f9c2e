/* SPDX-License-Identifier: MIT */
/* vmbusd-bench's storvsp figures: the simulated storvsc guest
 * (tests/sim/sim_storvsc.h) against storvsp in an in-process vmbusd, the
 * disk an image file; the same loads as stor_load.h, over 1..N channels. */
#ifndef VMBUSD_BENCH_STOR_SIM_H
#define VMBUSD_BENCH_STOR_SIM_H

#include "stor_load.h"

/* Run load through storvsp over `channels` channels (the primary and
 * channels - 1 subchannels), requests spread round-robin.  Requests larger
 * than storvsp's max_transfer_bytes are split like Linux splits them.
 * 0, or -1 (printed). */
int stor_sim_run(const char *path, uint64_t size, int channels, const struct stor_load *load,
                 struct stor_load_result *res);

#endif
