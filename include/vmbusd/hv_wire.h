/* SPDX-License-Identifier: MIT */
/*
 * Hyper-V / VMBus wire formats as a Linux 6.1 guest (hv_vmbus) lays them out.
 *
 * Everything here is little-endian and byte-packed; every size and offset a
 * guest depends on is pinned with a static assertion at the bottom, so a
 * layout mistake breaks the build rather than a guest.
 */
#ifndef VMBUSD_HV_WIRE_H
#define VMBUSD_HV_WIRE_H

#include <stddef.h>
#include <stdint.h>

#define HV_PACKED __attribute__((packed))

/* ------------------------------------------------------------------ */
/* GUIDs (mixed-endian, as stored in memory by Windows and Linux)      */

struct hv_guid {
    uint8_t b[16];
};

/* ------------------------------------------------------------------ */
/* Hypercall status codes and hypercall numbers                       */

#define HV_STATUS_SUCCESS                 0
#define HV_STATUS_INVALID_HYPERCALL_CODE  2
#define HV_STATUS_INVALID_HYPERCALL_INPUT 3
#define HV_STATUS_INVALID_ALIGNMENT       4
#define HV_STATUS_INVALID_PARAMETER       5
#define HV_STATUS_INSUFFICIENT_MEMORY     11
#define HV_STATUS_INVALID_PORT_ID         17
#define HV_STATUS_INVALID_CONNECTION_ID   18
#define HV_STATUS_INSUFFICIENT_BUFFERS    19

#define HVCALL_POST_MESSAGE 0x005c
#define HVCALL_SIGNAL_EVENT 0x005d

/* ------------------------------------------------------------------ */
/* SynIC                                                               */

#define HV_SYNIC_SINT_COUNT       16
#define HV_MESSAGE_SIZE           256
#define HV_MESSAGE_PAYLOAD_SIZE   240
#define HV_EVENT_FLAGS_BYTES      256
#define HV_EVENT_FLAGS_COUNT      (HV_EVENT_FLAGS_BYTES * 8) /* 2048 */
#define HV_PAGE_SIZE              4096u
#define HV_PAGE_SHIFT             12

#define VMBUS_MESSAGE_SINT        2   /* the SINT Linux uses for VMBus */
#define HV_MESSAGE_TYPE_NONE      0u
#define HV_MESSAGE_TYPE_VMBUS     1u  /* what Hyper-V uses for channel messages */
#define HV_MESSAGE_TIMER_EXPIRED  0x80000010u

#define HV_MESSAGE_FLAG_PENDING   0x01

/* One 256-byte slot of the SynIC message page (SIMP + sint * 256). */
struct hv_message_header {
    uint32_t message_type;
    uint8_t payload_size;
    uint8_t message_flags;
    uint8_t reserved[2];
    uint64_t sender; /* port id / partition id; Linux ignores it */
} HV_PACKED;

struct hv_message {
    struct hv_message_header header;
    uint8_t payload[HV_MESSAGE_PAYLOAD_SIZE];
} HV_PACKED;

/* HvPostMessage input page (guest -> host). */
struct hv_post_message_input {
    uint32_t connection_id;
    uint32_t reserved;
    uint32_t message_type;
    uint32_t payload_size;
    uint8_t payload[HV_MESSAGE_PAYLOAD_SIZE];
} HV_PACKED;

/* ------------------------------------------------------------------ */
/* Protocol versions and connection ids                                */

#define VMBUS_VERSION(maj, min) (((uint32_t)(maj) << 16) | (uint32_t)(min))
#define VMBUS_VERSION_WS2008   VMBUS_VERSION(0, 13)
#define VMBUS_VERSION_WIN7     VMBUS_VERSION(1, 1)
#define VMBUS_VERSION_WIN8     VMBUS_VERSION(2, 4)
#define VMBUS_VERSION_WIN8_1   VMBUS_VERSION(3, 0)
#define VMBUS_VERSION_WIN10    VMBUS_VERSION(4, 0)
#define VMBUS_VERSION_WIN10_RS3 VMBUS_VERSION(4, 1)
#define VMBUS_VERSION_WIN10_V5 VMBUS_VERSION(5, 0)
#define VMBUS_VERSION_WIN10_V5_1 VMBUS_VERSION(5, 1)
#define VMBUS_VERSION_WIN10_V5_2 VMBUS_VERSION(5, 2)
#define VMBUS_VERSION_WIN10_V5_3 VMBUS_VERSION(5, 3)

