/* SPDX-License-Identifier: MIT */
/*
 * vmbus-user: the socket protocol between a VMM (which owns KVM) and vmbusd
 * (which owns everything VMBus).  docs/vmbus-user-protocol.md is the
 * normative description; this header is its machine-readable half.
 *
 * Transport: AF_UNIX SOCK_SEQPACKET.  One datagram = one message: a
 * struct vu_hdr followed by exactly hdr.size payload bytes.  File
 * descriptors travel as SCM_RIGHTS ancillary data on the datagram that
 * names them.  All integers are host-endian (both ends share a host).
 * A 0-byte datagram reads as end of connection (recv returns 0): never
 * send one.
 */
#ifndef VMBUSD_VMBUS_USER_H
#define VMBUSD_VMBUS_USER_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "hv_wire.h"

#define VU_PROTOCOL_MAJOR 1
#define VU_PROTOCOL_MINOR 0
#define VU_MAX_MSG_SIZE   1024 /* largest datagram either side sends */
#define VU_MAX_FDS        4    /* most fds attached to one message */
#define VU_VM_NAME_LEN    64
#define VU_MAX_MEM_REGIONS 32
#define VU_MAX_VCPUS      256

enum vu_msg_type {
    /* VMM -> vmbusd */
    VU_MSG_HELLO = 1,        /* first message; reply VU_MSG_HELLO_REPLY */
    VU_MSG_MEM_REGION = 2,   /* + 1 fd: guest RAM backing: a memfd sealed with
                                F_SEAL_SHRINK, not write-sealed */
    VU_MSG_SINT_ROUTE = 3,   /* + 2 fds: SINT irqfd, EOM resample fd (eventfds only) */
    VU_MSG_SYNIC_STATE = 4,  /* SCONTROL/SIMP/SIEFP of one vCPU changed */
    /* MEM_REGION, SINT_ROUTE and SYNIC_STATE may come in any order after
     * HELLO: what vmbusd produced for the guest before they were complete
     * is delivered and signalled once they are. */
    VU_MSG_POST_MESSAGE = 5, /* a guest HvPostMessage; reply VU_MSG_POST_RESULT */
    VU_MSG_RESET = 6,        /* guest reset: forget all VMBus state, keep memory;
                                reply VU_MSG_RESET_DONE */
    VU_MSG_SIGNAL_EVENT = 7, /* a guest HvSignalEvent the VMM could not route to an eventfd */

    /* vmbusd -> VMM */
    VU_MSG_HELLO_REPLY = 64,
    VU_MSG_POST_RESULT = 65,
    VU_MSG_EVENTFD_ADD = 66, /* + 1 fd: register with KVM_HYPERV_EVENTFD; one per
                                channel as it is offered (>= 2.4), or one for
                                connection id 2 at INITIATE_CONTACT (< 2.4) */
    VU_MSG_EVENTFD_DEL = 67, /* UNLOAD, new contact, RESET: all; after a rescinded
                                channel's RELID_RELEASED: its own; none on close */
    VU_MSG_ERROR = 68,       /* fatal; vmbusd closes the connection after it */
    VU_MSG_RESET_DONE = 69,  /* reply to RESET: vmbusd no longer touches guest memory */
};

struct vu_hdr {
    uint32_t type;   /* enum vu_msg_type */
    uint32_t size;   /* payload bytes following this header */
    uint32_t seq;    /* sender's sequence number; replies echo the request's */
    uint32_t flags;  /* must be 0 */
};

struct vu_hello {
    uint16_t major;           /* VU_PROTOCOL_MAJOR; a different major is refused */
    uint16_t minor;
    uint32_t vcpu_count;      /* 1..VU_MAX_VCPUS; vCPUs are named by VP index */
    uint32_t features;        /* features the VMM would use; vmbusd ignores bits it
                                 does not know (none are defined in 1.0) */
    uint32_t reserved;
    char vm_name[VU_VM_NAME_LEN]; /* NUL within the 64 bytes (else ENAMETOOLONG);
                                     unique among connected VMs (else EEXIST);
                                     names the partition in logs, config, vmbusctl */
};

struct vu_hello_reply {
    uint16_t major;
    uint16_t minor;
    uint32_t partition_id;    /* vmbusd's id for this VM (logs, vmbusctl) */
    uint32_t features;        /* features both sides use: 0 in 1.0 */
    uint32_t reserved;
};

