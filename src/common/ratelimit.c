/* SPDX-License-Identifier: MIT */
#include "common/ratelimit.h"

#include <time.h>

bool ratelimit_allow(struct ratelimit *rl, uint64_t *dropped)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ratelimit_allow_at(rl, (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000,
                              dropped);
}

bool ratelimit_allow_at(struct ratelimit *rl, uint64_t now_ms, uint64_t *dropped)
{
    if (!rl->started) {
        rl->started = true;
        rl->stamp_ms = now_ms;
        rl->tokens = rl->burst;
    } else if (now_ms < rl->stamp_ms) {
        rl->stamp_ms = now_ms; /* a clock that went back earns nothing */
    } else if (rl->rate) {
        uint64_t refill = (now_ms - rl->stamp_ms) * rl->rate / 1000;
        if (refill) {
            rl->tokens = refill >= rl->burst - rl->tokens ? rl->burst
                                                          : rl->tokens + (unsigned)refill;
            /* keep the fraction of a token already earned */
            rl->stamp_ms += refill * 1000 / rl->rate;
        }
    }
    if (rl->tokens == 0) {
        rl->dropped++;
        return false;
    }
    rl->tokens--;
    if (dropped)
        *dropped = rl->dropped;
    rl->dropped = 0;
    return true;
}
