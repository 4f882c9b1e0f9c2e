/* SPDX-License-Identifier: MIT */
/*
 * fzpc: the host side of the guest-driver fuzzer's positive control, a VSP
 * plugin (fzpc.so) that offers one channel of the test class the guest
 * module tests/fuzz-guest/module/fzpc.ko drives (protocol: module/
 * fzpc_proto.h).  It answers correctly: VERSION_REQ -> VERSION_RESP
 * (accepted), DATA_REQ -> DATA_RESP with the bytes asked for.  The bugs of
 * the guest module are found only when the fuzzer's mutation layer
 * (vmbusd-guestfuzz) changes these replies on their way to the guest.
 *
 * Parameter ([vsp fzpc]), for checking the module's bugs without the
 * mutation layer (tests/fuzz-guest/selftest):
 *   misbehave = none | length | index | reenter
 *       after the handshake, the first DATA_RESP carries a length past the
 *       slot buffer / a slot past the table, or a second VERSION_RESP
 *       follows it.
 */
#include <errno.h>
#include <linux/types.h>
#include <stdlib.h>
#include <string.h>

#include "vmbusd/vsp.h"
#include "../module/fzpc_proto.h"

enum misbehave { MB_NONE, MB_LENGTH, MB_INDEX, MB_REENTER };

struct fzpc_cfg {
    enum misbehave misbehave;
};

struct fzpc_chan {
    const struct fzpc_cfg *cfg;
    bool misbehaved; /* this open already sent its one bad message */
    uint64_t requests;
};

struct fzpc_part {
    struct fzpc_chan chan;
};

static int fzpc_init(const char *const *keys, const char *const *values, void **state)
{
    struct fzpc_cfg *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    for (int i = 0; keys[i]; i++) {
        static const char *const names[] = {"none", "length", "index", "reenter"};
        bool ok = false;
        if (strcmp(keys[i], "misbehave") == 0) {
            for (int m = 0; m < 4; m++)
                if (strcmp(values[i], names[m]) == 0) {
                    c->misbehave = (enum misbehave)m;
                    ok = true;
                }
        }
        if (!ok) {
            vsp_log(NULL, VSP_LOG_ERROR, "fzpc: bad parameter %s = %s", keys[i], values[i]);
            free(c);
            return -EINVAL;
        }
    }
    if (c->misbehave != MB_NONE)
        vsp_log(NULL, VSP_LOG_WARN, "fzpc: will send one bad message per open (misbehave = %s)",
                values[0]);
    *state = c;
    return 0;
}

static void fzpc_fini(void *state) { free(state); }

static int fzpc_open(struct vsp_channel *ch, const uint8_t *ud, size_t len)
{
    struct fzpc_chan *c = vsp_channel_opaque(ch);
    c->misbehaved = false;
    c->requests = 0;
    return 0;
}

static void fzpc_close(struct vsp_channel *ch) {}

static void send_reply(struct vsp_channel *ch, const void *msg, size_t len, uint64_t trans)
{
    int ret = vsp_send_inband(ch, msg, len, trans, false);
    /* The guest sends at most one ring's worth of small requests and waits
     * with a timeout: a reply that does not fit is dropped, not queued. */
    if (ret < 0)
        vsp_log(ch, VSP_LOG_WARN, "fzpc: reply dropped: %s", strerror(-ret));
}

static void on_version(struct vsp_channel *ch, const struct vsp_packet *pkt)
{
    struct fzpc_version_req req;
    if (pkt->len < sizeof(req)) {
        vsp_guest_error(ch, "fzpc: VERSION_REQ of %u bytes", pkt->len);
        return;
    }
    memcpy(&req, pkt->data, sizeof(req));
    struct fzpc_version_resp resp = {
        .type = FZPC_VERSION_RESP,
        .status = req.version == FZPC_VERSION ? 0 : 1,
        .version = FZPC_VERSION,
    };
    send_reply(ch, &resp, sizeof(resp), pkt->trans_id);
}

