/* SPDX-License-Identifier: MIT */
/* The echo test VSP: sends every inband packet straight back. */
#ifndef VMBUSD_VSP_ECHO_H
#define VMBUSD_VSP_ECHO_H

#include "vmbusd/hv_guids.h" /* HV_CLASS_ECHO */

/* Instance i of a partition: this GUID with byte 15 = i. */
#define ECHO_INSTANCE_GUID_STR "c4a5e1d2-0b3f-4c6a-9e8d-7f1a2b3c4d00"

#endif
