/* SPDX-License-Identifier: MIT */
/* Shared fixture and assertions for the `sim` CMocka suite. */
#ifndef VMBUSD_TESTS_SIM_TEST_H
#define VMBUSD_TESTS_SIM_TEST_H

#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

/* A fixture whose VMs run only VSPs linked into the test (a probe or a
 * gate plugin that watches vmbusd from inside); sim_up_offers, sim_open_class
 * and sim_wait_count below serve such tests. */
static inline int fx_setup_linked_vms(void **state, const struct sim_vm_cfg *vms, int nvms,
                                      const struct vsp_plugin *const *plugins)
{
    simd_linked_plugins = plugins;
    sim_log_clear();
    struct fx *f = calloc(1, sizeof(*f));
    if (!f)
        return -1;
    f->d = simd_start(vms, nvms, 0);
    if (!f->d) {
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static inline int fx_setup_linked(void **state, const struct sim_vm_cfg *vm,
                                  const struct vsp_plugin *const *plugins)
{
    return fx_setup_linked_vms(state, vm, 1, plugins);
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
            __builtin_unreachable(); /* cmocka's _fail() leaves the test, undeclared */  \
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

/* ---- tests with linked VSPs (fx_setup_linked) ---- */

/* VM name of daemon d brought up (Linux's walk at 5.3) with the `offers`
 * offers its VSPs make. */
static inline struct sim_vm *sim_up_offers(struct sim_daemon *d, const char *name, int offers)
{
    struct sim_vm *vm = sim_vm_create(d, name);
    SIM_ASSERT(vm != NULL, "create %s", name);
    vm->expect_offers = offers;
    int n = sim_bringup(vm, VMBUS_VERSION_WIN10_V5_3);
    SIM_ASSERT(n == offers, "bringup %s: %d offers, %d expected", name, n, offers);
    return vm;
}

/* Open offer n (0-based) of class cls with rings of send_pages and
 * recv_pages pages. */
static inline struct sim_chan *sim_open_class(struct sim_vm *vm, const struct hv_guid *cls, int n,
                                              uint32_t send_pages, uint32_t recv_pages)
{
    struct sim_offer *of = sim_offer_by_class(vm, cls, n);
    SIM_ASSERT(of != NULL, "%s: no offer %d of the class", vm->name, n);
    int st;
    struct sim_chan *ch = sim_chan_open(vm, of->relid, send_pages, recv_pages, &st);
    SIM_ASSERT(ch != NULL, "%s: open of relid %u: status %d", vm->name, of->relid, st);
    return ch;
}

/* A linked VSP's counter *v, guarded by lock: wait until it reaches want
 * (cond is broadcast on changes; 20 s bounds a hang only), then read it. */
static inline int sim_wait_count(pthread_mutex_t *lock, pthread_cond_t *cond, const int *v,
                                 int want)
{
    struct timespec end = sim_deadline_ms(20000);
    pthread_mutex_lock(lock);
    while (*v < want)
        if (pthread_cond_timedwait(cond, lock, &end) != 0)
            break;
    int got = *v;
    pthread_mutex_unlock(lock);
    return got;
}

static inline int sim_count(pthread_mutex_t *lock, const int *v)
{
    pthread_mutex_lock(lock);
    int got = *v;
    pthread_mutex_unlock(lock);
    return got;
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

/* What vmbusd must have done to the partition that sent the bad input. */
enum bad_outcome {
    /* Ignored or refused: the partition keeps working.  Its open channels
     * (b->c0, b->c1) still echo; with neither open, the guest can still
     * connect, get its offers, open an echo channel and use it. */
    BAD_WORKS,
    /* Channel b->c0 rescinded (the guest broke it); b->c1 still echoes. */
    BAD_RESCINDED,
    /* The guest's VMBus connection restarted from scratch: the open channels
     * are gone, a REQUESTOFFERS is answered again (on a live connection a
     * second one is ignored) and a fresh channel echoes. */
    BAD_RESET,
    /* The partition was torn down: vmbusd closed its VMM socket. */
    BAD_TORN_DOWN,
};

static inline const char *bad_outcome_str(enum bad_outcome o)
{
    static const char *const s[] = {"partition keeps working", "channel rescinded",
                                    "VMBus connection reset", "partition torn down"};
    return s[o];
}

/* Open the last echo channel the guest has not open (the earlier ones may
 * be held by the test's raw OPENCHANNELs) and make one round trip.  0 ok,
 * else which step failed. */
static inline int bad_probe_fresh_channel(struct bad *b)
{
    struct sim_vm *vm = b->vm;
    if (!vm->version) {
        sim_drain_msgs(vm); /* answers to the bad input are not for us */
        if (sim_connect_version(vm, VMBUS_VERSION_WIN10_V5_3) != 1)
            return -1;
    }
    if (!vm->all_offers_delivered && sim_request_offers(vm) < ECHO_CHANNELS)
        return -2;
    int pick = -1;
    for (int n = 0; n < SIM_MAX_CHANNELS; n++) {
        struct sim_offer *of = sim_offer_by_class(vm, sim_echo_class(), n);
        if (!of)
            break;
        struct sim_chan *ch = sim_chan(vm, of->relid);
        if (!ch || !ch->open)
            pick = n;
    }
    if (pick < 0)
        return -3;
    struct sim_chan *ch = sim_open_echo(vm, pick, 4, 4);
    if (!ch)
        return -4;
    return sim_echo_roundtrip(ch, 64, 4244, true) == 0 ? 0 : -5;
}

static inline bool bad_rescinded(struct bad *b, struct sim_chan *ch, int timeout_ms)
{
    uint64_t end = sim_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        struct sim_offer *of = sim_find_offer(b->vm, ch->relid);
        if (of && of->rescinded)
            return true;
        if (sim_now_ms() >= end || b->vm->dead)
            return false;
        sim_poll(b->vm, 10);
    }
}

/* Assert that vmbusd did `expect` to the bad partition. */
static inline void bad_expect(struct bad *b, const char *what, enum bad_outcome expect)
{
    struct sim_vm *vm = b->vm;
    for (int i = 0; i < 5; i++)
        sim_poll(vm, 20);
    if (expect == BAD_TORN_DOWN) {
        uint64_t end = sim_now_ms() + 2000;
        while (!vm->dead && sim_now_ms() < end)
            sim_poll(vm, 20);
        SIM_ASSERT(vm->dead, "%s: partition %s not torn down", what, b->name);
        return;
    }
    SIM_ASSERT(!vm->dead, "%s: partition %s torn down (%s), expected: %s", what, b->name,
               vm->error, bad_outcome_str(expect));
    int r;
    switch (expect) {
    case BAD_WORKS:
        if (b->c0) {
            struct sim_offer *of = sim_find_offer(vm, b->c0->relid);
            SIM_ASSERT(of && !of->rescinded, "%s: relid %u rescinded", what, b->c0->relid);
            r = sim_echo_roundtrip(b->c0, 64, 4242, true);
            SIM_ASSERT(r == 0, "%s: relid %u stopped working (%d)", what, b->c0->relid, r);
        }
        if (b->c1) {
            r = sim_echo_roundtrip(b->c1, 64, 4243, true);
            SIM_ASSERT(r == 0, "%s: relid %u stopped working (%d)", what, b->c1->relid, r);
        }
        if (!b->c0 && !b->c1) {
            r = bad_probe_fresh_channel(b);
            SIM_ASSERT(r == 0, "%s: partition %s cannot open a channel afterwards (step %d)",
                       what, b->name, r);
        }
        break;
    case BAD_RESCINDED:
        SIM_ASSERT(b->c0 && bad_rescinded(b, b->c0, 2000), "%s: relid %u not rescinded", what,
                   b->c0 ? b->c0->relid : 0);
        if (b->c1) {
            r = sim_echo_roundtrip(b->c1, 64, 4243, true);
            SIM_ASSERT(r == 0, "%s: other channel (relid %u) broken (%d)", what, b->c1->relid,
                       r);
        }
        break;
    case BAD_RESET: {
        uint32_t version = vm->version;
        sim_guest_forget(vm); /* the guest starts over, as after UNLOAD */
        sim_drain_msgs(vm);
        vm->version = version;
        r = sim_request_offers(vm);
        SIM_ASSERT(r >= ECHO_CHANNELS, "%s: REQUESTOFFERS after the reset -> %d", what, r);
        b->c0 = b->c1 = NULL;
        r = bad_probe_fresh_channel(b);
        SIM_ASSERT(r == 0, "%s: no working channel after the reset (step %d)", what, r);
        break;
    }
    case BAD_TORN_DOWN:
        break;
    }
}

/* The end of every bad-input case: the healthy partition is unaffected,
 * vmbusd logged a warning naming the bad partition (and relid >= 0) if
 * require_log, did `expect` to it, and sent it nothing malformed. */
static inline void bad_done(struct fx *f, struct bad *b, const char *what, int relid,
                            bool require_log, enum bad_outcome expect)
{
    fx_good_check(f, what);
    if (require_log)
        SIM_ASSERT_LOGGED(b->name, relid, what);
    bad_expect(b, what, expect);
    print_message("  %-46s post=%-3d %s\n", what, b->post_status, bad_outcome_str(expect));
    SIM_ASSERT(b->vm->bad_host_msgs == 0, "%s: vmbusd sent malformed messages", what);
    sim_vm_free(b->vm);
    b->vm = NULL;
}

#endif
