/* SPDX-License-Identifier: MIT */
/*
 * Every VMBus protocol version end to end: negotiate with the version's
 * connection-id rules, request offers, GPADLs (single and multi-body), open,
 * echo, close, reopen, MODIFYCHANNEL (>= 4.1; response >= 5.3), UNLOAD
 * (>= 3.0) or VMM reset (older), reconnect.
 */
#include "sim_test.h"

#include <time.h>

static void full_flow(void **state, uint32_t v)
{
    struct fx *f = *state;
    struct sim_vm *vm = sim_vm_create(f->d, VM_A);
    SIM_ASSERT(vm != NULL, "create VM");

    /* negotiate */
    int r = sim_connect_version(vm, v);
    SIM_ASSERT(r == 1, "version %s not accepted (%d)", sim_version_str(v), r);
    if (v >= VMBUS_VERSION_WIN10_V5)
        SIM_ASSERT(vm->msg_conn_id != 0 && vm->msg_conn_id < (1u << 24),
                   "msg_conn_id %u", vm->msg_conn_id);
    else
        SIM_ASSERT(vm->msg_conn_id == VMBUS_MESSAGE_CONNECTION_ID, "conn id");

    int n = sim_request_offers(vm);
    SIM_ASSERT(n >= ECHO_CHANNELS, "offers %d", n);
    for (int i = 0; i < ECHO_CHANNELS; i++) {
        struct sim_offer *o = sim_offer_by_class(vm, sim_echo_class(), i);
        SIM_ASSERT(o != NULL, "echo offer %d", i);
        SIM_ASSERT(o->relid > 0 && o->relid <= VMBUS_MAX_RELID, "relid %u", o->relid);
        if (v >= VMBUS_VERSION_WIN8)
            SIM_ASSERT(o->connection_id != 0, "connection id 0 in offer");
    }

    /* plain GPADLs: single header and header + several bodies */
    struct sim_offer *o0 = sim_offer_by_class(vm, sim_echo_class(), 0);
    uint32_t h1, h2;
    SIM_ASSERT(sim_gpadl_create_pages(vm, o0->relid, 3, &h1, NULL) == 0, "3-page GPADL");
    SIM_ASSERT(sim_gpadl_create_pages(vm, o0->relid, 26, &h2, NULL) == 0, "26-page GPADL");
    uint32_t h3;
    SIM_ASSERT(sim_gpadl_create_pages(vm, o0->relid, 27, &h3, NULL) == 0, "27-page GPADL");
    uint32_t h4;
    SIM_ASSERT(sim_gpadl_create_pages(vm, o0->relid, 26 + 28 * 4 + 5, &h4, NULL) == 0,
               "143-page GPADL (4+1 bodies)");
    SIM_ASSERT(h1 == 0xE1E10 && h2 == h1 + 1, "handles count up from 0xE1E10");
    SIM_ASSERT(sim_gpadl_teardown(vm, o0->relid, h1) == 0, "teardown 1");
    SIM_ASSERT(sim_gpadl_teardown(vm, o0->relid, h2) == 0, "teardown 2");
    SIM_ASSERT(sim_gpadl_teardown(vm, o0->relid, h3) == 0, "teardown 3");
    SIM_ASSERT(sim_gpadl_teardown(vm, o0->relid, h4) == 0, "teardown 4");

    /* open both channels; channel 0 with a multi-body ring GPADL (40 pages) */
    struct sim_chan *c0 = sim_open_echo(vm, 0, 20, 20);
    SIM_ASSERT(c0 != NULL, "open echo 0");
    struct sim_chan *c1 = sim_open_echo(vm, 1, 4, 4);
    SIM_ASSERT(c1 != NULL, "open echo 1");

    uint64_t t = 1;
    SIM_ASSERT(sim_echo_roundtrip(c0, 8, t++, true) == 0, "small comp");
    SIM_ASSERT(sim_echo_roundtrip(c0, 64, t++, false) == 0, "small inband");
    SIM_ASSERT(sim_echo_roundtrip(c0, 13, t++, false) == 0, "odd length");
    SIM_ASSERT(sim_echo_roundtrip(c0, 32000, t++, true) == 0, "large");
    SIM_ASSERT(sim_echo_roundtrip(c1, 1024, t++, true) == 0, "channel 1");
    /* wrap the small ring several times */
    SIM_ASSERT(sim_echo_stream(c1, 200, 1000, false) == 0, "wrap ring");
    /* fill the ring: flow control both ways */
    SIM_ASSERT(sim_echo_stream(c1, 500, 248, true) == 0, "fill ring");

    /* MODIFYCHANNEL (>= 4.1) to vCPU 1: events then arrive on vCPU 1 */
    if (v >= VMBUS_VERSION_WIN10_RS3) {
        r = sim_chan_modify(vm, c0->relid, 1);
        SIM_ASSERT(r == 0, "modifychannel status %d", r);
        /* rings are empty and unmasked: the echo must raise an event, on vCPU 1 */
        uint64_t before = vm->vp[1].interrupts, ev = c0->events;
        uint8_t p[256];
        sim_fill_pattern(p, sizeof(p), t);
        SIM_ASSERT(sim_chan_send(c0, VM_PKT_DATA_INBAND, 1, t, p, sizeof(p)) == 0, "send");
        SIM_ASSERT(sim_chan_wait_event(c0, ev, SIM_TIMEOUT_MS), "no event after modify");
        SIM_ASSERT(vm->vp[1].interrupts > before, "no interrupt on new target vCPU 1");
        struct vmpacket_descriptor d;
        uint32_t got;
        uint8_t in[300];
        SIM_ASSERT(sim_chan_try_recv(c0, &d, in, sizeof(in), &got) == 1 && d.trans_id == t &&
                       memcmp(in, p, sizeof(p)) == 0,
                   "echo after modify");
        t++;
        r = sim_chan_modify(vm, c0->relid, 0);
        SIM_ASSERT(r == 0, "modifychannel back %d", r);
        if (v < VMBUS_VERSION_WIN10_V5_3) {
            /* fire-and-forget below 5.3: no MODIFYCHANNEL_RESPONSE */
            for (int i = 0; i < 5; i++)
                sim_poll(vm, 10);
            SIM_ASSERT(!sim_take_msg(vm, CHANNELMSG_MODIFYCHANNEL_RESPONSE, NULL, NULL, NULL),
                       "MODIFYCHANNEL_RESPONSE sent on %s", sim_version_str(v));
        }
    }

    /* close, reopen, echo */
    SIM_ASSERT(sim_chan_close(c0) == 0, "close 0");
    c0 = sim_open_echo(vm, 0, 8, 8);
    SIM_ASSERT(c0 != NULL, "reopen echo 0");
    SIM_ASSERT(sim_echo_roundtrip(c0, 512, t++, true) == 0, "echo after reopen");
    SIM_ASSERT(sim_chan_close(c0) == 0, "close 0 again");
    SIM_ASSERT(sim_chan_close(c1) == 0, "close 1");

    /* disconnect: UNLOAD for >= 3.0, VMM reset for older guests */
    if (v >= VMBUS_VERSION_WIN8_1) {
        SIM_ASSERT(sim_unload(vm) == 0, "unload");
    } else {
        SIM_ASSERT(sim_vmm_reset(vm) == 0, "reset");
    }

    /* reconnect from scratch */
    n = sim_bringup(vm, v);
    SIM_ASSERT(n >= ECHO_CHANNELS, "reconnect offers %d", n);
    c0 = sim_open_echo(vm, 0, 4, 4);
    SIM_ASSERT(c0 != NULL, "open after reconnect");
    SIM_ASSERT(sim_echo_roundtrip(c0, 100, t++, true) == 0, "echo after reconnect");
    SIM_ASSERT(sim_chan_close(c0) == 0, "close after reconnect");
    if (v >= VMBUS_VERSION_WIN8_1)
        SIM_ASSERT(sim_unload(vm) == 0, "final unload");

    SIM_ASSERT(vm->bad_host_msgs == 0, "%llu malformed host messages",
               (unsigned long long)vm->bad_host_msgs);
    SIM_ASSERT(!vm->dead, "socket closed: %s", vm->error);
    sim_vm_free(vm);
}

