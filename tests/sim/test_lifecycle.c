/* SPDX-License-Identifier: MIT */
/*
 * Lifecycle edges a real guest hits: closing a channel while the host is
 * blocked on its full ring, UNLOAD with channels still open (crash/kexec
 * path), a VMM reset in the middle of traffic, SIMP/SIEFP moving while
 * messages are queued; the daemon told to stop before its loop runs.
 */
#include "sim_test.h"

#include <signal.h>
#include <unistd.h>

#include "vmbusd/config.h"

/* Guest stops reading; the echo blocks on the full host->guest ring; the
 * guest closes: CLOSECHANNEL + GPADL_TEARDOWN must still complete. */
static void test_close_while_blocked(void **state)
{
    struct fx *f = *state;
    struct sim_vm *vm = sim_up(f->d, VM_A, VMBUS_VERSION_WIN10_V5_3);
    SIM_ASSERT(vm != NULL, "up");
    for (int round = 0; round < 3; round++) {
        struct sim_chan *ch = sim_open_echo(vm, 0, 8, 2);
        SIM_ASSERT(ch != NULL, "open %d", round);
        uint8_t p[500];
        memset(p, round, sizeof(p));
        int sent = 0;
        uint64_t end = sim_now_ms() + 1000;
        while (sim_now_ms() < end) {
            int r = sim_chan_send(ch, VM_PKT_DATA_INBAND, 1, (uint64_t)sent, p, sizeof(p));
            if (r == 0) {
                sent++;
                continue;
            }
            SIM_ASSERT(r == -EAGAIN, "send %d", r);
            sim_poll(vm, 10);
            if (ch->out.hdr->read_index == ch->out.hdr->write_index)
                continue;
            /* both rings full or stuck: the host is blocked on us */
            break;
        }
        SIM_ASSERT(sent > 4, "only %d packets went out", sent);
        uint64_t t0 = sim_now_ms();
        SIM_ASSERT(sim_chan_close(ch) == 0, "close with the host blocked (round %d)", round);
        print_message("  round %d: %d packets queued, close took %llu ms\n", round, sent,
                      (unsigned long long)(sim_now_ms() - t0));
    }
    /* and the channel is usable afterwards */
    struct sim_chan *ch = sim_open_echo(vm, 0, 4, 4);
    SIM_ASSERT(ch != NULL, "reopen");
    SIM_ASSERT(sim_echo_stream(ch, 200, 300, true) == 0, "stream after blocked closes");
    SIM_ASSERT(vm->bad_host_msgs == 0, "malformed");
    sim_vm_free(vm);
}

/* Linux's crash/kexec path: UNLOAD with channels open and GPADLs around;
 * vmbusd answers, forgets everything, and a fresh connect works. */
static void test_unload_with_open_channels(void **state)
{
    struct fx *f = *state;
    struct sim_vm *vm = sim_up(f->d, VM_A, VMBUS_VERSION_WIN10_V5_3);
    SIM_ASSERT(vm != NULL, "up");
    for (int round = 0; round < 3; round++) {
        struct sim_chan *c0 = sim_open_echo(vm, 0, 4, 4);
        struct sim_chan *c1 = sim_open_echo(vm, 1, 4, 4);
        SIM_ASSERT(c0 && c1, "open");
        uint32_t h;
        SIM_ASSERT(sim_gpadl_create_pages(vm, c0->relid, 30, &h, NULL) == 0, "gpadl");
        /* traffic in flight */
        uint8_t p[200];
        memset(p, 1, sizeof(p));
        for (int i = 0; i < 10; i++)
            sim_chan_send(c0, VM_PKT_DATA_INBAND, 1, (uint64_t)i, p, sizeof(p));
        SIM_ASSERT(sim_unload(vm) == 0, "unload with open channels (round %d)", round);
        int n = sim_bringup(vm, round == 1 ? VMBUS_VERSION_WIN10 : VMBUS_VERSION_WIN10_V5_3);
        SIM_ASSERT(n >= ECHO_CHANNELS, "reconnect after unload: %d", n);
    }
    struct sim_chan *ch = sim_open_echo(vm, 0, 4, 4);
    SIM_ASSERT(ch != NULL, "open after unloads");
    SIM_ASSERT(sim_echo_roundtrip(ch, 1000, 1, true) == 0, "echo after unloads");
    sim_vm_free(vm);
}

