/* SPDX-License-Identifier: MIT */
/*
 * The VMM end of the vmbus-user protocol (include/vmbusd/vmbus_user.h).
 *
 * Setup (main thread): HELLO -> HELLO_REPLY, one MEM_REGION per RAM region
 * (+ memfd), one SINT_ROUTE per VP (+ irqfd, resample fd).
 * vCPU threads: SYNIC_STATE, POST_MESSAGE (the vCPU waits for the matching
 * POST_RESULT), SIGNAL_EVENT; RESET on guest reboot.
 * Reader thread: POST_RESULT, EVENTFD_ADD/DEL (KVM_HYPERV_EVENTFD), ERROR.
 *
 * If vmbusd goes away, the guest keeps running: one log line says so, every
 * later HvPostMessage returns HV_STATUS_INVALID_CONNECTION_ID and SynIC
 * updates are dropped.  Nothing is replayed if vmbusd comes back.
 */
#include "vmm/vmm.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "common/fdpass.h"
#include "common/log.h"
#include "vmbusd/vmbus_user.h"

#define MAX_EVENTFDS 2048
#define HELLO_TIMEOUT_MS 5000
#define POST_SLOW_MS 2000 /* warn about a POST_RESULT slower than this */

struct evfd {
    uint32_t conn_id;
    int fd;
};

struct vmbus_client {
    int fd;
    char path[108];
    bool connected;
    pthread_mutex_t lock;  /* send path, state, eventfd table */
    pthread_cond_t cond;   /* POST_RESULT arrivals */
    uint32_t next_seq;
    pthread_t reader;
    bool reader_started;
    bool vm_ready;         /* vm_fd valid for KVM_HYPERV_EVENTFD */
    uint32_t partition_id;
    int nevfd;
    struct evfd evfds[MAX_EVENTFDS];
    unsigned long posts, results;
    uint32_t reset_seq;    /* RESET waiting for RESET_DONE (0: none) */
};

static int send_locked(struct vmbus_client *c, uint32_t type, uint32_t seq, const void *payload,
                       uint32_t size, const int *fds, int nfds)
{
    if (c->fd < 0)
        return -1;
    struct vu_hdr h = {.type = type, .size = size, .seq = seq, .flags = 0};
    struct iovec iov[2] = {
        {.iov_base = &h, .iov_len = sizeof(h)},
        {.iov_base = (void *)payload, .iov_len = size},
    };
    return fdpass_send(c->fd, iov, size ? 2 : 1, fds, nfds, 0) < 0 ? -1 : 0;
}

/* Marks the connection dead; caller holds c->lock. Logs exactly once. */
static void gone_locked(struct vm *vm, const char *why)
{
    struct vmbus_client *c = vm->vmbus;
    if (!c->connected)
        return;
    c->connected = false;
    log_err("vmbusd on %s went away (%s): the guest keeps running without VMBus; its "
            "HvPostMessage calls now fail with HV_STATUS_INVALID_CONNECTION_ID. Restarting "
            "vmbusd does not reconnect this VM: restart the VM", c->path, why);
    if (c->fd >= 0)
        shutdown(c->fd, SHUT_RDWR);
    for (int i = 0; i < vm->ncpus; i++) {
        struct vcpu *vc = &vm->vcpus[i];
        if (vc->waiting && !vc->answered) {
            vc->answered = true;
            vc->answer = HV_STATUS_INVALID_CONNECTION_ID;
        }
    }
    pthread_cond_broadcast(&c->cond);
}

static int send_msg(struct vm *vm, uint32_t type, uint32_t seq, const void *payload,
                    uint32_t size, const int *fds, int nfds)
{
    struct vmbus_client *c = vm->vmbus;
    if (!c)
        return -1;
    pthread_mutex_lock(&c->lock);
    int r = -1;
    if (c->connected) {
        r = send_locked(c, type, seq, payload, size, fds, nfds);
        if (r < 0)
            gone_locked(vm, strerror(errno));
    }
    pthread_mutex_unlock(&c->lock);
    return r;
}

