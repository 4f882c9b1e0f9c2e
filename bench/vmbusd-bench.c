/* SPDX-License-Identifier: MIT */
/*
 * vmbusd-bench: how fast is the VMBus data path, relative to this machine?
 *
 * Baselines (what the hardware and kernel give for free):
 *   - memcpy bandwidth: 64 MiB buffer to buffer copies (DRAM bound); for
 *     information also 64 KiB copies that stay in cache.
 *   - eventfd ping-pong: two threads wake each other through a pair of
 *     eventfds (blocking read); one round trip = two wake-ups.  For
 *     information also a 3-thread relay, the shape of an echo through vmbusd
 *     (guest -> vmbusd event loop -> worker -> guest).
 *
 * Measured: the guest simulator (tests/sim: a Linux-like hv_vmbus guest in
 * this process) talks to vmbusd, also in this process (its own event-loop and
 * worker threads), through one echo VSP channel with 1 MiB rings each way:
 *   - streaming: the guest keeps its guest->host ring full and drains the
 *     echoes as they come (packets/s and payload MB/s, one direction), for
 *     64 B, 1 KiB and 64 KiB packets; median of 8 half-second slices;
 *   - round trip: one 64 B packet out, wait for its echo, repeat.
 * Every echo is checked: type, trans_id, length, and content (all of it for
 * round trips and the first 64 packets of each stream slice, the first and
 * last 8 bytes for the rest of a slice).
 *
 * Storage baseline: io_uring reading and writing a file on tmpfs directly
 * from one thread (4 KiB random reads at queue depth 1 and 32, 1 MiB
 * sequential reads and writes at depth 4), then the same loads through the
 * storage VSP's backend queue (src/vsp/storvsp) on io_uring and, for
 * information, on its thread pool: the cost of that layer.  storvsp's own
 * figures (a simulated storvsc guest) are to be compared with this baseline.
 *
 * Ratios: stream MB/s / memcpy MB/s; stream packets/s x eventfd round trip
 * (packets moved per eventfd round-trip time); echo round trip / eventfd
 * round trip (p50 to p50, p99 to p99).
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "bench.h"
#include "simvm.h"
#include "stor_load.h"
#include "stor_sim.h"

#define MIB (1024u * 1024u)
#define RING_PAGES 257u /* 1 header page + 1 MiB of data, each way */
#define FULL_CHECK_PKTS 64u
#define STREAM_SLICES 8

bool quick, verbose, net_tap_only;
const char *net_tap_load;

/* The 1-minute load average, or -1. */
double loadavg(void)
{
    double l = -1;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &l) != 1)
            l = -1;
        fclose(f);
    }
    return l;
}

double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* q-quantile (0..1) of v[0..n), sorts v. */
double quantile(double *v, size_t n, double q)
{
    if (n == 0)
        return 0;
    qsort(v, n, sizeof(*v), cmp_double);
    size_t i = (size_t)(q * (double)(n - 1) + 0.5);
    return v[i < n ? i : n - 1];
}

/* ------------------------------------------------------------------ */
/* Results                                                              */

struct figure {
    char name[40];    /* machine-readable name */
    char label[48];   /* table label */
    double value;
    const char *unit; /* machine-readable unit (ASCII) */
    const char *tunit; /* table unit */
    double ratio;     /* < 0: none */
    const char *vs;   /* what the ratio compares with */
};

static struct figure figs[64];
static int nfigs;

void add_fig(const char *name, const char *label, double value, const char *unit,
             const char *tunit, double ratio, const char *vs)
{
    if (nfigs >= (int)(sizeof(figs) / sizeof(figs[0])))
        return;
    struct figure *f = &figs[nfigs++];
    snprintf(f->name, sizeof(f->name), "%s", name);
    snprintf(f->label, sizeof(f->label), "%s", label);
    f->value = value;
    f->unit = unit;
    f->tunit = tunit;
    f->ratio = ratio;
    f->vs = vs;
}

static void fmt_value(char *buf, size_t len, double v)
{
    if (v >= 1000)
        snprintf(buf, len, "%.0f", v);
    else if (v >= 10)
        snprintf(buf, len, "%.1f", v);
    else
        snprintf(buf, len, "%.2f", v);
}

/* The figures as a table: value, unit, ratio to the baseline it is
 * compared with. */
void print_table(void)
{
    printf("\n%-36s %12s %-6s %9s  %s\n", "figure", "value", "unit", "ratio", "ratio is");
    for (int i = 0; i < nfigs; i++) {
        char v[32], r[32];
        fmt_value(v, sizeof(v), figs[i].value);
        if (figs[i].ratio < 0)
            snprintf(r, sizeof(r), "-");
        else if (figs[i].ratio < 0.01)
            snprintf(r, sizeof(r), "%.5f", figs[i].ratio);
        else
            snprintf(r, sizeof(r), "%.3f", figs[i].ratio);
        /* %-6s pads by bytes: "µs" is 3 bytes for 2 columns */
        printf("%-36s %12s %-*s %9s  %s\n", figs[i].label, v,
               strcmp(figs[i].tunit, "µs") == 0 ? 7 : 6, figs[i].tunit, r,
               figs[i].ratio < 0 ? "(baseline)" : figs[i].vs);
    }
}

