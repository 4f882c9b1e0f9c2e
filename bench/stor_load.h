/* SPDX-License-Identifier: MIT */
/* Storage load generator of vmbusd-bench: one thread keeps qd requests of bs
 * bytes in flight against a file for a while and counts what completes.
 * The baseline is io_uring used directly (what the kernel gives for free);
 * the same load through the storage VSP's backend queue (src/vsp/storvsp)
 * shows what that layer costs, and storvsp's own figures (a simulated
 * storvsc guest) are compared with the same baseline at the same depth. */
#ifndef VMBUSD_BENCH_STOR_LOAD_H
#define VMBUSD_BENCH_STOR_LOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum stor_load_path {
    STOR_LOAD_DIRECT,        /* liburing, readv/writev, one ring, this thread */
    STOR_LOAD_QUEUE_URING,   /* struct stor_queue on io_uring (eventfd + reap) */
    STOR_LOAD_QUEUE_THREADS, /* struct stor_queue on its thread pool */
};

struct stor_load {
    size_t bs;       /* bytes per request, multiple of 512 */
    unsigned qd;     /* requests in flight, 1..256 */
    bool write;
    bool random;     /* bs-aligned random offsets, else sequential (wrapping) */
    double seconds;
};

struct stor_load_result {
    uint64_t ops;
    double iops;
    double mbps;     /* MB/s (10^6) */
    double cpu_us;   /* the process's CPU time per request (of bs bytes), µs */
};

/* Run load on path (size bytes, >= bs).  0, or -errno (printed). */
int stor_load_run(const char *path, uint64_t size, enum stor_load_path how,
                  const struct stor_load *load, struct stor_load_result *res);

/* A file of size bytes (written, not sparse) in a tmpfs directory (/dev/shm);
 * returns its path (static buffer) or NULL if there is no tmpfs to use. */
const char *stor_load_tmpfs_file(uint64_t size);

#endif
