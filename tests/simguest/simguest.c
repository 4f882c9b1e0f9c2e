/* SPDX-License-Identifier: MIT */
/*
 * vmbus-simguest: a demo and diagnostic client for a running vmbusd.
 *
 * It plays a VMM and its guest at once (the tests/sim simulator: memfd RAM,
 * SynIC pages, irqfds, and a guest VMBus driver that behaves like Linux 6.1's
 * hv_vmbus), connects to vmbusd's vmbus-user socket and says in plain words
 * what happens: the VMBus version negotiated, every offer, each channel
 * opened.  On echo channels it sends packets and checks every echo; on the
 * heartbeat, shutdown and timesync channels it answers like Linux's hv_utils
 * (IC version negotiation, heartbeats, time samples, shutdown requests).
 * After --seconds it closes the channels, sends UNLOAD and exits 0 only if
 * everything checked out.
 *
 * The integration-service guest side is tests/icguest/ic_guest.c, shared
 * with the sim and unit tests: written from the guest's point of view (docs:
 * linux-guest-contract section 4), independently of vmbusd's own src/vsp/ic
 * code, so the two check each other.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "common/guid.h"
#include "ic_guest.h"
#include "simvm.h"
#include "vmbusd/hv_guids.h"

/* hv_utils guest side: tests/icguest/ic_guest.h.  Echo channels: */
#define G_ECHO_RING_PAGES 8u
#define G_ECHO_MAX_LEN 4000u

enum kind { K_UNKNOWN, K_ECHO, K_HEARTBEAT, K_SHUTDOWN, K_TIMESYNC, K_KVP, K_VSS, K_FCOPY };

struct svc {
    enum kind kind;
    const char *name;
    const char *guid;
    const struct icg_svc *ic; /* an integration service: how Linux answers it */
    const char *why_not;      /* set: offered but not opened */
};

static const struct svc svcs[] = {
    {K_ECHO, "echo", HV_CLASS_ECHO, NULL, NULL},
    {K_HEARTBEAT, "heartbeat", HV_CLASS_HEARTBEAT, &icg_svcs[ICG_HB], NULL},
    {K_SHUTDOWN, "shutdown", HV_CLASS_SHUTDOWN, &icg_svcs[ICG_SD], NULL},
    {K_TIMESYNC, "timesync", HV_CLASS_TIMESYNC, &icg_svcs[ICG_TS], NULL},
    {K_KVP, "kvp", HV_CLASS_KVP, &icg_svcs[ICG_KV],
     "Linux answers it only when hv_kvp_daemon runs; this demo has none"},
    {K_VSS, "vss (backup)", HV_CLASS_VSS, NULL, "needs hv_vss_daemon"},
    {K_FCOPY, "fcopy (file copy)", HV_CLASS_FCOPY, NULL, "needs hv_fcopy_daemon"},
};

static const struct svc unknown_svc = {K_UNKNOWN, "unknown", "", NULL,
                                       "no driver for this class"};

static const struct svc *svc_of(const struct hv_guid *g)
{
    for (size_t i = 0; i < sizeof(svcs) / sizeof(svcs[0]); i++) {
        struct hv_guid x;
        if (guid_parse(svcs[i].guid, &x) == 0 && guid_equal(&x, g))
            return &svcs[i];
    }
    return &unknown_svc;
}

/* ------------------------------------------------------------------ */
/* State and output                                                     */

struct gchan {
    const struct svc *svc;
    struct sim_chan *ch;
    uint32_t relid;
    /* echo */
    uint64_t echoed, echo_bytes, echo_comp;
    /* IC */
    bool negotiated, neg_failed;
    struct icg_ver fw, ver;
    uint64_t heartbeats, timesyncs, shutdowns, other, dropped;
    uint64_t last_seq;
};

static struct {
    struct sim_vm *vm;
    struct gchan ch[SIM_MAX_CHANNELS];
    int nch;
    int failures;
    uint64_t t0;
    bool quiet_ts; /* do not print every timesync sample */
} g;

/* SIGINT / SIGTERM: stop early but still close the channels and UNLOAD; a
 * second signal kills (SA_RESETHAND). */
