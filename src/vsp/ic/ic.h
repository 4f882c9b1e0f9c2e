/* SPDX-License-Identifier: MIT */
/*
 * Integration-component (IC) framework shared by the heartbeat, shutdown,
 * timesync and KVP VSPs (the services Linux's hv_utils binds to).
 *
 * Every IC message the host sends is one DATA_INBAND packet:
 *
 *   +0   pipe header   {flags u32 (1 = data), size of what follows u32}
 *   +8   IC header     (struct ic_hdr, 20 bytes)
 *   +28  message body  (negotiate, heartbeat, shutdown, ...)
 *
 * The guest answers by echoing the same bytes (same length), with the IC
 * header flags set to TRANSACTION|RESPONSE, a status, and possibly an edited
 * body, in a DATA_INBAND packet carrying the host's VMBus trans_id.
 *
 * Per channel a small state machine runs:
 *
 *   OFFERED --open--> OPENED --negotiate sent--> NEGOTIATING --reply--> READY
 *        ^                                                     \--0/0--> FAILED
 *        +------------------------- close (from any state) -----------------+
 *
 * Locking: struct ic_chan.lock guards the framework state and the service's
 * state; every service hook runs with it held.  The lock is taken by the
 * channel callbacks (serialised by vmbusd), by timers, and by control
 * commands (which vmbusd runs on another thread).  Service timers are never
 * cancelled by the plugins (see ic_op_close in ic.c).
 *
 * Everything a guest sends is untrusted: lengths, counts, versions, strings.
 * A malformed reply is logged (rate-limited) and ignored; it never crashes.
 * Only the public plugin API (vmbusd/vsp.h) is used to reach vmbusd; the
 * UTF-8 check and the log rate limit are src/common's, compiled into the
 * VSP from the static library (self-contained, no daemon state).
 */
#ifndef VMBUSD_VSP_IC_H
#define VMBUSD_VSP_IC_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/ratelimit.h"
#include "vmbusd/hv_wire.h"
#include "vmbusd/vsp.h"

/* ---- wire format ----------------------------------------------------- */

struct ic_version {
    uint16_t major;
    uint16_t minor;
} HV_PACKED;

struct ic_pipe_hdr {
    uint32_t flags;   /* IC_PIPE_FLAG_DATA */
    uint32_t msgsize; /* bytes after this header; Linux ignores it */
} HV_PACKED;

struct ic_hdr {
    struct ic_version framework;
    uint16_t msg_type;
    struct ic_version msg_version;
    uint16_t msg_size; /* body bytes */
    uint32_t status;
    uint8_t ic_trans_id;
    uint8_t flags;     /* IC_FLAG_* */
    uint8_t reserved[2];
} HV_PACKED;

struct ic_negotiate {
    uint16_t fw_count;
    uint16_t msg_count;
    uint32_t reserved;
    /* struct ic_version versions[fw_count + msg_count] follow */
} HV_PACKED;

HV_ASSERT_SIZE(struct ic_version, 4);
HV_ASSERT_SIZE(struct ic_pipe_hdr, 8);
HV_ASSERT_SIZE(struct ic_hdr, 20);
HV_ASSERT_OFF(struct ic_hdr, msg_type, 4);
HV_ASSERT_OFF(struct ic_hdr, msg_size, 10);
HV_ASSERT_OFF(struct ic_hdr, status, 12);
HV_ASSERT_OFF(struct ic_hdr, ic_trans_id, 16);
HV_ASSERT_SIZE(struct ic_negotiate, 8);

#define IC_PIPE_FLAG_DATA 1u
#define IC_HDRS_SIZE      28u /* pipe header + IC header: the body starts here */

#define IC_FLAG_TRANSACTION 0x01
#define IC_FLAG_REQUEST     0x02
#define IC_FLAG_RESPONSE    0x04

enum ic_msg_type {
    IC_MSG_NEGOTIATE = 0,
    IC_MSG_HEARTBEAT = 1,
    IC_MSG_KVP = 2,
    IC_MSG_SHUTDOWN = 3,
    IC_MSG_TIMESYNC = 4,
};

#define IC_S_OK             0x00000000u
#define IC_E_FAIL           0x80004005u
#define IC_S_CONT           0x80070103u
#define IC_E_NOT_SUPPORTED  0x80070032u
#define IC_E_INVALIDARG     0x80070057u
#define IC_E_GUID_NOTFOUND  0x80041002u

/* The guest refuses negotiate messages announcing more versions than this. */
#define IC_NEGOTIATE_MAX_VERSIONS 100u
/* Bytes of a negotiate reply holding one framework and one message version. */
#define IC_NEGOTIATE_REPLY_BODY (sizeof(struct ic_negotiate) + 2 * sizeof(struct ic_version))

