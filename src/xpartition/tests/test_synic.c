/* SPDX-License-Identifier: MIT */
/*
 * Unit test of src/xpartition/synic.c: the host->guest slot protocol and the
 * queue, on a slot in ordinary memory that the test frees and fills the way
 * a guest does (message_type back to 0 when it has read the message).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "vmbusd/hv_wire.h"
#include "xpartition/synic.h"

/* The slot is 256-byte aligned guest memory. */
static struct hv_message slot __attribute__((aligned(256)));
static struct synic_queue q;

static int setup(void **state)
{
    memset(&slot, 0, sizeof(slot));
    memset(&q, 0, sizeof(q));
    return 0;
}

static int push_type(uint32_t msgtype)
{
    struct vmbus_channel_message_header h = {.msgtype = msgtype};
    return synic_queue_push(&q, &h, sizeof(h));
}

static uint32_t slot_msgtype(void)
{
    return ((const struct vmbus_channel_message_header *)slot.payload)->msgtype;
}

/* A free slot takes the oldest message; the pending flag says whether more
 * wait, so the guest's EOM pulls the next one. */
static void test_deliver_in_order_with_pending(void **state)
{
    assert_int_equal(push_type(CHANNELMSG_VERSION_RESPONSE), 0);
    assert_int_equal(push_type(CHANNELMSG_OFFERCHANNEL), 0);
    assert_true(synic_queue_deliver(&q, &slot));
    assert_int_equal(slot.header.message_type, HV_MESSAGE_TYPE_VMBUS);
    assert_int_equal(slot.header.payload_size, sizeof(struct vmbus_channel_message_header));
    assert_int_equal(slot_msgtype(), CHANNELMSG_VERSION_RESPONSE);
    assert_int_equal(slot.header.message_flags & HV_MESSAGE_FLAG_PENDING, HV_MESSAGE_FLAG_PENDING);
    assert_int_equal(synic_queue_len(&q), 1);

    slot.header.message_type = HV_MESSAGE_TYPE_NONE; /* the guest took it */
    assert_true(synic_queue_deliver(&q, &slot));
    assert_int_equal(slot_msgtype(), CHANNELMSG_OFFERCHANNEL);
    assert_int_equal(slot.header.message_flags & HV_MESSAGE_FLAG_PENDING, 0);
    assert_int_equal(synic_queue_len(&q), 0);
    assert_int_equal(synic_queue_room(&q), SYNIC_QUEUE_MAX);
}

/* A busy slot is not overwritten: the message stays queued and the pending
 * flag asks the guest for an EOM once it frees the slot. */
static void test_busy_slot_sets_pending(void **state)
{
    slot.header.message_type = HV_MESSAGE_TYPE_VMBUS;
    slot.header.payload_size = 8;
    ((struct vmbus_channel_message_header *)slot.payload)->msgtype = CHANNELMSG_UNLOAD_RESPONSE;
    assert_int_equal(push_type(CHANNELMSG_OFFERCHANNEL), 0);
    assert_false(synic_queue_deliver(&q, &slot));
    assert_int_equal(slot_msgtype(), CHANNELMSG_UNLOAD_RESPONSE);
    assert_int_equal(slot.header.message_flags & HV_MESSAGE_FLAG_PENDING, HV_MESSAGE_FLAG_PENDING);
    assert_int_equal(synic_queue_len(&q), 1);
}

/* No usable SIMP page yet: nothing is delivered, nothing is lost. */
static void test_no_slot_keeps_messages(void **state)
{
    assert_int_equal(push_type(CHANNELMSG_VERSION_RESPONSE), 0);
    assert_false(synic_queue_deliver(&q, NULL));
    assert_int_equal(synic_queue_len(&q), 1);
    assert_true(synic_queue_deliver(&q, &slot));
    assert_int_equal(slot_msgtype(), CHANNELMSG_VERSION_RESPONSE);
}

/* The queue is bounded and refuses what is not a channel message; a
 * refused push changes nothing. */
static void test_full_and_bad_length(void **state)
{
    uint8_t big[HV_MESSAGE_PAYLOAD_SIZE + 1] = {0};
    assert_int_equal(synic_queue_push(&q, big, sizeof(big)), -EINVAL);
    assert_int_equal(synic_queue_push(&q, big, 4), -EINVAL);
    assert_int_equal(synic_queue_len(&q), 0);
    assert_int_equal(synic_queue_push(&q, big, HV_MESSAGE_PAYLOAD_SIZE), 0);
    for (unsigned i = 1; i < SYNIC_QUEUE_MAX; i++)
        assert_int_equal(push_type(CHANNELMSG_OFFERCHANNEL), 0);
    assert_int_equal(synic_queue_room(&q), 0);
    assert_int_equal(push_type(CHANNELMSG_ALLOFFERS_DELIVERED), -ENOBUFS);
    assert_true(synic_queue_deliver(&q, &slot));
    assert_int_equal(slot.header.payload_size, HV_MESSAGE_PAYLOAD_SIZE);
    assert_int_equal(synic_queue_room(&q), 1);
    /* The ring wraps: the last message pushed comes out last. */
    assert_int_equal(push_type(CHANNELMSG_ALLOFFERS_DELIVERED), 0);
    for (unsigned i = 1; i < SYNIC_QUEUE_MAX; i++) {
        slot.header.message_type = HV_MESSAGE_TYPE_NONE;
        assert_true(synic_queue_deliver(&q, &slot));
        assert_int_equal(slot_msgtype(), CHANNELMSG_OFFERCHANNEL);
    }
    slot.header.message_type = HV_MESSAGE_TYPE_NONE;
    assert_true(synic_queue_deliver(&q, &slot));
    assert_int_equal(slot_msgtype(), CHANNELMSG_ALLOFFERS_DELIVERED);
    assert_int_equal(synic_queue_len(&q), 0);
}

static void test_clear(void **state)
{
    assert_int_equal(push_type(CHANNELMSG_OFFERCHANNEL), 0);
    synic_queue_clear(&q);
    assert_int_equal(synic_queue_len(&q), 0);
    assert_false(synic_queue_deliver(&q, &slot));
    assert_int_equal(slot.header.message_type, HV_MESSAGE_TYPE_NONE);
}

/* An interrupt is owed while the slot holds a message or any event flag is
 * set. */
static void test_sint_work_waiting(void **state)
{
    static uint64_t flags[HV_EVENT_FLAGS_BYTES / 8];
    memset(flags, 0, sizeof(flags));
    assert_false(synic_sint_work_waiting(NULL, NULL));
    assert_false(synic_sint_work_waiting(&slot, (uint8_t *)flags));
    flags[HV_EVENT_FLAGS_BYTES / 8 - 1] = 1ull << 63; /* relid 2047 */
    assert_true(synic_sint_work_waiting(NULL, (uint8_t *)flags));
    flags[HV_EVENT_FLAGS_BYTES / 8 - 1] = 0;
    slot.header.message_type = HV_MESSAGE_TYPE_VMBUS;
    assert_true(synic_sint_work_waiting(&slot, NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_deliver_in_order_with_pending, setup),
        cmocka_unit_test_setup(test_busy_slot_sets_pending, setup),
        cmocka_unit_test_setup(test_no_slot_keeps_messages, setup),
        cmocka_unit_test_setup(test_full_and_bad_length, setup),
        cmocka_unit_test_setup(test_clear, setup),
        cmocka_unit_test_setup(test_sint_work_waiting, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