static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static double elapsed(void) { return (double)(sim_now_ms() - g.t0) / 1000.0; }

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
    va_list ap;
    printf("[%7.3f] ", elapsed());
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
}

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fail(const char *fmt, ...)
{
    va_list ap;
    g.failures++;
    printf("[%7.3f] PROBLEM: ", elapsed());
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
}

/* ------------------------------------------------------------------ */
/* Connecting to an external vmbusd                                     */

/* sim_vm_new() for a daemon this process did not start: the same memory,
 * vCPU and socket setup, pointed at an arbitrary vmbus-user socket.  Only
 * the public simulator API and struct sim_vm are used.  path must outlive
 * the VM.  NULL (reason printed) on failure. */
static struct sim_vm *simguest_vm_connect(const char *path, const char *name, uint32_t vcpus,
                                          uint64_t mem_size)
{
    struct sim_vm *vm = calloc(1, sizeof(*vm));
    if (!vm)
        return NULL;
    vm->sock = vm->memfd = -1;
    for (uint32_t i = 0; i < SIM_MAX_VCPUS; i++)
        vm->vp[i].irqfd = vm->vp[i].resamplefd = -1;
    vm->q = calloc(SIM_MSGQ_LEN, sizeof(*vm->q));
    snprintf(vm->name, sizeof(vm->name), "%s", name);
    vm->mem_size = mem_size;
    vm->vcpus = vcpus;
    vm->consume_msgs = true;
    vm->next_gpadl = 0xE1E10u;       /* what Linux's first GPADL handle looks like */
    vm->alloc_next = vm->alloc_floor = 1u << 20;
    vm->msg_conn_id = VMBUS_MESSAGE_CONNECTION_ID;
    vm->sock_path = path;
    if (!vm->q)
        goto fail;
    /* vmbusd takes only a memfd that cannot shrink under its mapping. */
    vm->memfd = memfd_create(vm->name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (vm->memfd < 0 || ftruncate(vm->memfd, (off_t)mem_size) < 0 ||
        fcntl(vm->memfd, F_ADD_SEALS, F_SEAL_SHRINK) < 0) {
        perror("vmbus-simguest: guest RAM (memfd)");
        goto fail;
    }
    vm->mem = mmap(NULL, mem_size, PROT_READ | PROT_WRITE, MAP_SHARED, vm->memfd, 0);
    if (vm->mem == MAP_FAILED) {
        vm->mem = NULL;
        perror("vmbus-simguest: mmap guest RAM");
        goto fail;
    }
    for (uint32_t i = 0; i < vcpus; i++) {
        vm->vp[i].simp_off = sim_alloc_pages(vm, 1);
        vm->vp[i].siefp_off = sim_alloc_pages(vm, 1);
        vm->vp[i].irqfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        vm->vp[i].resamplefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (vm->vp[i].irqfd < 0 || vm->vp[i].resamplefd < 0) {
            perror("vmbus-simguest: eventfd");
            goto fail;
        }
    }
    vm->int_page_off = sim_alloc_pages(vm, 1);
    vm->mon1_off = sim_alloc_pages(vm, 1);
    vm->mon2_off = sim_alloc_pages(vm, 1);
    vm->alloc_floor = vm->alloc_next;

    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path)) {
        fprintf(stderr, "vmbus-simguest: socket path too long: %s\n", path);
        goto fail;
    }
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    vm->sock = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (vm->sock < 0 || connect(vm->sock, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        fprintf(stderr, "vmbus-simguest: cannot connect to %s: %s\n", path, strerror(errno));
        fprintf(stderr, "  (is vmbusd running with --socket %s ?)\n", path);
        goto fail;
    }
    int r = sim_vmm_setup(vm);
    if (r < 0) {
        fprintf(stderr, "vmbus-simguest: vmbus-user setup (HELLO ...) failed: %s%s%s\n",
                strerror(-r), vm->error[0] ? "; vmbusd said: " : "", vm->error);
        goto fail;
    }
    return vm;
fail:
    sim_vm_free(vm);
    return NULL;
}

/* ------------------------------------------------------------------ */
/* hv_utils behaviour                                                   */

