/* SPDX-License-Identifier: MIT */
/* Host -> guest SynIC messages: the slot protocol and its queue (synic.h). */
#include "xpartition/synic.h"

#include <errno.h>
#include <string.h>

/* The slot is 256-byte aligned guest memory: the packed header's fields sit
 * at their natural alignment, so plain atomics on them are fine. */
static uint32_t *slot_type(const struct hv_message *slot)
{
    uintptr_t base = (uintptr_t)slot;
    return (uint32_t *)(base + offsetof(struct hv_message_header, message_type));
}

static uint8_t *slot_flags(struct hv_message *slot)
{
    uintptr_t base = (uintptr_t)slot;
    return (uint8_t *)(base + offsetof(struct hv_message_header, message_flags));
}

/*
 * Try to place msg in the slot.  If it is busy we set the pending flag so
 * that the guest writes EOM after freeing it, and look again: the guest
 * clears the type before reading the flag, so after our store + full fence
 * either we see the slot free, or the guest sees our flag and sends EOM.
 * This closes the lost-EOM window between our check and our flag.
 */
static bool slot_try_write(struct hv_message *slot, const struct hv_message *msg, bool more)
{
    uint32_t *typep = slot_type(slot);
    uint8_t *flagsp = slot_flags(slot);
    uint32_t type = __atomic_load_n(typep, __ATOMIC_ACQUIRE);
    if (type != HV_MESSAGE_TYPE_NONE) {
        __atomic_fetch_or(flagsp, HV_MESSAGE_FLAG_PENDING, __ATOMIC_SEQ_CST);
        type = __atomic_load_n(typep, __ATOMIC_SEQ_CST);
        if (type != HV_MESSAGE_TYPE_NONE)
            return false;
    }
    memcpy(slot->payload, msg->payload, msg->header.payload_size);
    slot->header.payload_size = msg->header.payload_size;
    slot->header.sender = 0;
    /* The pending flag on a delivered message asks the guest for an EOM so
     * the next queued one follows promptly. */
    __atomic_store_n(flagsp, more ? HV_MESSAGE_FLAG_PENDING : 0, __ATOMIC_RELAXED);
    __atomic_store_n(typep, msg->header.message_type, __ATOMIC_RELEASE);
    return true;
}

int synic_queue_push(struct synic_queue *q, const void *body, size_t len)
{
    if (len > HV_MESSAGE_PAYLOAD_SIZE || len < sizeof(struct vmbus_channel_message_header))
        return -EINVAL;
    if (q->len == SYNIC_QUEUE_MAX)
        return -ENOBUFS;
    struct hv_message *m = &q->msgs[(q->head + q->len) % SYNIC_QUEUE_MAX];
    memset(m, 0, sizeof(*m));
    m->header.message_type = HV_MESSAGE_TYPE_VMBUS;
    m->header.payload_size = (uint8_t)len;
    memcpy(m->payload, body, len);
    q->len++;
    return 0;
}

#ifdef VMBUSD_GUESTFUZZ
int synic_queue_push_raw(struct synic_queue *q, const void *body, size_t len)
{
    if (len >= sizeof(struct vmbus_channel_message_header))
        return synic_queue_push(q, body, len);
    /* Shorter than a header: queued as a zero-padded header, then the
     * size the guest will see is cut to len. */
    uint8_t pad[sizeof(struct vmbus_channel_message_header)] = {0};
    memcpy(pad, body, len);
    int ret = synic_queue_push(q, pad, sizeof(pad));
    if (ret == 0)
        q->msgs[(q->head + q->len - 1) % SYNIC_QUEUE_MAX].header.payload_size = (uint8_t)len;
    return ret;
}
#endif

bool synic_queue_deliver(struct synic_queue *q, struct hv_message *slot)
{
    if (q->len == 0 || !slot || !slot_try_write(slot, &q->msgs[q->head], q->len > 1))
        return false;
    q->head = (q->head + 1) % SYNIC_QUEUE_MAX;
    q->len--;
    return true;
}

bool synic_sint_work_waiting(const struct hv_message *slot, const uint8_t *event_flags)
{
    if (slot && __atomic_load_n(slot_type(slot), __ATOMIC_ACQUIRE) != HV_MESSAGE_TYPE_NONE)
        return true;
    if (event_flags) {
        /* SIEFP + 256 * SINT: 8-byte aligned; senders set bits atomically */
        const uint64_t *w = (const uint64_t *)(const void *)event_flags;
        for (unsigned i = 0; i < HV_EVENT_FLAGS_BYTES / 8; i++)
            if (__atomic_load_n(&w[i], __ATOMIC_RELAXED))
                return true;
    }
    return false;
}
