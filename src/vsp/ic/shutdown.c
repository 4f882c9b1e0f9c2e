/* SPDX-License-Identifier: MIT */
/*
 * Shutdown VSP: asks the guest to power off, reboot or hibernate.
 *
 * Control command (vmbusctl):
 *   shutdown poweroff|reboot|hibernate [force] [timeout=S] [reason=N] [message=TEXT...]
 * sends one shutdown request and waits (control_timeout_ms, default 5000)
 * for the guest's answer: 0 and "accepted" for S_OK, -EREMOTEIO with the
 * guest's status otherwise, -ENOTCONN before negotiation, -EBUSY while a
 * request is outstanding, -ETIMEDOUT without an answer.
 *
 * Status: shutdown.version, shutdown.last ("reboot: S_OK").
 * Parameters: control_timeout_ms, reason (default 0), timeout_s (default 0),
 * instance_id.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vsp/ic/ic.h"
#include "vmbusd/hv_guids.h"

#define SD_INSTANCE "b5e2a0d7-6f43-4a1c-8e95-0c7d3f1a2b02"

#define SD_FLAG_FORCE     0x1u
#define SD_FLAG_POWEROFF  0x0u
#define SD_FLAG_REBOOT    0x2u
#define SD_FLAG_HIBERNATE 0x4u
#define SD_MESSAGE_BYTES  2048u

struct sd_body {
    uint32_t reason;
    uint32_t timeout_s;
    uint32_t flags;
    uint8_t message[SD_MESSAGE_BYTES];
} HV_PACKED;

/* Linux drops shutdown requests whose payload is shorter than this. */
_Static_assert(IC_HDRS_SIZE + sizeof(struct sd_body) == 2088, "shutdown payload must be 2088");

static const struct ic_version sd_msg[] = {{3, 2}, {3, 1}, {3, 0}, {1, 0}};

struct sd_conf {
    struct ic_conf base; /* first: ic_conf_fini frees it */
    unsigned control_timeout_ms;
    unsigned reason;
    unsigned timeout_s;
};

struct sd_part {
    struct ic_chan ic; /* first */
    struct sd_conf conf;
    bool busy;      /* a request is outstanding */
    bool done;      /* its answer (or the channel's end) arrived */
    int result;     /* 0 answered, -EPIPE channel closed */
    uint64_t trans_id;
    uint32_t status;
    const char *what;
};

static void sd_message(struct ic_chan *ic, const struct ic_msg *m, uint64_t tid)
{
    struct sd_part *sd = (struct sd_part *)ic;
    char text[64];

    if (!sd->busy || sd->done || tid != sd->trans_id) {
        ic_bad(ic, "unexpected shutdown reply (trans_id %" PRIu64 ")", tid);
        return;
    }
    sd->status = m->hdr.status;
    sd->result = 0;
    sd->done = true;
    snprintf(text, sizeof(text), "%s: %s (0x%08x)", sd->what, ic_status_name(sd->status),
             sd->status);
    ic_status(ic, "last", text);
    vsp_log(ic->ch, sd->status == IC_S_OK ? VSP_LOG_INFO : VSP_LOG_WARN,
            "shutdown: guest answered %s request with 0x%08x", sd->what, sd->status);
}

static void sd_reset(struct ic_chan *ic)
{
    struct sd_part *sd = (struct sd_part *)ic;

    if (sd->busy && !sd->done) {
        sd->result = -EPIPE;
        sd->done = true;
    }
}

static const struct ic_service sd_service = {
    .name = "shutdown",
    .msg_type = IC_MSG_SHUTDOWN,
    .class_id = HV_CLASS_SHUTDOWN,
    .instance_id = SD_INSTANCE,
    .max_payload = IC_MAX_PAYLOAD_4K,
    .message = sd_message,
    .reset = sd_reset,
};

struct sd_request {
    uint32_t flags;
    uint32_t reason;
    uint32_t timeout_s;
    const char *message; /* points into the args copy */
    const char *what;
};

