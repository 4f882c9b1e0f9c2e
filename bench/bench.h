/* SPDX-License-Identifier: MIT */
/* What vmbusd-bench's two runs (single channel, --scale) share. */
#ifndef VMBUSD_BENCH_H
#define VMBUSD_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "simvm.h"

#define SCALE_DEFAULT_VMS 1000
#define SCALE_DEFAULT_CHANNELS 8
#define SCALE_MAX_VMS 100000
#define SCALE_MAX_CHANNELS 64 /* the echo VSP's limit (and the simulator's) */

extern bool quick, verbose;
extern bool net_tap_only; /* --net-tap: the TAP figures of the --net run only */
extern const char *net_tap_load; /* --net-tap=LOAD: that TAP load only */

double loadavg(void); /* 1-minute load average, or -1 */
double now_s(void);
/* CPU seconds this process (every thread: the bench's, the simulated
 * guest's, vmbusd's, io_uring's io-wq workers) has used. */
double cpu_s(void);
uint64_t now_ns(void);
/* q-quantile (0..1) of v[0..n), sorts v. */
double quantile(double *v, size_t n, double q);

/* One figure of the report.  unit is ASCII (BENCH lines), tunit what the
 * table shows; ratio < 0 marks a baseline (no ratio). */
void add_fig(const char *name, const char *label, double value, const char *unit,
             const char *tunit, double ratio, const char *vs);
void print_table(void);
void print_bench_lines(void);

/* Round trips through 'hops' threads woken by eventfds, in µs. */
void bench_eventfd(int hops, double *p50, double *p99);
/* n echo round trips of len bytes, every echo checked; rtt[] (µs) may be
 * NULL.  false on any error (printed). */
bool roundtrips(struct sim_chan *ch, uint32_t len, int n, double *rtt, uint64_t *trans);
/* Round-trip sends that found the guest->host ring full although every
 * earlier packet had been echoed (they waited for room, as Linux does). */
extern uint64_t ring_full_waits;

struct baselines {
    double efd_p50, efd_p99; /* eventfd ping-pong round trip, µs */
    double relay_p50;        /* 3-thread eventfd relay, µs */
    double load0, t_start;   /* load average and now_s() at the start */
};

struct scale_opts {
    int vms, channels;
};

/* The --scale run (scale.c); prints the report, returns the exit code. */
int scale_run(const struct scale_opts *o, const struct baselines *b);
/* The --net run (net.c): frames through netvsp. */
int net_run(void);

#endif
