/* SPDX-License-Identifier: MIT */
/*
 * One VMM connection (= one child partition): the vmbus-user protocol on the
 * daemon side.  Runs on the event loop: each readable fd is an interrupt, the
 * callback drains it (ISR) and routes the work (DPC); VSP work goes to the
 * worker pool.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/fdpass.h"
#include "common/log.h"
#include "vmbusd/internal.h"
#include "vmbusd/sint_signal.h"
#include "vmbusd/vmbus_user.h"
#include "vmbusd/vmm_fd.h"

#define RETRY_MS 50 /* re-try stuck message deliveries after this long */

/* A message that could not be sent yet because the VMM is slow to read.
 * Order is kept: once one message waits, later ones queue behind it. */
struct out_msg {
    STAILQ_ENTRY(out_msg) link;
    size_t len;
    int nfds;
    int fds[VU_MAX_FDS];
    uint8_t buf[VU_MAX_MSG_SIZE];
};

#define OUTQ_MAX 4096

static ssize_t send_one(int fd, const uint8_t *buf, size_t len, const int *fds, int nfds)
{
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
    return fdpass_send(fd, &iov, 1, fds, nfds, MSG_DONTWAIT);
}

static void out_free(struct out_msg *m)
{
    for (int i = 0; i < m->nfds; i++)
        close(m->fds[i]);
    free(m);
}

/* Send what waits, in order; send_lock held.  Returns -errno on a dead socket. */
static int flush_outq_locked(struct vmm_conn *c)
{
    struct out_msg *m;
    while ((m = STAILQ_FIRST(&c->outq))) {
        if (send_one(c->fd, m->buf, m->len, m->fds, m->nfds) < 0)
            return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
        STAILQ_REMOVE_HEAD(&c->outq, link);
        c->outq_len--;
        out_free(m);
    }
    return 0;
}

static int conn_send(struct vmm_conn *c, uint32_t type, uint32_t seq, const void *body,
                     size_t len, const int *fds, int nfds)
{
    uint8_t buf[VU_MAX_MSG_SIZE];
    struct vu_hdr h = {.type = type, .size = (uint32_t)len, .seq = seq};
    if (sizeof(h) + len > sizeof(buf) || nfds > VU_MAX_FDS)
        return -EMSGSIZE;
    memcpy(buf, &h, sizeof(h));
    if (len)
        memcpy(buf + sizeof(h), body, len);
    int ret = 0;
    pthread_mutex_lock(&c->send_lock);
    if (c->dead) {
        ret = -EPIPE;
    } else if (STAILQ_EMPTY(&c->outq) && send_one(c->fd, buf, sizeof(h) + len, fds, nfds) >= 0) {
        ret = 0;
    } else if (!STAILQ_EMPTY(&c->outq) || errno == EAGAIN || errno == EWOULDBLOCK) {
        /* The VMM is not reading: keep the message (with its own copies of
         * the fds) and stop reading new requests until it catches up. */
        struct out_msg *m = c->outq_len < OUTQ_MAX ? calloc(1, sizeof(*m)) : NULL;
        if (!m) {
            ret = -ENOBUFS;
        } else {
            m->len = sizeof(h) + len;
            memcpy(m->buf, buf, m->len);
            for (int i = 0; i < nfds; i++)
                m->fds[m->nfds++] = fcntl(fds[i], F_DUPFD_CLOEXEC, 0);
            STAILQ_INSERT_TAIL(&c->outq, m, link);
            c->outq_len++;
            event_add(c->wev, NULL);
        }
    } else {
        ret = -errno;
    }
    pthread_mutex_unlock(&c->send_lock);
    return ret;
}

/* The socket can take more: drain the queue, then read requests again. */
static void conn_write_cb(evutil_socket_t fd, short what, void *arg)
{
    struct vmm_conn *c = arg;
    pthread_mutex_lock(&c->send_lock);
    int ret = flush_outq_locked(c);
    bool empty = STAILQ_EMPTY(&c->outq);
    if (empty)
        event_del(c->wev);
    pthread_mutex_unlock(&c->send_lock);
    if (ret < 0) {
        conn_teardown(c, strerror(-ret));
        return;
    }
    if (empty && c->ev)
        event_add(c->ev, NULL);
}