#define VERSION_TEST(name, v)                                                            \
    static void test_##name(void **state) { full_flow(state, v); }

VERSION_TEST(v0_13, VMBUS_VERSION_WS2008)
VERSION_TEST(v1_1, VMBUS_VERSION_WIN7)
VERSION_TEST(v2_4, VMBUS_VERSION_WIN8)
VERSION_TEST(v3_0, VMBUS_VERSION_WIN8_1)
VERSION_TEST(v4_0, VMBUS_VERSION_WIN10)
VERSION_TEST(v4_1, VMBUS_VERSION_WIN10_RS3)
VERSION_TEST(v5_0, VMBUS_VERSION_WIN10_V5)
VERSION_TEST(v5_1, VMBUS_VERSION_WIN10_V5_1)
VERSION_TEST(v5_2, VMBUS_VERSION_WIN10_V5_2)
VERSION_TEST(v5_3, VMBUS_VERSION_WIN10_V5_3)

/* Linux's walk lands on 5.3 at once. */
static void test_linux_walk(void **state)
{
    struct fx *f = *state;
    struct sim_vm *vm = sim_vm_create(f->d, VM_A);
    SIM_ASSERT(vm != NULL, "create");
    uint32_t v = sim_connect(vm);
    SIM_ASSERT(v == VMBUS_VERSION_WIN10_V5_3, "walk ended at %s", sim_version_str(v));
    SIM_ASSERT(sim_request_offers(vm) >= ECHO_CHANNELS, "offers");
    sim_vm_free(vm);
}

