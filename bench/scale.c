/* SPDX-License-Identifier: MIT */
/*
 * vmbusd-bench --scale: many partitions with many echo channels in one vmbusd.
 *
 * Two processes.  This one runs vmbusd (event loop and worker threads, as in
 * the single-channel run) and partition 0, whose first echo channel is the
 * one measured.  A child, forked before vmbusd starts, plays the VMMs and
 * guests of partitions 1..N-1 (the simulator, one thread, with a 1-vCPU
 * guest each).  A real VMM is a process of its own; here it is also needed:
 * each partition costs one fd per channel plus four on both sides (see
 * fd_budget), and both sides of 1000 x 8 in one process would need ~24000
 * fds, more than the usual hard limit.  It also keeps the simulator's memory
 * and CPU out of vmbusd's figures.
 *
 * Measured, with every partition connected and every channel open:
 *  - vmbusd's heap per partition (connected, its channels offered, none
 *    open) and per open channel: mallinfo2() in-use bytes (arena chunks +
 *    mmapped chunks) of this process before and after, divided by how many
 *    were added.  The rings are guest memory (the guest's memfd, mapped by
 *    vmbusd) and not counted.  Also the growth of RssAnon (heap pages
 *    touched + thread stacks + allocator slack), and vmbusd's fds/threads.
 *  - idle CPU: user + system time of this process's threads other than the
 *    main one (that is, vmbusd's) while nothing is sent for a while, and
 *    their context switches (wake-ups).
 *  - open handshake, for every channel with all partitions connected: how
 *    long the guest waits for the host while it opens the offered channel,
 *    i.e. from posting the ring's GPADL_HEADER to its ISR having taken
 *    GPADL_CREATED, plus from posting OPENCHANNEL to having taken
 *    OPENCHANNEL_RESULT (each HvPostMessage also waits for the VMM's
 *    POST_RESULT, as a vCPU does); and each of the two parts.  The guest's
 *    own work in between (zeroing fresh ring pages, building the PFN list)
 *    is left out.
 *  - 64 B echo round trip of partition 0's first channel with all the others
 *    open and idle, next to a lone channel: the first channel of the only
 *    partition of a second vmbusd in this process, started the same way.
 *    The two take turns in blocks of 100 round trips, so that load from
 *    outside (other work on this machine) hits both alike.  For information also
 *    partition 0's channel before the others connected.
 * Every channel is checked with one 64 B echo round trip after its open.
 */
#include <dirent.h>
#include <errno.h>
#include <malloc.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "common/log.h"
#include "vmbusd/vmbusd.h"

#define SCALE_RING_PAGES 2u /* 1 header page + 4 KiB of data, each way */
#define SCALE_VCPUS 1u
#define CHILD_STEP_S 1800 /* the child's connect / open phases must end in this */
#define RTT_BLOCK 100
#define RTT_BLOCK_WARM 10

struct open_time {
    double total_us; /* the sum of the two */
    double gpadl_us; /* GPADL_HEADER posted -> GPADL_CREATED taken */
    double msg_us;   /* OPENCHANNEL posted -> OPENCHANNEL_RESULT taken */
};

/* Shared with the child (MAP_SHARED, set up before the fork). */
struct scale_shared {
    char sock_path[108]; /* vmbusd's socket, written before 'C' */
    int fds_before, fds_connected; /* the child's fd counts */
    char err[256];
    struct open_time t[]; /* [vm * channels + i] */
};

/* ------------------------------------------------------------------ */
/* Process figures                                                     */

static int count_dir(const char *path)
{
    DIR *dir = opendir(path);
    if (!dir)
        return -1;
    int n = 0;
    for (struct dirent *e; (e = readdir(dir)) != NULL;)
        if (e->d_name[0] != '.')
            n++;
    closedir(dir);
    return n - (strcmp(path, "/proc/self/fd") == 0); /* the DIR's own fd */
}

/* A "Key:   N kB" line of /proc/self/status, in bytes (-1 if missing). */
static long long status_kb(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long long v = -1;
    size_t klen = strlen(key);
    while (f && fgets(line, sizeof(line), f))
        if (strncmp(line, key, klen) == 0 && line[klen] == ':') {
            v = atoll(line + klen + 1) * 1024;
            break;
        }
    if (f)
        fclose(f);
    return v;
}