static const char *ver_list(const struct icg_ver *v, unsigned n, char *buf, size_t len)
{
    size_t o = 0;
    buf[0] = 0;
    for (unsigned i = 0; i < n && o + 12 < len; i++)
        o += (size_t)snprintf(buf + o, len - o, "%s%u.%u", i ? " " : "", v[i].major, v[i].minor);
    return buf;
}

/* Answer the negotiate request in pkt in place, as Linux does, and say what
 * happened.  Returns true if both a framework and a message version matched. */
static bool answer_negotiate(struct gchan *c, uint8_t *pkt, uint32_t len)
{
    const struct icg_svc *s = c->svc->ic;
    unsigned nfw = 0, nmsg = 0;
    char a[256], b[256];
    if (len >= ICG_HDRS + 4) {
        nfw = icg_rd16(pkt + ICG_HDRS);
        nmsg = icg_rd16(pkt + ICG_HDRS + 2);
    }
    if (nfw <= ICG_MAX_VERCNT && nmsg <= ICG_MAX_VERCNT && ICG_HDRS + 8 + 4 * (nfw + nmsg) <= len) {
        struct icg_ver host[2 * ICG_MAX_VERCNT];
        memcpy(host, pkt + ICG_HDRS + 8, 4 * (size_t)(nfw + nmsg));
        say("%s: host offers framework %s, message %s", c->svc->name,
            ver_list(host, nfw, a, sizeof(a)), ver_list(host + nfw, nmsg, b, sizeof(b)));
    }
    struct icg_ver fw, mv;
    switch (icg_negotiate(s, pkt, len, &fw, &mv)) {
    case ICG_NEG_OK:
        c->negotiated = true;
        c->fw = fw;
        c->ver = mv;
        say("%s: negotiated framework %u.%u, message version %u.%u (Linux accepts %s)",
            c->svc->name, fw.major, fw.minor, mv.major, mv.minor,
            ver_list(s->msg, s->nmsg, a, sizeof(a)));
        return true;
    case ICG_NEG_SHORT:
        fail("%s: negotiate of %u bytes is too short for the counts; replied unchanged, as "
             "Linux does", c->svc->name, len);
        break;
    case ICG_NEG_BAD_COUNTS:
        fail("%s: invalid negotiate (framework count %u, message count %u, %u bytes)",
             c->svc->name, nfw, nmsg, len);
        break;
    case ICG_NEG_NO_MATCH:
        fail("%s: no common version (Linux accepts framework %s, message %s); replying 0/0",
             c->svc->name, ver_list(s->fw, 2, a, sizeof(a)),
             ver_list(s->msg, s->nmsg, b, sizeof(b)));
        break;
    }
    c->neg_failed = true;
    return false;
}

static void fmt_host_time(uint64_t t100ns, char *buf, size_t len, double *offset_ms)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    if (t100ns < ICG_EPOCH) {
        snprintf(buf, len, "(before 1970: %" PRIu64 ")", t100ns);
        *offset_ms = 0;
        return;
    }
    uint64_t u = t100ns - ICG_EPOCH;
    time_t s = (time_t)(u / 10000000u);
    unsigned ms = (unsigned)((u % 10000000u) / 10000u);
    struct tm tm;
    gmtime_r(&s, &tm);
    char d[40];
    strftime(d, sizeof(d), "%Y-%m-%d %H:%M:%S", &tm);
    snprintf(buf, len, "%s.%03u UTC", d, ms);
    double ours = (double)now.tv_sec * 1e3 + (double)now.tv_nsec / 1e6;
    *offset_ms = (double)u / 1e4 - ours;
}

/* One host->guest IC packet: handle it and reply in place, or drop it as
 * Linux would. */
