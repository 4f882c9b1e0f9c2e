/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/*
 * Wire protocol of the fuzz positive control ("fzpc"): a test VMBus device
 * class offered by vmbusd's fzpc test VSP (tests/fuzz-guest/vsp) and driven
 * by the guest module tests/fuzz-guest/module/fzpc.c.  Shared by both, so it
 * uses only fixed-width types the kernel and user space both have.
 *
 * Every message starts with a 32-bit type; all fields little-endian, no
 * padding.  Sequence: the guest sends VERSION_REQ, the host answers
 * VERSION_RESP (status 0, version FZPC_VERSION); then the guest sends
 * DATA_REQ for slots 0..FZPC_NSLOTS-1 and the host answers each with
 * DATA_RESP carrying `len` (<= FZPC_SLOT_BYTES) bytes for that slot.
 */
#ifndef FZPC_PROTO_H
#define FZPC_PROTO_H

#define FZPC_CLASS_GUID_STR    "3a7e5c91-6f0d-4b2a-9c84-1d2e7f60b5a3"
#define FZPC_INSTANCE_GUID_STR "3a7e5c91-6f0d-4b2a-9c84-000000000001"

#define FZPC_VERSION    1
#define FZPC_NSLOTS     8
#define FZPC_SLOT_BYTES 64

/* VERSION_RESP is 0, the value a corrupted type field most often takes,
 * and one bit away from DATA_RESP: the ways a real host bug or attack turns
 * a reply into a second handshake answer (positive-control bug 3). */
enum fzpc_msg_type {
    FZPC_VERSION_RESP = 0, /* host -> guest */
    FZPC_DATA_RESP = 1,    /* host -> guest */
    FZPC_VERSION_REQ = 2,  /* guest -> host */
    FZPC_DATA_REQ = 3,     /* guest -> host */
};

struct fzpc_version_req {
    __u32 type;
    __u32 version;
} __attribute__((packed));

struct fzpc_version_resp {
    __u32 type;
    __u32 status; /* 0: accepted */
    __u32 version;
} __attribute__((packed));

struct fzpc_data_req {
    __u32 type;
    __u16 slot;
    __u16 want; /* bytes asked for, <= FZPC_SLOT_BYTES */
    __u32 seq;
} __attribute__((packed));

struct fzpc_data_resp {
    __u32 type;
    __u16 slot;
    __u16 len; /* bytes of data[] that follow */
    __u32 seq;
    __u8 data[];
} __attribute__((packed));

#endif
