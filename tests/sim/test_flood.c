/* SPDX-License-Identifier: MIT */
/*
 * Floods: a guest that posts thousands of messages without consuming the
 * host's answers (vmbusd must push back, not queue without bound), creates
 * GPADLs without end, or stuffs the vmbus-user socket.  Other partitions
 * keep working throughout.
 */
#include "sim_test.h"

#include <fcntl.h>
#include <poll.h>
#include <time.h>
#include <sys/socket.h>
#include <unistd.h>

/* MODIFYCHANNEL on 5.3: one MODIFYCHANNEL_RESPONSE per post, never read. */
static void test_message_flood(void **state)
{
    struct fx *f = *state;
    fx_good_start(f);
    struct bad b;
    bad_up(f, &b, "flood-msgs", VMBUS_VERSION_WIN10_V5_3, true);
    struct sim_vm *vm = b.vm;
    sim_set_consume(vm, false); /* the guest stops EOMing */
    struct vmbus_channel_modifychannel m = {.header.msgtype = CHANNELMSG_MODIFYCHANNEL,
                                            .child_relid = b.c0->relid, .target_vp = 0};
    int n = 5000, ok = 0, first_refusal = -1, refusal = 0;
    for (int i = 0; i < n; i++) {
        int st = sim_post(vm, vm->msg_conn_id, 1, &m, sizeof(m));
        if (st == 0)
            ok++;
        else if (first_refusal < 0) {
            first_refusal = i;
            refusal = st;
        }
        if (st < 0)
            break;
        if (i % 500 == 0)
            fx_good_check(f, "during message flood");
    }
    print_message("  %d posts without EOM: %d accepted, first refusal at #%d (status %d)\n", n,
                  ok, first_refusal, refusal);
    SIM_ASSERT(first_refusal >= 0, "vmbusd accepted %d posts whose answers cannot be delivered",
               n);
    SIM_ASSERT(refusal == HV_STATUS_INSUFFICIENT_BUFFERS ||
                   refusal == HV_STATUS_INSUFFICIENT_MEMORY,
               "refusal status %d is not a retryable INSUFFICIENT_* status", refusal);
    fx_good_check(f, "message flood");
    /* the guest resumes: every accepted message is delivered, in order */
    sim_set_consume(vm, true);
    int got = 0;
    while (sim_wait_msg(vm, CHANNELMSG_MODIFYCHANNEL_RESPONSE, NULL, NULL, NULL, 500))
        got++;
    print_message("  after resuming: %d MODIFYCHANNEL_RESPONSEs delivered\n", got);
    SIM_ASSERT(got == ok, "accepted %d but delivered %d", ok, got);
    SIM_ASSERT(sim_echo_roundtrip(b.c0, 64, 1, true) == 0, "flooding partition works again");
    bad_done(f, &b, "message flood", -1, false, BAD_WORKS);
}

/* Slot stays busy but the guest posts retrying like Linux does; nothing
 * must be lost and the queue must not grow past its bound. */
static void test_slow_guest(void **state)
{
    struct fx *f = *state;
    struct sim_vm *vm = sim_up(f->d, VM_A, VMBUS_VERSION_WIN10_V5_3);
    SIM_ASSERT(vm != NULL, "up");
    struct sim_chan *ch = sim_open_echo(vm, 0, 4, 4);
    SIM_ASSERT(ch != NULL, "open");
    /* 2000 MODIFYCHANNELs through sim_post_msg (retries with polling) */
    int ok = 0;
    for (int i = 0; i < 2000; i++)
        if (sim_chan_modify(vm, ch->relid, (uint32_t)i % 2) == 0)
            ok++;
    SIM_ASSERT(ok == 2000, "only %d of 2000 MODIFYCHANNELs answered", ok);
    SIM_ASSERT(vm->bad_host_msgs == 0, "malformed");
    sim_vm_free(vm);
}