/* Largest host->guest payload the hv_utils services accept: their packet
 * (16-byte descriptor + payload) must fit max_pkt_size = 4096. */
#define IC_MAX_PAYLOAD_4K   (4096u - 16u)
/* KVP: max_pkt_size 16 KiB, but the ring's data area is 12 KiB. */
#define IC_MAX_PAYLOAD_KVP  (12288u - 16u - 8u - 8u)

/* ---- pure helpers (no channel needed; unit-tested directly) ---------- */

/* A guest reply after ic_parse(): header copied, body pointing into the packet. */
struct ic_msg {
    struct ic_hdr hdr;
    const uint8_t *body;
    uint32_t body_len; /* packet length - IC_HDRS_SIZE */
};

/* Write pipe + IC header for a host request with body_len bytes of body into
 * buf (cap bytes); the body is zeroed.  Returns IC_HDRS_SIZE + body_len, or 0
 * if it does not fit. */
size_t ic_build(uint8_t *buf, size_t cap, uint16_t msg_type, struct ic_version fw,
                struct ic_version msgv, size_t body_len, uint8_t ic_trans_id);

/* Build a negotiate request offering fw[] then msg[] (newest first). */
size_t ic_build_negotiate(uint8_t *buf, size_t cap, const struct ic_version *fw, unsigned n_fw,
                          const struct ic_version *msg, unsigned n_msg, uint8_t ic_trans_id);

/* Validate the framing of a guest reply: length >= 28, response flag set.
 * 0 or -EBADMSG (reason in *why when non-NULL). */
int ic_parse(const void *data, size_t len, struct ic_msg *out, const char **why);

/* Interpret a negotiate reply against what was offered.  0 and the chosen
 * versions; -EPROTONOSUPPORT if the guest found no common version (counts
 * 0/0 or a failure status); -EBADMSG if the reply is malformed or picks a
 * version that was not offered. */
int ic_parse_negotiate(const struct ic_msg *m, const struct ic_version *fw, unsigned n_fw,
                       const struct ic_version *msg, unsigned n_msg,
                       struct ic_version *fw_out, struct ic_version *msg_out, const char **why);

const char *ic_status_name(uint32_t status);

/* UTF-8 -> UTF-16LE with a terminating NUL unit.  out_cap in bytes.  Returns
 * the bytes written including the NUL (always even), -EILSEQ for invalid UTF-8
 * or an embedded NUL, -ENOSPC if it does not fit. */
int ic_utf8_to_utf16le(const char *s, size_t slen, uint8_t *out, size_t out_cap);
/* UTF-16LE (in_bytes, must be even) -> NUL-terminated UTF-8.  The input must
 * contain a NUL unit within in_bytes (the string ends there).  Returns the
 * UTF-8 length without NUL, -EILSEQ for unpaired surrogates / odd size /
 * missing terminator, -ENOSPC if out (out_cap bytes incl. NUL) is too small. */
int ic_utf16le_to_utf8(const uint8_t *in, size_t in_bytes, char *out, size_t out_cap);

int ic_guid_parse(const char *s, struct hv_guid *g);

/* Parameter helpers for plugin init: 0 or -EINVAL. */
int ic_param_uint(const char *val, unsigned min, unsigned max, unsigned *out);

/* Monotonic milliseconds; tests may replace the clock. */
extern uint64_t (*ic_clock_ms)(void);

/* ---- per-channel framework ------------------------------------------- */

enum ic_state {
    IC_STATE_OFFERED = 0,
    IC_STATE_OPENED,
    IC_STATE_NEGOTIATING,
    IC_STATE_READY,
    IC_STATE_FAILED,
};

const char *ic_state_name(enum ic_state s);

struct ic_chan;

struct ic_service {
    const char *name;    /* "heartbeat"; also the status-key prefix */
    uint16_t msg_type;   /* enum ic_msg_type of the service's messages */
    const char *class_id;
    const char *instance_id; /* default instance GUID */
    uint32_t max_payload; /* largest host->guest payload the guest takes */
    /* All hooks run with ic->lock held and may be NULL. */
    void (*ready)(struct ic_chan *ic);
    void (*message)(struct ic_chan *ic, const struct ic_msg *m, uint64_t trans_id);
    void (*reset)(struct ic_chan *ic); /* channel closed / reopened */
    void (*writable)(struct ic_chan *ic); /* a parked message went out */
    /* The receive batch is drained: vmbusd has published the ring's read
     * index, so the guest has room for its next answer.  Services that send
     * large requests in reaction to answers (KVP) send from here. */
    void (*batch_done)(struct ic_chan *ic);
    /* Last reference dropped: free ic (NULL: free(ic) is all it takes). */
    void (*destroy)(struct ic_chan *ic);
};

#define IC_MAX_MSG_VERSIONS 8
#define IC_TIMERS 2

