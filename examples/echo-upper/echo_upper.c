/* SPDX-License-Identifier: MIT */
/*
 * echo-upper: an example out-of-tree VSP for vmbusd (docs/writing-a-vsp.md
 * walks through it).
 *
 * Every VM configured to get it ("vsp = ... echo-upper" in [vm NAME]) is
 * offered one channel of class ECHO_UPPER_CLASS.  Each message the guest
 * sends on it (echo_upper.h: an 8-byte header with the text length, then the
 * text) is answered with prefix + the text with a-z upper-cased, under the
 * same trans_id: as a completion if the guest asked for one, else inband.
 * Malformed messages are counted, logged (rate-limited) and dropped.
 *
 * Parameters ([vsp echo-upper] in vmbusd.conf):
 *   prefix = TEXT       put before every answer (printable ASCII, <= 64 bytes,
 *                       default none)
 *   max_payload = N     longer texts are dropped (1..1048576, default 65536)
 *
 * Control command (vmbusctl control VM echo-upper stats): packet counters.
 * Status (vmbusctl status VM): echo-upper.state, echo-upper.packets.
 *
 * Built with the SDK alone: cc $(pkg-config --cflags vmbusd-vsp) -shared -fPIC
 */
#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vmbusd/vsp.h>

#include "echo_upper.h"

#define EU_PREFIX_MAX        64
#define EU_MAX_PAYLOAD_DEF   65536u
#define EU_MAX_PAYLOAD_LIMIT (1u << 20)

/* ---- configuration (init/fini) --------------------------------------- */

struct eu_config {
    char prefix[EU_PREFIX_MAX + 1];
    size_t prefix_len;
    uint32_t max_payload;
};

/* init() runs before any partition exists, so there is no vsp_log target:
 * explain a refusal on stderr, where vmbusd's own log goes too. */
static int eu_refuse(struct eu_config *c, const char *fmt, const char *what)
{
    fprintf(stderr, "echo-upper: ");
    fprintf(stderr, fmt, what);
    fprintf(stderr, "\n");
    free(c);
    return -EINVAL;
}

static int eu_init(const char *const *keys, const char *const *values, void **plugin_state)
{
    struct eu_config *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->max_payload = EU_MAX_PAYLOAD_DEF;
    for (int i = 0; keys[i]; i++) {
        if (strcmp(keys[i], "prefix") == 0) {
            size_t n = strlen(values[i]);
            if (n > EU_PREFIX_MAX)
                return eu_refuse(c, "prefix '%s' is longer than 64 bytes", values[i]);
            for (size_t k = 0; k < n; k++)
                if (values[i][k] < 0x20 || values[i][k] > 0x7e)
                    return eu_refuse(c, "prefix '%s' is not printable ASCII", values[i]);
            memcpy(c->prefix, values[i], n + 1);
            c->prefix_len = n;
        } else if (strcmp(keys[i], "max_payload") == 0) {
            char *end;
            errno = 0;
            unsigned long v = strtoul(values[i], &end, 10);
            if (errno || end == values[i] || *end || v < 1 || v > EU_MAX_PAYLOAD_LIMIT)
                return eu_refuse(c, "max_payload '%s' is not 1..1048576", values[i]);
            c->max_payload = (uint32_t)v;
        } else {
            return eu_refuse(c, "unknown parameter '%s' (prefix, max_payload)", keys[i]);
        }
    }
    *plugin_state = c;
    return 0;
}

static void eu_fini(void *plugin_state) { free(plugin_state); }

/* vmbusd calls init() only if some VM is configured to get the VSP, and
 * attach() only for such VMs; still, never trust a NULL state. */
static const struct eu_config eu_defaults = {.max_payload = EU_MAX_PAYLOAD_DEF};

/* ---- per channel ----------------------------------------------------- */

struct eu_channel {
    const struct eu_config *cfg;
    struct vsp_partition *part;
    /* The answer being built or waiting for ring space: header, prefix, text. */
    uint8_t *reply;
    size_t reply_cap;
    size_t reply_len;
    bool reply_held;    /* did not fit (-EAGAIN); resend on writable */
    bool reply_comp;
    uint64_t reply_trans;
    /* Read by control() on another thread while callbacks run: atomics. */
    atomic_bool open;
    atomic_uint_fast64_t packets, replies, dropped, ignored, waits;
};

struct eu_partition {
    struct vsp_channel *ch;
    struct eu_channel chan;
};

static void eu_publish(struct eu_channel *e)
{
    char num[32];
    snprintf(num, sizeof(num), "%" PRIuFAST64, atomic_load(&e->packets));
    vsp_partition_set_status(e->part, "echo-upper.packets", num);
}