static int sd_parse_args(char *args, struct sd_request *rq, char *reply, size_t reply_len)
{
    bool have_action = false;
    char *save = NULL, *tok;
    unsigned v;

    for (tok = strtok_r(args, " \t", &save); tok; tok = strtok_r(NULL, " \t", &save)) {
        if (strncmp(tok, "message=", 8) == 0) {
            /* The message takes the rest of the line. */
            char *rest = strtok_r(NULL, "", &save);
            if (rest)
                tok[strlen(tok)] = ' ';
            rq->message = tok + 8;
            break;
        } else if (strcmp(tok, "poweroff") == 0 || strcmp(tok, "shutdown") == 0) {
            rq->flags = (rq->flags & SD_FLAG_FORCE) | SD_FLAG_POWEROFF;
            rq->what = "poweroff";
            have_action = true;
        } else if (strcmp(tok, "reboot") == 0) {
            rq->flags = (rq->flags & SD_FLAG_FORCE) | SD_FLAG_REBOOT;
            rq->what = "reboot";
            have_action = true;
        } else if (strcmp(tok, "hibernate") == 0) {
            rq->flags = (rq->flags & SD_FLAG_FORCE) | SD_FLAG_HIBERNATE;
            rq->what = "hibernate";
            have_action = true;
        } else if (strcmp(tok, "force") == 0) {
            rq->flags |= SD_FLAG_FORCE;
        } else if (strncmp(tok, "timeout=", 8) == 0 &&
                   ic_param_uint(tok + 8, 0, 86400, &v) == 0) {
            rq->timeout_s = v;
        } else if (strncmp(tok, "reason=", 7) == 0 &&
                   ic_param_uint(tok + 7, 0, UINT32_MAX, &v) == 0) {
            rq->reason = v;
        } else {
            snprintf(reply, reply_len, "shutdown: bad argument '%s'; usage: shutdown "
                     "poweroff|reboot|hibernate [force] [timeout=S] [reason=N] [message=TEXT]",
                     tok);
            return -EINVAL;
        }
    }
    if (!have_action) {
        snprintf(reply, reply_len,
                 "usage: shutdown poweroff|reboot|hibernate [force] [timeout=S] [reason=N] "
                 "[message=TEXT]");
        return -EINVAL;
    }
    return 0;
}

static int sd_do(struct sd_part *sd, const struct sd_request *rq, char *reply, size_t reply_len)
{
    uint8_t buf[IC_HDRS_SIZE + sizeof(struct sd_body)];
    struct sd_body body;
    size_t len;
    int r;

    if (sd->ic.state != IC_STATE_READY) {
        snprintf(reply, reply_len, "shutdown: guest service not ready (channel %s)",
                 ic_state_name(sd->ic.state));
        return -ENOTCONN;
    }
    if (sd->busy) {
        snprintf(reply, reply_len, "shutdown: a %s request is still outstanding", sd->what);
        return -EBUSY;
    }
    memset(&body, 0, sizeof(body));
    body.reason = rq->reason;
    body.timeout_s = rq->timeout_s;
    body.flags = rq->flags;
    if (rq->message && *rq->message) {
        /* The display message is UTF-16LE; keep one unit for the NUL. */
        r = ic_utf8_to_utf16le(rq->message, strlen(rq->message), body.message,
                               sizeof(body.message));
        if (r < 0) {
            snprintf(reply, reply_len, "shutdown: message %s",
                     r == -ENOSPC ? "too long (max 1023 UTF-16 units)" : "is not valid UTF-8");
            return -EINVAL;
        }
    }
    len = ic_prepare(&sd->ic, buf, sizeof(buf), sizeof(body));
    memcpy(buf + IC_HDRS_SIZE, &body, sizeof(body));
    r = ic_send(&sd->ic, buf, len, IC_SEND_PARK, &sd->trans_id);
    if (r < 0) {
        snprintf(reply, reply_len, "shutdown: sending failed (%s)", strerror(-r));
        return r;
    }
    sd->busy = true;
    sd->done = false;
    sd->what = rq->what;
    vsp_log(sd->ic.ch, VSP_LOG_INFO, "shutdown: %s%s requested", rq->what,
            (rq->flags & SD_FLAG_FORCE) ? " (force)" : "");

    if (!ic_wait(&sd->ic, &sd->done, sd->conf.control_timeout_ms)) {
        sd->busy = false; /* a late answer will be logged and ignored */
        snprintf(reply, reply_len, "shutdown: %s sent, no answer from the guest within %u ms",
                 rq->what, sd->conf.control_timeout_ms);
        return -ETIMEDOUT;
    }
    sd->busy = false;
    if (sd->result < 0) {
        snprintf(reply, reply_len, "shutdown: channel closed before the guest answered");
        return sd->result;
    }
    if (sd->status != IC_S_OK) {
        snprintf(reply, reply_len, "shutdown: guest refused %s: status 0x%08x (%s)", rq->what,
                 sd->status, ic_status_name(sd->status));
        return -EREMOTEIO;
    }
    snprintf(reply, reply_len, "shutdown: guest accepted %s", rq->what);
    return 0;
}

