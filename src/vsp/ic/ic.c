/* SPDX-License-Identifier: MIT */
/*
 * IC framework: message framing, the version negotiation every hv_utils
 * service starts with, the per-channel state machine and the plumbing
 * (parking a message on a full ring, rate-limited guest error logs, waiting
 * for replies from control commands).  See ic.h for the model.
 */
#include "vsp/ic/ic.h"

#include "common/utf8.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Guest-triggered log lines per channel: this many at once, then one a
 * second. */
#define IC_LOG_BURST   10u
#define IC_LOG_PER_SEC 1u

static uint64_t ic_default_clock_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t (*ic_clock_ms)(void) = ic_default_clock_ms;

/* ---- framing --------------------------------------------------------- */

size_t ic_build(uint8_t *buf, size_t cap, uint16_t msg_type, struct ic_version fw,
                struct ic_version msgv, size_t body_len, uint8_t ic_trans_id)
{
    struct ic_pipe_hdr pipe;
    struct ic_hdr h;

    if (body_len > UINT16_MAX || cap < IC_HDRS_SIZE || cap - IC_HDRS_SIZE < body_len)
        return 0;
    pipe.flags = IC_PIPE_FLAG_DATA;
    pipe.msgsize = (uint32_t)(sizeof(h) + body_len);
    memset(&h, 0, sizeof(h));
    h.framework = fw;
    h.msg_type = msg_type;
    h.msg_version = msgv;
    h.msg_size = (uint16_t)body_len;
    h.status = IC_S_OK;
    h.ic_trans_id = ic_trans_id;
    h.flags = IC_FLAG_TRANSACTION | IC_FLAG_REQUEST;
    memcpy(buf, &pipe, sizeof(pipe));
    memcpy(buf + sizeof(pipe), &h, sizeof(h));
    memset(buf + IC_HDRS_SIZE, 0, body_len);
    return IC_HDRS_SIZE + body_len;
}

size_t ic_build_negotiate(uint8_t *buf, size_t cap, const struct ic_version *fw, unsigned n_fw,
                          const struct ic_version *msg, unsigned n_msg, uint8_t ic_trans_id)
{
    /* The negotiate message itself is framed with the oldest versions so that
     * any guest can parse it; Linux ignores these two fields. */
    const struct ic_version base = {1, 0};
    struct ic_negotiate neg;
    size_t body, len;
    uint8_t *p;

    if (n_fw == 0 || n_msg == 0 || n_fw + n_msg > IC_NEGOTIATE_MAX_VERSIONS)
        return 0;
    body = sizeof(neg) + (size_t)(n_fw + n_msg) * sizeof(struct ic_version);
    len = ic_build(buf, cap, IC_MSG_NEGOTIATE, base, base, body, ic_trans_id);
    if (!len)
        return 0;
    neg.fw_count = (uint16_t)n_fw;
    neg.msg_count = (uint16_t)n_msg;
    neg.reserved = 0;
    p = buf + IC_HDRS_SIZE;
    memcpy(p, &neg, sizeof(neg));
    p += sizeof(neg);
    memcpy(p, fw, n_fw * sizeof(*fw));
    p += n_fw * sizeof(*fw);
    memcpy(p, msg, n_msg * sizeof(*msg));
    return len;
}

int ic_parse(const void *data, size_t len, struct ic_msg *out, const char **why)
{
    const char *dummy;

    if (!why)
        why = &dummy;
    if (!data || len < IC_HDRS_SIZE) {
        *why = "shorter than the IC headers";
        return -EBADMSG;
    }
    if (len > UINT32_MAX) {
        *why = "too long";
        return -EBADMSG;
    }
    memcpy(&out->hdr, (const uint8_t *)data + sizeof(struct ic_pipe_hdr), sizeof(out->hdr));
    if (!(out->hdr.flags & IC_FLAG_RESPONSE)) {
        *why = "response flag not set";
        return -EBADMSG;
    }
    out->body = (const uint8_t *)data + IC_HDRS_SIZE;
    out->body_len = (uint32_t)(len - IC_HDRS_SIZE);
    return 0;
}

