/* SPDX-License-Identifier: MIT */
/*
 * A valid VSP plugin ("marker") whose constructor appends the path it was
 * loaded from to the file $VMBUSD_TEST_MARKER: the test sees which .so
 * files vmbusd opened at all, since dlopen runs a constructor before vmbusd
 * can look at the plugin.
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

#include "vmbusd/vsp.h"

__attribute__((visibility("default"))) const struct vsp_plugin vmbusd_vsp_plugin = {
    .api_version = VSP_API_VERSION,
    .name = "marker",
    .description = "records that it was loaded (tests)",
};

__attribute__((constructor)) static void marker_loaded(void)
{
    const char *out = getenv("VMBUSD_TEST_MARKER");
    Dl_info info;
    if (!out || !dladdr(&vmbusd_vsp_plugin, &info) || !info.dli_fname)
        return;
    FILE *f = fopen(out, "a");
    if (f) {
        fprintf(f, "%s\n", info.dli_fname);
        fclose(f);
    }
}
