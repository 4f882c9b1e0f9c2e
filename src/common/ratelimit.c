/* SPDX-License-Identifier: MIT */
#include "common/ratelimit.h"

#include <time.h>

bool ratelimit_allow(struct ratelimit *rl, uint64_t *dropped)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t now_ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
    if (rl->stamp_ms == 0) {
        rl->stamp_ms = now_ms;
        rl->tokens = rl->burst;
    }
    uint64_t refill = (now_ms - rl->stamp_ms) * rl->rate / 1000;
    if (refill) {
        rl->tokens = rl->tokens + refill > rl->burst ? rl->burst : rl->tokens + (unsigned)refill;
        rl->stamp_ms = now_ms;
    }
    if (rl->tokens == 0) {
        rl->dropped++;
        return false;
    }
    rl->tokens--;
    *dropped = rl->dropped;
    rl->dropped = 0;
    return true;
}