#define VMBUS_MESSAGE_CONNECTION_ID    1 /* all versions < 5.0, and our msg_conn_id */
#define VMBUS_MESSAGE_CONNECTION_ID_4  4 /* INITIATE_CONTACT for versions >= 5.0 */
#define VMBUS_MONITOR_CONNECTION_ID    3
#define VMBUS_EVENT_CONNECTION_ID      2 /* placeholder the guest overwrites */

#define VMBUS_MAX_RELID 2047 /* relids index the 2048-bit event flag bitmap */

/* ------------------------------------------------------------------ */
/* Channel management messages                                         */

enum vmbus_channel_msg_type {
    CHANNELMSG_INVALID = 0,
    CHANNELMSG_OFFERCHANNEL = 1,
    CHANNELMSG_RESCIND_CHANNELOFFER = 2,
    CHANNELMSG_REQUESTOFFERS = 3,
    CHANNELMSG_ALLOFFERS_DELIVERED = 4,
    CHANNELMSG_OPENCHANNEL = 5,
    CHANNELMSG_OPENCHANNEL_RESULT = 6,
    CHANNELMSG_CLOSECHANNEL = 7,
    CHANNELMSG_GPADL_HEADER = 8,
    CHANNELMSG_GPADL_BODY = 9,
    CHANNELMSG_GPADL_CREATED = 10,
    CHANNELMSG_GPADL_TEARDOWN = 11,
    CHANNELMSG_GPADL_TORNDOWN = 12,
    CHANNELMSG_RELID_RELEASED = 13,
    CHANNELMSG_INITIATE_CONTACT = 14,
    CHANNELMSG_VERSION_RESPONSE = 15,
    CHANNELMSG_UNLOAD = 16,
    CHANNELMSG_UNLOAD_RESPONSE = 17,
    CHANNELMSG_18 = 18,
    CHANNELMSG_19 = 19,
    CHANNELMSG_20 = 20,
    CHANNELMSG_TL_CONNECT_REQUEST = 21,
    CHANNELMSG_MODIFYCHANNEL = 22,
    CHANNELMSG_TL_CONNECT_RESULT = 23,
    CHANNELMSG_MODIFYCHANNEL_RESPONSE = 24,
    CHANNELMSG_COUNT
};

struct vmbus_channel_message_header {
    uint32_t msgtype;
    uint32_t padding;
} HV_PACKED;

/* Offer body as Linux reads it (struct vmbus_channel_offer). */
struct vmbus_channel_offer {
    struct hv_guid if_type;
    struct hv_guid if_instance;
    uint64_t reserved1;          /* interface revision */
    uint64_t reserved2;
    uint16_t chn_flags;
    uint16_t mmio_megabytes;
    union {
        uint8_t user_def[120];
        struct {
            uint32_t pipe_mode;
            uint8_t user_def[116];
        } HV_PACKED pipe;
    } u;
    uint16_t sub_channel_index;
    uint16_t reserved3;
} HV_PACKED;

#define VMBUS_CHANNEL_ENUMERATE_DEVICE_INTERFACE 0x0001
#define VMBUS_CHANNEL_NAMED_PIPE_MODE            0x0010
#define VMBUS_CHANNEL_LOOPBACK_OFFER             0x0100
#define VMBUS_CHANNEL_PARENT_OFFER               0x0200
#define VMBUS_CHANNEL_REQUEST_MONITORED_NOTIFICATION 0x0400
#define VMBUS_CHANNEL_TLNPI_PROVIDER_OFFER       0x2000