static int eu_open(struct vsp_channel *ch, const uint8_t *user_data, size_t len)
{
    struct eu_channel *e = vsp_channel_opaque(ch);
    /* The largest answer we ever build; allocated once per open. */
    e->reply_cap = ECHO_UPPER_HDR_SIZE + e->cfg->prefix_len + e->cfg->max_payload;
    e->reply = malloc(e->reply_cap);
    if (!e->reply)
        return -ENOMEM; /* the guest's OPENCHANNEL fails */
    e->reply_held = false;
    atomic_store(&e->open, true);
    vsp_partition_set_status(e->part, "echo-upper.state", "open");
    vsp_log(ch, VSP_LOG_INFO, "echo-upper: channel open");
    return 0;
}

static void eu_close(struct vsp_channel *ch)
{
    struct eu_channel *e = vsp_channel_opaque(ch);
    atomic_store(&e->open, false);
    free(e->reply);
    e->reply = NULL;
    e->reply_held = false;
    vsp_partition_set_status(e->part, "echo-upper.state", "closed");
}

static int eu_send_reply(struct vsp_channel *ch, struct eu_channel *e)
{
    if (e->reply_comp)
        return vsp_send_completion(ch, e->reply_trans, e->reply, e->reply_len);
    return vsp_send_inband(ch, e->reply, e->reply_len, e->reply_trans, false);
}

/* vsp_guest_error, not vsp_log: it is rate-limited per VM (a misbehaving
 * guest must not be able to flood the host's log) and counted in the VM's
 * guest errors that vmbusctl shows. */
static void eu_bad_packet(struct vsp_channel *ch, const char *what, uint32_t value)
{
    vsp_guest_error(ch, "echo-upper: %s (%u)", what, value);
}

static void eu_receive(struct vsp_channel *ch)
{
    struct eu_channel *e = vsp_channel_opaque(ch);
    struct vsp_packet pkt;
    int r;

    /* An answer still waits for ring space: keep the guest's packets in its
     * ring (that is the back-pressure) until writable() says there is room. */
    if (e->reply_held) {
        if (eu_send_reply(ch, e) == -EAGAIN)
            return;
        e->reply_held = false;
        atomic_fetch_add(&e->replies, 1);
    }
    while ((r = vsp_recv(ch, &pkt)) > 0) {
        atomic_fetch_add(&e->packets, 1);
        /* Everything in pkt came from the guest: check before use.  vmbusd
         * has checked the framing (data and len lie inside its private copy
         * of the packet); what the bytes mean is ours to check. */
        if (pkt.type != VM_PKT_DATA_INBAND) {
            atomic_fetch_add(&e->ignored, 1);
            eu_bad_packet(ch, "ignoring packet of type", pkt.type);
            continue;
        }
        struct echo_upper_hdr h;
        if (pkt.len < ECHO_UPPER_HDR_SIZE) {
            atomic_fetch_add(&e->dropped, 1);
            eu_bad_packet(ch, "dropping packet shorter than the header", pkt.len);
            continue;
        }
        memcpy(&h, pkt.data, sizeof(h)); /* pkt.data need not be aligned */
        if (h.reserved != 0) {
            atomic_fetch_add(&e->dropped, 1);
            eu_bad_packet(ch, "dropping message with reserved field", h.reserved);
            continue;
        }
        /* pkt.len includes VMBus's padding to 8 bytes: len may be less,
         * never more.  (Compare without overflow: len is guest-controlled.) */
        if (h.len > pkt.len - ECHO_UPPER_HDR_SIZE) {
            atomic_fetch_add(&e->dropped, 1);
            eu_bad_packet(ch, "dropping message whose length exceeds the packet", h.len);
            continue;
        }
        if (h.len > e->cfg->max_payload) {
            atomic_fetch_add(&e->dropped, 1);
            eu_bad_packet(ch, "dropping message longer than max_payload", h.len);
            continue;
        }
        const uint8_t *in = (const uint8_t *)pkt.data + ECHO_UPPER_HDR_SIZE;
        struct echo_upper_hdr rh = {.len = (uint32_t)e->cfg->prefix_len + h.len};
        uint8_t *out = e->reply;
        memcpy(out, &rh, sizeof(rh));
        out += ECHO_UPPER_HDR_SIZE;
        memcpy(out, e->cfg->prefix, e->cfg->prefix_len);
        out += e->cfg->prefix_len;
        for (uint32_t i = 0; i < h.len; i++) /* ASCII only: no locale */
            out[i] = in[i] >= 'a' && in[i] <= 'z' ? (uint8_t)(in[i] - 'a' + 'A') : in[i];
        e->reply_len = ECHO_UPPER_HDR_SIZE + rh.len;
        e->reply_trans = pkt.trans_id;
        e->reply_comp = (pkt.flags & VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED) != 0;

        int ret = eu_send_reply(ch, e);
        if (ret == -EAGAIN) {
            /* The guest's ring is full.  e->reply stays as it is (pkt.data
             * would not: it is only valid until the next vsp_recv). */
            e->reply_held = true;
            atomic_fetch_add(&e->waits, 1);
            break;
        }
        if (ret < 0) {
            atomic_fetch_add(&e->dropped, 1);
            vsp_log(ch, VSP_LOG_WARN, "echo-upper: answer of %zu bytes not sent: %s",
                    e->reply_len, strerror(-ret));
            if (ret == -EPIPE)
                break; /* closing */
            continue;
        }
        atomic_fetch_add(&e->replies, 1);
    }
    /* r < 0: the guest corrupted its ring; vmbusd tears the channel down
     * and calls close().  Nothing to do but stop. */
    eu_publish(e);
}