#define RECV_ERROR     (-1)
#define RECV_MALFORMED (-2)
#define RECV_CLOSED    (-3)

/* Receives one datagram; returns its payload size or one of RECV_*. */
static ssize_t recv_msg(int fd, struct vu_hdr *h, void *payload, size_t cap, int *fds, int *nfds)
{
    uint8_t buf[VU_MAX_MSG_SIZE + sizeof(struct vu_hdr)];
    bool truncated;
    ssize_t n;
    do {
        n = fdpass_recv(fd, buf, sizeof(buf), fds, VU_MAX_FDS, nfds, &truncated, 0);
    } while (n < 0 && errno == EINTR);
    /* vmbusd closed with messages of ours unread (it refused us): the first
     * recv reports ECONNRESET, the ERROR it sent before still follows. */
    if (n < 0 && errno == ECONNRESET)
        n = fdpass_recv(fd, buf, sizeof(buf), fds, VU_MAX_FDS, nfds, &truncated, MSG_DONTWAIT);
    if (n < 0)
        return RECV_ERROR;
    if (n == 0)
        return RECV_CLOSED;
    if ((size_t)n < sizeof(*h) || truncated) {
        errno = EPROTO;
        goto bad;
    }
    memcpy(h, buf, sizeof(*h));
    if (h->size != (size_t)n - sizeof(*h) || h->size > cap) {
        errno = EPROTO;
        goto bad;
    }
    memcpy(payload, buf + sizeof(*h), h->size);
    return (ssize_t)h->size;
bad:
    fdpass_close(fds, *nfds);
    *nfds = 0;
    return RECV_MALFORMED;
}

static void close_fds(int *fds, int n)
{
    for (int i = 0; i < n; i++)
        close(fds[i]);
}

int vmbus_connect(struct vm *vm, const char *path, const char *name)
{
    struct vmbus_client *c = calloc(1, sizeof(*c));
    if (!c)
        return -1;
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->cond, NULL);
    c->fd = -1;
    c->next_seq = 1;
    vm->vmbus = c;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path)) {
        log_err("vmbusd socket path too long: %s", path);
        return -1;
    }
    strcpy(sa.sun_path, path);
    snprintf(c->path, sizeof(c->path), "%s", path);
    c->fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        log_err("socket: %s", strerror(errno));
        return -1;
    }
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int e = errno;
        if (e == EACCES || e == EPERM) {
            log_err("no permission to connect to vmbusd's socket %s (%s): run vmbus-vmm as a "
                    "member of the socket's group (vmbus with the systemd unit; "
                    "docs/security.md) or as root", path, strerror(e));
            return -1;
        }
        log_err("vmbusd is not listening on %s (%s): start it first, e.g. "
                "`vmbusd --socket %s --config FILE`, point vmbus-vmm at it with "
                "--vmbusd PATH, or run without VMBus with --no-vmbus", path, strerror(e), path);
        return -1;
    }
    c->connected = true;

    struct vu_hello hello = {.major = VU_PROTOCOL_MAJOR, .minor = VU_PROTOCOL_MINOR,
                             .vcpu_count = (uint32_t)vm->ncpus};
    snprintf(hello.vm_name, sizeof(hello.vm_name), "%s", name);
    if (send_msg(vm, VU_MSG_HELLO, 0, &hello, sizeof(hello), NULL, 0) < 0) {
        log_err("sending HELLO to vmbusd on %s failed", path);
        return -1;
    }
    struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
    int pr;
    do {
        pr = poll(&pfd, 1, HELLO_TIMEOUT_MS);
    } while (pr < 0 && errno == EINTR);
    if (pr <= 0) {
        log_err("vmbusd on %s did not answer HELLO within %d ms", path, HELLO_TIMEOUT_MS);
        return -1;
    }
    struct vu_hdr h;
    uint8_t payload[VU_MAX_MSG_SIZE];
    int fds[VU_MAX_FDS], nfds;
    ssize_t n = recv_msg(c->fd, &h, payload, sizeof(payload), fds, &nfds);
    close_fds(fds, nfds);
    if (n < 0) {
        log_err("vmbusd on %s closed the connection during HELLO", path);
        return -1;
    }
    if (h.type == VU_MSG_ERROR && n >= (ssize_t)sizeof(uint32_t)) {
        /* The message may run on past struct vu_error's 128 bytes, to the
         * payload's end (a VSP's reason naming a long path). */
        char message[VU_ERROR_MESSAGE_MAX];
        uint32_t code = vu_error_decode(payload, (size_t)n, message, sizeof(message));
        log_err("vmbusd refused this VM: %s (code %u)", message, code);
        return -1;
    }
    if (h.type != VU_MSG_HELLO_REPLY || n < (ssize_t)sizeof(struct vu_hello_reply)) {
        log_err("vmbusd on %s answered HELLO with message type %u (size %zd)", path, h.type, n);
        return -1;
    }
    struct vu_hello_reply rep;
    memcpy(&rep, payload, sizeof(rep));
    if (rep.major != VU_PROTOCOL_MAJOR) {
        log_err("vmbusd speaks vmbus-user %u.%u, this VMM %u.%u", rep.major, rep.minor,
                VU_PROTOCOL_MAJOR, VU_PROTOCOL_MINOR);
        return -1;
    }
    c->partition_id = rep.partition_id;
    log_info("connected to vmbusd on %s: vmbus-user %u.%u, partition %u", path, rep.major,
             rep.minor, rep.partition_id);
    return 0;
}

