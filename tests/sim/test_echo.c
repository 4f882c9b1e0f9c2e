/* SPDX-License-Identifier: MIT */
/*
 * Data path through the echo VSP: packet sizes, ring wrap, flow control
 * both ways, signalling rules, GPADL sizes, memory holes, reopen.
 */
#include "sim_test.h"

#include <unistd.h>

static struct sim_vm *up53(struct fx *f, const char *name)
{
    struct sim_vm *vm = sim_up(f->d, name, VMBUS_VERSION_WIN10_V5_3);
    SIM_ASSERT(vm != NULL, "bring up %s", name);
    return vm;
}

static void test_sizes(void **state)
{
    struct fx *f = *state;
    struct sim_vm *vm = up53(f, VM_A);
    struct sim_chan *ch = sim_open_echo(vm, 0, 20, 20); /* 76 KiB data each way */
    SIM_ASSERT(ch != NULL, "open");
    static const uint32_t sizes[] = {0,    1,    7,    8,     9,     63,    64,   255, 256,
                                     1024, 4095, 4096, 4097, 16000, 32768, 65000, 65536};
    uint64_t t = 1;
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        SIM_ASSERT(sim_echo_roundtrip(ch, sizes[i], t++, true) == 0, "size %u comp", sizes[i]);
        SIM_ASSERT(sim_echo_roundtrip(ch, sizes[i], t++, false) == 0, "size %u inband",
                   sizes[i]);
    }
    SIM_ASSERT(vm->bad_host_msgs == 0, "malformed host messages");
    SIM_ASSERT(sim_chan_close(ch) == 0, "close");
    sim_vm_free(vm);
}

static void test_wrap(void **state)
{
    struct fx *f = *state;
    struct sim_vm *vm = up53(f, VM_A);
    struct sim_chan *ch = sim_open_echo(vm, 0, 2, 2); /* 4 KiB data each way */
    SIM_ASSERT(ch != NULL, "open");
    uint64_t t = 1;
    /* odd sizes so packets start everywhere in the ring */
    for (uint32_t i = 0; i < 400; i++) {
        uint32_t len = 1 + (i * 37) % 900;
        SIM_ASSERT(sim_echo_roundtrip(ch, len, t++, i & 1) == 0, "packet %u len %u", i, len);
    }
    SIM_ASSERT(sim_echo_stream(ch, 300, 333, false) == 0, "stream over wrap");
    sim_vm_free(vm);
}

static void test_flow_control(void **state)
{
    struct fx *f = *state;
    struct sim_vm *vm = up53(f, VM_A);
    struct sim_chan *ch = sim_open_echo(vm, 0, 2, 2);
    SIM_ASSERT(ch != NULL, "open");
    SIM_ASSERT(sim_echo_stream(ch, 3000, 248, true) == 0, "3000 x 248 B");
    SIM_ASSERT(sim_echo_stream(ch, 200, 1800, false) == 0, "200 x 1800 B");
    /* asymmetric rings: big guest->host, tiny host->guest */
    struct sim_chan *c1 = sim_open_echo(vm, 1, 16, 2);
    SIM_ASSERT(c1 != NULL, "open asym");
    SIM_ASSERT(sim_echo_stream(c1, 2000, 504, true) == 0, "asym stream");
    SIM_ASSERT(sim_chan_close(c1) == 0, "close asym");
    c1 = sim_open_echo(vm, 1, 2, 16);
    SIM_ASSERT(c1 != NULL, "open asym 2");
    SIM_ASSERT(sim_echo_stream(c1, 2000, 504, false) == 0, "asym stream 2");
    SIM_ASSERT(vm->bad_host_msgs == 0, "malformed host messages");
    sim_vm_free(vm);
}

/* Host->guest ring: with interrupt_mask set the host must not signal,
 * but the data must still arrive; after unmasking signals resume. */
