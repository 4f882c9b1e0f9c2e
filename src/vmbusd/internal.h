/* SPDX-License-Identifier: MIT */
/* vmbusd internals shared by the daemon's files. */
#ifndef VMBUSD_INTERNAL_H
#define VMBUSD_INTERNAL_H

#include <event2/event.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/queue.h>
#include <sys/types.h>

#include "common/ratelimit.h"
#include "vmbusd/config.h"
#include "vmbusd/vmbus_user.h"
#include "vmbusd/vmbusd.h"
#include "vmbusd/vsp.h"
#include "vmbusd/workq.h"
#include "xpartition/xpartition.h"

struct sint_signaller;

struct loaded_plugin {
    const struct vsp_plugin *pl;
    void *state;
    void *dl; /* dlopen handle, NULL for built-ins */
    char path[256];
};

struct vmbusd {
    struct vmbusd_config cfg;
    struct event_base *base;
    int listen_fd;
    struct event *listen_ev;
    int ctl_fd;
    struct event *ctl_ev;
    struct control *ctl; /* control.c: the clients being served */
    struct event *sig_int, *sig_term;
    struct workq *wq;
    struct loaded_plugin plugins[CFG_MAX_VSPS];
    int nplugins;
    pthread_mutex_t conns_lock;
    LIST_HEAD(, vmm_conn) conns; /* newest first */
    unsigned nconns;
    /* fds held for connections (sockets, what VMMs hand over, channel
     * eventfds) and how many RLIMIT_NOFILE allows (daemon_fds_take) */
    atomic_uint fds_used;
    unsigned fd_budget;
    struct ratelimit accept_rl; /* refused / failed accepts (loop thread) */
    uint32_t next_partition_id;
    pthread_t thread;
    bool thread_started;
};

struct conn_eventfd {
    LIST_ENTRY(conn_eventfd) link; /* conn->evfds, under evfd_lock */
    struct vmm_conn *conn;
    struct vmbusd *d; /* the fd is returned to d's budget after conn is gone */
    uint32_t conn_id;
    int fd;
    struct workq_fd *wfd; /* NULL if it could not be watched */
};

struct vcpu_route {
    int resamplefd; /* -1: no SINT_ROUTE yet (the irqfd is in vmm_conn.sig) */
    struct event *eom_ev;
    struct vmm_conn *conn;
    uint32_t vp;
};

/* One VMM connection = one child partition. */
struct vmm_conn {
    LIST_ENTRY(vmm_conn) link; /* d->conns, under d->conns_lock */
    struct vmbusd *d;
    int fd;
    /* The VMM process as the kernel saw it at connect (SO_PEERCRED);
     * pid 0 / uid and gid -1 if it could not be read. */
    pid_t peer_pid;
    uid_t peer_uid;
    gid_t peer_gid;
    struct event *ev;
    struct event *retry_ev;  /* one-shot: armed while host messages wait */
    struct event *refuse_ev; /* made active by conn_attached() when a VSP refused the VM */
    uint32_t hello_seq;      /* HELLO_REPLY (or the refusal) waits for the VSPs' attach */
    int refuse_code;         /* under send_lock */
    char refuse_msg[VU_ERROR_MESSAGE_MAX]; /* ERROR's message, whole */
    bool retry_armed;        /* under send_lock */
    struct event *wev;       /* armed while replies wait for the VMM to read */
    STAILQ_HEAD(, out_msg) outq; /* under send_lock */
    unsigned outq_len;
    pthread_mutex_t send_lock;
    uint32_t seq;
    struct xpartition *xp;  /* after HELLO */
    char name[VU_VM_NAME_LEN];
    uint32_t nvcpus;
    unsigned vmm_fds; /* fds the VMM handed over that vmbusd keeps */
    struct vcpu_route routes[XP_MAX_VCPUS];
    _Atomic(struct sint_signaller *) sig; /* writes the irqfds; from the first SINT_ROUTE */
    pthread_mutex_t evfd_lock;
    LIST_HEAD(, conn_eventfd) evfds;
    struct vsp_partition *vp; /* the VSP layer's view */
    bool dead;
    atomic_int ctl_busy; /* control requests using this partition */
};

