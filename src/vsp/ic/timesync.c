/* SPDX-License-Identifier: MIT */
/*
 * Time synchronisation VSP: once negotiated, send one SYNC message (the guest
 * steps its clock to the host's), then a SAMPLE every interval_ms (the guest
 * only feeds its "hyperv" PTP clock with those).
 *
 * Time base: 100 ns units since 1601-01-01 UTC.  Message layouts:
 *   version >= 4.0: {host time u64, guest reference time u64, flags u8,
 *                    leap u8, stratum u8, reserved[3]}           22 bytes
 *   version <= 3.0: {host time u64, child time u64, round trip u64,
 *                    flags u8}                                    25 bytes
 *
 * Version 4.0 needs the guest's reference counter (TIME_REF_COUNT) at the
 * moment the host time was read: the guest adds (now - that) to the host
 * time.  4.0 is only offered when vsp_partition_reference_time() can read
 * it; otherwise the offer is 3.0, 1.0 and the guest uses its own counter on
 * arrival.
 *
 * Parameters: interval_ms (default 5000), max_version ("4.0", "3.0", "1.0"),
 * instance_id.  Control: "timesync" [sync] - status, or send a SYNC now.
 * Status: timesync.version, timesync.samples, timesync.answers.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vsp/ic/ic.h"
#include "vmbusd/hv_guids.h"

#define TS_INSTANCE "5d7a3e1b-9c24-4f6e-b0a8-3e1f7c9d2a03"

#define TS_FLAG_PROBE  0
#define TS_FLAG_SYNC   1
#define TS_FLAG_SAMPLE 2

/* 100 ns intervals between 1601-01-01 and 1970-01-01. */
#define TS_EPOCH_DELTA 116444736000000000ull

struct ts_body_v4 {
    uint64_t host_time;
    uint64_t ref_time;
    uint8_t flags;
    uint8_t leap;
    uint8_t stratum;
    uint8_t reserved[3];
} HV_PACKED;

struct ts_body_v3 {
    uint64_t host_time;
    uint64_t child_time;
    uint64_t round_trip;
    uint8_t flags;
} HV_PACKED;

_Static_assert(sizeof(struct ts_body_v4) == 22, "timesync v4 body");
_Static_assert(sizeof(struct ts_body_v3) == 25, "timesync v3 body");

static const struct ic_version ts_msg_all[] = {{4, 0}, {3, 0}, {1, 0}};

struct ts_conf {
    struct ic_conf base; /* first: ic_conf_fini frees it */
    unsigned interval_ms;
    unsigned max_major; /* 4, 3 or 1 */
};

struct ts_part {
    struct ic_chan ic; /* first */
    struct ts_conf conf;
    uint64_t samples, answers;
    bool answered;            /* last_answer_tid is valid */
    uint64_t last_answer_tid; /* replies come in order: a repeat is not counted */
    bool no_ref_logged;
};

static uint64_t ts_host_time(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 10000000ull + (uint64_t)ts.tv_nsec / 100u + TS_EPOCH_DELTA;
}

static void ts_publish(struct ts_part *t)
{
    char num[32];

    snprintf(num, sizeof(num), "%" PRIu64, t->samples);
    ic_status(&t->ic, "samples", num);
    snprintf(num, sizeof(num), "%" PRIu64, t->answers);
    ic_status(&t->ic, "answers", num);
}

static int ts_send(struct ts_part *t, uint8_t flags)
{
    uint8_t buf[IC_HDRS_SIZE + sizeof(struct ts_body_v3)];
    size_t len;
    int r;

    if (t->ic.ver.major >= 4) {
        struct ts_body_v4 b;
        uint64_t ref = 0;

        memset(&b, 0, sizeof(b));
        /* Read the reference counter right next to the wall clock. */
        if (vsp_partition_reference_time(t->ic.part, &ref) < 0) {
            vsp_log(t->ic.ch, t->no_ref_logged ? VSP_LOG_DEBUG : VSP_LOG_WARN,
                    "timesync: no reference time; sample skipped");
            t->no_ref_logged = true;
            return -ENOSYS;
        }
        b.host_time = ts_host_time();
        b.ref_time = ref;
        b.flags = flags;
        b.stratum = 0;
        len = ic_prepare(&t->ic, buf, sizeof(buf), sizeof(b));
        memcpy(buf + IC_HDRS_SIZE, &b, sizeof(b));
    } else {
        struct ts_body_v3 b;

        memset(&b, 0, sizeof(b));
        b.host_time = ts_host_time();
        b.flags = flags;
        len = ic_prepare(&t->ic, buf, sizeof(buf), sizeof(b));
        memcpy(buf + IC_HDRS_SIZE, &b, sizeof(b));
    }
    /* A SYNC matters (it steps the clock): park it on a full ring.  A sample
     * that cannot go now is stale by the next tick anyway. */
    r = ic_send(&t->ic, buf, len, flags == TS_FLAG_SYNC ? IC_SEND_PARK : 0, NULL);
    if (r < 0) {
        vsp_log(t->ic.ch, VSP_LOG_DEBUG, "timesync: message not sent: %d", r);
        return r;
    }
    t->samples++;
    return 0;
}

static void ts_tick(void *arg)
{
    struct ts_part *t = arg;

    pthread_mutex_lock(&t->ic.lock);
    if (t->ic.state == IC_STATE_READY) {
        ts_send(t, TS_FLAG_SAMPLE);
        ts_publish(t);
    }
    pthread_mutex_unlock(&t->ic.lock);
}

