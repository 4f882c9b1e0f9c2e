/* SPDX-License-Identifier: MIT */
/*
 * The echo-upper channel protocol, shared by the VSP (echo_upper.c) and any
 * guest-side driver or test.
 *
 * VMBus pads every packet to a multiple of 8 bytes and does not record the
 * payload's exact length, so a protocol carries its own: each message is an
 * 8-byte header and then `len` bytes of text.  Little-endian, like all of
 * VMBus.
 *
 *   guest -> host   DATA_INBAND {len, 0, text}   (completion requested or not)
 *   host -> guest   {len', 0, prefix + TEXT}     same trans_id; a COMP packet if
 *                                                the guest requested one, else
 *                                                DATA_INBAND
 */
#ifndef ECHO_UPPER_H
#define ECHO_UPPER_H

#include <stdint.h>

/* Our own interface type: no guest driver binds to it unless written for it. */
#define ECHO_UPPER_CLASS    "9a11869b-dc0b-4cde-8233-51b8c6059083"
#define ECHO_UPPER_INSTANCE "f1609556-202f-4c9c-9275-894f47e85bc5"

struct echo_upper_hdr {
    uint32_t len;      /* bytes of text after the header */
    uint32_t reserved; /* must be 0 */
};

#define ECHO_UPPER_HDR_SIZE 8u

#endif
