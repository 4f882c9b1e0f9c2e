/* SPDX-License-Identifier: MIT */
#include "vsp/netvsp/nvsp_msg.h"

#include <errno.h>
#include <string.h>

/* Body length a guest->host message of this type needs, 0 if the guest
 * may not send the type. */
static size_t body_len(uint32_t type)
{
    switch (type) {
    case NVSP_MSG_INIT: return sizeof(struct nvsp_init);
    case NVSP_MSG1_SEND_NDIS_VERSION: return sizeof(struct nvsp_ndis_version);
    case NVSP_MSG1_SEND_RECV_BUF:
    case NVSP_MSG1_SEND_SEND_BUF: return sizeof(struct nvsp_send_buf);
    case NVSP_MSG1_REVOKE_RECV_BUF:
    case NVSP_MSG1_REVOKE_SEND_BUF: return sizeof(struct nvsp_revoke_buf);
    case NVSP_MSG1_SEND_RNDIS_PKT: return sizeof(struct nvsp_rndis_pkt);
    case NVSP_MSG2_SEND_NDIS_CONFIG: return 16; /* mtu, reserved, capability u64 */
    case NVSP_MSG5_SUBCHANNEL: return sizeof(struct nvsp_subchannel_req);
    case NVSP_MSG4_SWITCH_DATA_PATH: return 4;
    default: return 0;
    }
}

int nvsp_parse(const void *data, size_t len, struct nvsp_msg *m, const char **why)
{
    memset(m, 0, sizeof(*m));
    if (len < 4) {
        *why = "NVSP message shorter than its type";
        return -EPROTO;
    }
    memcpy(m, data, len < sizeof(*m) ? len : sizeof(*m));
    size_t need = body_len(m->type);
    if (!need) {
        *why = "unknown NVSP message type";
        return -EPROTO;
    }
    if (len < 4 + need) {
        *why = "NVSP message truncated";
        return -EPROTO;
    }
    return 0;
}
