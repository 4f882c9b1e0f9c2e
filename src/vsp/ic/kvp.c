/* SPDX-License-Identifier: MIT */
/*
 * KVP (key-value pair exchange, "data exchange") VSP.
 *
 * The host drives every exchange: it sends one hv_kvp_msg (GET, SET, DELETE
 * or ENUMERATE on a pool) and the guest's hv_kvp_daemon fills in the answer;
 * the guest kernel sends the same buffer back with a status.  Only one
 * transaction is outstanding at a time; further requests wait in a FIFO.
 * The guest answers within 30 s (E_FAIL when its daemon is slow); the host
 * gives up after timeout_ms and ignores a late answer (trans_id mismatch).
 *
 * Without hv_kvp_daemon in the guest, the guest does not even read the
 * negotiate request; the channel then stays "negotiating" and control
 * commands fail with -ENOTCONN (kvp-set on pool 0 is stored and pushed once
 * the guest is ready).  Nothing else happens: that is harmless.
 *
 * Pools: 0 external (host -> guest, kept by the host per partition and pushed
 * after every negotiation), 1 guest, 2 auto (the daemon generates
 * FullyQualifiedDomainName, OSName, ... by index), 3 auto-external,
 * 4 auto-internal.  Whatever the guest reports through GET and ENUMERATE is
 * published as status "kvp.<pool>.<key>".
 *
 * Control commands:
 *   kvp-set POOL KEY [VALUE...]   kvp-get POOL KEY   kvp-delete POOL KEY
 *   kvp-list POOL                 kvp-status
 * Parameters: timeout_ms (35000), control_timeout_ms (10000), enumerate
 * (pools enumerated after negotiation, default "2"; "none"), poll_ms
 * (re-enumerate period, 0 = off), queue_max (256), publish_max (distinct
 * status keys published per partition, 64), instance_id, and
 * pool0.<KEY>=<VALUE> to preset external pool keys.
 *
 * Message layout (body after the IC headers, 7430 bytes, always sent full):
 *   +0 operation u8, +1 pool u8, +2 pad u16, then
 *   GET/SET:   record at +4
 *   DELETE:    key size u32 at +4, key[512] at +8
 *   ENUMERATE: index u32 at +4, record at +8
 *   record = {value type u32, key size u32, value size u32, key[512],
 *             value[2048]} with UTF-16LE strings, sizes in bytes incl. NUL.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "vsp/ic/ic.h"
#include "vmbusd/hv_guids.h"

#define KVP_INSTANCE "d34b2567-b9b6-42b9-8778-0a4ec0b95504"

#define KVP_OP_GET       0
#define KVP_OP_SET       1
#define KVP_OP_DELETE    2
#define KVP_OP_ENUMERATE 3

#define KVP_POOLS        5
#define KVP_KEY_BYTES    512u
#define KVP_VALUE_BYTES  2048u
#define KVP_MSG_BYTES    7430u /* the largest union member is the IP info record */
#define KVP_REC_BYTES    (12u + KVP_KEY_BYTES + KVP_VALUE_BYTES)

#define KVP_REG_SZ  1u
#define KVP_REG_U32 4u
#define KVP_REG_U64 8u

/* UTF-8 buffers big enough for any UTF-16 string of the record sizes. */
#define KVP_KEY_UTF8   (KVP_KEY_BYTES / 2 * 3 + 1)
#define KVP_VALUE_UTF8 (KVP_VALUE_BYTES / 2 * 3 + 1)
/* The guest converts host strings to UTF-8 into buffers of these sizes. */
#define KVP_GUEST_KEY_UTF8_MAX   (KVP_KEY_BYTES - 1)
#define KVP_GUEST_VALUE_UTF8_MAX (KVP_VALUE_BYTES - 1)

#define KVP_ENUM_MAX_INDEX 4096u
#define KVP_TICK_MS        1000u
#define KVP_MAX_HOST_KEYS  1024u

struct kvp_rec {
    uint32_t value_type;
    uint32_t key_size;
    uint32_t value_size;
    uint8_t key[KVP_KEY_BYTES];
    uint8_t value[KVP_VALUE_BYTES];
} HV_PACKED;
_Static_assert(sizeof(struct kvp_rec) == KVP_REC_BYTES, "kvp record is 2572 bytes");
_Static_assert(IC_HDRS_SIZE + KVP_MSG_BYTES <= IC_MAX_PAYLOAD_KVP, "kvp message fits the ring");

static const struct ic_version kvp_msgv[] = {{4, 0}, {3, 0}, {1, 0}};

struct kvp_kv {
    char *key;
    char *value;
};

