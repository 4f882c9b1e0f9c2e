/* SPDX-License-Identifier: MIT */
/*
 * The per-channel copy buffer for inbound packets (xp_handle_open): its
 * size does not follow the guest's ring size past the longest possible
 * packet, and an allocation failure fails that open (logged with the VM and
 * relid) instead of leaving a NULL buffer behind.
 *
 * Built with -Wl,--wrap=malloc: every malloc of the test and of the
 * statically linked daemon passes through __wrap_malloc below, which
 * records the largest request and can fail requests of one size.
 */
#include "sim_test.h"

#include <stdatomic.h>

#include "xpartition/ring.h"

void *__real_malloc(size_t n);
void *__wrap_malloc(size_t n);

static atomic_size_t largest;  /* largest request since the last reset */
static atomic_size_t fail_size; /* requests of exactly this size fail (0: none) */

void *__wrap_malloc(size_t n)
{
    size_t cur = atomic_load(&largest);
    while (n > cur && !atomic_compare_exchange_weak(&largest, &cur, n))
        ;
    if (n && n == atomic_load(&fail_size))
        return NULL;
    return __real_malloc(n);
}

/* A 16 MiB guest->host ring: the copy buffer stays at the longest packet. */
static void test_pktbuf_capped(void **state)
{
    struct fx *f = *state;
    struct sim_vm *vm = sim_up(f->d, VM_A, VMBUS_VERSION_WIN10_V5_3);
    SIM_ASSERT(vm != NULL, "bring up");
    atomic_store(&largest, 0);
    struct sim_chan *ch = sim_open_echo(vm, 0, 4096, 20);
    SIM_ASSERT(ch != NULL, "open with a 16 MiB inbound ring");
    size_t seen = atomic_load(&largest);
    SIM_ASSERT(seen <= RING_MAX_PKT_LEN,
               "opening a channel with a 16 MiB ring allocated %zu bytes at once (cap %u)", seen,
               RING_MAX_PKT_LEN);
    SIM_ASSERT(sim_echo_roundtrip(ch, 65000, 1, true) == 0, "echo after open");
    SIM_ASSERT(sim_chan_close(ch) == 0, "close");
    sim_vm_free(vm);
}

/* The buffer cannot be allocated: that open fails, the VM and others go on. */
static void test_pktbuf_alloc_failure(void **state)
{
    struct fx *f = *state;
    fx_good_start(f);
    struct sim_vm *vm = sim_up(f->d, VM_B, VMBUS_VERSION_WIN10_V5_3);
    SIM_ASSERT(vm != NULL, "bring up");
    struct sim_offer *of = sim_offer_by_class(vm, sim_echo_class(), 0);
    SIM_ASSERT(of != NULL, "echo offer");
    /* 64 send pages = header + 63 data pages: a 258048-byte buffer */
    atomic_store(&fail_size, 63 * HV_PAGE_SIZE);
    int st;
    struct sim_chan *ch = sim_chan_open(vm, of->relid, 64, 4, &st);
    atomic_store(&fail_size, 0);
    SIM_ASSERT(ch == NULL && st != 0, "the open succeeded without a packet buffer (status %#x)",
               st);
    char relid[16];
    snprintf(relid, sizeof(relid), "#%u", of->relid);
    SIM_ASSERT(sim_log_count(LOG_ERR, VM_B, relid, "packet buffer") > 0,
               "no error naming the VM and relid");
    ch = sim_chan_open(vm, of->relid, 64, 4, &st);
    SIM_ASSERT(ch != NULL, "open once memory is back: status %d", st);
    SIM_ASSERT(sim_echo_roundtrip(ch, 4000, 2, false) == 0, "echo after the failed open");
    fx_good_check(f, "a failed packet buffer allocation in another VM");
    sim_vm_free(vm);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_pktbuf_capped, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_pktbuf_alloc_failure, fx_setup, fx_teardown),
    };
    SIM_RUN("sim_pktbuf", tests);
}
