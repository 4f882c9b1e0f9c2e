/* SPDX-License-Identifier: MIT */
/* Fake vsp_* host API for the IC unit tests; see fake_vsp.h. */
#include "common/guid.h"
#include "fake_vsp.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define FAKE_MAX_CHANNELS 8
#define FAKE_MAX_STATUS   512
#define FAKE_MAX_TIMERS   64
#define FAKE_MAX_WORK     64
#define FAKE_MAX_RX       64
#define FAKE_MAX_SENT     512

struct fake_rx {
    uint16_t type;
    uint64_t trans_id;
    uint8_t *data;
    size_t len;
};

struct vsp_channel {
    struct vsp_partition *p;
    struct vsp_offer offer;
    uint32_t relid;
    bool open;
    struct fake_rx rx[FAKE_MAX_RX];
    unsigned rx_head, rx_n;
    uint8_t *rx_cur;
    int recv_error;
    struct fake_sent sent[FAKE_MAX_SENT];
    unsigned n_sent;
    int fail_err;
    unsigned fail_times;
    bool uncommitted;         /* vsp_recv returned a packet, not yet 0 */
    unsigned sends_uncommitted;
};

struct vsp_partition {
    char name[32];
    struct vsp_channel *ch[FAKE_MAX_CHANNELS];
    unsigned n_ch;
    char *st_key[FAKE_MAX_STATUS];
    char *st_val[FAKE_MAX_STATUS];
    unsigned n_st;
};

struct vsp_timer {
    struct vsp_channel *ch;
    vsp_work_fn fn;
    void *arg;
    unsigned period;
    bool active;
};

struct fake_work {
    vsp_work_fn fn;
    void *arg;
};

static pthread_mutex_t fake_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t fake_cond = PTHREAD_COND_INITIALIZER;
static struct vsp_timer fake_timers[FAKE_MAX_TIMERS];
static struct fake_work fake_work_q[FAKE_MAX_WORK];
static unsigned fake_n_work;
static unsigned fake_logs[4];
static unsigned fake_guest_errors;
static char fake_log_buf[16384];
static uint32_t fake_next_relid = 1;

bool fake_ref_time_available;
uint64_t fake_ref_time = 123456789;
uint64_t fake_now_ms = 1000000;

uint64_t fake_clock_ms(void)
{
    return __atomic_load_n(&fake_now_ms, __ATOMIC_SEQ_CST);
}

void fake_advance_ms(uint64_t ms)
{
    __atomic_add_fetch(&fake_now_ms, ms, __ATOMIC_SEQ_CST);
}

/* ---- partitions -------------------------------------------------------- */

struct vsp_partition *fake_partition_new(const char *name)
{
    struct vsp_partition *p = calloc(1, sizeof(*p));
    snprintf(p->name, sizeof(p->name), "%s", name);
    return p;
}

void fake_partition_free(struct vsp_partition *p)
{
    pthread_mutex_lock(&fake_lock);
    for (unsigned i = 0; i < p->n_ch; i++) {
        struct vsp_channel *ch = p->ch[i];
        for (unsigned k = 0; k < FAKE_MAX_TIMERS; k++)
            if (fake_timers[k].ch == ch)
                memset(&fake_timers[k], 0, sizeof(fake_timers[k]));
        for (unsigned k = 0; k < ch->n_sent; k++)
            free(ch->sent[k].data);
        for (unsigned k = 0; k < ch->rx_n; k++)
            free(ch->rx[(ch->rx_head + k) % FAKE_MAX_RX].data);
        free(ch->rx_cur);
        free(ch);
    }
    for (unsigned i = 0; i < p->n_st; i++) {
        free(p->st_key[i]);
        free(p->st_val[i]);
    }
    pthread_mutex_unlock(&fake_lock);
    free(p);
}

const char *vsp_partition_name(const struct vsp_partition *p)
{
    return p->name;
}

uint32_t vsp_partition_id(const struct vsp_partition *p)
{
    return 1;
}

void vsp_partition_set_status(struct vsp_partition *p, const char *key, const char *value)
{
    pthread_mutex_lock(&fake_lock);
    for (unsigned i = 0; i < p->n_st; i++) {
        if (strcmp(p->st_key[i], key) == 0) {
            free(p->st_val[i]);
            p->st_val[i] = strdup(value);
            pthread_mutex_unlock(&fake_lock);
            return;
        }
    }
    if (p->n_st < FAKE_MAX_STATUS) {
        p->st_key[p->n_st] = strdup(key);
        p->st_val[p->n_st] = strdup(value);
        p->n_st++;
    }
    pthread_mutex_unlock(&fake_lock);
}