int vmbus_send_setup(struct vm *vm)
{
    for (int i = 0; i < vm->mem.nregions; i++) {
        const struct mem_region *r = &vm->mem.regions[i];
        struct vu_mem_region mr = {.guest_phys_addr = r->gpa, .size = r->size,
                                   .fd_offset = r->fd_offset};
        if (send_msg(vm, VU_MSG_MEM_REGION, 0, &mr, sizeof(mr), &vm->mem.memfd, 1) < 0) {
            log_err("sending memory region %d to vmbusd failed", i);
            return -1;
        }
    }
    for (int i = 0; i < vm->ncpus; i++) {
        struct vcpu *vc = &vm->vcpus[i];
        struct vu_sint_route sr = {.vp_index = (uint32_t)i, .sint = VMBUS_MESSAGE_SINT};
        int fds[2] = {vc->sint_irqfd, vc->sint_resamplefd};
        if (send_msg(vm, VU_MSG_SINT_ROUTE, 0, &sr, sizeof(sr), fds, 2) < 0) {
            log_err("sending SINT route of VP %d to vmbusd failed", i);
            return -1;
        }
    }
    log_info("gave vmbusd %d memory region(s) (%llu MiB) and %d SINT%d route(s)",
             vm->mem.nregions, (unsigned long long)(vm->mem.total >> 20), vm->ncpus,
             VMBUS_MESSAGE_SINT);
    return 0;
}

static void evfd_remove_locked(struct vm *vm, int idx, bool deassign)
{
    struct vmbus_client *c = vm->vmbus;
    struct evfd *e = &c->evfds[idx];
    if (deassign && c->vm_ready) {
        struct kvm_hyperv_eventfd he = {.conn_id = e->conn_id, .fd = e->fd,
                                        .flags = KVM_HYPERV_EVENTFD_DEASSIGN};
        if (ioctl(vm->vm_fd, KVM_HYPERV_EVENTFD, &he) < 0)
            log_warn("KVM_HYPERV_EVENTFD deassign conn %u: %s", e->conn_id, strerror(errno));
    }
    close(e->fd);
    c->evfds[idx] = c->evfds[--c->nevfd];
}

static int evfd_find(struct vmbus_client *c, uint32_t conn)
{
    for (int i = 0; i < c->nevfd; i++)
        if (c->evfds[i].conn_id == conn)
            return i;
    return -1;
}

