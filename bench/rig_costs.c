/* SPDX-License-Identifier: MIT */
/*
 * rig-costs: what the primitive operations of vmbusd's data paths cost on
 * the machine it runs on.  Written for the nested rig, where L1 is a QEMU
 * software CPU and every figure of bench/nested-storage and nested-net is
 * made of these: a system call, a thread waking another (on one CPU and
 * across two, where it takes an IPI), netvsp's receive checksum over a
 * 64 KiB coalesced frame, a user-space copy and a kernel copy (a pipe).
 * The per-byte figures are printed with their ratio to memcpy in the same
 * run.  Run it natively and inside L1 to compare:
 *
 *   build/bench/rig-costs
 *   tests/e2e/nested-run --quiet -- build/bench/rig-costs
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "vsp/netvsp/offload.h"

#define FRAME (64u * 1024)

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void bench_line(const char *name, double value, const char *unit, double ratio)
{
    if (ratio > 0)
        printf("BENCH %s %.4g %s %.3f\n", name, value, unit, ratio);
    else
        printf("BENCH %s %.4g %s -\n", name, value, unit);
}

static int pin(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

struct pong {
    int in, out, cpu;
};

static void *pong_main(void *arg)
{
    struct pong *p = arg;
    uint64_t v;
    pin(p->cpu);
    for (;;) {
        if (read(p->in, &v, sizeof(v)) != sizeof(v))
            break;
        if (v == UINT64_MAX / 2) /* the stop word */
            break;
        v = 1;
        if (write(p->out, &v, sizeof(v)) != sizeof(v))
            break;
    }
    return NULL;
}

/* Mean eventfd round trip in µs with the two threads on cpu a and cpu b;
 * < 0 when the threads cannot be placed so. */
static double eventfd_rtt(int a, int b, int n)
{
    struct pong p = {eventfd(0, 0), eventfd(0, 0), b};
    pthread_t th;
    double us = -1;
    if (p.in < 0 || p.out < 0 || pin(a) != 0)
        goto out;
    if (pthread_create(&th, NULL, pong_main, &p) != 0)
        goto out;
    uint64_t v = 1;
    double t = now_s();
    int i;
    for (i = 0; i < n; i++) {
        v = 1;
        if (write(p.in, &v, sizeof(v)) != sizeof(v) || read(p.out, &v, sizeof(v)) != sizeof(v))
            break;
    }
    if (i == n)
        us = (now_s() - t) / n * 1e6;
    v = UINT64_MAX / 2;
    if (write(p.in, &v, sizeof(v)) == sizeof(v))
        pthread_join(th, NULL);
    else
        pthread_detach(th);
out:
    if (p.in >= 0)
        close(p.in);
    if (p.out >= 0)
        close(p.out);
    return us;
}

/* A 64 KiB TCP/IPv4 frame whose checksum field holds the pseudo-header
 * sum, as the TAP hands netvsp a coalesced frame (NEEDS_CSUM). */
static void make_frame(uint8_t *f, struct vnet_hdr *vh)
{
    for (uint32_t i = 0; i < FRAME; i++)
        f[i] = (uint8_t)(i * 7 + 3);
    memset(f, 0, 54);
    f[12] = 0x08; /* IPv4 */
    f[14] = 0x45;
    f[23] = 6; /* TCP */
    f[14 + 20 + 12] = 5 << 4;
    memset(vh, 0, sizeof(*vh));
    vh->flags = VNET_HDR_F_NEEDS_CSUM;
    vh->csum_start = 34;
    vh->csum_offset = 16;
}

