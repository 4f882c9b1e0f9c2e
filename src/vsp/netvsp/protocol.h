/* SPDX-License-Identifier: MIT */
/*
 * Wire formats of the synthetic network device: NVSP (the VMBus-level
 * protocol of hv_netvsc) and the RNDIS messages it carries.  All fields
 * little endian, packed.  Values from ../shared/reference/
 * linux-guest-contract.md §6 (facts of Linux 6.1 hyperv_net.h / rndis.h).
 */
#ifndef VMBUSD_VSP_NETVSP_PROTOCOL_H
#define VMBUSD_VSP_NETVSP_PROTOCOL_H

#include <stdint.h>

#include "vmbusd/hv_wire.h"

/* ---- NVSP ---------------------------------------------------------- */

#define NVSP_VERSION_1   0x00002u
#define NVSP_VERSION_2   0x30002u
#define NVSP_VERSION_4   0x40000u
#define NVSP_VERSION_5   0x50000u
#define NVSP_VERSION_6   0x60000u
#define NVSP_VERSION_61  0x60001u

enum nvsp_msg_type {
    NVSP_MSG_INIT = 1,
    NVSP_MSG_INIT_COMPLETE = 2,
    NVSP_MSG1_SEND_NDIS_VERSION = 100,
    NVSP_MSG1_SEND_RECV_BUF = 101,
    NVSP_MSG1_SEND_RECV_BUF_COMPLETE = 102,
    NVSP_MSG1_REVOKE_RECV_BUF = 103,
    NVSP_MSG1_SEND_SEND_BUF = 104,
    NVSP_MSG1_SEND_SEND_BUF_COMPLETE = 105,
    NVSP_MSG1_REVOKE_SEND_BUF = 106,
    NVSP_MSG1_SEND_RNDIS_PKT = 107,
    NVSP_MSG1_SEND_RNDIS_PKT_COMPLETE = 108,
    NVSP_MSG2_SEND_NDIS_CONFIG = 125,
    NVSP_MSG4_SEND_VF_ASSOCIATION = 128,
    NVSP_MSG4_SWITCH_DATA_PATH = 129,
    NVSP_MSG5_SUBCHANNEL = 133,
    NVSP_MSG5_SEND_INDIRECTION_TABLE = 134,
};

enum nvsp_status {
    NVSP_STAT_NONE = 0,
    NVSP_STAT_SUCCESS = 1,
    NVSP_STAT_FAIL = 2,
};

/* Every NVSP message is a u32 type and a union; the union is 24 bytes up
 * to NVSP 5 and 36 from NVSP 6 on (its PacketDirect messages), so a
 * message is 28 or 40 bytes on the wire.  Linux sends 40 whatever it
 * negotiated and accepts 28 (its minimum for every completion). */
#define NVSP_MSG_SIZE_V1 28u
#define NVSP_MSG_SIZE_V6 40u
#define NVSP_MSG_MAX     40u

struct nvsp_init {
    uint32_t min_version, max_version;
} HV_PACKED;

struct nvsp_init_complete {
    uint32_t version, max_mdl_chain_len, status;
} HV_PACKED;

struct nvsp_ndis_version {
    uint32_t major, minor;
} HV_PACKED;

struct nvsp_send_buf { /* SEND_RECV_BUF and SEND_SEND_BUF */
    uint32_t gpadl;
    uint16_t id;
} HV_PACKED;

struct nvsp_recv_section {
    uint32_t offset, sub_alloc_size, num_sub_allocs, end_offset;
} HV_PACKED;

struct nvsp_recv_buf_complete {
    uint32_t status, num_sections;
    struct nvsp_recv_section section;
} HV_PACKED;

struct nvsp_send_buf_complete {
    uint32_t status, section_size;
} HV_PACKED;

struct nvsp_revoke_buf {
    uint16_t id;
} HV_PACKED;

#define NVSP_INVALID_SECTION 0xffffffffu

struct nvsp_rndis_pkt {
    uint32_t channel_type; /* 0 data, 1 control */
    uint32_t section_index;
    uint32_t section_size;
} HV_PACKED;

struct nvsp_rndis_pkt_complete {
    uint32_t status;
} HV_PACKED;

struct nvsp_subchannel_req {
    uint32_t op, num_subchannels;
} HV_PACKED;

#define NVSP_SUBCHANNEL_ALLOCATE 1

struct nvsp_subchannel_complete {
    uint32_t status, num_subchannels; /* allocated */
} HV_PACKED;

/* The send indirection table (host -> guest, inband): count entries of
 * u32 channel numbers at `offset` from the message's start (right after
 * the message of the negotiated size).  Linux takes exactly 16. */
#define NVSP_SEND_TABLE_SIZE 16u
struct nvsp_send_table {
    uint32_t count, offset;
} HV_PACKED;

