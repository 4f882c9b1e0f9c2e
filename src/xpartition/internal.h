/* SPDX-License-Identifier: MIT */
/* Functions shared by the xpartition files; callers hold xp->lock. */
#ifndef VMBUSD_XP_INTERNAL_H
#define VMBUSD_XP_INTERNAL_H

#include "xpartition/channel.h"
#include "xpartition/partition.h"

/* message queue (xpartition.c) */
int xp_queue_msg(struct xpartition *xp, const void *body, size_t len);
unsigned xp_msgq_free(const struct xpartition *xp);
void xp_drop_queued_msgs(struct xpartition *xp);
void xp_flush_locked(struct xpartition *xp);

/* channels (channel.c) */
void xp_post_pending_offers(struct xpartition *xp);
struct xp_channel *xp_channel_by_relid(struct xpartition *xp, uint32_t relid);
/* Close the host side of ch (VSP close through ops) if it is open. */
void xp_channel_shutdown(struct xp_channel *ch);
void xp_channel_free(struct xp_channel *ch);
/* Free the subchannels that are finished (channel.c, "Subchannels"); not
 * while walking the offer list. */
void xp_reap_subchannels(struct xpartition *xp);
/* Drop the guest connection: close channels, forget GPADLs and relids.
 * final: the partition is being destroyed (no messages, no re-offers). */
void xp_disconnect_locked(struct xpartition *xp, bool final);
/* Handlers for channel messages that concern one channel. */
void xp_handle_open(struct xpartition *xp, const struct vmbus_channel_open_channel *m);
void xp_handle_close(struct xpartition *xp, uint32_t relid);
void xp_handle_relid_released(struct xpartition *xp, uint32_t relid);
void xp_handle_modify(struct xpartition *xp, const struct vmbus_channel_modifychannel *m);

/* GPADLs (gpadl.c) */
void xp_handle_gpadl_header(struct xpartition *xp, const uint8_t *msg, size_t len);
void xp_handle_gpadl_body(struct xpartition *xp, const uint8_t *msg, size_t len);
void xp_handle_gpadl_teardown(struct xpartition *xp, const struct vmbus_channel_gpadl_teardown *m);
struct xp_gpadl *xp_gpadl_find(struct xpartition *xp, uint32_t id);
/* Drop one user; answers a pending teardown when the last user goes. */
void xp_gpadl_put(struct xpartition *xp, struct xp_gpadl *g);
/* Free every GPADL of relid (all if relid == 0) without telling the guest. */
void xp_gpadl_forget(struct xpartition *xp, uint32_t relid);

#endif