/* The figures as machine-readable lines: BENCH <name> <value> <unit> <ratio>. */
void print_bench_lines(void)
{
    for (int i = 0; i < nfigs; i++) {
        char v[32];
        if (figs[i].value >= 1000)
            snprintf(v, sizeof(v), "%.0f", figs[i].value);
        else
            snprintf(v, sizeof(v), "%.4g", figs[i].value);
        if (figs[i].ratio < 0)
            printf("BENCH %s %s %s -\n", figs[i].name, v, figs[i].unit);
        else
            printf("BENCH %s %s %s %.4g\n", figs[i].name, v, figs[i].unit, figs[i].ratio);
    }
}

/* ------------------------------------------------------------------ */
/* Baselines                                                            */

static double bench_memcpy(void)
{
    const size_t len = 64 * MIB;
    uint8_t *a = malloc(len), *b = malloc(len);
    if (!a || !b) {
        fprintf(stderr, "vmbusd-bench: out of memory for the memcpy baseline\n");
        exit(1);
    }
    memset(a, 0x5a, len);
    memset(b, 0xa5, len);
    memcpy(b, a, len); /* warm up: both buffers faulted in and cached in the TLB */
    int reps = quick ? 4 : 24;
    double rates[24];
    for (int i = 0; i < reps; i++) {
        a[i] = (uint8_t)i; /* keep the compiler from merging copies */
        double t0 = now_s();
        memcpy(i & 1 ? a : b, i & 1 ? b : a, len);
        double t = now_s() - t0;
        rates[i] = (double)len / t / 1e6;
    }
    volatile uint8_t sink = a[len - 1] ^ b[len / 2];
    (void)sink;
    free(a);
    free(b);
    return quantile(rates, (size_t)reps, 0.5); /* MB/s */
}

/* 64 KiB copies over and over between two buffers that stay in cache: the
 * copy speed an echo of 64 KiB packets through 1 MiB rings can reach. */
static double bench_memcpy_cached(void)
{
    const size_t len = 64 * 1024;
    uint8_t *a = malloc(len), *b = malloc(len);
    if (!a || !b) {
        fprintf(stderr, "vmbusd-bench: out of memory\n");
        exit(1);
    }
    memset(a, 0x5a, len);
    memset(b, 0xa5, len);
    int reps = quick ? 5 : 25, inner = 2000;
    double rates[25];
    for (int i = 0; i < reps; i++) {
        double t0 = now_s();
        for (int k = 0; k < inner; k++) {
            a[k & 1023] = (uint8_t)k;
            memcpy(k & 1 ? a : b, k & 1 ? b : a, len);
        }
        rates[i] = (double)len * inner / (now_s() - t0) / 1e6;
    }
    volatile uint8_t sink = a[len - 1] ^ b[len / 2];
    (void)sink;
    free(a);
    free(b);
    return quantile(rates, (size_t)reps, 0.5);
}

/* A ring of eventfd wake-ups: thread 0 writes fd[0], thread i reads fd[i-1]
 * and writes fd[i], thread 0 reads fd[hops-1].  hops = 2 is the classic
 * ping-pong; hops = 3 has the shape of an echo through vmbusd (guest ->
 * vmbusd event loop -> worker -> guest). */
#define MAX_HOPS 3

struct relay {
    int fd[MAX_HOPS];
    int hops, n;
};

struct relay_arg {
    struct relay *r;
    int idx;
};

static void *relay_thread(void *arg)
{
    struct relay_arg *a = arg;
    uint64_t v;
    for (int i = 0; i < a->r->n; i++) {
        if (read(a->r->fd[a->idx - 1], &v, sizeof(v)) != sizeof(v))
            break;
        v = 1;
        if (write(a->r->fd[a->idx], &v, sizeof(v)) != sizeof(v))
            break;
    }
    return NULL;
}

