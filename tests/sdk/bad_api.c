/* SPDX-License-Identifier: MIT */
/* A plugin built for another VSP API version than this vmbusd's
 * (BAD_API_VERSION: one newer, or one older as a plugin left over from
 * before an upgrade): vmbusd must refuse it. */
#include "vmbusd/vsp.h"

__attribute__((visibility("default"))) const struct vsp_plugin vmbusd_vsp_plugin = {
    .api_version = BAD_API_VERSION,
    .name = "bad-api",
    .description = "claims a VSP API version vmbusd does not provide",
};