/* Versions vmbusd does not know: VERSION_RESPONSE with version_supported = 0,
 * after which a supported one still connects. */
static void test_unsupported_versions(void **state)
{
    struct fx *f = *state;
    struct sim_vm *vm = sim_vm_create(f->d, VM_A);
    SIM_ASSERT(vm != NULL, "create");
    static const uint32_t bad[] = {
        VMBUS_VERSION(6, 0), VMBUS_VERSION(5, 4), VMBUS_VERSION(3, 1), VMBUS_VERSION(2, 0),
        VMBUS_VERSION(0, 0), 0xffffffffu, VMBUS_VERSION(1, 0), VMBUS_VERSION(4, 2),
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int r = sim_connect_version(vm, bad[i]);
        SIM_ASSERT(r == 0, "version 0x%08x: expected refusal, got %d", bad[i], r);
    }
    SIM_ASSERT(vm->version == 0, "no version recorded");
    int r = sim_connect_version(vm, VMBUS_VERSION_WIN10_V5_2);
    SIM_ASSERT(r == 1, "5.2 after refusals: %d", r);
    SIM_ASSERT(sim_request_offers(vm) >= ECHO_CHANNELS, "offers");
    struct sim_chan *ch = sim_open_echo(vm, 0, 4, 4);
    SIM_ASSERT(ch != NULL, "open");
    SIM_ASSERT(sim_echo_roundtrip(ch, 40, 1, true) == 0, "echo");
    SIM_ASSERT(vm->bad_host_msgs == 0, "malformed host messages");
    sim_vm_free(vm);
}

/* Connection-id rules: a >= 5.0 request on id 1, or a < 5.0 request on id
 * 4, is not what Linux does; vmbusd must answer or refuse, never hang, and
 * a proper request afterwards must work. */