static void usage(FILE *to)
{
    fprintf(to, "Usage: rig-costs [--quick]\n\n"
                "Prints what the primitive operations of vmbusd's data paths cost here, as\n"
                "  BENCH <name> <value> <unit> <ratio|->\n"
                "syscall_us (getppid), eventfd_rtt_same_cpu_us and eventfd_rtt_cross_cpu_us\n"
                "(a thread waking another and being woken back), memcpy_64k_bw (the\n"
                "baseline of the per-byte figures), netvsp_rx_csum_64k_bw (netvsp's\n"
                "checksum of a 64 KiB coalesced frame) and pipe_64k_bw (a pipe write plus\n"
                "read: two kernel copies), each with its ratio to memcpy_64k_bw.  Meant to\n"
                "be run natively and inside the nested rig's L1 (tests/e2e/nested-run).\n\n"
                "  -q, --quick  fewer iterations (a smoke test)\n"
                "  -h, --help   this text\n");
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"quick", no_argument, NULL, 'q'}, {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    int scale = 10, c;
    while ((c = getopt_long(argc, argv, "qh", opts, NULL)) != -1) {
        if (c == 'q') {
            scale = 1;
        } else if (c == 'h') {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }
    uint8_t *a = aligned_alloc(64, FRAME), *b = aligned_alloc(64, FRAME);
    if (!a || !b) {
        fprintf(stderr, "rig-costs: out of memory\n");
        return 1;
    }

    int n = 2000 * scale;
    double t = now_s();
    for (int i = 0; i < n; i++)
        syscall(SYS_getppid);
    bench_line("syscall_us", (now_s() - t) / n * 1e6, "us", 0);

    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    double same = eventfd_rtt(0, 0, 500 * scale);
    if (same > 0)
        bench_line("eventfd_rtt_same_cpu_us", same, "us", 0);
    if (ncpu > 1) {
        double cross = eventfd_rtt(0, 1, 500 * scale);
        if (cross > 0)
            bench_line("eventfd_rtt_cross_cpu_us", cross, "us", 0);
    }
    /* back to any CPU for the rest */
    cpu_set_t all;
    CPU_ZERO(&all);
    for (long i = 0; i < ncpu && i < CPU_SETSIZE; i++)
        CPU_SET((int)i, &all);
    pthread_setaffinity_np(pthread_self(), sizeof(all), &all);

    int iters = 100 * scale;
    struct vnet_hdr vh;
    make_frame(a, &vh); /* copied below, then summed as netvsp receives it */
    t = now_s();
    for (int i = 0; i < iters; i++) {
        memcpy(b, a, FRAME);
        __asm__ volatile("" : : "r"(b) : "memory"); /* keep every copy */
    }
    double copy_bw = (double)iters * FRAME / (now_s() - t) / 1e6;
    bench_line("memcpy_64k_bw", copy_bw, "MB/s", 0);

    uint32_t ppi = 0;
    uint8_t field[2] = {a[50], a[51]};
    t = now_s();
    for (int i = 0; i < iters; i++) {
        /* the field back to the pseudo-header sum: each pass sums the
         * same frame as the TAP would hand it */
        a[50] = field[0], a[51] = field[1];
        if (offload_rx_complete(a, FRAME, &vh, &ppi) != 1) {
            fprintf(stderr, "rig-costs: offload_rx_complete refused the frame\n");
            return 1;
        }
    }
    double csum_bw = (double)iters * FRAME / (now_s() - t) / 1e6;
    bench_line("netvsp_rx_csum_64k_bw", csum_bw, "MB/s", csum_bw / copy_bw);

    int p[2];
    if (pipe(p) != 0) {
        fprintf(stderr, "rig-costs: pipe: %s\n", strerror(errno));
        return 1;
    }
    fcntl(p[1], F_SETPIPE_SZ, (int)FRAME); /* one write fits: no blocking in between */
    t = now_s();
    int done;
    for (done = 0; done < iters; done++) {
        if (write(p[1], a, FRAME) != (ssize_t)FRAME)
            break;
        size_t got = 0;
        while (got < FRAME) {
            ssize_t k = read(p[0], b + got, FRAME - got);
            if (k <= 0)
                break;
            got += (size_t)k;
        }
        if (got < FRAME)
            break;
    }
    if (done == iters) {
        double pipe_bw = (double)iters * FRAME / (now_s() - t) / 1e6;
        bench_line("pipe_64k_bw", pipe_bw, "MB/s", pipe_bw / copy_bw);
    } else {
        fprintf(stderr, "rig-costs: the pipe round stopped after %d of %d\n", done, iters);
        return 1;
    }
    close(p[0]);
    close(p[1]);
    free(a);
    free(b);
    return 0;
}