static void ic_packet(struct gchan *c, const struct vmpacket_descriptor *d, uint8_t *pkt,
                      uint32_t len)
{
    if (len < ICG_HDRS) {
        fail("%s: %u-byte packet is shorter than the IC headers; Linux drops it", c->svc->name,
             len);
        c->dropped++;
        return;
    }
    struct icg_hdr h = icg_hdr_get(pkt);
    uint32_t status = h.status;
    if (h.type == ICG_T_NEGOTIATE) {
        answer_negotiate(c, pkt, len);
        status = icg_hdr_get(pkt).status;
    } else if (h.type == c->svc->ic->type && c->svc->kind == K_HEARTBEAT) {
        if (len < ICG_HDRS + 8) {
            fail("heartbeat: %u bytes, too short for the sequence number; dropped", len);
            c->dropped++;
            return;
        }
        uint64_t seq = icg_heartbeat_seq(pkt);
        if (!c->negotiated)
            fail("heartbeat: seq %" PRIu64 " arrived before the version negotiation", seq);
        if (c->heartbeats && seq <= c->last_seq)
            fail("heartbeat: seq %" PRIu64 " after %" PRIu64 " (not increasing)", seq,
                 c->last_seq);
        c->last_seq = seq;
        icg_heartbeat_answer(pkt);
        c->heartbeats++;
        say("heartbeat %" PRIu64 " answered (seq %" PRIu64 " -> %" PRIu64 ")", c->heartbeats,
            seq, seq + 1);
    } else if (h.type == c->svc->ic->type && c->svc->kind == K_TIMESYNC) {
        uint32_t need = icg_timesync_len(c->ver);
        if (len < need) {
            fail("timesync: %u bytes, version %u.%u needs %u; dropped (Linux too)", len,
                 c->ver.major, c->ver.minor, need);
            c->dropped++;
            return; /* Linux stops reading without replying */
        }
        uint8_t flags = icg_timesync_flags(pkt, c->ver);
        char when[64];
        double off;
        fmt_host_time(icg_timesync_host_time(pkt), when, sizeof(when), &off);
        c->timesyncs++;
        const char *what = flags == ICG_TS_SYNC     ? "SYNC (a Linux guest steps its clock)"
                         : flags == ICG_TS_SAMPLE ? "SAMPLE"
                         : flags == ICG_TS_PROBE  ? "PROBE"
                                                  : "unknown flags";
        if (!g.quiet_ts || c->timesyncs == 1)
            say("timesync %s: host time %s (%+.1f ms from this host's clock), answered", what,
                when, off);
    } else if (h.type == c->svc->ic->type && c->svc->kind == K_SHUTDOWN) {
        if (len < ICG_HDRS + ICG_SHUTDOWN_BODY) {
            fail("shutdown: %u bytes, needs %u; dropped (Linux too)", len,
                 ICG_HDRS + ICG_SHUTDOWN_BODY);
            c->dropped++;
            return;
        }
        uint32_t flags = icg_shutdown_flags(pkt);
        const char *what;
        switch (flags) {
        case 0: case 1: what = "power off"; break;
        case 2: case 3: what = "reboot"; break;
        case 4: case 5: what = "hibernate (not enabled: refused)"; break;
        default: what = "invalid request (refused)"; break;
        }
        status = icg_shutdown_status(flags);
        c->shutdowns++;
        say("shutdown request: %s%s (reason 0x%x, timeout %u s); answered %s%s", what,
            flags & 1 ? ", forced" : "", icg_shutdown_reason(pkt), icg_shutdown_timeout(pkt),
            status == ICG_S_OK ? "S_OK" : "E_FAIL",
            status == ICG_S_OK ? " - a Linux guest would now do it; this one keeps running" : "");
    } else {
        status = ICG_E_FAIL;
        c->other++;
        say("%s: message type %u is not for this service; answered E_FAIL", c->svc->name,
            h.type);
    }
    h = icg_hdr_get(pkt);
    h.status = status;
    icg_hdr_put(pkt, &h);
    icg_make_response(pkt);
    uint64_t end = sim_now_ms() + 2000;
    int r;
    while ((r = sim_chan_send(c->ch, VM_PKT_DATA_INBAND, 0, d->trans_id, pkt, len)) == -EAGAIN &&
           sim_now_ms() < end)
        sim_poll(g.vm, 10);
    if (r != 0)
        fail("%s: sending the reply failed: %s", c->svc->name, strerror(-r));
}

