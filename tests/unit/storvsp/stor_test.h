/* SPDX-License-Identifier: MIT */
/* Shared by the storage backend and SCSI target unit tests: which engine
 * this run uses (argv: "uring" or "threads"), image files in a temporary
 * directory, and waiting for a queue's completions through its eventfd as
 * the VSP does. */
#ifndef STOR_TEST_H
#define STOR_TEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "backend.h"

/* STOR_QUEUE_THREADS or 0, from argv; exits 77 (skip) when the io_uring run
 * finds no io_uring on this host, so that run never passes on the pool. */
extern unsigned stor_test_queue_flags;
void stor_test_init(int argc, char **argv);

/* A directory of its own under $TMPDIR (or /tmp), removed at exit. */
const char *stor_test_dir(void);
/* A file of size bytes in dir, every byte = pattern(offset); returns its path
 * (static buffer per call slot: copy it if needed beyond the next call). */
char *stor_test_file(const char *dir, const char *name, uint64_t size);
uint8_t stor_test_pattern(uint64_t off);

/* Open path and make a queue of depth on it with this run's engine. */
void stor_test_open(const char *path, bool readonly, unsigned depth,
                    struct stor_backend **b, struct stor_queue **q);
/* Reap q until *flag is set: waits on the eventfd (poll, 10 s guard
 * against a hang, which fails the test), then stor_queue_reap. */
void stor_test_wait(struct stor_queue *q, const bool *flag);
/* Allocated blocks of path (st_blocks, 512-byte units). */
uint64_t stor_test_st_blocks(const char *path);

#endif
