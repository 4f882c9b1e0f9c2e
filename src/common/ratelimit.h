/* SPDX-License-Identifier: MIT */
/*
 * A token bucket for log lines that something outside vmbusd can trigger
 * (a guest, a VMM, a flood of connections): up to `burst` lines at once,
 * `rate` more per second, and a count of the lines dropped meanwhile, so
 * the log says how many once lines flow again.  Not locked: the owner
 * serialises calls.
 */
#ifndef VMBUSD_RATELIMIT_H
#define VMBUSD_RATELIMIT_H

#include <stdbool.h>
#include <stdint.h>

struct ratelimit {
    unsigned burst, rate; /* set by the owner; the rest starts zeroed */
    bool started;         /* false: not used yet, starts full */
    unsigned tokens;
    uint64_t stamp_ms;    /* last refill */
    uint64_t dropped;
};

#define RATELIMIT_INIT(burst_, rate_) {.burst = (burst_), .rate = (rate_)}

/* May a line be logged now (CLOCK_MONOTONIC)?  When it may, *dropped (if
 * not NULL) gets the number of lines refused since the last one allowed (0
 * if none), for the caller to report first. */
bool ratelimit_allow(struct ratelimit *rl, uint64_t *dropped);
/* The same at now_ms of the caller's own monotonic clock (a VSP's clock
 * that tests replace). */
bool ratelimit_allow_at(struct ratelimit *rl, uint64_t now_ms, uint64_t *dropped);

#endif