static void service_ic(void)
{
    static uint8_t buf[ICG_BUF_UTIL + 64];
    for (int i = 0; i < g.nch; i++) {
        struct gchan *c = &g.ch[i];
        if (!c->ch || !c->ch->open || c->svc->kind == K_ECHO)
            continue;
        for (;;) {
            struct vmpacket_descriptor d;
            uint32_t len = 0;
            memset(buf, 0, sizeof(buf));
            if (sim_chan_try_recv(c->ch, &d, buf, ICG_BUF_UTIL, &len) != 1)
                break;
            if (len > ICG_BUF_UTIL) {
                fail("%s: %u-byte packet exceeds the 4 KiB hv_utils buffer", c->svc->name, len);
                len = ICG_BUF_UTIL;
            }
            if (d.type != VM_PKT_DATA_INBAND) {
                fail("%s: packet type %u (expected inband data)", c->svc->name, d.type);
                continue;
            }
            ic_packet(c, &d, buf, len);
        }
    }
}

/* ------------------------------------------------------------------ */
/* Echo                                                                 */

static void run_echo(struct gchan *c, uint32_t packets)
{
    uint64_t t0 = sim_now_ms();
    for (uint32_t i = 0; i < packets && !stop_requested; i++) {
        uint32_t len = 1 + (uint32_t)(((uint64_t)i * 977) % G_ECHO_MAX_LEN);
        bool comp = i & 1;
        int r = sim_echo_roundtrip(c->ch, len, 1000 + i, comp);
        if (r != 0) {
            fail("echo relid %u: packet %u (%u bytes) %s", c->relid, i + 1, len,
                 r == -ETIMEDOUT ? "got no echo" : "came back wrong");
            return;
        }
        c->echoed++;
        c->echo_bytes += len;
        c->echo_comp += comp;
        if ((i & 63) == 63)
            service_ic(); /* keep answering heartbeats meanwhile */
    }
    say("echo relid %u: %" PRIu64 " packets sent, %" PRIu64 " echoes checked, %" PRIu64
        " bytes verified (%" PRIu64 " came back as completions) in %.0f ms",
        c->relid, (uint64_t)packets, c->echoed, c->echo_bytes, c->echo_comp,
        (double)(sim_now_ms() - t0));
}

/* ------------------------------------------------------------------ */

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: vmbus-simguest [OPTIONS]\n"
            "\n"
            "Connects to a running vmbusd as a simulated VM (VMM + Linux-like guest),\n"
            "negotiates VMBus, lists the offers, exercises echo channels and answers the\n"
            "heartbeat, shutdown and timesync services like Linux's hv_utils, then\n"
            "closes everything and sends UNLOAD.  Exit status 0 only if all checked out.\n"
            "\n"
            "  -s, --socket PATH    vmbusd's vmbus-user socket\n"
            "                       (default /run/vmbusd/vmbus-user.sock)\n"
            "  -n, --name VM        VM name sent in HELLO; selects [vm NAME] in vmbusd's\n"
            "                       configuration (default simguest)\n"
            "  -v, --version X.Y    VMBus version to ask for (default: the newest vmbusd\n"
            "                       accepts, trying 5.3 down to 0.13 like Linux)\n"
            "  -p, --packets N      packets per echo channel (default 100)\n"
            "  -t, --seconds S      how long to keep answering the integration services\n"
            "                       (default 3)\n"
            "  -q, --quiet-timesync print only the first timesync message\n"
            "  -w, --wait-ms MS     how long each step waits for vmbusd (default 5000; a\n"
            "                       host that drops replies, as vmbusd-guestfuzz may, costs\n"
            "                       this much per drop)\n"
            "  -h, --help           this text\n");
}

static bool parse_version(const char *s, uint32_t *v)
{
    unsigned maj, min;
    char extra;
    if (sscanf(s, "%u.%u%c", &maj, &min, &extra) != 2 || maj > 0xffff || min > 0xffff)
        return false;
    *v = VMBUS_VERSION(maj, min);
    return true;
}

static const char *offer_kind(const struct sim_offer *o)
{
    if (o->monitor_allocated)
        return "monitored (MNF)";
    return o->is_dedicated_interrupt ? "dedicated interrupt" : "shared interrupt";
}

