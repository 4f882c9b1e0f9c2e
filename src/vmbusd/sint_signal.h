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
 */
#ifndef VMBUSD_SINT_SIGNAL_H
#define VMBUSD_SINT_SIGNAL_H

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
/* Stop the thread (interrupting a write stuck in the VMM's irqfd), close
 * the irqfds, free.  Never waits on the VMM. */
void sint_signaller_free(struct sint_signaller *s);

#endif