/* Round trips through 'hops' threads, in µs: p50 and p99. */
void bench_eventfd(int hops, double *p50, double *p99)
{
    int warm = quick ? 500 : 2000, n = quick ? 3000 : 20000;
    struct relay r = {.hops = hops, .n = warm + n};
    struct relay_arg args[MAX_HOPS];
    pthread_t t[MAX_HOPS];
    double *rtt = calloc((size_t)n, sizeof(double));
    for (int i = 0; i < hops; i++)
        if ((r.fd[i] = eventfd(0, EFD_CLOEXEC)) < 0 || !rtt) {
            fprintf(stderr, "vmbusd-bench: eventfd baseline setup failed\n");
            exit(1);
        }
    for (int i = 1; i < hops; i++) {
        args[i] = (struct relay_arg){.r = &r, .idx = i};
        if (pthread_create(&t[i], NULL, relay_thread, &args[i])) {
            fprintf(stderr, "vmbusd-bench: pthread_create failed\n");
            exit(1);
        }
    }
    for (int i = 0; i < warm + n; i++) {
        uint64_t v = 1, t0 = now_ns();
        if (write(r.fd[0], &v, sizeof(v)) != sizeof(v) ||
            read(r.fd[hops - 1], &v, sizeof(v)) != sizeof(v)) {
            fprintf(stderr, "vmbusd-bench: eventfd relay failed\n");
            exit(1);
        }
        if (i >= warm)
            rtt[i - warm] = (double)(now_ns() - t0) / 1000.0;
    }
    for (int i = 1; i < hops; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < hops; i++)
        close(r.fd[i]);
    *p99 = quantile(rtt, (size_t)n, 0.99);
    *p50 = quantile(rtt, (size_t)n, 0.5);
    free(rtt);
}

/* ------------------------------------------------------------------ */
/* Echo through vmbusd                                                   */

struct stream_result {
    uint64_t packets;
    double seconds;
    bool ok;
};

/* Check one echo of packet number seq (trans_id seq, first 8 payload bytes
 * = seq, the rest the template). */
static bool check_echo(const struct vmpacket_descriptor *d, const uint8_t *in, uint32_t got,
                       const uint8_t *tmpl, uint32_t len, uint64_t seq, bool full)
{
    uint64_t tag;
    if (d->type != VM_PKT_DATA_INBAND || d->trans_id != seq || got < len || got > ((len + 7) & ~7u)) {
        fprintf(stderr,
                "vmbusd-bench: bad echo #%llu: type %u trans_id %llu length %u (want %u)\n",
                (unsigned long long)seq, d->type, (unsigned long long)d->trans_id, got, len);
        return false;
    }
    if (len >= 8) {
        memcpy(&tag, in, 8);
        if (tag != seq)
            goto differs;
        if (full ? memcmp(in + 8, tmpl + 8, len - 8) != 0
                 : memcmp(in + len - 8, tmpl + len - 8, 8) != 0)
            goto differs;
    } else if (memcmp(in, tmpl, len) != 0) {
        goto differs;
    }
    return true;
differs:
    fprintf(stderr, "vmbusd-bench: echo #%llu (%u bytes): payload differs\n",
            (unsigned long long)seq, len);
    return false;
}

/* Stream len-byte packets for 'seconds': keep the outbound ring full, drain
 * echoes.  Then stop sending and drain what is in flight. */
static struct stream_result stream(struct sim_chan *ch, uint32_t len, double seconds,
                                   uint64_t *trans)
{
    struct stream_result res = {0};
    uint8_t *tmpl = malloc(len + 8), *out = malloc(len + 8), *in = malloc(len + 64);
    if (!tmpl || !out || !in) {
        fprintf(stderr, "vmbusd-bench: out of memory\n");
        goto done;
    }
    sim_fill_pattern(tmpl, len, len);
    memcpy(out, tmpl, len);
    uint32_t need = 16 + ((len + 7) & ~7u) + 8;
    uint64_t first = *trans, next_send = first, next_recv = first;
    double t0 = now_s(), stop = t0 + seconds, deadline = stop + 10;
    bool sending = true;
    for (;;) {
        bool progress = false;
        uint64_t ev = ch->events;
        if (sending && now_s() >= stop)
            sending = false;
        while (sending) {
            if (len >= 8)
                memcpy(out, &next_send, 8);
            int r = sim_chan_send(ch, VM_PKT_DATA_INBAND, 0, next_send, out, len);
            if (r == -EAGAIN) {
                /* ask to be signalled when there is room (hv_sock style) */
                __atomic_store_n(&ch->out.hdr->pending_send_sz, need, __ATOMIC_SEQ_CST);
                break;
            }
            if (r != 0) {
                fprintf(stderr, "vmbusd-bench: send failed: %s\n", strerror(-r));
                goto done;
            }
            __atomic_store_n(&ch->out.hdr->pending_send_sz, 0, __ATOMIC_SEQ_CST);
            next_send++;
            progress = true;
        }
        /* drain with the interrupt masked, then unmask and look again */
        struct vmpacket_descriptor d;
        uint32_t got = 0;
        while (sim_chan_recv_batched(ch, &d, in, len + 64, &got) == 1) {
            if (!check_echo(&d, in, got, tmpl, len, next_recv,
                            next_recv - first < FULL_CHECK_PKTS))
                goto done;
            next_recv++;
            progress = true;
        }
        if (!sending && next_recv == next_send)
            break;
        if (!progress) {
            double left = deadline - now_s();
            if (left <= 0 || !sim_chan_wait_event(ch, ev, (int)(left * 1000) + 1)) {
                fprintf(stderr, "vmbusd-bench: %u-byte stream stalled: %llu sent, %llu echoed\n",
                        len, (unsigned long long)(next_send - first),
                        (unsigned long long)(next_recv - first));
                goto done;
            }
        }
    }
    res.seconds = now_s() - t0;
    res.packets = next_recv - first;
    res.ok = true;
done:
    if (ch->out.hdr)
        __atomic_store_n(&ch->out.hdr->pending_send_sz, 0, __ATOMIC_SEQ_CST);
    *trans += res.packets + 1000000;
    free(tmpl);
    free(out);
    free(in);
    return res;
}