static void handle_eventfd_add(struct vm *vm, const struct vu_eventfd *ev, int fd)
{
    struct vmbus_client *c = vm->vmbus;
    if (ev->connection_id & ~0xffffffu || ev->flag_number != 0) {
        log_warn("vmbusd: EVENTFD_ADD with bad connection id %#x / flag %u ignored",
                 ev->connection_id, ev->flag_number);
        close(fd);
        return;
    }
    pthread_mutex_lock(&c->lock);
    int old = evfd_find(c, ev->connection_id);
    if (old >= 0)
        evfd_remove_locked(vm, old, true);
    if (c->nevfd >= MAX_EVENTFDS) {
        log_warn("vmbusd: too many event connections; conn %u ignored", ev->connection_id);
        close(fd);
        pthread_mutex_unlock(&c->lock);
        return;
    }
    if (c->vm_ready) {
        struct kvm_hyperv_eventfd he = {.conn_id = ev->connection_id, .fd = fd};
        if (ioctl(vm->vm_fd, KVM_HYPERV_EVENTFD, &he) < 0) {
            log_warn("KVM_HYPERV_EVENTFD conn %u: %s (its signals will come through "
                     "SIGNAL_EVENT messages instead)", ev->connection_id, strerror(errno));
            close(fd);
            pthread_mutex_unlock(&c->lock);
            return;
        }
    }
    c->evfds[c->nevfd++] = (struct evfd){.conn_id = ev->connection_id, .fd = fd};
    pthread_mutex_unlock(&c->lock);
    log_debug("HvSignalEvent conn %u -> eventfd", ev->connection_id);
}

static void handle_eventfd_del(struct vm *vm, const struct vu_eventfd *ev)
{
    struct vmbus_client *c = vm->vmbus;
    pthread_mutex_lock(&c->lock);
    int i = evfd_find(c, ev->connection_id);
    if (i >= 0)
        evfd_remove_locked(vm, i, true);
    pthread_mutex_unlock(&c->lock);
    log_debug("HvSignalEvent conn %u eventfd removed%s", ev->connection_id,
              i < 0 ? " (was not registered)" : "");
}

static void handle_post_result(struct vm *vm, uint32_t seq, const struct vu_post_result *res)
{
    struct vmbus_client *c = vm->vmbus;
    pthread_mutex_lock(&c->lock);
    bool found = false;
    for (int i = 0; i < vm->ncpus; i++) {
        struct vcpu *vc = &vm->vcpus[i];
        if (vc->waiting && !vc->answered && vc->wait_seq == seq) {
            vc->answered = true;
            vc->answer = res->hv_status;
            found = true;
            break;
        }
    }
    c->results++;
    if (found)
        pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->lock);
    if (!found)
        log_warn("vmbusd: POST_RESULT for unknown seq %u ignored", seq);
}

