/* SPDX-License-Identifier: MIT */
/*
 * Heartbeat VSP: after negotiation, send a heartbeat request with a sequence
 * number every interval_ms; a live guest answers each with seq + 1.
 *
 * Published status (vsp_partition_set_status):
 *   heartbeat.seq      sequence number of the last valid guest answer
 *   heartbeat.state    "ok"   last valid answer younger than late_ms
 *                      "late" the guest answered before, but not recently
 *                      "none" no valid answer since the channel opened
 *   heartbeat.version  negotiated message version (framework)
 *
 * Parameters: interval_ms (default 1000), late_ms (default 3 x interval_ms),
 * instance_id.  Control: "heartbeat" prints the liveness summary.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vsp/ic/ic.h"
#include "vmbusd/hv_guids.h"

#define HB_INSTANCE "7c6a1f4e-3b7d-4f0e-9c31-5a0d2e8b4f01"
#define HB_BODY     40u /* seq u64 + reserved u32 x 8 */
#define HB_OUTSTANDING 16u

static const struct ic_version hb_msg[] = {{3, 0}, {1, 0}};

struct hb_conf {
    struct ic_conf base; /* first: ic_conf_fini frees it */
    unsigned interval_ms;
    unsigned late_ms;
};

struct hb_sent {
    uint64_t trans_id;
    uint64_t seq;
    bool used;
};

struct hb_part {
    struct ic_chan ic; /* first: ic_chan_put frees the whole struct */
    struct hb_conf conf;
    uint64_t next_seq;
    struct hb_sent sent[HB_OUTSTANDING];
    unsigned sent_pos;
    bool have_reply;
    uint64_t last_seq;      /* seq value of the last valid answer */
    uint64_t last_reply_ms;
    uint64_t requests, replies;
    const char *state;
};

static void hb_publish(struct hb_part *hb)
{
    char num[32];

    snprintf(num, sizeof(num), "%" PRIu64, hb->last_seq);
    ic_status(&hb->ic, "seq", hb->have_reply ? num : "none");
    ic_status(&hb->ic, "state", hb->state);
}

static void hb_update_state(struct hb_part *hb)
{
    const char *s = "none";

    if (hb->have_reply)
        s = ic_clock_ms() - hb->last_reply_ms <= hb->conf.late_ms ? "ok" : "late";
    if (strcmp(s, hb->state) != 0) {
        if (strcmp(s, "late") == 0)
            vsp_log(hb->ic.ch, VSP_LOG_WARN, "heartbeat: no answer from the guest for %" PRIu64
                    " ms", ic_clock_ms() - hb->last_reply_ms);
        hb->state = s;
    }
    hb_publish(hb);
}

static void hb_send(struct hb_part *hb)
{
    uint8_t buf[IC_HDRS_SIZE + HB_BODY];
    uint64_t seq = hb->next_seq, tid;
    size_t len;
    int r;

    len = ic_prepare(&hb->ic, buf, sizeof(buf), HB_BODY);
    memcpy(buf + IC_HDRS_SIZE, &seq, sizeof(seq));
    /* Not parked: a heartbeat that cannot be delivered now is just missed. */
    r = ic_send(&hb->ic, buf, len, 0, &tid);
    if (r < 0) {
        vsp_log(hb->ic.ch, VSP_LOG_DEBUG, "heartbeat: request %" PRIu64 " not sent: %d", seq, r);
        return;
    }
    hb->next_seq++;
    hb->requests++;
    hb->sent[hb->sent_pos] = (struct hb_sent){.trans_id = tid, .seq = seq, .used = true};
    hb->sent_pos = (hb->sent_pos + 1) % HB_OUTSTANDING;
}

static void hb_tick(void *arg)
{
    struct hb_part *hb = arg;

    pthread_mutex_lock(&hb->ic.lock);
    if (hb->ic.state == IC_STATE_READY) {
        hb_update_state(hb);
        hb_send(hb);
    }
    pthread_mutex_unlock(&hb->ic.lock);
}

static void hb_ready(struct ic_chan *ic)
{
    struct hb_part *hb = (struct hb_part *)ic;

    hb_send(hb);
    ic_timer_start(ic, 0, hb->conf.interval_ms, hb->conf.interval_ms, hb_tick);
}

