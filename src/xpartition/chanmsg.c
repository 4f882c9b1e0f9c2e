/* SPDX-License-Identifier: MIT */
/*
 * The message endpoint: every HvPostMessage a guest makes lands here.
 *
 * The input is copied once into a local buffer, then checked centrally
 * (connection id, message type, payload size, per-type minimum, what the
 * negotiated version allows) before a handler sees it, so handlers may rely
 * on the fixed part of their message being present.
 */
#include <errno.h>
#include <string.h>

#include "common/log.h"
#include "xpartition/fuzz_hook.h"
#include "xpartition/internal.h"
#include "xpartition/versions.h"

struct msg_rule {
    const char *name;
    uint16_t min_len;      /* including the 8-byte header */
    uint32_t min_version;  /* 0: any negotiated version */
    bool needs_connection; /* only after INITIATE_CONTACT was accepted */
};

/* Only guest -> host types have a rule; everything else is refused. */
static const struct msg_rule rules[CHANNELMSG_COUNT] = {
    [CHANNELMSG_REQUESTOFFERS] = {"REQUESTOFFERS", 8, 0, true},
    [CHANNELMSG_OPENCHANNEL] = {"OPENCHANNEL", sizeof(struct vmbus_channel_open_channel), 0, true},
    [CHANNELMSG_CLOSECHANNEL] = {"CLOSECHANNEL", sizeof(struct vmbus_channel_relid_msg), 0, true},
    [CHANNELMSG_GPADL_HEADER] = {"GPADL_HEADER", sizeof(struct vmbus_channel_gpadl_header) + 8, 0,
                                 true},
    [CHANNELMSG_GPADL_BODY] = {"GPADL_BODY", sizeof(struct vmbus_channel_gpadl_body), 0, true},
    [CHANNELMSG_GPADL_TEARDOWN] = {"GPADL_TEARDOWN", sizeof(struct vmbus_channel_gpadl_teardown), 0,
                                   true},
    [CHANNELMSG_RELID_RELEASED] = {"RELID_RELEASED", sizeof(struct vmbus_channel_relid_msg), 0,
                                   true},
    [CHANNELMSG_INITIATE_CONTACT] = {"INITIATE_CONTACT",
                                     sizeof(struct vmbus_channel_initiate_contact), 0, false},
    [CHANNELMSG_UNLOAD] = {"UNLOAD", 8, VMBUS_VERSION_WIN8_1, true},
    [CHANNELMSG_TL_CONNECT_REQUEST] = {"TL_CONNECT_REQUEST",
                                       sizeof(struct vmbus_channel_tl_connect_request),
                                       VMBUS_VERSION_WIN10, true},
    [CHANNELMSG_MODIFYCHANNEL] = {"MODIFYCHANNEL", sizeof(struct vmbus_channel_modifychannel),
                                  VMBUS_VERSION_WIN10_RS3, true},
};

