/* SPDX-License-Identifier: MIT */
/* Shared fixture and assertions for the `sim` CMocka suite. */
#ifndef VMBUSD_TESTS_SIM_TEST_H
#define VMBUSD_TESTS_SIM_TEST_H

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/log.h"
#include "simvm.h"
#include "vmbusd/vmbusd.h"

/* VM names every daemon in the suite knows; all get the echo VSP. */
#define VM_A "vm-alpha"
#define VM_B "vm-beta"
#define VM_C "vm-gamma"
#define VM_D "vm-delta"
#define VM_BAD "vm-bad"
#define VM_GOOD "vm-good"

#define ECHO_CHANNELS 2

struct fx {
    struct sim_daemon *d;
    /* a healthy partition with an open echo channel, for "others unaffected" */
    struct sim_vm *good;
    struct sim_chan *good_ch;
    uint64_t good_trans;
};

static inline struct sim_daemon *fx_daemon(int echo_channels)
{
    static const struct sim_vm_cfg vms[] = {
        {VM_A, "echo"}, {VM_B, "echo"},   {VM_C, "echo"},
        {VM_D, "echo"}, {VM_BAD, "echo"}, {VM_GOOD, "echo"},
        {"default", "echo"}, /* the per-case VMs of the bad-input tests */
    };
    sim_log_clear();
    sim_expect_offers_default = echo_channels;
    return simd_start(vms, (int)(sizeof(vms) / sizeof(vms[0])), echo_channels);
}

static inline int fx_setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    if (!f)
        return -1;
    f->d = fx_daemon(ECHO_CHANNELS);
    if (!f->d) {
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static inline int fx_teardown(void **state)
{
    struct fx *f = *state;
    if (!f)
        return 0;
    if (f->good)
        sim_vm_free(f->good);
    simd_stop(f->d);
    free(f);
    return 0;
}

/* Run a group; SIM_FILTER=pattern selects tests (cmocka wildcards). */
#define SIM_RUN(name, tests)                                                             \
    do {                                                                                 \
        const char *flt = getenv("SIM_FILTER");                                          \
        if (flt && *flt)                                                                 \
            cmocka_set_test_filter(flt);                                                 \
        return cmocka_run_group_tests_name(name, tests, NULL, NULL);                     \
    } while (0)

/* Print the daemon log on failure paths. */
#define SIM_ASSERT(cond, ...)                                                            \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            fprintf(stderr, "ASSERT %s:%d: %s: ", __FILE__, __LINE__, #cond);            \
            fprintf(stderr, __VA_ARGS__);                                                \
            fprintf(stderr, "\n");                                                       \
            sim_log_dump(#cond);                                                         \
            fail();                                                                      \
        }                                                                                \
    } while (0)

/* Bring a VM up (version 0 = Linux's walk) and open echo channel n. */
static inline struct sim_chan *sim_open_echo(struct sim_vm *vm, int n, uint32_t send_pages,
                                             uint32_t recv_pages)
{
    struct sim_offer *of = sim_offer_by_class(vm, sim_echo_class(), n);
    if (!of)
        return NULL;
    int st;
    struct sim_chan *ch = sim_chan_open(vm, of->relid, send_pages, recv_pages, &st);
    if (!ch)
        fprintf(stderr, "sim_open_echo(%s, %d): relid %u status %d\n", vm->name, n, of->relid,
                st);
    return ch;
}

static inline struct sim_vm *sim_up(struct sim_daemon *d, const char *name, uint32_t version)
{
    struct sim_vm *vm = sim_vm_create(d, name);
    if (!vm)
        return NULL;
    vm->expect_offers = ECHO_CHANNELS;
    int n = sim_bringup(vm, version);
    if (n < 0) {
        fprintf(stderr, "sim_up(%s, %s): bringup %d\n", name, sim_version_str(version), n);
        sim_vm_free(vm);
        return NULL;
    }
    return vm;
}

/* Start the healthy partition (VM_GOOD, 5.3) with echo channel 0 open. */
static inline void fx_good_start(struct fx *f)
{
    f->good = sim_up(f->d, VM_GOOD, VMBUS_VERSION_WIN10_V5_3);
    SIM_ASSERT(f->good != NULL, "good partition up");
    f->good_ch = sim_open_echo(f->good, 0, 4, 4);
    SIM_ASSERT(f->good_ch != NULL, "good partition channel");
    f->good_trans = 1;
}