static void test_interrupt_mask(void **state)
{
    struct fx *f = *state;
    struct sim_vm *vm = up53(f, VM_A);
    struct sim_chan *ch = sim_open_echo(vm, 0, 4, 4);
    SIM_ASSERT(ch != NULL, "open");
    __atomic_store_n(&ch->in.hdr->interrupt_mask, 1, __ATOMIC_SEQ_CST);
    uint8_t buf[64];
    sim_fill_pattern(buf, sizeof(buf), 5);
    uint64_t ev = ch->events;
    SIM_ASSERT(sim_chan_send(ch, VM_PKT_DATA_INBAND, 0, 5, buf, sizeof(buf)) == 0, "send");
    /* the echo lands in the ring without an event */
    uint64_t end = sim_now_ms() + 2000;
    while (sim_now_ms() < end && ch->in.hdr->write_index == ch->in.priv_read)
        sim_poll(vm, 10);
    SIM_ASSERT(ch->in.hdr->write_index != ch->in.priv_read, "echo never written");
    for (int i = 0; i < 10; i++)
        sim_poll(vm, 10);
    SIM_ASSERT(ch->events == ev, "host signalled a masked ring (%llu events)",
               (unsigned long long)(ch->events - ev));
    struct vmpacket_descriptor d;
    uint32_t len;
    uint8_t in[128];
    SIM_ASSERT(sim_chan_try_recv(ch, &d, in, sizeof(in), &len) == 1, "read echo");
    SIM_ASSERT(d.trans_id == 5 && len == 64 && memcmp(in, buf, 64) == 0, "echo content");
    __atomic_store_n(&ch->in.hdr->interrupt_mask, 0, __ATOMIC_SEQ_CST);
    SIM_ASSERT(sim_echo_roundtrip(ch, 64, 6, true) == 0, "echo after unmask");
    sim_vm_free(vm);
}

/* A VMM that does not route HvSignalEvent through the eventfds uses
 * VU_MSG_SIGNAL_EVENT instead. */
static void test_signal_event_fallback(void **state)
{
    struct fx *f = *state;
    struct sim_vm *vm = up53(f, VM_A);
    struct sim_chan *ch = sim_open_echo(vm, 0, 4, 4);
    SIM_ASSERT(ch != NULL, "open");
    SIM_ASSERT(vm->nevfd > 0, "vmbusd registered no eventfd");
    SIM_ASSERT(sim_echo_roundtrip(ch, 64, 1, true) == 0, "echo via eventfd");
    for (int i = 0; i < vm->nevfd; i++)
        close(vm->evfd[i].fd);
    vm->nevfd = 0;
    uint64_t before = vm->signal_event_msgs;
    /* wait until the host ended its read batch (ring drained, interrupt_mask
     * back to 0): only then must the guest's next packet signal */
    uint64_t end = sim_now_ms() + 2000;
    while ((__atomic_load_n(&ch->out.hdr->interrupt_mask, __ATOMIC_SEQ_CST) ||
            __atomic_load_n(&ch->out.hdr->read_index, __ATOMIC_SEQ_CST) !=
                ch->out.hdr->write_index) &&
           sim_now_ms() < end)
        sim_poll(vm, 1);
    SIM_ASSERT(ch->out.hdr->interrupt_mask == 0, "host keeps interrupt_mask set while idle");
    SIM_ASSERT(sim_echo_roundtrip(ch, 64, 2, true) == 0, "echo via VU_MSG_SIGNAL_EVENT");
    SIM_ASSERT(vm->signal_event_msgs > before, "fallback path not used");
    SIM_ASSERT(sim_echo_stream(ch, 300, 200, false) == 0, "stream via VU_MSG_SIGNAL_EVENT");
    sim_vm_free(vm);
}