/* The fd: memfd_create(MFD_ALLOW_SEALING), ftruncate, then
 * F_ADD_SEALS F_SEAL_SHRINK (vmbusd refuses anything that could shrink under
 * its mapping, and write-sealed memfds). */
struct vu_mem_region {
    uint64_t guest_phys_addr; /* page-aligned */
    uint64_t size;            /* page-aligned, non-zero */
    uint64_t fd_offset;       /* page-aligned offset of the region in the fd;
                                 fd_offset + size <= the memfd's size */
};

/* + 2 fds, both eventfds (anything else is refused with ERROR): the irqfd
 * vmbusd writes to raise the SINT, and its resample fd (not EFD_SEMAPHORE)
 * vmbusd reads as the EOM notification.  vmbusd never blocks on either,
 * whatever their O_NONBLOCK flag. */
struct vu_sint_route {
    uint32_t vp_index;        /* < vcpu_count, else ERROR */
    uint32_t sint;            /* must be 2 (VMBUS_MESSAGE_SINT), else ERROR */
};

/* Raw MSR values as the guest wrote them (bit 0 enable, GPA in bits 12+).
 * SCONTROL bit 0 clear: vmbusd writes neither page.  A page outside guest
 * memory is only warned about; it is looked up again when memory is added. */
struct vu_synic_state {
    uint32_t vp_index;        /* < vcpu_count, else ERROR */
    uint32_t reserved;
    uint64_t scontrol;
    uint64_t simp;
    uint64_t siefp;
};

struct vu_post_message {
    uint32_t vp_index;        /* vCPU that made the hypercall */
    uint32_t reserved;
    struct hv_post_message_input msg; /* the 256-byte hypercall input page */
};

struct vu_post_result {
    uint32_t hv_status;       /* HV_STATUS_* to return to the guest in RAX (0, 5,
                                 18 wrong connection id, 19 queue full) */
    uint32_t reserved;
};

struct vu_signal_event {
    uint32_t vp_index;        /* < vcpu_count, else ERROR */
    uint32_t connection_id;
    uint32_t flag_number;
    uint32_t reserved;
};

struct vu_eventfd {
    uint32_t connection_id;   /* 24-bit HvSignalEvent connection id */
    uint32_t flag_number;     /* always 0 */
};

struct vu_error {
    uint32_t code;            /* errno: EPROTO for protocol violations, or a
                                 specific one (the protocol document's ERROR
                                 table: EEXIST duplicate name, EPERM unsealed
                                 memfd, EMFILE too many fds, ENFILE vmbusd out
                                 of fds, ...) */
    char message[128];        /* NUL-terminated; may run on past these 128
                                 bytes to the payload's end (a VSP's reason
                                 naming a path): the payload is then longer,
                                 up to 4 + VU_ERROR_MESSAGE_MAX bytes, and a
                                 reader of only sizeof(struct vu_error) bytes
                                 gets the first 127 */
};
#define VU_ERROR_MESSAGE_MAX (VU_MAX_MSG_SIZE - 16 - 4) /* NUL included */

/* An ERROR payload of len bytes: its code (0 if len < 4) and its whole
 * message, NUL-terminated in msg[size] (size >= 1), cut if need be. */
static inline uint32_t vu_error_decode(const void *payload, size_t len, char *msg, size_t size)
{
    const unsigned char *b = (const unsigned char *)payload;
    uint32_t code = 0;
    size_t mlen = 0;
    if (len >= sizeof(code)) {
        memcpy(&code, b, sizeof(code));
        mlen = len - sizeof(code);
    }
    if (mlen > size - 1)
        mlen = size - 1;
    if (mlen)
        memcpy(msg, b + sizeof(code), mlen);
    msg[mlen] = 0;
    return code;
}

_Static_assert(sizeof(struct vu_hdr) == 16, "vu_hdr");
_Static_assert(sizeof(struct vu_hello) == 80, "vu_hello");
_Static_assert(sizeof(struct vu_post_message) == 264, "vu_post_message");
_Static_assert(sizeof(struct vu_synic_state) == 32, "vu_synic_state");

#endif /* VMBUSD_VMBUS_USER_H */