/* Tell the VMM why (ERROR with an errno-style code), then close. */
static void conn_verror(struct vmm_conn *c, int code, const char *fmt, va_list ap)
{
    struct vu_error e = {.code = (uint32_t)code};
    vsnprintf(e.message, sizeof(e.message), fmt, ap);
    conn_send(c, VU_MSG_ERROR, 0, &e, sizeof(e), NULL, 0);
    char why[200];
    snprintf(why, sizeof(why), "VMM protocol error: %s", e.message);
    conn_teardown(c, why);
}

/* A message that breaks the protocol: code EPROTO. */
static void conn_error(struct vmm_conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void conn_error(struct vmm_conn *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    conn_verror(c, EPROTO, fmt, ap);
    va_end(ap);
}

/* A refusal with a more specific code (docs/vmbus-user-protocol.md, ERROR). */
static void conn_error_code(struct vmm_conn *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void conn_error_code(struct vmm_conn *c, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    conn_verror(c, code, fmt, ap);
    va_end(ap);
}

/* ------------------------------------------------------------------ */
/* xp_transport_ops                                                    */

/* Called with the partition lock or a ring lock held, from the loop, from
 * workers and from VSP threads.  A worker writes the irqfd itself when the
 * VMM made it non-blocking (one thread wake-up less per I/O completion;
 * sint_signal.h); everywhere else, the partition's SINT thread does. */
static void op_signal_vp(void *ctx, uint32_t vp)
{
    struct vmm_conn *c = ctx;
    struct sint_signaller *s = atomic_load(&c->sig);
    if (!s)
        return; /* none yet: xp_set_sint_route re-raises */
    if (workq_on_worker())
        sint_signaller_raise_here(s, vp);
    else
        sint_signaller_raise(s, vp);
}

_Atomic(vmbusd_eventfd_hook_fn) vmbusd_eventfd_test_hook;

/* On a worker of the pool, which then runs the receive this queues (the
 * event loop is not involved: a guest signal costs one thread wake-up). */
static void eventfd_cb(void *arg)
{
    struct conn_eventfd *e = arg;
    vmbusd_eventfd_hook_fn hook = atomic_load(&vmbusd_eventfd_test_hook);
    if (hook)
        hook(e->conn->name, e->conn_id);
    /* ISR: drain the fd (the VMM shares it: never a blocking read); DPC:
     * route the signal to the channel. */
    if (!vmm_eventfd_drain(e->fd))
        return;
    xp_connection_signalled(e->conn->xp, e->conn_id);
}

static int op_eventfd_add(void *ctx, uint32_t conn_id)
{
    struct vmm_conn *c = ctx;
    if (!daemon_fds_take(c->d, 1))
        return -ENFILE;
    struct conn_eventfd *e = calloc(1, sizeof(*e));
    if (!e) {
        daemon_fds_release(c->d, 1);
        return -ENOMEM;
    }
    e->fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (e->fd < 0) {
        int err = errno;
        daemon_fds_release(c->d, 1);
        free(e);
        return -err;
    }
    e->d = c->d;
    e->conn = c;
    e->conn_id = conn_id;
    struct vu_eventfd m = {.connection_id = conn_id};
    int ret = conn_send(c, VU_MSG_EVENTFD_ADD, 0, &m, sizeof(m), &e->fd, 1);
    if (ret < 0 && ret != -EPIPE) {
        log_warn("partition %s: cannot hand eventfd for connection %#x to the VMM: %s", c->name,
                 conn_id, strerror(-ret));
    }
    /* Edge-triggered: one callback per signal (or burst), which drains. */
    e->wfd = workq_fd_add(c->d->wq, e->fd, WORKQ_FD_EDGE, eventfd_cb, e);
    if (!e->wfd)
        log_warn("partition %s: cannot watch the eventfd of connection %#x: %s; its signals "
                 "are lost",
                 c->name, conn_id, strerror(errno));
    pthread_mutex_lock(&c->evfd_lock);
    LIST_INSERT_HEAD(&c->evfds, e, link);
    pthread_mutex_unlock(&c->evfd_lock);
    return 0;
}

static void eventfd_finalize(void *arg)
{
    struct conn_eventfd *e = arg;
    close(e->fd);
    daemon_fds_release(e->d, 1);
    free(e);
}

static void eventfd_free(struct conn_eventfd *e)
{
    /* Non-blocking: the callback may be running on a worker right now and
     * wait for the partition lock we may hold. */
    if (e->wfd)
        workq_fd_del_async(e->wfd, eventfd_finalize, e);
    else
        eventfd_finalize(e);
}

/* Stop and free every guest eventfd of c: when this returns, no signal
 * callback runs or will run for c (each delete waits for one running on a
 * worker).  Not with the partition lock held. */
static void eventfds_stop(struct vmm_conn *c)
{
    for (;;) {
        pthread_mutex_lock(&c->evfd_lock);
        struct conn_eventfd *e = LIST_FIRST(&c->evfds);
        if (e)
            LIST_REMOVE(e, link);
        pthread_mutex_unlock(&c->evfd_lock);
        if (!e)
            break;
        workq_fd_del(e->wfd);
        eventfd_finalize(e);
    }
}

static void op_eventfd_del(void *ctx, uint32_t conn_id)
{
    struct vmm_conn *c = ctx;
    pthread_mutex_lock(&c->evfd_lock);
    struct conn_eventfd *e;
    LIST_FOREACH(e, &c->evfds, link) {
        if (e->conn_id != conn_id)
            continue;
        LIST_REMOVE(e, link); /* and leave the loop */
        pthread_mutex_unlock(&c->evfd_lock);
        struct vu_eventfd m = {.connection_id = conn_id};
        conn_send(c, VU_MSG_EVENTFD_DEL, 0, &m, sizeof(m), NULL, 0);
        eventfd_free(e);
        return;
    }
    pthread_mutex_unlock(&c->evfd_lock);
}

/* Host messages wait for the guest's slot: watch the resample fds for the
 * guest's EOM, and retry in RETRY_MS in case it never comes.  Any thread,
 * partition locked; after the teardown began nothing is armed.
 *
 * The resample fds are watched only while messages wait: KVM signals one
 * whenever the guest acknowledges SINT 2, which is every VMBus interrupt,
 * data-path ones included, and a permanent watch woke the event loop for
 * each.  An ack that came while nobody watched stays in the eventfd's
 * count, so the watch added here fires at once for it. */
static void op_msgs_waiting(void *ctx)
{
    struct vmm_conn *c = ctx;
    pthread_mutex_lock(&c->send_lock);
    if (!c->dead && c->retry_ev && !c->retry_armed) {
        struct timeval tv = {0, RETRY_MS * 1000};
        c->retry_armed = true;
        event_add(c->retry_ev, &tv);
    }
    for (uint32_t i = 0; !c->dead && i < c->nvcpus; i++)
        if (c->routes[i].eom_ev)
            event_add(c->routes[i].eom_ev, NULL); /* one-shot; no-op while armed */
    pthread_mutex_unlock(&c->send_lock);
}

static const struct xp_transport_ops conn_transport_ops = {
    .signal_vp = op_signal_vp,
    .eventfd_add = op_eventfd_add,
    .eventfd_del = op_eventfd_del,
    .msgs_waiting = op_msgs_waiting,
};

/* ------------------------------------------------------------------ */
/* Incoming messages                                                   */

/* Loop thread, while messages wait (op_msgs_waiting re-arms the one-shot
 * watch as long as they do). */
static void eom_cb(evutil_socket_t fd, short what, void *arg)
{
    struct vcpu_route *r = arg;
    vmm_eventfd_drain(fd);
    xp_eom(r->conn->xp, r->vp);
}

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
    struct vmm_conn *c = arg;
    pthread_mutex_lock(&c->send_lock);
    c->retry_armed = false;
    pthread_mutex_unlock(&c->send_lock);
    xp_flush(c->xp); /* re-arms through op_msgs_waiting while messages wait */
}

/* fds from the VMM: their close may block (vmm_fd_close) */
static void close_fds(int *fds, int n)
{
    for (int i = 0; i < n; i++)
        vmm_fd_close(fds[i]);
}

/* Why xp_add_region() refused a region, for the VMM's developer. */
static const char *region_refusal(int err)
{
    switch (err) {
    case EBADF: return "the fd is not a memfd";
    case EPERM: return "the memfd is not sealed with F_SEAL_SHRINK";
    case EROFS: return "the memfd is write-sealed";
    case ERANGE: return "beyond the end of the memfd";
    case EEXIST: return "overlaps another region";
    case ENOSPC: return "more than 32 regions";
    case EINVAL: return "unaligned, empty or wrapping";
    default: return strerror(err);
    }
}

/* Loop thread: a VSP refused the VM in its attach (conn_attached). */
static void refuse_cb(evutil_socket_t fd, short what, void *arg)
{
    struct vmm_conn *c = arg;
    /* struct vu_error with its message run on as far as the text needs
     * (a VSP's reason can name a long path); never shorter than the
     * struct, which is all an older VMM reads.  Zeroed: the bytes after
     * the message's NUL go to the VMM too. */
    struct {
        uint32_t code;
        char message[VU_ERROR_MESSAGE_MAX];
    } e;
    memset(&e, 0, sizeof(e));
    pthread_mutex_lock(&c->send_lock);
    e.code = (uint32_t)c->refuse_code;
    snprintf(e.message, sizeof(e.message), "%s", c->refuse_msg);
    pthread_mutex_unlock(&c->send_lock);
    size_t len = sizeof(e.code) + strlen(e.message) + 1;
    if (len < sizeof(struct vu_error))
        len = sizeof(struct vu_error);
    /* The answer to HELLO (its seq): the VMM stops here. */
    conn_send(c, VU_MSG_ERROR, c->hello_seq, &e, len, NULL, 0);
    conn_teardown(c, "refused by a VSP");
}

void conn_attached(struct vmm_conn *c, int code, const char *msg)
{
    if (code == 0) {
        struct vu_hello_reply r = {.major = VU_PROTOCOL_MAJOR, .minor = VU_PROTOCOL_MINOR,
                                   .partition_id = xp_id(c->xp)};
        conn_send(c, VU_MSG_HELLO_REPLY, c->hello_seq, &r, sizeof(r), NULL, 0);
        return;
    }
    /* The teardown runs on the loop; it waits for this attach work item
     * (host_partition_close drains it) before c can go away. */
    pthread_mutex_lock(&c->send_lock);
    c->refuse_code = code;
    snprintf(c->refuse_msg, sizeof(c->refuse_msg), "%s", msg);
    if (!c->dead && c->refuse_ev) /* conn_teardown frees it under send_lock */
        event_active(c->refuse_ev, EV_TIMEOUT, 0);
    pthread_mutex_unlock(&c->send_lock);
}

static void handle_hello(struct vmm_conn *c, const struct vu_hdr *h, const void *body)
{
    struct vu_hello m;
    if (c->xp)
        return conn_error(c, "HELLO sent twice");
    if (h->size != sizeof(m))
        return conn_error(c, "HELLO of %u bytes (expected %zu)", h->size, sizeof(m));
    memcpy(&m, body, sizeof(m));
    /* A name cut to fit would be a different name than the VMM meant (and
     * could collide with another VM's). */
    if (!memchr(m.vm_name, 0, sizeof(m.vm_name)))
        return conn_error_code(c, ENAMETOOLONG, "HELLO vm_name has no NUL in its %d bytes",
                               VU_VM_NAME_LEN);
    if (m.major != VU_PROTOCOL_MAJOR)
        return conn_error_code(c, EPROTONOSUPPORT,
                               "protocol version %u.%u not supported (vmbusd speaks %u.%u)",
                               m.major, m.minor, VU_PROTOCOL_MAJOR, VU_PROTOCOL_MINOR);
    if (m.vcpu_count == 0 || m.vcpu_count > VU_MAX_VCPUS)
        return conn_error_code(c, EINVAL, "vcpu_count %u outside 1..%u", m.vcpu_count,
                               VU_MAX_VCPUS);
    for (char *p = m.vm_name; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
            *p = '_'; /* names end up in logs */
    uint32_t id = __atomic_add_fetch(&c->d->next_partition_id, 1, __ATOMIC_RELAXED);
    if (!m.vm_name[0])
        snprintf(m.vm_name, sizeof(m.vm_name), "vm%u", id);
    /* The name selects the VM's configuration and is how vmbusctl reaches
     * it (KVP values included): a second VMM must not take it over while
     * the first is connected.  HELLOs are handled on the loop thread one at
     * a time, so nobody can claim the name between this check and xp_create. */
    struct vmm_conn *holder = NULL;
    pthread_mutex_lock(&c->d->conns_lock);
    for (struct vmm_conn *o = LIST_FIRST(&c->d->conns); o && !holder; o = LIST_NEXT(o, link))
        if (o != c && o->xp && strcmp(o->name, m.vm_name) == 0)
            holder = o;
    pthread_mutex_unlock(&c->d->conns_lock);
    /* A VMM that closed its connection and connected again at once: the
     * loop may see the new HELLO before the old connection's hang-up.  The
     * old one is gone, so it gives the name up now.  (Connections are only
     * freed after conn_teardown, which runs on this thread: holder is
     * still valid.) */
    struct pollfd pfd = {.fd = holder ? holder->fd : -1, .events = POLLRDHUP};
    if (holder && poll(&pfd, 1, 0) == 1 && (pfd.revents & (POLLHUP | POLLRDHUP | POLLERR))) {
        conn_teardown(holder, "VMM disconnected");
        holder = NULL;
    }
    if (holder) /* logged (rate-limited) with this VMM's pid as the connection closes */
        return conn_error_code(c, EEXIST, "VM name '%s' is in use by partition %u", m.vm_name,
                               xp_id(holder->xp));
    snprintf(c->name, sizeof(c->name), "%s", m.vm_name);
    c->nvcpus = m.vcpu_count;
    c->retry_ev = event_new(c->d->base, -1, 0, retry_cb, c);
    c->xp = xp_create(id, c->name, c->nvcpus, &conn_transport_ops, c);
    if (!c->xp)
        return conn_error_code(c, ENOMEM, "out of memory");
    c->vp = host_partition_create(c);
    /* HELLO_REPLY waits for the VSPs' attach (conn_attached): a VSP that
     * cannot serve this VM (a disk image missing) refuses it in answer to
     * HELLO, and the VMM stops before it starts the guest. */
    c->hello_seq = h->seq;
    c->refuse_ev = event_new(c->d->base, -1, 0, refuse_cb, c);
    log_info("partition %s (id %u): VMM connected (pid %d, uid %d, gid %d), %u vCPUs", c->name,
             id, (int)c->peer_pid, (int)c->peer_uid, (int)c->peer_gid, c->nvcpus);
    host_partition_attach_all(c->vp);
}

/* A RESET waiting for its partition's VSP closes (host_partition_fence). */
struct reset_wait {
    struct vmm_conn *c; /* outlives the fence: its teardown drains it first */
    uint32_t seq;
};

static void reset_done(void *arg)
{
    struct reset_wait *rw = arg;
    /* Nothing of vmbusd or its VSPs writes the old guest's memory any more:
     * the VMM may clear it and boot again. */
    conn_send(rw->c, VU_MSG_RESET_DONE, rw->seq, NULL, 0, NULL, 0);
    free(rw);
}

static void handle_msg(struct vmm_conn *c, const struct vu_hdr *h, const uint8_t *body, int *fds,
                       int nfds)
{
    /* How many fds each message carries; anything else is a protocol error. */
    int want = h->type == VU_MSG_MEM_REGION ? 1 : h->type == VU_MSG_SINT_ROUTE ? 2 : 0;
    if (nfds != want) {
        close_fds(fds, nfds);
        return conn_error(c, "message type %u carries %d fds (expected %d)", h->type, nfds, want);
    }
    if (h->type != VU_MSG_HELLO && !c->xp) {
        close_fds(fds, nfds);
        return conn_error(c, "message type %u before HELLO", h->type);
    }
    /* One VMM may make vmbusd keep at most its quota of fds, and all of
     * them together no more than vmbusd's RLIMIT_NOFILE holds (daemon.c).
     * A refused message ends the connection, so counting before it is
     * handled is exact enough; teardown gives them all back. */
    if (nfds && c->vmm_fds + (unsigned)nfds > c->d->cfg.max_fds_per_conn) {
        close_fds(fds, nfds);
        return conn_error_code(c, EMFILE, "more than %u fds handed over (max-fds-per-connection)",
                               c->d->cfg.max_fds_per_conn);
    }
    if (nfds && !daemon_fds_take(c->d, (unsigned)nfds)) {
        close_fds(fds, nfds);
        return conn_error_code(c, ENFILE, "vmbusd is at its file descriptor limit");
    }
    c->vmm_fds += (unsigned)nfds;
    switch (h->type) {
    case VU_MSG_HELLO:
        handle_hello(c, h, body);
        return;
    case VU_MSG_MEM_REGION: {
        struct vu_mem_region m;
        if (h->size != sizeof(m)) {
            close_fds(fds, nfds);
            return conn_error(c, "MEM_REGION of %u bytes", h->size);
        }
        memcpy(&m, body, sizeof(m));
        int ret = xp_add_region(c->xp, m.guest_phys_addr, m.size, fds[0], m.fd_offset);
        if (ret < 0) {
            vmm_fd_close(fds[0]);
            return conn_error_code(c, -ret, "MEM_REGION gpa 0x%llx size 0x%llx refused: %s",
                                   (unsigned long long)m.guest_phys_addr,
                                   (unsigned long long)m.size, region_refusal(-ret));
        }
        log_info("partition %s: memory 0x%llx-0x%llx mapped", c->name,
                 (unsigned long long)m.guest_phys_addr,
                 (unsigned long long)(m.guest_phys_addr + m.size - 1));
        return;
    }
    case VU_MSG_SINT_ROUTE: {
        struct vu_sint_route m;
        if (h->size != sizeof(m)) {
            close_fds(fds, nfds);
            return conn_error(c, "SINT_ROUTE of %u bytes", h->size);
        }
        memcpy(&m, body, sizeof(m));
        if (m.vp_index >= c->nvcpus || m.sint != VMBUS_MESSAGE_SINT ||
            c->routes[m.vp_index].resamplefd >= 0) {
            close_fds(fds, nfds);
            return conn_error(c, "SINT_ROUTE vp %u sint %u refused (vCPUs %u, VMBus SINT %u%s)",
                              m.vp_index, m.sint, c->nvcpus, VMBUS_MESSAGE_SINT,
                              m.vp_index < c->nvcpus && c->routes[m.vp_index].resamplefd >= 0
                                  ? ", route already set"
                                  : "");
        }
        /* Only eventfds: vmbusd writes the irqfd and reads the resample fd,
         * and anything else (a pipe, a socket, a file) could block that. */
        char why[96];
        const char *which = "irqfd";
        int bad = vmm_fd_check_eventfd(fds[0], false, why, sizeof(why));
        if (bad == 0) {
            which = "resample fd";
            bad = vmm_fd_check_eventfd(fds[1], true, why, sizeof(why));
        }
        if (bad) {
            close_fds(fds, nfds);
            return conn_error(c, "SINT_ROUTE vp %u refused: the %s is %s", m.vp_index, which,
                              why);
        }
        struct sint_signaller *s = atomic_load(&c->sig);
        if (!s) {
            s = sint_signaller_new(c->name, c->nvcpus);
            if (!s) {
                close_fds(fds, nfds);
                return conn_error(c, "cannot start the SINT thread: %s", strerror(errno));
            }
            atomic_store(&c->sig, s);
        }
        struct vcpu_route *r = &c->routes[m.vp_index];
        sint_signaller_set_irqfd(s, m.vp_index, fds[0]);
        r->resamplefd = fds[1];
        /* Armed by op_msgs_waiting while messages wait for the guest. */
        struct event *ev = event_new(c->d->base, r->resamplefd, EV_READ, eom_cb, r);
        pthread_mutex_lock(&c->send_lock);
        r->eom_ev = ev;
        pthread_mutex_unlock(&c->send_lock);
        /* Raises what the guest missed while the route was missing (and
         * arms the watch if messages wait). */
        xp_set_sint_route(c->xp, m.vp_index);
        return;
    }
    case VU_MSG_SYNIC_STATE: {
        struct vu_synic_state m;
        if (h->size != sizeof(m))
            return conn_error(c, "SYNIC_STATE of %u bytes", h->size);
        memcpy(&m, body, sizeof(m));
        if (xp_set_synic(c->xp, m.vp_index, m.scontrol, m.simp, m.siefp) < 0)
            return conn_error(c, "SYNIC_STATE for vp %u of %u", m.vp_index, c->nvcpus);
        return;
    }
    case VU_MSG_POST_MESSAGE: {
        struct vu_post_message m;
        if (h->size != sizeof(m))
            return conn_error(c, "POST_MESSAGE of %u bytes", h->size);
        memcpy(&m, body, sizeof(m));
        if (m.vp_index >= c->nvcpus)
            return conn_error(c, "POST_MESSAGE from vp %u of %u", m.vp_index, c->nvcpus);
        struct vu_post_result r = {.hv_status = HV_STATUS_INVALID_PARAMETER};
        r.hv_status = xp_post_message(c->xp, m.vp_index, &m.msg, sizeof(m.msg));
        conn_send(c, VU_MSG_POST_RESULT, h->seq, &r, sizeof(r), NULL, 0);
        return;
    }
    case VU_MSG_SIGNAL_EVENT: {
        struct vu_signal_event m;
        if (h->size != sizeof(m))
            return conn_error(c, "SIGNAL_EVENT of %u bytes", h->size);
        memcpy(&m, body, sizeof(m));
        if (m.vp_index >= c->nvcpus)
            return conn_error(c, "SIGNAL_EVENT from vp %u of %u", m.vp_index, c->nvcpus);
        xp_connection_signalled(c->xp, m.connection_id & 0xffffff);
        return;
    }
    case VU_MSG_RESET: {
        if (h->size != 0)
            return conn_error(c, "RESET of %u bytes", h->size);
        xp_reset(c->xp);
        /* vmbusd itself no longer writes the old guest's memory; the VSPs'
         * closes the reset queued may still be ending I/O into it
         * (GPA-direct buffers): RESET_DONE waits for them, off the loop. */
        struct reset_wait *rw = c->vp ? malloc(sizeof(*rw)) : NULL;
        if (rw) {
            *rw = (struct reset_wait){.c = c, .seq = h->seq};
            if (host_partition_fence(c->vp, reset_done, rw) == 0)
                return;
            free(rw);
            log_err("partition %s: cannot wait for the VSPs after the reset; answering it "
                    "at once", c->name);
        }
        conn_send(c, VU_MSG_RESET_DONE, h->seq, NULL, 0, NULL, 0);
        return;
    }
    default:
        return conn_error(c, "unknown message type %u", h->type);
    }
}

static void conn_read_cb(evutil_socket_t fd, short what, void *arg)
{
    struct vmm_conn *c = arg;
    pthread_mutex_lock(&c->send_lock);
    bool backlog = !STAILQ_EMPTY(&c->outq);
    pthread_mutex_unlock(&c->send_lock);
    if (backlog) {
        /* Replies are waiting for the VMM to read them: take no new
         * requests until they are gone (conn_write_cb re-enables us). */
        event_del(c->ev);
        return;
    }
    uint8_t buf[VU_MAX_MSG_SIZE + 1];
    /* Not common/fdpass's receive: a VMM's surplus fds must go through
     * vmm_fd_close (a plain close can block), and the buffer must hold all
     * the fds the kernel would otherwise close for us, on the loop. */
    union {
        char b[CMSG_SPACE(sizeof(int) * VMM_FD_MAX_PASSED) + CMSG_SPACE(sizeof(struct ucred))];
        struct cmsghdr align;
    } ctl;
    struct iovec iov = {.iov_base = buf, .iov_len = sizeof(buf)};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b,
                         .msg_controllen = sizeof(ctl.b)};
    ssize_t n = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        conn_teardown(c, n == 0 ? "VMM disconnected" : strerror(errno));
        return;
    }
    int fds[VU_MAX_FDS];
    int nfds = 0;
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
            continue;
        int cnt = (int)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        int *p = (int *)CMSG_DATA(cm);
        for (int i = 0; i < cnt; i++) {
            int f;
            memcpy(&f, &p[i], sizeof(f));
            if (nfds < VU_MAX_FDS)
                fds[nfds++] = f;
            else
                vmm_fd_close(f);
        }
    }
    if (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
        close_fds(fds, nfds);
        return conn_error(c, "message larger than %d bytes or with too many fds",
                          VU_MAX_MSG_SIZE);
    }
    struct vu_hdr h;
    if ((size_t)n < sizeof(h)) {
        close_fds(fds, nfds);
        return conn_error(c, "message of %zd bytes is shorter than its header", n);
    }
    memcpy(&h, buf, sizeof(h));
    if (h.flags != 0) {
        close_fds(fds, nfds);
        return conn_error(c, "message type %u: flags %#x (must be 0)", h.type, h.flags);
    }
    if (h.size != (size_t)n - sizeof(h)) {
        close_fds(fds, nfds);
        return conn_error(c, "message type %u: header says %u bytes, datagram has %zu", h.type,
                          h.size, (size_t)n - sizeof(h));
    }
    handle_msg(c, &h, buf + sizeof(h), fds, nfds);
}

