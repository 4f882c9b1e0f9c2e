/* SPDX-License-Identifier: MIT */
/*
 * A fake of the vmbusd VSP host API (vmbusd/vsp.h) for the IC unit tests:
 * it records offered channels, sent packets, published status, log lines,
 * timers and work items, and lets a test inject guest packets and drive the
 * channel callbacks by hand.  Thread-safe enough for a control command
 * running on a second thread while the test plays the guest.
 */
#ifndef VMBUSD_TEST_FAKE_VSP_H
#define VMBUSD_TEST_FAKE_VSP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmbusd/vsp.h"

struct fake_sent {
    uint8_t *data;
    size_t len;
    uint64_t trans_id;
};

/* Partitions and channels. */
struct vsp_partition *fake_partition_new(const char *name);
void fake_partition_free(struct vsp_partition *p);
unsigned fake_channel_count(struct vsp_partition *p);
struct vsp_channel *fake_channel(struct vsp_partition *p, unsigned idx);
const struct vsp_offer *fake_channel_offer(struct vsp_channel *ch);

/* Guest actions: open (ops->open, then the channel counts as open and queued
 * work runs), close, inject a packet, deliver the receive callback. */
int fake_open(struct vsp_channel *ch);
void fake_close(struct vsp_channel *ch);
void fake_set_open(struct vsp_channel *ch, bool open);
void fake_inject(struct vsp_channel *ch, uint16_t type, uint64_t trans_id, const void *data,
                 size_t len);
void fake_receive(struct vsp_channel *ch);
/* Make vsp_recv() return err (e.g. -EIO) once the injected packets are consumed. */
void fake_set_recv_error(struct vsp_channel *ch, int err);

/* Sent packets. */
unsigned fake_sent_count(struct vsp_channel *ch);
/* A copy of packet i (valid until fake_sent_clear or fake_partition_free). */
const struct fake_sent *fake_sent_get(struct vsp_channel *ch, unsigned i);
const struct fake_sent *fake_sent_last(struct vsp_channel *ch);
void fake_sent_clear(struct vsp_channel *ch);
bool fake_wait_sent(struct vsp_channel *ch, unsigned n, unsigned timeout_ms);
/* The next `times` sends return err instead of being recorded. */
void fake_fail_sends(struct vsp_channel *ch, int err, unsigned times);
void fake_writable(struct vsp_channel *ch);
/* Sends made while a receive batch was not drained (the guest's ring may
 * still hold the answers being processed). */
unsigned fake_sends_before_commit(struct vsp_channel *ch);

/* Work items and timers. */
unsigned fake_run_work(void);
unsigned fake_timer_count(void); /* active (not cancelled) timers */
unsigned fake_fire_timers(struct vsp_channel *ch); /* fire each active timer of ch once */

/* Published status; NULL if never set. */
const char *fake_status(struct vsp_partition *p, const char *key);
unsigned fake_status_count(struct vsp_partition *p);

/* Logs. */
unsigned fake_log_count(enum vsp_log_level lvl); /* vsp_guest_error counts as WARN */
unsigned fake_guest_error_count(void);             /* vsp_guest_error calls */
bool fake_log_contains(const char *needle);
void fake_log_reset(void);

/* What vsp_partition_reference_time() answers: -ENOTSUP unless available. */
extern bool fake_ref_time_available;
extern uint64_t fake_ref_time;

/* Test clock for ic_clock_ms. */
extern uint64_t fake_now_ms;
uint64_t fake_clock_ms(void);
void fake_advance_ms(uint64_t ms);

#endif