static void *reader_thread(void *arg)
{
    struct vm *vm = arg;
    struct vmbus_client *c = vm->vmbus;
    uint8_t payload[VU_MAX_MSG_SIZE];
    for (;;) {
        struct vu_hdr h;
        int fds[VU_MAX_FDS], nfds;
        ssize_t n = recv_msg(c->fd, &h, payload, sizeof(payload), fds, &nfds);
        if (n == RECV_MALFORMED) {
            log_warn("vmbusd sent a malformed message; ignored");
            continue;
        }
        if (n < 0) {
            pthread_mutex_lock(&c->lock);
            gone_locked(vm, n == RECV_ERROR ? strerror(errno) : "connection closed");
            pthread_mutex_unlock(&c->lock);
            break;
        }
        switch (h.type) {
        case VU_MSG_POST_RESULT:
            if (n >= (ssize_t)sizeof(struct vu_post_result))
                handle_post_result(vm, h.seq, (const struct vu_post_result *)payload);
            else
                log_warn("vmbusd: short POST_RESULT ignored");
            close_fds(fds, nfds);
            break;
        case VU_MSG_EVENTFD_ADD:
            if (n >= (ssize_t)sizeof(struct vu_eventfd) && nfds == 1) {
                handle_eventfd_add(vm, (const struct vu_eventfd *)payload, fds[0]);
            } else {
                log_warn("vmbusd: EVENTFD_ADD without exactly one fd ignored");
                close_fds(fds, nfds);
            }
            break;
        case VU_MSG_EVENTFD_DEL:
            if (n >= (ssize_t)sizeof(struct vu_eventfd))
                handle_eventfd_del(vm, (const struct vu_eventfd *)payload);
            close_fds(fds, nfds);
            break;
        case VU_MSG_RESET_DONE:
            pthread_mutex_lock(&c->lock);
            if (c->reset_seq && h.seq == c->reset_seq) {
                c->reset_seq = 0;
                pthread_cond_broadcast(&c->cond);
            }
            pthread_mutex_unlock(&c->lock);
            close_fds(fds, nfds);
            break;
        case VU_MSG_ERROR: {
            struct vu_error err = {0};
            memcpy(&err, payload, (size_t)n < sizeof(err) ? (size_t)n : sizeof(err));
            err.message[sizeof(err.message) - 1] = 0;
            log_err("vmbusd reported an error: %s (code %u)", err.message, err.code);
            close_fds(fds, nfds);
            break;
        }
        default:
            log_warn("vmbusd: unexpected message type %u ignored", h.type);
            close_fds(fds, nfds);
            break;
        }
    }
    return NULL;
}

int vmbus_start_reader(struct vm *vm)
{
    struct vmbus_client *c = vm->vmbus;
    if (pthread_create(&c->reader, NULL, reader_thread, vm) != 0)
        return -1;
    pthread_setname_np(c->reader, "vmbus-rx");
    c->reader_started = true;
    return 0;
}

bool vmbus_connected(struct vm *vm)
{
    struct vmbus_client *c = vm->vmbus;
    if (!c)
        return false;
    pthread_mutex_lock(&c->lock);
    bool r = c->connected;
    pthread_mutex_unlock(&c->lock);
    return r;
}

void vmbus_reset(struct vm *vm)
{
    struct vmbus_client *c = vm->vmbus;
    if (!c)
        return;
    pthread_mutex_lock(&c->lock);
    while (c->nevfd > 0)
        evfd_remove_locked(vm, c->nevfd - 1, false);
    c->vm_ready = false;
    if (c->connected) {
        /* Wait until vmbusd confirms it no longer writes this guest's
         * memory: the caller clears RAM and boots again next. */
        uint32_t seq = c->next_seq++;
        if (c->next_seq == 0)
            c->next_seq = 1;
        c->reset_seq = seq;
        if (send_locked(c, VU_MSG_RESET, seq, NULL, 0, NULL, 0) < 0) {
            c->reset_seq = 0;
            gone_locked(vm, strerror(errno));
        } else {
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_sec += 5;
            while (c->reset_seq == seq && c->connected)
                if (pthread_cond_timedwait(&c->cond, &c->lock, &until) == ETIMEDOUT) {
                    log_warn("vmbusd did not confirm the reset within 5 s; rebooting anyway");
                    c->reset_seq = 0;
                    break;
                }
        }
    }
    pthread_mutex_unlock(&c->lock);
}

void vmbus_rearm_eventfds(struct vm *vm)
{
    struct vmbus_client *c = vm->vmbus;
    if (!c)
        return;
    pthread_mutex_lock(&c->lock);
    c->vm_ready = true;
    for (int i = 0; i < c->nevfd;) {
        struct kvm_hyperv_eventfd he = {.conn_id = c->evfds[i].conn_id, .fd = c->evfds[i].fd};
        if (ioctl(vm->vm_fd, KVM_HYPERV_EVENTFD, &he) < 0) {
            log_warn("KVM_HYPERV_EVENTFD conn %u: %s", he.conn_id, strerror(errno));
            evfd_remove_locked(vm, i, false);
            continue;
        }
        i++;
    }
    pthread_mutex_unlock(&c->lock);
}

