/* SPDX-License-Identifier: MIT */
/* The echo test VSP: sends every inband packet straight back. */
#ifndef VMBUSD_VSP_ECHO_H
#define VMBUSD_VSP_ECHO_H

/* A class no guest driver binds to: the simulator and benchmarks use it. */
#define ECHO_CLASS_GUID_STR "8f2c1a3e-5b7d-4e19-a6c0-3d9e4b2f7a18"
/* Instance i of a partition: this GUID with byte 15 = i. */
#define ECHO_INSTANCE_GUID_STR "c4a5e1d2-0b3f-4c6a-9e8d-7f1a2b3c4d00"

#endif
