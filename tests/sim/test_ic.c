/* SPDX-License-Identifier: MIT */
/*
 * The integration services (heartbeat, shutdown, timesync, KVP) through the
 * real in-process vmbusd, with a guest that answers like Linux 6.1's
 * hv_utils (drivers/hv/hv_util.c, hv_kvp.c + hv_kvp_daemon; contract
 * section 4) and with guests that answer badly.
 *
 * The guest side of the IC wire format is tests/icguest/ic_guest.c, written
 * from the guest's point of view, independently of src/vsp/ic, so the two
 * check each other.
 *
 * Good: each channel opened like hv_utils (16 KiB rings each way), the
 * negotiate answered like vmbus_prep_negotiate_resp(), then heartbeats
 * (status heartbeat.seq / heartbeat.state through the control socket),
 * timesync SYNC (host time against CLOCK_REALTIME), shutdown through
 * `control VM shutdown shutdown poweroff`, KVP enumeration of the auto pool
 * and `kvp-set 0 KEY VALUE`.
 *
 * Bad: every case runs on a partition of its own and asserts that vmbusd
 * keeps running (control socket answers), logs a warning naming the
 * partition and the channel's relid, that the service recovers (a later
 * good answer is taken, or the channel renegotiates after a reopen), and
 * that the healthy partition vm-good still echoes.
 */
#include "sim_test.h"

#include <inttypes.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "common/guid.h"
#include "ic_guest.h"

/* ------------------------------------------------------------------ */
/* Guest state                                                          */

struct pkt {
    struct vmpacket_descriptor d;
    uint32_t len;
    uint8_t b[ICG_BUF_KVP + 64];
};

struct icvm;

struct gch {
    struct icvm *v;
    int s;
    struct sim_chan *ch;
    uint32_t relid;
    bool ready;
    struct icg_ver fw, ver;
};

struct icvm {
    char name[48];
    struct sim_vm *vm;
    struct gch c[ICG_NSVC];
};

/* ------------------------------------------------------------------ */
/* Control socket client                                                */

static const char *g_ctl; /* control socket path of the current daemon */

/* One request line, one answer line.  true if an answer arrived. */
static bool ctl_call(const char *req, char *out, size_t cap)
{
    return sim_ctl_call(g_ctl, req, out, cap);
}

/* Value of status key `key` of partition vm from `list` (false if absent). */
static bool st_get(const char *vm, const char *key, char *val, size_t cap)
{
    size_t big = 256 * 1024;
    char *buf = malloc(big);
    bool found = false;
    if (!buf)
        return false;
    if (ctl_call("list", buf, big)) {
        char needle[160];
        snprintf(needle, sizeof(needle), "\"name\":\"%s\"", vm);
        char *pos = strstr(buf, needle);
        if (pos) {
            char *end = strstr(pos, "{\"id\":");
            if (end)
                *end = 0;
            snprintf(needle, sizeof(needle), "\"%s\":\"", key);
            char *k = strstr(pos, needle);
            if (k) {
                k += strlen(needle);
                char *q = strchr(k, '"');
                if (q) {
                    size_t l = (size_t)(q - k);
                    if (l >= cap)
                        l = cap - 1;
                    memcpy(val, k, l);
                    val[l] = 0;
                    found = true;
                }
            }
        }
    }
    free(buf);
    return found;
}

/* The partition's "guest_errors" from `list` (vmbusctl list: "N guest
 * errors"); -1 if it is not listed. */
static long guest_errors(const char *vm)
{
    size_t big = 256 * 1024;
    char *buf = malloc(big);
    long n = -1;
    if (buf && ctl_call("list", buf, big)) {
        char needle[160];
        snprintf(needle, sizeof(needle), "\"name\":\"%s\",", vm);
        char *pos = strstr(buf, needle);
        char *num = pos ? strstr(pos, "\"guest_errors\":") : NULL;
        if (num)
            n = strtol(num + strlen("\"guest_errors\":"), NULL, 10);
    }
    free(buf);
    return n;
}

/* Wait until status key == want (want NULL: exists). */
static bool st_wait(const char *vm, const char *key, const char *want, int timeout_ms)
{
    uint64_t end = sim_now_ms() + (uint64_t)timeout_ms;
    char val[512];
    for (;;) {
        if (st_get(vm, key, val, sizeof(val)) && (!want || strcmp(val, want) == 0))
            return true;
        if (sim_now_ms() >= end)
            return false;
        usleep(10000);
    }
}

static void st_dump(const char *vm, const char *key)
{
    char val[512] = "(absent)";
    st_get(vm, key, val, sizeof(val));
    fprintf(stderr, "  status %s %s = %s\n", vm, key, val);
}

/* A control command on a thread of its own (it blocks until the guest
 * answers, and the guest is this thread). */
struct actl {
    pthread_t t;
    char req[512];
    char reply[16384];
    bool ok;
    bool running;
};

static void *actl_fn(void *arg)
{
    struct actl *a = arg;
    a->ok = ctl_call(a->req, a->reply, sizeof(a->reply));
    return NULL;
}

