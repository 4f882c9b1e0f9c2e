/* SPDX-License-Identifier: MIT */
/*
 * Work items at "passive level": a small pool of worker threads runs them
 * off the event loop, so a blocking VSP stalls neither the loop nor another
 * guest.  A serial queue runs its items one at a time, in order (every
 * channel has one, so a VSP never sees two callbacks of a channel at once).
 */
#ifndef VMBUSD_WORKQ_H
#define VMBUSD_WORKQ_H

#include <stdbool.h>

struct workq;
struct workq_serial;
typedef void (*work_fn)(void *arg);

struct workq *workq_create(int nthreads);
/* Finish queued work, then stop and free. */
void workq_destroy(struct workq *wq);
/* Unserialised item. */
int workq_submit(struct workq *wq, work_fn fn, void *arg);

struct workq_serial *workq_serial_create(struct workq *wq);
int workq_serial_submit(struct workq_serial *s, work_fn fn, void *arg);
/* Block until every item queued so far has run (not from inside s). */
void workq_serial_drain(struct workq_serial *s);
/* Drain, then free. */
void workq_serial_destroy(struct workq_serial *s);
/* True when called from a work item of s. */
bool workq_serial_current(const struct workq_serial *s);
/* True when work of other queues of s's pool waits for a worker (a busy
 * item of s that yields now lets it run). */
bool workq_others_waiting(const struct workq_serial *s);

#endif