struct kvp_conf {
    unsigned timeout_ms;
    unsigned control_timeout_ms;
    unsigned poll_ms;
    unsigned queue_max;
    unsigned publish_max;
    bool enum_pool[KVP_POOLS];
    const char *instance;
    struct kvp_kv *preset;
    unsigned n_preset;
};

/* A control command waiting for a transaction (or an enumeration). */
struct kvp_job {
    int refs;         /* under ic.lock */
    bool done;
    int result;       /* 0 or -errno */
    uint32_t status;  /* guest status of the last answer */
    char *text;       /* collected output */
    size_t len, cap;
    unsigned items;
};

struct kvp_req {
    STAILQ_ENTRY(kvp_req) link;
    uint8_t op, pool;
    uint32_t index;
    char *key, *value;
    struct kvp_job *job; /* may be NULL */
};

struct kvp_part {
    struct ic_chan ic; /* first */
    const struct kvp_conf *conf;
    STAILQ_HEAD(, kvp_req) queue; /* requests not sent yet, in order */
    unsigned queued;
    struct kvp_req *cur;
    uint64_t cur_tid;
    uint64_t deadline;
    uint64_t last_poll;
    /* Host copy of the external pool; value NULL = deleted while the guest
     * was not listening (the DELETE goes out at the next negotiation). */
    struct kvp_kv *pool0;
    unsigned n_pool0;
    uint64_t done_ok, done_err;
    /* Status keys published so far: a guest must not fill vmbusd's table. */
    char **published;
    unsigned n_published;
    bool publish_full_logged;
    uint8_t msg[IC_HDRS_SIZE + KVP_MSG_BYTES];
};

/* ---- jobs and requests ------------------------------------------------ */

static void kvp_job_put(struct kvp_job *j)
{
    if (j && --j->refs == 0) {
        free(j->text);
        free(j);
    }
}

static void kvp_job_append(struct kvp_job *j, const char *a, const char *b)
{
    size_t need = strlen(a) + strlen(b) + 3;

    if (j->len + need > j->cap) {
        size_t cap = j->cap ? j->cap * 2 : 256;
        char *t;
        while (cap < j->len + need)
            cap *= 2;
        t = realloc(j->text, cap);
        if (!t)
            return;
        j->text = t;
        j->cap = cap;
    }
    j->len += (size_t)sprintf(j->text + j->len, "%s=%s\n", a, b);
}

static void kvp_job_finish(struct kvp_job *j, int result, uint32_t status)
{
    if (!j)
        return;
    j->result = result;
    j->status = status;
    j->done = true;
    kvp_job_put(j);
}

static void kvp_req_free(struct kvp_req *r)
{
    free(r->key);
    free(r->value);
    free(r);
}

static struct kvp_req *kvp_req_new(uint8_t op, uint8_t pool, const char *key, const char *value,
                                   uint32_t index, struct kvp_job *job)
{
    struct kvp_req *r = calloc(1, sizeof(*r));

    if (!r)
        return NULL;
    r->op = op;
    r->pool = pool;
    r->index = index;
    r->key = key ? strdup(key) : NULL;
    r->value = value ? strdup(value) : NULL;
    if ((key && !r->key) || (value && !r->value)) {
        kvp_req_free(r);
        return NULL;
    }
    r->job = job;
    if (job)
        job->refs++;
    return r;
}

static void kvp_enqueue(struct kvp_part *k, struct kvp_req *r, bool at_head)
{
    if (at_head)
        STAILQ_INSERT_HEAD(&k->queue, r, link);
    else
        STAILQ_INSERT_TAIL(&k->queue, r, link);
    k->queued++;
}

static struct kvp_req *kvp_dequeue(struct kvp_part *k)
{
    struct kvp_req *r = STAILQ_FIRST(&k->queue);

    if (r) {
        STAILQ_REMOVE_HEAD(&k->queue, link);
        k->queued--;
    }
    return r;
}

/* ---- strings ---------------------------------------------------------- */

/* Status keys and values go to vmbusctl: no control characters. */
static void kvp_sanitize(char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            *s = '?';
}

static void kvp_publish(struct kvp_part *k, unsigned pool, const char *key, const char *value)
{
    char skey[KVP_KEY_UTF8 + 8];
    char *sval;
    bool known = false;

    snprintf(skey, sizeof(skey), "%u.%s", pool, key);
    kvp_sanitize(skey);
    for (unsigned i = 0; i < k->n_published && !known; i++)
        known = strcmp(k->published[i], skey) == 0;
    if (!known) {
        char **n;
        if (k->n_published >= k->conf->publish_max) {
            if (!k->publish_full_logged)
                vsp_log(k->ic.ch, VSP_LOG_WARN, "kvp: %u keys published; not publishing more "
                        "(publish_max)", k->n_published);
            k->publish_full_logged = true;
            return;
        }
        n = realloc(k->published, (k->n_published + 1) * sizeof(*n));
        if (!n)
            return;
        k->published = n;
        if (!(n[k->n_published] = strdup(skey)))
            return;
        k->n_published++;
    }
    sval = strdup(value);
    if (!sval)
        return;
    kvp_sanitize(sval);
    ic_status(&k->ic, skey, sval);
    free(sval);
}