/* Thousands of complete GPADLs: a per-partition cap, not unbounded growth. */
static void test_gpadl_flood(void **state)
{
    struct fx *f = *state;
    fx_good_start(f);
    struct bad b;
    bad_up(f, &b, "flood-gpadl", VMBUS_VERSION_WIN10_V5_3, true);
    b.vm->post_no_retry = true;
    uint64_t page = sim_alloc_pages(b.vm, 1);
    uint64_t pfn = sim_page_pfn(b.vm, page);
    int n = 5000, created = 0, refused = -1;
    for (int i = 0; i < n; i++) {
        uint32_t h;
        int st = sim_gpadl_create(b.vm, b.c1->relid, &pfn, 1, &h);
        if (st == 0)
            created++;
        else if (refused < 0)
            refused = i;
        if (st < 0 && st != -ETIMEDOUT)
            break;
        if (refused >= 0 && i > refused + 50)
            break;
    }
    print_message("  GPADL flood: %d created, first refusal at #%d\n", created, refused);
    SIM_ASSERT(refused >= 0, "vmbusd created %d GPADLs for one partition", created);
    fx_good_check(f, "GPADL flood");
    SIM_ASSERT_LOGGED(b.name, -1, "GPADL flood");
    SIM_ASSERT(sim_echo_roundtrip(b.c0, 64, 1, true) == 0, "flooding partition's channel");
    bad_done(f, &b, "GPADL flood", -1, false, BAD_WORKS);
}

/* The VMM stuffs its socket with posts and never reads the results. */
static void test_socket_flood(void **state)
{
    struct fx *f = *state;
    fx_good_start(f);
    struct bad b;
    bad_up(f, &b, "flood-sock", VMBUS_VERSION_WIN10_V5_3, true);
    int fl = fcntl(b.vm->sock, F_GETFL);
    fcntl(b.vm->sock, F_SETFL, fl | O_NONBLOCK);
    struct vu_post_message pm;
    memset(&pm, 0, sizeof(pm));
    pm.msg.connection_id = b.vm->msg_conn_id;
    pm.msg.message_type = 1;
    pm.msg.payload_size = 16;
    struct vmbus_channel_modifychannel mc = {.header.msgtype = CHANNELMSG_MODIFYCHANNEL,
                                             .child_relid = b.c0->relid};
    memcpy(pm.msg.payload, &mc, sizeof(mc));
    int sent = 0;
    uint64_t base = b.vm->post_results;
    uint64_t end = sim_now_ms() + 2000;
    while (sim_now_ms() < end && sent < 200000) {
        int r = sim_vu_send(b.vm, VU_MSG_POST_MESSAGE, &pm, sizeof(pm), NULL, 0);
        if (r == -EAGAIN) {
            /* vmbusd stopped reading us (or we out-ran it): others still work */
            fx_good_check(f, "socket flood");
            struct timespec ts = {0, 1000000};
            nanosleep(&ts, NULL);
            continue;
        }
        if (r < 0)
            break;
        sent++;
        if (sent % 5000 == 0)
            fx_good_check(f, "socket flood");
    }
    fx_good_check(f, "socket flood");
    fcntl(b.vm->sock, F_SETFL, fl);
    /* now read everything: vmbusd answers every POST_MESSAGE (protocol doc,
     * section 3), so nothing may have been dropped while we did not read */
    for (;;) {
        uint64_t before = b.vm->post_results;
        if (!sim_vu_alive(b.vm, 200) || b.vm->post_results - base >= (uint64_t)sent ||
            b.vm->post_results == before)
            break;
    }
    uint64_t got = b.vm->post_results - base;
    print_message("  stuffed %d POST_MESSAGEs without reading; %llu POST_RESULTs arrived\n",
                  sent, (unsigned long long)got);
    SIM_ASSERT(got == (uint64_t)sent, "%lld of %d POST_RESULTs lost while the VMM was slow to read",
               (long long)sent - (long long)got, sent);
    bad_done(f, &b, "socket flood", -1, false, BAD_WORKS);
}

/* A guest that never EOMs while vmbusd has offers to deliver (REQUESTOFFERS
 * storm) and floods of INITIATE_CONTACT. */
