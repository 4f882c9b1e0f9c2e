/* SPDX-License-Identifier: MIT */
/* The daemon object: event loop, the vmbus-user listening socket, partitions. */
#include <errno.h>
#include <event2/thread.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/log.h"
#include "vmbusd/internal.h"

#define ACCEPT_PAUSE_MS 250 /* listening stops this long when out of fds */

static void accept_resume_cb(evutil_socket_t fd, short what, void *arg)
{
    event_add(arg, NULL);
}

/* A log line about a connection that has no partition (yet), through the
 * daemon's rate limit: a VMM connecting in a loop, or a flood of
 * connections, must not flood the log.  Loop thread only. */
static void conn_log(struct vmbusd *d, enum log_level lvl, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void conn_log(struct vmbusd *d, enum log_level lvl, const char *fmt, ...)
{
    uint64_t dropped;
    if (lvl > log_get_level() || !ratelimit_allow(&d->accept_rl, &dropped))
        return;
    char buf[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (dropped)
        log_msg(lvl, "%s (and %llu similar lines suppressed)", buf, (unsigned long long)dropped);
    else
        log_msg(lvl, "%s", buf);
}

void daemon_accept_failed(struct vmbusd *d, struct event *ev, const char *path, int err)
{
    if (err == EAGAIN || err == EWOULDBLOCK || err == EINTR || err == ECONNABORTED)
        return; /* nothing pending, or the client already gave up */
    bool out_of_resources = err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM;
    /* The pending connection stays in the backlog and keeps the socket
     * readable: accepting again at once would spin.  Pause listening; the
     * backlog waits (clients block in connect or get EAGAIN). */
    if (out_of_resources) {
        event_del(ev);
        struct timeval tv = {0, ACCEPT_PAUSE_MS * 1000};
        if (event_base_once(d->base, -1, EV_TIMEOUT, accept_resume_cb, ev, &tv) < 0)
            event_add(ev, NULL);
    }
    conn_log(d, LOG_WARN, "accept on %s: %s%s", path, strerror(err),
               out_of_resources ? "; not accepting connections for a moment" : "");
}

bool daemon_fds_take(struct vmbusd *d, unsigned n)
{
    unsigned cur = atomic_load(&d->fds_used);
    do {
        if (cur + n > d->fd_budget)
            return false;
    } while (!atomic_compare_exchange_weak(&d->fds_used, &cur, cur + n));
    return true;
}

void daemon_fds_release(struct vmbusd *d, unsigned n)
{
    atomic_fetch_sub(&d->fds_used, n);
}

/* Tell a connection vmbusd does not take why, then close it.  The ERROR
 * waits in its socket; whatever it sent is not read. */
static void refuse_conn(struct vmbusd *d, int cfd, const char *why)
{
    struct {
        struct vu_hdr h;
        struct vu_error e;
    } m = {.h = {.type = VU_MSG_ERROR, .size = sizeof(struct vu_error)},
           .e = {.code = ECONNREFUSED}};
    snprintf(m.e.message, sizeof(m.e.message), "vmbusd refuses the connection: %s", why);
    if (send(cfd, &m, sizeof(m), MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
        /* nothing more to tell it */
    }
    struct ucred cr = {0};
    socklen_t len = sizeof(cr);
    getsockopt(cfd, SOL_SOCKET, SO_PEERCRED, &cr, &len);
    close(cfd);
    conn_log(d, LOG_WARN, "VMM connection (pid %d, uid %d) refused: %s", (int)cr.pid, (int)cr.uid,
             why);
}

static void accept_cb(evutil_socket_t fd, short what, void *arg)
{
    struct vmbusd *d = arg;
    int cfd = accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (cfd < 0) {
        daemon_accept_failed(d, d->listen_ev, d->cfg.socket_path, errno);
        return;
    }
    pthread_mutex_lock(&d->conns_lock);
    bool full = d->nconns >= d->cfg.max_connections;
    pthread_mutex_unlock(&d->conns_lock);
    if (full) {
        char why[96];
        snprintf(why, sizeof(why), "it serves %u VMM connections (max-connections)",
                 d->cfg.max_connections);
        refuse_conn(d, cfd, why);
        return;
    }
    /* A new VM comes in only while one more VMM could hand over its whole
     * quota: VMs already running can still add what they need. */
    if (atomic_load(&d->fds_used) + 1 + d->cfg.max_fds_per_conn > d->fd_budget ||
        !daemon_fds_take(d, 1)) {
        refuse_conn(d, cfd, "it is near its file descriptor limit (RLIMIT_NOFILE)");
        return;
    }
    struct vmm_conn *c = conn_create(d, cfd);
    if (!c) {
        daemon_fds_release(d, 1);
        close(cfd);
        return;
    }
    pthread_mutex_lock(&d->conns_lock);
    LIST_INSERT_HEAD(&d->conns, c, link);
    d->nconns++;
    pthread_mutex_unlock(&d->conns_lock);
    log_debug("VMM connection accepted on %s", d->cfg.socket_path);
}

void daemon_conn_closed(struct vmm_conn *c, const char *why)
{
    struct vmbusd *d = c->d;
    pthread_mutex_lock(&d->conns_lock);
    LIST_REMOVE(c, link); /* listed since accept; conn_teardown calls this once */
    d->nconns--;
    pthread_mutex_unlock(&d->conns_lock);
    /* A VMM that breaks the protocol is worth a warning; a VMM that simply
     * goes away is not. */
    enum log_level lvl = strncmp(why, "VMM protocol error", 18) == 0 ? LOG_WARN : LOG_INFO;
    if (c->xp)
        log_msg(lvl, "partition %s (id %u): connection closed: %s", c->name, xp_id(c->xp), why);
    else
        conn_log(d, lvl, "VMM connection (pid %d, uid %d, before HELLO) closed: %s",
                 (int)c->peer_pid, (int)c->peer_uid, why);
}

/* Bind a unix socket, refusing to steal one a live process still serves. */
int daemon_bind_unix(const char *path, int type, const struct cfg_sock_access *acc, char *err,
                     size_t errlen)
{
    /* The socket is bound under a temporary name, given its group and mode,
     * put into listening state and only then renamed to its real path: a
     * client that finds the file can always connect, and the file never has
     * a mode wider than acc, whatever the umask. */
    struct sockaddr_un sa = {.sun_family = AF_UNIX}, tmp = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path) ||
        snprintf(tmp.sun_path, sizeof(tmp.sun_path), "%s.%ld.tmp", path, (long)getpid()) >=
            (int)sizeof(tmp.sun_path)) {
        snprintf(err, errlen, "socket path %s is too long", path);
        return -1;
    }
    strcpy(sa.sun_path, path);
    int probe = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
    if (probe >= 0 && connect(probe, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
        close(probe);
        snprintf(err, errlen,
                 "socket %s is in use by another running vmbusd (stop it, or choose "
                 "another path with --socket)",
                 path);
        return -1;
    }
    if (probe >= 0)
        close(probe);
    int fd = socket(AF_UNIX, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    unlink(tmp.sun_path); /* left by a vmbusd of the same pid that died here */
    if (bind(fd, (struct sockaddr *)&tmp, sizeof(tmp)) < 0) {
        snprintf(err, errlen, "cannot bind %s: %s", tmp.sun_path, strerror(errno));
        close(fd);
        return -1;
    }
    /* Group first: chmod after chown keeps the mode exactly as asked. */
    if (acc->gid != (gid_t)-1 && chown(tmp.sun_path, (uid_t)-1, acc->gid) < 0) {
        snprintf(err, errlen, "cannot give %s to group %s: %s", path, acc->group,
                 strerror(errno));
        goto fail_bound;
    }
    if (chmod(tmp.sun_path, acc->mode) < 0) {
        snprintf(err, errlen, "cannot set mode %04o on %s: %s", acc->mode, path,
                 strerror(errno));
        goto fail_bound;
    }
    if (listen(fd, SOMAXCONN) < 0) {
        snprintf(err, errlen, "listen on %s: %s", path, strerror(errno));
        goto fail_bound;
    }
    /* Replaces a stale file from a previous run (its daemon did not answer). */
    if (rename(tmp.sun_path, path) < 0) {
        snprintf(err, errlen, "cannot create %s: %s", path, strerror(errno));
        goto fail_bound;
    }
    return fd;
fail_bound:
    close(fd);
    unlink(tmp.sun_path);
    return -1;
}

static void mkdir_parent(const char *path)
{
    char dir[256];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir)
        return;
    *slash = 0;
    mkdir(dir, 0755); /* /run/vmbusd for the default paths; errors show at bind */
}

unsigned long vmbusd_raise_fd_limit(void)
{
    /* Many VMs need many fds (epoll has no FD_SETSIZE limit); the hard
     * limit is what the administrator allows (LimitNOFILE=). */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return 0;
    if (rl.rlim_cur < rl.rlim_max) {
        rlim_t want = rl.rlim_max;
        rl.rlim_cur = want;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
            log_warn("cannot raise RLIMIT_NOFILE to %llu: %s", (unsigned long long)want,
                     strerror(errno));
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    return rl.rlim_cur == RLIM_INFINITY ? ~0ul : (unsigned long)rl.rlim_cur;
}

/* The connections' share of RLIMIT_NOFILE: every fd held for them is
 * counted against it, so vmbusd refuses a VM (with a reason) before the
 * kernel refuses vmbusd an fd. */
static void size_fd_budget(struct vmbusd *d)
{
    struct rlimit rl;
    unsigned long long limit = UINT32_MAX;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < UINT32_MAX)
        limit = rl.rlim_cur;
    d->fd_budget = limit > DAEMON_FD_RESERVE ? (unsigned)(limit - DAEMON_FD_RESERVE) : 0;
    log_info("RLIMIT_NOFILE %llu: %u fds for up to %u VMM connections, up to %u handed over by "
             "each",
             limit, d->fd_budget, d->cfg.max_connections, d->cfg.max_fds_per_conn);
}

struct vmbusd *vmbusd_create(const struct vmbusd_config *cfg, char *err, size_t errlen)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, (void (*)(void))evthread_use_pthreads);
    struct vmbusd *d = calloc(1, sizeof(*d));
    if (!d) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    d->cfg = *cfg;
    d->listen_fd = d->ctl_fd = -1;
    d->accept_rl = (struct ratelimit)RATELIMIT_INIT(5, 1);
    if (!d->cfg.max_connections)
        d->cfg.max_connections = CFG_DEF_MAX_CONNECTIONS;
    if (!d->cfg.max_fds_per_conn)
        d->cfg.max_fds_per_conn = CFG_DEF_MAX_FDS_PER_CONN;
    size_fd_budget(d);
    pthread_mutex_init(&d->conns_lock, NULL);
    d->base = event_base_new();
    int workers = cfg->workers > 0 ? cfg->workers : 4;
    bool batch = cfg->worker_sched == CFG_WORKER_SCHED_BATCH;
    d->wq = workq_create(workers, batch);
    if (!d->base || !d->wq) {
        snprintf(err, errlen, "cannot create the event loop or worker pool");
        goto fail;
    }
    log_info("worker pool: %d threads, %s", workers,
             batch ? "SCHED_BATCH (worker-sched = batch)"
                   : "policy as started (worker-sched = normal)");
    if (plugins_load(d, err, errlen) < 0)
        goto fail;
    mkdir_parent(cfg->socket_path);
    d->listen_fd =
        daemon_bind_unix(cfg->socket_path, SOCK_SEQPACKET, &cfg->socket_access, err, errlen);
    if (d->listen_fd < 0)
        goto fail;
    d->listen_ev = event_new(d->base, d->listen_fd, EV_READ | EV_PERSIST, accept_cb, d);
    event_add(d->listen_ev, NULL);
    if (cfg->control_path[0]) {
        mkdir_parent(cfg->control_path);
        if (control_listen(d, err, errlen) < 0)
            goto fail;
    }
    return d;
fail:
    vmbusd_destroy(d);
    return NULL;
}