/* Validate an operator-supplied key or value and encode it: bytes written
 * (including the NUL unit) or -errno. */
static int kvp_encode(const char *s, uint8_t *out, size_t cap, size_t utf8_max)
{
    if (strlen(s) > utf8_max)
        return -ENOSPC;
    return ic_utf8_to_utf16le(s, strlen(s), out, cap);
}

/* Decode a record the guest sent back.  Sizes are untrusted. */
static int kvp_decode(const uint8_t *p, size_t avail, bool want_key, char *key, char *value,
                      const char **why)
{
    struct kvp_rec hdr;
    int r;

    if (avail < sizeof(struct kvp_rec)) {
        *why = "record truncated";
        return -EBADMSG;
    }
    memcpy(&hdr, p, 12);
    if (want_key) {
        if (hdr.key_size > KVP_KEY_BYTES || hdr.key_size < 2 || (hdr.key_size & 1)) {
            *why = "bad key size";
            return -EBADMSG;
        }
        r = ic_utf16le_to_utf8(p + 12, hdr.key_size, key, KVP_KEY_UTF8);
        if (r < 0) {
            *why = "key is not terminated valid UTF-16";
            return -EBADMSG;
        }
        if (r == 0) {
            *why = "empty key";
            return -EBADMSG;
        }
    }
    if (hdr.value_size > KVP_VALUE_BYTES) {
        *why = "bad value size";
        return -EBADMSG;
    }
    const uint8_t *v = p + 12 + KVP_KEY_BYTES;
    switch (hdr.value_type) {
    case KVP_REG_SZ:
        if (hdr.value_size & 1) {
            *why = "odd string value size";
            return -EBADMSG;
        }
        if (hdr.value_size == 0) {
            value[0] = '\0';
            break;
        }
        if (ic_utf16le_to_utf8(v, hdr.value_size, value, KVP_VALUE_UTF8) < 0) {
            *why = "value is not terminated valid UTF-16";
            return -EBADMSG;
        }
        break;
    case KVP_REG_U32: {
        uint32_t x;
        if (hdr.value_size != 4) {
            *why = "bad u32 value size";
            return -EBADMSG;
        }
        memcpy(&x, v, 4);
        snprintf(value, KVP_VALUE_UTF8, "%" PRIu32, x);
        break;
    }
    case KVP_REG_U64: {
        uint64_t x;
        if (hdr.value_size != 8) {
            *why = "bad u64 value size";
            return -EBADMSG;
        }
        memcpy(&x, v, 8);
        snprintf(value, KVP_VALUE_UTF8, "%" PRIu64, x);
        break;
    }
    default:
        *why = "unknown value type";
        return -EBADMSG;
    }
    return 0;
}

/* ---- the transaction engine ------------------------------------------- */

static void kvp_kick(struct kvp_part *k);

static void kvp_finish(struct kvp_part *k, int result, uint32_t status)
{
    struct kvp_req *r = k->cur;

    k->cur = NULL;
    if (!r)
        return;
    if (result == 0)
        k->done_ok++;
    else
        k->done_err++;
    kvp_job_finish(r->job, result, status);
    kvp_req_free(r);
}

/* Build the message for r into k->msg: length or -errno (bad argument). */
static int kvp_build(struct kvp_part *k, const struct kvp_req *r)
{
    uint8_t *body = k->msg + IC_HDRS_SIZE;
    struct kvp_rec rec;
    size_t len;
    int n;

    len = ic_prepare(&k->ic, k->msg, sizeof(k->msg), KVP_MSG_BYTES);
    if (!len)
        return -EMSGSIZE;
    body[0] = r->op;
    body[1] = r->pool;
    memset(&rec, 0, sizeof(rec));
    switch (r->op) {
    case KVP_OP_SET:
    case KVP_OP_GET:
        rec.value_type = KVP_REG_SZ;
        n = kvp_encode(r->key, rec.key, sizeof(rec.key), KVP_GUEST_KEY_UTF8_MAX);
        if (n < 0)
            return n;
        rec.key_size = (uint32_t)n;
        if (r->op == KVP_OP_SET) {
            n = kvp_encode(r->value ? r->value : "", rec.value, sizeof(rec.value),
                           KVP_GUEST_VALUE_UTF8_MAX);
            if (n < 0)
                return n;
            rec.value_size = (uint32_t)n;
        }
        memcpy(body + 4, &rec, sizeof(rec));
        break;
    case KVP_OP_DELETE: {
        uint32_t ks;
        n = kvp_encode(r->key, rec.key, sizeof(rec.key), KVP_GUEST_KEY_UTF8_MAX);
        if (n < 0)
            return n;
        ks = (uint32_t)n;
        memcpy(body + 4, &ks, 4);
        memcpy(body + 8, rec.key, sizeof(rec.key));
        break;
    }
    case KVP_OP_ENUMERATE:
        memcpy(body + 4, &r->index, 4);
        break;
    default:
        return -EINVAL;
    }
    return (int)len;
}

