/* SPDX-License-Identifier: MIT */
#include "xpartition/versions.h"

#include "vmbusd/hv_wire.h"

/* per_channel_events, contact_on_conn4, modify_response */
const struct vmbus_version_info vmbus_versions[] = {
    {VMBUS_VERSION_WIN10_V5_3, "5.3 (Windows Server 2022)", true, true, true},
    {VMBUS_VERSION_WIN10_V5_2, "5.2 (Windows 10 1903)", true, true, false},
    {VMBUS_VERSION_WIN10_V5_1, "5.1 (Windows 10 1809)", true, true, false},
    {VMBUS_VERSION_WIN10_V5, "5.0 (Windows 10 1803)", true, true, false},
    {VMBUS_VERSION_WIN10_RS3, "4.1 (Windows 10 1709)", true, false, false},
    {VMBUS_VERSION_WIN10, "4.0 (Windows 10)", true, false, false},
    {VMBUS_VERSION_WIN8_1, "3.0 (Windows 8.1)", true, false, false},
    {VMBUS_VERSION_WIN8, "2.4 (Windows 8)", true, false, false},
    {VMBUS_VERSION_WIN7, "1.1 (Windows 7)", false, false, false},
    {VMBUS_VERSION_WS2008, "0.13 (Windows Server 2008)", false, false, false},
};
const unsigned vmbus_version_count = sizeof(vmbus_versions) / sizeof(vmbus_versions[0]);

const struct vmbus_version_info *vmbus_version_lookup(uint32_t version)
{
    for (unsigned i = 0; i < vmbus_version_count; i++)
        if (vmbus_versions[i].version == version)
            return &vmbus_versions[i];
    return NULL;
}