static void actl_start(struct actl *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void actl_start(struct actl *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(a->req, sizeof(a->req), fmt, ap);
    va_end(ap);
    a->reply[0] = 0;
    a->ok = false;
    a->running = pthread_create(&a->t, NULL, actl_fn, a) == 0;
    SIM_ASSERT(a->running, "control thread");
}

static const char *actl_join(struct actl *a)
{
    if (a->running)
        pthread_join(a->t, NULL);
    a->running = false;
    return a->reply;
}

/* Synchronous control command; returns the JSON answer (static buffer). */
static const char *ctl(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static const char *ctl(const char *fmt, ...)
{
    static char out[16384];
    char req[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(req, sizeof(req), fmt, ap);
    va_end(ap);
    if (!ctl_call(req, out, sizeof(out)))
        snprintf(out, sizeof(out), "(no answer)");
    return out;
}

/* ------------------------------------------------------------------ */
/* Fixture                                                              */

#define IC_VSPS "heartbeat shutdown timesync kvp"
#define HB_LATE_MS 1000

static int ic_setup(void **state)
{
    static const struct sim_vm_cfg vms[] = {
        {VM_GOOD, "echo"},
        {"default", IC_VSPS}, /* every per-case partition */
    };
    static const struct sim_vsp_param params[] = {
        {"heartbeat", "interval_ms", "100"},
        {"heartbeat", "late_ms", "1000"},
        {"shutdown", "control_timeout_ms", "2000"},
        {"timesync", "interval_ms", "1000"},
        {"kvp", "control_timeout_ms", "3000"},
        {"kvp", "timeout_ms", "3000"},
    };
    struct fx *f = calloc(1, sizeof(*f));
    if (!f)
        return -1;
    sim_log_clear();
    sim_expect_offers_default = ICG_NSVC;
    f->d = simd_start_params(vms, 2, ECHO_CHANNELS, params,
                             (int)(sizeof(params) / sizeof(params[0])));
    if (!f->d) {
        free(f);
        return -1;
    }
    g_ctl = simd_control_path(f->d);
    *state = f;
    return 0;
}

static int ic_teardown(void **state)
{
    g_ctl = NULL;
    return fx_teardown(state);
}

/* vmbusd answers `list` and the healthy partition echoes. */
static void alive(struct fx *f, const char *what)
{
    const char *r = ctl("list");
    SIM_ASSERT(strncmp(r, "{\"ok\":true", 10) == 0, "control socket after %s: %s", what, r);
    fx_good_check(f, what);
}

/* A warning naming the partition and the relid (and containing needle). */
static void expect_warn(const struct gch *c, const char *needle, const char *what)
{
    char tok[24];
    snprintf(tok, sizeof(tok), "#%u", c->relid);
    SIM_ASSERT(sim_log_wait(3000, LOG_WARN, c->v->name, tok, needle),
               "%s: no warning naming partition %s and relid %u (%s) [%s]", what, c->v->name,
               c->relid, needle ? needle : "any", icg_svcs[c->s].name);
}

/* ------------------------------------------------------------------ */
/* Guest: channels                                                      */

/* A partition of its own, ic-TAG, with the four IC offers and the channels
 * in mask (bit ICG_HB...) opened like hv_utils. */
static struct icvm *icvm_new(struct fx *f, const char *tag, unsigned mask)
{
    struct icvm *v = calloc(1, sizeof(*v));
    SIM_ASSERT(v != NULL, "oom");
    snprintf(v->name, sizeof(v->name), "ic-%s", tag);
    v->vm = sim_vm_create(f->d, v->name);
    SIM_ASSERT(v->vm != NULL, "create %s", v->name);
    v->vm->expect_offers = ICG_NSVC;
    int n = sim_bringup(v->vm, VMBUS_VERSION_WIN10_V5_3);
    SIM_ASSERT(n >= ICG_NSVC, "%s: bringup %d offers", v->name, n);
    for (int s = 0; s < ICG_NSVC; s++) {
        struct gch *c = &v->c[s];
        c->v = v;
        c->s = s;
        struct hv_guid g;
        SIM_ASSERT(guid_parse(icg_svcs[s].cls, &g) == 0, "guid");
        struct sim_offer *of = sim_offer_by_class(v->vm, &g, 0);
        SIM_ASSERT(of != NULL, "%s: no %s offer", v->name, icg_svcs[s].name);
        c->relid = of->relid;
        if (!(mask & (1u << s)))
            continue;
        int st = 0;
        c->ch = sim_chan_open(v->vm, of->relid, ICG_RING_PAGES, ICG_RING_PAGES, &st);
        SIM_ASSERT(c->ch != NULL, "%s: open %s (relid %u): %d", v->name, icg_svcs[s].name, of->relid,
                   st);
    }
    return v;
}

static void icvm_free(struct icvm *v)
{
    SIM_ASSERT(v->vm->bad_host_msgs == 0, "%s: vmbusd sent malformed channel messages", v->name);
    SIM_ASSERT(!v->vm->dead, "%s: partition disconnected (%s)", v->name, v->vm->error);
    sim_vm_free(v->vm);
    free(v);
}

/* Receive one host packet on c; checks what every hv_utils driver relies on.
 * false on timeout. */
static bool g_recv(struct gch *c, struct pkt *p, int timeout_ms)
{
    memset(p->b, 0, ICG_HDRS + 64);
    int r = sim_chan_recv(c->ch, &p->d, p->b, sizeof(p->b), &p->len, timeout_ms);
    if (r != 1)
        return false;
    const struct icg_svc *s = &icg_svcs[c->s];
    SIM_ASSERT(p->d.type == VM_PKT_DATA_INBAND, "%s: host packet type %u", s->name, p->d.type);
    /* vmbus_recvpacket() into the driver's buffer: -ENOBUFS beyond it */
    SIM_ASSERT(p->len <= s->buf, "%s: %u-byte host packet exceeds Linux's %u-byte buffer",
               s->name, p->len, s->buf);
    SIM_ASSERT(p->len >= ICG_HDRS, "%s: %u-byte host packet (Linux drops < 28)", s->name, p->len);
    struct icg_hdr h = icg_hdr_get(p->b);
    SIM_ASSERT((h.flags & (ICG_TRANSACTION | ICG_REQUEST)) == (ICG_TRANSACTION | ICG_REQUEST) &&
                   !(h.flags & ICG_RESPONSE),
               "%s: host IC flags 0x%x", s->name, h.flags);
    SIM_ASSERT(icg_rd32(p->b) == 1, "%s: pipe header flags %u", s->name, icg_rd32(p->b));
    if (h.type != ICG_T_NEGOTIATE) {
        SIM_ASSERT(c->ready, "%s: message type %u before the negotiation", s->name, h.type);
        SIM_ASSERT(h.type == s->type, "%s: message type %u on this channel", s->name, h.type);
        SIM_ASSERT(h.fw.major == c->fw.major && h.fw.minor == c->fw.minor &&
                       h.ver.major == c->ver.major && h.ver.minor == c->ver.minor,
                   "%s: message with versions %u.%u/%u.%u, negotiated %u.%u/%u.%u", s->name,
                   h.fw.major, h.fw.minor, h.ver.major, h.ver.minor, c->fw.major, c->fw.minor,
                   c->ver.major, c->ver.minor);
        SIM_ASSERT(ICG_HDRS + h.size <= p->len, "%s: IC msg size %u beyond the %u-byte packet",
                   s->name, h.size, p->len);
    }
    return true;
}

static void g_must_recv(struct gch *c, struct pkt *p, const char *what)
{
    SIM_ASSERT(g_recv(c, p, SIM_TIMEOUT_MS), "%s: nothing from the host on %s (relid %u)", what,
               icg_svcs[c->s].name, c->relid);
}

/* Send a guest packet, waiting while the ring is full. */
static int g_send(struct gch *c, uint16_t type, uint64_t tid, const void *buf, uint32_t len)
{
    uint64_t end = sim_now_ms() + 3000;
    int r;
    while ((r = sim_chan_send(c->ch, type, 0, tid, buf, len)) == -EAGAIN && sim_now_ms() < end)
        sim_poll(c->v->vm, 5);
    return r;
}

/* Echo the packet back in place as every hv_utils driver does. */
static void g_reply(struct gch *c, struct pkt *p)
{
    icg_make_response(p->b);
    int r = g_send(c, VM_PKT_DATA_INBAND, p->d.trans_id, p->b, p->len);
    SIM_ASSERT(r == 0, "%s: reply not sent: %d", icg_svcs[c->s].name, r);
}

/* ------------------------------------------------------------------ */
/* Guest: negotiation (vmbus_prep_negotiate_resp)                       */

/* What vmbusd is documented to offer (src/vsp/ic/README.md); timesync
 * offers 4.0 only with a reference-time source. */
static void check_offer(const struct gch *c, const struct pkt *p)
{
    const struct icg_svc *s = &icg_svcs[c->s];
    const uint8_t *body = p->b + ICG_HDRS;
    struct icg_hdr h = icg_hdr_get(p->b);
    SIM_ASSERT(h.type == ICG_T_NEGOTIATE, "%s: first host message has type %u", s->name, h.type);
    unsigned nfw = icg_rd16(body), nmsg = icg_rd16(body + 2);
    SIM_ASSERT(nfw >= 1 && nmsg >= 1 && nfw + nmsg >= 2 && nfw + nmsg <= ICG_MAX_VERCNT,
               "%s: negotiate counts %u/%u", s->name, nfw, nmsg);
    SIM_ASSERT(ICG_HDRS + 8 + 4 * (nfw + nmsg) <= p->len, "%s: negotiate counts %u/%u in %u bytes",
               s->name, nfw, nmsg, p->len);
    SIM_ASSERT(h.size >= 8 + 4 * (nfw + nmsg), "%s: negotiate msg size %u", s->name, h.size);
    static const struct icg_ver fw_exp[] = {{3, 0}, {1, 0}};
    static const struct icg_ver hb_exp[] = {{3, 0}, {1, 0}};
    static const struct icg_ver sd_exp[] = {{3, 2}, {3, 1}, {3, 0}, {1, 0}};
    static const struct icg_ver ts_exp[] = {{4, 0}, {3, 0}, {1, 0}};
    static const struct icg_ver kv_exp[] = {{4, 0}, {3, 0}, {1, 0}};
    const struct icg_ver *exp = c->s == ICG_HB ? hb_exp : c->s == ICG_SD ? sd_exp : c->s == ICG_TS ? ts_exp : kv_exp;
    unsigned nexp = c->s == ICG_HB ? 2 : c->s == ICG_SD ? 4 : 3;
    if (c->s == ICG_TS && nmsg == 2) { /* no reference time: 3.0, 1.0 */
        exp++;
        nexp--;
    }
    SIM_ASSERT(nfw == 2 && nmsg == nexp, "%s: host offers %u framework and %u message versions",
               s->name, nfw, nmsg);
    for (unsigned i = 0; i < nfw + nmsg; i++) {
        struct icg_ver v = {icg_rd16(body + 8 + 4 * i), icg_rd16(body + 10 + 4 * i)};
        struct icg_ver e = i < nfw ? fw_exp[i] : exp[i - nfw];
        SIM_ASSERT(icg_ver_eq(v, e), "%s: offered version %u is %u.%u, expected %u.%u", s->name, i,
                   v.major, v.minor, e.major, e.minor);
    }
}

static void svc_key(const struct gch *c, const char *key, char *out, size_t cap)
{
    snprintf(out, cap, "%s.%s", icg_svcs[c->s].name, key);
}

static void wait_version(const struct gch *c, const char *want, const char *what)
{
    char key[64];
    svc_key(c, "version", key, sizeof(key));
    if (!st_wait(c->v->name, key, want, 3000)) {
        st_dump(c->v->name, key);
        SIM_ASSERT(false, "%s: %s of %s never became %s", what, key, c->v->name, want);
    }
}

/* Receive the negotiate request (checked) into p. */
static void g_get_negotiate(struct gch *c, struct pkt *p, const char *what)
{
    g_must_recv(c, p, what);
    check_offer(c, p);
}

/* Answer p (a negotiate request) like Linux and wait until the host
 * reports the negotiated version. */
static void g_answer_negotiate(struct gch *c, struct pkt *p, const char *what)
{
    struct icg_ver fw, ver;
    bool ok = icg_negotiate(&icg_svcs[c->s], p->b, p->len, &fw, &ver) == ICG_NEG_OK;
    SIM_ASSERT(ok, "%s: no version in common with Linux", icg_svcs[c->s].name);
    g_reply(c, p);
    c->fw = fw;
    c->ver = ver;
    c->ready = true;
    char want[16];
    snprintf(want, sizeof(want), "%u.%u", ver.major, ver.minor);
    wait_version(c, want, what);
}

static void g_negotiate(struct gch *c, const char *what)
{
    struct pkt *p = malloc(sizeof(*p));
    SIM_ASSERT(p != NULL, "oom");
    g_get_negotiate(c, p, what);
    g_answer_negotiate(c, p, what);
    free(p);
}

/* Every channel of v negotiated like Linux (all four open). */
static void icvm_negotiate_all(struct icvm *v, const char *what)
{
    for (int s = 0; s < ICG_NSVC; s++)
        g_negotiate(&v->c[s], what);
}

/* ------------------------------------------------------------------ */
/* Guest: services                                                      */

/* Next heartbeat request: returns its seq (p holds it). */
static uint64_t g_heartbeat(struct gch *c, struct pkt *p, const char *what)
{
    g_must_recv(c, p, what);
    struct icg_hdr h = icg_hdr_get(p->b);
    SIM_ASSERT(h.type == ICG_T_HEARTBEAT, "%s: heartbeat channel got type %u", what, h.type);
    /* heartbeat_msg_data {seq u64, reserved u32 x 8}; Linux needs >= 36 */
    SIM_ASSERT(p->len >= ICG_HDRS + 8 && h.size >= 8, "%s: heartbeat of %u bytes", what, p->len);
    return icg_heartbeat_seq(p->b);
}

/* Answer heartbeat p with seq + 1 (what Linux does). */
static void g_heartbeat_answer(struct gch *c, struct pkt *p)
{
    icg_heartbeat_answer(p->b);
    g_reply(c, p);
}

static void wait_hb(const struct gch *c, uint64_t seq, const char *what)
{
    char want[32];
    snprintf(want, sizeof(want), "%" PRIu64, seq);
    bool ok = st_wait(c->v->name, "heartbeat.seq", want, 3000) &&
              st_wait(c->v->name, "heartbeat.state", "ok", 3000);
    if (!ok) {
        st_dump(c->v->name, "heartbeat.seq");
        st_dump(c->v->name, "heartbeat.state");
    }
    SIM_ASSERT(ok, "%s: heartbeat.seq never became %s with state ok", what, want);
}

/* The newest heartbeat in the ring (older ones are skipped, unanswered). */
static uint64_t g_heartbeat_latest(struct gch *c, struct pkt *p, const char *what)
{
    uint64_t seq = g_heartbeat(c, p, what);
    struct pkt *q = malloc(sizeof(*q));
    SIM_ASSERT(q != NULL, "oom");
    while (g_recv(c, q, 0)) {
        struct icg_hdr h = icg_hdr_get(q->b);
        if (h.type != ICG_T_HEARTBEAT)
            continue;
        uint64_t s2 = icg_rd64(q->b + ICG_HDRS);
        SIM_ASSERT(s2 > seq, "%s: heartbeat seq %" PRIu64 " after %" PRIu64, what, s2, seq);
        seq = s2;
        memcpy(p, q, sizeof(*p));
    }
    free(q);
    return seq;
}

/* One complete heartbeat exchange and the published status. */
static void g_heartbeat_ok(struct gch *c, const char *what)
{
    struct pkt *p = malloc(sizeof(*p));
    SIM_ASSERT(p != NULL, "oom");
    uint64_t seq = g_heartbeat_latest(c, p, what);
    g_heartbeat_answer(c, p);
    wait_hb(c, seq + 1, what);
    free(p);
}

static uint8_t ts_flags(const struct gch *c, const struct pkt *p)
{
    return icg_timesync_flags(p->b, c->ver);
}

/* CLOCK_REALTIME in 100 ns units since 1601, the timesync wire clock. */
static uint64_t realtime_filetime(void)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    return (uint64_t)now.tv_sec * 10000000u + (uint64_t)now.tv_nsec / 100u + ICG_EPOCH;
}

static uint64_t test_start_ft;
__attribute__((constructor)) static void note_test_start(void) { test_start_ft = realtime_filetime(); }

static void g_timesync(struct gch *c, struct pkt *p, const char *what)
{
    g_must_recv(c, p, what);
    struct icg_hdr h = icg_hdr_get(p->b);
    SIM_ASSERT(h.type == ICG_T_TIMESYNC, "%s: timesync channel got type %u", what, h.type);
    uint32_t need = icg_timesync_len(c->ver);
    SIM_ASSERT(p->len >= need, "%s: timesync %u bytes, version %u.%u needs %u (Linux drops it)",
               what, p->len, c->ver.major, c->ver.minor, need);
    /* The stamp is taken when vmbusd sends, which may be long before this
     * thread runs on a loaded machine: require it to lie between this
     * process's start and now (a wrong clock or epoch is off by years). */
    uint64_t host = icg_timesync_host_time(p->b);
    uint64_t now = realtime_filetime();
    SIM_ASSERT(host + 10000000u >= test_start_ft && host <= now + 10000000u,
               "%s: host time %" PRIu64 " outside this test's run [%" PRIu64 ", %" PRIu64 "]",
               what, host, test_start_ft, now);
}

static unsigned long st_num(const char *vm, const char *key)
{
    char v[64];
    return st_get(vm, key, v, sizeof(v)) ? strtoul(v, NULL, 10) : 0;
}

/* Timesync answers counted by the host, from `control VM timesync timesync`
 * (the status key timesync.answers is only republished on the next tick). */
static unsigned long ts_answered(const char *vm)
{
    const char *r = ctl("control %s timesync timesync", vm);
    const char *m = strstr(r, "messages sent, ");
    return m ? strtoul(m + 15, NULL, 10) : 0;
}

static bool ts_wait_answered(const char *vm, unsigned long min, int timeout_ms)
{
    uint64_t end = sim_now_ms() + (uint64_t)timeout_ms;
    while (ts_answered(vm) < min) {
        if (sim_now_ms() >= end)
            return false;
        usleep(5000);
    }
    return true;
}

static bool st_wait_num(const char *vm, const char *key, unsigned long min, int timeout_ms)
{
    uint64_t end = sim_now_ms() + (uint64_t)timeout_ms;
    while (st_num(vm, key) < min) {
        if (sim_now_ms() >= end)
            return false;
        usleep(10000);
    }
    return true;
}

static void g_kvp_request(struct gch *c, struct pkt *p, const char *what)
{
    g_must_recv(c, p, what);
    struct icg_hdr h = icg_hdr_get(p->b);
    SIM_ASSERT(h.type == ICG_T_KVP, "%s: kvp channel got type %u", what, h.type);
    SIM_ASSERT(p->len >= ICG_HDRS + ICG_KVP_MSG && h.size >= ICG_KVP_MSG,
               "%s: kvp message of %u bytes (msg size %u): not the full hv_kvp_msg", what,
               p->len, h.size);
}

/* Answer an ENUMERATE of the auto pool like hv_kvp_daemon + hv_kvp.c. */
static void g_kvp_answer_enum(struct gch *c, struct pkt *p)
{
    uint8_t *body = p->b + ICG_HDRS;
    uint32_t idx = icg_rd32(body + 4);
    struct icg_hdr h = icg_hdr_get(p->b);
    if (body[1] == ICG_KVP_AUTO_POOL && idx < ICG_KVP_AUTO_N) {
        icg_kvp_rec_put(body + 8, icg_kvp_auto_keys[idx], icg_kvp_auto_values[idx]);
        h.status = ICG_S_OK;
    } else {
        h.status = ICG_S_CONT; /* no more items: the daemon's error -> S_CONT */
    }
    icg_hdr_put(p->b, &h);
    g_reply(c, p);
}

/* Serve the host's enumeration of pool `pool` until S_CONT. */
static void g_kvp_serve_enum(struct gch *c, uint8_t pool, const char *what)
{
    struct pkt *p = malloc(sizeof(*p));
    SIM_ASSERT(p != NULL, "oom");
    for (uint32_t i = 0;; i++) {
        g_kvp_request(c, p, what);
        uint8_t *body = p->b + ICG_HDRS;
        SIM_ASSERT(body[0] == ICG_KVP_ENUM && body[1] == pool && icg_rd32(body + 4) == i,
                   "%s: expected ENUMERATE pool %u index %u, got op %u pool %u index %u", what,
                   pool, i, body[0], body[1], icg_rd32(body + 4));
        g_kvp_answer_enum(c, p);
        if (i >= ICG_KVP_AUTO_N)
            break;
    }
    free(p);
}

/* Receive a SET and check it carries key/value as UTF-16. */
static void g_kvp_expect_set(struct gch *c, struct pkt *p, uint8_t pool, const char *key,
                             const char *value, const char *what)
{
    g_kvp_request(c, p, what);
    const uint8_t *body = p->b + ICG_HDRS, *rec = body + 4;
    SIM_ASSERT(body[0] == ICG_KVP_SET && body[1] == pool, "%s: op %u pool %u, expected SET %u",
               what, body[0], body[1], pool);
    SIM_ASSERT(icg_rd32(rec) == 1, "%s: value type %u", what, icg_rd32(rec));
    SIM_ASSERT(icg_u16_is(rec + 12, icg_rd32(rec + 4), key), "%s: key (size %u) is not UTF-16 '%s'",
               what, icg_rd32(rec + 4), key);
    SIM_ASSERT(icg_u16_is(rec + 12 + ICG_KVP_KEY, icg_rd32(rec + 8), value),
               "%s: value (size %u) is not UTF-16 '%s'", what, icg_rd32(rec + 8), value);
}

/* kvp-set through the control socket, answered S_OK: the service works. */
static void g_kvp_set_ok(struct gch *c, const char *key, const char *value, const char *what)
{
    struct actl *a = calloc(1, sizeof(*a));
    struct pkt *p = malloc(sizeof(*p));
    SIM_ASSERT(a && p, "oom");
    actl_start(a, "control %s kvp kvp-set 0 %s %s", c->v->name, key, value);
    g_kvp_expect_set(c, p, 0, key, value, what);
    g_reply(c, p); /* SET: S_OK, buffer unchanged */
    const char *r = actl_join(a);
    SIM_ASSERT(a->ok && strstr(r, "\"ok\":true") && strstr(r, "done"), "%s: kvp-set: %s", what,
               r);
    free(p);
    free(a);
}

/* shutdown poweroff through the control socket, answered S_OK. */
static void g_shutdown_ok(struct gch *c, const char *action, uint32_t flags, const char *what)
{
    struct actl *a = calloc(1, sizeof(*a));
    struct pkt *p = malloc(sizeof(*p));
    SIM_ASSERT(a && p, "oom");
    actl_start(a, "control %s shutdown shutdown %s", c->v->name, action);
    g_must_recv(c, p, what);
    struct icg_hdr h = icg_hdr_get(p->b);
    SIM_ASSERT(h.type == ICG_T_SHUTDOWN, "%s: shutdown channel got type %u", what, h.type);
    /* shutdown_msg_data {reason, timeout, flags, message[2048]} */
    SIM_ASSERT(p->len >= ICG_HDRS + ICG_SHUTDOWN_BODY,
               "%s: shutdown payload %u < %u (Linux drops it)", what, p->len,
               ICG_HDRS + ICG_SHUTDOWN_BODY);
    SIM_ASSERT(icg_shutdown_flags(p->b) == flags, "%s: shutdown flags %u, expected %u", what,
               icg_shutdown_flags(p->b), flags);
    h.status = ICG_S_OK;
    icg_hdr_put(p->b, &h);
    g_reply(c, p);
    const char *r = actl_join(a);
    SIM_ASSERT(a->ok && strstr(r, "\"ok\":true") && strstr(r, "accepted"),
               "%s: control reply: %s", what, r);
    free(p);
    free(a);
}

/* ------------------------------------------------------------------ */
/* Good flows                                                           */

static void test_good(void **state)
{
    struct fx *f = *state;
    fx_good_start(f);
    struct icvm *v = icvm_new(f, "good", 0xf);
    struct pkt *p = malloc(sizeof(*p));
    SIM_ASSERT(p, "oom");
    icvm_negotiate_all(v, "good negotiate");
    print_message("  negotiated: heartbeat %u.%u, shutdown %u.%u, timesync %u.%u, kvp %u.%u "
                  "(framework %u.%u)\n",
                  v->c[ICG_HB].ver.major, v->c[ICG_HB].ver.minor, v->c[ICG_SD].ver.major,
                  v->c[ICG_SD].ver.minor, v->c[ICG_TS].ver.major, v->c[ICG_TS].ver.minor,
                  v->c[ICG_KV].ver.major, v->c[ICG_KV].ver.minor, v->c[ICG_HB].fw.major, v->c[ICG_HB].fw.minor);
    SIM_ASSERT(icg_ver_eq(v->c[ICG_HB].ver, (struct icg_ver){3, 0}) && icg_ver_eq(v->c[ICG_SD].ver, (struct icg_ver){3, 2}) &&
                   icg_ver_eq(v->c[ICG_KV].ver, (struct icg_ver){4, 0}) && icg_ver_eq(v->c[ICG_HB].fw, (struct icg_ver){3, 0}),
               "Linux's choices");

    /* heartbeat: several requests, each answered seq + 1.  The newest in
     * the ring: requests come every 100 ms and the host knows only the last
     * 16, so a test thread stalled for 1.6 s (a loaded machine) would answer
     * one the host has forgotten. */
    struct gch *hb = &v->c[ICG_HB];
    uint64_t last = 0;
    uint64_t t0 = sim_now_ms();
    for (int i = 0; i < 5; i++) {
        uint64_t seq = g_heartbeat_latest(hb, p, "heartbeat");
        SIM_ASSERT(seq > last, "heartbeat seq %" PRIu64 " after %" PRIu64, seq, last);
        last = seq;
        g_heartbeat_answer(hb, p);
        wait_hb(hb, seq + 1, "heartbeat");
    }
    uint64_t took = sim_now_ms() - t0;
    char buf[64];
    const char *list = ctl("list");
    SIM_ASSERT(strstr(list, "\"heartbeat.state\":\"ok\"") != NULL, "list: %s", list);
    print_message("  heartbeat: 5 requests answered in %" PRIu64 " ms, last seq %" PRIu64
                  ", status ok\n", took, last + 1);
    SIM_ASSERT(strstr(ctl("control %s heartbeat heartbeat", v->name), "state ok"),
               "heartbeat control");

    /* timesync: a SYNC right after the negotiation, then samples */
    struct gch *ts = &v->c[ICG_TS];
    g_timesync(ts, p, "timesync");
    SIM_ASSERT(ts_flags(ts, p) == 1, "first timesync message has flags %u, expected SYNC",
               ts_flags(ts, p));
    g_reply(ts, p);
    SIM_ASSERT(ts_wait_answered(v->name, 1, 3000), "timesync: answer not counted");
    /* an operator SYNC */
    const char *r = ctl("control %s timesync timesync sync", v->name);
    SIM_ASSERT(strstr(r, "\"ok\":true"), "timesync sync: %s", r);
    unsigned samples = 0;
    for (;;) {
        g_timesync(ts, p, "timesync sync");
        uint8_t fl = ts_flags(ts, p);
        g_reply(ts, p);
        if (fl == 1)
            break;
        SIM_ASSERT(fl == 2, "timesync flags %u", fl);
        samples++;
    }
    SIM_ASSERT(ts_wait_answered(v->name, 2 + samples, 3000), "timesync: answers not counted");
    /* the status key follows at the next tick (interval_ms) */
    SIM_ASSERT(st_wait_num(v->name, "timesync.answers", 2 + samples, 3000), "timesync.answers");
    print_message("  timesync %u.%u: SYNC within 1 s of CLOCK_REALTIME answered, operator sync "
                  "answered (%u samples between)\n", ts->ver.major, ts->ver.minor, samples);

    /* shutdown through the control socket */
    struct gch *sd = &v->c[ICG_SD];
    g_shutdown_ok(sd, "poweroff", 0, "shutdown poweroff");
    SIM_ASSERT(st_get(v->name, "shutdown.last", buf, sizeof(buf)) && strstr(buf, "S_OK"),
               "shutdown.last");
    g_shutdown_ok(sd, "reboot", 2, "shutdown reboot");
    /* forced, with reason, timeout and a display message (UTF-16LE) */
    struct actl *sa = calloc(1, sizeof(*sa));
    SIM_ASSERT(sa != NULL, "oom");
    actl_start(sa, "control %s shutdown shutdown poweroff force timeout=30 reason=7 "
               "message=Going down now", v->name);
    g_must_recv(sd, p, "shutdown with message");
    const uint8_t *sb = p->b + ICG_HDRS;
    SIM_ASSERT(icg_shutdown_reason(p->b) == 7 && icg_shutdown_timeout(p->b) == 30 &&
                   icg_shutdown_flags(p->b) == 1,
               "shutdown reason %u timeout %u flags %u", icg_shutdown_reason(p->b),
               icg_shutdown_timeout(p->b), icg_shutdown_flags(p->b));
    SIM_ASSERT(icg_u16_is(sb + 12, 2 * (uint32_t)(strlen("Going down now") + 1), "Going down now"),
               "shutdown display message");
    g_reply(sd, p);
    SIM_ASSERT(strstr(actl_join(sa), "accepted"), "forced shutdown: %s", sa->reply);
    free(sa);
    print_message("  shutdown: poweroff and reboot accepted (%s)\n", buf);

    /* KVP: the host enumerates the auto pool after the negotiation */
    struct gch *kv = &v->c[ICG_KV];
    g_kvp_serve_enum(kv, 2, "kvp enumerate");
    SIM_ASSERT(st_wait(v->name, "kvp.2.FullyQualifiedDomainName", "simguest.example", 3000),
               "kvp.2.FullyQualifiedDomainName");
    SIM_ASSERT(st_wait(v->name, "kvp.2.ProcessorArchitecture", "x86_64", 3000),
               "kvp.2.ProcessorArchitecture");
    g_kvp_set_ok(kv, "SimKey", "some value", "kvp-set");
    /* kvp-list 2 through the control socket */
    struct actl *a = calloc(1, sizeof(*a));
    SIM_ASSERT(a != NULL, "oom");
    actl_start(a, "control %s kvp kvp-list 2", v->name);
    g_kvp_serve_enum(kv, 2, "kvp-list");
    r = actl_join(a);
    SIM_ASSERT(a->ok && strstr(r, "\"ok\":true") && strstr(r, "OSName=Debian GNU/Linux"),
               "kvp-list: %s", r);
    free(a);
    print_message("  kvp %u.%u: auto pool enumerated (10 keys published), kvp-set 0 and "
                  "kvp-list 2 answered\n", kv->ver.major, kv->ver.minor);

    /* still alive after all that: one more heartbeat */
    g_heartbeat_ok(hb, "final heartbeat");
    alive(f, "good flows");
    icvm_free(v);
    free(p);
}

/* ------------------------------------------------------------------ */
/* Bad negotiate answers                                                */

enum nbad {
    NB_ZERO,
    NB_EFAIL,
    NB_COUNT_101,
    NB_COUNT_FFFF,
    NB_COUNT_NOFIT,
    NB_SHORT_VERSIONS,
    NB_BODY_SHORT,
    NB_HDR_SHORT,
    NB_EMPTY,
    NB_FW_NOT_OFFERED,
    NB_MSG_NOT_OFFERED,
    NB_TYPE_OTHER,
    NB_TYPE_SVC,
    NB_NO_RESPONSE,
    NB_WRONG_TID,
    NB_NOT_INBAND,
    NB_DUP,
    NB_COUNT
};

static const struct {
    const char *tag, *what, *needle;
    bool fatal; /* the host gives up: reopen needed */
} nbad[NB_COUNT] = {
    [NB_ZERO] = {"neg-zero", "counts 0/0 (no common version)", "negotiation failed", true},
    [NB_EFAIL] = {"neg-efail", "status E_FAIL", "negotiation failed", true},
    [NB_COUNT_101] = {"neg-101", "framework count 101", "above 100", false},
    [NB_COUNT_FFFF] = {"neg-ffff", "counts 65535/65535", "above 100", false},
    [NB_COUNT_NOFIT] = {"neg-nofit", "counts 40/40 in a 2-entry packet", "exactly one", false},
    [NB_SHORT_VERSIONS] = {"neg-shortv", "1/1 but only one version entry", "too short", false},
    [NB_BODY_SHORT] = {"neg-shortb", "body of 4 bytes", "negotiate body truncated", false},
    [NB_HDR_SHORT] = {"neg-shorth", "20-byte packet (< 28)", "shorter than the IC headers",
                      false},
    [NB_EMPTY] = {"neg-empty", "empty packet", "shorter than the IC headers", false},
    [NB_FW_NOT_OFFERED] = {"neg-fw", "framework 2.0 (never offered)", "not offered", false},
    [NB_MSG_NOT_OFFERED] = {"neg-msg", "message version 3.5 (never offered)", "not offered",
                            false},
    [NB_TYPE_OTHER] = {"neg-type", "another service's IC message type", "message type", false},
    [NB_TYPE_SVC] = {"neg-type2", "the service's type before negotiation",
                     "before negotiation finished", false},
    [NB_NO_RESPONSE] = {"neg-noresp", "response flag clear", "response flag not set", false},
    [NB_WRONG_TID] = {"neg-tid", "wrong VMBus trans_id", "unexpected negotiate reply", false},
    [NB_NOT_INBAND] = {"neg-comp", "sent as a completion packet (not inband)", "packet type",
                       false},
    [NB_DUP] = {"neg-dup", "answered twice", "unexpected negotiate reply", false},
};

/* Turn a good Linux answer q into bad answer `kind`; returns the packet
 * length and sets the VMBus packet type and trans_id to use. */
static uint32_t neg_mutate(enum nbad kind, const struct gch *c, struct pkt *q, uint16_t *type,
                           uint64_t *tid)
{
    uint8_t *body = q->b + ICG_HDRS;
    struct icg_hdr h = icg_hdr_get(q->b);
    uint32_t len = q->len;
    *type = VM_PKT_DATA_INBAND;
    switch (kind) {
    case NB_ZERO: /* what Linux itself sends without a match */
        icg_wr16(body, 0);
        icg_wr16(body + 2, 0);
        break;
    case NB_EFAIL:
        h.status = ICG_E_FAIL;
        break;
    case NB_COUNT_101:
        icg_wr16(body, 101);
        break;
    case NB_COUNT_FFFF:
        icg_wr16(body, 0xffff);
        icg_wr16(body + 2, 0xffff);
        break;
    case NB_COUNT_NOFIT:
        icg_wr16(body, 40);
        icg_wr16(body + 2, 40);
        break;
    case NB_SHORT_VERSIONS:
        len = ICG_HDRS + 8 + 4;
        break;
    case NB_BODY_SHORT:
        len = ICG_HDRS + 4;
        break;
    case NB_HDR_SHORT:
        len = 20;
        break;
    case NB_EMPTY:
        len = 0;
        break;
    case NB_FW_NOT_OFFERED:
        icg_wr16(body + 8, 2);
        icg_wr16(body + 10, 0);
        break;
    case NB_MSG_NOT_OFFERED:
        icg_wr16(body + 12, 3);
        icg_wr16(body + 14, 5);
        break;
    case NB_TYPE_OTHER:
        h.type = icg_svcs[c->s].type == ICG_T_HEARTBEAT ? ICG_T_SHUTDOWN : ICG_T_HEARTBEAT;
        break;
    case NB_TYPE_SVC:
        h.type = icg_svcs[c->s].type;
        break;
    case NB_NO_RESPONSE:
        h.flags = ICG_TRANSACTION | ICG_REQUEST;
        break;
    case NB_WRONG_TID:
        *tid += 1000;
        break;
    case NB_NOT_INBAND:
        *type = VM_PKT_COMP;
        break;
    default:
        break;
    }
    if (kind != NB_NO_RESPONSE)
        h.flags = ICG_TRANSACTION | ICG_RESPONSE;
    icg_hdr_put(q->b, &h);
    return len;
}

/* The service works after its negotiation: the first thing it does. */
static void svc_works(struct gch *c, const char *what)
{
    struct pkt *p = malloc(sizeof(*p));
    SIM_ASSERT(p != NULL, "oom");
    switch (c->s) {
    case ICG_HB:
        g_heartbeat_ok(c, what);
        break;
    case ICG_TS:
        g_timesync(c, p, what);
        SIM_ASSERT(ts_flags(c, p) == 1, "%s: first timesync flags %u", what, ts_flags(c, p));
        g_reply(c, p);
        SIM_ASSERT(ts_wait_answered(c->v->name, 1, 3000), "%s: timesync", what);
        break;
    case ICG_SD:
        g_shutdown_ok(c, "poweroff", 0, what);
        break;
    case ICG_KV:
        g_kvp_serve_enum(c, 2, what);
        g_kvp_set_ok(c, "K", "v", what);
        break;
    }
    free(p);
}

static void run_neg_case(struct fx *f, enum nbad kind)
{
    struct icvm *v = icvm_new(f, nbad[kind].tag, 0xf);
    struct pkt *p = malloc(sizeof(*p)), *q = malloc(sizeof(*q));
    SIM_ASSERT(p && q, "oom");
    const char *what = nbad[kind].what;
    for (int s = 0; s < ICG_NSVC; s++) {
        struct gch *c = &v->c[s];
        g_get_negotiate(c, p, what);
        memcpy(q, p, sizeof(*q));
        SIM_ASSERT(icg_negotiate(&icg_svcs[s], q->b, q->len, NULL, NULL) == ICG_NEG_OK,
                   "Linux answer");
        if (kind == NB_DUP) {
            memcpy(q, p, sizeof(*q));
            g_answer_negotiate(c, q, what);
            memcpy(q, p, sizeof(*q));
            SIM_ASSERT(icg_negotiate(&icg_svcs[s], q->b, q->len, NULL, NULL) == ICG_NEG_OK,
                   "Linux answer");
        }
        uint16_t type;
        uint64_t tid = p->d.trans_id;
        uint32_t len = neg_mutate(kind, c, q, &type, &tid);
        int r = g_send(c, type, tid, q->b, len);
        SIM_ASSERT(r == 0, "%s: send: %d", what, r);
        expect_warn(c, nbad[kind].needle, what);
        if (nbad[kind].fatal) {
            wait_version(c, "unsupported", what);
            if (s == ICG_SD) {
                const char *rep = ctl("control %s shutdown shutdown poweroff", v->name);
                SIM_ASSERT(strstr(rep, "\"ok\":false") && strstr(rep, "not ready"),
                           "%s: shutdown on a failed channel: %s", what, rep);
            }
            /* a late good answer does not revive it */
            memcpy(q, p, sizeof(*q));
            icg_negotiate(&icg_svcs[s], q->b, q->len, NULL, NULL);
            g_reply(c, q);
            expect_warn(c, "state failed", what);
            /* hv_utils reloaded: close and open again, renegotiate */
            SIM_ASSERT(sim_chan_close(c->ch) == 0, "%s: close", what);
            int st = 0;
            c->ch = sim_chan_open(v->vm, c->relid, ICG_RING_PAGES, ICG_RING_PAGES, &st);
            SIM_ASSERT(c->ch != NULL, "%s: reopen %s: %d", what, icg_svcs[s].name, st);
            g_negotiate(c, what);
        } else if (kind != NB_DUP) {
            /* the host ignored it and still waits: the good answer works */
            char key[64];
            svc_key(c, "version", key, sizeof(key));
            char val[32] = "";
            st_get(v->name, key, val, sizeof(val));
            SIM_ASSERT(strcmp(val, "none") == 0, "%s: %s is '%s' after a bad answer", what, key,
                       val);
            memcpy(q, p, sizeof(*q));
            g_answer_negotiate(c, q, what);
        }
        svc_works(c, what);
    }
    alive(f, what);
    print_message("  negotiate %-42s warned (4 relids), %s\n", what,
                  nbad[kind].fatal ? "channel failed; renegotiated after reopen"
                                   : "ignored; good answer then accepted");
    icvm_free(v);
    free(p);
    free(q);
}

static void test_bad_negotiate(void **state)
{
    struct fx *f = *state;
    fx_good_start(f);
    for (int k = 0; k < NB_COUNT; k++)
        run_neg_case(f, (enum nbad)k);
}

/* ------------------------------------------------------------------ */
/* Bad heartbeat answers                                                */

enum hbad {
    HBB_SEQ_PLUS2,
    HBB_SEQ_STALE,
    HBB_SEQ_OLD,
    HBB_REPLAY,
    HBB_GARBAGE,
    HBB_GARBAGE_BODY,
    HBB_SHORT,
    HBB_EFAIL,
    HBB_UNKNOWN_TID,
    HBB_NOT_INBAND,
    HBB_NEGOTIATE_AGAIN,
    HBB_COUNT
};

static const struct {
    const char *tag, *what, *needle;
} hbad[HBB_COUNT] = {
    [HBB_SEQ_PLUS2] = {"hb-plus2", "seq + 2", "expected"},
    [HBB_SEQ_STALE] = {"hb-stale", "seq unchanged (stale)", "expected"},
    [HBB_SEQ_OLD] = {"hb-old", "the previous answer's seq", "expected"},
    [HBB_REPLAY] = {"hb-replay", "an earlier answer replayed", "unknown trans_id"},
    [HBB_GARBAGE] = {"hb-garbage", "72 random bytes", NULL},
    [HBB_GARBAGE_BODY] = {"hb-garbody", "valid header, 0xff body", "expected"},
    [HBB_SHORT] = {"hb-short", "body of 4 bytes", "reply of 4 bytes"},
    [HBB_EFAIL] = {"hb-efail", "status E_FAIL", "0x80004005"},
    [HBB_UNKNOWN_TID] = {"hb-tid", "unknown trans_id", "unknown trans_id"},
    [HBB_NOT_INBAND] = {"hb-comp", "completion packet (not inband)", "packet type"},
    [HBB_NEGOTIATE_AGAIN] = {"hb-neg", "a negotiate answer when ready",
                             "unexpected negotiate reply"},
};

static void run_hb_case(struct fx *f, enum hbad kind)
{
    struct icvm *v = icvm_new(f, hbad[kind].tag, 1u << ICG_HB);
    struct pkt *p = malloc(sizeof(*p)), *prev = malloc(sizeof(*prev));
    SIM_ASSERT(p && prev, "oom");
    const char *what = hbad[kind].what;
    struct gch *c = &v->c[ICG_HB];
    struct pkt *neg = malloc(sizeof(*neg));
    SIM_ASSERT(neg != NULL, "oom");
    g_get_negotiate(c, neg, what);
    memcpy(p, neg, sizeof(*p));
    g_answer_negotiate(c, p, what);
    /* one good exchange first: the seq the status must keep */
    uint64_t s0 = g_heartbeat_latest(c, prev, what);
    g_heartbeat_answer(c, prev);
    wait_hb(c, s0 + 1, what);
    uint64_t seq = g_heartbeat_latest(c, p, what);
    uint64_t bad_seq = seq + 1;
    uint16_t type = VM_PKT_DATA_INBAND;
    uint64_t tid = p->d.trans_id;
    uint32_t len = p->len;
    struct icg_hdr h = icg_hdr_get(p->b);
    h.flags = ICG_TRANSACTION | ICG_RESPONSE;
    switch (kind) {
    case HBB_SEQ_PLUS2:
        bad_seq = seq + 2;
        break;
    case HBB_SEQ_STALE:
        bad_seq = seq;
        break;
    case HBB_SEQ_OLD:
        bad_seq = s0 + 1;
        break;
    case HBB_REPLAY: /* prev was answered already (prev now holds seq + 1) */
        memcpy(p, prev, sizeof(*p));
        tid = p->d.trans_id;
        len = p->len;
        h = icg_hdr_get(p->b);
        bad_seq = icg_rd64(p->b + ICG_HDRS);
        break;
    case HBB_GARBAGE:
        sim_fill_pattern(p->b, 72, 0x5eed);
        len = 72;
        break;
    case HBB_GARBAGE_BODY:
        memset(p->b + ICG_HDRS, 0xff, p->len - ICG_HDRS);
        bad_seq = icg_rd64(p->b + ICG_HDRS);
        break;
    case HBB_SHORT:
        len = ICG_HDRS + 4;
        break;
    case HBB_EFAIL:
        h.status = ICG_E_FAIL;
        break;
    case HBB_UNKNOWN_TID:
        tid = 0xdead0000u;
        break;
    case HBB_NOT_INBAND:
        type = VM_PKT_COMP;
        break;
    case HBB_NEGOTIATE_AGAIN:
        memcpy(p, neg, sizeof(*p));
        icg_negotiate(&icg_svcs[ICG_HB], p->b, p->len, NULL, NULL);
        tid = p->d.trans_id;
        len = p->len;
        h = icg_hdr_get(p->b);
        h.flags = ICG_TRANSACTION | ICG_RESPONSE;
        break;
    default:
        break;
    }
    if (kind != HBB_GARBAGE && kind != HBB_REPLAY && kind != HBB_NEGOTIATE_AGAIN &&
        kind != HBB_GARBAGE_BODY)
        icg_wr64(p->b + ICG_HDRS, bad_seq);
    if (kind != HBB_GARBAGE)
        icg_hdr_put(p->b, &h);
    long errors = guest_errors(v->name);
    int r = g_send(c, type, tid, p->b, len);
    SIM_ASSERT(r == 0, "%s: send %d", what, r);
    expect_warn(c, hbad[kind].needle, what);
    /* what vmbusctl list shows as the VM's guest errors counts it (the
     * warning came from the VSP, which has already counted it) */
    SIM_ASSERT(errors >= 0 && guest_errors(v->name) == errors + 1,
               "%s: guest errors %ld -> %ld, expected one more", what, errors,
               guest_errors(v->name));
    /* the status still holds the last good answer */
    char val[64], want[32];
    snprintf(want, sizeof(want), "%" PRIu64, s0 + 1);
    SIM_ASSERT(st_get(v->name, "heartbeat.seq", val, sizeof(val)) && strcmp(val, want) == 0,
               "%s: heartbeat.seq is %s, expected %s (bad answer taken?)", what, val, want);
    /* and the service goes on */
    g_heartbeat_ok(c, what);
    alive(f, what);
    print_message("  heartbeat %-40s warned, ignored; next heartbeat ok\n", what);
    icvm_free(v);
    free(neg);
    free(p);
    free(prev);
}

static void test_bad_heartbeat(void **state)
{
    struct fx *f = *state;
    fx_good_start(f);
    for (int k = 0; k < HBB_COUNT; k++)
        run_hb_case(f, (enum hbad)k);

    /* a guest that stops answering goes "late" (and back to "ok") */
    struct icvm *v = icvm_new(f, "hb-silent", 1u << ICG_HB);
    struct gch *c = &v->c[ICG_HB];
    g_negotiate(c, "silent guest");
    g_heartbeat_ok(c, "silent guest");
    SIM_ASSERT(st_wait(v->name, "heartbeat.state", "late", HB_LATE_MS + 3000),
               "heartbeat.state never became late");
    expect_warn(c, "no answer from the guest", "silent guest");
    g_heartbeat_ok(c, "silent guest back");
    alive(f, "silent guest");
    print_message("  heartbeat: unanswered for > late_ms -> state late + warning; ok again "
                  "after an answer\n");
    icvm_free(v);
}

/* ------------------------------------------------------------------ */
/* Bad KVP answers                                                      */

enum kbad {
    KB_KEY_BIG,
    KB_KEY_HUGE,
    KB_KEY_ODD,
    KB_KEY_ZERO,
    KB_KEY_EMPTY,
    KB_KEY_NONUL,
    KB_KEY_SURROGATE,
    KB_VAL_BIG,
    KB_VAL_HUGE,
    KB_VAL_ODD,
    KB_VAL_NONUL,
    KB_VAL_SURROGATE,
    KB_TYPE,
    KB_U32_SIZE,
    KB_SHORT,
    KB_HDR_SHORT,
    KB_OP,
    KB_POOL,
    KB_INDEX,
    KB_UNKNOWN_TID,
    KB_NOT_INBAND,
    KB_COUNT
};

static const struct {
    const char *tag, *what, *needle;
} kbad[KB_COUNT] = {
    [KB_KEY_BIG] = {"kv-keybig", "key size 514 (> 512)", "bad key size"},
    [KB_KEY_HUGE] = {"kv-keyhuge", "key size 0xffffffff", "bad key size"},
    [KB_KEY_ODD] = {"kv-keyodd", "key size 7 (odd)", "bad key size"},
    [KB_KEY_ZERO] = {"kv-keyzero", "key size 0", "bad key size"},
    [KB_KEY_EMPTY] = {"kv-keyempty", "empty key (size 2)", "empty key"},
    [KB_KEY_NONUL] = {"kv-keynonul", "key of 256 units without NUL", "key is not terminated"},
    [KB_KEY_SURROGATE] = {"kv-keysurr", "key with an unpaired surrogate",
                          "key is not terminated"},
    [KB_VAL_BIG] = {"kv-valbig", "value size 2050 (> 2048)", "bad value size"},
    [KB_VAL_HUGE] = {"kv-valhuge", "value size 0x80000000", "bad value size"},
    [KB_VAL_ODD] = {"kv-valodd", "value size 5 (odd)", "odd string value size"},
    [KB_VAL_NONUL] = {"kv-valnonul", "value of 1024 units without NUL",
                      "value is not terminated"},
    [KB_VAL_SURROGATE] = {"kv-valsurr", "value with a lone low surrogate",
                          "value is not terminated"},
    [KB_TYPE] = {"kv-type", "value type 99", "unknown value type"},
    [KB_U32_SIZE] = {"kv-u32", "REG_U32 value of 3 bytes", "bad u32 value size"},
    [KB_SHORT] = {"kv-short", "answer truncated to 100 body bytes", "enumerate answer of"},
    [KB_HDR_SHORT] = {"kv-hdrshort", "answer of 12 bytes", "shorter than the IC headers"},
    [KB_OP] = {"kv-op", "operation not echoed", "does not echo operation"},
    [KB_POOL] = {"kv-pool", "pool not echoed", "does not echo operation"},
    [KB_INDEX] = {"kv-index", "index 7 for index 0", "index 7"},
    [KB_UNKNOWN_TID] = {"kv-tid", "unknown trans_id", "kvp answer for trans_id"},
    [KB_NOT_INBAND] = {"kv-comp", "completion packet (not inband)", "packet type"},
};

static void run_kvp_case(struct fx *f, enum kbad kind)
{
    struct icvm *v = icvm_new(f, kbad[kind].tag, 1u << ICG_KV);
    struct pkt *p = malloc(sizeof(*p));
    SIM_ASSERT(p, "oom");
    const char *what = kbad[kind].what;
    struct gch *c = &v->c[ICG_KV];
    g_negotiate(c, what);
    /* the host enumerates the auto pool: answer index 0 badly */
    g_kvp_request(c, p, what);
    uint8_t *body = p->b + ICG_HDRS, *rec = body + 8;
    SIM_ASSERT(body[0] == ICG_KVP_ENUM && body[1] == 2 && icg_rd32(body + 4) == 0,
               "%s: first request op %u pool %u", what, body[0], body[1]);
    icg_kvp_rec_put(rec, "BadKey", "bad value");
    uint8_t *key = rec + 12, *val = rec + 12 + ICG_KVP_KEY;
    uint16_t type = VM_PKT_DATA_INBAND;
    uint64_t tid = p->d.trans_id;
    uint32_t len = p->len;
    switch (kind) {
    case KB_KEY_BIG: icg_wr32(rec + 4, 514); break;
    case KB_KEY_HUGE: icg_wr32(rec + 4, 0xffffffffu); break;
    case KB_KEY_ODD: icg_wr32(rec + 4, 7); break;
    case KB_KEY_ZERO: icg_wr32(rec + 4, 0); break;
    case KB_KEY_EMPTY:
        icg_wr16(key, 0);
        icg_wr32(rec + 4, 2);
        break;
    case KB_KEY_NONUL:
        for (uint32_t i = 0; i < ICG_KVP_KEY; i += 2)
            icg_wr16(key + i, 'A');
        icg_wr32(rec + 4, ICG_KVP_KEY);
        break;
    case KB_KEY_SURROGATE:
        icg_wr16(key, 0xd800);
        icg_wr16(key + 2, 'A');
        icg_wr16(key + 4, 0);
        icg_wr32(rec + 4, 6);
        break;
    case KB_VAL_BIG: icg_wr32(rec + 8, 2050); break;
    case KB_VAL_HUGE: icg_wr32(rec + 8, 0x80000000u); break;
    case KB_VAL_ODD: icg_wr32(rec + 8, 5); break;
    case KB_VAL_NONUL:
        for (uint32_t i = 0; i < ICG_KVP_VAL; i += 2)
            icg_wr16(val + i, 'B');
        icg_wr32(rec + 8, ICG_KVP_VAL);
        break;
    case KB_VAL_SURROGATE:
        icg_wr16(val, 0xdc00);
        icg_wr16(val + 2, 0);
        icg_wr32(rec + 8, 4);
        break;
    case KB_TYPE: icg_wr32(rec, 99); break;
    case KB_U32_SIZE:
        icg_wr32(rec, 4);
        icg_wr32(rec + 8, 3);
        break;
    case KB_SHORT: len = ICG_HDRS + 100; break;
    case KB_HDR_SHORT: len = 12; break;
    case KB_OP: body[0] = ICG_KVP_SET; break;
    case KB_POOL: body[1] = 3; break;
    case KB_INDEX: icg_wr32(body + 4, 7); break;
    case KB_UNKNOWN_TID: tid += 77; break;
    case KB_NOT_INBAND: type = VM_PKT_COMP; break;
    default: break;
    }
    struct icg_hdr h = icg_hdr_get(p->b);
    h.flags = ICG_TRANSACTION | ICG_RESPONSE;
    h.status = ICG_S_OK;
    icg_hdr_put(p->b, &h);
    int r = g_send(c, type, tid, p->b, len);
    SIM_ASSERT(r == 0, "%s: send %d", what, r);
    expect_warn(c, kbad[kind].needle, what);
    /* nothing of it published */
    char vbuf[64];
    SIM_ASSERT(!st_get(v->name, "kvp.2.BadKey", vbuf, sizeof(vbuf)),
               "%s: the bad record was published", what);
    if (kind == KB_UNKNOWN_TID || kind == KB_NOT_INBAND || kind == KB_HDR_SHORT) {
        /* ignored: the host still waits for index 0 - answer it properly */
        memset(rec, 0, 12 + ICG_KVP_KEY + ICG_KVP_VAL);
        g_kvp_answer_enum(c, p);
        /* and the rest of the enumeration follows */
        for (uint32_t i = 1; i <= 10; i++) {
            g_kvp_request(c, p, what);
            SIM_ASSERT(p->b[ICG_HDRS] == ICG_KVP_ENUM && icg_rd32(p->b + ICG_HDRS + 4) == i,
                       "%s: enumeration index %u", what, i);
            g_kvp_answer_enum(c, p);
        }
        SIM_ASSERT(st_wait(v->name, "kvp.2.OSName", "Debian GNU/Linux", 3000), "%s: OSName",
                   what);
    }
    /* the service still works */
    g_kvp_set_ok(c, "After", "bad answer", what);
    alive(f, what);
    print_message("  kvp %-46s warned, not published; kvp-set afterwards ok\n", what);
    icvm_free(v);
    free(p);
}

static void test_bad_kvp(void **state)
{
    struct fx *f = *state;
    fx_good_start(f);
    for (int k = 0; k < KB_COUNT; k++)
        run_kvp_case(f, (enum kbad)k);

    /* operator commands see the guest's bad / failed answers */
    struct icvm *v = icvm_new(f, "kv-ctl", 1u << ICG_KV);
    struct pkt *p = malloc(sizeof(*p));
    struct actl *a = calloc(1, sizeof(*a));
    SIM_ASSERT(p && a, "oom");
    struct gch *c = &v->c[ICG_KV];
    g_negotiate(c, "kvp control");
    g_kvp_serve_enum(c, 2, "kvp control");

    /* GET answered with an oversized value */
    actl_start(a, "control %s kvp kvp-get 1 SomeKey", v->name);
    g_kvp_request(c, p, "kvp-get");
    uint8_t *body = p->b + ICG_HDRS;
    SIM_ASSERT(body[0] == ICG_KVP_GET && body[1] == 1, "kvp-get op %u pool %u", body[0], body[1]);
    SIM_ASSERT(icg_u16_is(body + 4 + 12, icg_rd32(body + 8), "SomeKey"), "kvp-get key");
    icg_wr32(body + 4, 1);
    icg_wr32(body + 4 + 8, 9000);
    g_reply(c, p);
    const char *r = actl_join(a);
    SIM_ASSERT(a->ok && strstr(r, "\"ok\":false") && strstr(r, "malformed"),
               "kvp-get with a bad answer: %s", r);
    expect_warn(c, "bad value size", "kvp-get oversized value");

    /* SET refused by the guest (E_FAIL, what Linux sends without its daemon) */
    actl_start(a, "control %s kvp kvp-set 0 Refused value", v->name);
    g_kvp_expect_set(c, p, 0, "Refused", "value", "kvp-set refused");
    struct icg_hdr h = icg_hdr_get(p->b);
    h.status = ICG_E_FAIL;
    icg_hdr_put(p->b, &h);
    g_reply(c, p);
    r = actl_join(a);
    SIM_ASSERT(a->ok && strstr(r, "\"ok\":false") && strstr(r, "0x80004005"),
               "kvp-set refused: %s", r);

    /* SET answered with garbage (operation not echoed) */
    actl_start(a, "control %s kvp kvp-set 0 Garbled value", v->name);
    g_kvp_expect_set(c, p, 0, "Garbled", "value", "kvp-set garbled");
    memset(p->b + ICG_HDRS, 0xee, 8);
    g_reply(c, p);
    r = actl_join(a);
    SIM_ASSERT(a->ok && strstr(r, "\"ok\":false") && strstr(r, "malformed"),
               "kvp-set garbled: %s", r);
    expect_warn(c, "does not echo operation", "kvp-set garbled");

    /* no answer at all: the control command times out, a late answer is
     * ignored, the next request works */
    actl_start(a, "control %s kvp kvp-set 0 Slow value", v->name);
    g_kvp_expect_set(c, p, 0, "Slow", "value", "kvp-set slow");
    r = actl_join(a);
    SIM_ASSERT(a->ok && strstr(r, "\"ok\":false"), "kvp-set unanswered: %s", r);
    SIM_ASSERT(sim_log_wait(5000, LOG_WARN, v->name, "no answer to op", NULL),
               "kvp: no timeout warning");
    g_reply(c, p); /* late */
    expect_warn(c, "kvp answer for trans_id", "late kvp answer");
    g_kvp_set_ok(c, "Fast", "value", "kvp after timeout");
    alive(f, "kvp control");
    print_message("  kvp control: bad GET answer -> 'malformed', SET E_FAIL -> guest status, "
                  "garbled SET -> 'malformed', no answer -> timeout, late answer ignored\n");
    icvm_free(v);
    free(a);
    free(p);
}

/* ------------------------------------------------------------------ */
/* Shutdown and timesync refusals                                      */

static void test_bad_shutdown_timesync(void **state)
{
    struct fx *f = *state;
    fx_good_start(f);
    struct icvm *v = icvm_new(f, "sd-refuse", (1u << ICG_SD) | (1u << ICG_TS));
    struct pkt *p = malloc(sizeof(*p));
    struct actl *a = calloc(1, sizeof(*a));
    SIM_ASSERT(p && a, "oom");
    struct gch *sd = &v->c[ICG_SD], *ts = &v->c[ICG_TS];
    g_negotiate(sd, "shutdown");
    g_negotiate(ts, "timesync");

    /* the guest refuses: E_FAIL (Linux: hibernate without hibernation) */
    actl_start(a, "control %s shutdown shutdown poweroff", v->name);
    g_must_recv(sd, p, "shutdown E_FAIL");
    struct icg_hdr h = icg_hdr_get(p->b);
    SIM_ASSERT(h.type == ICG_T_SHUTDOWN && p->len >= ICG_HDRS + ICG_SHUTDOWN_BODY,
               "shutdown request type %u len %u", h.type, p->len);
    h.status = ICG_E_FAIL;
    icg_hdr_put(p->b, &h);
    g_reply(sd, p);
    const char *r = actl_join(a);
    SIM_ASSERT(a->ok && strstr(r, "\"ok\":false") && strstr(r, "refused") &&
                   strstr(r, "E_FAIL"),
               "shutdown refused: control reply %s", r);
    expect_warn(sd, "0x80004005", "shutdown E_FAIL");
    print_message("  shutdown answered E_FAIL -> control: %s\n", r);

    /* hibernate answered like Linux without hibernation support */
    actl_start(a, "control %s shutdown shutdown hibernate", v->name);
    g_must_recv(sd, p, "hibernate");
    SIM_ASSERT(icg_shutdown_flags(p->b) == 4, "hibernate flags %u", icg_shutdown_flags(p->b));
    h = icg_hdr_get(p->b);
    h.status = ICG_E_FAIL;
    icg_hdr_put(p->b, &h);
    g_reply(sd, p);
    r = actl_join(a);
    SIM_ASSERT(a->ok && strstr(r, "refused"), "hibernate refused: %s", r);

    /* no answer: the command times out; the late answer is ignored */
    actl_start(a, "control %s shutdown shutdown reboot", v->name);
    g_must_recv(sd, p, "shutdown unanswered");
    r = actl_join(a);
    SIM_ASSERT(a->ok && strstr(r, "\"ok\":false") && strstr(r, "no answer"),
               "shutdown unanswered: %s", r);
    g_reply(sd, p);
    expect_warn(sd, "unexpected shutdown reply", "late shutdown answer");

    /* an answer nobody asked for */
    p->d.trans_id = 4242;
    g_reply(sd, p);
    expect_warn(sd, "trans_id 4242", "unsolicited shutdown answer");
    g_shutdown_ok(sd, "poweroff", 0, "shutdown after refusals");

    /* timesync: E_FAIL and a trans_id never sent are ignored.  Answer what
     * queued up meanwhile (stale by now), then take a fresh SYNC. */
    unsigned long drained = 0;
    while (g_recv(ts, p, 0)) {
        g_reply(ts, p);
        drained++;
    }
    SIM_ASSERT(drained >= 1, "no SYNC after the timesync negotiation");
    SIM_ASSERT(ts_wait_answered(v->name, drained, 3000), "timesync answers");
    r = ctl("control %s timesync timesync sync", v->name);
    SIM_ASSERT(strstr(r, "\"ok\":true"), "timesync sync: %s", r);
    g_timesync(ts, p, "timesync");
    unsigned long answers = ts_answered(v->name);
    h = icg_hdr_get(p->b);
    h.status = ICG_E_FAIL;
    icg_hdr_put(p->b, &h);
    g_reply(ts, p);
    expect_warn(ts, "timesync reply with status", "timesync E_FAIL");
    h.status = ICG_S_OK;
    icg_hdr_put(p->b, &h);
    p->d.trans_id = 0x7fffffff;
    g_reply(ts, p);
    expect_warn(ts, "never sent", "timesync unknown trans_id");
    SIM_ASSERT(ts_answered(v->name) == answers, "bad timesync answers counted");
    r = ctl("control %s timesync timesync sync", v->name);
    SIM_ASSERT(strstr(r, "\"ok\":true"), "timesync sync: %s", r);
    for (;;) {
        g_timesync(ts, p, "timesync after refusals");
        uint8_t fl = ts_flags(ts, p);
        g_reply(ts, p);
        if (fl == 1)
            break;
    }
    SIM_ASSERT(ts_wait_answered(v->name, answers + 1, 3000), "timesync answers");
    alive(f, "shutdown/timesync refusals");
    print_message("  shutdown: timeout reported, late/unsolicited answers warned; timesync "
                  "E_FAIL / unknown trans_id warned, not counted\n");
    icvm_free(v);
    free(a);
    free(p);
}

/* ------------------------------------------------------------------ */
/* Control commands racing with the guest                               */

/* Close and reopen a channel (hv_utils unbound and bound again). */
static void g_reopen(struct gch *c, const char *what)
{
    SIM_ASSERT(sim_chan_close(c->ch) == 0, "%s: close %s", what, icg_svcs[c->s].name);
    c->ready = false;
    int st = 0;
    c->ch = sim_chan_open(c->v->vm, c->relid, ICG_RING_PAGES, ICG_RING_PAGES, &st);
    SIM_ASSERT(c->ch != NULL, "%s: reopen %s: %d", what, icg_svcs[c->s].name, st);
}

static void test_control_races(void **state)
{
    struct fx *f = *state;
    fx_good_start(f);
    struct icvm *v = icvm_new(f, "races", (1u << ICG_SD) | (1u << ICG_KV));
    struct pkt *p = malloc(sizeof(*p));
    struct actl *a = calloc(1, sizeof(*a));
    SIM_ASSERT(p && a, "oom");
    struct gch *sd = &v->c[ICG_SD], *kv = &v->c[ICG_KV];
    g_negotiate(sd, "races");
    g_negotiate(kv, "races");
    g_kvp_serve_enum(kv, 2, "races");

    /* a second shutdown while one is outstanding: -EBUSY */
    actl_start(a, "control %s shutdown shutdown poweroff", v->name);
    g_must_recv(sd, p, "busy");
    const char *r = ctl("control %s shutdown shutdown reboot", v->name);
    SIM_ASSERT(strstr(r, "\"ok\":false") && strstr(r, "outstanding"), "second shutdown: %s", r);
    g_reply(sd, p);
    r = actl_join(a);
    SIM_ASSERT(a->ok && strstr(r, "accepted"), "first shutdown: %s", r);

    /* the guest closes the channel instead of answering */
    actl_start(a, "control %s shutdown shutdown poweroff", v->name);
    g_must_recv(sd, p, "close mid-request");
    uint64_t t0 = sim_now_ms();
    g_reopen(sd, "close mid-request");
    r = actl_join(a);
    uint64_t took = sim_now_ms() - t0;
    SIM_ASSERT(a->ok && strstr(r, "\"ok\":false") && strstr(r, "closed"),
               "shutdown when the channel closes: %s", r);
    print_message("  shutdown pending, guest closes the channel -> %s (%" PRIu64 " ms)\n", r,
                  took);
    g_negotiate(sd, "reopened");
    g_shutdown_ok(sd, "poweroff", 0, "shutdown after reopen");

    /* the same for KVP; after the reopen the host pushes its pool 0 again */
    actl_start(a, "control %s kvp kvp-set 0 Pushed again", v->name);
    g_kvp_expect_set(kv, p, 0, "Pushed", "again", "kvp close mid-request");
    g_reopen(kv, "kvp close mid-request");
    r = actl_join(a);
    SIM_ASSERT(a->ok && strstr(r, "\"ok\":false"), "kvp-set when the channel closes: %s", r);
    print_message("  kvp-set pending, guest closes the channel -> %s\n", r);
    g_negotiate(kv, "kvp reopened");
    g_kvp_expect_set(kv, p, 0, "Pushed", "again", "pool 0 pushed after renegotiation");
    g_reply(kv, p);
    g_kvp_serve_enum(kv, 2, "kvp reopened");
    g_kvp_set_ok(kv, "Fresh", "value", "kvp after reopen");

    /* the VM disappears while commands wait for it */
    struct actl *b = calloc(1, sizeof(*b));
    SIM_ASSERT(b != NULL, "oom");
    actl_start(a, "control %s shutdown shutdown reboot", v->name);
    g_must_recv(sd, p, "vm gone");
    actl_start(b, "control %s kvp kvp-set 0 Gone value", v->name);
    g_kvp_expect_set(kv, p, 0, "Gone", "value", "vm gone");
    t0 = sim_now_ms();
    sim_vm_free(v->vm);
    v->vm = NULL;
    /* meanwhile other partitions are served at once */
    usleep(100000);
    uint64_t t1 = sim_now_ms();
    fx_good_check(f, "VM gone with commands pending");
    uint64_t echo_ms = sim_now_ms() - t1;
    const char *ra = actl_join(a), *rb = actl_join(b);
    took = sim_now_ms() - t0;
    print_message("  healthy partition's echo while the teardown waits: %" PRIu64 " ms\n",
                  echo_ms);
    /* vmbusd bug (reported): conn_teardown_work spins on a worker until the
     * pending commands time out; with SIM_WORKERS=1 every other partition
     * stalls that long and this fails. */
    SIM_ASSERT(echo_ms < 1500, "healthy partition stalled %" PRIu64 " ms while a gone VM's "
               "control commands waited", echo_ms);
    SIM_ASSERT(a->ok && strstr(ra, "\"ok\":false"), "shutdown when the VM goes: %s", ra);
    SIM_ASSERT(b->ok && strstr(rb, "\"ok\":false"), "kvp-set when the VM goes: %s", rb);
    print_message("  VM disconnects with shutdown + kvp-set pending -> answered in %" PRIu64
                  " ms:\n    %s\n    %s\n", took, ra, rb);
    SIM_ASSERT(took < 6000, "control commands hung %" PRIu64 " ms after the VM went", took);
    r = ctl("control %s shutdown shutdown poweroff", v->name);
    SIM_ASSERT(strstr(r, "\"ok\":false"), "command for a gone VM: %s", r);
    alive(f, "control races");
    free(b);
    free(a);
    free(p);
    free(v);
}

/* ------------------------------------------------------------------ */
/* KVP before hv_kvp_daemon runs                                        */

/* Linux reads the KVP negotiate only once its daemon registered: until
 * then kvp-set on pool 0 is stored, everything else is refused, and the
 * stored keys go out right after the (late) negotiation. */
static void test_kvp_no_daemon(void **state)
{
    struct fx *f = *state;
    fx_good_start(f);
    struct icvm *v = icvm_new(f, "kv-nodaemon", 1u << ICG_KV);
    struct pkt *neg = malloc(sizeof(*neg)), *p = malloc(sizeof(*p));
    SIM_ASSERT(neg && p, "oom");
    struct gch *kv = &v->c[ICG_KV];
    g_get_negotiate(kv, neg, "no daemon");
    const char *r = ctl("control %s kvp kvp-set 0 Early bird", v->name);
    SIM_ASSERT(strstr(r, "\"ok\":true") && strstr(r, "stored"), "kvp-set before ready: %s", r);
    r = ctl("control %s kvp kvp-get 1 Early", v->name);
    SIM_ASSERT(strstr(r, "\"ok\":false") && strstr(r, "not ready"), "kvp-get before ready: %s",
               r);
    r = ctl("control %s kvp kvp-status", v->name);
    SIM_ASSERT(strstr(r, "negotiating"), "kvp-status before ready: %s", r);
    SIM_ASSERT(!g_recv(kv, p, 200), "the host sent a KVP message before the negotiation");
    /* the daemon starts: the negotiate is answered at last */
    g_answer_negotiate(kv, neg, "late negotiation");
    g_kvp_expect_set(kv, p, 0, "Early", "bird", "stored key pushed");
    g_reply(kv, p);
    g_kvp_serve_enum(kv, 2, "after late negotiation");
    g_kvp_set_ok(kv, "Late", "too", "kvp after late negotiation");
    alive(f, "kvp without daemon");
    print_message("  kvp without daemon: kvp-set 0 stored, kvp-get refused; stored key pushed "
                  "right after the late negotiation\n");
    icvm_free(v);
    free(p);
    free(neg);
}

/* ------------------------------------------------------------------ */
/* Oddities: observed and reported, the contract asserted               */

static void test_oddities(void **state)
{
    struct fx *f = *state;
    fx_good_start(f);
    struct icvm *v = icvm_new(f, "odd", 0xf);
    struct pkt *p = malloc(sizeof(*p));
    SIM_ASSERT(p, "oom");
    icvm_negotiate_all(v, "oddities");

    /* the same timesync answer three more times */
    struct gch *ts = &v->c[ICG_TS];
    g_timesync(ts, p, "timesync replay");
    g_reply(ts, p);
    SIM_ASSERT(ts_wait_answered(v->name, 1, 3000), "timesync answer");
    unsigned long n0 = ts_answered(v->name);
    for (int i = 0; i < 3; i++)
        g_reply(ts, p);
    usleep(100000);
    unsigned long n1 = ts_answered(v->name);
    print_message("  timesync: one answer replayed 3 times -> answered count %lu -> %lu%s\n", n0,
                  n1, n1 > n0 ? " (replays counted: no per-request tracking)" : "");

    /* the auto pool enumerates more distinct keys than publish_max (64) */
    struct gch *kv = &v->c[ICG_KV];
    unsigned items = 0;
    for (uint32_t i = 0;; i++) {
        g_kvp_request(kv, p, "many keys");
        uint8_t *body = p->b + ICG_HDRS;
        SIM_ASSERT(body[0] == ICG_KVP_ENUM && icg_rd32(body + 4) == i, "enumerate index %u", i);
        struct icg_hdr h = icg_hdr_get(p->b);
        if (i < 80) {
            char key[32], val[32];
            snprintf(key, sizeof(key), "Key%02u", i);
            snprintf(val, sizeof(val), "Value%02u", i);
            icg_kvp_rec_put(body + 8, key, val);
            h.status = ICG_S_OK;
            items++;
        } else {
            h.status = ICG_S_CONT;
        }
        icg_hdr_put(p->b, &h);
        g_reply(kv, p);
        if (i >= 80)
            break;
    }
    SIM_ASSERT(sim_log_wait(3000, LOG_WARN, v->name, "publish_max", NULL),
               "no warning when the guest reports more keys than publish_max");
    char val[64];
    SIM_ASSERT(st_get(v->name, "kvp.2.Key00", val, sizeof(val)) && strcmp(val, "Value00") == 0,
               "kvp.2.Key00");
    SIM_ASSERT(!st_get(v->name, "kvp.2.Key79", val, sizeof(val)), "key beyond publish_max published");
    print_message("  kvp: %u distinct keys enumerated -> first 64 published, then a warning\n",
                  items);

    /* a guest packet far larger than any IC answer */
    struct gch *hb = &v->c[ICG_HB];
    uint8_t *big = calloc(1, 11000);
    SIM_ASSERT(big != NULL, "oom");
    struct icg_hdr bh = {.fw = {3, 0}, .type = ICG_T_HEARTBEAT, .ver = {3, 0}, .size = 10000,
                    .flags = ICG_TRANSACTION | ICG_RESPONSE};
    memcpy(big + 8, &bh, sizeof(bh));
    int r = g_send(hb, VM_PKT_DATA_INBAND, 31337, big, 11000);
    free(big);
    SIM_ASSERT(r == 0, "send 11000 bytes: %d", r);
    for (int i = 0; i < 20; i++)
        sim_poll(v->vm, 5);
    struct sim_offer *of = sim_find_offer(v->vm, hb->relid);
    bool rescinded = of && of->rescinded;
    /* well-formed, only long: the heartbeat VSP ignores it and goes on */
    SIM_ASSERT(!rescinded, "heartbeat channel rescinded for an 11000-byte packet");
    g_heartbeat_ok(hb, "after a big packet");
    print_message("  heartbeat: 11000-byte guest packet -> ignored\n");
    alive(f, "oddities");
    icvm_free(v);
    free(p);
}

/* ------------------------------------------------------------------ */
/* Packets nobody asked for                                             */

static void test_flood(void **state)
{
    struct fx *f = *state;
    fx_good_start(f);
    struct icvm *v = icvm_new(f, "flood", 0xf);
    struct pkt *p = malloc(sizeof(*p));
    SIM_ASSERT(p, "oom");
    icvm_negotiate_all(v, "flood");
    g_kvp_serve_enum(&v->c[ICG_KV], 2, "flood");
    int before = sim_log_count(LOG_DEBUG, v->name, NULL, NULL);
    const int per_chan = 1500;
    uint64_t t0 = sim_now_ms();
    for (int s = 0; s < ICG_NSVC; s++) {
        struct gch *c = &v->c[s];
        for (int i = 0; i < per_chan; i++) {
            uint8_t b[96];
            uint32_t len = 16 + (uint32_t)(i * 7) % 80;
            uint16_t type = VM_PKT_DATA_INBAND;
            sim_fill_pattern(b, sizeof(b), (uint64_t)i);
            struct icg_hdr h = {.fw = {3, 0}, .type = icg_svcs[s].type, .ver = {3, 0},
                           .size = (uint16_t)(len > ICG_HDRS ? len - ICG_HDRS : 0),
                           .flags = ICG_TRANSACTION | ICG_RESPONSE};
            switch (i % 5) {
            case 0: /* plausible answer to nothing */
                len = 72;
                memcpy(b + 8, &h, sizeof(h));
                break;
            case 1: /* negotiate answer out of season */
                h.type = ICG_T_NEGOTIATE;
                len = ICG_HDRS + 16;
                memcpy(b + 8, &h, sizeof(h));
                icg_wr16(b + ICG_HDRS, 1);
                icg_wr16(b + ICG_HDRS + 2, 1);
                break;
            case 2: /* not inband */
                type = (uint16_t)(i % 2 ? VM_PKT_COMP : VM_PKT_DATA_USING_GPA_DIRECT);
                break;
            default: /* garbage */
                break;
            }
            int r = g_send(c, type, 1000000u + (uint64_t)i, b, len);
            SIM_ASSERT(r == 0, "flood %s packet %d: %d", icg_svcs[s].name, i, r);
            if (i % 64 == 0)
                sim_poll(v->vm, 0);
        }
    }
    uint64_t took = sim_now_ms() - t0;
    /* every channel still works */
    g_heartbeat_ok(&v->c[ICG_HB], "after flood");
    g_shutdown_ok(&v->c[ICG_SD], "poweroff", 0, "after flood");
    g_kvp_set_ok(&v->c[ICG_KV], "Flood", "over", "after flood");
    const char *r = ctl("control %s timesync timesync sync", v->name);
    SIM_ASSERT(strstr(r, "\"ok\":true"), "timesync after flood: %s", r);
    for (;;) {
        g_timesync(&v->c[ICG_TS], p, "timesync after flood");
        uint8_t fl = ts_flags(&v->c[ICG_TS], p);
        g_reply(&v->c[ICG_TS], p);
        if (fl == 1)
            break;
    }
    for (int s = 0; s < ICG_NSVC; s++)
        expect_warn(&v->c[s], "bad guest message", "flood");
    int lines = sim_log_count(LOG_DEBUG, v->name, NULL, NULL) - before;
    print_message("  flood: %d unsolicited packets on 4 IC channels in %" PRIu64
                  " ms -> %d log lines; every service still answers\n", per_chan * ICG_NSVC, took,
                  lines);
    SIM_ASSERT(lines <= 250, "%d unsolicited packets produced %d log lines (rate limit?)",
               per_chan * ICG_NSVC, lines);
    alive(f, "flood");
    icvm_free(v);
    free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_good, ic_setup, ic_teardown),
        cmocka_unit_test_setup_teardown(test_bad_negotiate, ic_setup, ic_teardown),
        cmocka_unit_test_setup_teardown(test_bad_heartbeat, ic_setup, ic_teardown),
        cmocka_unit_test_setup_teardown(test_bad_kvp, ic_setup, ic_teardown),
        cmocka_unit_test_setup_teardown(test_bad_shutdown_timesync, ic_setup, ic_teardown),
        cmocka_unit_test_setup_teardown(test_control_races, ic_setup, ic_teardown),
        cmocka_unit_test_setup_teardown(test_kvp_no_daemon, ic_setup, ic_teardown),
        cmocka_unit_test_setup_teardown(test_oddities, ic_setup, ic_teardown),
        cmocka_unit_test_setup_teardown(test_flood, ic_setup, ic_teardown),
    };
    SIM_RUN("sim_ic", tests);
}