/* Send queued requests until one is in flight (lock held). */
static void kvp_kick(struct kvp_part *k)
{
    while (!k->cur && !STAILQ_EMPTY(&k->queue) && k->ic.state == IC_STATE_READY) {
        struct kvp_req *r = kvp_dequeue(k);
        int len = kvp_build(k, r);
        int s;

        if (len < 0) {
            kvp_job_finish(r->job, len, 0);
            kvp_req_free(r);
            continue;
        }
        s = ic_send(&k->ic, k->msg, (size_t)len, IC_SEND_PARK, &k->cur_tid);
        if (s == -EAGAIN) {
            kvp_enqueue(k, r, true); /* retried from writable or the tick */
            return;
        }
        if (s < 0) {
            vsp_log(k->ic.ch, VSP_LOG_WARN, "kvp: send failed: %d", s);
            kvp_job_finish(r->job, s, 0);
            kvp_req_free(r);
            continue;
        }
        k->cur = r;
        k->deadline = ic_clock_ms() + k->conf->timeout_ms;
    }
}

static void kvp_answer(struct kvp_part *k, const struct ic_msg *m)
{
    struct kvp_req *r = k->cur;
    uint32_t status = m->hdr.status;
    const char *why = "";
    char *key = NULL, *value = NULL;

    if (m->body_len < 4 || m->body[0] != r->op || m->body[1] != r->pool) {
        ic_bad(&k->ic, "kvp answer does not echo operation %u pool %u", r->op, r->pool);
        kvp_finish(k, -EBADMSG, status);
        return;
    }
    if (status != IC_S_OK) {
        int res = status == IC_S_CONT ? (r->op == KVP_OP_ENUMERATE ? 0 : -ENOENT) : -EREMOTEIO;
        if (res == -EREMOTEIO)
            vsp_log(k->ic.ch, VSP_LOG_INFO, "kvp: op %u pool %u: guest status 0x%08x (%s)",
                    r->op, r->pool, status, ic_status_name(status));
        kvp_finish(k, res, status);
        return;
    }
    switch (r->op) {
    case KVP_OP_SET:
    case KVP_OP_DELETE:
        if (r->op == KVP_OP_DELETE)
            kvp_publish(k, r->pool, r->key, "");
        kvp_finish(k, 0, status);
        return;
    case KVP_OP_GET:
        value = malloc(KVP_VALUE_UTF8);
        if (!value) {
            kvp_finish(k, -ENOMEM, status);
            return;
        }
        if (kvp_decode(m->body + 4, m->body_len - 4, false, NULL, value, &why) < 0) {
            ic_bad(&k->ic, "kvp get answer: %s", why);
            kvp_finish(k, -EBADMSG, status);
        } else {
            kvp_publish(k, r->pool, r->key, value);
            if (r->job && !r->job->text) {
                kvp_sanitize(value);
                r->job->text = strdup(value);
            }
            kvp_finish(k, 0, status);
        }
        free(value);
        return;
    case KVP_OP_ENUMERATE: {
        uint32_t index;
        key = malloc(KVP_KEY_UTF8);
        value = malloc(KVP_VALUE_UTF8);
        if (!key || !value) {
            kvp_finish(k, -ENOMEM, status);
            break;
        }
        if (m->body_len < 8 + sizeof(struct kvp_rec)) {
            ic_bad(&k->ic, "kvp enumerate answer of %u bytes", m->body_len);
            kvp_finish(k, -EBADMSG, status);
            break;
        }
        memcpy(&index, m->body + 4, 4);
        if (index != r->index) {
            ic_bad(&k->ic, "kvp enumerate answer for index %u, asked %u", index, r->index);
            kvp_finish(k, -EBADMSG, status);
            break;
        }
        if (kvp_decode(m->body + 8, m->body_len - 8, true, key, value, &why) < 0) {
            ic_bad(&k->ic, "kvp enumerate answer: %s", why);
            kvp_finish(k, -EBADMSG, status);
            break;
        }
        kvp_publish(k, r->pool, key, value);
        if (r->job) {
            kvp_sanitize(key);
            kvp_sanitize(value);
            kvp_job_append(r->job, key, value);
            r->job->items++;
        }
        /* Continue with the next index before anything else queued. */
        if (r->index + 1 < KVP_ENUM_MAX_INDEX) {
            struct kvp_req *next = kvp_req_new(KVP_OP_ENUMERATE, r->pool, NULL, NULL,
                                               r->index + 1, NULL);
            if (next) {
                next->job = r->job; /* the job goes on with the next index */
                r->job = NULL;
                kvp_enqueue(k, next, true);
            }
            kvp_finish(k, next ? 0 : -ENOMEM, status);
        } else {
            kvp_finish(k, 0, status);
        }
        break;
    }
    default:
        kvp_finish(k, -EINVAL, status);
    }
    free(key);
    free(value);
}

