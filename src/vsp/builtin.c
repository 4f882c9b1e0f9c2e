/* SPDX-License-Identifier: MIT */
#include "vsp/builtin.h"

#include <stddef.h>

extern const struct vsp_plugin vsp_echo_plugin;
extern const struct vsp_plugin vsp_heartbeat_plugin;
extern const struct vsp_plugin vsp_shutdown_plugin;
extern const struct vsp_plugin vsp_timesync_plugin;
extern const struct vsp_plugin vsp_kvp_plugin;

const struct vsp_plugin *const vsp_builtin_plugins[] = {
    &vsp_echo_plugin,
    &vsp_heartbeat_plugin,
    &vsp_shutdown_plugin,
    &vsp_timesync_plugin,
    &vsp_kvp_plugin,
    NULL,
};