static void test_connection_id_rules(void **state)
{
    struct fx *f = *state;
    struct sim_vm *vm = sim_vm_create(f->d, VM_A);
    SIM_ASSERT(vm != NULL, "create");
    struct vmbus_channel_initiate_contact m;
    memset(&m, 0, sizeof(m));
    m.header.msgtype = CHANNELMSG_INITIATE_CONTACT;
    m.monitor_page1 = sim_off_to_gpa(vm, vm->mon1_off);
    m.monitor_page2 = sim_off_to_gpa(vm, vm->mon2_off);

    /* 5.3 on connection id 1 */
    m.vmbus_version_requested = VMBUS_VERSION_WIN10_V5_3;
    m.u.s.msg_sint = VMBUS_MESSAGE_SINT;
    int st = sim_post(vm, VMBUS_MESSAGE_CONNECTION_ID, HV_MESSAGE_TYPE_VMBUS, &m, sizeof(m));
    /* versions from 5.0 on contact on connection id 4, older ones on 1:
     * the post is taken, the version refused (as Linux expects to walk on) */
    SIM_ASSERT(st == 0, "5.3 on conn id 1: post status %d", st);
    struct sim_qmsg q;
    SIM_ASSERT(sim_wait_msg(vm, CHANNELMSG_VERSION_RESPONSE, NULL, NULL, &q, 2000),
               "5.3 on conn id 1: no VERSION_RESPONSE");
    struct vmbus_channel_version_response vr;
    memcpy(&vr, q.payload, sizeof(vr));
    SIM_ASSERT(vr.version_supported == 0, "5.3 accepted on conn id 1");

    /* 4.0 on connection id 4 */
    m.vmbus_version_requested = VMBUS_VERSION_WIN10;
    m.u.interrupt_page = sim_off_to_gpa(vm, vm->int_page_off);
    st = sim_post(vm, VMBUS_MESSAGE_CONNECTION_ID_4, HV_MESSAGE_TYPE_VMBUS, &m, sizeof(m));
    SIM_ASSERT(st == 0, "4.0 on conn id 4: post status %d", st);
    SIM_ASSERT(sim_wait_msg(vm, CHANNELMSG_VERSION_RESPONSE, NULL, NULL, &q, 2000),
               "4.0 on conn id 4: no VERSION_RESPONSE");
    memcpy(&vr, q.payload, sizeof(vr));
    SIM_ASSERT(vr.version_supported == 0, "4.0 accepted on conn id 4");

    /* a post to a connection id nobody listens on */
    struct vmbus_channel_message_header h = {.msgtype = CHANNELMSG_REQUESTOFFERS};
    st = sim_post(vm, 0x777, HV_MESSAGE_TYPE_VMBUS, &h, sizeof(h));
    SIM_ASSERT(st == HV_STATUS_INVALID_CONNECTION_ID, "post to conn 0x777: status %d", st);

    sim_drain_msgs(vm);
    SIM_ASSERT(sim_bringup(vm, VMBUS_VERSION_WIN10_V5_3) >= ECHO_CHANNELS, "proper connect");
    /* after contact every message but INITIATE_CONTACT goes to id 1 */
    st = sim_post(vm, VMBUS_MESSAGE_CONNECTION_ID_4, HV_MESSAGE_TYPE_VMBUS, &h, sizeof(h));
    SIM_ASSERT(st == HV_STATUS_INVALID_CONNECTION_ID, "REQUESTOFFERS on conn 4: status %d", st);
    struct sim_chan *ch = sim_open_echo(vm, 0, 4, 4);
    SIM_ASSERT(ch != NULL, "open");
    SIM_ASSERT(sim_echo_roundtrip(ch, 40, 1, true) == 0, "echo");
    sim_vm_free(vm);
}

/* The guest disconnecting without UNLOAD (socket closed) and a new VMM
 * connection with the same VM name. */
