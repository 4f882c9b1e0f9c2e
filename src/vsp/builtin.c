/* SPDX-License-Identifier: MIT */
#include "vsp/builtin.h"

#include <stddef.h>

extern const struct vsp_plugin echo_plugin;
extern const struct vsp_plugin heartbeat_plugin;
extern const struct vsp_plugin shutdown_plugin;
extern const struct vsp_plugin timesync_plugin;
extern const struct vsp_plugin kvp_plugin;
extern const struct vsp_plugin storvsp_plugin;
extern const struct vsp_plugin netvsp_plugin;

const struct vsp_plugin *const builtin_plugins[] = {
    &echo_plugin,
    &heartbeat_plugin,
    &shutdown_plugin,
    &timesync_plugin,
    &kvp_plugin,
    &storvsp_plugin,
    &netvsp_plugin,
    NULL,
};