const char *fake_status(struct vsp_partition *p, const char *key)
{
    for (unsigned i = 0; i < p->n_st; i++)
        if (strcmp(p->st_key[i], key) == 0)
            return p->st_val[i];
    return NULL;
}

unsigned fake_status_count(struct vsp_partition *p)
{
    return p->n_st;
}

int vsp_partition_reference_time(struct vsp_partition *p, uint64_t *ref)
{
    if (!fake_ref_time_available)
        return -ENOTSUP;
    *ref = fake_ref_time;
    return 0;
}

/* ---- channels --------------------------------------------------------- */

struct vsp_channel *vsp_channel_offer(struct vsp_partition *p, const struct vsp_offer *o)
{
    struct vsp_channel *ch;

    if (p->n_ch >= FAKE_MAX_CHANNELS)
        return NULL;
    ch = calloc(1, sizeof(*ch));
    ch->p = p;
    ch->offer = *o;
    ch->relid = fake_next_relid++;
    p->ch[p->n_ch++] = ch;
    return ch;
}

void vsp_channel_rescind(struct vsp_channel *ch)
{
}

void *vsp_channel_opaque(const struct vsp_channel *ch)
{
    return ch->offer.opaque;
}

struct vsp_partition *vsp_channel_partition(const struct vsp_channel *ch)
{
    return ch->p;
}

uint32_t vsp_channel_relid(const struct vsp_channel *ch)
{
    return ch->relid;
}

bool vsp_channel_is_open(const struct vsp_channel *ch)
{
    return ch->open;
}

unsigned fake_channel_count(struct vsp_partition *p)
{
    return p->n_ch;
}

struct vsp_channel *fake_channel(struct vsp_partition *p, unsigned idx)
{
    return idx < p->n_ch ? p->ch[idx] : NULL;
}

const struct vsp_offer *fake_channel_offer(struct vsp_channel *ch)
{
    return &ch->offer;
}

int fake_open(struct vsp_channel *ch)
{
    uint8_t ud[120] = {0};
    int r = ch->offer.ops->open(ch, ud, sizeof(ud));

    if (r == 0) {
        ch->open = true;
        fake_run_work();
    }
    return r;
}

void fake_close(struct vsp_channel *ch)
{
    ch->open = false;
    ch->offer.ops->close(ch);
}

void fake_set_open(struct vsp_channel *ch, bool open)
{
    ch->open = open;
}

void fake_inject(struct vsp_channel *ch, uint16_t type, uint64_t trans_id, const void *data,
                 size_t len)
{
    struct fake_rx *rx;

    pthread_mutex_lock(&fake_lock);
    if (ch->rx_n < FAKE_MAX_RX) {
        rx = &ch->rx[(ch->rx_head + ch->rx_n) % FAKE_MAX_RX];
        rx->type = type;
        rx->trans_id = trans_id;
        rx->data = malloc(len ? len : 1);
        memcpy(rx->data, data, len);
        rx->len = len;
        ch->rx_n++;
    }
    pthread_mutex_unlock(&fake_lock);
}

void fake_receive(struct vsp_channel *ch)
{
    ch->offer.ops->receive(ch);
}

void fake_set_recv_error(struct vsp_channel *ch, int err)
{
    ch->recv_error = err;
}

int vsp_recv(struct vsp_channel *ch, struct vsp_packet *pkt)
{
    struct fake_rx rx;

    pthread_mutex_lock(&fake_lock);
    free(ch->rx_cur);
    ch->rx_cur = NULL;
    if (ch->rx_n == 0) {
        int e = ch->recv_error;
        ch->recv_error = 0;
        ch->uncommitted = false; /* vmbusd publishes the read index here */
        pthread_mutex_unlock(&fake_lock);
        return e;
    }
    rx = ch->rx[ch->rx_head];
    ch->rx_head = (ch->rx_head + 1) % FAKE_MAX_RX;
    ch->rx_n--;
    ch->rx_cur = rx.data;
    ch->uncommitted = true;
    pthread_mutex_unlock(&fake_lock);
    memset(pkt, 0, sizeof(*pkt));
    pkt->type = rx.type;
    pkt->trans_id = rx.trans_id;
    pkt->data = rx.data;
    pkt->len = (uint32_t)rx.len;
    pkt->header = NULL;
    pkt->header_len = 16;
    return 1;
}

