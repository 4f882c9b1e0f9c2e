/* SPDX-License-Identifier: MIT */
/*
 * The storage VSC/VSP protocol on the wire (the "vstor" packet Hyper-V's
 * synthetic SCSI controller exchanges with Linux's hv_storvsc and Windows'
 * storvsc): layouts and numbers only.  Facts from
 * ../shared/reference/linux-guest-contract.md section 5.
 */
#ifndef VMBUSD_STORVSP_VSTOR_H
#define VMBUSD_STORVSP_VSTOR_H

#include <stdint.h>

#define VSTOR_CLASS_SCSI "ba6163d9-04a1-4d29-b605-72e2ffb1dc7f"

/* Operations (vstor_packet.operation). */
enum {
    VSTOR_OP_COMPLETE_IO = 1,
    VSTOR_OP_REMOVE_DEVICE = 2,
    VSTOR_OP_EXECUTE_SRB = 3,
    VSTOR_OP_RESET_LUN = 4,
    VSTOR_OP_RESET_ADAPTER = 5,
    VSTOR_OP_RESET_BUS = 6,
    VSTOR_OP_BEGIN_INITIALIZATION = 7,
    VSTOR_OP_END_INITIALIZATION = 8,
    VSTOR_OP_QUERY_PROTOCOL_VERSION = 9,
    VSTOR_OP_QUERY_PROPERTIES = 10,
    VSTOR_OP_ENUMERATE_BUS = 11,
    VSTOR_OP_FCHBA_DATA = 12,
    VSTOR_OP_CREATE_SUB_CHANNELS = 13,
};

/* Protocol versions (major << 8 | minor). */
#define VSTOR_VERSION_WIN6  0x0200
#define VSTOR_VERSION_WIN7  0x0402
#define VSTOR_VERSION_WIN8  0x0501
#define VSTOR_VERSION_WIN8_1 0x0600
#define VSTOR_VERSION_WIN10 0x0602

/* NTSTATUS values in vstor_packet.status. */
#define VSTOR_STATUS_SUCCESS               0x00000000u
#define VSTOR_STATUS_DATA_OVERRUN          0x80000005u
#define VSTOR_STATUS_DEVICE_BUSY           0x80000011u
#define VSTOR_STATUS_INVALID_PARAMETER     0xC000000Du
#define VSTOR_STATUS_INVALID_DEVICE_REQUEST 0xC0000010u
#define VSTOR_STATUS_REVISION_MISMATCH     0xC0000059u
#define VSTOR_STATUS_DEVICE_DOES_NOT_EXIST 0xC00000C0u
#define VSTOR_STATUS_INVALID_DEVICE_STATE  0xC0000184u
#define VSTOR_STATUS_IO_DEVICE_ERROR       0xC0000185u

/* SRB status (vmscsi_request.srb_status). */
#define SRB_STATUS_SUCCESS         0x01
#define SRB_STATUS_ABORTED         0x02
#define SRB_STATUS_ERROR           0x04
#define SRB_STATUS_INVALID_REQUEST 0x06
#define SRB_STATUS_DATA_OVERRUN    0x12
#define SRB_STATUS_INVALID_LUN     0x20
#define SRB_STATUS_AUTOSENSE_VALID 0x80

/* vmscsi_request.data_in */
#define VSTOR_DATA_OUT  0 /* guest -> disk (write) */
#define VSTOR_DATA_IN   1 /* disk -> guest (read) */
#define VSTOR_DATA_NONE 2

#define VSTOR_CDB_AREA 20 /* cdb[16] and sense[20] share these bytes */

/* The SCSI request block at vstor_packet + 12.  Pre-WIN8 protocols carry
 * only the first VSTOR_SRB_SIZE_PRE_WIN8 bytes (no "win8 extension"). */
struct vstor_srb {
    uint16_t length;
    uint8_t srb_status;
    uint8_t scsi_status;
    uint8_t port;
    uint8_t path_id;
    uint8_t target_id;
    uint8_t lun;
    uint8_t cdb_length;
    uint8_t sense_info_length;
    uint8_t data_in;
    uint8_t reserved;
    uint32_t data_transfer_length;
    uint8_t cdb_sense[VSTOR_CDB_AREA];
    /* win8 extension */
    uint16_t reserve;
    uint8_t queue_tag;
    uint8_t queue_action;
    uint32_t srb_flags;
    uint32_t time_out_value;
    uint32_t queue_sort_key;
} __attribute__((packed));

/* QUERY_PROPERTIES answer at vstor_packet + 12. */
struct vstor_properties {
    uint32_t reserved;
    uint16_t max_channel_cnt;
    uint16_t reserved2;
    uint32_t flags;
    uint32_t max_transfer_bytes;
    uint64_t reserved3;
} __attribute__((packed));

#define VSTOR_PROP_MULTI_CHANNEL 0x1u

struct vstor_version {
    uint16_t major_minor;
    uint16_t revision;
} __attribute__((packed));

struct vstor_packet {
    uint32_t operation;
    uint32_t flags;
    uint32_t status;
    union {
        struct vstor_srb srb;
        struct vstor_properties props;
        struct vstor_version version;
        uint16_t sub_channel_count;
        uint8_t raw[52];
    } u;
} __attribute__((packed));

#define VSTOR_PACKET_SIZE 64        /* WIN8 and later */
#define VSTOR_PACKET_SIZE_PRE_WIN8 48 /* 12 + the 36-byte SRB */
#define VSTOR_SRB_SIZE 52
#define VSTOR_SRB_SIZE_PRE_WIN8 36
#define VSTOR_SENSE_SIZE 20         /* WIN8 and later */
#define VSTOR_SENSE_SIZE_PRE_WIN8 18

_Static_assert(sizeof(struct vstor_srb) == VSTOR_SRB_SIZE, "vstor_srb");
_Static_assert(sizeof(struct vstor_properties) == 24, "vstor_properties");
_Static_assert(sizeof(struct vstor_packet) == VSTOR_PACKET_SIZE, "vstor_packet");

#endif