struct nvsp_msg {
    uint32_t type;
    union {
        struct nvsp_init init;
        struct nvsp_init_complete init_complete;
        struct nvsp_ndis_version ndis_version;
        struct nvsp_send_buf send_buf;
        struct nvsp_recv_buf_complete recv_buf_complete;
        struct nvsp_send_buf_complete send_buf_complete;
        struct nvsp_revoke_buf revoke;
        struct nvsp_rndis_pkt rndis_pkt;
        struct nvsp_rndis_pkt_complete rndis_pkt_complete;
        struct nvsp_subchannel_req subchannel;
        struct nvsp_subchannel_complete subchannel_complete;
        struct nvsp_send_table send_table;
        uint8_t raw[NVSP_MSG_MAX - 4];
    } u;
} HV_PACKED;

/* Transfer-page set id of the receive buffer (Linux checks it). */
#define NVSP_RECV_BUF_ID 0xcafe
#define NVSP_SEND_BUF_ID 0

/* ---- RNDIS --------------------------------------------------------- */

enum rndis_msg_type {
    RNDIS_MSG_PACKET = 1,
    RNDIS_MSG_INIT = 2,
    RNDIS_MSG_HALT = 3,
    RNDIS_MSG_QUERY = 4,
    RNDIS_MSG_SET = 5,
    RNDIS_MSG_RESET = 6,
    RNDIS_MSG_INDICATE = 7,
    RNDIS_MSG_KEEPALIVE = 8,
};
#define RNDIS_MSG_COMPLETION 0x80000000u

#define RNDIS_STATUS_SUCCESS          0x00000000u
#define RNDIS_STATUS_FAILURE          0xc0000001u
#define RNDIS_STATUS_NOT_SUPPORTED    0xc00000bbu
#define RNDIS_STATUS_INVALID_LENGTH   0xc0010014u
#define RNDIS_STATUS_INVALID_DATA     0xc0010015u
#define RNDIS_STATUS_MEDIA_CONNECT    0x4001000bu
#define RNDIS_STATUS_MEDIA_DISCONNECT 0x4001000cu

struct rndis_hdr {
    uint32_t type, len;
} HV_PACKED;

struct rndis_init_req {
    uint32_t req_id, major, minor, max_xfer_size;
} HV_PACKED;

struct rndis_init_complete {
    uint32_t req_id, status, major, minor, device_flags, medium, max_pkt_per_msg,
        max_xfer_size, pkt_alignment_factor, af_list_offset, af_list_size;
} HV_PACKED;

struct rndis_query_req { /* and SET */
    uint32_t req_id, oid, info_len, info_offset, vc_handle;
} HV_PACKED;

struct rndis_query_complete {
    uint32_t req_id, status, info_len, info_offset;
} HV_PACKED;

struct rndis_set_complete { /* and KEEPALIVE_C */
    uint32_t req_id, status;
} HV_PACKED;

struct rndis_indicate {
    uint32_t status, buf_len, buf_offset;
} HV_PACKED;

struct rndis_packet {
    uint32_t data_offset, data_len, oob_offset, oob_len, num_oob, ppi_offset, ppi_len,
        vc_handle, reserved;
} HV_PACKED;

/* Offsets inside an RNDIS body are counted from the byte after msg len. */
#define RNDIS_BODY_OFF 8u

#define OID_GEN_MAXIMUM_FRAME_SIZE         0x00010106u
#define OID_GEN_LINK_SPEED                 0x00010107u
#define OID_GEN_CURRENT_PACKET_FILTER      0x0001010eu
#define OID_GEN_MAXIMUM_TOTAL_SIZE         0x00010111u
#define OID_GEN_MEDIA_CONNECT_STATUS       0x00010114u
#define OID_GEN_RECEIVE_SCALE_CAPABILITIES 0x00010203u
#define OID_GEN_RECEIVE_SCALE_PARAMETERS   0x00010204u
#define OID_GEN_RNDIS_CONFIG_PARAMETER     0x0001021bu
#define OID_GEN_XMIT_OK                    0x00020101u
#define OID_GEN_RCV_OK                     0x00020102u
#define OID_GEN_XMIT_ERROR                 0x00020103u
#define OID_GEN_RCV_ERROR                  0x00020104u
#define OID_GEN_RCV_NO_BUFFER              0x00020105u
#define OID_GEN_FRIENDLY_NAME              0x00020216u
#define OID_802_3_PERMANENT_ADDRESS        0x01010101u
#define OID_802_3_CURRENT_ADDRESS          0x01010102u
#define OID_802_3_MULTICAST_LIST           0x01010103u
#define OID_TCP_OFFLOAD_PARAMETERS         0xfc01020cu
#define OID_TCP_OFFLOAD_HARDWARE_CAPS      0xfc01020du

/* NDIS object header of the offload capabilities (NDIS_OBJECT_TYPE_OFFLOAD)
 * and the sizes of its three revisions. */
#define NDIS_OBJECT_TYPE_OFFLOAD 0xa7
#define NDIS_OFFLOAD_SIZE_REV1   112u
#define NDIS_OFFLOAD_SIZE_REV2   144u
#define NDIS_OFFLOAD_SIZE_REV3   156u
/* Receive segment coalescing (RSC) in the capabilities (revision 3: one
 * byte each for IPv4 and IPv6, nonzero = offered) and in the offload
 * parameters the guest sets (0 no change, 1 disabled, 2 enabled; only in
 * the 28-byte form Linux sends over NVSP 5 and later). */