static void hb_message(struct ic_chan *ic, const struct ic_msg *m, uint64_t tid)
{
    struct hb_part *hb = (struct hb_part *)ic;
    struct hb_sent *s = NULL;
    uint64_t seq;

    for (unsigned i = 0; i < HB_OUTSTANDING; i++)
        if (hb->sent[i].used && hb->sent[i].trans_id == tid)
            s = &hb->sent[i];
    if (!s) {
        ic_bad(ic, "heartbeat reply for unknown trans_id %" PRIu64, tid);
        return;
    }
    if (m->hdr.status != IC_S_OK) {
        s->used = false;
        ic_bad(ic, "heartbeat reply with status 0x%08x (%s)", m->hdr.status,
               ic_status_name(m->hdr.status));
        return;
    }
    if (m->body_len < sizeof(seq)) {
        ic_bad(ic, "heartbeat reply of %u bytes", m->body_len);
        return;
    }
    memcpy(&seq, m->body, sizeof(seq));
    if (seq != s->seq + 1) {
        ic_bad(ic, "heartbeat reply seq %" PRIu64 ", expected %" PRIu64, seq, s->seq + 1);
        return;
    }
    s->used = false;
    hb->replies++;
    hb->have_reply = true;
    hb->last_seq = seq;
    hb->last_reply_ms = ic_clock_ms();
    hb_update_state(hb);
}

static void hb_reset(struct ic_chan *ic)
{
    struct hb_part *hb = (struct hb_part *)ic;

    memset(hb->sent, 0, sizeof(hb->sent));
    hb->have_reply = false;
    hb->state = "none";
    hb_publish(hb);
}

static const struct ic_service hb_service = {
    .name = "heartbeat",
    .msg_type = IC_MSG_HEARTBEAT,
    .class_id = HV_CLASS_HEARTBEAT,
    .instance_id = HB_INSTANCE,
    .max_payload = IC_MAX_PAYLOAD_4K,
    .ready = hb_ready,
    .message = hb_message,
    .reset = hb_reset,
};

static int hb_init(const char *const *keys, const char *const *values, void **state)
{
    struct hb_conf *c = calloc(1, sizeof(*c));
    unsigned late = 0;
    const struct ic_param table[] = {
        {"interval_ms", 100, 3600000, &c->interval_ms, NULL},
        {"late_ms", 100, 86400000, &late, NULL},
        {"instance_id", 0, 0, NULL, &c->base.instance},
    };
    int r;

    if (!c)
        return -ENOMEM;
    c->interval_ms = 1000;
    r = ic_parse_params("heartbeat", keys, values, table, 3);
    if (!r)
        r = ic_instance_param(&c->base.instance);
    if (r) {
        free(c);
        return r;
    }
    c->late_ms = late ? late : 3 * c->interval_ms;
    *state = c;
    return 0;
}

static int hb_attach(void *state, struct vsp_partition *p, void **part_state)
{
    const struct hb_conf *c = state;
    struct hb_part *hb = calloc(1, sizeof(*hb));
    int r;

    if (!hb)
        return -ENOMEM;
    hb->conf = *c;
    hb->next_seq = 1;
    hb->state = "none";
    r = ic_chan_setup(&hb->ic, &hb_service, p, hb_msg, 2, c->base.instance);
    if (r) {
        free(hb);
        return r;
    }
    *part_state = hb;
    hb_publish(hb);
    return 0;
}

static int hb_control(void *state, struct vsp_partition *p, void *part_state, const char *cmd,
                      const char *args, char *reply, size_t reply_len)
{
    struct hb_part *hb = part_state;
    uint64_t now = ic_clock_ms();

    if (strcmp(cmd, "heartbeat") != 0) {
        snprintf(reply, reply_len, "heartbeat: unknown command '%s'", cmd);
        return -EOPNOTSUPP;
    }
    pthread_mutex_lock(&hb->ic.lock);
    if (hb->ic.state == IC_STATE_READY)
        hb_update_state(hb);
    if (hb->have_reply)
        snprintf(reply, reply_len,
                 "state %s, channel %s, seq %" PRIu64 ", last answer %" PRIu64
                 " ms ago, %" PRIu64 " requests, %" PRIu64 " answers",
                 hb->state, ic_state_name(hb->ic.state), hb->last_seq,
                 now - hb->last_reply_ms, hb->requests, hb->replies);
    else
        snprintf(reply, reply_len, "state %s, channel %s, %" PRIu64 " requests, no answer",
                 hb->state, ic_state_name(hb->ic.state), hb->requests);
    pthread_mutex_unlock(&hb->ic.lock);
    return 0;
}

const struct vsp_plugin heartbeat_plugin = {
    .api_version = VSP_API_VERSION,
    .name = "heartbeat",
    .description = "Hyper-V heartbeat integration service (guest liveness)",
    .init = hb_init,
    .fini = ic_conf_fini,
    .attach = hb_attach,
    .detach = ic_plugin_detach,
    .control = hb_control,
};