static int sd_control(void *state, struct vsp_partition *p, void *part_state, const char *cmd,
                      const char *args, char *reply, size_t reply_len)
{
    struct sd_part *sd = part_state;
    const struct sd_conf *c = state;
    struct sd_request rq = {.reason = c->reason, .timeout_s = c->timeout_s, .what = "poweroff"};
    char *copy;
    int r;

    if (strcmp(cmd, "shutdown") != 0) {
        snprintf(reply, reply_len, "shutdown: unknown command '%s'", cmd);
        return -EOPNOTSUPP;
    }
    copy = strdup(args ? args : "");
    if (!copy)
        return -ENOMEM;
    r = sd_parse_args(copy, &rq, reply, reply_len);
    if (r == 0) {
        ic_chan_get(&sd->ic);
        pthread_mutex_lock(&sd->ic.lock);
        r = sd_do(sd, &rq, reply, reply_len);
        pthread_mutex_unlock(&sd->ic.lock);
        ic_chan_put(&sd->ic);
    }
    free(copy);
    return r;
}

static int sd_init(const char *const *keys, const char *const *values, void **state)
{
    struct sd_conf *c = calloc(1, sizeof(*c));
    const struct ic_param table[] = {
        {"control_timeout_ms", 1, 600000, &c->control_timeout_ms, NULL},
        {"reason", 0, UINT32_MAX, &c->reason, NULL},
        {"timeout_s", 0, 86400, &c->timeout_s, NULL},
        {"instance_id", 0, 0, NULL, &c->base.instance},
    };
    int r;

    if (!c)
        return -ENOMEM;
    c->control_timeout_ms = 5000;
    r = ic_parse_params("shutdown", keys, values, table, 4);
    if (!r)
        r = ic_instance_param(&c->base.instance);
    if (r) {
        free(c);
        return r;
    }
    *state = c;
    return 0;
}

static int sd_attach(void *state, struct vsp_partition *p, void **part_state)
{
    const struct sd_conf *c = state;
    struct sd_part *sd = calloc(1, sizeof(*sd));
    int r;

    if (!sd)
        return -ENOMEM;
    sd->conf = *c;
    sd->what = "poweroff";
    r = ic_chan_setup(&sd->ic, &sd_service, p, sd_msg, 4, c->base.instance);
    if (r) {
        free(sd);
        return r;
    }
    *part_state = sd;
    return 0;
}

const struct vsp_plugin shutdown_plugin = {
    .api_version = VSP_API_VERSION,
    .name = "shutdown",
    .description = "Hyper-V guest shutdown integration service (poweroff/reboot)",
    .init = sd_init,
    .fini = ic_conf_fini,
    .attach = sd_attach,
    .detach = ic_plugin_detach,
    .control = sd_control,
};