struct vmm_conn *conn_create(struct vmbusd *d, int fd)
{
    struct vmm_conn *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->d = d;
    c->fd = fd;
    struct ucred cr;
    socklen_t crlen = sizeof(cr);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &crlen) == 0 && crlen == sizeof(cr)) {
        c->peer_pid = cr.pid;
        c->peer_uid = cr.uid;
        c->peer_gid = cr.gid;
    } else {
        c->peer_uid = (uid_t)-1;
        c->peer_gid = (gid_t)-1;
    }
    snprintf(c->name, sizeof(c->name), "(connecting)");
    pthread_mutex_init(&c->send_lock, NULL);
    pthread_mutex_init(&c->evfd_lock, NULL);
    STAILQ_INIT(&c->outq);
    for (int i = 0; i < XP_MAX_VCPUS; i++) {
        c->routes[i].resamplefd = -1;
        c->routes[i].conn = c;
        c->routes[i].vp = (uint32_t)i;
    }
    c->ev = event_new(d->base, fd, EV_READ | EV_PERSIST, conn_read_cb, c);
    c->wev = event_new(d->base, fd, EV_WRITE | EV_PERSIST, conn_write_cb, c);
    event_add(c->ev, NULL);
    return c;
}

/* Datagrams still queued in the socket may carry fds, and closing the socket
 * would release them in this thread: take them out first and close them
 * the safe way.  After SHUT_RD the VMM cannot queue more. */