static void handle_initiate_contact(struct xpartition *xp, uint32_t conn_id,
                                    const struct vmbus_channel_initiate_contact *m)
{
    uint32_t ver = m->vmbus_version_requested;
    const struct vmbus_version_info *vi = vmbus_version_lookup(ver);
    struct vmbus_channel_version_response r = {.header.msgtype = CHANNELMSG_VERSION_RESPONSE};

    if (xp->connected) {
        /* A guest that reconnects without UNLOAD (kexec, crash kernel, a
         * guest that lost its state) starts from scratch. */
        xp_event(xp, "INITIATE_CONTACT while connected (version %u.%u); resetting "
                 "the VMBus connection", ver >> 16, ver & 0xffff);
        xp_disconnect_locked(xp, false);
    }
    if (!vi) {
        xp_event(xp, "guest proposed VMBus version %u.%u: not supported", ver >> 16, ver & 0xffff);
        goto reply;
    }
    if (vi->contact_on_conn4 != (conn_id == VMBUS_MESSAGE_CONNECTION_ID_4)) {
        xp_guest_warn(xp, "INITIATE_CONTACT for %u.%u on connection id %u: refused", ver >> 16,
                      ver & 0xffff, conn_id);
        goto reply;
    }
    if (m->target_vcpu >= xp->nvcpus) {
        xp_guest_warn(xp, "INITIATE_CONTACT target_vcpu %u >= %u vCPUs: refused", m->target_vcpu,
                      xp->nvcpus);
        goto reply;
    }
    if (vi->contact_on_conn4 && m->u.s.msg_sint != VMBUS_MESSAGE_SINT) {
        xp_guest_warn(xp, "INITIATE_CONTACT asks for message SINT %u; only SINT %u is routed",
                      m->u.s.msg_sint, VMBUS_MESSAGE_SINT);
        goto reply;
    }
    if (!vi->per_channel_events) {
        /* Pre-WIN8 guests share one interrupt page: the second half holds
         * the guest -> host bits we scan on connection id 2. */
        if (!xp_gpa_to_hva(xp, m->u.interrupt_page & ~(uint64_t)(HV_PAGE_SIZE - 1),
                           HV_PAGE_SIZE)) {
            xp_guest_warn(xp, "INITIATE_CONTACT interrupt page 0x%llx outside guest memory",
                          (unsigned long long)m->u.interrupt_page);
            goto reply;
        }
    }
    xp->connected = true;
    xp->version = ver;
    xp->vinfo = vi;
    xp->target_vcpu = m->target_vcpu;
    xp->interrupt_page = vi->per_channel_events ? 0 : m->u.interrupt_page;
    atomic_store(&xp->interrupt_page_hva,
                 vi->per_channel_events
                     ? NULL
                     : (uint8_t *)xp_gpa_to_hva(xp, m->u.interrupt_page & ~(uint64_t)(HV_PAGE_SIZE - 1),
                                                HV_PAGE_SIZE));
    r.version_supported = 1;
    r.msg_conn_id = VMBUS_MESSAGE_CONNECTION_ID;
    if (!vi->per_channel_events && !xp->legacy_eventfd) {
        if (xp->transport->eventfd_add(xp->transport_ctx, VMBUS_EVENT_CONNECTION_ID) == 0)
            xp->legacy_eventfd = true;
    }
    xp_event(xp, "VMBus version %u.%u negotiated (target vcpu %u)", ver >> 16,
             ver & 0xffff, xp->target_vcpu);
reply:
    if (!r.version_supported && m->target_vcpu < xp->nvcpus)
        xp->target_vcpu = m->target_vcpu; /* so the refusal reaches the guest */
    if (xp_queue_msg(xp, &r, sizeof(r)) < 0)
        xp_guest_warn(xp, "VERSION_RESPONSE dropped: message queue full");
}

static void handle_request_offers(struct xpartition *xp)
{
    if (xp->offers_requested) {
        xp_guest_warn(xp, "REQUESTOFFERS sent twice; ignored");
        return;
    }
    xp->offers_requested = true;
    xp_post_pending_offers(xp);
}

static void handle_unload(struct xpartition *xp)
{
    xp_event(xp, "guest UNLOAD; closing all channels");
    xp_disconnect_locked(xp, false);
    struct vmbus_channel_message_header r = {.msgtype = CHANNELMSG_UNLOAD_RESPONSE};
    xp_queue_msg(xp, &r, sizeof(r));
}

static void handle_tl_connect(struct xpartition *xp,
                              const struct vmbus_channel_tl_connect_request *m)
{
    /* No hv_sock provider is registered: refuse, as Hyper-V does for a
     * service nobody listens on.  Linux ignores the result; its connect
     * times out because no offer follows. */
    struct vmbus_channel_tl_connect_result r = {
        .header.msgtype = CHANNELMSG_TL_CONNECT_RESULT,
        .guest_endpoint_id = m->guest_endpoint_id,
        .host_service_id = m->host_service_id,
        .status = 0xC0000236u, /* STATUS_CONNECTION_REFUSED */
    };
    xp_event(xp, "hv_sock connect request refused (no service)");
    xp_queue_msg(xp, &r, sizeof(r));
}

