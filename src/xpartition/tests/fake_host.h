/* SPDX-License-Identifier: MIT */
/*
 * Fake host ops (xp_transport_ops and xp_channel_ops) for tests that drive
 * an xpartition directly: the unit test of the channel-message state
 * machine (test_xpartition.c) and the chanmsg fuzzer
 * (tests/fuzz/fuzz_chanmsg.c).
 *
 * Every call but msgs_waiting is recorded in order.  The fake plays the VMM
 * (interrupts and eventfds always work unless eventfd_add_ret says
 * otherwise) and a VSP whose open and close complete at once, unless the
 * test holds them back to act as a slow VSP and completes them itself with
 * xp_channel_open_done() / xp_channel_close_done().
 */
#ifndef VMBUSD_XP_FAKE_HOST_H
#define VMBUSD_XP_FAKE_HOST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "xpartition/xpartition.h"

enum fake_op {
    FAKE_SIGNAL_VP = 1,
    FAKE_EVENTFD_ADD,
    FAKE_EVENTFD_DEL,
    FAKE_CHANNEL_OPEN,
    FAKE_CHANNEL_CLOSE,
    FAKE_CHANNEL_KICK,
};

struct fake_call {
    enum fake_op op;
    uint32_t arg;          /* signal_vp: vp; eventfd_*: connection id;
                            * channel_open: length of the user data */
    struct xp_channel *ch; /* channel_* */
};

#define FAKE_HOST_MAX_CALLS 256

struct fake_host {
    /* What happened. */
    struct fake_call calls[FAKE_HOST_MAX_CALLS];
    unsigned ncalls;
    unsigned lost;                        /* calls beyond the log's capacity */
    unsigned signals[XP_MAX_VCPUS];       /* signal_vp per vp, never cleared by the log */
    unsigned signals_bad_vp;              /* signal_vp for a vp >= XP_MAX_VCPUS */
    /* msgs_waiting calls: counted, not logged (the partition may ask for a
     * retry any number of times while messages wait). */
    unsigned msgs_waiting;
    uint8_t open_userdata[120];           /* user data of the last channel_open */

    /* How the fake behaves. */
    bool hold_open;        /* do not complete channel_open: the test will */
    uint32_t open_status;  /* otherwise complete it with this status */
    bool hold_close;       /* do not complete channel_close: the test will */
    int eventfd_add_ret;   /* what eventfd_add returns (0 or a negative errno) */
    /* Seen for every call after it is recorded and before the fake acts on
     * it (a fuzzer checks invariants or drains rings here). */
    void (*hook)(struct fake_host *fh, const struct fake_call *c);
    void *user;
};

/* The ops; the ctx of both must be a struct fake_host. */
extern const struct xp_transport_ops fake_transport_ops;
extern const struct xp_channel_ops fake_channel_ops;
/* xp_create() with the fake as transport and channel ops. */
struct xpartition *fake_host_partition(struct fake_host *fh, uint32_t id, const char *name,
                                       uint32_t nvcpus);

void fake_host_init(struct fake_host *fh);
/* Forget the recorded calls (counters and behaviour stay). */
void fake_host_clear(struct fake_host *fh);
/* Recorded calls of op (with argument arg, or any argument if arg is
 * FAKE_ANY_ARG). */
#define FAKE_ANY_ARG UINT32_MAX
unsigned fake_host_count(const struct fake_host *fh, enum fake_op op, uint32_t arg);
const char *fake_op_name(enum fake_op op);

#endif