struct snapshot {
    double heap;     /* mallinfo2 in-use bytes */
    double rss_anon; /* bytes */
    int fds, threads;
};

static struct snapshot snap(void)
{
    struct mallinfo2 mi = mallinfo2();
    return (struct snapshot){
        .heap = (double)(mi.uordblks + mi.hblkhd),
        .rss_anon = (double)status_kb("RssAnon"),
        .fds = count_dir("/proc/self/fd"),
        .threads = count_dir("/proc/self/task"),
    };
}

/* ------------------------------------------------------------------ */
/* fds                                                                 */

/*
 * fds one partition with one vCPU holds on each side (vmbusd's and the
 * VMM's): the vmbus-user socket, the guest memory fd, the vCPU's SINT irqfd
 * and resample fd, and one eventfd per channel (VMBus >= 4.0 signals each
 * channel on its own connection id).
 */
static int fds_per_partition(int channels)
{
    return 2 + 2 * (int)SCALE_VCPUS + channels;
}

/* Raise the soft RLIMIT_NOFILE to the hard one (the child inherits it).
 * false, with the numbers, if the hard limit is below what this process
 * needs: vmbusd with all partitions + partition 0's VMM side (the child
 * needs less).  The estimate is a floor: the measured count is printed. */
static bool fd_budget(const struct scale_opts *o)
{
    int per = fds_per_partition(o->channels);
    rlim_t need = (rlim_t)per * (rlim_t)(o->vms + 1) + 64; /* + listening sockets, epoll, stdio */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        perror("vmbusd-bench: getrlimit");
        return false;
    }
    printf("fds: %d per partition on each side (socket, memory fd, irqfd + resample fd, "
           "%d channel eventfds); vmbusd's process needs ~%llu, the VMMs' ~%llu "
           "(~%llu if both were one process); RLIMIT_NOFILE soft %llu hard %llu\n",
           per, o->channels, (unsigned long long)need,
           (unsigned long long)per * (unsigned long long)(o->vms - 1) + 64,
           2ull * (unsigned long long)per * (unsigned long long)o->vms + 64,
           (unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_max);
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need) {
        fprintf(stderr,
                "vmbusd-bench: %d partitions x %d channels need ~%llu file descriptors in "
                "vmbusd's process, but the hard RLIMIT_NOFILE is %llu: raise it (ulimit -Hn as "
                "root, LimitNOFILE= in a unit) or use fewer --scale-vms (at most ~%llu)\n",
                o->vms, o->channels, (unsigned long long)need,
                (unsigned long long)rl.rlim_max,
                (unsigned long long)((rl.rlim_max - 64) / (rlim_t)per - 1));
        return false;
    }
    if (rl.rlim_cur == rl.rlim_max)
        return true;
    rl.rlim_cur = rl.rlim_max == RLIM_INFINITY ? 4 * need : rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
        fprintf(stderr, "vmbusd-bench: cannot raise RLIMIT_NOFILE to %llu: %s\n",
                (unsigned long long)rl.rlim_cur, strerror(errno));
        return false;
    }
    printf("fds: soft RLIMIT_NOFILE raised to %llu\n", (unsigned long long)rl.rlim_cur);
    return true;
}

/* ------------------------------------------------------------------ */
/* One partition (used by both processes)                              */

static uint64_t guest_mem(int channels)
{
    /* 1 MiB the simulator leaves alone, SynIC and interrupt pages, rings */
    uint64_t pages = 2 * SCALE_VCPUS + 3 + (uint64_t)channels * 2 * SCALE_RING_PAGES;
    uint64_t mib = 1u << 20;
    return mib + (pages * 4096 + mib - 1) / mib * mib;
}

/* Connect partition idx, negotiate VMBus 5.3 and wait for all its echo
 * offers (vmbusd attaches the VSPs after HELLO: they may come after
 * ALLOFFERS_DELIVERED). */