/* Print the offers not listed yet and mark them listed. */
static void list_offers(bool *listed)
{
    for (int i = 0; i < g.vm->noffers; i++) {
        const struct sim_offer *o = &g.vm->offers[i];
        if (!o->valid || o->rescinded || listed[i])
            continue;
        listed[i] = true;
        char cls[GUID_STR_LEN], inst[GUID_STR_LEN];
        guid_format(&o->if_type, cls);
        guid_format(&o->if_instance, inst);
        const struct svc *s = svc_of(&o->if_type);
        printf("            relid %-3u %-10s class %s  instance %s  (connection id %#x, %s)\n",
               o->relid, s->name, cls, inst, o->connection_id, offer_kind(o));
    }
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"socket", required_argument, NULL, 's'},  {"name", required_argument, NULL, 'n'},
        {"version", required_argument, NULL, 'v'}, {"packets", required_argument, NULL, 'p'},
        {"seconds", required_argument, NULL, 't'}, {"quiet-timesync", no_argument, NULL, 'q'},
        {"wait-ms", required_argument, NULL, 'w'}, {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *sock = "/run/vmbusd/vmbus-user.sock", *name = "simguest";
    uint32_t want_version = 0, packets = 100;
    double seconds = 3;
    int c;
    char *end;
    while ((c = getopt_long(argc, argv, "s:n:v:p:t:w:qh", opts, NULL)) != -1) {
        switch (c) {
        case 's': sock = optarg; break;
        case 'n': name = optarg; break;
        case 'v':
            if (!parse_version(optarg, &want_version)) {
                fprintf(stderr, "vmbus-simguest: --version wants MAJOR.MINOR, e.g. 5.3\n");
                return 2;
            }
            break;
        case 'p': {
            unsigned long n = strtoul(optarg, &end, 10);
            if (*end || !*optarg || n > 100000000ul) {
                fprintf(stderr, "vmbus-simguest: --packets wants a number\n");
                return 2;
            }
            packets = (uint32_t)n;
            break;
        }
        case 't':
            seconds = strtod(optarg, &end);
            if (*end || !*optarg || seconds < 0 || seconds > 86400) {
                fprintf(stderr, "vmbus-simguest: --seconds wants a number of seconds\n");
                return 2;
            }
            break;
        case 'w': {
            unsigned long ms = strtoul(optarg, &end, 10);
            if (*end || !*optarg || ms < 10 || ms > 600000) {
                fprintf(stderr, "vmbus-simguest: --wait-ms wants 10..600000\n");
                return 2;
            }
            sim_timeout_ms = (int)ms;
            break;
        }
        case 'q': g.quiet_ts = true; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "vmbus-simguest: unexpected argument '%s' (see --help)\n", argv[optind]);
        return 2;
    }
    if (strlen(name) >= VU_VM_NAME_LEN) {
        fprintf(stderr, "vmbus-simguest: --name is longer than %d bytes\n", VU_VM_NAME_LEN - 1);
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    g.t0 = sim_now_ms();
    struct sigaction sa = {.sa_handler = on_signal, .sa_flags = SA_RESETHAND};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    /* ---- VMM: connect and describe the VM ---- */
    const uint32_t vcpus = 2;
    const uint64_t mem = 64u << 20;
    say("connecting to vmbusd at %s as VM \"%s\"", sock, name);
    struct sim_vm *vm = simguest_vm_connect(sock, name, vcpus, mem);
    if (!vm)
        return 1;
    g.vm = vm;
    say("vmbusd accepted the VMM (vmbus-user %u.%u, partition id %u); gave it %u vCPUs and "
        "%" PRIu64 " MiB of guest RAM",
        VU_PROTOCOL_MAJOR, VU_PROTOCOL_MINOR, vm->partition_id, vcpus, mem >> 20);

    /* ---- guest: VMBus version ---- */
    int rc = 1;
    if (want_version) {
        int r = sim_connect_version(vm, want_version);
        if (r != 1) {
            fail("vmbusd %s VMBus version %s", r == 0 ? "refused" : "did not answer for",
                 sim_version_str(want_version));
            goto out;
        }
    } else {
        static const uint32_t order[] = {
            VMBUS_VERSION_WIN10_V5_3, VMBUS_VERSION_WIN10_V5_2, VMBUS_VERSION_WIN10_V5_1,
            VMBUS_VERSION_WIN10_V5,   VMBUS_VERSION_WIN10_RS3,  VMBUS_VERSION_WIN10,
            VMBUS_VERSION_WIN8_1,     VMBUS_VERSION_WIN8,       VMBUS_VERSION_WIN7,
            VMBUS_VERSION_WS2008,
        };
        for (size_t i = 0; i < sizeof(order) / sizeof(order[0]) && !vm->version; i++) {
            int r = sim_connect_version(vm, order[i]);
            if (r < 0) {
                fail("no answer to INITIATE_CONTACT %s: %s", sim_version_str(order[i]),
                     strerror(-r));
                goto out;
            }
            if (r == 0)
                say("VMBus version %s refused, trying an older one", sim_version_str(order[i]));
        }
        if (!vm->version) {
            fail("vmbusd refused every VMBus version");
            goto out;
        }
    }
    say("VMBus version %s negotiated (guest messages go to connection id %u)",
        sim_version_str(vm->version), vm->msg_conn_id);

    /* ---- offers ---- */
    int n = sim_request_offers(vm);
    if (n < 0) {
        fail("REQUESTOFFERS: %s", strerror(-n));
        goto out;
    }
    say("%d offer%s received before ALLOFFERS_DELIVERED%s", n, n == 1 ? "" : "s",
        n ? ":" : "");
    bool listed[SIM_MAX_CHANNELS] = {false};
    list_offers(listed);
    /* Offers may still come after ALLOFFERS_DELIVERED (hot add; Linux takes
     * them).  Give late ones a moment so the demo shows and opens them. */
    uint64_t t_all = sim_now_ms(), quiet = t_all;
    /* up to 1 s for a first offer; otherwise until none came for 200 ms */
    for (int seen = vm->noffers;
         sim_now_ms() < t_all + 1000 && (vm->noffers == 0 || sim_now_ms() < quiet + 200);) {
        sim_poll(vm, 20);
        if (vm->noffers != seen) {
            seen = vm->noffers;
            quiet = sim_now_ms();
        }
    }
    int late = 0;
    for (int i = 0; i < vm->noffers; i++)
        late += vm->offers[i].valid && !vm->offers[i].rescinded && !listed[i];
    if (late) {
        say("note: %d more offer%s arrived after ALLOFFERS_DELIVERED (hot add):", late,
            late == 1 ? "" : "s");
        list_offers(listed);
    }
    if (n + late == 0)
        fail("no offers at all - does vmbusd's configuration give VM \"%s\" any VSP "
             "([vm %s] or [vm default])?", name, name);

    /* ---- open channels ---- */
    for (int i = 0; i < vm->noffers; i++) {
        const struct sim_offer *o = &vm->offers[i];
        if (!o->valid || o->rescinded)
            continue;
        const struct svc *s = svc_of(&o->if_type);
        if (s->why_not) {
            say("relid %u (%s): not opened - %s", o->relid, s->name, s->why_not);
            continue;
        }
        uint32_t pages = s->kind == K_ECHO ? G_ECHO_RING_PAGES : ICG_RING_PAGES;
        vm->max_pkt = s->kind == K_ECHO ? 0 : ICG_BUF_UTIL;
        int st = 0;
        struct sim_chan *ch = sim_chan_open(vm, o->relid, pages, pages, &st);
        if (!ch) {
            fail("relid %u (%s): open failed (status %d)", o->relid, s->name, st);
            continue;
        }
        struct gchan *gc = &g.ch[g.nch++];
        memset(gc, 0, sizeof(*gc));
        gc->svc = s;
        gc->ch = ch;
        gc->relid = o->relid;
        say("relid %u (%s): opened, rings %u KiB each way incl. header page (ring GPADL %#x)",
            o->relid, s->name, pages * 4, ch->gpadl);
    }
    service_ic();

    /* ---- echo channels ---- */
    for (int i = 0; i < g.nch; i++)
        if (g.ch[i].svc->kind == K_ECHO)
            run_echo(&g.ch[i], packets);

    /* ---- integration services for S seconds ---- */
    bool have_ic = false;
    for (int i = 0; i < g.nch; i++)
        have_ic |= g.ch[i].svc->kind != K_ECHO;
    if (have_ic) {
        say("answering the integration services for %g s ...", seconds);
        uint64_t start = sim_now_ms(), until = start + (uint64_t)(seconds * 1000);
        for (;;) {
            sim_poll(vm, 20);
            service_ic();
            if (vm->dead || stop_requested)
                break;
            /* past --seconds, keep going (up to 5 s) only for a negotiation
             * still under way */
            bool pending = false;
            for (int i = 0; i < g.nch; i++)
                pending |= g.ch[i].svc->kind != K_ECHO && !g.ch[i].negotiated &&
                           !g.ch[i].neg_failed;
            uint64_t now = sim_now_ms();
            if (now >= until && (!pending || now >= start + 5000))
                break;
        }
    }
    if (vm->dead) {
        fail("vmbusd closed the connection%s%s", vm->error[0] ? ": " : "", vm->error);
        goto out;
    }
    if (stop_requested)
        say("interrupted: closing down early");

    /* ---- close and unload ---- */
    for (int i = 0; i < g.nch; i++) {
        struct gchan *gc = &g.ch[i];
        int r = sim_chan_close(gc->ch);
        if (r != 0)
            fail("relid %u (%s): close failed: %s", gc->relid, gc->svc->name, strerror(-r));
        else
            say("relid %u (%s): closed, ring GPADL torn down", gc->relid, gc->svc->name);
    }
    if (vm->version >= VMBUS_VERSION_WIN8_1) {
        int r = sim_unload(vm);
        if (r != 0)
            fail("UNLOAD: %s", strerror(-r));
        else
            say("UNLOAD acknowledged by vmbusd (UNLOAD_RESPONSE)");
    } else {
        say("VMBus %s has no UNLOAD (Linux skips it before 3.0)", sim_version_str(vm->version));
    }

    /* ---- verdict ---- */
    printf("\nsummary:\n");
    for (int i = 0; i < g.nch; i++) {
        struct gchan *gc = &g.ch[i];
        switch (gc->svc->kind) {
        case K_ECHO:
            printf("  echo      relid %-3u %" PRIu64 "/%u echoes verified, %" PRIu64 " bytes\n",
                   gc->relid, gc->echoed, packets, gc->echo_bytes);
            break;
        default:
            printf("  %-9s relid %-3u ", gc->svc->name, gc->relid);
            if (gc->negotiated)
                printf("version %u.%u (framework %u.%u)", gc->ver.major, gc->ver.minor,
                       gc->fw.major, gc->fw.minor);
            else
                printf("not negotiated");
            if (gc->svc->kind == K_HEARTBEAT)
                printf(", %" PRIu64 " heartbeats answered", gc->heartbeats);
            if (gc->svc->kind == K_TIMESYNC)
                printf(", %" PRIu64 " time messages answered", gc->timesyncs);
            if (gc->svc->kind == K_SHUTDOWN)
                printf(", %" PRIu64 " shutdown requests", gc->shutdowns);
            printf("\n");
            if (!gc->negotiated && !gc->neg_failed)
                fail("%s: vmbusd never sent the version negotiation", gc->svc->name);
            if (gc->svc->kind == K_HEARTBEAT && gc->negotiated && gc->heartbeats == 0)
                fail("heartbeat: no heartbeat arrived in %g s", seconds);
            if (gc->svc->kind == K_TIMESYNC && gc->negotiated && gc->timesyncs == 0)
                printf("            note: no time message arrived (vmbusd sends one right after"
                       " negotiation)\n");
            break;
        }
        if (gc->svc->kind == K_ECHO && gc->echoed != packets && !g.failures && !stop_requested)
            fail("echo relid %u: only %" PRIu64 " of %u echoes", gc->relid, gc->echoed, packets);
    }
    if (vm->bad_host_msgs)
        fail("%" PRIu64 " channel messages from vmbusd that Linux would reject",
             vm->bad_host_msgs);
    if (vm->error[0])
        fail("vmbusd reported an error: %s", vm->error);
    if (g.failures == 0)
        rc = 0;
out:
    if (rc == 0)
        printf("result: OK - everything checked out\n");
    else
        printf("result: FAILED (%d problem%s above)\n", g.failures ? g.failures : 1,
               g.failures == 1 ? "" : "s");
    sim_vm_free(vm);
    return rc;
}