/* VU_MSG_RESET (guest reboot) while channels are open and moving data. */
static void test_reset_mid_traffic(void **state)
{
    struct fx *f = *state;
    fx_good_start(f);
    struct sim_vm *vm = sim_up(f->d, VM_A, VMBUS_VERSION_WIN10_V5_3);
    SIM_ASSERT(vm != NULL, "up");
    for (int round = 0; round < 3; round++) {
        struct sim_chan *c0 = sim_open_echo(vm, 0, 4, 4);
        struct sim_chan *c1 = sim_open_echo(vm, 1, 2, 2);
        SIM_ASSERT(c0 && c1, "open");
        uint8_t p[300];
        memset(p, 2, sizeof(p));
        for (int i = 0; i < 30; i++) {
            sim_chan_send(c0, VM_PKT_DATA_INBAND, 1, (uint64_t)i, p, sizeof(p));
            sim_chan_send(c1, VM_PKT_DATA_INBAND, 0, (uint64_t)i, p, sizeof(p));
        }
        SIM_ASSERT(sim_vmm_reset(vm) == 0, "reset");
        /* the rebooted guest reuses the same memory right away */
        int n = sim_bringup(vm, VMBUS_VERSION_WIN10_V5_3);
        SIM_ASSERT(n >= ECHO_CHANNELS, "bringup after reset %d: %d", round, n);
        fx_good_check(f, "reset mid-traffic");
    }
    struct sim_chan *ch = sim_open_echo(vm, 0, 4, 4);
    SIM_ASSERT(ch != NULL, "open after resets");
    SIM_ASSERT(sim_echo_stream(ch, 300, 200, false) == 0, "stream after resets");
    SIM_ASSERT(vm->bad_host_msgs == 0, "malformed");
    sim_vm_free(vm);
}

/* The guest moves its SIMP/SIEFP (e.g. a kexec'd kernel) while messages
 * wait for a slot: they arrive in the new pages. */
static void test_synic_pages_move(void **state)
{
    struct fx *f = *state;
    struct sim_vm *vm = sim_up(f->d, VM_A, VMBUS_VERSION_WIN10_V5_3);
    SIM_ASSERT(vm != NULL, "up");
    struct sim_chan *ch = sim_open_echo(vm, 0, 4, 4);
    SIM_ASSERT(ch != NULL, "open");
    sim_set_consume(vm, false);
    struct vmbus_channel_modifychannel m = {.header.msgtype = CHANNELMSG_MODIFYCHANNEL,
                                            .child_relid = ch->relid};
    for (int i = 0; i < 10; i++)
        SIM_ASSERT(sim_post(vm, vm->msg_conn_id, 1, &m, sizeof(m)) == 0, "post");
    /* new pages for every vCPU */
    for (uint32_t v = 0; v < vm->vcpus; v++) {
        vm->vp[v].simp_off = sim_alloc_pages(vm, 1);
        vm->vp[v].siefp_off = sim_alloc_pages(vm, 1);
        struct vu_synic_state s = {.vp_index = v, .scontrol = 1,
                                   .simp = sim_off_to_gpa(vm, vm->vp[v].simp_off) | 1,
                                   .siefp = sim_off_to_gpa(vm, vm->vp[v].siefp_off) | 1};
        SIM_ASSERT(sim_vu_send(vm, VU_MSG_SYNIC_STATE, &s, sizeof(s), NULL, 0) > 0, "synic");
    }
    sim_set_consume(vm, true);
    int got = 0;
    while (got < 10 && sim_wait_msg(vm, CHANNELMSG_MODIFYCHANNEL_RESPONSE, NULL, NULL, NULL, 1500))
        got++;
    print_message("  SIMP moved with 10 messages pending: %d delivered to the new page\n", got);
    /* the one in the old slot is lost to the guest (it moved away); the
     * rest must come through the new page */
    SIM_ASSERT(got >= 9, "only %d of 10 messages after the SIMP moved", got);
    SIM_ASSERT(sim_echo_roundtrip(ch, 100, 1, true) == 0, "events through the new SIEFP");
    sim_vm_free(vm);
}

static void stop_lost(int sig)
{
    (void)sig;
    static const char msg[] = "ASSERT: vmbusd_run() did not return: the vmbusd_stop() made "
                              "before it was lost\n";
    if (write(2, msg, sizeof(msg) - 1) < 0)
        _exit(2);
    _exit(1);
}

/* An embedding program (or a signal handler) that stops the daemon before
 * its loop has started: the loop must end as soon as it starts rather
 * than run for ever. */
static void test_stop_before_loop(void **state)
{
    (void)state;
    char dir[] = "/tmp/vmbusd-stop.XXXXXX";
    SIM_ASSERT(mkdtemp(dir) != NULL, "mkdtemp: %s", strerror(errno));
    struct vmbusd_config cfg;
    config_defaults(&cfg);
    snprintf(cfg.socket_path, sizeof(cfg.socket_path), "%s/vu.sock", dir);
    cfg.control_path[0] = 0;
    char err[256] = "";
    struct vmbusd *d = vmbusd_create(&cfg, err, sizeof(err));
    SIM_ASSERT(d != NULL, "vmbusd_create: %s", err);
    vmbusd_stop(d);
    /* A lost stop hangs here: end the test with a verdict rather than let
     * meson's timeout find it. */
    signal(SIGALRM, stop_lost);
    alarm(60);
    int ret = vmbusd_run(d, false);
    alarm(0);
    SIM_ASSERT(ret == 0, "vmbusd_run returned %d", ret);
    vmbusd_destroy(d);
    config_free(&cfg);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_close_while_blocked, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_unload_with_open_channels, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_reset_mid_traffic, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_synic_pages_move, fx_setup, fx_teardown),
        cmocka_unit_test(test_stop_before_loop),
    };
    SIM_RUN("sim_lifecycle", tests);
}