/* daemon.c */
/* fds of RLIMIT_NOFILE vmbusd keeps for itself (listening sockets, epoll,
 * plugins, vmbusctl clients, fds in flight); the rest is the budget of the
 * connections. */
#define DAEMON_FD_RESERVE 64
/* Count n more fds held for connections; false (nothing counted) if that
 * would pass the budget.  Any thread. */
bool daemon_fds_take(struct vmbusd *d, unsigned n);
void daemon_fds_release(struct vmbusd *d, unsigned n);
void daemon_conn_closed(struct vmm_conn *c, const char *why);
/* accept() on the listening socket of ev failed with err: log it (rate
 * limited) and, if vmbusd is out of fds or memory, stop listening for a
 * moment instead of spinning on the connection that stays pending. */
void daemon_accept_failed(struct vmbusd *d, struct event *ev, const char *path, int err);
/* Bind and listen on a unix socket at path, then give the file the mode
 * and group of acc (set explicitly: the umask does not decide who may
 * connect). */
int daemon_bind_unix(const char *path, int type, const struct cfg_sock_access *acc, char *err,
                     size_t errlen);

/* vmm_conn.c */
/* tests/sim only (NULL otherwise): called on the worker that is about to
 * read the guest-signal eventfd of partition vm's connection id conn_id,
 * so a test can take the counter first. */
typedef void (*vmbusd_eventfd_hook_fn)(const char *vm, uint32_t conn_id);
extern _Atomic(vmbusd_eventfd_hook_fn) vmbusd_eventfd_test_hook;
struct vmm_conn *conn_create(struct vmbusd *d, int fd);
/* Stop serving the connection (loop thread); the rest of the teardown runs
 * as a work item. */
void conn_teardown(struct vmm_conn *c, const char *why);
/* The VSPs' attach ended (any thread): code 0 sends HELLO_REPLY; else the
 * VMM gets ERROR code with msg in answer to its HELLO and the connection
 * closes (on the loop). */
void conn_attached(struct vmm_conn *c, int code, const char *msg);

/* vsp_host.c */
struct vsp_partition *host_partition_create(struct vmm_conn *c);
/* Attach the configured VSPs (as a work item). */
void host_partition_attach_all(struct vsp_partition *p);
/* Close every channel (VSP closes run; commands waiting on the guest fail).
 * Blocks; run on a worker. */
void host_partition_close(struct vsp_partition *p);
/* Close (if not yet), detach plugins, free.  Blocks; run on a worker. */
void host_partition_destroy(struct vsp_partition *p);
/* Call done(arg) on a worker once every VSP callback queued so far for
 * p's channels has returned (the closes a guest reset queued among them:
 * vsp.h has a VSP's close wait for its I/O into guest memory).  Returns at
 * once; -errno if it cannot be queued (done is then not called). */
int host_partition_fence(struct vsp_partition *p, void (*done)(void *arg), void *arg);
/* Copy of the published status values as "key=value\n" lines. */
char *host_partition_status_text(struct vsp_partition *p);
int host_partition_control(struct vsp_partition *p, const char *vsp, const char *cmd,
                           const char *args, char *reply, size_t len);
/* Timers of p not yet cancelled or (one-shot) run; for tests, not part of
 * the plugin API. */
unsigned host_timer_count(struct vsp_partition *p);

/* plugins.c */
int plugins_load(struct vmbusd *d, char *err, size_t errlen);
void plugins_unload(struct vmbusd *d);
struct loaded_plugin *plugins_find(struct vmbusd *d, const char *name);

/* control.c */
/* A request line, newline included (a KVP value is at most 2048 UTF-16
 * units, 6 KiB as UTF-8); a longer one gets an error and the connection
 * is closed. */
#define CTL_MAX_REQUEST 16384
/* Control connections served at once (a thread each); more are refused. */
#define CTL_MAX_CLIENTS 16
int control_listen(struct vmbusd *d, char *err, size_t errlen);
void control_close(struct vmbusd *d);

#endif