static void eu_writable(struct vsp_channel *ch)
{
    eu_receive(ch); /* resend the held answer, then continue draining */
}

static const struct vsp_channel_ops eu_ops = {
    .open = eu_open,
    .close = eu_close,
    .receive = eu_receive,
    .writable = eu_writable,
};

/* ---- per partition --------------------------------------------------- */

static int eu_attach(void *plugin_state, struct vsp_partition *p, void **part_state)
{
    struct eu_partition *ep = calloc(1, sizeof(*ep));
    if (!ep)
        return -ENOMEM;
    ep->chan.cfg = plugin_state ? plugin_state : &eu_defaults;
    ep->chan.part = p;

    struct vsp_offer o = {.ops = &eu_ops, .opaque = &ep->chan};
    if (vsp_guid_parse(ECHO_UPPER_CLASS, &o.class_id) < 0 ||
        vsp_guid_parse(ECHO_UPPER_INSTANCE, &o.instance_id) < 0) {
        free(ep);
        return -EINVAL;
    }
    /* Everything the channel callbacks use is ready before the offer: a
     * guest that already asked for offers gets it at once and may open the
     * channel before attach() returns. */
    vsp_partition_set_status(p, "echo-upper.state", "offered");
    vsp_partition_set_status(p, "echo-upper.packets", "0");
    ep->ch = vsp_channel_offer(p, &o);
    if (!ep->ch) {
        free(ep);
        return -ENOMEM;
    }
    /* vmbusd hands ep back to detach and control (which it calls only
     * once attach has returned 0). */
    *part_state = ep;
    return 0;
}

static void eu_detach(void *plugin_state, struct vsp_partition *p, void *part_state)
{
    struct eu_partition *ep = part_state;
    if (ep)
        free(ep->chan.reply); /* close() has run already; this is only a safety net */
    free(ep);
}

static int eu_control(void *plugin_state, struct vsp_partition *p, void *part_state,
                      const char *cmd, const char *args, char *reply, size_t reply_len)
{
    struct eu_partition *ep = part_state;

    if (strcmp(cmd, "stats") != 0) {
        snprintf(reply, reply_len, "echo-upper: unknown command '%s' (stats)", cmd);
        return -EOPNOTSUPP;
    }
    if (args && *args) {
        snprintf(reply, reply_len, "echo-upper: stats takes no arguments");
        return -EINVAL;
    }
    struct eu_channel *e = &ep->chan;
    snprintf(reply, reply_len,
             "channel %s, %" PRIuFAST64 " packets, %" PRIuFAST64 " replies, %" PRIuFAST64
             " dropped, %" PRIuFAST64 " ignored, %" PRIuFAST64 " ring-full waits, prefix \"%s\"",
             atomic_load(&e->open) ? "open" : "closed", atomic_load(&e->packets),
             atomic_load(&e->replies), atomic_load(&e->dropped), atomic_load(&e->ignored),
             atomic_load(&e->waits), e->cfg->prefix);
    return 0;
}

/* ---- the one exported symbol ------------------------------------------ */

__attribute__((visibility("default"))) const struct vsp_plugin vmbusd_vsp_plugin = {
    .api_version = VSP_API_VERSION,
    .name = "echo-upper",
    .description = "example VSP: answers each inband packet upper-cased",
    .init = eu_init,
    .fini = eu_fini,
    .attach = eu_attach,
    .detach = eu_detach,
    .control = eu_control,
};