void vmbus_synic_state(struct vm *vm, uint32_t vp, uint64_t scontrol, uint64_t simp,
                       uint64_t siefp)
{
    if (!vm->vmbus)
        return;
    struct vu_synic_state st = {.vp_index = vp, .scontrol = scontrol, .simp = simp,
                                .siefp = siefp};
    send_msg(vm, VU_MSG_SYNIC_STATE, 0, &st, sizeof(st), NULL, 0);
}

uint32_t vmbus_post_message(struct vcpu *vc, const void *input_page)
{
    struct vm *vm = vc->vm;
    struct vmbus_client *c = vm->vmbus;
    if (!c)
        return HV_STATUS_INVALID_CONNECTION_ID;
    struct vu_post_message pm = {.vp_index = (uint32_t)vc->index};
    memcpy(&pm.msg, input_page, sizeof(pm.msg));

    pthread_mutex_lock(&c->lock);
    if (!c->connected) {
        pthread_mutex_unlock(&c->lock);
        return HV_STATUS_INVALID_CONNECTION_ID;
    }
    uint32_t seq = c->next_seq++;
    if (c->next_seq == 0)
        c->next_seq = 1;
    vc->wait_seq = seq;
    vc->waiting = true;
    vc->answered = false;
    c->posts++;
    if (send_locked(c, VU_MSG_POST_MESSAGE, seq, &pm, sizeof(pm), NULL, 0) < 0)
        gone_locked(vm, strerror(errno));
    /* The vCPU is stuck in the hypercall until the answer comes: say so
     * once if it takes long, so a frozen guest is told apart from a slow
     * vmbusd. */
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    bool warned = false;
    while (!vc->answered && !vm->stopping) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        long waited_ms = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
        if (!warned && waited_ms >= POST_SLOW_MS) {
            log_warn("VP %d: no POST_RESULT from vmbusd for %ld ms; the vCPU waits in "
                     "HvPostMessage (seq %u)", vc->index, waited_ms, seq);
            warned = true;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100 * 1000 * 1000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&c->cond, &c->lock, &ts);
    }
    uint32_t st = vc->answered ? vc->answer : HV_STATUS_INVALID_CONNECTION_ID;
    vc->waiting = false;
    pthread_mutex_unlock(&c->lock);
    log_debug("VP %d: HvPostMessage conn %u type %u size %u -> status %u", vc->index,
              pm.msg.connection_id, pm.msg.message_type, pm.msg.payload_size, st);
    return st;
}

uint32_t vmbus_signal_event(struct vcpu *vc, uint32_t conn_id, uint32_t flag)
{
    struct vm *vm = vc->vm;
    if (!vm->vmbus)
        return HV_STATUS_INVALID_CONNECTION_ID;
    struct vu_signal_event se = {.vp_index = (uint32_t)vc->index, .connection_id = conn_id,
                                 .flag_number = flag};
    if (send_msg(vm, VU_MSG_SIGNAL_EVENT, 0, &se, sizeof(se), NULL, 0) < 0)
        return HV_STATUS_INVALID_CONNECTION_ID;
    return HV_STATUS_SUCCESS;
}

void vmbus_close(struct vm *vm)
{
    struct vmbus_client *c = vm->vmbus;
    if (!c)
        return;
    pthread_mutex_lock(&c->lock);
    bool was = c->connected;
    c->connected = false;
    if (c->fd >= 0)
        shutdown(c->fd, SHUT_RDWR);
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->lock);
    if (c->reader_started)
        pthread_join(c->reader, NULL);
    if (was)
        log_debug("vmbus-user: %lu posts, %lu results", c->posts, c->results);
    while (c->nevfd > 0)
        close(c->evfds[--c->nevfd].fd);
    if (c->fd >= 0)
        close(c->fd);
    free(c);
    vm->vmbus = NULL;
}
