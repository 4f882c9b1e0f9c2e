/* SPDX-License-Identifier: MIT */
/* The VSPs compiled into vmbusd (each also written only against vsp.h). */
#ifndef VMBUSD_VSP_BUILTIN_H
#define VMBUSD_VSP_BUILTIN_H

#include "vmbusd/vsp.h"

/* NULL-terminated list. */
extern const struct vsp_plugin *const builtin_plugins[];

#endif