static void kvp_message(struct ic_chan *ic, const struct ic_msg *m, uint64_t tid)
{
    struct kvp_part *k = (struct kvp_part *)ic;

    if (!k->cur || tid != k->cur_tid) {
        ic_bad(ic, "kvp answer for trans_id %" PRIu64 " (outstanding: %" PRIu64 ")", tid,
               k->cur ? k->cur_tid : 0);
        return;
    }
    /* The next request goes out from kvp_batch_done: until the batch is
     * drained the guest's ring still holds this ~7.5 KiB answer, and Linux
     * drops a KVP answer it cannot write. */
    kvp_answer(k, m);
}

static void kvp_enumerate_pools(struct kvp_part *k)
{
    for (unsigned p = 0; p < KVP_POOLS; p++) {
        struct kvp_req *r;
        if (!k->conf->enum_pool[p] || k->queued >= k->conf->queue_max)
            continue;
        r = kvp_req_new(KVP_OP_ENUMERATE, (uint8_t)p, NULL, NULL, 0, NULL);
        if (r)
            kvp_enqueue(k, r, false);
    }
}

static void kvp_tick(void *arg)
{
    struct kvp_part *k = arg;
    uint64_t now = ic_clock_ms();

    pthread_mutex_lock(&k->ic.lock);
    if (k->ic.state == IC_STATE_READY) {
        if (k->cur && now >= k->deadline) {
            vsp_log(k->ic.ch, VSP_LOG_WARN, "kvp: no answer to op %u pool %u within %u ms",
                    k->cur->op, k->cur->pool, k->conf->timeout_ms);
            kvp_finish(k, -ETIMEDOUT, 0);
        }
        if (k->conf->poll_ms && !k->cur && STAILQ_EMPTY(&k->queue) && now - k->last_poll >= k->conf->poll_ms) {
            k->last_poll = now;
            kvp_enumerate_pools(k);
        }
        kvp_kick(k);
        pthread_cond_broadcast(&k->ic.cond);
    }
    pthread_mutex_unlock(&k->ic.lock);
}

static void kvp_ready(struct ic_chan *ic)
{
    struct kvp_part *k = (struct kvp_part *)ic;

    /* Re-push the external pool (the guest may have rebooted or lost its
     * pool file) and deliver deletions made while it was not listening. */
    for (unsigned i = 0; i < k->n_pool0;) {
        struct kvp_kv *e = &k->pool0[i];
        struct kvp_req *r = kvp_req_new(e->value ? KVP_OP_SET : KVP_OP_DELETE, 0, e->key,
                                        e->value, 0, NULL);
        if (r)
            kvp_enqueue(k, r, false);
        if (!e->value) {
            free(e->key);
            *e = k->pool0[--k->n_pool0];
        } else {
            i++;
        }
    }
    kvp_enumerate_pools(k);
    k->last_poll = ic_clock_ms();
    ic_timer_start(ic, 0, KVP_TICK_MS, KVP_TICK_MS, kvp_tick);
    /* kvp_batch_done sends the first request. */
}

static void kvp_reset(struct ic_chan *ic)
{
    struct kvp_part *k = (struct kvp_part *)ic;
    struct kvp_req *r;

    kvp_finish(k, -EPIPE, 0);
    while ((r = kvp_dequeue(k))) {
        kvp_job_finish(r->job, -EPIPE, 0);
        kvp_req_free(r);
    }
}

static void kvp_writable(struct ic_chan *ic)
{
    kvp_kick((struct kvp_part *)ic);
}

static void kvp_batch_done(struct ic_chan *ic)
{
    kvp_kick((struct kvp_part *)ic);
}

static void kvp_destroy(struct ic_chan *ic)
{
    struct kvp_part *k = (struct kvp_part *)ic;

    kvp_reset(ic);
    for (unsigned i = 0; i < k->n_pool0; i++) {
        free(k->pool0[i].key);
        free(k->pool0[i].value);
    }
    free(k->pool0);
    for (unsigned i = 0; i < k->n_published; i++)
        free(k->published[i]);
    free(k->published);
    free(k);
}