static void test_big_gpadls(void **state)
{
    struct fx *f = *state;
    struct sim_vm *vm = up53(f, VM_A);
    struct sim_offer *o = sim_offer_by_class(vm, sim_echo_class(), 0);
    SIM_ASSERT(o != NULL, "offer");
    static const uint32_t sizes[] = {1, 25, 26, 27, 54, 55, 1000, 8190};
    uint32_t h[8];
    for (size_t i = 0; i < 8; i++) {
        int st = sim_gpadl_create_pages(vm, o->relid, sizes[i], &h[i], NULL);
        SIM_ASSERT(st == 0, "GPADL of %u pages: status %d", sizes[i], st);
    }
    for (size_t i = 0; i < 8; i++)
        SIM_ASSERT(sim_gpadl_teardown(vm, o->relid, h[i]) == 0, "teardown %zu", i);
    /* a channel still opens and works afterwards */
    struct sim_chan *ch = sim_open_echo(vm, 0, 30, 30);
    SIM_ASSERT(ch != NULL, "open with 60-page ring GPADL");
    SIM_ASSERT(sim_echo_roundtrip(ch, 100000, 1, true) == 0, "100 KB echo");
    sim_vm_free(vm);
}

/* RAM in two regions with a hole; the ring's pages straddle it. */
static void test_memory_hole(void **state)
{
    struct fx *f = *state;
    struct sim_vm_opts o = {.name = VM_A, .hole_start = 0x200000, .hole_size = 0x300000};
    struct sim_vm *vm = sim_vm_new(f->d, &o);
    SIM_ASSERT(vm != NULL, "VM with hole");
    SIM_ASSERT(sim_bringup(vm, VMBUS_VERSION_WIN10_V5_3) >= ECHO_CHANNELS, "bringup");
    vm->alloc_next = 0x200000 - 3 * HV_PAGE_SIZE; /* ring pages 0-2 below, rest above */
    struct sim_chan *ch = sim_open_echo(vm, 0, 4, 4);
    SIM_ASSERT(ch != NULL, "open straddling ring");
    SIM_ASSERT(sim_page_pfn(vm, ch->ring_off + 7 * HV_PAGE_SIZE) >= (0x500000 >> 12),
               "ring does not straddle the hole");
    SIM_ASSERT(sim_echo_stream(ch, 500, 700, true) == 0, "stream across the hole");
    sim_vm_free(vm);
}

static void test_reopen_many(void **state)
{
    struct fx *f = *state;
    struct sim_vm *vm = up53(f, VM_A);
    for (int i = 0; i < 20; i++) {
        uint32_t pages = 2 + (uint32_t)(i % 5) * 3;
        struct sim_chan *ch = sim_open_echo(vm, i % 2, pages, pages + 1);
        SIM_ASSERT(ch != NULL, "open %d", i);
        SIM_ASSERT(sim_echo_roundtrip(ch, 777, (uint64_t)i, i & 1) == 0, "echo %d", i);
        SIM_ASSERT(sim_chan_close(ch) == 0, "close %d", i);
    }
    SIM_ASSERT(vm->bad_host_msgs == 0, "malformed host messages");
    sim_vm_free(vm);
}

/* Both channels of one VM interleaved, one of them on vCPU 1. */
static void test_two_channels(void **state)
{
    struct fx *f = *state;
    struct sim_vm *vm = up53(f, VM_A);
    struct sim_chan *c0 = sim_open_echo(vm, 0, 4, 4);
    vm->target_vcpu = 1;
    struct sim_chan *c1 = sim_open_echo(vm, 1, 4, 4);
    vm->target_vcpu = 0;
    SIM_ASSERT(c0 && c1, "open both");
    uint64_t i0 = vm->vp[0].interrupts, i1 = vm->vp[1].interrupts;
    for (uint64_t t = 1; t <= 100; t++) {
        SIM_ASSERT(sim_echo_roundtrip(c0, 64 + (uint32_t)t, t, true) == 0, "c0 %llu",
                   (unsigned long long)t);
        SIM_ASSERT(sim_echo_roundtrip(c1, 200 + (uint32_t)t, t, false) == 0, "c1 %llu",
                   (unsigned long long)t);
    }
    SIM_ASSERT(vm->vp[0].interrupts > i0 && vm->vp[1].interrupts > i1,
               "events not spread over target vCPUs");
    sim_vm_free(vm);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_sizes, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_wrap, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_flow_control, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_interrupt_mask, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_signal_event_fallback, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_big_gpadls, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_memory_hole, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_reopen_many, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_two_channels, fx_setup, fx_teardown),
    };
    SIM_RUN("sim_echo", tests);
}
