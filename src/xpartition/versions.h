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
    /* >= 5.0: INITIATE_CONTACT arrives on connection id 4 and names the
     * message SINT; older guests contact on connection id 1. */
    bool contact_on_conn4;
    bool modify_response;     /* >= 5.3: MODIFYCHANNEL is answered */
};
/* Which channel messages a version accepts (UNLOAD from 3.0, ...) is the
 * rule table in chanmsg.c. */

/* Newest first. */
extern const struct vmbus_version_info vmbus_versions[];
extern const unsigned vmbus_version_count;
const struct vmbus_version_info *vmbus_version_lookup(uint32_t version);

#endif