static void test_offer_storm(void **state)
{
    struct fx *f = *state;
    fx_good_start(f);
    struct bad b;
    bad_up(f, &b, "flood-offers", VMBUS_VERSION_WIN10_V5_3, false);
    sim_set_consume(b.vm, false);
    struct vmbus_channel_message_header h = {.msgtype = CHANNELMSG_REQUESTOFFERS};
    int refused = 0;
    for (int i = 0; i < 3000; i++) {
        int st = sim_post(b.vm, b.vm->msg_conn_id, 1, &h, sizeof(h));
        if (st != 0)
            refused++;
        if (st < 0)
            break;
    }
    struct vmbus_channel_initiate_contact ic;
    memset(&ic, 0, sizeof(ic));
    ic.header.msgtype = CHANNELMSG_INITIATE_CONTACT;
    ic.vmbus_version_requested = VMBUS_VERSION_WIN10_V5_3;
    ic.u.s.msg_sint = 2;
    for (int i = 0; i < 3000; i++) {
        int st = sim_post(b.vm, 4, 1, &ic, sizeof(ic));
        if (st != 0)
            refused++;
        if (st < 0)
            break;
    }
    print_message("  6000 REQUESTOFFERS/INITIATE_CONTACT without EOM: %d refused\n", refused);
    fx_good_check(f, "offer storm");
    sim_set_consume(b.vm, true);
    for (int i = 0; i < 50; i++)
        sim_poll(b.vm, 10);
    /* every INITIATE_CONTACT on a live connection restarts it */
    bad_done(f, &b, "offer/contact storm", -1, false, BAD_RESET);
}

/* A guest that frees the slot but never signals EOM: vmbusd's periodic
 * re-check still delivers everything (slower). */
static void test_lost_eoms(void **state)
{
    struct fx *f = *state;
    struct sim_vm *vm = sim_up(f->d, VM_A, VMBUS_VERSION_WIN10_V5_3);
    SIM_ASSERT(vm != NULL, "up");
    struct sim_chan *ch = sim_open_echo(vm, 0, 4, 4);
    SIM_ASSERT(ch != NULL, "open");
    vm->lose_eoms = true;
    /* a burst of 20 responses: all but the first find the slot busy */
    struct vmbus_channel_modifychannel m = {.header.msgtype = CHANNELMSG_MODIFYCHANNEL,
                                            .child_relid = ch->relid};
    for (int i = 0; i < 20; i++)
        SIM_ASSERT(sim_post(vm, vm->msg_conn_id, 1, &m, sizeof(m)) == 0, "post %d", i);
    int got = 0;
    uint64_t t0 = sim_now_ms();
    while (got < 20 && sim_wait_msg(vm, CHANNELMSG_MODIFYCHANNEL_RESPONSE, NULL, NULL, NULL, 2000))
        got++;
    print_message("  20 responses without EOMs: %d delivered in %llu ms\n", got,
                  (unsigned long long)(sim_now_ms() - t0));
    SIM_ASSERT(got == 20, "only %d of 20 messages arrived without EOMs", got);
    vm->lose_eoms = false;
    SIM_ASSERT(sim_chan_close(ch) == 0, "close");
    sim_vm_free(vm);
}

