/* SPDX-License-Identifier: MIT */
/*
 * The receive sub-allocation pool shared by a NIC's queues: a packet is
 * freed only by a completion on the queue that sent it, and a queue that
 * closes gives back what it still had in the guest's hands.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "vsp/netvsp/rxpool.h"

static void test_owners(void **state)
{
    struct rx_pool pl;
    assert_int_equal(rx_pool_init(&pl, 64), 0);
    uint32_t a[3], b[2];
    for (int i = 0; i < 3; i++)
        assert_true(rx_pool_get(&pl, false, &a[i]));
    for (int i = 0; i < 2; i++)
        assert_true(rx_pool_get(&pl, false, &b[i]));
    uint64_t ta = rx_pool_send(&pl, a, 3, 1);
    uint64_t tb = rx_pool_send(&pl, b, 2, 2);
    assert_int_equal(rx_pool_in_flight(&pl), 5);
    /* queue 2 cannot complete queue 1's packet, nor queue 1 a link */
    assert_int_equal(rx_pool_complete(&pl, ta, 2), -EINVAL);
    assert_int_equal(rx_pool_complete(&pl, a[1], 1), -EINVAL);
    assert_int_equal(rx_pool_complete(&pl, ta, 1), 3);
    assert_int_equal(rx_pool_complete(&pl, ta, 1), -EINVAL);
    /* queue 2 closes: its packet is free, a late completion refused */
    assert_int_equal(rx_pool_release_queue(&pl, 1), 0);
    assert_int_equal(rx_pool_release_queue(&pl, 2), 2);
    assert_int_equal(rx_pool_complete(&pl, tb, 2), -EINVAL);
    assert_int_equal(rx_pool_in_flight(&pl), 0);
    assert_int_equal(pl.nfree, 64);
    rx_pool_fini(&pl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_owners),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