static struct sim_vm *vm_up(struct sim_daemon *d, const char *sock, int idx, int channels,
                            char *err, size_t errlen)
{
    char name[32];
    snprintf(name, sizeof(name), "scale-%d", idx);
    struct sim_vm_opts vo = {.name = name, .mem_size = guest_mem(channels),
                             .vcpus = SCALE_VCPUS, .sock_path = sock};
    struct sim_vm *vm = sim_vm_new(d, &vo);
    if (!vm) {
        snprintf(err, errlen, "%s: cannot connect to vmbusd (see above)", name);
        return NULL;
    }
    vm->expect_offers = channels;
    int n = sim_bringup(vm, VMBUS_VERSION_WIN10_V5_3);
    for (uint64_t end = sim_now_ms() + SIM_TIMEOUT_MS; n >= 0 && sim_now_ms() < end;
         sim_poll(vm, 10))
        if (sim_offer_by_class(vm, sim_echo_class(), channels - 1))
            break;
    if (n < 0 || !sim_offer_by_class(vm, sim_echo_class(), channels - 1)) {
        snprintf(err, errlen, "%s: VMBus bring-up failed (%d) or fewer than %d echo offers",
                 name, n, channels);
        sim_vm_free(vm);
        return NULL;
    }
    return vm;
}

/* Open echo channels [from, to) of vm, timing each open into t[i], and
 * check each with one 64 B echo round trip. */
static bool vm_open(struct sim_vm *vm, int from, int to, struct open_time *t, char *err,
                    size_t errlen)
{
    for (int i = from; i < to; i++) {
        const struct sim_offer *of = sim_offer_by_class(vm, sim_echo_class(), i);
        int st = 0;
        struct sim_chan *ch =
            of ? sim_chan_open(vm, of->relid, SCALE_RING_PAGES, SCALE_RING_PAGES, &st) : NULL;
        if (!ch) {
            snprintf(err, errlen, "%s: opening echo channel %d failed: %d", vm->name, i, st);
            return false;
        }
        t[i] = (struct open_time){.total_us =
                                      (double)(ch->open_gpadl_ns + ch->open_msg_ns) / 1000.0,
                                  .gpadl_us = (double)ch->open_gpadl_ns / 1000.0,
                                  .msg_us = (double)ch->open_msg_ns / 1000.0};
        if (sim_echo_roundtrip(ch, 64, 0x5ca1e000ull + (uint64_t)i, false) != 0) {
            snprintf(err, errlen, "%s: relid %u: echo after the open failed", vm->name,
                     ch->relid);
            return false;
        }
    }
    return true;
}

/* ------------------------------------------------------------------ */
/* The child: partitions 1..N-1                                        */

static void child_main(int sock, struct scale_shared *sh, const struct scale_opts *o)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    struct sim_vm **vms = calloc((size_t)o->vms, sizeof(*vms));
    char cmd;
    while (vms && read(sock, &cmd, 1) == 1) {
        char reply = 'E';
        if (cmd == 'C') { /* connect all, offers received */
            sh->fds_before = count_dir("/proc/self/fd");
            int i = 1;
            for (; i < o->vms; i++)
                if (!(vms[i] = vm_up(NULL, sh->sock_path, i, o->channels, sh->err,
                                     sizeof(sh->err))))
                    break;
            sh->fds_connected = count_dir("/proc/self/fd");
            reply = i == o->vms ? 'c' : 'E';
        } else if (cmd == 'O') { /* open every channel */
            int i = 1;
            for (; i < o->vms; i++)
                if (!vm_open(vms[i], 0, o->channels, &sh->t[(size_t)i * (size_t)o->channels],
                             sh->err, sizeof(sh->err)))
                    break;
            reply = i == o->vms ? 'o' : 'E';
        } else if (cmd == 'Q') { /* the VMMs go away (sockets closed) */
            for (int i = 1; i < o->vms; i++)
                sim_vm_free(vms[i]);
            _exit(0);
        }
        for (int i = 1; reply == 'o' && i < o->vms; i++)
            if (vms[i]->bad_host_msgs) {
                snprintf(sh->err, sizeof(sh->err), "%s: %llu malformed host messages",
                         vms[i]->name, (unsigned long long)vms[i]->bad_host_msgs);
                reply = 'E';
            }
        if (write(sock, &reply, 1) != 1)
            break;
    }
    _exit(1);
}

/* Send cmd to the child and wait for its answer ('E': its error text). */
static bool child_cmd(int sock, struct scale_shared *sh, char cmd, char want)
{
    char r = 0;
    struct pollfd p = {.fd = sock, .events = POLLIN};
    if (write(sock, &cmd, 1) != 1 || poll(&p, 1, CHILD_STEP_S * 1000) != 1 ||
        read(sock, &r, 1) != 1 || r != want) {
        fprintf(stderr, "vmbusd-bench: the simulated partitions' process: %s\n",
                r == 'E' ? sh->err : "no answer (died or timed out)");
        return false;
    }
    return true;
}