static void ts_ready(struct ic_chan *ic)
{
    struct ts_part *t = (struct ts_part *)ic;

    ts_send(t, TS_FLAG_SYNC);
    ts_publish(t);
    ic_timer_start(ic, 0, t->conf.interval_ms, t->conf.interval_ms, ts_tick);
}

static void ts_message(struct ic_chan *ic, const struct ic_msg *m, uint64_t tid)
{
    struct ts_part *t = (struct ts_part *)ic;

    if (tid >= ic->next_trans_id) {
        ic_bad(ic, "timesync reply for trans_id %" PRIu64 " never sent", tid);
        return;
    }
    if (m->hdr.status != IC_S_OK) {
        ic_bad(ic, "timesync reply with status 0x%08x (%s)", m->hdr.status,
               ic_status_name(m->hdr.status));
        return;
    }
    if (t->answered && tid <= t->last_answer_tid) {
        ic_bad(ic, "timesync reply for trans_id %" PRIu64 " repeated", tid);
        return;
    }
    t->answered = true;
    t->last_answer_tid = tid;
    t->answers++;
    ts_publish(t);
}

static void ts_reset(struct ic_chan *ic)
{
    struct ts_part *t = (struct ts_part *)ic;

    t->answered = false; /* trans ids may start over on the next open */
    ts_publish(t);
}

static const struct ic_service ts_service = {
    .name = "timesync",
    .msg_type = IC_MSG_TIMESYNC,
    .class_id = HV_CLASS_TIMESYNC,
    .instance_id = TS_INSTANCE,
    .max_payload = IC_MAX_PAYLOAD_4K,
    .ready = ts_ready,
    .message = ts_message,
    .reset = ts_reset,
};

static int ts_init(const char *const *keys, const char *const *values, void **state)
{
    struct ts_conf *c = calloc(1, sizeof(*c));
    const char *maxv = NULL;
    const struct ic_param table[] = {
        {"interval_ms", 100, 3600000, &c->interval_ms, NULL},
        {"max_version", 0, 0, NULL, &maxv},
        {"instance_id", 0, 0, NULL, &c->base.instance},
    };
    int r;

    if (!c)
        return -ENOMEM;
    c->interval_ms = 5000;
    c->max_major = 4;
    r = ic_parse_params("timesync", keys, values, table, 3);
    if (!r && maxv) {
        if (strcmp(maxv, "4.0") == 0 || strcmp(maxv, "4") == 0)
            c->max_major = 4;
        else if (strcmp(maxv, "3.0") == 0 || strcmp(maxv, "3") == 0)
            c->max_major = 3;
        else if (strcmp(maxv, "1.0") == 0 || strcmp(maxv, "1") == 0)
            c->max_major = 1;
        else
            r = -EINVAL;
    }
    if (!r)
        r = ic_instance_param(&c->base.instance);
    if (r) {
        free(c);
        return r;
    }
    *state = c;
    return 0;
}

static int ts_attach(void *state, struct vsp_partition *p, void **part_state)
{
    const struct ts_conf *c = state;
    struct ts_part *t = calloc(1, sizeof(*t));
    struct ic_version offer[3];
    unsigned n = 0;
    uint64_t ref;
    int r;

    if (!t)
        return -ENOMEM;
    t->conf = *c;
    /* Offer 4.0 only when the reference counter can be read. */
    bool have_ref = vsp_partition_reference_time(p, &ref) == 0;
    for (unsigned i = 0; i < 3; i++) {
        if (ts_msg_all[i].major > c->max_major)
            continue;
        if (ts_msg_all[i].major >= 4 && !have_ref)
            continue;
        offer[n++] = ts_msg_all[i];
    }
    /* The guest needs at least two version entries in all; the framework
     * versions (ic.c) are two. */
    r = ic_chan_setup(&t->ic, &ts_service, p, offer, n, c->base.instance);
    if (r) {
        free(t);
        return r;
    }
    *part_state = t;
    return 0;
}

static int ts_control(void *state, struct vsp_partition *p, void *part_state, const char *cmd,
                      const char *args, char *reply, size_t reply_len)
{
    struct ts_part *t = part_state;
    int r = 0;

    if (strcmp(cmd, "timesync") != 0) {
        snprintf(reply, reply_len, "timesync: unknown command '%s'", cmd);
        return -EOPNOTSUPP;
    }
    pthread_mutex_lock(&t->ic.lock);
    if (args && strcmp(args, "sync") == 0) {
        if (t->ic.state != IC_STATE_READY) {
            snprintf(reply, reply_len, "timesync: guest service not ready (channel %s)",
                     ic_state_name(t->ic.state));
            r = -ENOTCONN;
        } else if ((r = ts_send(t, TS_FLAG_SYNC)) == 0) {
            snprintf(reply, reply_len, "timesync: sync sent");
        } else {
            snprintf(reply, reply_len, "timesync: sending failed (%s)", strerror(-r));
        }
    } else if (args && *args) {
        snprintf(reply, reply_len, "usage: timesync [sync]");
        r = -EINVAL;
    } else {
        snprintf(reply, reply_len, "channel %s, version %u.%u, %" PRIu64 " messages sent, %"
                 PRIu64 " answered", ic_state_name(t->ic.state), t->ic.ver.major,
                 t->ic.ver.minor, t->samples, t->answers);
    }
    pthread_mutex_unlock(&t->ic.lock);
    return r;
}

const struct vsp_plugin timesync_plugin = {
    .api_version = VSP_API_VERSION,
    .name = "timesync",
    .description = "Hyper-V time synchronisation integration service",
    .init = ts_init,
    .fini = ic_conf_fini,
    .attach = ts_attach,
    .detach = ic_plugin_detach,
    .control = ts_control,
};