static void close_conn_socket(int fd)
{
    shutdown(fd, SHUT_RD);
    for (int i = 0; i < 4096; i++) {
        uint8_t buf[16];
        union {
            char b[CMSG_SPACE(sizeof(int) * VMM_FD_MAX_PASSED) +
                   CMSG_SPACE(sizeof(struct ucred))];
            struct cmsghdr align;
        } ctl;
        struct iovec iov = {.iov_base = buf, .iov_len = sizeof(buf)};
        struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b,
                             .msg_controllen = sizeof(ctl.b)};
        if (recvmsg(fd, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT) <= 0)
            break;
        for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
            if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
                continue;
            size_t cnt = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (size_t k = 0; k < cnt; k++) {
                int f;
                memcpy(&f, CMSG_DATA(cm) + k * sizeof(int), sizeof(f));
                vmm_fd_close(f);
            }
        }
    }
    close(fd);
}

/* Runs on a worker: VSP closes may block. */
static void conn_teardown_work(void *arg)
{
    struct vmm_conn *c = arg;
    /* Close the channels first: a vmbusctl command waiting for this guest's
     * answer then fails at once instead of running into its timeout. */
    if (c->vp)
        host_partition_close(c->vp);
    while (atomic_load(&c->ctl_busy) > 0)
        usleep(1000); /* a vmbusctl request still uses the partition */
    if (c->vp)
        host_partition_destroy(c->vp); /* detaches plugins, frees */
    eventfds_stop(c); /* any a channel opened meanwhile */
    xp_destroy(c->xp);
    /* Nothing raises SINTs any more; a write the VMM keeps blocked is cut. */
    sint_signaller_free(atomic_load(&c->sig));
    for (uint32_t i = 0; i < XP_MAX_VCPUS; i++) {
        struct vcpu_route *r = &c->routes[i];
        if (r->eom_ev)
            event_free(r->eom_ev);
        if (r->resamplefd >= 0)
            close(r->resamplefd);
    }
    event_free(c->wev);
    struct out_msg *m;
    while ((m = STAILQ_FIRST(&c->outq))) {
        STAILQ_REMOVE_HEAD(&c->outq, link);
        out_free(m);
    }
    close_conn_socket(c->fd);
    daemon_fds_release(c->d, 1 + c->vmm_fds); /* the socket, what the VMM handed over */
    pthread_mutex_destroy(&c->send_lock);
    pthread_mutex_destroy(&c->evfd_lock);
    free(c);
}

