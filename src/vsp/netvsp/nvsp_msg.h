/* SPDX-License-Identifier: MIT */
/* Checking an NVSP message from the guest (pure: the fuzzers drive it). */
#ifndef VMBUSD_VSP_NETVSP_NVSP_MSG_H
#define VMBUSD_VSP_NETVSP_NVSP_MSG_H

#include <stddef.h>

#include "vsp/netvsp/protocol.h"

/* Copy the NVSP message data[0..len) (a packet's payload) into *m, zero
 * padded: 0 if its type is one the guest may send and it holds that
 * type's whole body; else -EPROTO with *why (static text).  Bytes past
 * the longest NVSP message are ignored. */
int nvsp_parse(const void *data, size_t len, struct nvsp_msg *m, const char **why);

#endif
