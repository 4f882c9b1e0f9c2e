/* SPDX-License-Identifier: MIT */
/* src/guestfuzz/minimize.c: ddmin on synthetic oracles. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "guestfuzz/minimize.h"

struct need {
    size_t want[8];
    size_t nwant;
    unsigned calls;
};

/* Crash iff every wanted index is in the subset. */
static int needs_all(const size_t *idx, size_t n, void *arg)
{
    struct need *w = arg;
    w->calls++;
    for (size_t i = 0; i < w->nwant; i++) {
        bool found = false;
        for (size_t j = 0; j < n; j++)
            found |= idx[j] == w->want[i];
        if (!found)
            return 0;
    }
    /* The subset is sorted and has no duplicates. */
    for (size_t j = 1; j < n; j++)
        assert_true(idx[j - 1] < idx[j]);
    return 1;
}

static void test_a_and_c(void **state)
{
    (void)state;
    /* Mutations A..H; the guest crashes iff A and C are both applied. */
    enum { A, B, C, D, E, F, G, H, N };
    struct need w = {.want = {A, C}, .nwant = 2};
    size_t out[N];
    unsigned runs;
    long k = gf_minimize(N, needs_all, &w, out, &runs);
    assert_int_equal(k, 2);
    assert_int_equal(out[0], A);
    assert_int_equal(out[1], C);
    assert_int_equal(runs, w.calls);
}

static void test_larger_lists(void **state)
{
    (void)state;
    size_t out[300];
    struct need one = {.want = {137}, .nwant = 1};
    assert_int_equal(gf_minimize(300, needs_all, &one, out, NULL), 1);
    assert_int_equal(out[0], 137);
    struct need three = {.want = {0, 150, 299}, .nwant = 3};
    assert_int_equal(gf_minimize(300, needs_all, &three, out, NULL), 3);
    assert_int_equal(out[0], 0);
    assert_int_equal(out[1], 150);
    assert_int_equal(out[2], 299);
    /* Far fewer runs than subsets: ddmin is about n log n here. */
    assert_true(three.calls < 300);
}

static void test_empty_and_errors(void **state)
{
    (void)state;
    size_t out[4];
    /* Crashes with no mutation at all: nothing is needed. */
    struct need none = {.nwant = 0};
    assert_int_equal(gf_minimize(4, needs_all, &none, out, NULL), 0);
    /* Every element needed. */
    struct need all = {.want = {0, 1, 2, 3}, .nwant = 4};
    assert_int_equal(gf_minimize(4, needs_all, &all, out, NULL), 4);
}

static int failing(const size_t *idx, size_t n, void *arg)
{
    (void)idx;
    (void)arg;
    return n < 3 ? -EIO : 0;
}

static void test_oracle_error(void **state)
{
    (void)state;
    size_t out[8];
    assert_int_equal(gf_minimize(8, failing, NULL, out, NULL), -EIO);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_and_c),
        cmocka_unit_test(test_larger_lists),
        cmocka_unit_test(test_empty_and_errors),
        cmocka_unit_test(test_oracle_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