static const struct ic_service kvp_service = {
    .name = "kvp",
    .msg_type = IC_MSG_KVP,
    .class_id = HV_CLASS_KVP,
    .instance_id = KVP_INSTANCE,
    .max_payload = IC_MAX_PAYLOAD_KVP,
    .ready = kvp_ready,
    .message = kvp_message,
    .reset = kvp_reset,
    .writable = kvp_writable,
    .batch_done = kvp_batch_done,
    .destroy = kvp_destroy,
};

/* ---- host copy of pool 0 ---------------------------------------------- */

static int kvp_pool0_set(struct kvp_part *k, const char *key, const char *value)
{
    struct kvp_kv *n;
    char *v = NULL;

    for (unsigned i = 0; i < k->n_pool0; i++) {
        if (strcmp(k->pool0[i].key, key) == 0) {
            if (value && !(v = strdup(value)))
                return -ENOMEM;
            free(k->pool0[i].value);
            k->pool0[i].value = value ? v : NULL;
            return 0;
        }
    }
    if (k->n_pool0 >= KVP_MAX_HOST_KEYS)
        return -ENOSPC;
    n = realloc(k->pool0, (k->n_pool0 + 1) * sizeof(*n));
    if (!n)
        return -ENOMEM;
    k->pool0 = n;
    n[k->n_pool0].key = strdup(key);
    n[k->n_pool0].value = value ? strdup(value) : NULL;
    if (!n[k->n_pool0].key || (value && !n[k->n_pool0].value)) {
        free(n[k->n_pool0].key);
        free(n[k->n_pool0].value);
        return -ENOMEM;
    }
    k->n_pool0++;
    return 0;
}

/* Forget a key; keep a tombstone when the guest cannot be told now. */
static int kvp_pool0_delete(struct kvp_part *k, const char *key, bool tell_later)
{
    for (unsigned i = 0; i < k->n_pool0; i++) {
        if (strcmp(k->pool0[i].key, key) == 0) {
            free(k->pool0[i].value);
            k->pool0[i].value = NULL;
            if (!tell_later) {
                free(k->pool0[i].key);
                k->pool0[i] = k->pool0[--k->n_pool0];
            }
            return 0;
        }
    }
    return tell_later ? kvp_pool0_set(k, key, NULL) : 0;
}

/* ---- control ---------------------------------------------------------- */

static int kvp_check_string(const char *s, size_t cap, size_t utf8_max, const char *what,
                            char *reply, size_t reply_len)
{
    uint8_t tmp[KVP_VALUE_BYTES];
    int n = kvp_encode(s, tmp, cap, utf8_max);

    if (n < 0) {
        snprintf(reply, reply_len, "kvp: %s %s", what,
                 n == -ENOSPC ? "too long" : "is not valid UTF-8");
        return -EINVAL;
    }
    return 0;
}

/* Queue one request and wait for it (lock held).  0 or -errno with reply. */
static int kvp_run(struct kvp_part *k, struct kvp_req *r, const char *what, char *reply,
                   size_t reply_len)
{
    struct kvp_job *j = calloc(1, sizeof(*j));
    uint8_t op = r->op; /* r is freed once answered */
    int res;

    if (!j) {
        kvp_req_free(r);
        return -ENOMEM;
    }
    j->refs = 2; /* ours and the request's */
    r->job = j;
    kvp_enqueue(k, r, false);
    kvp_kick(k);
    if (!ic_wait(&k->ic, &j->done, k->conf->control_timeout_ms)) {
        snprintf(reply, reply_len, "kvp: %s still pending after %u ms; results will be "
                 "published as status kvp.*", what, k->conf->control_timeout_ms);
        kvp_job_put(j);
        return -ETIMEDOUT;
    }
    res = j->result;
    if (res == 0) {
        if (op == KVP_OP_ENUMERATE)
            snprintf(reply, reply_len, "%s", j->text ? j->text : "");
        else if (op == KVP_OP_GET)
            snprintf(reply, reply_len, "%s", j->text ? j->text : "");
        else
            snprintf(reply, reply_len, "kvp: %s done", what);
        if (j->text && strlen(j->text) >= reply_len && reply_len > 4)
            strcpy(reply + reply_len - 4, "...");
    } else if (res == -ENOENT) {
        snprintf(reply, reply_len, "kvp: %s: not found (guest status 0x%08x)", what, j->status);
    } else if (res == -EREMOTEIO) {
        snprintf(reply, reply_len, "kvp: %s: guest status 0x%08x (%s)", what, j->status,
                 ic_status_name(j->status));
    } else if (res == -EBADMSG) {
        snprintf(reply, reply_len, "kvp: %s: malformed answer from the guest", what);
    } else {
        snprintf(reply, reply_len, "kvp: %s failed: %s", what, strerror(-res));
    }
    kvp_job_put(j);
    return res;
}