/* ---- sending ---------------------------------------------------------- */

int vsp_send_inband(struct vsp_channel *ch, const void *data, size_t len, uint64_t trans_id,
                    bool completion_requested)
{
    pthread_mutex_lock(&fake_lock);
    if (!ch->open) {
        pthread_mutex_unlock(&fake_lock);
        return -EPIPE;
    }
    if (ch->fail_times) {
        int e = ch->fail_err;
        ch->fail_times--;
        pthread_mutex_unlock(&fake_lock);
        return e;
    }
    if (ch->uncommitted)
        ch->sends_uncommitted++;
    if (ch->n_sent < FAKE_MAX_SENT) {
        struct fake_sent *s = &ch->sent[ch->n_sent++];
        s->data = malloc(len ? len : 1);
        memcpy(s->data, data, len);
        s->len = len;
        s->trans_id = trans_id;
    }
    pthread_cond_broadcast(&fake_cond);
    pthread_mutex_unlock(&fake_lock);
    return 0;
}

int vsp_send_completion(struct vsp_channel *ch, uint64_t trans_id, const void *data, size_t len)
{
    return -ENOTSUP;
}

int vsp_send_packet(struct vsp_channel *ch, uint16_t type, uint16_t flags, uint64_t trans_id,
                    const void *hdr, size_t hdr_len, const struct iovec *iov, int iovcnt)
{
    return -ENOTSUP;
}

unsigned fake_sent_count(struct vsp_channel *ch)
{
    unsigned n;

    pthread_mutex_lock(&fake_lock);
    n = ch->n_sent;
    pthread_mutex_unlock(&fake_lock);
    return n;
}

const struct fake_sent *fake_sent_get(struct vsp_channel *ch, unsigned i)
{
    const struct fake_sent *s;

    pthread_mutex_lock(&fake_lock);
    s = i < ch->n_sent ? &ch->sent[i] : NULL;
    pthread_mutex_unlock(&fake_lock);
    return s;
}

const struct fake_sent *fake_sent_last(struct vsp_channel *ch)
{
    unsigned n = fake_sent_count(ch);
    return n ? fake_sent_get(ch, n - 1) : NULL;
}

void fake_sent_clear(struct vsp_channel *ch)
{
    pthread_mutex_lock(&fake_lock);
    for (unsigned k = 0; k < ch->n_sent; k++)
        free(ch->sent[k].data);
    ch->n_sent = 0;
    pthread_mutex_unlock(&fake_lock);
}

bool fake_wait_sent(struct vsp_channel *ch, unsigned n, unsigned timeout_ms)
{
    struct timespec ts;
    bool ok;

    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += timeout_ms / 1000 + 1;
    pthread_mutex_lock(&fake_lock);
    while (ch->n_sent < n)
        if (pthread_cond_timedwait(&fake_cond, &fake_lock, &ts) == ETIMEDOUT)
            break;
    ok = ch->n_sent >= n;
    pthread_mutex_unlock(&fake_lock);
    return ok;
}

void fake_fail_sends(struct vsp_channel *ch, int err, unsigned times)
{
    pthread_mutex_lock(&fake_lock);
    ch->fail_err = err;
    ch->fail_times = times;
    pthread_mutex_unlock(&fake_lock);
}

unsigned fake_sends_before_commit(struct vsp_channel *ch)
{
    return ch->sends_uncommitted;
}

void fake_writable(struct vsp_channel *ch)
{
    ch->offer.ops->writable(ch);
}

/* ---- guest memory (unused by the ICs) ---------------------------------- */

void *vsp_gpadl_map(struct vsp_channel *ch, uint32_t gpadl_id, size_t *len)
{
    return NULL;
}

void vsp_gpadl_unmap(struct vsp_channel *ch, uint32_t gpadl_id)
{
}

void *vsp_guest_ptr(struct vsp_partition *p, uint64_t gpa, size_t len)
{
    return NULL;
}

/* ---- work and timers -------------------------------------------------- */

int vsp_queue_work(struct vsp_channel *ch, vsp_work_fn fn, void *arg)
{
    int r = -ENOMEM;

    pthread_mutex_lock(&fake_lock);
    if (fake_n_work < FAKE_MAX_WORK) {
        fake_work_q[fake_n_work++] = (struct fake_work){fn, arg};
        r = 0;
    }
    pthread_mutex_unlock(&fake_lock);
    return r;
}