struct ic_chan {
    pthread_mutex_t lock;
    pthread_cond_t cond; /* signalled on replies, state changes (control waiters) */
    const struct ic_service *svc;
    struct vsp_partition *part;
    struct vsp_channel *ch;
    int refs;            /* under lock; see ic_chan_get/put */
    enum ic_state state;
    unsigned open_gen;   /* bumped on every open/close */
    struct ic_version msg_versions[IC_MAX_MSG_VERSIONS]; /* offered, newest first */
    unsigned n_msg;
    struct ic_version fw;  /* negotiated */
    struct ic_version ver; /* negotiated message version */
    uint64_t next_trans_id;
    uint64_t neg_trans_id;
    uint8_t next_ic_tid;
    /* One message parked after -EAGAIN, sent from ops->writable. */
    uint8_t *parked;
    size_t parked_len;
    uint64_t parked_tid;
    struct ratelimit log_rl; /* guest-triggered log lines */
    unsigned bad_replies;
    /* Service timers: started at the first negotiation, kept until the
     * partition goes away (see ic_op_close); their callbacks must check
     * that the state is READY. */
    struct vsp_timer *timers[IC_TIMERS];
};

/* Initialise ic for service svc on partition p (refs = 1) and offer the
 * channel (instance GUID from instance_override or the service default).
 * msg versions offered are msg[0..n_msg). 0 or -errno. */
int ic_chan_setup(struct ic_chan *ic, const struct ic_service *svc, struct vsp_partition *p,
                  const struct ic_version *msg, unsigned n_msg, const char *instance_override);
void ic_chan_get(struct ic_chan *ic);
/* Drop a reference; the last one calls svc->destroy (which frees ic). */
void ic_chan_put(struct ic_chan *ic);
/* vsp_plugin.detach of every service: its per-partition state starts with
 * the struct ic_chan that ic_chan_setup filled; this drops the reference
 * ic_chan_setup gave the partition (queued work items hold their own). */
void ic_plugin_detach(void *state, struct vsp_partition *p, void *part_state);

/* Build headers for a service message with the negotiated versions. */
size_t ic_prepare(struct ic_chan *ic, uint8_t *buf, size_t cap, size_t body_len);

#define IC_SEND_PARK 0x1 /* on -EAGAIN keep the message and send it when writable */

/* Send a complete message (headers included) built by ic_prepare(); lock
 * held.  *trans_id gets the VMBus transaction id the guest will echo.
 * 0 (sent or parked), -EAGAIN (ring full and not parked, or a message is
 * already parked), -EPIPE, -EMSGSIZE. */
int ic_send(struct ic_chan *ic, const uint8_t *buf, size_t len, unsigned flags,
            uint64_t *trans_id);

/* Start timer slot idx of the channel (lock held); fn gets ic as argument and
 * must do nothing unless ic->state is READY.  0 or -errno.  A timer already in
 * the slot is kept (returns 0): it survives close/reopen. */
int ic_timer_start(struct ic_chan *ic, unsigned idx, unsigned first_ms, unsigned period_ms,
                   vsp_work_fn fn);

/* Log a guest protocol violation, rate-limited (lock held). */
void ic_bad(struct ic_chan *ic, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Publish "<svc name>.<key>" = value. */
void ic_status(struct ic_chan *ic, const char *key, const char *value);

/* Wait on ic->cond (lock held) until *done or timeout_ms elapses.
 * Returns true if *done. */
bool ic_wait(struct ic_chan *ic, const bool *done, unsigned timeout_ms);

/* The generic vsp_channel_ops the IC channels use (exposed for tests). */
extern const struct vsp_channel_ops ic_channel_ops;

/* Plugin parameter parsing shared by the four plugins.  Each plugin passes a
 * table of accepted keys; an unknown key fails init with -EINVAL. */
struct ic_param {
    const char *key;       /* exact key, or a prefix ending in '.' */
    unsigned min, max;     /* for numbers; max == 0 for strings */
    unsigned *num;
    const char **str;
};
int ic_parse_params(const char *plugin, const char *const *keys, const char *const *values,
                    const struct ic_param *table, unsigned n);
/* The first member of a service's configuration (its plugin state): what
 * every service has, so one fini serves those that own nothing else. */
struct ic_conf {
    const char *instance; /* instance_id (ic_instance_param's copy), or NULL */
};
/* vsp_plugin.fini for a configuration whose only allocation is the
 * instance_id copy in its first member, struct ic_conf. */
void ic_conf_fini(void *state);
/* The optional instance_id parameter: *instance (pointing into the config)
 * must be a GUID; on success it is replaced by a copy the plugin owns.
 * 0, -EINVAL or -ENOMEM. */
int ic_instance_param(const char **instance);

#endif