uint32_t xp_post_message(struct xpartition *xp, uint32_t vp,
                         const struct hv_post_message_input *in, size_t in_len)
{
    /* One copy, then only the copy is looked at. */
    struct hv_post_message_input m;
    if (in_len < offsetof(struct hv_post_message_input, payload))
        return HV_STATUS_INVALID_HYPERCALL_INPUT;
    memset(&m, 0, sizeof(m));
    memcpy(&m, in, in_len < sizeof(m) ? in_len : sizeof(m));

    pthread_mutex_lock(&xp->lock);
    uint32_t status = HV_STATUS_SUCCESS;
    uint32_t conn = m.connection_id & 0xffffff;
    xp->stats.msgs_in++;
    XP_FUZZ(xp_fuzz_guest_msg(xp, m.payload,
                              m.payload_size < HV_MESSAGE_PAYLOAD_SIZE ? m.payload_size
                                                                       : HV_MESSAGE_PAYLOAD_SIZE);)

    if (m.payload_size > HV_MESSAGE_PAYLOAD_SIZE) {
        xp_guest_warn(xp, "vp %u: HvPostMessage payload size %u > 240", vp, m.payload_size);
        status = HV_STATUS_INVALID_PARAMETER;
        goto out;
    }
    if (m.message_type != HV_MESSAGE_TYPE_VMBUS) {
        xp_guest_warn(xp, "vp %u: HvPostMessage message type %u is not VMBus (1)", vp,
                      m.message_type);
        status = HV_STATUS_INVALID_PARAMETER;
        goto out;
    }
    if (conn != VMBUS_MESSAGE_CONNECTION_ID && conn != VMBUS_MESSAGE_CONNECTION_ID_4) {
        xp_guest_warn(xp, "vp %u: HvPostMessage to unknown connection id %u", vp, conn);
        status = HV_STATUS_INVALID_CONNECTION_ID;
        goto out;
    }
    if (m.payload_size < sizeof(struct vmbus_channel_message_header)) {
        xp_guest_warn(xp, "vp %u: channel message of %u bytes is shorter than its header", vp,
                      m.payload_size);
        goto drop;
    }
    /* Responses are queued: refuse new work while the guest is not taking
     * them, so a flood finds back-pressure instead of memory growth.  Linux
     * retries INSUFFICIENT_BUFFERS with back-off. */
    if (xp_msgq_free(xp) < 2) {
        status = HV_STATUS_INSUFFICIENT_BUFFERS;
        xp->stats.msgs_dropped++;
        goto out;
    }

    const struct vmbus_channel_message_header *h = (const void *)m.payload;
    uint32_t type = h->msgtype;
    const struct msg_rule *rule = type < CHANNELMSG_COUNT ? &rules[type] : NULL;
    if (!rule || !rule->name) {
        xp_guest_warn(xp, "vp %u: unknown or host-only channel message type %u", vp, type);
        goto drop;
    }
    if (m.payload_size < rule->min_len) {
        xp_guest_warn(xp, "vp %u: %s of %u bytes is truncated (needs %u)", vp, rule->name,
                      m.payload_size, rule->min_len);
        goto drop;
    }
    if (rule->needs_connection && !xp->connected) {
        xp_guest_warn(xp, "vp %u: %s before INITIATE_CONTACT", vp, rule->name);
        goto drop;
    }
    /* Connection id 4 is only for INITIATE_CONTACT; everything else uses 1,
     * which is also the msg_conn_id we hand out from 5.0 on. */
    if (type != CHANNELMSG_INITIATE_CONTACT && conn != VMBUS_MESSAGE_CONNECTION_ID) {
        xp_guest_warn(xp, "vp %u: %s on connection id %u", vp, rule->name, conn);
        status = HV_STATUS_INVALID_CONNECTION_ID;
        goto out;
    }
    if (rule->min_version && xp->version < rule->min_version) {
        xp_guest_warn(xp, "vp %u: %s is not part of VMBus %u.%u", vp, rule->name,
                      xp->version >> 16, xp->version & 0xffff);
        goto drop;
    }
    log_debug("partition %s: vp %u: %s (%u bytes)", xp->name, vp, rule->name, m.payload_size);

    switch (type) {
    case CHANNELMSG_INITIATE_CONTACT:
        handle_initiate_contact(xp, conn, (const void *)m.payload);
        break;
    case CHANNELMSG_REQUESTOFFERS:
        handle_request_offers(xp);
        break;
    case CHANNELMSG_OPENCHANNEL:
        xp_handle_open(xp, (const void *)m.payload);
        break;
    case CHANNELMSG_CLOSECHANNEL:
        xp_handle_close(xp, ((const struct vmbus_channel_relid_msg *)m.payload)->child_relid);
        break;
    case CHANNELMSG_GPADL_HEADER:
        xp_handle_gpadl_header(xp, m.payload, m.payload_size);
        break;
    case CHANNELMSG_GPADL_BODY:
        xp_handle_gpadl_body(xp, m.payload, m.payload_size);
        break;
    case CHANNELMSG_GPADL_TEARDOWN:
        xp_handle_gpadl_teardown(xp, (const void *)m.payload);
        break;
    case CHANNELMSG_RELID_RELEASED:
        xp_handle_relid_released(xp,
                                 ((const struct vmbus_channel_relid_msg *)m.payload)->child_relid);
        break;
    case CHANNELMSG_UNLOAD:
        handle_unload(xp);
        break;
    case CHANNELMSG_TL_CONNECT_REQUEST:
        handle_tl_connect(xp, (const void *)m.payload);
        break;
    case CHANNELMSG_MODIFYCHANNEL:
        xp_handle_modify(xp, (const void *)m.payload);
        break;
    }
    goto out;
drop:
    xp->stats.msgs_dropped++;
out:
    pthread_mutex_unlock(&xp->lock);
    return status;
}
