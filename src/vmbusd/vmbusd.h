/* SPDX-License-Identifier: MIT */
/*
 * vmbusd as a library: the daemon binary (main.c) and the in-process guest
 * simulator (tests/sim) both drive it through this interface.
 */
#ifndef VMBUSD_VMBUSD_H
#define VMBUSD_VMBUSD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vmbusd;
struct vmbusd_config; /* config.h */

/* Create the daemon: bind the vmbus-user socket and the control socket,
 * load the configured VSP plugins.  On failure returns NULL and writes a
 * one-line reason (naming the path / line at fault) into err. */
struct vmbusd *vmbusd_create(const struct vmbusd_config *cfg, char *err, size_t errlen);
/* Raise the process's soft RLIMIT_NOFILE to its hard limit (call before
 * vmbusd_create, which sizes the connection limit from it).  Returns the
 * soft limit now in force. */
unsigned long vmbusd_raise_fd_limit(void);
/* Load and initialise the configured plugins without serving anything:
 * 0, or -1 with the reason in err. */
int vmbusd_check_config(const struct vmbusd_config *cfg, char *err, size_t errlen);
/* Run the event loop in the calling thread until vmbusd_stop() or SIGINT/SIGTERM
 * (signals only handled when handle_signals is set). */
int vmbusd_run(struct vmbusd *d, bool handle_signals);
/* Run the event loop on a new thread (tests, simulator). */
int vmbusd_start_thread(struct vmbusd *d);
/* Ask the loop to end (any thread, even before the loop has started);
 * vmbusd_destroy() joins and frees. */
void vmbusd_stop(struct vmbusd *d);
void vmbusd_destroy(struct vmbusd *d);

/* Introspection for tests and vmbusctl (thread-safe snapshots). */
unsigned vmbusd_partition_count(struct vmbusd *d);

#endif
