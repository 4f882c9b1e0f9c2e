/* SPDX-License-Identifier: MIT */
/*
 * echo: a test VSP.  Every DATA_INBAND packet the guest sends comes back
 * with the same trans_id and payload: as a COMP if the guest asked for a
 * completion, else as DATA_INBAND.  Parameters ([vsp echo]):
 *   channels = N   offers per VM (1..64, default 1)
 * Echoes wait in order when the guest's ring is full and resume when it
 * drains (exercises flow control).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "vmbusd/vsp.h"
#include "vsp/echo.h"

struct echo_cfg {
    int channels;
};

struct echo_chan {
    /* A packet that did not fit yet: retried on writable. */
    bool held;
    uint16_t held_type;
    uint64_t held_trans;
    size_t held_len;
    uint8_t *held_data;
    uint64_t echoed;
};

static int echo_init(const char *const *keys, const char *const *values, void **state)
{
    struct echo_cfg *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->channels = 1;
    for (int i = 0; keys[i]; i++) {
        if (strcmp(keys[i], "channels") == 0) {
            char *end;
            long n = strtol(values[i], &end, 10);
            if (*end || n < 1 || n > 64) {
                free(c);
                return -EINVAL;
            }
            c->channels = (int)n;
        } else {
            free(c);
            return -EINVAL;
        }
    }
    *state = c;
    return 0;
}

static void echo_fini(void *state) { free(state); }

static int echo_open(struct vsp_channel *ch, const uint8_t *ud, size_t len)
{
    struct echo_chan *e = vsp_channel_opaque(ch);
    e->held = false;
    e->echoed = 0;
    return 0;
}

static void echo_close(struct vsp_channel *ch)
{
    struct echo_chan *e = vsp_channel_opaque(ch);
    free(e->held_data);
    e->held_data = NULL;
    e->held = false;
}

static int send_echo(struct vsp_channel *ch, uint16_t type, uint64_t trans, const void *data,
                     size_t len)
{
    if (type == VM_PKT_COMP)
        return vsp_send_completion(ch, trans, data, len);
    return vsp_send_inband(ch, data, len, trans, false);
}

static bool flush_held(struct vsp_channel *ch, struct echo_chan *e)
{
    if (!e->held)
        return true;
    if (send_echo(ch, e->held_type, e->held_trans, e->held_data, e->held_len) == -EAGAIN)
        return false;
    e->held = false;
    e->echoed++;
    return true;
}

static void echo_receive(struct vsp_channel *ch)
{
    struct echo_chan *e = vsp_channel_opaque(ch);
    if (!flush_held(ch, e))
        return; /* wait for writable; the guest's packets stay in its ring */
    struct vsp_packet pkt;
    while (vsp_recv(ch, &pkt) > 0) {
        if (pkt.type != VM_PKT_DATA_INBAND) {
            vsp_guest_error(ch, "echo: ignoring packet type %u", pkt.type);
            continue;
        }
        uint16_t type = (pkt.flags & VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED)
                            ? VM_PKT_COMP
                            : VM_PKT_DATA_INBAND;
        int ret = send_echo(ch, type, pkt.trans_id, pkt.data, pkt.len);
        if (ret == -EAGAIN) {
            /* Keep a copy: pkt.data is only valid until the next vsp_recv. */
            uint8_t *copy = realloc(e->held_data, pkt.len ? pkt.len : 1);
            if (!copy)
                return;
            memcpy(copy, pkt.data, pkt.len);
            e->held_data = copy;
            e->held_len = pkt.len;
            e->held_type = type;
            e->held_trans = pkt.trans_id;
            e->held = true;
            return;
        }
        if (ret < 0) {
            vsp_log(ch, VSP_LOG_WARN, "echo failed: %s", strerror(-ret));
            return;
        }
        e->echoed++;
    }
}

static void echo_writable(struct vsp_channel *ch)
{
    echo_receive(ch);
}

static const struct vsp_channel_ops echo_ops = {
    .open = echo_open,
    .close = echo_close,
    .receive = echo_receive,
    .writable = echo_writable,
};

struct echo_part {
    int n;
    struct echo_chan chans[64];
};

static int echo_attach(void *state, struct vsp_partition *p, void **part_state)
{
    struct echo_cfg *cfg = state;
    struct echo_part *ep = calloc(1, sizeof(*ep));
    if (!ep)
        return -ENOMEM;
    /* detach frees ep even if an offer below fails: offered channels point into it. */
    *part_state = ep;
    struct vsp_offer o = {.ops = &echo_ops};
    vsp_guid_parse(HV_CLASS_ECHO, &o.class_id);
    for (int i = 0; i < (cfg ? cfg->channels : 1); i++) {
        vsp_guid_parse(ECHO_INSTANCE_GUID_STR, &o.instance_id);
        o.instance_id.b[15] = (uint8_t)i;
        o.opaque = &ep->chans[i];
        if (!vsp_channel_offer(p, &o))
            return -ENOMEM;
        ep->n++;
    }
    return 0;
}

static void echo_detach(void *state, struct vsp_partition *p, void *part_state)
{
    struct echo_part *ep = part_state;
    for (int i = 0; ep && i < ep->n; i++)
        free(ep->chans[i].held_data);
    free(ep);
}

const struct vsp_plugin echo_plugin = {
    .api_version = VSP_API_VERSION,
    .name = "echo",
    .description = "test VSP that echoes every inband packet",
    .init = echo_init,
    .fini = echo_fini,
    .attach = echo_attach,
    .detach = echo_detach,
};