struct vmbus_channel_offer_channel {
    struct vmbus_channel_message_header header;
    struct vmbus_channel_offer offer;
    uint32_t child_relid;
    uint8_t monitorid;
    uint8_t monitor_allocated; /* bit 0 */
    uint16_t is_dedicated_interrupt; /* bit 0 */
    uint32_t connection_id;
} HV_PACKED;

struct vmbus_channel_rescind_offer {
    struct vmbus_channel_message_header header;
    uint32_t child_relid;
} HV_PACKED;

/* CLOSECHANNEL and RELID_RELEASED have the same shape. */
struct vmbus_channel_relid_msg {
    struct vmbus_channel_message_header header;
    uint32_t child_relid;
} HV_PACKED;

struct vmbus_channel_open_channel {
    struct vmbus_channel_message_header header;
    uint32_t child_relid;
    uint32_t openid;
    uint32_t ringbuffer_gpadlhandle;
    uint32_t target_vp;
    uint32_t downstream_ringbuffer_pageoffset;
    uint8_t userdata[120];
} HV_PACKED;

struct vmbus_channel_open_result {
    struct vmbus_channel_message_header header;
    uint32_t child_relid;
    uint32_t openid;
    uint32_t status;
} HV_PACKED;

struct vmbus_gpa_range {
    uint32_t byte_count;
    uint32_t byte_offset;
    uint64_t pfn_array[]; /* unaligned inside channel messages */
} HV_PACKED;

struct vmbus_channel_gpadl_header {
    struct vmbus_channel_message_header header;
    uint32_t child_relid;
    uint32_t gpadl;
    uint16_t range_buflen;
    uint16_t rangecount;
    struct vmbus_gpa_range range[]; /* first range; PFNs follow */
} HV_PACKED;

struct vmbus_channel_gpadl_body {
    struct vmbus_channel_message_header header;
    uint32_t msgnumber;
    uint32_t gpadl;
    uint64_t pfn[];
} HV_PACKED;

#define VMBUS_GPADL_HEADER_FIXED 20u  /* up to range[] */
#define VMBUS_GPADL_HEADER_MAX_PFNS ((HV_MESSAGE_PAYLOAD_SIZE - 28) / 8) /* 26 */
#define VMBUS_GPADL_BODY_MAX_PFNS   ((HV_MESSAGE_PAYLOAD_SIZE - 16) / 8) /* 28 */

struct vmbus_channel_gpadl_created {
    struct vmbus_channel_message_header header;
    uint32_t child_relid;
    uint32_t gpadl;
    uint32_t creation_status;
} HV_PACKED;

struct vmbus_channel_gpadl_teardown {
    struct vmbus_channel_message_header header;
    uint32_t child_relid;
    uint32_t gpadl;
} HV_PACKED;

struct vmbus_channel_gpadl_torndown {
    struct vmbus_channel_message_header header;
    uint32_t gpadl;
} HV_PACKED;

struct vmbus_channel_initiate_contact {
    struct vmbus_channel_message_header header;
    uint32_t vmbus_version_requested;
    uint32_t target_vcpu;
    union {
        uint64_t interrupt_page; /* versions < 5.0 */
        struct {
            uint8_t msg_sint;   /* versions >= 5.0 */
            uint8_t padding1[3];
            uint32_t padding2;
        } HV_PACKED s;
    } u;
    uint64_t monitor_page1;
    uint64_t monitor_page2;
} HV_PACKED;

struct vmbus_channel_version_response {
    struct vmbus_channel_message_header header;
    uint8_t version_supported;
    uint8_t connection_state;
    uint16_t padding;
    uint32_t msg_conn_id;
} HV_PACKED;

struct vmbus_channel_tl_connect_request {
    struct vmbus_channel_message_header header;
    struct hv_guid guest_endpoint_id;
    struct hv_guid host_service_id;
} HV_PACKED;