void conn_teardown(struct vmm_conn *c, const char *why)
{
    if (c->dead)
        return;
    pthread_mutex_lock(&c->send_lock);
    c->dead = true;
    pthread_mutex_unlock(&c->send_lock);
    event_del(c->ev);
    event_free(c->ev);
    c->ev = NULL;
    event_del(c->wev);
    if (c->retry_ev) {
        event_del(c->retry_ev);
        event_free(c->retry_ev);
        c->retry_ev = NULL;
    }
    pthread_mutex_lock(&c->send_lock);
    if (c->refuse_ev) {
        event_free(c->refuse_ev); /* also takes it off the active list */
        c->refuse_ev = NULL;
    }
    pthread_mutex_unlock(&c->send_lock);
    for (uint32_t i = 0; i < XP_MAX_VCPUS; i++)
        if (c->routes[i].eom_ev)
            event_del(c->routes[i].eom_ev);
    /* The guest's signals stop here (their callbacks run on workers). */
    eventfds_stop(c);
    daemon_conn_closed(c, why);
    if (c->xp) {
        /* Channel closes are queued to the VSPs now; the wait for them and
         * the freeing happen off the loop. */
        workq_submit(c->d->wq, conn_teardown_work, c);
    } else {
        conn_teardown_work(c);
    }
}