static bool fd_readable(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

/* KVM signals the resample fd at every acknowledgement of SINT 2, which
 * is every VMBus interrupt, data-path ones included.  vmbusd reads it only
 * while messages wait for the guest's slot (an EOM is what it waits for),
 * so the acks of data-path interrupts do not wake its event loop; queued
 * messages still follow the guest's EOMs. */
static void test_eom_watch(void **state)
{
    struct fx *f = *state;
    struct sim_vm *vm = sim_up(f->d, VM_A, VMBUS_VERSION_WIN10_V5_3);
    SIM_ASSERT(vm != NULL, "up");
    struct sim_chan *ch = sim_open_echo(vm, 0, 4, 4);
    SIM_ASSERT(ch != NULL, "open");
    int rfd = vm->vp[0].resamplefd;
    uint64_t v;
    /* Nothing queued: an ack stays unread (the old permanent watch read it
     * at once), across more than one message retry period. */
    while (read(rfd, &v, sizeof(v)) == sizeof(v))
        ;
    uint64_t one = 1;
    SIM_ASSERT(write(rfd, &one, sizeof(one)) == sizeof(one), "ack");
    for (int i = 0; i < 20; i++)
        sim_poll(vm, 10);
    SIM_ASSERT(fd_readable(rfd), "vmbusd read an interrupt ack while no message waited");
    SIM_ASSERT(read(rfd, &v, sizeof(v)) == sizeof(v), "clear the ack");
    /* Responses queue behind the busy slot: each EOM of the guest is read,
     * and all arrive. */
    struct vmbus_channel_modifychannel m = {.header.msgtype = CHANNELMSG_MODIFYCHANNEL,
                                            .child_relid = ch->relid};
    sim_set_consume(vm, false);
    for (int i = 0; i < 10; i++)
        SIM_ASSERT(sim_post(vm, vm->msg_conn_id, 1, &m, sizeof(m)) == 0, "post %d", i);
    sim_set_consume(vm, true);
    int got = 0;
    while (got < 10 && sim_wait_msg(vm, CHANNELMSG_MODIFYCHANNEL_RESPONSE, NULL, NULL, NULL, 2000))
        got++;
    SIM_ASSERT(got == 10, "only %d of 10 responses arrived", got);
    SIM_ASSERT(vm->vp[0].eoms > 0, "the guest never had to EOM: nothing was queued");
    uint64_t end = sim_now_ms() + 2000;
    while (fd_readable(rfd) && sim_now_ms() < end)
        sim_poll(vm, 10);
    SIM_ASSERT(!fd_readable(rfd), "the guest's EOM was left unread while messages waited");
    SIM_ASSERT(sim_chan_close(ch) == 0, "close");
    sim_vm_free(vm);
}

/* vmbusd never writes into an occupied slot: a slot the guest leaves full
 * keeps its contents until the guest frees it; queued messages then arrive
 * in order. */
static void test_occupied_slot(void **state)
{
    struct fx *f = *state;
    fx_good_start(f);
    struct bad b;
    bad_up(f, &b, "slot-busy", VMBUS_VERSION_WIN10_V5_3, true);
    struct sim_vm *vm = b.vm;
    sim_set_consume(vm, false);
    struct hv_message *slot =
        (struct hv_message *)(vm->mem + vm->vp[0].simp_off) + VMBUS_MESSAGE_SINT;
    /* wait until the slot is free, then occupy it with a foreign message */
    uint64_t end = sim_now_ms() + 2000;
    while (__atomic_load_n(&slot->header.message_type, __ATOMIC_SEQ_CST) && sim_now_ms() < end) {
        sim_set_consume(vm, true);
        sim_poll(vm, 10);
        sim_set_consume(vm, false);
    }
    struct hv_message junk;
    memset(&junk, 0x5a, sizeof(junk));
    junk.header.message_type = 0x12345678;
    junk.header.payload_size = 8;
    junk.header.message_flags = 0;
    memcpy(slot, &junk, sizeof(junk));
    /* 50 GPADLs: 50 GPADL_CREATEDs queue up behind the occupied slot */
    uint64_t page = sim_alloc_pages(vm, 1);
    uint64_t pfn = sim_page_pfn(vm, page);
    for (uint32_t i = 0; i < 50; i++)
        SIM_ASSERT(sim_gpadl_post(vm, b.c1->relid, 0x20000 + i, &pfn, 1, 1, 0, 0) == 0,
                   "gpadl %u", i);
    for (int i = 0; i < 20; i++)
        sim_poll(vm, 5);
    SIM_ASSERT(slot->header.message_type == 0x12345678 &&
                   memcmp(slot->payload, junk.payload, sizeof(junk.payload)) == 0,
               "vmbusd overwrote an occupied SynIC slot");
    SIM_ASSERT(slot->header.message_flags & HV_MESSAGE_FLAG_PENDING,
               "msg_pending not set on the busy slot");
    /* the guest frees it: everything arrives, in order */
    __atomic_store_n(&slot->header.message_type, 0, __ATOMIC_SEQ_CST);
    uint64_t one = 1;
    SIM_ASSERT(write(vm->vp[0].resamplefd, &one, 8) == 8, "eom");
    sim_set_consume(vm, true);
    for (uint32_t i = 0; i < 50; i++) {
        struct sim_qmsg q;
        SIM_ASSERT(sim_wait_msg(vm, CHANNELMSG_GPADL_CREATED, NULL, NULL, &q, 2000),
                   "GPADL_CREATED %u missing", i);
        struct vmbus_channel_gpadl_created c;
        memcpy(&c, q.payload, sizeof(c));
        SIM_ASSERT(c.gpadl == 0x20000 + i && c.creation_status == 0,
                   "GPADL_CREATED out of order: got 0x%x (status 0x%x), expected 0x%x", c.gpadl,
                   c.creation_status, 0x20000 + i);
    }
    bad_done(f, &b, "occupied SynIC slot", -1, false, BAD_WORKS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_message_flood, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_slow_guest, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_lost_eoms, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_occupied_slot, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_eom_watch, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_gpadl_flood, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_socket_flood, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_offer_storm, fx_setup, fx_teardown),
    };
    SIM_RUN("sim_flood", tests);
}