/* Windows / OpenVMM layout; Linux ignores this message. */
struct vmbus_channel_tl_connect_result {
    struct vmbus_channel_message_header header;
    struct hv_guid guest_endpoint_id;
    struct hv_guid host_service_id;
    uint32_t status;
} HV_PACKED;

struct vmbus_channel_modifychannel {
    struct vmbus_channel_message_header header;
    uint32_t child_relid;
    uint32_t target_vp;
} HV_PACKED;

struct vmbus_channel_modifychannel_response {
    struct vmbus_channel_message_header header;
    uint32_t child_relid;
    uint32_t status;
} HV_PACKED;

/* ------------------------------------------------------------------ */
/* Monitor page (MNF); we never allocate monitors, but pin the layout. */

struct hv_monitor_page {
    uint32_t trigger_state;
    uint32_t rsvdz1;
    struct {
        uint32_t pending;
        uint32_t armed;
    } HV_PACKED trigger_group[4];
    uint64_t rsvdz2[3];
    int32_t next_checktime[4][32];
    uint16_t latency[4][32];
    uint64_t rsvdz3[32];
    struct {
        uint32_t connectionid;
        uint16_t flagnumber;
        uint16_t rsvdz;
    } HV_PACKED parameter[4][32];
    uint8_t rsvdz4[1984];
} HV_PACKED;

/* ------------------------------------------------------------------ */
/* Ring buffers                                                        */

struct vmbus_ring_header {
    uint32_t write_index;
    uint32_t read_index;
    uint32_t interrupt_mask;
    uint32_t pending_send_sz;
    uint32_t reserved1[12];
    uint32_t feature_bits; /* bit 0: pending_send_sz supported */
    uint8_t reserved2[4028];
} HV_PACKED;

#define VMBUS_RING_FEAT_PENDING_SEND_SZ 0x1

enum vmbus_packet_type {
    VM_PKT_INVALID = 0x0,
    VM_PKT_SYNCH = 0x1,
    VM_PKT_ADD_XFER_PAGESET = 0x2,
    VM_PKT_RM_XFER_PAGESET = 0x3,
    VM_PKT_ESTABLISH_GPADL = 0x4,
    VM_PKT_TEARDOWN_GPADL = 0x5,
    VM_PKT_DATA_INBAND = 0x6,
    VM_PKT_DATA_USING_XFER_PAGES = 0x7,
    VM_PKT_DATA_USING_GPADL = 0x8,
    VM_PKT_DATA_USING_GPA_DIRECT = 0x9,
    VM_PKT_CANCEL_REQUEST = 0xa,
    VM_PKT_COMP = 0xb,
    VM_PKT_DATA_USING_ADDITIONAL_PKT = 0xc,
    VM_PKT_ADDITIONAL_DATA = 0xd
};

#define VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED 1

struct vmpacket_descriptor {
    uint16_t type;
    uint16_t offset8;
    uint16_t len8;
    uint16_t flags;
    uint64_t trans_id;
} HV_PACKED;

#define VMBUS_PKT_TRAILER_SIZE 8u

struct vmtransfer_page_range {
    uint32_t byte_count;
    uint32_t byte_offset;
} HV_PACKED;

struct vmtransfer_page_packet_header {
    struct vmpacket_descriptor d;
    uint16_t xfer_pageset_id;
    uint8_t sender_owns_set;
    uint8_t reserved;
    uint32_t range_cnt;
    struct vmtransfer_page_range ranges[];
} HV_PACKED;

struct vmdata_gpa_direct {
    struct vmpacket_descriptor d;
    uint32_t reserved;
    uint32_t range_cnt;
    /* struct vmbus_gpa_range ranges[], packed back to back */
} HV_PACKED;

/* ------------------------------------------------------------------ */
/* Layout pins (offsets from linux-guest-contract.md / include/linux/hyperv.h) */