static bool version_in(struct ic_version v, const struct ic_version *list, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        if (list[i].major == v.major && list[i].minor == v.minor)
            return true;
    return false;
}

int ic_parse_negotiate(const struct ic_msg *m, const struct ic_version *fw, unsigned n_fw,
                       const struct ic_version *msg, unsigned n_msg,
                       struct ic_version *fw_out, struct ic_version *msg_out, const char **why)
{
    struct ic_negotiate neg;
    struct ic_version v[2];
    const char *dummy;

    if (!why)
        why = &dummy;
    if (m->hdr.msg_type != IC_MSG_NEGOTIATE) {
        *why = "not a negotiate message";
        return -EBADMSG;
    }
    if (m->body_len < sizeof(neg)) {
        *why = "negotiate body truncated";
        return -EBADMSG;
    }
    memcpy(&neg, m->body, sizeof(neg));
    if (neg.fw_count > IC_NEGOTIATE_MAX_VERSIONS || neg.msg_count > IC_NEGOTIATE_MAX_VERSIONS) {
        *why = "version count above 100";
        return -EBADMSG;
    }
    if (neg.fw_count == 0 && neg.msg_count == 0) {
        *why = "guest supports none of the offered versions";
        return -EPROTONOSUPPORT;
    }
    if (neg.fw_count != 1 || neg.msg_count != 1) {
        *why = "a reply must choose exactly one framework and one message version";
        return -EBADMSG;
    }
    if (m->body_len < IC_NEGOTIATE_REPLY_BODY) {
        *why = "negotiate reply too short for the chosen versions";
        return -EBADMSG;
    }
    if (m->hdr.status != IC_S_OK) {
        *why = "negotiate reply with a failure status";
        return -EPROTONOSUPPORT;
    }
    memcpy(v, m->body + sizeof(neg), sizeof(v));
    if (!version_in(v[0], fw, n_fw)) {
        *why = "guest chose a framework version that was not offered";
        return -EBADMSG;
    }
    if (!version_in(v[1], msg, n_msg)) {
        *why = "guest chose a message version that was not offered";
        return -EBADMSG;
    }
    *fw_out = v[0];
    *msg_out = v[1];
    return 0;
}

const char *ic_status_name(uint32_t status)
{
    switch (status) {
    case IC_S_OK: return "S_OK";
    case IC_E_FAIL: return "E_FAIL";
    case IC_S_CONT: return "S_CONT";
    case IC_E_NOT_SUPPORTED: return "E_NOT_SUPPORTED";
    case IC_E_INVALIDARG: return "E_INVALIDARG";
    case IC_E_GUID_NOTFOUND: return "E_GUID_NOTFOUND";
    default: return "unknown";
    }
}

const char *ic_state_name(enum ic_state s)
{
    switch (s) {
    case IC_STATE_OFFERED: return "offered";
    case IC_STATE_OPENED: return "opened";
    case IC_STATE_NEGOTIATING: return "negotiating";
    case IC_STATE_READY: return "ready";
    case IC_STATE_FAILED: return "failed";
    }
    return "?";
}

/* ---- UTF-8 <-> UTF-16LE ---------------------------------------------- */

static int put16(uint8_t *out, size_t cap, size_t *o, uint16_t u)
{
    if (cap - *o < 2)
        return -ENOSPC;
    out[*o] = (uint8_t)(u & 0xff);
    out[*o + 1] = (uint8_t)(u >> 8);
    *o += 2;
    return 0;
}

