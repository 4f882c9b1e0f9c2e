/* SPDX-License-Identifier: MIT */
/*
 * A test VSP that works like a storage VSP, for the tests of send
 * reservations (test_reserve.c, and test_guestfuzz_reserve.c against the
 * fuzzing build): before it pulls a request it reserves the room for the
 * request's completion (vsp_send_reserve); when the guest's host->guest
 * ring has no room for another reservation it stops pulling until
 * writable; its own I/O thread completes the requests in order into their
 * reservations (vsp_send_reserved) while the test holds the gate open,
 * inside a send batch while the test asks for one.
 *
 * One instance per test binary (`resv`), configured by resv_vsp_init before
 * the daemon starts; the counters are read under resv.lock (resv_get,
 * resv_wait).
 */
#ifndef VMBUSD_TESTS_SIM_RESV_VSP_H
#define VMBUSD_TESTS_SIM_RESV_VSP_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmbusd/vsp.h"

#define RESV_MAX_QUEUE 256
#define RESV_FILLER_TRANS 0xf111 /* trans_id of the ordinary filler packets */
#define RESV_FILL_LEN 8

struct resv_vsp {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    /* configuration (resv_vsp_init) */
    struct hv_guid class_id;
    size_t reply_len; /* completion payload, at most RESV_MAX_REPLY */
    /* state */
    struct vsp_channel *ch;
    pthread_t thread;
    bool stop;
    bool gate; /* the completion thread may send */
    int credits; /* ... or it may send this many more (resv_send) */
    bool fill; /* after reserve's -EAGAIN, fill the rest with ordinary sends
                  (once) */
    bool batch;   /* the completion thread holds a send batch open
                     (vsp_send_batch_begin) ... */
    bool batched; /* ... and it has (it changes this once it did) */
    uint64_t queue[RESV_MAX_QUEUE];
    int qhead, qlen;
    /* counters */
    int taken, eagain, writable, closes;
    int fillers, fill_ret;
    int sent, sent_ok, sent_epipe, sent_eio, sent_other;
};
#define RESV_MAX_REPLY 256

extern struct resv_vsp resv;
/* name: the plugin's (the [vm] line's vsp); linked into the fixture with
 * fx_setup_linked(state, vms, resv_vsp_linked). */
extern const struct vsp_plugin *const resv_vsp_linked[];

/* Configure the class and completion size; nothing is running yet. */
void resv_vsp_init(const struct hv_guid *class_id, size_t reply_len);
/* Before each test: gate closed, no fill, queue and counters zero. */
void resv_vsp_reset(void);
void resv_set_gate(bool open);
/* Let the completion thread send n more completions, gate closed or not. */
void resv_send(int n);
void resv_set_fill(bool fill);
/* The completion thread opens a send batch (vsp_send_batch_begin) or
 * closes it; returns once it did. */
void resv_set_batch(bool on);
/* *v (a counter of resv) read under the lock; resv_count(sent) reads
 * resv.sent. */
int resv_get(const int *v);
#define resv_count(field) resv_get(&resv.field)
/* Wait (bounded, for a hang only) until *v >= want; returns *v. */
int resv_wait(const int *v, int want);

#endif