/* The healthy partition still works: a round trip each way. */
static inline void fx_good_check(struct fx *f, const char *after)
{
    if (!f->good)
        fx_good_start(f);
    int r1 = sim_echo_roundtrip(f->good_ch, 128, f->good_trans++, true);
    int r2 = sim_echo_roundtrip(f->good_ch, 72, f->good_trans++, false);
    SIM_ASSERT(r1 == 0 && r2 == 0, "healthy partition broken after: %s (%d %d)", after, r1, r2);
    SIM_ASSERT(f->good->bad_host_msgs == 0, "healthy partition got malformed messages after %s",
               after);
    SIM_ASSERT(!f->good->dead, "healthy partition's socket closed after %s", after);
}

/* vmbusd logged a warning/error naming the VM (and relid if >= 0). */
static inline bool sim_logged(const char *vm, int relid, int timeout_ms)
{
    char tok[24];
    if (relid >= 0)
        snprintf(tok, sizeof(tok), "#%d", relid);
    return sim_log_wait(timeout_ms, LOG_WARN, vm, relid >= 0 ? tok : NULL, NULL);
}

#define SIM_ASSERT_LOGGED(vm, relid, what)                                               \
    SIM_ASSERT(sim_logged((vm), (relid), 2000),                                          \
               "no warning naming partition %s%s for: %s", (vm),                         \
               (relid) >= 0 ? " and its relid" : "", (what))


/* ---- bad-input cases: one fresh partition per case ---- */

struct bad {
    char name[64];
    struct sim_vm *vm;
    struct sim_chan *c0, *c1;
    int post_status; /* what the bad post returned */
};

static inline void bad_up(struct fx *f, struct bad *b, const char *tag, uint32_t version,
                          bool open)
{
    memset(b, 0, sizeof(*b));
    snprintf(b->name, sizeof(b->name), "bad-%s", tag);
    b->vm = sim_vm_create(f->d, b->name);
    SIM_ASSERT(b->vm != NULL, "create %s", b->name);
    b->vm->expect_offers = ECHO_CHANNELS;
    if (version) {
        int n = sim_bringup(b->vm, version);
        SIM_ASSERT(n >= ECHO_CHANNELS, "%s: bringup %d", b->name, n);
    }
    if (open) {
        b->c0 = sim_open_echo(b->vm, 0, 4, 4);
        b->c1 = sim_open_echo(b->vm, 1, 4, 4);
        SIM_ASSERT(b->c0 && b->c1, "%s: open", b->name);
    }
}

/* What happened to the bad partition (for the report), without failing. */
static inline const char *bad_observe(struct bad *b)
{
    static __thread char buf[200];
    struct sim_vm *vm = b->vm;
    int saved = sim_timeout_ms;
    sim_timeout_ms = 1000;
    for (int i = 0; i < 5; i++)
        sim_poll(vm, 20);
    const char *r;
    if (vm->dead) {
        snprintf(buf, sizeof(buf), "partition disconnected%s%s", vm->error[0] ? ": " : "",
                 vm->error);
        r = buf;
    } else if (b->c0 && sim_find_offer(vm, b->c0->relid) &&
               sim_find_offer(vm, b->c0->relid)->rescinded) {
        bool other = b->c1 && sim_echo_roundtrip(b->c1, 64, 4242, true) == 0;
        snprintf(buf, sizeof(buf), "channel %u rescinded; other channel %s", b->c0->relid,
                 other ? "works" : "BROKEN");
        r = buf;
    } else if (b->c0) {
        bool ok = sim_echo_roundtrip(b->c0, 64, 4243, true) == 0;
        r = ok ? "ignored/refused; partition keeps working" : "partition's channel STOPPED";
    } else {
        struct vmbus_channel_message_header h = {.msgtype = CHANNELMSG_REQUESTOFFERS};
        int st = sim_post(vm, vm->msg_conn_id, 1, &h, sizeof(h));
        snprintf(buf, sizeof(buf), "partition alive, next post -> %d", st);
        r = buf;
    }
    sim_timeout_ms = saved;
    return r;
}

static inline void bad_done(struct fx *f, struct bad *b, const char *what, int relid,
                            bool require_log)
{
    fx_good_check(f, what);
    if (require_log)
        SIM_ASSERT_LOGGED(b->name, relid, what);
    const char *obs = bad_observe(b);
    print_message("  %-46s post=%-3d %s\n", what, b->post_status, obs);
    SIM_ASSERT(b->vm->bad_host_msgs == 0, "%s: vmbusd sent malformed messages", what);
    sim_vm_free(b->vm);
    b->vm = NULL;
}

#endif
