/* SPDX-License-Identifier: MIT */
/* The VMBus protocol versions vmbusd speaks, and what each one implies. */
#ifndef VMBUSD_XP_VERSIONS_H
#define VMBUSD_XP_VERSIONS_H

#include <stdbool.h>
#include <stdint.h>

struct vmbus_version_info {
    uint32_t version;
    const char *name;
    /* >= 2.4: per-relid event flag bits and per-channel connection ids;
     * older guests share connection id 2 and the interrupt page. */
    bool per_channel_events;
    bool has_unload;          /* >= 3.0 */
    bool has_modify;          /* >= 4.1: MODIFYCHANNEL */
    bool modify_response;     /* >= 5.3: MODIFYCHANNEL_RESPONSE expected */
    bool contact_on_conn4;    /* >= 5.0 */
};

/* Newest first. */
extern const struct vmbus_version_info vmbus_versions[];
extern const unsigned vmbus_version_count;
const struct vmbus_version_info *vmbus_version_lookup(uint32_t version);

#endif