unsigned fake_run_work(void)
{
    unsigned ran = 0;

    for (;;) {
        struct fake_work w;
        pthread_mutex_lock(&fake_lock);
        if (!fake_n_work) {
            pthread_mutex_unlock(&fake_lock);
            return ran;
        }
        w = fake_work_q[0];
        memmove(fake_work_q, fake_work_q + 1, --fake_n_work * sizeof(w));
        pthread_mutex_unlock(&fake_lock);
        w.fn(w.arg);
        ran++;
    }
}

struct vsp_timer *vsp_timer_start(struct vsp_partition *p, struct vsp_channel *ch,
                                  unsigned first_ms, unsigned period_ms, vsp_work_fn fn,
                                  void *arg)
{
    struct vsp_timer *t = NULL;

    pthread_mutex_lock(&fake_lock);
    for (unsigned i = 0; i < FAKE_MAX_TIMERS; i++) {
        if (!fake_timers[i].active) {
            t = &fake_timers[i];
            *t = (struct vsp_timer){.ch = ch, .fn = fn, .arg = arg, .period = period_ms,
                                    .active = true};
            break;
        }
    }
    pthread_mutex_unlock(&fake_lock);
    return t;
}

void vsp_timer_cancel(struct vsp_timer *t)
{
    if (t)
        t->active = false;
}

unsigned fake_timer_count(void)
{
    unsigned n = 0;

    for (unsigned i = 0; i < FAKE_MAX_TIMERS; i++)
        n += fake_timers[i].active;
    return n;
}

unsigned fake_fire_timers(struct vsp_channel *ch)
{
    unsigned n = 0;

    for (unsigned i = 0; i < FAKE_MAX_TIMERS; i++) {
        struct vsp_timer *t = &fake_timers[i];
        if (t->active && t->ch == ch) {
            if (!t->period)
                t->active = false;
            t->fn(t->arg);
            n++;
        }
    }
    return n;
}

/* ---- logging ---------------------------------------------------------- */

static void fake_vlog(enum vsp_log_level lvl, const char *fmt, va_list ap)
{
    char line[1024];
    size_t used;

    vsnprintf(line, sizeof(line), fmt, ap);
    pthread_mutex_lock(&fake_lock);
    if ((unsigned)lvl < 4)
        fake_logs[lvl]++;
    used = strlen(fake_log_buf);
    if (used + strlen(line) + 2 >= sizeof(fake_log_buf)) {
        fake_log_buf[0] = '\0';
        used = 0;
    }
    snprintf(fake_log_buf + used, sizeof(fake_log_buf) - used, "%s\n", line);
    pthread_mutex_unlock(&fake_lock);
    if (getenv("FAKE_VSP_VERBOSE"))
        fprintf(stderr, "[%d] %s\n", lvl, line);
}

void vsp_log(const struct vsp_channel *ch, enum vsp_log_level lvl, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    fake_vlog(lvl, fmt, ap);
    va_end(ap);
}

void vsp_plog(const struct vsp_partition *p, enum vsp_log_level lvl, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    fake_vlog(lvl, fmt, ap);
    va_end(ap);
}

void vsp_guest_error(const struct vsp_channel *ch, const char *fmt, ...)
{
    va_list ap;

    __atomic_add_fetch(&fake_guest_errors, 1, __ATOMIC_SEQ_CST);
    va_start(ap, fmt);
    fake_vlog(VSP_LOG_WARN, fmt, ap);
    va_end(ap);
}

unsigned fake_guest_error_count(void)
{
    return __atomic_load_n(&fake_guest_errors, __ATOMIC_SEQ_CST);
}

unsigned fake_log_count(enum vsp_log_level lvl)
{
    return (unsigned)lvl < 4 ? fake_logs[lvl] : 0;
}

bool fake_log_contains(const char *needle)
{
    return strstr(fake_log_buf, needle) != NULL;
}

void fake_log_reset(void)
{
    memset(fake_logs, 0, sizeof(fake_logs));
    __atomic_store_n(&fake_guest_errors, 0, __ATOMIC_SEQ_CST);
    fake_log_buf[0] = '\0';
}

/* The real host parses GUIDs with vmbusd's own parser; so does the fake. */
int vsp_guid_parse(const char *s, struct hv_guid *g)
{
    return guid_parse(s, g);
}