int vmbusd_check_config(const struct vmbusd_config *cfg, char *err, size_t errlen)
{
    struct vmbusd *d = calloc(1, sizeof(*d));
    if (!d)
        return -1;
    d->cfg = *cfg;
    int ret = plugins_load(d, err, errlen);
    plugins_unload(d);
    free(d);
    return ret;
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
    struct vmbusd *d = arg;
    log_info("signal %d: shutting down", (int)sig);
    event_base_loopbreak(d->base);
}

int vmbusd_run(struct vmbusd *d, bool handle_signals)
{
    if (handle_signals) {
        signal(SIGPIPE, SIG_IGN);
        d->sig_int = evsignal_new(d->base, SIGINT, signal_cb, d);
        d->sig_term = evsignal_new(d->base, SIGTERM, signal_cb, d);
        event_add(d->sig_int, NULL);
        event_add(d->sig_term, NULL);
    }
    log_info("vmbusd listening on %s%s%s", d->cfg.socket_path,
             d->cfg.control_path[0] ? ", control on " : "", d->cfg.control_path);
    return event_base_loop(d->base, EVLOOP_NO_EXIT_ON_EMPTY);
}

static void *loop_thread(void *arg)
{
    pthread_setname_np(pthread_self(), "vmbusd-loop"); /* for top -H and perf */
    vmbusd_run(arg, false);
    return NULL;
}