/* ------------------------------------------------------------------ */
/* This process                                                        */

/* CPU time (s) and context switches of RUSAGE_SELF minus RUSAGE_THREAD: the
 * other threads (vmbusd's) while this one sleeps. */
static void others_usage(double *cpu, double *switches)
{
    struct rusage self, me;
    getrusage(RUSAGE_SELF, &self);
    getrusage(RUSAGE_THREAD, &me);
    long long us = (self.ru_utime.tv_sec + self.ru_stime.tv_sec - me.ru_utime.tv_sec -
                    me.ru_stime.tv_sec) * 1000000ll +
                   self.ru_utime.tv_usec + self.ru_stime.tv_usec - me.ru_utime.tv_usec -
                   me.ru_stime.tv_usec;
    *cpu = (double)us * 1e-6;
    *switches = (double)(self.ru_nvcsw + self.ru_nivcsw - me.ru_nvcsw - me.ru_nivcsw);
}

/* n 64 B round trips on each of a and b (b may be NULL), in blocks of
 * RTT_BLOCK on a, then on b, and so on; the first RTT_BLOCK_WARM of each
 * block are not timed (the other daemon's threads ran meanwhile: switching
 * at every round trip made both ~2x slower and uneven).  p50, p99 of each. */
static bool rtt_figures(struct sim_chan *a, struct sim_chan *b, int n, uint64_t *trans,
                        double p50[2], double p99[2])
{
    struct sim_chan *chs[2] = {a, b};
    double *rtt[2] = {calloc((size_t)n, sizeof(double)), calloc((size_t)n, sizeof(double))};
    bool ok = rtt[0] && rtt[1];
    for (int c = 0; ok && c < 2; c++)
        ok = !chs[c] || roundtrips(chs[c], 64, quick ? 200 : 1000, NULL, trans);
    for (int k = 0; ok && k < n; k += RTT_BLOCK)
        for (int c = 0; ok && c < 2; c++) {
            int len = n - k < RTT_BLOCK ? n - k : RTT_BLOCK;
            ok = !chs[c] || (roundtrips(chs[c], 64, RTT_BLOCK_WARM, NULL, trans) &&
                             roundtrips(chs[c], 64, len, rtt[c] + k, trans));
        }
    for (int c = 0; ok && c < 2; c++) {
        p99[c] = quantile(rtt[c], (size_t)n, 0.99);
        p50[c] = quantile(rtt[c], (size_t)n, 0.5);
    }
    free(rtt[0]);
    free(rtt[1]);
    return ok;
}