uint64_t ring_full_waits;

/* Send one packet; if the guest->host ring is full, wait for room as a
 * Linux writer does (pending_send_sz, then the host's signal).  In a round
 * trip every earlier packet has been echoed, so a full ring means vmbusd
 * consumed the packets without publishing its read index yet: counted in
 * ring_full_waits. */
static int send_or_wait(struct sim_chan *ch, uint64_t seq, const void *out, uint32_t len)
{
    int r = sim_chan_send(ch, VM_PKT_DATA_INBAND, 0, seq, out, len);
    if (r != -EAGAIN)
        return r;
    ring_full_waits++;
    uint32_t need = 16 + ((len + 7) & ~7u) + 8;
    uint64_t end = sim_now_ms() + 5000;
    for (;;) {
        uint64_t ev = ch->events;
        __atomic_store_n(&ch->out.hdr->pending_send_sz, need, __ATOMIC_SEQ_CST);
        r = sim_chan_send(ch, VM_PKT_DATA_INBAND, 0, seq, out, len);
        if (r != -EAGAIN || sim_now_ms() >= end)
            break;
        sim_chan_wait_event(ch, ev, (int)(end - sim_now_ms()) + 1);
    }
    __atomic_store_n(&ch->out.hdr->pending_send_sz, 0, __ATOMIC_SEQ_CST);
    return r;
}

/* n round trips of len bytes; fills rtt[] (µs).  false on any error. */
bool roundtrips(struct sim_chan *ch, uint32_t len, int n, double *rtt, uint64_t *trans)
{
    uint8_t *tmpl = malloc(len + 8), *out = malloc(len + 8), *in = malloc(len + 64);
    bool ok = false;
    if (!tmpl || !out || !in)
        goto done;
    sim_fill_pattern(tmpl, len, len + 1);
    memcpy(out, tmpl, len);
    for (int i = 0; i < n; i++) {
        uint64_t seq = (*trans)++;
        if (len >= 8)
            memcpy(out, &seq, 8);
        uint64_t t0 = now_ns();
        int r = send_or_wait(ch, seq, out, len);
        if (r != 0) {
            fprintf(stderr, "vmbusd-bench: round trip %d: send failed: %s\n", i, strerror(-r));
            goto done;
        }
        struct vmpacket_descriptor d;
        uint32_t got = 0;
        if (sim_chan_recv(ch, &d, in, len + 64, &got, 5000) != 1) {
            fprintf(stderr, "vmbusd-bench: round trip %d: no echo within 5 s\n", i);
            goto done;
        }
        if (rtt)
            rtt[i] = (double)(now_ns() - t0) / 1000.0;
        if (!check_echo(&d, in, got, tmpl, len, seq, true))
            goto done;
    }
    ok = true;
done:
    free(tmpl);
    free(out);
    free(in);
    return ok;
}

static const struct {
    const char *tag, *label;
    struct stor_load load;
    bool bw; /* figure in MB/s, else IOPS */
} stor_loads[] = {
    { "4k_randread_qd1", "4K rand read QD1", { 4096, 1, false, true, 0 }, false },
    { "4k_randread_qd32", "4K rand read QD32", { 4096, 32, false, true, 0 }, false },
    { "1m_seqread_qd4", "1M seq read QD4", { 1 << 20, 4, false, false, 0 }, true },
    { "1m_seqwrite_qd4", "1M seq write QD4", { 1 << 20, 4, true, false, 0 }, true },
};

/* The storage figures: io_uring on a tmpfs file directly, then the storvsp
 * backend queue with the same loads.  Each load runs in slices, the paths
 * taking turns slice by slice so that a neighbour's burst of CPU hits them
 * alike; each figure is the median of its slices. */