int ic_utf8_to_utf16le(const char *s, size_t slen, uint8_t *out, size_t out_cap)
{
    size_t i = 0, o = 0;

    out_cap &= ~(size_t)1;
    while (i < slen) {
        uint32_t cp;
        size_t n = utf8_decode(s + i, slen - i, &cp);
        if (n == 0 || cp == 0) /* malformed, or an embedded NUL */
            return -EILSEQ;
        i += n;
        if (cp >= 0x10000) {
            cp -= 0x10000;
            if (put16(out, out_cap, &o, (uint16_t)(0xd800 | (cp >> 10))) ||
                put16(out, out_cap, &o, (uint16_t)(0xdc00 | (cp & 0x3ff))))
                return -ENOSPC;
        } else if (put16(out, out_cap, &o, (uint16_t)cp)) {
            return -ENOSPC;
        }
    }
    if (put16(out, out_cap, &o, 0))
        return -ENOSPC;
    return (int)o;
}

int ic_utf16le_to_utf8(const uint8_t *in, size_t in_bytes, char *out, size_t out_cap)
{
    size_t n = in_bytes / 2, o = 0;
    bool terminated = false;

    if ((in_bytes & 1) || out_cap == 0)
        return out_cap == 0 ? -ENOSPC : -EILSEQ;
    for (size_t k = 0; k < n; k++) {
        uint32_t cp = (uint32_t)in[2 * k] | ((uint32_t)in[2 * k + 1] << 8);
        char enc[4];
        size_t el;

        if (cp == 0) {
            terminated = true;
            break;
        }
        if (cp >= 0xdc00 && cp <= 0xdfff)
            return -EILSEQ; /* low surrogate without a high one */
        if (cp >= 0xd800 && cp <= 0xdbff) {
            uint32_t lo;
            if (k + 1 >= n)
                return -EILSEQ;
            lo = (uint32_t)in[2 * k + 2] | ((uint32_t)in[2 * k + 3] << 8);
            if (lo < 0xdc00 || lo > 0xdfff)
                return -EILSEQ;
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            k++;
        }
        if (cp < 0x80) {
            enc[0] = (char)cp; el = 1;
        } else if (cp < 0x800) {
            enc[0] = (char)(0xc0 | (cp >> 6));
            enc[1] = (char)(0x80 | (cp & 0x3f)); el = 2;
        } else if (cp < 0x10000) {
            enc[0] = (char)(0xe0 | (cp >> 12));
            enc[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
            enc[2] = (char)(0x80 | (cp & 0x3f)); el = 3;
        } else {
            enc[0] = (char)(0xf0 | (cp >> 18));
            enc[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
            enc[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
            enc[3] = (char)(0x80 | (cp & 0x3f)); el = 4;
        }
        if (out_cap - o <= el)
            return -ENOSPC;
        memcpy(out + o, enc, el);
        o += el;
    }
    if (!terminated)
        return -EILSEQ;
    out[o] = '\0';
    return (int)o;
}

/* ---- small parsers --------------------------------------------------- */

int ic_guid_parse(const char *s, struct hv_guid *g)
{
    return vsp_guid_parse(s, g);
}

int ic_param_uint(const char *val, unsigned min, unsigned max, unsigned *out)
{
    char *end;
    unsigned long v;

    if (!val || !*val || *val == '-')
        return -EINVAL;
    errno = 0;
    v = strtoul(val, &end, 0);
    if (errno || *end || v < min || v > max)
        return -EINVAL;
    *out = (unsigned)v;
    return 0;
}

void ic_conf_fini(void *state)
{
    struct ic_conf *c = state;

    if (c)
        free((char *)c->instance);
    free(c);
}

int ic_instance_param(const char **instance)
{
    struct hv_guid g;
    if (!*instance)
        return 0;
    if (ic_guid_parse(*instance, &g))
        return -EINVAL;
    char *copy = strdup(*instance);
    if (!copy)
        return -ENOMEM;
    *instance = copy;
    return 0;
}

int ic_parse_params(const char *plugin, const char *const *keys, const char *const *values,
                    const struct ic_param *table, unsigned n)
{
    for (unsigned i = 0; keys && keys[i]; i++) {
        const char *val = values ? values[i] : NULL;
        const struct ic_param *hit = NULL;

        for (unsigned k = 0; k < n && !hit; k++) {
            size_t kl = strlen(table[k].key);
            if (kl && table[k].key[kl - 1] == '.') {
                if (strncmp(keys[i], table[k].key, kl) == 0 && keys[i][kl])
                    hit = &table[k];
            } else if (strcmp(keys[i], table[k].key) == 0) {
                hit = &table[k];
            }
        }
        /* vsp.h gives init no logger; stderr reaches vmbusd's log anyway. */
        if (!hit) {
            fprintf(stderr, "vsp %s: unknown parameter '%s'\n", plugin, keys[i]);
            return -EINVAL;
        }
        if (hit->num && ic_param_uint(val, hit->min, hit->max, hit->num)) {
            fprintf(stderr, "vsp %s: parameter %s='%s' is not a number in [%u, %u]\n",
                    plugin, keys[i], val ? val : "", hit->min, hit->max);
            return -EINVAL;
        }
        if (hit->str) {
            if (!val) {
                fprintf(stderr, "vsp %s: parameter %s needs a value\n", plugin, keys[i]);
                return -EINVAL;
            }
            *hit->str = val;
        }
    }
    return 0;
}

/* ---- per-channel framework ------------------------------------------- */

void ic_bad(struct ic_chan *ic, const char *fmt, ...)
{
    uint64_t dropped = 0;
    char line[256];
    va_list ap;

    ic->bad_replies++;
    if (!ratelimit_allow_at(&ic->log_rl, ic_clock_ms(), &dropped))
        return;
    if (dropped)
        vsp_log(ic->ch, VSP_LOG_WARN, "%s: %" PRIu64 " more bad guest messages not logged",
                ic->svc->name, dropped);
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    vsp_guest_error(ic->ch, "%s: bad guest message ignored: %s", ic->svc->name, line);
}

void ic_status(struct ic_chan *ic, const char *key, const char *value)
{
    char full[1280];

    snprintf(full, sizeof(full), "%s.%s", ic->svc->name, key);
    vsp_partition_set_status(ic->part, full, value);
}

bool ic_wait(struct ic_chan *ic, const bool *done, unsigned timeout_ms)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += timeout_ms / 1000u;
    ts.tv_nsec += (long)(timeout_ms % 1000u) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    while (!*done) {
        if (pthread_cond_timedwait(&ic->cond, &ic->lock, &ts) == ETIMEDOUT)
            break;
    }
    return *done;
}

void ic_chan_get(struct ic_chan *ic)
{
    pthread_mutex_lock(&ic->lock);
    ic->refs++;
    pthread_mutex_unlock(&ic->lock);
}

void ic_chan_put(struct ic_chan *ic)
{
    int left;

    pthread_mutex_lock(&ic->lock);
    left = --ic->refs;
    pthread_mutex_unlock(&ic->lock);
    if (left == 0) {
        free(ic->parked);
        pthread_cond_destroy(&ic->cond);
        pthread_mutex_destroy(&ic->lock);
        if (ic->svc->destroy)
            ic->svc->destroy(ic);
        else
            free(ic);
    }
}

void ic_plugin_detach(void *state, struct vsp_partition *p, void *part_state)
{
    if (part_state)
        ic_chan_put(part_state);
}

size_t ic_prepare(struct ic_chan *ic, uint8_t *buf, size_t cap, size_t body_len)
{
    return ic_build(buf, cap, ic->svc->msg_type, ic->fw, ic->ver, body_len, ic->next_ic_tid++);
}

int ic_send(struct ic_chan *ic, const uint8_t *buf, size_t len, unsigned flags,
            uint64_t *trans_id)
{
    uint64_t tid = ic->next_trans_id++;
    int r;

    if (len > ic->svc->max_payload) {
        /* A host bug, not a guest one: this would desynchronise its ring. */
        vsp_log(ic->ch, VSP_LOG_ERROR, "%s: refusing %zu-byte message (guest limit %u)",
                ic->svc->name, len, ic->svc->max_payload);
        return -EMSGSIZE;
    }
    if (trans_id)
        *trans_id = tid;
    if (ic->parked)
        return -EAGAIN; /* keep order behind the parked message */
    r = vsp_send_inband(ic->ch, buf, len, tid, false);
    if (r == -EAGAIN && (flags & IC_SEND_PARK)) {
        ic->parked = malloc(len);
        if (!ic->parked)
            return -ENOMEM;
        memcpy(ic->parked, buf, len);
        ic->parked_len = len;
        ic->parked_tid = tid;
        return 0;
    }
    return r;
}

static void ic_drop_parked(struct ic_chan *ic)
{
    free(ic->parked);
    ic->parked = NULL;
    ic->parked_len = 0;
}

/* The IC framework versions vmbusd speaks (every service offers the same;
 * Linux takes 3.0). */
static const struct ic_version ic_fw_versions[] = {{3, 0}, {1, 0}};
#define IC_N_FW (sizeof(ic_fw_versions) / sizeof(ic_fw_versions[0]))

static void ic_send_negotiate(struct ic_chan *ic)
{
    uint8_t buf[IC_HDRS_SIZE + sizeof(struct ic_negotiate) + 16 * sizeof(struct ic_version)];
    size_t len;
    int r;

    len = ic_build_negotiate(buf, sizeof(buf), ic_fw_versions, IC_N_FW,
                             ic->msg_versions, ic->n_msg, ic->next_ic_tid++);
    if (!len) {
        vsp_log(ic->ch, VSP_LOG_ERROR, "%s: cannot build negotiate", ic->svc->name);
        ic->state = IC_STATE_FAILED;
        return;
    }
    r = ic_send(ic, buf, len, IC_SEND_PARK, &ic->neg_trans_id);
    if (r < 0) {
        vsp_log(ic->ch, VSP_LOG_WARN, "%s: sending negotiate failed: %d", ic->svc->name, r);
        return;
    }
    ic->state = IC_STATE_NEGOTIATING;
    vsp_log(ic->ch, VSP_LOG_DEBUG, "%s: negotiate sent (trans_id %llu)", ic->svc->name,
            (unsigned long long)ic->neg_trans_id);
}

struct ic_start_arg {
    struct ic_chan *ic;
    unsigned gen;
};

static void ic_start_fn(void *arg);

/* Queue the negotiation behind ops->open (lock held). */
static void ic_schedule_start(struct ic_chan *ic, unsigned gen)
{
    struct ic_start_arg *a = malloc(sizeof(*a));

    if (!a) {
        vsp_log(ic->ch, VSP_LOG_ERROR, "%s: out of memory", ic->svc->name);
        return;
    }
    a->ic = ic;
    a->gen = gen;
    ic->refs++; /* the work item's reference */
    if (vsp_queue_work(ic->ch, ic_start_fn, a) == 0)
        return;
    ic->refs--;
    free(a);
    vsp_log(ic->ch, VSP_LOG_ERROR, "%s: cannot schedule negotiation", ic->svc->name);
}

/* A work item queued from ops->open runs after vmbusd has marked the channel
 * open and queued the guest's OPENCHANNEL_RESULT (vsp.h), so the negotiate
 * can go at once.  A channel that is not open was closed by the guest
 * meanwhile: close follows, and the next open starts over. */
static void ic_start_fn(void *arg)
{
    struct ic_start_arg *a = arg;
    struct ic_chan *ic = a->ic;

    pthread_mutex_lock(&ic->lock);
    if (ic->open_gen == a->gen && ic->state == IC_STATE_OPENED && vsp_channel_is_open(ic->ch))
        ic_send_negotiate(ic);
    pthread_mutex_unlock(&ic->lock);
    free(a);
    ic_chan_put(ic);
}

static void ic_reset_locked(struct ic_chan *ic)
{
    ic->open_gen++;
    ic_drop_parked(ic);
    if (ic->svc->reset)
        ic->svc->reset(ic);
    pthread_cond_broadcast(&ic->cond);
}

static int ic_op_open(struct vsp_channel *ch, const uint8_t *user_data, size_t len)
{
    struct ic_chan *ic = vsp_channel_opaque(ch);

    pthread_mutex_lock(&ic->lock);
    if (ic->state != IC_STATE_OFFERED)
        ic_reset_locked(ic); /* open without close: start over */
    ic->ch = ch;
    ic->state = IC_STATE_OPENED;
    ic->open_gen++;
    ic->fw = (struct ic_version){0, 0};
    ic->ver = (struct ic_version){0, 0};
    ic_status(ic, "version", "none");
    ic_schedule_start(ic, ic->open_gen);
    pthread_mutex_unlock(&ic->lock);
    return 0;
}

int ic_timer_start(struct ic_chan *ic, unsigned idx, unsigned first_ms, unsigned period_ms,
                   vsp_work_fn fn)
{
    if (idx >= IC_TIMERS)
        return -EINVAL;
    if (ic->timers[idx])
        return 0;
    ic->timers[idx] = vsp_timer_start(ic->part, ic->ch, first_ms, period_ms, fn, ic);
    if (!ic->timers[idx]) {
        vsp_log(ic->ch, VSP_LOG_ERROR, "%s: cannot start a timer", ic->svc->name);
        return -ENOMEM;
    }
    return 0;
}

/* Timers are not cancelled here: they stay until the partition goes, idle
 * while the channel is not ready, and a reopen reuses them.  vmbusd stops
 * them (and waits for a callback in flight) before any detach, so the
 * detach may drop the last reference to the state they point at. */
static void ic_op_close(struct vsp_channel *ch)
{
    struct ic_chan *ic = vsp_channel_opaque(ch);

    pthread_mutex_lock(&ic->lock);
    ic->state = IC_STATE_OFFERED;
    ic_reset_locked(ic);
    ic_status(ic, "version", "none");
    pthread_mutex_unlock(&ic->lock);
}

static void ic_handle_negotiate(struct ic_chan *ic, const struct ic_msg *m, uint64_t tid)
{
    struct ic_version fw, ver;
    const char *why = NULL;
    char text[32];
    int r;

    if (ic->state != IC_STATE_NEGOTIATING || tid != ic->neg_trans_id) {
        ic_bad(ic, "unexpected negotiate reply (state %s, trans_id %llu)",
               ic_state_name(ic->state), (unsigned long long)tid);
        return;
    }
    r = ic_parse_negotiate(m, ic_fw_versions, IC_N_FW, ic->msg_versions, ic->n_msg,
                           &fw, &ver, &why);
    if (r == -EPROTONOSUPPORT) {
        vsp_log(ic->ch, VSP_LOG_WARN, "%s: negotiation failed: %s", ic->svc->name, why);
        ic->state = IC_STATE_FAILED;
        ic_status(ic, "version", "unsupported");
        pthread_cond_broadcast(&ic->cond);
        return;
    }
    if (r < 0) {
        ic_bad(ic, "negotiate reply: %s", why);
        return;
    }
    ic->fw = fw;
    ic->ver = ver;
    ic->state = IC_STATE_READY;
    snprintf(text, sizeof(text), "%u.%u", ver.major, ver.minor);
    ic_status(ic, "version", text);
    vsp_log(ic->ch, VSP_LOG_INFO, "%s: negotiated framework %u.%u, message version %u.%u",
            ic->svc->name, fw.major, fw.minor, ver.major, ver.minor);
    if (ic->svc->ready)
        ic->svc->ready(ic);
    pthread_cond_broadcast(&ic->cond);
}

static void ic_handle_packet(struct ic_chan *ic, const struct vsp_packet *pkt)
{
    struct ic_msg m;
    const char *why = NULL;

    if (pkt->type != VM_PKT_DATA_INBAND) {
        ic_bad(ic, "packet type %u", pkt->type);
        return;
    }
    if (ic_parse(pkt->data, pkt->len, &m, &why) < 0) {
        ic_bad(ic, "%u bytes: %s", pkt->len, why);
        return;
    }
    if (ic->state != IC_STATE_NEGOTIATING && ic->state != IC_STATE_READY) {
        ic_bad(ic, "reply in state %s", ic_state_name(ic->state));
        return;
    }
    if (m.hdr.msg_type == IC_MSG_NEGOTIATE) {
        ic_handle_negotiate(ic, &m, pkt->trans_id);
    } else if (m.hdr.msg_type != ic->svc->msg_type) {
        ic_bad(ic, "message type %u on a type-%u channel", m.hdr.msg_type, ic->svc->msg_type);
    } else if (ic->state != IC_STATE_READY) {
        ic_bad(ic, "service reply before negotiation finished");
    } else if (ic->svc->message) {
        ic->svc->message(ic, &m, pkt->trans_id);
        pthread_cond_broadcast(&ic->cond);
    }
}

static void ic_op_receive(struct vsp_channel *ch)
{
    struct ic_chan *ic = vsp_channel_opaque(ch);
    struct vsp_packet pkt;
    int r;

    pthread_mutex_lock(&ic->lock);
    while ((r = vsp_recv(ch, &pkt)) > 0)
        ic_handle_packet(ic, &pkt);
    if (r < 0)
        vsp_log(ch, VSP_LOG_WARN, "%s: receive failed: %d", ic->svc->name, r);
    else if (ic->svc->batch_done)
        ic->svc->batch_done(ic);
    pthread_mutex_unlock(&ic->lock);
}

static void ic_op_writable(struct vsp_channel *ch)
{
    struct ic_chan *ic = vsp_channel_opaque(ch);
    int r;

    pthread_mutex_lock(&ic->lock);
    if (ic->parked) {
        r = vsp_send_inband(ch, ic->parked, ic->parked_len, ic->parked_tid, false);
        if (r != -EAGAIN) {
            if (r < 0)
                vsp_log(ch, VSP_LOG_WARN, "%s: sending parked message failed: %d",
                        ic->svc->name, r);
            ic_drop_parked(ic);
            if (ic->svc->writable)
                ic->svc->writable(ic);
        }
    }
    pthread_mutex_unlock(&ic->lock);
}

const struct vsp_channel_ops ic_channel_ops = {
    .open = ic_op_open,
    .close = ic_op_close,
    .receive = ic_op_receive,
    .writable = ic_op_writable,
};

int ic_chan_setup(struct ic_chan *ic, const struct ic_service *svc, struct vsp_partition *p,
                  const struct ic_version *msg, unsigned n_msg, const char *instance_override)
{
    struct vsp_offer offer;
    pthread_condattr_t ca;

    if (n_msg == 0 || n_msg > IC_MAX_MSG_VERSIONS)
        return -EINVAL;
    memset(ic, 0, sizeof(*ic));
    memset(&offer, 0, sizeof(offer));
    if (ic_guid_parse(svc->class_id, &offer.class_id) ||
        ic_guid_parse(instance_override ? instance_override : svc->instance_id,
                      &offer.instance_id))
        return -EINVAL;
    pthread_mutex_init(&ic->lock, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&ic->cond, &ca);
    pthread_condattr_destroy(&ca);
    ic->svc = svc;
    ic->log_rl = (struct ratelimit)RATELIMIT_INIT(IC_LOG_BURST, IC_LOG_PER_SEC);
    ic->part = p;
    ic->refs = 1;
    ic->state = IC_STATE_OFFERED;
    memcpy(ic->msg_versions, msg, n_msg * sizeof(*msg));
    ic->n_msg = n_msg;
    ic->next_trans_id = 1;
    offer.ops = &ic_channel_ops;
    offer.opaque = ic;
    ic->ch = vsp_channel_offer(p, &offer);
    if (!ic->ch) {
        pthread_cond_destroy(&ic->cond);
        pthread_mutex_destroy(&ic->lock);
        return -ENOMEM;
    }
    return 0;
}