static int kvp_do(struct kvp_part *k, const char *cmd, char *args, char *reply, size_t reply_len)
{
    char *save = NULL, *pool_s, *key = NULL, *value = NULL;
    unsigned pool;
    uint8_t op;
    struct kvp_req *r;
    int res;

    if (strcmp(cmd, "kvp-status") == 0) {
        snprintf(reply, reply_len, "channel %s, version %u.%u, %u queued, %s, %" PRIu64
                 " done, %" PRIu64 " failed, %u host keys in pool 0",
                 ic_state_name(k->ic.state), k->ic.ver.major, k->ic.ver.minor, k->queued,
                 k->cur ? "one in flight" : "idle", k->done_ok, k->done_err, k->n_pool0);
        return 0;
    }
    if (strcmp(cmd, "kvp-set") == 0)
        op = KVP_OP_SET;
    else if (strcmp(cmd, "kvp-get") == 0)
        op = KVP_OP_GET;
    else if (strcmp(cmd, "kvp-delete") == 0)
        op = KVP_OP_DELETE;
    else
        op = KVP_OP_ENUMERATE;

    pool_s = strtok_r(args, " \t", &save);
    if (op != KVP_OP_ENUMERATE)
        key = strtok_r(NULL, " \t", &save);
    if (op == KVP_OP_SET) {
        value = strtok_r(NULL, "", &save);
        while (value && (*value == ' ' || *value == '\t'))
            value++;
        if (!value)
            value = "";
    } else if (strtok_r(NULL, " \t", &save)) {
        pool_s = NULL; /* trailing junk */
    }
    if (!pool_s || ic_param_uint(pool_s, 0, KVP_POOLS - 1, &pool) ||
        (op != KVP_OP_ENUMERATE && !key)) {
        snprintf(reply, reply_len, "usage: kvp-set POOL KEY VALUE | kvp-get POOL KEY | "
                 "kvp-delete POOL KEY | kvp-list POOL | kvp-status (POOL 0-4)");
        return -EINVAL;
    }
    if (key && kvp_check_string(key, KVP_KEY_BYTES, KVP_GUEST_KEY_UTF8_MAX, "key", reply,
                                reply_len))
        return -EINVAL;
    if (value && kvp_check_string(value, KVP_VALUE_BYTES, KVP_GUEST_VALUE_UTF8_MAX, "value",
                                  reply, reply_len))
        return -EINVAL;

    if (pool == 0 && op == KVP_OP_SET) {
        res = kvp_pool0_set(k, key, value);
        if (res) {
            snprintf(reply, reply_len, "kvp: cannot store key: %s", strerror(-res));
            return res;
        }
    } else if (pool == 0 && op == KVP_OP_DELETE) {
        res = kvp_pool0_delete(k, key, k->ic.state != IC_STATE_READY);
        if (res) {
            snprintf(reply, reply_len, "kvp: cannot store deletion: %s", strerror(-res));
            return res;
        }
    }
    if (k->ic.state != IC_STATE_READY) {
        if (pool == 0 && (op == KVP_OP_SET || op == KVP_OP_DELETE)) {
            snprintf(reply, reply_len, "kvp: stored for pool 0; the guest gets it once its KVP "
                     "service is ready (channel %s)", ic_state_name(k->ic.state));
            return 0;
        }
        snprintf(reply, reply_len, "kvp: guest KVP service not ready (channel %s; "
                 "is hv_kvp_daemon running?)", ic_state_name(k->ic.state));
        return -ENOTCONN;
    }
    if (k->queued >= k->conf->queue_max) {
        snprintf(reply, reply_len, "kvp: queue full");
        return -EBUSY;
    }
    r = kvp_req_new(op, (uint8_t)pool, key, value, 0, NULL);
    if (!r)
        return -ENOMEM;
    return kvp_run(k, r, cmd, reply, reply_len);
}

static int kvp_control(void *state, struct vsp_partition *p, void *part_state, const char *cmd,
                       const char *args, char *reply, size_t reply_len)
{
    struct kvp_part *k = part_state;
    char *copy;
    int r;

    if (strcmp(cmd, "kvp-set") && strcmp(cmd, "kvp-get") && strcmp(cmd, "kvp-delete") &&
        strcmp(cmd, "kvp-list") && strcmp(cmd, "kvp-status")) {
        snprintf(reply, reply_len, "kvp: unknown command '%s'", cmd);
        return -EOPNOTSUPP;
    }
    copy = strdup(args ? args : "");
    if (!copy)
        return -ENOMEM;
    ic_chan_get(&k->ic);
    pthread_mutex_lock(&k->ic.lock);
    r = kvp_do(k, cmd, copy, reply, reply_len);
    pthread_mutex_unlock(&k->ic.lock);
    ic_chan_put(&k->ic);
    free(copy);
    return r;
}

