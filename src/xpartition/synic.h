/* SPDX-License-Identifier: MIT */
/*
 * Host -> guest SynIC messages: the slot protocol and the queue of messages
 * waiting for a slot.
 *
 * A vCPU's message slot (its SIMP page, SINT 2) belongs to the guest while
 * its message_type is not 0; the host writes a message only into a free
 * slot, and asks for an end-of-message (EOM) with the pending flag when it
 * has more.  Messages the slot cannot take yet wait here, in order.
 *
 * The queue knows nothing of partitions or offers: its owner pushes
 * messages, calls synic_queue_deliver() when the slot may have been freed
 * (EOM, retry, new SynIC page) and decides, from its answers, whether to
 * raise the SINT, whether to arm a retry and what to post into the room
 * the queue has.  The caller serialises all calls on one queue.
 */
#ifndef VMBUSD_XP_SYNIC_H
#define VMBUSD_XP_SYNIC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmbusd/hv_wire.h"

#define SYNIC_QUEUE_MAX 128 /* host->guest messages waiting for a slot */

struct synic_queue {
    struct hv_message msgs[SYNIC_QUEUE_MAX];
    unsigned head, len;
};

/* Append a VMBus channel message (header included, 8..240 bytes).
 * -EINVAL: bad length; -ENOBUFS: the queue is full. */
int synic_queue_push(struct synic_queue *q, const void *body, size_t len);
#ifdef VMBUSD_GUESTFUZZ
/* vmbusd-guestfuzz only: any length 0..240 (a mutated message may be
 * shorter than its header). */
int synic_queue_push_raw(struct synic_queue *q, const void *body, size_t len);
#endif
/* Move the oldest message into slot if the guest has freed it (slot NULL:
 * the vCPU has no usable SIMP page yet).  One message per call: the next
 * follows on the guest's EOM, which the pending flag asks for.  true: a
 * message was delivered (raise the SINT) and its entry is free again. */
bool synic_queue_deliver(struct synic_queue *q, struct hv_message *slot);
static inline unsigned synic_queue_len(const struct synic_queue *q) { return q->len; }
static inline unsigned synic_queue_room(const struct synic_queue *q)
{
    return SYNIC_QUEUE_MAX - q->len;
}
/* Forget every waiting message (the guest connection is gone). */
static inline void synic_queue_clear(struct synic_queue *q) { q->head = q->len = 0; }

/* Something waits for the vCPU's interrupt: a message in its slot or an
 * event flag set (slot or flags may be NULL).  Guest memory, read here and
 * never trusted beyond "raise the SINT once". */
bool synic_sint_work_waiting(const struct hv_message *slot, const uint8_t *event_flags);

#endif