int scale_run(const struct scale_opts *o, const struct baselines *b)
{
    int nch = o->vms * o->channels;
    printf("scale: %d partitions x %d echo channels (%d), 1 vCPU each, rings %u KiB each way\n",
           o->vms, o->channels, nch, (SCALE_RING_PAGES - 1) * 4);
    if (!fd_budget(o))
        return 1;
    size_t shlen = sizeof(struct scale_shared) + (size_t)nch * sizeof(struct open_time);
    struct scale_shared *sh =
        mmap(NULL, shlen, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    int sv[2];
    if (sh == MAP_FAILED || socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
        perror("vmbusd-bench: shared area / socketpair");
        return 1;
    }
    /* Fork before vmbusd's threads exist: the child is a plain
     * single-threaded VMM process. */
    pid_t pid = fork();
    if (pid < 0) {
        perror("vmbusd-bench: fork");
        return 1;
    }
    if (pid == 0) {
        close(sv[0]);
        child_main(sv[1], sh, o);
    }
    close(sv[1]);
    int csock = sv[0], rc = 1;
    struct sim_vm *vm0 = NULL, *vml = NULL;
    static const struct sim_vm_cfg vmcfg[] = {{"default", "echo"}};
    /* the lone channel's vmbusd, then the one under test */
    struct sim_daemon *dl = simd_start(vmcfg, 1, o->channels), *d = NULL;
    if (dl)
        d = simd_start(vmcfg, 1, o->channels);
    if (!d) {
        fprintf(stderr, "vmbusd-bench: cannot start vmbusd\n");
        goto out;
    }
    log_info("vmbusd-bench: scale run"); /* the log capture allocates its table now */
    if (!verbose)
        log_set_level(LOG_WARN);
    snprintf(sh->sock_path, sizeof(sh->sock_path), "%s", simd_socket_path(d));

    /* ---- the lone channel; partition 0 and its first channel ---- */
    char err[256] = "";
    struct open_time lone_open[1];
    vml = vm_up(dl, NULL, 0, o->channels, err, sizeof(err));
    if (vml && vm_open(vml, 0, 1, lone_open, err, sizeof(err)))
        vm0 = vm_up(d, NULL, 0, o->channels, err, sizeof(err));
    if (!vm0 || !vm_open(vm0, 0, 1, sh->t, err, sizeof(err))) {
        fprintf(stderr, "vmbusd-bench: %s\n", err);
        goto out;
    }
    struct sim_chan *ch = sim_chan(vm0, sim_offer_by_class(vm0, sim_echo_class(), 0)->relid);
    struct sim_chan *lch = sim_chan(vml, sim_offer_by_class(vml, sim_echo_class(), 0)->relid);
    uint64_t trans = 1;
    int nrt = quick ? 1000 : 10000;
    double before_p50[2], before_p99[2], rtt_p50[2], rtt_p99[2];
    printf("round trips (64 B), partition 0's channel before the others connect ...\n");
    if (!rtt_figures(ch, NULL, nrt, &trans, before_p50, before_p99))
        goto out;

    /* ---- the other partitions connect, then every channel opens ---- */
    struct snapshot s0 = snap();
    printf("connecting %d more partitions ...\n", o->vms - 1);
    double t0 = now_s();
    if (o->vms > 1 && !child_cmd(csock, sh, 'C', 'c'))
        goto out;
    double t_connect = now_s() - t0;
    struct snapshot s1 = snap();
    printf("opening %d more channels ...\n", nch - 1);
    t0 = now_s();
    if (!vm_open(vm0, 1, o->channels, sh->t, err, sizeof(err))) {
        fprintf(stderr, "vmbusd-bench: %s\n", err);
        goto out;
    }
    if (o->vms > 1 && !child_cmd(csock, sh, 'O', 'o'))
        goto out;
    double t_open = now_s() - t0;
    struct snapshot s2 = snap();
    unsigned parts = vmbusd_partition_count(simd_vmbusd(d));
    if (parts != (unsigned)o->vms) {
        fprintf(stderr, "vmbusd-bench: vmbusd counts %u partitions, want %d\n", parts, o->vms);
        goto out;
    }

    /* ---- idle: nothing is sent ---- */
    double idle_s = quick ? 1 : 10, cpu0, sw0, cpu1, sw1;
    printf("idle for %.0f s with all %d channels open ...\n", idle_s, nch);
    others_usage(&cpu0, &sw0);
    t0 = now_s();
    struct timespec ts = {.tv_sec = (time_t)idle_s};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
    double idle_real = now_s() - t0;
    others_usage(&cpu1, &sw1);

    printf("round trips (64 B), one channel among %d and the lone one, in turns ...\n",
           nch);
    uint64_t full_before = ring_full_waits;
    if (!rtt_figures(ch, lch, nrt, &trans, rtt_p50, rtt_p99))
        goto out;
    uint64_t full_waits = ring_full_waits - full_before;

    /* ---- the others leave ---- */
    printf("disconnecting %d partitions ...\n", o->vms - 1);
    t0 = now_s();
    char q = 'Q';
    if (write(csock, &q, 1) != 1 || waitpid(pid, NULL, 0) != pid) {
        fprintf(stderr, "vmbusd-bench: the simulated partitions' process did not exit\n");
        goto out;
    }
    pid = -1;
    while (vmbusd_partition_count(simd_vmbusd(d)) > 1 && now_s() - t0 < 120)
        usleep(1000);
    double t_leave = now_s() - t0;
    if (vmbusd_partition_count(simd_vmbusd(d)) != 1) {
        fprintf(stderr, "vmbusd-bench: partitions still there 120 s after their VMMs left\n");
        goto out;
    }
    if (vm0->bad_host_msgs || vml->bad_host_msgs) {
        fprintf(stderr, "vmbusd-bench: %llu malformed host messages\n",
                (unsigned long long)(vm0->bad_host_msgs + vml->bad_host_msgs));
        goto out;
    }
    for (int i = 0; i < o->channels; i++) {
        struct sim_chan *c = sim_chan(vm0, sim_offer_by_class(vm0, sim_echo_class(), i)->relid);
        if (!c || sim_chan_close(c) != 0) {
            fprintf(stderr, "vmbusd-bench: closing partition 0's channel %d failed\n", i);
            goto out;
        }
    }
    if (sim_chan_close(lch) != 0 || sim_unload(vml) != 0 || sim_unload(vm0) != 0) {
        fprintf(stderr, "vmbusd-bench: UNLOAD failed\n");
        goto out;
    }
    int warnings = sim_log_count(LOG_WARN, NULL, NULL, NULL);
    cpu_set_t cpus;
    int ncpus = sched_getaffinity(0, sizeof(cpus), &cpus) == 0 ? CPU_COUNT(&cpus) : -1;
    rc = 0;

    /* ---- figures ---- */
    double *v = calloc((size_t)nch, sizeof(double));
    if (!v) {
        rc = 1;
        goto out;
    }
    for (int i = 0; i < nch; i++)
        v[i] = sh->t[i].total_us;
    double open_p50 = quantile(v, (size_t)nch, 0.5), open_p99 = quantile(v, (size_t)nch, 0.99);
    for (int i = 0; i < nch; i++)
        v[i] = sh->t[i].gpadl_us;
    double gpadl_p50 = quantile(v, (size_t)nch, 0.5);
    for (int i = 0; i < nch; i++)
        v[i] = sh->t[i].msg_us;
    double msg_p50 = quantile(v, (size_t)nch, 0.5), msg_p99 = quantile(v, (size_t)nch, 0.99);
    free(v);
    int others = o->vms - 1;
    double ring_bytes = 2.0 * SCALE_RING_PAGES * 4096;
    double heap_part = others ? (s1.heap - s0.heap) / others : 0;
    double heap_open = (s2.heap - s1.heap) / (nch - 1);
    double heap_chan = heap_part / o->channels + heap_open;
    double rss_chan = (s2.rss_anon - s0.rss_anon) / (nch - o->channels);
    double fds_part = others ? (double)(s1.fds - s0.fds) / others : 0;
    /* RUSAGE_SELF and RUSAGE_THREAD are sampled apart: clamp the jitter */
    double cpu_pct = cpu1 > cpu0 ? (cpu1 - cpu0) / idle_real * 100 : 0;
    double wakeups = sw1 > sw0 ? (sw1 - sw0) / idle_real : 0;
    if (others) {
        add_fig("scale_heap_per_partition", "vmbusd heap / partition (offered)", heap_part,
                "B", "B", -1, "");
        add_fig("scale_heap_per_open", "vmbusd heap / channel open", heap_open, "B", "B", -1,
                "");
        add_fig("scale_heap_per_channel", "vmbusd heap / channel, all-in", heap_chan, "B", "B",
                heap_chan / ring_bytes, "/ its ring bytes (guest memory)");
        add_fig("scale_rss_anon_per_channel", "RssAnon growth / channel", rss_chan, "B", "B",
                rss_chan / ring_bytes, "/ its ring bytes (guest memory)");
        add_fig("scale_fds_per_partition", "vmbusd fds / partition", fds_part, "count", "", -1,
                "");
    }
    add_fig("scale_threads", "threads of vmbusd's process", (double)s2.threads, "count", "", -1,
            "");
    add_fig("scale_idle_cpu", "idle CPU, all channels open", cpu_pct, "%cpu", "% CPU", -1, "");
    add_fig("scale_idle_wakeups", "idle context switches", wakeups, "1/s", "/s", -1, "");
    add_fig("scale_open_p50", "open handshake p50", open_p50, "us", "µs", open_p50 / b->efd_p50,
            "/ eventfd RTT p50");
    add_fig("scale_open_p99", "open handshake p99", open_p99, "us", "µs", open_p99 / b->efd_p99,
            "/ eventfd RTT p99");
    add_fig("scale_opengpadl_p50", "GPADL_HEADER -> CREATED p50", gpadl_p50, "us", "µs",
            gpadl_p50 / b->efd_p50, "/ eventfd RTT p50");
    add_fig("scale_openmsg_p50", "OPENCHANNEL -> RESULT p50", msg_p50, "us", "µs",
            msg_p50 / b->efd_p50, "/ eventfd RTT p50");
    add_fig("scale_openmsg_p99", "OPENCHANNEL -> RESULT p99", msg_p99, "us", "µs",
            msg_p99 / b->efd_p99, "/ eventfd RTT p99");
    add_fig("echo_rtt_64B_lone_p50", "echo RTT 64 B, lone channel p50", rtt_p50[1], "us", "µs",
            rtt_p50[1] / b->efd_p50, "/ eventfd RTT p50");
    add_fig("echo_rtt_64B_lone_p99", "echo RTT 64 B, lone channel p99", rtt_p99[1], "us", "µs",
            rtt_p99[1] / b->efd_p99, "/ eventfd RTT p99");
    add_fig("echo_rtt_64B_scale_p50", "echo RTT 64 B, among all p50", rtt_p50[0], "us", "µs",
            rtt_p50[0] / rtt_p50[1], "/ lone channel p50");
    add_fig("echo_rtt_64B_scale_p99", "echo RTT 64 B, among all p99", rtt_p99[0], "us", "µs",
            rtt_p99[0] / rtt_p99[1], "/ lone channel p99");
    add_fig("echo_rtt_64B_before_p50", "same, before others came p50", before_p50[0], "us",
            "µs", before_p50[0] / rtt_p50[1], "/ lone channel p50 (info)");
    print_table();
    printf("\nNotes: %d partitions x %d channels; connecting the other %d took %.1f s, opening "
           "%d channels %.1f s (each checked with an echo), the partitions' teardown after "
           "their VMMs left %.2f s.\n"
           "Heap: mallinfo2() in-use bytes (arena + mmapped chunks) of vmbusd's process before "
           "and after; per partition = connected with its %d channels offered (%.0f B "
           "total), per open = the growth of opening them (%.0f B total); rings (%.0f B per "
           "channel) are the guest's memory and not counted.  RssAnon %.1f -> %.1f -> %.1f "
           "MiB.  fds %d -> %d -> %d, threads %d -> %d -> %d (alone, connected, open).\n"
           "Idle: vmbusd's threads used %.3f s CPU and %.0f context switches in %.1f s.\n"
           "Open handshake: the guest's waits for the host while opening an offered channel, "
           "GPADL_HEADER posted -> GPADL_CREATED taken by its ISR plus OPENCHANNEL posted -> "
           "OPENCHANNEL_RESULT taken (each post also a POST_RESULT round trip to the VMM), "
           "all %d partitions connected.\n"
           "Round trips: %d per channel, the two channels taking turns in blocks of %d (the "
           "first %d of each not timed); sends that found the ring "
           "full although all was echoed (vmbusd had not published its read index): %llu.\n"
           "CPUs this run may use: %d (unpinned, where the threads land makes a round trip "
           "~15 or ~35 µs, whatever the scale: pin with taskset -c N to compare).\n"
           "vmbusd warnings logged: %d.  Load average %.2f at the start, %.2f at the end, "
           "%ld CPUs.  Total time %.1f s.\n\n",
           o->vms, o->channels, others, t_connect, nch - 1, t_open, t_leave, o->channels,
           s1.heap - s0.heap, s2.heap - s1.heap, ring_bytes, s0.rss_anon / 1048576,
           s1.rss_anon / 1048576, s2.rss_anon / 1048576, s0.fds, s1.fds, s2.fds, s0.threads,
           s1.threads, s2.threads, cpu_pct * idle_real / 100, wakeups * idle_real, idle_real,
           o->vms, nrt, RTT_BLOCK, RTT_BLOCK_WARM, (unsigned long long)full_waits, ncpus, warnings,
           b->load0, loadavg(), sysconf(_SC_NPROCESSORS_ONLN), now_s() - b->t_start);
    print_bench_lines();
out:
    if (pid > 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    close(csock);
    if (vm0)
        sim_vm_free(vm0);
    if (vml)
        sim_vm_free(vml);
    simd_stop(d);
    simd_stop(dl);
    if (rc)
        sim_log_dump("vmbusd-bench --scale failed");
    munmap(sh, shlen);
    return rc;
}