#define STOR_SLICES 5
static const char *stor_only; /* --storage-load: one load's tag, for profiling */
static const char *stor_path_only; /* --storage-path: one path's name, for profiling */
static void bench_storage(void)
{
    uint64_t size = (quick ? 64ull : 256ull) << 20;
    const char *path = stor_load_tmpfs_file(size);
    if (!path) {
        printf("storage: no tmpfs at /dev/shm, storage figures skipped\n");
        return;
    }
    int nslices = quick ? 1 : STOR_SLICES;
    double secs = quick ? 0.2 : 0.4;
    printf("storage: io_uring on a %llu MiB tmpfs file, direct and through the storvsp backend"
           " (%d x %.1f s each) ...\n", (unsigned long long)(size >> 20), nslices, secs);
    static const struct {
        enum stor_load_path how;
        int sim_channels; /* > 0: storvsp through the simulated guest */
        const char *name, *label;
    } paths[] = {
        { STOR_LOAD_DIRECT, 0, "stor_direct", "io_uring direct" },
        { STOR_LOAD_QUEUE_URING, 0, "stor_queue", "backend io_uring" },
        { STOR_LOAD_QUEUE_THREADS, 0, "stor_pool", "backend pool (info)" },
        { STOR_LOAD_DIRECT, 1, "storvsp_1ch", "storvsp sim 1 ch" },
        { STOR_LOAD_DIRECT, 2, "storvsp_2ch", "storvsp sim 2 ch" },
    };
    const size_t npaths = sizeof(paths) / sizeof(paths[0]);
    for (size_t i = 0; i < sizeof(stor_loads) / sizeof(stor_loads[0]); i++) {
        if (stor_only && strcmp(stor_only, stor_loads[i].tag) != 0)
            continue;
        double v[5][STOR_SLICES], cpu[5][STOR_SLICES];
        int got[5] = { 0 };
        for (int k = 0; k < nslices; k++) {
            for (size_t p = 0; p < npaths; p++) {
                /* the thread pool only for the random reads at depth 32 */
                if (paths[p].how == STOR_LOAD_QUEUE_THREADS && i != 1)
                    continue;
                if (stor_path_only && strcmp(stor_path_only, paths[p].name) != 0)
                    continue;
                struct stor_load l = stor_loads[i].load;
                l.seconds = secs;
                struct stor_load_result r;
                int rc = paths[p].sim_channels
                             ? stor_sim_run(path, size, paths[p].sim_channels, &l, &r)
                             : stor_load_run(path, size, paths[p].how, &l, &r);
                if (rc == 0) {
                    cpu[p][got[p]] = r.cpu_us;
                    v[p][got[p]++] = stor_loads[i].bw ? r.mbps : r.iops;
                }
            }
        }
        double direct = got[0] ? quantile(v[0], (size_t)got[0], 0.5) : 0;
        double direct_cpu = got[0] ? quantile(cpu[0], (size_t)got[0], 0.5) : 0;
        for (size_t p = 0; p < npaths; p++) {
            if (!got[p])
                continue;
            double med = quantile(v[p], (size_t)got[p], 0.5);
            char name[40], label[48];
            const char *unit = stor_loads[i].bw ? "MB/s" : "IOPS";
            snprintf(name, sizeof(name), "%s_%s_%s", paths[p].name, stor_loads[i].tag,
                     stor_loads[i].bw ? "bw" : "iops");
            snprintf(label, sizeof(label), "%s %s", paths[p].label, stor_loads[i].label);
            if (p == 0)
                add_fig(name, label, med, unit, unit, -1, "");
            else
                add_fig(name, label, med, unit, unit, direct > 0 ? med / direct : -1,
                        "io_uring direct, same load");
            /* The process's CPU time per request: what counts when the
             * threads share a CPU, and steadier than the rate when other
             * work loads the machine.  Ratio as for the rates: direct's
             * CPU per request over this path's (1 = as cheap). */
            double mcpu = quantile(cpu[p], (size_t)got[p], 0.5);
            snprintf(name, sizeof(name), "%s_%s_cpu", paths[p].name, stor_loads[i].tag);
            snprintf(label, sizeof(label), "%s %s CPU/req (info)", paths[p].label,
                     stor_loads[i].label);
            add_fig(name, label, mcpu, "us", "µs", p == 0 || mcpu <= 0 ? -1 : direct_cpu / mcpu,
                    p == 0 ? "" : "direct's CPU/req over this");
        }
    }
    unlink(path);
}

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: vmbusd-bench [--quick] [--verbose] [--net | --scale [--scale-vms N] [--scale-channels N]]\n"
            "\n"
            "Measures this machine's memcpy bandwidth and eventfd ping-pong round trip,\n"
            "then the guest simulator talking to an in-process vmbusd through the echo\n"
            "VSP: streaming packets/s and MB/s for 64 B, 1 KiB and 64 KiB packets, and\n"
            "the 64 B round-trip latency (p50, p99).  Storage: io_uring on a tmpfs file\n"
            "directly (4 KiB random reads QD1/QD32, 1 MiB sequential reads/writes QD4)\n"
            "and the same loads through the storvsp backend queue, and through storvsp\n"
            "itself from the simulated storvsc guest over 1 and 2 channels.  Every figure is printed with its\n"
            "ratio to the matching baseline, as a table and as lines\n"
            "  BENCH <name> <value> <unit> <ratio>\n"
            "(ratio '-' for the baselines themselves).  A full run takes about 50 s.\n"
            "\n"
            "With --scale: the same baselines, then many simulated partitions with many\n"
            "echo channels each in one vmbusd (see bench/scale.c): vmbusd's heap and\n"
            "fds per partition and per channel, its idle CPU with every channel open,\n"
            "the open handshake latency and the 64 B round trip of one channel among\n"
            "all the others next to a lone channel.  On a busy machine pin it to one\n"
            "CPU (taskset -c 1 ...): unpinned, where the threads land makes a round\n"
            "trip take ~15 or ~35 µs, whatever the scale.\n"
            "\n"
            "  -q, --quick   short run (a few seconds; a smoke test, figures are rough)\n"
            "  -v, --verbose keep vmbusd's info log lines (stderr)\n"
            "  -s, --scale   the scale run instead of the single-channel one\n"
            "      --storage the baselines and the storage figures only\n"
            "      --storage-load TAG  with --storage: that load only (4k_randread_qd1,\n"
            "                    4k_randread_qd32, 1m_seqread_qd4, 1m_seqwrite_qd4), e.g.\n"
            "                    under perf record\n"
            "      --storage-path NAME with --storage: that path only (stor_direct, stor_queue,\n"
            "                    stor_pool, storvsp_1ch, storvsp_2ch), no ratios\n"
            "      --worker-sched batch|normal  the in-process vmbusd's [daemon] worker-sched\n"
            "                    (default: vmbusd's default, normal)\n"
            "  -n, --net     netvsp frames (64 B, 1514 B) both ways against a socketpair,\n"
            "                then 64 B, 1514 B and LSO against a TAP (bench/net_tap.c)\n"
            "      --net-tap[=LOAD] the baselines and the TAP figures only; with LOAD\n"
            "                (tx_64B, tx_1514B, tx_lso, rx_64B, rx_1514B, or a prefix: tx)\n"
            "                those loads only, without the TCP figures (e.g. under perf)\n"
            "      --scale-vms N       partitions in the scale run (default %d)\n"
            "      --scale-channels N  echo channels per partition (1..%d, default %d)\n"
            "  -h, --help    this text\n",
            SCALE_DEFAULT_VMS, SCALE_MAX_CHANNELS, SCALE_DEFAULT_CHANNELS);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"quick", no_argument, NULL, 'q'},
        {"verbose", no_argument, NULL, 'v'},
        {"scale", no_argument, NULL, 's'},
        {"storage", no_argument, NULL, 'S'},
        {"storage-load", required_argument, NULL, 'L'},
        {"storage-path", required_argument, NULL, 'P'},
        {"worker-sched", required_argument, NULL, 'W'},
        {"net", no_argument, NULL, 'n'},
        {"net-tap", optional_argument, NULL, 'T'},
        {"scale-vms", required_argument, NULL, 'V'},
        {"scale-channels", required_argument, NULL, 'C'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct scale_opts so = {.vms = SCALE_DEFAULT_VMS, .channels = SCALE_DEFAULT_CHANNELS};
    bool scale = false, storage_only = false, net = false;
    int c;
    while ((c = getopt_long(argc, argv, "qvsnh", opts, NULL)) != -1) {
        switch (c) {
        case 'q': quick = true; break;
        case 'v': verbose = true; break;
        case 's': scale = true; break;
        case 'S': storage_only = true; break;
        case 'L': {
            bool known = false;
            for (size_t i = 0; i < sizeof(stor_loads) / sizeof(stor_loads[0]); i++)
                known |= strcmp(optarg, stor_loads[i].tag) == 0;
            if (!known) {
                fprintf(stderr, "vmbusd-bench: unknown storage load '%s'\n", optarg);
                return 2;
            }
            stor_only = optarg;
            storage_only = true;
            break;
        }
        case 'W':
            if (strcmp(optarg, "batch") != 0 && strcmp(optarg, "normal") != 0) {
                fprintf(stderr, "vmbusd-bench: --worker-sched wants batch or normal\n");
                return 2;
            }
            simd_worker_sched = optarg;
            break;
        case 'P':
            stor_path_only = optarg;
            storage_only = true;
            break;
        case 'n': net = true; break;
        case 'T': net = net_tap_only = true; net_tap_load = optarg; break;
        case 'V':
        case 'C': {
            char *end;
            long v = strtol(optarg, &end, 10);
            long max = c == 'V' ? SCALE_MAX_VMS : SCALE_MAX_CHANNELS;
            if (*end || end == optarg || v < 1 || v > max) {
                fprintf(stderr, "vmbusd-bench: --scale-%s wants a number 1..%ld\n",
                        c == 'V' ? "vms" : "channels", max);
                return 2;
            }
            *(c == 'V' ? &so.vms : &so.channels) = (int)v;
            break;
        }
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "vmbusd-bench: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    double t_start = now_s(), bw64k = 0, rtt_p50 = 0;
    double load0 = loadavg();
    printf("vmbusd-bench: %s%s run, %ld CPUs online, load average %.2f\n",
           quick ? "quick" : "full", scale ? " scale" : "", sysconf(_SC_NPROCESSORS_ONLN), load0);

    /* ---- baselines ---- */
    printf("measuring baselines ...\n");
    double memcpy_mbs = bench_memcpy();
    double cached_mbs = bench_memcpy_cached();
    double efd_p50, efd_p99, relay_p50, relay_p99;
    bench_eventfd(2, &efd_p50, &efd_p99);
    bench_eventfd(3, &relay_p50, &relay_p99);
    add_fig("memcpy_bw", "memcpy 64 MiB", memcpy_mbs, "MB/s", "MB/s", -1, "");
    add_fig("memcpy_cached_bw", "memcpy 64 KiB, in cache (info)", cached_mbs, "MB/s", "MB/s", -1,
            "");
    add_fig("eventfd_rtt_p50", "eventfd ping-pong round trip p50", efd_p50, "us", "µs", -1, "");
    add_fig("eventfd_rtt_p99", "eventfd ping-pong round trip p99", efd_p99, "us", "µs", -1, "");
    add_fig("eventfd3_rtt_p50", "eventfd 3-thread relay p50 (info)", relay_p50, "us", "µs", -1,
            "");

    if (net)
        return net_run();

    if (!scale)
        bench_storage();
    if (storage_only) {
        print_table();
        print_bench_lines();
        return 0;
    }

    if (scale) {
        struct baselines b = {.efd_p50 = efd_p50, .efd_p99 = efd_p99, .relay_p50 = relay_p50,
                              .load0 = load0, .t_start = t_start};
        return scale_run(&so, &b);
    }

    /* ---- vmbusd + simulator ---- */
    printf("starting vmbusd (in process) and the simulated guest ...\n");
    static const struct sim_vm_cfg vms[] = {{"bench", "echo"}};
    struct sim_daemon *d = simd_start(vms, 1, 1);
    if (!d) {
        fprintf(stderr, "vmbusd-bench: cannot start vmbusd\n");
        return 1;
    }
    if (!verbose)
        log_set_level(LOG_WARN); /* vmbusd's per-channel info lines */
    struct sim_vm_opts vo = {.name = "bench", .mem_size = 64u * MIB};
    struct sim_vm *vm = sim_vm_new(d, &vo);
    int rc = 1;
    if (!vm) {
        fprintf(stderr, "vmbusd-bench: cannot create the simulated VM\n");
        goto out;
    }
    int n = sim_bringup(vm, VMBUS_VERSION_WIN10_V5_3);
    const struct sim_offer *of = NULL;
    /* vmbusd attaches the VSPs asynchronously after HELLO: the echo offer may
     * come after ALLOFFERS_DELIVERED (hot add).  Wait for it a little. */
    for (uint64_t end = sim_now_ms() + 3000; n >= 0 && sim_now_ms() < end; sim_poll(vm, 10))
        if ((of = sim_offer_by_class(vm, sim_echo_class(), 0)) != NULL)
            break;
    if (of && n == 0)
        printf("note: the echo offer came only after ALLOFFERS_DELIVERED (hot add)\n");
    if (!of) {
        fprintf(stderr, "vmbusd-bench: VMBus bring-up failed (%d) or no echo offer\n", n);
        goto out;
    }
    int st = 0;
    struct sim_chan *ch = sim_chan_open(vm, of->relid, RING_PAGES, RING_PAGES, &st);
    if (!ch) {
        fprintf(stderr, "vmbusd-bench: opening the echo channel failed: %d\n", st);
        goto out;
    }
    printf("VMBus %s, echo channel relid %u, rings %u KiB each way\n",
           sim_version_str(vm->version), ch->relid, (RING_PAGES - 1) * 4);

    uint64_t trans = 1;
    /* warm up: caches, worker threads, page faults on the ring pages */
    if (!roundtrips(ch, 64, quick ? 200 : 1000, NULL, &trans)) {
        fprintf(stderr, "vmbusd-bench: warm-up failed\n");
        goto out;
    }

    static const struct {
        uint32_t len;
        const char *tag;
    } sizes[] = {{64, "64B"}, {1024, "1KiB"}, {65536, "64KiB"}};
    double efd_rate = 1e6 / efd_p50; /* eventfd round trips per second */
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        uint32_t len = sizes[i].len;
        /* Several slices, median rate: a slice in which other work on this
         * machine preempted us does not drag the figure down. */
        int nslices = quick ? 3 : STREAM_SLICES;
        double slice_s = quick ? 0.1 : 0.5, rates[STREAM_SLICES];
        printf("streaming %s packets (%d x %.1f s) ...", sizes[i].tag, nslices, slice_s);
        if (!stream(ch, len, quick ? 0.05 : 0.3, &trans).ok) /* warm-up */
            goto out;
        for (int k = 0; k < nslices; k++) {
            struct stream_result r = stream(ch, len, slice_s, &trans);
            if (!r.ok)
                goto out;
            rates[k] = (double)r.packets / r.seconds;
        }
        double pps = quantile(rates, (size_t)nslices, 0.5);
        double mbs = pps * len / 1e6;
        printf(" slowest slice %.0f, fastest %.0f pkt/s\n", rates[0], rates[nslices - 1]);
        char name[40], label[48];
        snprintf(name, sizeof(name), "echo_stream_%s_pps", sizes[i].tag);
        snprintf(label, sizeof(label), "echo stream %s packets", sizes[i].tag);
        add_fig(name, label, pps, "pkt/s", "pkt/s", pps / efd_rate,
                "× eventfd RTT p50 (pkts per RTT)");
        snprintf(name, sizeof(name), "echo_stream_%s_bw", sizes[i].tag);
        snprintf(label, sizeof(label), "echo stream %s payload", sizes[i].tag);
        add_fig(name, label, mbs, "MB/s", "MB/s", mbs / memcpy_mbs, "/ memcpy 64 MiB");
        if (len == 65536)
            bw64k = mbs;
    }

    printf("round trips (64 B) ...\n");
    int nrt = quick ? 1000 : 10000;
    double *rtt = calloc((size_t)nrt, sizeof(double));
    if (!rtt || !roundtrips(ch, 64, nrt, rtt, &trans)) {
        free(rtt);
        goto out;
    }
    double p99 = quantile(rtt, (size_t)nrt, 0.99), p50 = quantile(rtt, (size_t)nrt, 0.5);
    rtt_p50 = p50;
    free(rtt);
    add_fig("echo_rtt_64B_p50", "echo round trip 64 B p50", p50, "us", "µs", p50 / efd_p50,
            "/ eventfd RTT p50");
    add_fig("echo_rtt_64B_p99", "echo round trip 64 B p99", p99, "us", "µs", p99 / efd_p99,
            "/ eventfd RTT p99");

    if (sim_chan_close(ch) != 0 || sim_unload(vm) != 0) {
        fprintf(stderr, "vmbusd-bench: closing the channel / UNLOAD failed\n");
        goto out;
    }
    if (vm->bad_host_msgs) {
        fprintf(stderr, "vmbusd-bench: %llu malformed host messages\n",
                (unsigned long long)vm->bad_host_msgs);
        goto out;
    }
    rc = 0;
out:
    if (vm)
        sim_vm_free(vm);
    simd_stop(d);
    if (rc) {
        sim_log_dump("vmbusd-bench failed");
        return rc;
    }

    print_table();
    printf("\nNotes: stream MB/s counts payload one way.  Each payload byte is copied 5 times:\n"
           "guest into its ring, vmbusd out of it (private copy), echo VSP into the guest's\n"
           "ring, guest out of it twice (Linux-style bounce buffer, then the caller's buffer).\n"
           "The rings (1 MiB each way) stay in cache, so the streams are not bound by DRAM\n"
           "like the 64 MiB memcpy; the 64 KiB stream reaches %.3f of the in-cache memcpy.\n"
           "An echo round trip needs three thread wake-ups (guest -> vmbusd event loop ->\n"
           "worker -> guest): its p50 is %.2f x the 3-thread eventfd relay p50.\n"
           "vmbusd, the guest and the baselines share this machine's CPUs with whatever else\n"
           "runs here; figures are noisy under load (load average %.2f at the start, %.2f at\n"
           "the end, %ld CPUs).  Total time %.1f s.\n\n",
           bw64k / cached_mbs, rtt_p50 / relay_p50, load0, loadavg(),
           sysconf(_SC_NPROCESSORS_ONLN), now_s() - t_start);
    if (ring_full_waits)
        printf("Round-trip sends that found the ring full although every earlier packet had "
               "been echoed (vmbusd had not published its read index yet): %llu.\n\n",
               (unsigned long long)ring_full_waits);
    print_bench_lines();
    return 0;
}
