/* SPDX-License-Identifier: MIT */
/*
 * The VMM's plumbing (MEM_REGION, SINT_ROUTE, SYNIC_STATE) may come in any
 * order after HELLO, and the guest may already talk (INITIATE_CONTACT is a
 * hypercall: it needs none of it).  Whatever vmbusd produced before the
 * plumbing was complete must reach the guest once it is: a message placed
 * in the SIMP slot before the route existed raises its interrupt when the
 * route comes, and a SIMP announced before its memory is found when the
 * MEM_REGION comes.
 */
#include "sim_test.h"

enum step { MEM, ROUTE, SYNIC };
static const char *const step_name[] = {"MEM_REGION", "SINT_ROUTE", "SYNIC_STATE"};

static int send_step(struct sim_vm *vm, enum step s)
{
    switch (s) {
    case MEM:
        return sim_vmm_send_memory(vm);
    case ROUTE:
        return sim_vmm_send_routes(vm);
    default:
        return sim_vmm_send_synic(vm);
    }
}

/* One VM: HELLO, the three steps in `order` with INITIATE_CONTACT posted
 * before step `contact_at` (3: after all), then the guest must get its
 * VERSION_RESPONSE, its offers and an echo round trip. */
static void one_order(struct fx *f, const enum step order[3], int contact_at)
{
    char what[128];
    snprintf(what, sizeof(what), "%s%s, %s%s, %s%s%s", contact_at == 0 ? "contact, " : "",
             step_name[order[0]], contact_at == 1 ? "contact, " : "", step_name[order[1]],
             contact_at == 2 ? "contact, " : "", step_name[order[2]],
             contact_at == 3 ? ", contact" : "");
    struct sim_vm_opts o = {.name = "plumbing", .no_setup = true, .mem_size = 16u << 20};
    struct sim_vm *vm = sim_vm_new(f->d, &o);
    SIM_ASSERT(vm != NULL, "connect");
    vm->expect_offers = ECHO_CHANNELS;
    SIM_ASSERT(sim_vmm_hello(vm) == 0, "%s: HELLO", what);
    for (int i = 0; i <= 3; i++) {
        if (i == contact_at) {
            int st = sim_contact_post(vm, VMBUS_VERSION_WIN10_V5_3);
            SIM_ASSERT(st == 0, "%s: INITIATE_CONTACT post -> %d", what, st);
        }
        if (i < 3)
            SIM_ASSERT(send_step(vm, order[i]) == 0, "%s: send %s", what, step_name[order[i]]);
    }
    int r = sim_contact_wait(vm, VMBUS_VERSION_WIN10_V5_3);
    SIM_ASSERT(r == 1, "%s: no VERSION_RESPONSE (%d)", what, r);
    SIM_ASSERT(sim_request_offers(vm) >= ECHO_CHANNELS, "%s: offers", what);
    struct sim_chan *ch = sim_open_echo(vm, 0, 4, 4);
    SIM_ASSERT(ch != NULL, "%s: open echo", what);
    SIM_ASSERT(sim_echo_roundtrip(ch, 100, 1, true) == 0, "%s: echo", what);
    SIM_ASSERT(vm->bad_host_msgs == 0, "%s: malformed host messages", what);
    print_message("  %-70s ok\n", what);
    sim_vm_free(vm);
}

static void test_every_order(void **state)
{
    struct fx *f = *state;
    static const enum step perms[6][3] = {
        {MEM, ROUTE, SYNIC}, {MEM, SYNIC, ROUTE}, {ROUTE, MEM, SYNIC},
        {ROUTE, SYNIC, MEM}, {SYNIC, MEM, ROUTE}, {SYNIC, ROUTE, MEM},
    };
    for (int p = 0; p < 6; p++)
        for (int c = 0; c <= 3; c++)
            one_order(f, perms[p], c);
}

/* A SynIC re-announced (a new SIMP page) while messages wait keeps working
 * when the new page lies in memory that arrives later. */
static void test_simp_moves_to_late_memory(void **state)
{
    struct fx *f = *state;
    struct sim_vm_opts o = {.name = "plumbing-hole", .no_setup = true, .mem_size = 16u << 20,
                            .hole_start = 8u << 20, .hole_size = 8u << 20};
    struct sim_vm *vm = sim_vm_new(f->d, &o);
    SIM_ASSERT(vm != NULL, "connect");
    vm->expect_offers = ECHO_CHANNELS;
    SIM_ASSERT(sim_vmm_hello(vm) == 0, "HELLO");
    /* only the low region first; the SynIC pages move above the hole */
    struct vu_mem_region mr = {.guest_phys_addr = 0, .size = vm->hole_start, .fd_offset = 0};
    SIM_ASSERT(sim_vu_send(vm, VU_MSG_MEM_REGION, &mr, sizeof(mr), &vm->memfd, 1) > 0, "mem");
    SIM_ASSERT(sim_vmm_send_routes(vm) == 0, "routes");
    for (uint32_t i = 0; i < vm->vcpus; i++) {
        vm->vp[i].simp_off = vm->hole_start + 2 * i * HV_PAGE_SIZE;
        vm->vp[i].siefp_off = vm->hole_start + (2 * i + 1) * HV_PAGE_SIZE;
        memset(vm->mem + vm->vp[i].simp_off, 0, 2 * HV_PAGE_SIZE);
    }
    SIM_ASSERT(sim_vmm_send_synic(vm) == 0, "synic");
    SIM_ASSERT(sim_contact_post(vm, VMBUS_VERSION_WIN10_V5_3) == 0, "contact");
    mr = (struct vu_mem_region){.guest_phys_addr = vm->hole_start + vm->hole_size,
                                .size = vm->mem_size - vm->hole_start,
                                .fd_offset = vm->hole_start};
    SIM_ASSERT(sim_vu_send(vm, VU_MSG_MEM_REGION, &mr, sizeof(mr), &vm->memfd, 1) > 0,
               "high mem");
    SIM_ASSERT(sim_contact_wait(vm, VMBUS_VERSION_WIN10_V5_3) == 1, "no VERSION_RESPONSE");
    SIM_ASSERT(sim_request_offers(vm) >= ECHO_CHANNELS, "offers");
    sim_vm_free(vm);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_every_order, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_simp_moves_to_late_memory, fx_setup, fx_teardown),
    };
    SIM_RUN("sim_plumbing_order", tests);
}