static void on_data(struct vsp_channel *ch, struct fzpc_chan *c, const struct vsp_packet *pkt)
{
    struct fzpc_data_req req;
    if (pkt->len < sizeof(req)) {
        vsp_guest_error(ch, "fzpc: DATA_REQ of %u bytes", pkt->len);
        return;
    }
    memcpy(&req, pkt->data, sizeof(req));
    if (req.slot >= FZPC_NSLOTS || req.want > FZPC_SLOT_BYTES) {
        vsp_guest_error(ch, "fzpc: DATA_REQ for slot %u, %u bytes", req.slot, req.want);
        return;
    }
    struct {
        struct fzpc_data_resp h;
        uint8_t data[FZPC_SLOT_BYTES];
    } resp = {.h = {.type = FZPC_DATA_RESP, .slot = req.slot, .len = req.want, .seq = req.seq}};
    for (unsigned i = 0; i < req.want; i++)
        resp.data[i] = (uint8_t)(req.seq + i);
    c->requests++;
    bool bad = c->cfg->misbehave != MB_NONE && !c->misbehaved;
    if (bad && c->cfg->misbehave == MB_LENGTH)
        resp.h.len = FZPC_SLOT_BYTES + 1;
    if (bad && c->cfg->misbehave == MB_INDEX)
        resp.h.slot = FZPC_NSLOTS;
    c->misbehaved |= bad;
    send_reply(ch, &resp, sizeof(resp.h) + req.want, pkt->trans_id);
    if (bad && c->cfg->misbehave == MB_REENTER) {
        struct fzpc_version_resp again = {.type = FZPC_VERSION_RESP, .version = FZPC_VERSION};
        send_reply(ch, &again, sizeof(again), 0);
    }
}

static void fzpc_receive(struct vsp_channel *ch)
{
    struct fzpc_chan *c = vsp_channel_opaque(ch);
    struct vsp_packet pkt;
    while (vsp_recv(ch, &pkt) > 0) {
        uint32_t type;
        if (pkt.type != VM_PKT_DATA_INBAND || pkt.len < sizeof(type)) {
            vsp_guest_error(ch, "fzpc: packet type %u, %u bytes ignored", pkt.type, pkt.len);
            continue;
        }
        memcpy(&type, pkt.data, sizeof(type));
        if (type == FZPC_VERSION_REQ)
            on_version(ch, &pkt);
        else if (type == FZPC_DATA_REQ)
            on_data(ch, c, &pkt);
        else
            vsp_guest_error(ch, "fzpc: unknown message type %u", type);
    }
}

static void fzpc_writable(struct vsp_channel *ch) {}

static const struct vsp_channel_ops fzpc_ops = {
    .open = fzpc_open,
    .close = fzpc_close,
    .receive = fzpc_receive,
    .writable = fzpc_writable,
};

static int fzpc_attach(void *state, struct vsp_partition *p, void **part_state)
{
    struct fzpc_part *fp = calloc(1, sizeof(*fp));
    if (!fp)
        return -ENOMEM;
    *part_state = fp;
    fp->chan.cfg = state;
    struct vsp_offer o = {.ops = &fzpc_ops, .opaque = &fp->chan};
    if (vsp_guid_parse(FZPC_CLASS_GUID_STR, &o.class_id) ||
        vsp_guid_parse(FZPC_INSTANCE_GUID_STR, &o.instance_id))
        return -EINVAL;
    return vsp_channel_offer(p, &o) ? 0 : -ENOMEM;
}

static void fzpc_detach(void *state, struct vsp_partition *p, void *part_state)
{
    free(part_state);
}

__attribute__((visibility("default"))) const struct vsp_plugin vmbusd_vsp_plugin = {
    .api_version = VSP_API_VERSION,
    .name = "fzpc",
    .description = "guest-driver fuzzer positive control (test class for tests/fuzz-guest/module)",
    .init = fzpc_init,
    .fini = fzpc_fini,
    .attach = fzpc_attach,
    .detach = fzpc_detach,
};
