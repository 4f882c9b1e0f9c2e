/* SPDX-License-Identifier: MIT */
/*
 * Work items at "passive level": a small pool of worker threads runs them
 * off the event loop, so a blocking VSP stalls neither the loop nor another
 * guest.  A serial queue runs its items one at a time, in order (every
 * channel has one, so a VSP never sees two callbacks of a channel at once).
 *
 * The pool also waits on fds itself (workq_fd_add): an idle worker sleeps
 * in epoll on them, so a guest's signal or an I/O completion wakes the
 * thread that then runs the work it queues, with no hop through the event
 * loop (docs/design.md, "Threads").
 */
#ifndef VMBUSD_WORKQ_H
#define VMBUSD_WORKQ_H

#include <stdbool.h>

struct workq;
struct workq_serial;
struct workq_fd;
typedef void (*work_fn)(void *arg);

/* batch: the workers run SCHED_BATCH (woken, they do not preempt the
 * thread on their CPU: the waker goes on and the worker finds more work
 * when it runs); else they keep the creator's policy. */
struct workq *workq_create(int nthreads, bool batch);
/* Finish queued work, then stop and free.  Every fd must be deleted first. */
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
/* True on a worker thread of any pool (vmbusd's own threads, which never
 * block signals they are sent). */
bool workq_on_worker(void);
/* True when work of other queues of s's pool waits for a worker (a busy
 * item of s that yields now lets it run).  When no worker is idle to see
 * the pool's fds, this also looks at them (without sleeping) and runs
 * their callbacks here, so a busy pool still notices other channels. */
bool workq_others_waiting(const struct workq_serial *s);

/* ---- fds the pool waits on ------------------------------------------- */
/* WORKQ_FD_EDGE: fn runs once for every time fd becomes readable (an
 * eventfd: once per write or batch of writes); fn must consume what it
 * finds (read the eventfd), and may run on two workers at once.
 * WORKQ_FD_ONESHOT: fn runs once when fd is readable, then not again until
 * workq_fd_rearm (level-triggered: readable at the rearm, it runs again). */
#define WORKQ_FD_EDGE 1u
#define WORKQ_FD_ONESHOT 2u
/* fn(arg) on a worker, unserialised and short (it queues work rather than
 * doing it): a work item fn queues on a serial queue that is idle is run
 * next by the same worker, without waking another thread.  fd stays the
 * caller's.  NULL and errno on failure. */
struct workq_fd *workq_fd_add(struct workq *wq, int fd, unsigned mode, work_fn fn, void *arg);
/* WORKQ_FD_ONESHOT: watch again.  Not concurrently with a delete. */
int workq_fd_rearm(struct workq_fd *w);
/* Stop watching and free: fn has returned and is not called again when
 * this returns (from fn itself: not called again; freed when it returns).
 * Must not be called with a lock fn takes. */
void workq_fd_del(struct workq_fd *w);
/* Same without waiting (any thread, any lock held): fin(fin_arg) runs once
 * fn is not running any more, here or on the worker that ran fn. */
void workq_fd_del_async(struct workq_fd *w, work_fn fin, void *fin_arg);

#endif
