/* SPDX-License-Identifier: MIT */
/*
 * vmbusd configuration (conf/vmbusd.conf documents the format).
 *
 *   [daemon]           socket, control, workers, log-level, plugin-dir,
 *                      socket-mode, socket-group, control-mode, control-group,
 *                      max-connections, max-fds-per-connection
 *   [vm NAME]          vsp = list of VSP names the VM gets ("default" matches
 *                      any VM without a section of its own);
 *                      VSPNAME.key = value: a per-VM parameter of that VSP
 *                      (may repeat), checked by the VSP's check() at start
 *   [vsp NAME]         key = value parameters handed to that VSP's init()
 */
#ifndef VMBUSD_CONFIG_H
#define VMBUSD_CONFIG_H

#include <stddef.h>
#include <sys/types.h>

#define CFG_MAX_VMS 32
#define CFG_MAX_VSPS 32
#define CFG_MAX_PARAMS 32
#define CFG_MAX_DIRS 8
#define CFG_MAX_VM_PARAMS 64 /* VSPNAME.key lines of one [vm] section */
/* Defaults of the fd limits (conf/vmbusd.conf explains the numbers). */
#define CFG_DEF_MAX_CONNECTIONS 1024
#define CFG_DEF_MAX_FDS_PER_CONN 160 /* 64 vCPUs x 2 SINT fds + 32 regions */
#define CFG_MIN_FDS_PER_CONN 3       /* one region and one vCPU */
#define CFG_MAX_FDS_PER_CONN 544     /* 256 vCPUs x 2 + 32 regions */

struct vsp_plugin;

struct cfg_vsp_params {
    char name[64];
    int nparams;
    char *keys[CFG_MAX_PARAMS + 1];   /* NULL-terminated */
    char *values[CFG_MAX_PARAMS + 1];
};

/* One "VSPNAME.key = value" line of a [vm] section. */
struct cfg_vm_param {
    char *vsp;   /* VSPNAME */
    char *key;   /* what follows the first '.' */
    char *value;
    char *where; /* "FILE:LINE", for the VSP's error messages */
};

struct cfg_vm {
    char name[64];
    int nvsps;
    char vsps[CFG_MAX_VSPS][64];
    int nparams;
    struct cfg_vm_param params[CFG_MAX_VM_PARAMS];
};

/* Who may connect to one of vmbusd's sockets (docs/security.md): vmbusd
 * sets these on the socket file after bind, whatever the umask. */
struct cfg_sock_access {
    unsigned mode; /* permission bits, e.g. 0660 */
    gid_t gid;     /* (gid_t)-1: vmbusd's own group */
    char group[64];
};

/* [daemon] worker-sched: the scheduling policy of the worker pool's threads
 * (and of the io_uring io-wq threads their VSPs' rings spawn, which inherit
 * it).  Batch: a worker woken for an I/O completion or a guest's signal
 * does not preempt the thread running on its CPU (the io-wq thread still
 * completing reads, the vCPU still queuing requests), so each wake-up finds
 * a batch of work (docs/design.md, "Threads and locks"). */
enum cfg_worker_sched { CFG_WORKER_SCHED_BATCH = 0, CFG_WORKER_SCHED_NORMAL };

struct vmbusd_config {
    char socket_path[108];
    char control_path[108];
    struct cfg_sock_access socket_access;  /* VMMs: 0660 */
    struct cfg_sock_access control_access; /* vmbusctl: 0600 */
    int workers;
    enum cfg_worker_sched worker_sched;
    int log_level;
    unsigned max_connections;  /* VMM connections at once */
    unsigned max_fds_per_conn; /* fds one VMM may hand over and vmbusd keeps */
    int ndirs;
    char plugin_dirs[CFG_MAX_DIRS][256];
    int nvms;
    struct cfg_vm vms[CFG_MAX_VMS];
    int nvspparams;
    struct cfg_vsp_params vspparams[CFG_MAX_VSPS];
    /* VSPs linked into the program that embeds vmbusd (the simulator's test
     * VSPs), NULL-terminated; treated like the built-in ones.  Not set from
     * a configuration file. */
    const struct vsp_plugin *const *linked_plugins;
};

/* Built-in defaults: socket /run/vmbusd/vmbus-user.sock (mode 0660),
 * control socket /run/vmbusd/control.sock (mode 0600), both in vmbusd's
 * group, 4 workers (worker-sched = normal), the CFG_DEF_* fd limits, no VMs
 * configured. */
void config_defaults(struct vmbusd_config *cfg);
/* If no [vm] section exists: "default" gets the four integration services. */
void config_default_vms(struct vmbusd_config *cfg);
/* Parse a config file on top of the current values.  On error returns -1
 * and writes "FILE:LINE: reason" into err. */
int config_load(struct vmbusd_config *cfg, const char *path, char *err, size_t errlen);
/* The VM section for name (or "default", or NULL). */
const struct cfg_vm *config_vm(const struct vmbusd_config *cfg, const char *name);
const struct cfg_vsp_params *config_vsp_params(const struct vmbusd_config *cfg, const char *vsp);
/* Add a VSPNAME.key = value line to vm (copies the strings): 0, or -1 if
 * the section has CFG_MAX_VM_PARAMS already or memory ran out. */
int config_vm_add_param(struct cfg_vm *vm, const char *vsp, const char *key, const char *value,
                        const char *where);
void config_free(struct vmbusd_config *cfg);

#endif