static void test_reconnect_socket(void **state)
{
    struct fx *f = *state;
    for (int i = 0; i < 3; i++) {
        struct sim_vm *vm = sim_up(f->d, VM_B, VMBUS_VERSION_WIN10_V5_3);
        SIM_ASSERT(vm != NULL, "round %d up", i);
        struct sim_chan *ch = sim_open_echo(vm, i % 2, 4, 4);
        SIM_ASSERT(ch != NULL, "round %d open", i);
        SIM_ASSERT(sim_echo_roundtrip(ch, 300, (uint64_t)i, true) == 0, "round %d echo", i);
        sim_vm_free(vm); /* channel left open, no unload */
        for (int k = 0; k < 100 && vmbusd_partition_count(simd_vmbusd(f->d)) != 0; k++) {
            struct timespec ts = {0, 10 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
    for (int i = 0; i < 50 && vmbusd_partition_count(simd_vmbusd(f->d)) != 0; i++) {
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    SIM_ASSERT(vmbusd_partition_count(simd_vmbusd(f->d)) == 0, "partitions left: %u",
               vmbusd_partition_count(simd_vmbusd(f->d)));
}

/* Offers made when the partition attached must precede ALLOFFERS_DELIVERED,
 * even when the guest asks for offers the moment the VMM is set up (a boot
 * loader-fast guest): the VSPs attach on a worker, so this is a race. */
static void test_offers_before_alloffers(void **state)
{
    struct fx *f = *state;
    int late = 0;
    for (int i = 0; i < 30; i++) {
        struct sim_vm *vm = sim_vm_create(f->d, VM_C);
        SIM_ASSERT(vm != NULL, "create");
        vm->expect_offers = 0; /* count what is there at ALLOFFERS_DELIVERED */
        int n = sim_bringup(vm, VMBUS_VERSION_WIN10_V5_3);
        if (n < ECHO_CHANNELS)
            late++;
        sim_vm_free(vm);
        for (int k = 0; k < 100 && vmbusd_partition_count(simd_vmbusd(f->d)) != 0; k++) {
            struct timespec ts = {0, 2 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
    print_message("  %d of 30 connections got ALLOFFERS_DELIVERED before the echo offers\n",
                  late);
    SIM_ASSERT(late == 0, "%d of 30 guests saw ALLOFFERS_DELIVERED before the boot-time offers",
               late);
}

/* Channel messages go to the vCPU named in INITIATE_CONTACT (8 vCPUs,
 * target 5); channel events to the OPENCHANNEL target_vp (7). */
static void test_target_vcpus(void **state)
{
    struct fx *f = *state;
    struct sim_vm_opts o = {.name = VM_A, .vcpus = 8};
    struct sim_vm *vm = sim_vm_new(f->d, &o);
    SIM_ASSERT(vm != NULL, "8-vCPU VM");
    vm->target_vcpu = 5;
    SIM_ASSERT(sim_bringup(vm, VMBUS_VERSION_WIN10_V5_3) >= ECHO_CHANNELS, "bringup");
    SIM_ASSERT(vm->vp[5].interrupts > 0, "no interrupt on target vCPU 5");
    for (uint32_t v = 0; v < 8; v++)
        if (v != 5)
            SIM_ASSERT(vm->vp[v].interrupts == 0, "message interrupt on vCPU %u", v);
    vm->target_vcpu = 7; /* OPENCHANNEL target_vp */
    struct sim_chan *ch = sim_open_echo(vm, 0, 4, 4);
    SIM_ASSERT(ch != NULL, "open");
    vm->target_vcpu = 5;
    uint64_t before = vm->vp[7].interrupts, ev = ch->events;
    uint8_t p[64];
    sim_fill_pattern(p, 64, 1);
    SIM_ASSERT(sim_chan_send(ch, VM_PKT_DATA_INBAND, 0, 1, p, 64) == 0, "send");
    SIM_ASSERT(sim_chan_wait_event(ch, ev, SIM_TIMEOUT_MS), "no event");
    SIM_ASSERT(vm->vp[7].interrupts > before, "channel event not on vCPU 7");
    uint8_t in[128];
    uint32_t got;
    struct vmpacket_descriptor d;
    SIM_ASSERT(sim_chan_try_recv(ch, &d, in, sizeof(in), &got) == 1 && d.trans_id == 1, "echo");
    SIM_ASSERT(sim_echo_stream(ch, 100, 100, true) == 0, "stream");
    sim_vm_free(vm);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_v0_13, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_v1_1, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_v2_4, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_v3_0, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_v4_0, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_v4_1, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_v5_0, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_v5_1, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_v5_2, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_v5_3, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_linux_walk, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_unsupported_versions, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_connection_id_rules, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_reconnect_socket, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_offers_before_alloffers, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_target_vcpus, fx_setup, fx_teardown),
    };
    SIM_RUN("sim_versions", tests);
}
