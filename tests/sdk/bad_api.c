/* SPDX-License-Identifier: MIT */
/* A plugin built for another VSP API version: vmbusd must refuse it. */
#include "vmbusd/vsp.h"

__attribute__((visibility("default"))) const struct vsp_plugin vmbusd_vsp_plugin = {
    .api_version = VSP_API_VERSION + 1,
    .name = "bad-api",
    .description = "claims a VSP API version vmbusd does not provide",
};