#define HV_ASSERT_SIZE(t, n) _Static_assert(sizeof(t) == (n), #t " must be " #n " bytes")
#define HV_ASSERT_OFF(t, f, n) \
    _Static_assert(offsetof(t, f) == (n), #t "." #f " must be at " #n)

HV_ASSERT_SIZE(struct hv_guid, 16);
HV_ASSERT_SIZE(struct hv_message_header, 16);
HV_ASSERT_SIZE(struct hv_message, 256);
HV_ASSERT_SIZE(struct hv_post_message_input, 256);
HV_ASSERT_SIZE(struct vmbus_channel_message_header, 8);
HV_ASSERT_SIZE(struct vmbus_channel_offer, 176);
HV_ASSERT_SIZE(struct vmbus_channel_offer_channel, 196);
HV_ASSERT_OFF(struct vmbus_channel_offer_channel, offer.if_instance, 24);
HV_ASSERT_OFF(struct vmbus_channel_offer_channel, offer.chn_flags, 56);
HV_ASSERT_OFF(struct vmbus_channel_offer_channel, offer.u.pipe.user_def, 64);
HV_ASSERT_OFF(struct vmbus_channel_offer_channel, offer.sub_channel_index, 180);
HV_ASSERT_OFF(struct vmbus_channel_offer_channel, child_relid, 184);
HV_ASSERT_OFF(struct vmbus_channel_offer_channel, monitorid, 188);
HV_ASSERT_OFF(struct vmbus_channel_offer_channel, is_dedicated_interrupt, 190);
HV_ASSERT_OFF(struct vmbus_channel_offer_channel, connection_id, 192);
HV_ASSERT_SIZE(struct vmbus_channel_rescind_offer, 12);
HV_ASSERT_SIZE(struct vmbus_channel_relid_msg, 12);
HV_ASSERT_SIZE(struct vmbus_channel_open_channel, 148);
HV_ASSERT_OFF(struct vmbus_channel_open_channel, downstream_ringbuffer_pageoffset, 24);
HV_ASSERT_SIZE(struct vmbus_channel_open_result, 20);
HV_ASSERT_SIZE(struct vmbus_gpa_range, 8);
HV_ASSERT_SIZE(struct vmbus_channel_gpadl_header, 20);
HV_ASSERT_OFF(struct vmbus_channel_gpadl_header, range_buflen, 16);
HV_ASSERT_SIZE(struct vmbus_channel_gpadl_body, 16);
HV_ASSERT_SIZE(struct vmbus_channel_gpadl_created, 20);
HV_ASSERT_SIZE(struct vmbus_channel_gpadl_teardown, 16);
HV_ASSERT_SIZE(struct vmbus_channel_gpadl_torndown, 12);
HV_ASSERT_SIZE(struct vmbus_channel_initiate_contact, 40);
HV_ASSERT_OFF(struct vmbus_channel_initiate_contact, monitor_page1, 24);
HV_ASSERT_SIZE(struct vmbus_channel_version_response, 16);
HV_ASSERT_OFF(struct vmbus_channel_version_response, msg_conn_id, 12);
HV_ASSERT_SIZE(struct vmbus_channel_tl_connect_request, 40);
HV_ASSERT_SIZE(struct vmbus_channel_tl_connect_result, 44);
HV_ASSERT_SIZE(struct vmbus_channel_modifychannel, 16);
HV_ASSERT_SIZE(struct vmbus_channel_modifychannel_response, 16);
HV_ASSERT_SIZE(struct hv_monitor_page, 4096);
HV_ASSERT_OFF(struct hv_monitor_page, next_checktime, 0x40);
HV_ASSERT_OFF(struct hv_monitor_page, latency, 0x240);
HV_ASSERT_OFF(struct hv_monitor_page, parameter, 0x440);
HV_ASSERT_SIZE(struct vmbus_ring_header, 4096);
HV_ASSERT_OFF(struct vmbus_ring_header, feature_bits, 64);
HV_ASSERT_SIZE(struct vmpacket_descriptor, 16);
HV_ASSERT_SIZE(struct vmtransfer_page_packet_header, 24);
HV_ASSERT_SIZE(struct vmdata_gpa_direct, 24);

#endif /* VMBUSD_HV_WIRE_H */