/* ---- plugin ----------------------------------------------------------- */

static void kvp_fini(void *state)
{
    struct kvp_conf *c = state;

    if (!c)
        return;
    for (unsigned i = 0; i < c->n_preset; i++) {
        free(c->preset[i].key);
        free(c->preset[i].value);
    }
    free(c->preset);
    free((char *)c->instance);
    free(c);
}

static int kvp_parse_pools(const char *s, bool *pools)
{
    memset(pools, 0, KVP_POOLS * sizeof(*pools));
    if (strcmp(s, "none") == 0 || !*s)
        return 0;
    while (*s) {
        if (*s < '0' || *s >= '0' + KVP_POOLS)
            return -EINVAL;
        pools[*s - '0'] = true;
        s++;
        if (*s == ',')
            s++;
        else if (*s)
            return -EINVAL;
    }
    return 0;
}

static int kvp_init(const char *const *keys, const char *const *values, void **state)
{
    struct kvp_conf *c = calloc(1, sizeof(*c));
    const char *enumerate = "2", *dummy = NULL;
    const struct ic_param table[] = {
        {"timeout_ms", 100, 600000, &c->timeout_ms, NULL},
        {"control_timeout_ms", 1, 600000, &c->control_timeout_ms, NULL},
        {"poll_ms", 0, 86400000, &c->poll_ms, NULL},
        {"queue_max", 1, 65536, &c->queue_max, NULL},
        {"publish_max", 0, 1024, &c->publish_max, NULL},
        {"enumerate", 0, 0, NULL, &enumerate},
        {"instance_id", 0, 0, NULL, &c->instance},
        {"pool0.", 0, 0, NULL, &dummy},
    };
    int r;

    if (!c)
        return -ENOMEM;
    c->timeout_ms = 35000;
    c->control_timeout_ms = 10000;
    c->queue_max = 256;
    c->publish_max = 64;
    r = ic_parse_params("kvp", keys, values, table, 8);
    if (!r && kvp_parse_pools(enumerate, c->enum_pool))
        r = -EINVAL;
    if (!r)
        r = ic_instance_param(&c->instance);
    if (r)
        c->instance = NULL;
    for (unsigned i = 0; !r && keys && keys[i]; i++) {
        const char *key = keys[i] + 6, *val = values[i];
        uint8_t tmp[KVP_VALUE_BYTES];
        struct kvp_kv *n;

        if (strncmp(keys[i], "pool0.", 6) != 0)
            continue;
        if (kvp_encode(key, tmp, KVP_KEY_BYTES, KVP_GUEST_KEY_UTF8_MAX) < 0 ||
            kvp_encode(val, tmp, KVP_VALUE_BYTES, KVP_GUEST_VALUE_UTF8_MAX) < 0) {
            fprintf(stderr, "vsp kvp: bad preset %s\n", keys[i]);
            r = -EINVAL;
            break;
        }
        n = realloc(c->preset, (c->n_preset + 1) * sizeof(*n));
        if (!n) {
            r = -ENOMEM;
            break;
        }
        c->preset = n;
        n[c->n_preset].key = strdup(key);
        n[c->n_preset].value = strdup(val);
        c->n_preset++;
        if (!n[c->n_preset - 1].key || !n[c->n_preset - 1].value)
            r = -ENOMEM;
    }
    if (r) {
        kvp_fini(c);
        return r;
    }
    *state = c;
    return 0;
}

static int kvp_attach(void *state, struct vsp_partition *p, void **part_state)
{
    const struct kvp_conf *c = state;
    struct kvp_part *k = calloc(1, sizeof(*k));
    int r;

    if (!k)
        return -ENOMEM;
    k->conf = c;
    STAILQ_INIT(&k->queue);
    for (unsigned i = 0; i < c->n_preset; i++) {
        if (kvp_pool0_set(k, c->preset[i].key, c->preset[i].value)) {
            r = -ENOMEM;
            goto fail;
        }
    }
    r = ic_chan_setup(&k->ic, &kvp_service, p, kvp_msgv, 3, c->instance);
    if (r)
        goto fail;
    *part_state = k;
    return 0;

fail:
    for (unsigned i = 0; i < k->n_pool0; i++) {
        free(k->pool0[i].key);
        free(k->pool0[i].value);
    }
    free(k->pool0);
    free(k);
    return r;
}

const struct vsp_plugin kvp_plugin = {
    .api_version = VSP_API_VERSION,
    .name = "kvp",
    .description = "Hyper-V key-value pair exchange integration service",
    .init = kvp_init,
    .fini = kvp_fini,
    .attach = kvp_attach,
    .detach = ic_plugin_detach,
    .control = kvp_control,
};
