/* SPDX-License-Identifier: MIT */
/*
 * SINT interrupts of one partition: the writes to its vCPUs' irqfds.
 *
 * An irqfd belongs to the VMM, which can make a write to it block for ever
 * (blocking mode + a counter preloaded to the maximum).  So the writes happen
 * on a thread of the partition's own: raising an interrupt only marks the
 * vCPU pending and, if that thread sleeps, wakes it (a futex on a word of
 * vmbusd's own).  A stuck write then stalls this partition only, and
 * stopping the thread interrupts it.
 *
 * A worker of the pool may write the irqfd itself (sint_signaller_raise_here)
 * when the VMM made it non-blocking, saving the SINT thread's wake-up on
 * every I/O completion; a timer bounds that write should the VMM switch the
 * fd back to blocking meanwhile (sint_signal.c, write_direct).
 */
#ifndef VMBUSD_SINT_SIGNAL_H
#define VMBUSD_SINT_SIGNAL_H

#include <stdbool.h>
#include <stdint.h>

struct sint_signaller;

/* NULL (and errno) if the thread cannot be started.  name: for logs. */
struct sint_signaller *sint_signaller_new(const char *name, uint32_t nvcpus);
/* vp's irqfd (an eventfd, checked by the caller); the signaller owns it from
 * now on.  Set once per vCPU. */
void sint_signaller_set_irqfd(struct sint_signaller *s, uint32_t vp, int fd);
/* Raise the SINT on vp: never blocks, callable from any thread and with any
 * lock held.  Raises that come before the write coalesce. */
void sint_signaller_raise(struct sint_signaller *s, uint32_t vp);
/* The same, but write the irqfd from the calling thread when that cannot
 * block (see above); otherwise, or if that write fails, as
 * sint_signaller_raise.  For vmbusd's worker threads, which must be able to
 * take SIGRTMIN + 1 (it is unblocked on first use); a partition whose
 * direct write failed once is raised by its SINT thread from then on. */
void sint_signaller_raise_here(struct sint_signaller *s, uint32_t vp);
/* tests/sim only: write directly whatever O_NONBLOCK says, as if the VMM
 * had cleared it just after vmbusd looked. */
extern _Atomic bool sint_direct_test_any_mode;
/* Stop the thread (interrupting a write stuck in the VMM's irqfd), close
 * the irqfds, free.  Never waits on the VMM. */
void sint_signaller_free(struct sint_signaller *s);

#endif