int vmbusd_start_thread(struct vmbusd *d)
{
    if (pthread_create(&d->thread, NULL, loop_thread, d) != 0)
        return -1;
    d->thread_started = true;
    return 0;
}

void vmbusd_stop(struct vmbusd *d)
{
    /* Not event_base_loopbreak: a loop that starts clears its break flag,
     * so a stop made before would be lost and the loop never end.  loopexit
     * queues an event that the loop, running or yet to start, handles. */
    event_base_loopexit(d->base, NULL);
}

static void teardown_all_cb(evutil_socket_t fd, short what, void *arg)
{
    struct vmbusd *d = arg;
    for (;;) {
        pthread_mutex_lock(&d->conns_lock);
        struct vmm_conn *c = LIST_FIRST(&d->conns);
        pthread_mutex_unlock(&d->conns_lock);
        if (!c)
            break;
        conn_teardown(c, "vmbusd shutting down");
    }
}

void vmbusd_destroy(struct vmbusd *d)
{
    if (!d)
        return;
    if (d->thread_started) {
        vmbusd_stop(d);
        pthread_join(d->thread, NULL);
        d->thread_started = false;
    }
    /* Partitions are torn down by the loop's own code path, then the
     * worker pool finishes their teardown work. */
    if (d->base)
        teardown_all_cb(-1, 0, d);
    workq_destroy(d->wq);
    control_close(d);
    if (d->listen_ev)
        event_free(d->listen_ev);
    if (d->listen_fd >= 0) {
        close(d->listen_fd);
        unlink(d->cfg.socket_path);
    }
    if (d->sig_int)
        event_free(d->sig_int);
    if (d->sig_term)
        event_free(d->sig_term);
    plugins_unload(d);
    if (d->base)
        event_base_free(d->base);
    pthread_mutex_destroy(&d->conns_lock);
    free(d);
}

unsigned vmbusd_partition_count(struct vmbusd *d)
{
    pthread_mutex_lock(&d->conns_lock);
    unsigned n = 0;
    struct vmm_conn *c;
    LIST_FOREACH(c, &d->conns, link)
        if (c->xp)
            n++;
    pthread_mutex_unlock(&d->conns_lock);
    return n;
}
