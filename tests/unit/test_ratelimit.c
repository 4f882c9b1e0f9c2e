/* SPDX-License-Identifier: MIT */
/* Unit tests for src/common/ratelimit.c: the token bucket for log lines
 * outsiders can trigger, driven with an explicit clock (ratelimit_allow_at);
 * ratelimit_allow is the same on CLOCK_MONOTONIC. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "common/ratelimit.h"

static unsigned allowed(struct ratelimit *rl, uint64_t now, unsigned tries)
{
    unsigned n = 0;
    for (unsigned i = 0; i < tries; i++)
        n += ratelimit_allow_at(rl, now, NULL);
    return n;
}

/* A fresh limiter lets the burst through at once, then nothing. */
static void test_burst_then_drop(void **state)
{
    (void)state;
    struct ratelimit rl = RATELIMIT_INIT(10, 1);
    assert_int_equal(allowed(&rl, 5000, 50), 10);
    assert_int_equal(rl.dropped, 40);
}

/* Tokens come back at `rate` a second, never above the burst. */
static void test_refill(void **state)
{
    (void)state;
    struct ratelimit rl = RATELIMIT_INIT(200, 20);
    uint64_t t = 1000;
    assert_int_equal(allowed(&rl, t, 300), 200);
    assert_int_equal(allowed(&rl, t + 49, 10), 0);  /* less than one token's time */
    assert_int_equal(allowed(&rl, t + 50, 10), 1);  /* one token per 50 ms */
    assert_int_equal(allowed(&rl, t + 1050, 100), 20);
    /* an hour later: full again, but only the burst */
    assert_int_equal(allowed(&rl, t + 3600000, 1000), 200);
}

/* Time already earned towards the next token is not lost by a refill. */
static void test_fraction_kept(void **state)
{
    (void)state;
    struct ratelimit rl = RATELIMIT_INIT(1, 1);
    assert_true(ratelimit_allow_at(&rl, 1000, NULL));
    assert_true(ratelimit_allow_at(&rl, 2500, NULL)); /* 1.5 s: one token, 0.5 s kept */
    assert_true(ratelimit_allow_at(&rl, 3000, NULL)); /* 0.5 s more: the next one */
    assert_false(ratelimit_allow_at(&rl, 3999, NULL));
}

/* The first line after a drop reports how many were dropped, once. */
static void test_suppressed_reported(void **state)
{
    (void)state;
    struct ratelimit rl = RATELIMIT_INIT(2, 1);
    uint64_t sup = 99;
    assert_true(ratelimit_allow_at(&rl, 100, &sup));
    assert_int_equal(sup, 0);
    assert_true(ratelimit_allow_at(&rl, 100, &sup));
    assert_false(ratelimit_allow_at(&rl, 100, &sup));
    assert_false(ratelimit_allow_at(&rl, 100, &sup));
    assert_false(ratelimit_allow_at(&rl, 100, &sup));
    assert_true(ratelimit_allow_at(&rl, 1100, &sup));
    assert_int_equal(sup, 3);
    assert_true(ratelimit_allow_at(&rl, 2100, &sup));
    assert_int_equal(sup, 0);
}

/* A clock starting at 0 (the IC unit tests' fake clock) is a clock like any
 * other; a clock going back refills nothing. */
static void test_clock_at_zero_and_back(void **state)
{
    (void)state;
    struct ratelimit rl = RATELIMIT_INIT(2, 1);
    assert_int_equal(allowed(&rl, 0, 5), 2);
    assert_int_equal(allowed(&rl, 0, 5), 0);
    assert_int_equal(allowed(&rl, 1000, 5), 1);
    assert_int_equal(allowed(&rl, 500, 5), 0);
}

/* rate 0: the burst is all there ever is. */
static void test_no_refill(void **state)
{
    (void)state;
    struct ratelimit rl = RATELIMIT_INIT(3, 0);
    assert_int_equal(allowed(&rl, 1, 5), 3);
    assert_int_equal(allowed(&rl, 1000000, 5), 0);
}

/* ratelimit_allow: the same bucket on the monotonic clock; dropped may be
 * NULL. */
static void test_monotonic_clock(void **state)
{
    (void)state;
    struct ratelimit rl = RATELIMIT_INIT(3, 0);
    uint64_t dropped = 7;
    assert_true(ratelimit_allow(&rl, &dropped));
    assert_int_equal(dropped, 0);
    assert_true(ratelimit_allow(&rl, NULL));
    assert_true(ratelimit_allow(&rl, NULL));
    assert_false(ratelimit_allow(&rl, &dropped));
    assert_int_equal(rl.dropped, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_burst_then_drop),
        cmocka_unit_test(test_refill),
        cmocka_unit_test(test_fraction_kept),
        cmocka_unit_test(test_suppressed_reported),
        cmocka_unit_test(test_clock_at_zero_and_back),
        cmocka_unit_test(test_no_refill),
        cmocka_unit_test(test_monotonic_clock),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