#define NDIS_OFFLOAD_RSC_IP4_OFF 144u
#define NDIS_OFFLOAD_RSC_IP6_OFF 145u
#define NDIS_OFFLOAD_PARAMS_RSC_IP4_OFF 22u
#define NDIS_OFFLOAD_PARAMS_RSC_IP6_OFF 23u
#define NDIS_OFFLOAD_PARAMS_RSC_DISABLED 1u
#define NDIS_OFFLOAD_PARAMS_RSC_ENABLED 2u

struct ndis_object_header {
    uint8_t type, revision;
    uint16_t size;
} HV_PACKED;

/* Receive-side scaling: capabilities (QUERY) and parameters (SET), NDIS
 * objects of revision 2.  The guest's indirection table holds u32 queue
 * numbers (Linux: 128 entries, or what the capabilities say up to 256),
 * its hash key 40 bytes (Toeplitz). */
#define NDIS_OBJECT_TYPE_RSS_CAPABILITIES 0x88
#define NDIS_OBJECT_TYPE_RSS_PARAMETERS   0x89
#define NDIS_RSS_CAPS_HASH_TYPE_TCP_IPV4  0x00000100u
#define NDIS_RSS_CAPS_HASH_TYPE_TCP_IPV6  0x00000200u
#define NDIS_RSS_PARAM_FLAG_DISABLE_RSS   0x0010u
#define NDIS_HASH_FUNC_TOEPLITZ           0x00000001u
#define NDIS_RSS_HASH_KEY_SIZE            40u
#define NDIS_RSS_TABLE_DEFAULT            128u
#define NDIS_RSS_TABLE_MAX                256u

struct ndis_rss_caps {
    struct ndis_object_header hdr;
    uint32_t cap_flags, num_int_msg, num_recv_queues;
    uint16_t num_table_entries;
} HV_PACKED;

/* NDIS_RECEIVE_SCALE_PARAMETERS with natural alignment, as Linux sends it
 * (2 bytes after each 16-bit size, 40 bytes in all). */
struct ndis_rss_params {
    struct ndis_object_header hdr;
    uint16_t flags, base_cpu;
    uint32_t hash_info;
    uint16_t table_size; /* bytes */
    uint16_t pad1;
    uint32_t table_offset; /* from the structure's start */
    uint16_t key_size;
    uint16_t pad2;
    uint32_t key_offset;
    uint32_t proc_masks_offset, num_proc_masks, proc_masks_entry_size;
} HV_PACKED;

/* Per-packet info record types (a PACKET's PPI area: size u32, type u32,
 * data offset u32 from the record's start, then the data). */
#define NDIS_PPI_CHECKSUM 0
#define NDIS_PPI_LSO      2
/* The packet-id record (an "internal" type: bit 31 of the type word) that
 * marks the fragments of one coalesced (RSC) frame spread over several
 * sub-allocations of one transfer-page packet: u8 version (1), u8 flags,
 * u16 packet id.  The guest joins a first fragment's data with the
 * following ones up to the last fragment, all in the same packet. */
#define NDIS_PPI_PKTINFO_ID    (1u | 0x80000000u)
#define NDIS_PKTINFO_ID_V1     1u
#define NDIS_PKTINFO_SUBALLOC  0x1u
#define NDIS_PKTINFO_1ST_FRAG  0x2u
#define NDIS_PKTINFO_LAST_FRAG 0x4u
/* Most ranges a transfer-page packet may carry: Linux sizes the packet it
 * reads for this many (and drops a coalesced frame of more fragments). */
#define NVSP_RSC_MAX 562u
/* NDIS config capability bit (u64 after the MTU and a reserved u32): the
 * guest takes coalesced frames (Linux sets it from NVSP 6.1 on). */
#define NVSP_NDIS_CONFIG_CAP_RSC (1ull << 7)

/* Packet filter bits the guest sets (directed, all-multicast, broadcast,
 * promiscuous...); 0 stops receive. */
#define NDIS_PACKET_TYPE_DIRECTED      0x01u
#define NDIS_PACKET_TYPE_MULTICAST     0x02u
#define NDIS_PACKET_TYPE_ALL_MULTICAST 0x04u
#define NDIS_PACKET_TYPE_BROADCAST     0x08u
#define NDIS_PACKET_TYPE_PROMISCUOUS   0x20u

HV_ASSERT_SIZE(struct nvsp_msg, 40);
HV_ASSERT_SIZE(struct nvsp_recv_buf_complete, 24);
HV_ASSERT_SIZE(struct rndis_init_complete, 44);
HV_ASSERT_SIZE(struct rndis_query_req, 20);
HV_ASSERT_SIZE(struct rndis_packet, 36);
HV_ASSERT_SIZE(struct ndis_rss_caps, 18);
HV_ASSERT_SIZE(struct ndis_rss_params, 40);

#endif
