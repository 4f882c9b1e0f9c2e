/* SPDX-License-Identifier: MIT */
/*
 * Guest simulator: VMM half (vmbus-user client, memfd RAM, SynIC pages,
 * irqfds) and guest half (what Linux 6.1 hv_vmbus does on the wire).
 */
#include "simvm.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "common/fdpass.h"
#include "common/guid.h"
#include "vmbusd/hv_guids.h"

#define SIM_GPADL_FIRST 0xE1E10u

int sim_timeout_ms = 5000;
int sim_expect_offers_default;
#define SIM_ALLOC_BASE (1u << 20) /* leave the first MiB alone */

const uint32_t sim_linux_versions[8] = {
    VMBUS_VERSION_WIN10_V5_3, VMBUS_VERSION_WIN10_V5_2, VMBUS_VERSION_WIN10_V5_1,
    VMBUS_VERSION_WIN10_V5,   VMBUS_VERSION_WIN10_RS3,  VMBUS_VERSION_WIN10,
    VMBUS_VERSION_WIN8_1,     VMBUS_VERSION_WIN8,
};
const uint32_t sim_all_versions[10] = {
    VMBUS_VERSION_WS2008,     VMBUS_VERSION_WIN7,       VMBUS_VERSION_WIN8,
    VMBUS_VERSION_WIN8_1,     VMBUS_VERSION_WIN10,      VMBUS_VERSION_WIN10_RS3,
    VMBUS_VERSION_WIN10_V5,   VMBUS_VERSION_WIN10_V5_1, VMBUS_VERSION_WIN10_V5_2,
    VMBUS_VERSION_WIN10_V5_3,
};

const char *sim_version_str(uint32_t v)
{
    static __thread char buf[4][16];
    static __thread int i;
    char *b = buf[i++ & 3];
    snprintf(b, 16, "%u.%u", v >> 16, v & 0xffff);
    return b;
}

uint64_t sim_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint64_t sim_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void sim_fill_pattern(void *buf, uint32_t len, uint64_t seed)
{
    uint8_t *p = buf;
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    for (uint32_t i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p[i] = (uint8_t)x;
    }
}

static struct hv_guid echo_class;
static bool echo_class_ok;
static pthread_once_t echo_once = PTHREAD_ONCE_INIT;

static void echo_class_init(void)
{
    echo_class_ok = guid_parse(HV_CLASS_ECHO, &echo_class) == 0;
}

const struct hv_guid *sim_echo_class(void)
{
    pthread_once(&echo_once, echo_class_init);
    return echo_class_ok ? &echo_class : NULL;
}

/* ------------------------------------------------------------------ */
/* Memory                                                               */

uint64_t sim_off_to_gpa(const struct sim_vm *vm, uint64_t off)
{
    if (vm->hole_size && off >= vm->hole_start)
        return off + vm->hole_size;
    return off;
}

static bool gpa_to_off(const struct sim_vm *vm, uint64_t gpa, uint64_t *off)
{
    if (vm->hole_size && gpa >= vm->hole_start) {
        if (gpa < vm->hole_start + vm->hole_size)
            return false;
        gpa -= vm->hole_size;
    }
    if (gpa >= vm->mem_size)
        return false;
    *off = gpa;
    return true;
}

void *sim_gpa_ptr(struct sim_vm *vm, uint64_t gpa)
{
    uint64_t off;
    return gpa_to_off(vm, gpa, &off) ? vm->mem + off : NULL;
}

uint64_t sim_page_pfn(const struct sim_vm *vm, uint64_t off)
{
    return sim_off_to_gpa(vm, off) >> HV_PAGE_SHIFT;
}

uint64_t sim_alloc_pages(struct sim_vm *vm, uint32_t npages)
{
    uint64_t len = (uint64_t)npages * HV_PAGE_SIZE;
    if (vm->alloc_next + len > vm->mem_size)
        vm->alloc_next = vm->alloc_floor; /* wrap: tests free by forgetting */
    uint64_t off = vm->alloc_next;
    vm->alloc_next += len;
    memset(vm->mem + off, 0, len);
    return off;
}

/* ------------------------------------------------------------------ */
/* vmbus-user transport                                                 */

static void vu_service(struct sim_vm *vm);

int sim_vu_send_raw(struct sim_vm *vm, const void *buf, size_t len, const int *fds, int nfds)
{
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
    if (vm->sock < 0)
        return -ENOTCONN;
    ssize_t r = fdpass_send(vm->sock, &iov, 1, fds, nfds, 0);
    if (r < 0) {
        int e = errno;
        if (e == EPIPE || e == ECONNRESET) {
            vu_service(vm); /* what vmbusd sent before it closed: its ERROR */
            vm->dead = true;
        }
        return -e;
    }
    return 0;
}

int sim_vu_send(struct sim_vm *vm, uint32_t type, const void *payload, uint32_t len,
                const int *fds, int nfds)
{
    uint8_t buf[sizeof(struct vu_hdr) + VU_MAX_MSG_SIZE * 2];
    if (len > sizeof(buf) - sizeof(struct vu_hdr))
        return -EMSGSIZE;
    struct vu_hdr h = {.type = type, .size = len, .seq = ++vm->seq, .flags = 0};
    memcpy(buf, &h, sizeof(h));
    if (len)
        memcpy(buf + sizeof(h), payload, len);
    int r = sim_vu_send_raw(vm, buf, sizeof(h) + len, fds, nfds);
    return r < 0 ? r : (int)h.seq;
}

static void evfd_del(struct sim_vm *vm, uint32_t conn_id)
{
    for (int i = 0; i < vm->nevfd; i++)
        if (vm->evfd[i].conn_id == conn_id) {
            close(vm->evfd[i].fd);
            vm->evfd[i] = vm->evfd[--vm->nevfd];
            return;
        }
}

/* Handle one datagram from vmbusd.  Returns false on EOF/error. */
static bool vu_recv_one(struct sim_vm *vm, bool *got)
{
    uint8_t buf[VU_MAX_MSG_SIZE + 64];
    int fds[VU_MAX_FDS * 2];
    int nfds;
    bool truncated; /* vmbusd never sends more; the surplus is closed */
    *got = false;
    ssize_t r = fdpass_recv(vm->sock, buf, sizeof(buf), fds, VU_MAX_FDS * 2, &nfds, &truncated,
                            MSG_DONTWAIT);
    /* vmbusd closed while datagrams we sent were unread: the kernel reports
     * ECONNRESET once, then hands over what vmbusd sent (its ERROR) and EOF */
    if (r < 0 && errno == ECONNRESET)
        r = fdpass_recv(vm->sock, buf, sizeof(buf), fds, VU_MAX_FDS * 2, &nfds, &truncated,
                        MSG_DONTWAIT);
    if (r < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
    if (r == 0)
        return false;
    *got = true;
    struct vu_hdr h;
    if ((size_t)r < sizeof(h)) {
        vm->vu_unknown++;
        goto close_fds;
    }
    memcpy(&h, buf, sizeof(h));
    const uint8_t *pl = buf + sizeof(h);
    uint32_t plen = (uint32_t)((size_t)r - sizeof(h));
    switch (h.type) {
    case VU_MSG_HELLO_REPLY:
    case VU_MSG_POST_RESULT:
        if (h.type == VU_MSG_POST_RESULT)
            vm->post_results++;
        vm->rep_valid = true;
        vm->rep_type = h.type;
        vm->rep_seq = h.seq;
        vm->rep_size = plen;
        memset(vm->rep, 0, sizeof(vm->rep));
        memcpy(vm->rep, pl, plen < sizeof(vm->rep) ? plen : sizeof(vm->rep));
        break;
    case VU_MSG_RESET_DONE:
        vm->reset_done_seq = h.seq;
        break;
    case VU_MSG_EVENTFD_ADD: {
        struct vu_eventfd e = {0};
        memcpy(&e, pl, plen < sizeof(e) ? plen : sizeof(e));
        if (nfds < 1) {
            vm->vu_unknown++;
            break;
        }
        evfd_del(vm, e.connection_id);
        if (vm->nevfd < SIM_MAX_EVENTFDS) {
            vm->evfd[vm->nevfd].conn_id = e.connection_id;
            vm->evfd[vm->nevfd].fd = fds[0];
            vm->nevfd++;
            fds[0] = -1;
        }
        break;
    }
    case VU_MSG_EVENTFD_DEL: {
        struct vu_eventfd e = {0};
        memcpy(&e, pl, plen < sizeof(e) ? plen : sizeof(e));
        evfd_del(vm, e.connection_id);
        break;
    }
    case VU_MSG_ERROR: {
        /* The message runs to its NUL, which may lie past struct
         * vu_error's 128 bytes (vmbus_user.h). */
        char message[VU_ERROR_MESSAGE_MAX];
        uint32_t code = vu_error_decode(pl, plen, message, sizeof(message));
        snprintf(vm->error, sizeof(vm->error), "%u: %s", code, message);
        vm->error_code = code;
        break;
    }
    default:
        vm->vu_unknown++;
        break;
    }
close_fds:
    for (int i = 0; i < nfds; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    return true;
}

static void vu_service(struct sim_vm *vm)
{
    if (vm->sock < 0 || vm->dead)
        return;
    for (;;) {
        bool got;
        if (!vu_recv_one(vm, &got)) {
            vm->dead = true;
            return;
        }
        if (!got)
            return;
    }
}

bool sim_vu_alive(struct sim_vm *vm, int timeout_ms)
{
    uint64_t end = sim_now_ms() + (uint64_t)timeout_ms;
    do {
        if (vm->dead || vm->sock < 0)
            return false;
        struct pollfd p = {.fd = vm->sock, .events = POLLIN};
        int left = (int)(end - sim_now_ms());
        if (poll(&p, 1, left > 0 ? left : 0) > 0)
            vu_service(vm);
    } while (sim_now_ms() < end);
    return !vm->dead;
}

/* Wait for the reply of the given type with the given seq. */
static bool vu_wait_reply(struct sim_vm *vm, uint32_t type, uint32_t seq, int timeout_ms)
{
    uint64_t end = sim_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        if (vm->rep_valid && vm->rep_type == type && vm->rep_seq == seq)
            return true;
        if (vm->dead)
            return false;
        int64_t left = (int64_t)(end - sim_now_ms());
        if (left <= 0)
            return false;
        struct pollfd p = {.fd = vm->sock, .events = POLLIN};
        if (poll(&p, 1, (int)left) > 0)
            vu_service(vm);
    }
}

int sim_vmm_hello(struct sim_vm *vm)
{
    struct vu_hello hello = {.major = VU_PROTOCOL_MAJOR, .minor = VU_PROTOCOL_MINOR,
                             .vcpu_count = vm->vcpus};
    snprintf(hello.vm_name, sizeof(hello.vm_name), "%s", vm->name);
    int seq = sim_vu_send(vm, VU_MSG_HELLO, &hello, sizeof(hello), NULL, 0);
    if (seq < 0)
        return seq;
    if (!vu_wait_reply(vm, VU_MSG_HELLO_REPLY, (uint32_t)seq, SIM_TIMEOUT_MS))
        return -ETIMEDOUT;
    struct vu_hello_reply hr;
    memcpy(&hr, vm->rep, sizeof(hr));
    if (hr.major != VU_PROTOCOL_MAJOR)
        return -EPROTO;
    vm->partition_id = hr.partition_id;
    return 0;
}

int sim_vmm_send_memory(struct sim_vm *vm)
{
    /* one region, or two around the hole */
    struct vu_mem_region mr;
    int seq;
    if (!vm->hole_size) {
        mr = (struct vu_mem_region){.guest_phys_addr = 0, .size = vm->mem_size, .fd_offset = 0};
        if ((seq = sim_vu_send(vm, VU_MSG_MEM_REGION, &mr, sizeof(mr), &vm->memfd, 1)) < 0)
            return seq;
    } else {
        mr = (struct vu_mem_region){.guest_phys_addr = 0, .size = vm->hole_start,
                                    .fd_offset = 0};
        if ((seq = sim_vu_send(vm, VU_MSG_MEM_REGION, &mr, sizeof(mr), &vm->memfd, 1)) < 0)
            return seq;
        mr = (struct vu_mem_region){.guest_phys_addr = vm->hole_start + vm->hole_size,
                                    .size = vm->mem_size - vm->hole_start,
                                    .fd_offset = vm->hole_start};
        if ((seq = sim_vu_send(vm, VU_MSG_MEM_REGION, &mr, sizeof(mr), &vm->memfd, 1)) < 0)
            return seq;
    }
    return 0;
}

int sim_vmm_send_routes(struct sim_vm *vm)
{
    for (uint32_t i = 0; i < vm->vcpus; i++) {
        struct vu_sint_route sr = {.vp_index = i, .sint = VMBUS_MESSAGE_SINT};
        int fds[2] = {vm->vp[i].irqfd, vm->vp[i].resamplefd};
        int seq = sim_vu_send(vm, VU_MSG_SINT_ROUTE, &sr, sizeof(sr), fds, 2);
        if (seq < 0)
            return seq;
    }
    return 0;
}

int sim_vmm_send_synic(struct sim_vm *vm)
{
    for (uint32_t i = 0; i < vm->vcpus; i++) {
        struct vu_synic_state ss = {
            .vp_index = i,
            .scontrol = 1,
            .simp = sim_off_to_gpa(vm, vm->vp[i].simp_off) | 1,
            .siefp = sim_off_to_gpa(vm, vm->vp[i].siefp_off) | 1,
        };
        int seq = sim_vu_send(vm, VU_MSG_SYNIC_STATE, &ss, sizeof(ss), NULL, 0);
        if (seq < 0)
            return seq;
    }
    return 0;
}

int sim_vmm_setup(struct sim_vm *vm)
{
    int r;
    if ((r = sim_vmm_hello(vm)) < 0 || (r = sim_vmm_send_memory(vm)) < 0 ||
        (r = sim_vmm_send_routes(vm)) < 0 || (r = sim_vmm_send_synic(vm)) < 0)
        return r;
    return 0;
}


int sim_vmm_reset(struct sim_vm *vm)
{
    int r = sim_vu_send(vm, VU_MSG_RESET, NULL, 0, NULL, 0);
    if (r < 0)
        return r;
    sim_guest_forget(vm);
    sim_drain_msgs(vm);
    vm->msg_conn_id = VMBUS_MESSAGE_CONNECTION_ID;
    vm->next_gpadl = SIM_GPADL_FIRST;
    for (uint32_t i = 0; i < vm->vcpus; i++) {
        memset(vm->mem + vm->vp[i].simp_off, 0, HV_PAGE_SIZE);
        memset(vm->mem + vm->vp[i].siefp_off, 0, HV_PAGE_SIZE);
        struct vu_synic_state ss = {
            .vp_index = i,
            .scontrol = 1,
            .simp = sim_off_to_gpa(vm, vm->vp[i].simp_off) | 1,
            .siefp = sim_off_to_gpa(vm, vm->vp[i].siefp_off) | 1,
        };
        if ((r = sim_vu_send(vm, VU_MSG_SYNIC_STATE, &ss, sizeof(ss), NULL, 0)) < 0)
            return r;
    }
    return 0;
}

struct sim_vm *sim_vm_new(struct sim_daemon *d, const struct sim_vm_opts *o)
{
    struct sim_vm *vm = calloc(1, sizeof(*vm));
    if (!vm)
        return NULL;
    vm->q = calloc(SIM_MSGQ_LEN, sizeof(*vm->q));
    snprintf(vm->name, sizeof(vm->name), "%s", o->name ? o->name : "sim");
    vm->mem_size = o->mem_size ? o->mem_size : (64u << 20);
    vm->hole_start = o->hole_size ? o->hole_start : 0;
    vm->hole_size = o->hole_size;
    vm->vcpus = o->vcpus ? o->vcpus : 2;
    if (vm->vcpus > SIM_MAX_VCPUS)
        vm->vcpus = SIM_MAX_VCPUS;
    vm->sock = -1;
    vm->memfd = -1;
    vm->consume_msgs = true;
    vm->expect_offers = sim_expect_offers_default;
    vm->next_gpadl = SIM_GPADL_FIRST;
    vm->alloc_next = SIM_ALLOC_BASE;
    vm->alloc_floor = SIM_ALLOC_BASE;
    vm->msg_conn_id = VMBUS_MESSAGE_CONNECTION_ID;
    for (uint32_t i = 0; i < SIM_MAX_VCPUS; i++)
        vm->vp[i].irqfd = vm->vp[i].resamplefd = -1;
    if (!vm->q)
        goto fail;

    /* vmbusd takes only a memfd that cannot shrink under its mapping. */
    vm->memfd = memfd_create(vm->name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (vm->memfd < 0 || ftruncate(vm->memfd, (off_t)vm->mem_size) < 0 ||
        fcntl(vm->memfd, F_ADD_SEALS, F_SEAL_SHRINK) < 0)
        goto fail;
    vm->mem = mmap(NULL, vm->mem_size, PROT_READ | PROT_WRITE, MAP_SHARED, vm->memfd, 0);
    if (vm->mem == MAP_FAILED) {
        vm->mem = NULL;
        goto fail;
    }
    for (uint32_t i = 0; i < vm->vcpus; i++) {
        vm->vp[i].simp_off = sim_alloc_pages(vm, 1);
        vm->vp[i].siefp_off = sim_alloc_pages(vm, 1);
        vm->vp[i].irqfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        vm->vp[i].resamplefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (vm->vp[i].irqfd < 0 || vm->vp[i].resamplefd < 0)
            goto fail;
    }
    vm->int_page_off = sim_alloc_pages(vm, 1);
    vm->mon1_off = sim_alloc_pages(vm, 1);
    vm->mon2_off = sim_alloc_pages(vm, 1);
    vm->alloc_floor = vm->alloc_next;

    vm->sock = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (vm->sock < 0)
        goto fail;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    vm->sock_path = o->sock_path ? o->sock_path : simd_socket_path(d);
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", vm->sock_path);
    if (connect(vm->sock, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        fprintf(stderr, "sim_vm_new(%s): connect %s: %s\n", vm->name, sa.sun_path,
                strerror(errno));
        goto fail;
    }
    if (!o->no_setup) {
        int r = sim_vmm_setup(vm);
        if (r < 0) {
            fprintf(stderr, "sim_vm_new(%s): setup failed: %s (%s)\n", vm->name, strerror(-r),
                    vm->error);
            goto fail;
        }
    }
    return vm;
fail:
    sim_vm_free(vm);
    return NULL;
}

struct sim_vm *sim_vm_create(struct sim_daemon *d, const char *name)
{
    struct sim_vm_opts o = {.name = name};
    return sim_vm_new(d, &o);
}

void sim_vm_free(struct sim_vm *vm)
{
    if (!vm)
        return;
    if (vm->sock >= 0)
        close(vm->sock);
    for (int i = 0; i < vm->nevfd; i++)
        close(vm->evfd[i].fd);
    for (uint32_t i = 0; i < SIM_MAX_VCPUS; i++) {
        if (vm->vp[i].irqfd >= 0)
            close(vm->vp[i].irqfd);
        if (vm->vp[i].resamplefd >= 0)
            close(vm->vp[i].resamplefd);
    }
    if (vm->mem)
        munmap(vm->mem, vm->mem_size);
    if (vm->memfd >= 0)
        close(vm->memfd);
    free(vm->q);
    free(vm);
}

/* ------------------------------------------------------------------ */
/* Hypercalls                                                           */

int sim_post(struct sim_vm *vm, uint32_t conn_id, uint32_t msg_type, const void *payload,
             uint32_t payload_size)
{
    struct vu_post_message pm;
    memset(&pm, 0, sizeof(pm));
    pm.vp_index = vm->target_vcpu;
    pm.msg.connection_id = conn_id;
    pm.msg.message_type = msg_type;
    pm.msg.payload_size = payload_size;
    uint32_t n = payload_size < HV_MESSAGE_PAYLOAD_SIZE ? payload_size : HV_MESSAGE_PAYLOAD_SIZE;
    if (payload && n)
        memcpy(pm.msg.payload, payload, n);
    int seq = sim_vu_send(vm, VU_MSG_POST_MESSAGE, &pm, sizeof(pm), NULL, 0);
    if (seq < 0)
        return seq;
    if (!vu_wait_reply(vm, VU_MSG_POST_RESULT, (uint32_t)seq, SIM_TIMEOUT_MS))
        return vm->dead ? -EPIPE : -ETIMEDOUT;
    struct vu_post_result pr;
    memcpy(&pr, vm->rep, sizeof(pr));
    return (int)(pr.hv_status & 0xffff);
}

int sim_post_msg(struct sim_vm *vm, const void *msg, uint32_t len)
{
    uint32_t msgtype = 0;
    if (len >= 4)
        memcpy(&msgtype, msg, 4);
    int st = 0;
    for (int tries = 0; tries < 100; tries++) {
        st = sim_post(vm, vm->msg_conn_id, HV_MESSAGE_TYPE_VMBUS, msg, len);
        if (st < 0)
            return st;
        switch (st) {
        case HV_STATUS_SUCCESS:
            return 0;
        case HV_STATUS_INVALID_CONNECTION_ID:
            if (msgtype == CHANNELMSG_INITIATE_CONTACT)
                return st;
            break;
        case HV_STATUS_INSUFFICIENT_MEMORY:
        case HV_STATUS_INSUFFICIENT_BUFFERS:
            if (vm->post_no_retry)
                return st;
            break;
        default:
            return st;
        }
        /* back off; host messages keep arriving meanwhile (interrupts) */
        sim_poll(vm, tries < 10 ? 1 : 10);
    }
    return st;
}

int sim_signal_event(struct sim_vm *vm, uint32_t conn_id)
{
    vu_service(vm); /* pick up EVENTFD_ADDs vmbusd sent meanwhile */
    for (int i = 0; i < vm->nevfd; i++)
        if (vm->evfd[i].conn_id == conn_id) {
            uint64_t one = 1;
            ssize_t r = write(vm->evfd[i].fd, &one, sizeof(one));
            return r == sizeof(one) ? 0 : -errno;
        }
    struct vu_signal_event se = {.vp_index = vm->target_vcpu, .connection_id = conn_id};
    vm->signal_event_msgs++;
    int r = sim_vu_send(vm, VU_MSG_SIGNAL_EVENT, &se, sizeof(se), NULL, 0);
    return r < 0 ? r : 0;
}

/* ------------------------------------------------------------------ */
/* Guest: interrupts, message DPC                                       */

static const uint32_t min_payload[CHANNELMSG_COUNT] = {
    [CHANNELMSG_OFFERCHANNEL] = sizeof(struct vmbus_channel_offer_channel),
    [CHANNELMSG_RESCIND_CHANNELOFFER] = sizeof(struct vmbus_channel_rescind_offer),
    [CHANNELMSG_OPENCHANNEL_RESULT] = sizeof(struct vmbus_channel_open_result),
    [CHANNELMSG_GPADL_CREATED] = sizeof(struct vmbus_channel_gpadl_created),
    [CHANNELMSG_GPADL_TORNDOWN] = sizeof(struct vmbus_channel_gpadl_torndown),
    [CHANNELMSG_VERSION_RESPONSE] = sizeof(struct vmbus_channel_version_response),
    [CHANNELMSG_MODIFYCHANNEL_RESPONSE] = sizeof(struct vmbus_channel_modifychannel_response),
};

static bool has_handler(uint32_t t)
{
    switch (t) {
    case CHANNELMSG_OFFERCHANNEL:
    case CHANNELMSG_RESCIND_CHANNELOFFER:
    case CHANNELMSG_ALLOFFERS_DELIVERED:
    case CHANNELMSG_OPENCHANNEL_RESULT:
    case CHANNELMSG_GPADL_CREATED:
    case CHANNELMSG_GPADL_TORNDOWN:
    case CHANNELMSG_VERSION_RESPONSE:
    case CHANNELMSG_UNLOAD_RESPONSE:
    case CHANNELMSG_MODIFYCHANNEL_RESPONSE:
        return true;
    default:
        return false;
    }
}

struct sim_offer *sim_find_offer(struct sim_vm *vm, uint32_t relid)
{
    for (int i = 0; i < vm->noffers; i++)
        if (vm->offers[i].valid && vm->offers[i].relid == relid)
            return &vm->offers[i];
    return NULL;
}

struct sim_chan *sim_chan(struct sim_vm *vm, uint32_t relid)
{
    for (int i = 0; i < SIM_MAX_CHANNELS; i++)
        if (vm->chans[i].vm && vm->chans[i].relid == relid)
            return &vm->chans[i];
    return NULL;
}

static void on_offer(struct sim_vm *vm, const struct vmbus_channel_offer_channel *o)
{
    if (o->child_relid > VMBUS_MAX_RELID) {
        fprintf(stderr, "sim(%s): offer with relid %u >= 2048\n", vm->name, o->child_relid);
        vm->bad_host_msgs++;
        return;
    }
    /* duplicate primary (same type+instance, index 0, still valid) is dropped */
    for (int i = 0; i < vm->noffers; i++) {
        struct sim_offer *x = &vm->offers[i];
        if (x->valid && !x->rescinded && o->offer.sub_channel_index == 0 &&
            x->sub_channel_index == 0 && memcmp(&x->if_type, &o->offer.if_type, 16) == 0 &&
            memcmp(&x->if_instance, &o->offer.if_instance, 16) == 0) {
            fprintf(stderr, "sim(%s): duplicate offer relid %u (have %u)\n", vm->name,
                    o->child_relid, x->relid);
            vm->bad_host_msgs++;
            return;
        }
    }
    /* A subchannel joins the live primary with its class and instance
     * (vmbus_process_offer); without one Linux would take it for a device
     * of its own. */
    if (o->offer.sub_channel_index != 0) {
        bool primary = false;
        for (int i = 0; i < vm->noffers && !primary; i++) {
            const struct sim_offer *x = &vm->offers[i];
            primary = x->valid && !x->rescinded && x->sub_channel_index == 0 &&
                      memcmp(&x->if_type, &o->offer.if_type, 16) == 0 &&
                      memcmp(&x->if_instance, &o->offer.if_instance, 16) == 0;
        }
        if (!primary) {
            fprintf(stderr, "sim(%s): subchannel %u (relid %u) offered without its primary\n",
                    vm->name, o->offer.sub_channel_index, o->child_relid);
            vm->bad_host_msgs++;
            return;
        }
    }
    struct sim_offer *s = sim_find_offer(vm, o->child_relid);
    if (s && !s->rescinded) {
        fprintf(stderr, "sim(%s): offer reuses live relid %u\n", vm->name, o->child_relid);
        vm->bad_host_msgs++;
        return;
    }
    if (!s) {
        for (int i = 0; i < vm->noffers; i++)
            if (!vm->offers[i].valid)
                s = &vm->offers[i];
        if (!s) {
            if (vm->noffers >= SIM_MAX_CHANNELS)
                return;
            s = &vm->offers[vm->noffers++];
        }
    }
    memset(s, 0, sizeof(*s));
    s->valid = true;
    s->relid = o->child_relid;
    s->if_type = o->offer.if_type;
    s->if_instance = o->offer.if_instance;
    s->chn_flags = o->offer.chn_flags;
    s->sub_channel_index = o->offer.sub_channel_index;
    s->connection_id = o->connection_id;
    s->monitorid = o->monitorid;
    s->monitor_allocated = o->monitor_allocated & 1;
    s->is_dedicated_interrupt = (o->is_dedicated_interrupt & 1) != 0;
}

static void on_rescind(struct sim_vm *vm, uint32_t relid)
{
    struct sim_offer *s = sim_find_offer(vm, relid);
    if (s)
        s->rescinded = true;
}

static void enqueue(struct sim_vm *vm, uint32_t vp, const struct hv_message *m)
{
    if (vm->qlen == SIM_MSGQ_LEN) {
        vm->qhead = (vm->qhead + 1) % SIM_MSGQ_LEN;
        vm->qlen--;
        vm->q_overflow++;
    }
    struct sim_qmsg *q = &vm->q[(vm->qhead + vm->qlen) % SIM_MSGQ_LEN];
    memcpy(&q->type, m->payload, 4);
    q->vp = vp;
    q->size = m->header.payload_size;
    memcpy(q->payload, m->payload, HV_MESSAGE_PAYLOAD_SIZE);
    vm->qlen++;
}

/* vmbus_on_msg_dpc + vmbus_signal_eom */
static void msg_dpc(struct sim_vm *vm, uint32_t vp)
{
    struct hv_message *slot =
        (struct hv_message *)(vm->mem + vm->vp[vp].simp_off) + VMBUS_MESSAGE_SINT;
    struct hv_message copy;
    memcpy(&copy, slot, sizeof(copy));
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    uint32_t mtype = copy.header.message_type;
    if (mtype == HV_MESSAGE_TYPE_NONE)
        return;
    uint32_t ctype;
    memcpy(&ctype, copy.payload, 4);
    uint8_t psize = copy.header.payload_size;
    if (mtype == HV_MESSAGE_TIMER_EXPIRED) {
        /* not ours; eom below */
    } else if (ctype >= CHANNELMSG_COUNT) {
        fprintf(stderr, "sim(%s): host sent unknown msgtype %u\n", vm->name, ctype);
        vm->bad_host_msgs++;
    } else if (psize > HV_MESSAGE_PAYLOAD_SIZE) {
        fprintf(stderr, "sim(%s): host payload size %u too large\n", vm->name, psize);
        vm->bad_host_msgs++;
    } else if (!has_handler(ctype)) {
        fprintf(stderr, "sim(%s): host sent guest->host msgtype %u\n", vm->name, ctype);
        vm->bad_host_msgs++;
    } else if (psize < min_payload[ctype]) {
        fprintf(stderr, "sim(%s): host msgtype %u too short (%u < %u)\n", vm->name, ctype,
                psize, min_payload[ctype]);
        vm->bad_host_msgs++;
    } else {
        vm->msgs_received++;
        if (ctype == CHANNELMSG_OFFERCHANNEL)
            on_offer(vm, (const void *)copy.payload);
        else if (ctype == CHANNELMSG_RESCIND_CHANNELOFFER) {
            uint32_t relid;
            memcpy(&relid, copy.payload + 8, 4);
            on_rescind(vm, relid);
        } else if (ctype == CHANNELMSG_ALLOFFERS_DELIVERED)
            vm->all_offers_delivered = true;
        else if (ctype == CHANNELMSG_UNLOAD_RESPONSE)
            vm->unload_responses++;
        enqueue(vm, vp, &copy);
    }
    /* EOM: clear the type if it is still what we read; EOM only if pending */
    uint32_t expect = mtype;
    if (!__atomic_compare_exchange_n(&slot->header.message_type, &expect, HV_MESSAGE_TYPE_NONE,
                                     false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
        return;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if ((__atomic_load_n(&slot->header.message_flags, __ATOMIC_SEQ_CST) &
         HV_MESSAGE_FLAG_PENDING) &&
        !vm->lose_eoms) {
        uint64_t one = 1;
        if (write(vm->vp[vp].resamplefd, &one, sizeof(one)) == sizeof(one))
            vm->vp[vp].eoms++;
    }
}

static void chan_event(struct sim_vm *vm, uint32_t relid)
{
    struct sim_chan *ch = sim_chan(vm, relid);
    struct sim_offer *of = sim_find_offer(vm, relid);
    if (ch && ch->open && !(of && of->rescinded))
        ch->events++;
    else
        vm->stray_events++;
}

static void compat_events(struct sim_vm *vm)
{
    uint64_t *rx = (uint64_t *)(vm->mem + vm->int_page_off);
    for (unsigned w = 0; w < 256 / 64; w++) {
        uint64_t v = __atomic_exchange_n(&rx[w], 0, __ATOMIC_SEQ_CST);
        for (unsigned b = 0; b < 64; b++)
            if ((v >> b) & 1 && w * 64 + b != 0)
                chan_event(vm, w * 64 + b);
    }
}

/* vmbus_isr: event flags first, then the message slot. */
static void isr(struct sim_vm *vm, uint32_t vp)
{
    vm->vp[vp].interrupts++;
    uint64_t *bits = (uint64_t *)(vm->mem + vm->vp[vp].siefp_off +
                                  VMBUS_MESSAGE_SINT * HV_EVENT_FLAGS_BYTES);
    for (unsigned w = 0; w < HV_EVENT_FLAGS_COUNT / 64; w++) {
        if (!__atomic_load_n(&bits[w], __ATOMIC_RELAXED))
            continue;
        for (unsigned b = 0; b < 64; b++) {
            uint64_t m = 1ull << b;
            if (!(__atomic_load_n(&bits[w], __ATOMIC_RELAXED) & m))
                continue;
            if (!(__atomic_fetch_and(&bits[w], ~m, __ATOMIC_SEQ_CST) & m))
                continue;
            uint32_t relid = w * 64 + b;
            if (relid == 0) {
                /* pre-WIN8 (FreeBSD's compat path): bit 0 = "scan the
                 * host->guest half of the interrupt page" (256 channels) */
                if (vm->version && vm->version < VMBUS_VERSION_WIN8)
                    compat_events(vm);
                continue;
            }
            chan_event(vm, relid);
        }
    }
    struct hv_message *slot =
        (struct hv_message *)(vm->mem + vm->vp[vp].simp_off) + VMBUS_MESSAGE_SINT;
    if (__atomic_load_n(&slot->header.message_type, __ATOMIC_ACQUIRE) != HV_MESSAGE_TYPE_NONE &&
        vm->consume_msgs)
        msg_dpc(vm, vp);
}

void sim_poll(struct sim_vm *vm, int timeout_ms)
{
    struct pollfd p[SIM_MAX_VCPUS + 1];
    int n = 0;
    for (uint32_t i = 0; i < vm->vcpus; i++)
        p[n++] = (struct pollfd){.fd = vm->vp[i].irqfd, .events = POLLIN};
    if (vm->sock >= 0 && !vm->dead)
        p[n++] = (struct pollfd){.fd = vm->sock, .events = POLLIN};
    if (poll(p, (nfds_t)n, timeout_ms) <= 0)
        return;
    for (uint32_t i = 0; i < vm->vcpus; i++)
        if (p[i].revents & POLLIN) {
            uint64_t v;
            if (read(vm->vp[i].irqfd, &v, sizeof(v)) == sizeof(v))
                isr(vm, i);
        }
    if ((uint32_t)n > vm->vcpus && p[vm->vcpus].revents)
        vu_service(vm);
}

void sim_set_consume(struct sim_vm *vm, bool on)
{
    bool was = vm->consume_msgs;
    vm->consume_msgs = on;
    if (!on || was)
        return;
    /* The interrupts that arrived meanwhile were taken without running the
     * message DPC: run it now for slots left full. */
    for (uint32_t i = 0; i < vm->vcpus; i++) {
        struct hv_message *slot =
            (struct hv_message *)(vm->mem + vm->vp[i].simp_off) + VMBUS_MESSAGE_SINT;
        if (__atomic_load_n(&slot->header.message_type, __ATOMIC_ACQUIRE))
            msg_dpc(vm, i);
    }
}

bool sim_take_msg(struct sim_vm *vm, uint32_t type, sim_msg_match_fn match, const void *arg,
                  struct sim_qmsg *out)
{
    for (unsigned i = 0; i < vm->qlen; i++) {
        struct sim_qmsg *m = &vm->q[(vm->qhead + i) % SIM_MSGQ_LEN];
        if (m->type != type || (match && !match(m, arg)))
            continue;
        if (out)
            *out = *m;
        /* remove entry i, keeping order */
        for (unsigned j = i; j + 1 < vm->qlen; j++)
            vm->q[(vm->qhead + j) % SIM_MSGQ_LEN] = vm->q[(vm->qhead + j + 1) % SIM_MSGQ_LEN];
        vm->qlen--;
        return true;
    }
    return false;
}

bool sim_wait_msg(struct sim_vm *vm, uint32_t type, sim_msg_match_fn match, const void *arg,
                  struct sim_qmsg *out, int timeout_ms)
{
    uint64_t end = sim_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        if (sim_take_msg(vm, type, match, arg, out))
            return true;
        int64_t left = (int64_t)(end - sim_now_ms());
        if (left <= 0)
            return false;
        sim_poll(vm, (int)(left < 50 ? left : 50));
    }
}

void sim_drain_msgs(struct sim_vm *vm)
{
    vm->qhead = vm->qlen = 0;
}

/* ------------------------------------------------------------------ */
/* Connection                                                           */

int sim_contact_post(struct sim_vm *vm, uint32_t version)
{
    struct vmbus_channel_initiate_contact m;
    memset(&m, 0, sizeof(m));
    m.header.msgtype = CHANNELMSG_INITIATE_CONTACT;
    m.vmbus_version_requested = version;
    if (version >= VMBUS_VERSION_WIN10_V5) {
        m.u.s.msg_sint = VMBUS_MESSAGE_SINT;
        vm->msg_conn_id = VMBUS_MESSAGE_CONNECTION_ID_4;
    } else {
        m.u.interrupt_page = sim_off_to_gpa(vm, vm->int_page_off);
        vm->msg_conn_id = VMBUS_MESSAGE_CONNECTION_ID;
    }
    memset(vm->mem + vm->int_page_off, 0, HV_PAGE_SIZE);
    memset(vm->mem + vm->mon1_off, 0, HV_PAGE_SIZE);
    memset(vm->mem + vm->mon2_off, 0, HV_PAGE_SIZE);
    m.monitor_page1 = sim_off_to_gpa(vm, vm->mon1_off);
    m.monitor_page2 = sim_off_to_gpa(vm, vm->mon2_off);
    m.target_vcpu = vm->target_vcpu;
    return sim_post_msg(vm, &m, sizeof(m));
}

int sim_contact_wait(struct sim_vm *vm, uint32_t version)
{
    struct sim_qmsg r;
    if (!sim_wait_msg(vm, CHANNELMSG_VERSION_RESPONSE, NULL, NULL, &r, SIM_TIMEOUT_MS))
        return -ETIMEDOUT;
    struct vmbus_channel_version_response vr;
    memcpy(&vr, r.payload, sizeof(vr));
    if (!vr.version_supported)
        return 0;
    vm->version = version;
    if (version >= VMBUS_VERSION_WIN10_V5)
        vm->msg_conn_id = vr.msg_conn_id;
    return 1;
}

int sim_connect_version(struct sim_vm *vm, uint32_t version)
{
    int st = sim_contact_post(vm, version);
    if (st < 0)
        return st;
    if (st != 0)
        return 0; /* e.g. INVALID_CONNECTION_ID: try the next version */
    return sim_contact_wait(vm, version);
}

uint32_t sim_connect(struct sim_vm *vm)
{
    for (int i = 0; i < 8; i++)
        if (sim_connect_version(vm, sim_linux_versions[i]) == 1)
            return vm->version;
    if (sim_connect_version(vm, VMBUS_VERSION_WIN7) == 1)
        return vm->version;
    if (sim_connect_version(vm, VMBUS_VERSION_WS2008) == 1)
        return vm->version;
    return 0;
}

int sim_request_offers(struct sim_vm *vm)
{
    struct vmbus_channel_message_header h = {.msgtype = CHANNELMSG_REQUESTOFFERS};
    vm->all_offers_delivered = false;
    int st = sim_post_msg(vm, &h, sizeof(h));
    if (st != 0)
        return st < 0 ? st : -EIO;
    if (!sim_wait_msg(vm, CHANNELMSG_ALLOFFERS_DELIVERED, NULL, NULL, NULL, SIM_TIMEOUT_MS))
        return -ETIMEDOUT;
    int n = 0;
    uint64_t end = sim_now_ms() + SIM_TIMEOUT_MS;
    for (;;) {
        n = 0;
        for (int i = 0; i < vm->noffers; i++)
            if (vm->offers[i].valid && !vm->offers[i].rescinded)
                n++;
        /* offers may also come after ALLOFFERS_DELIVERED (hot add) */
        if (n >= vm->expect_offers || sim_now_ms() >= end)
            break;
        sim_poll(vm, 10);
    }
    /* offers are consumed by the state table; drop them from the FIFO */
    while (sim_take_msg(vm, CHANNELMSG_OFFERCHANNEL, NULL, NULL, NULL))
        ;
    return n;
}

struct sim_offer *sim_offer_by_class(struct sim_vm *vm, const struct hv_guid *cls, int n)
{
    for (int i = 0; i < vm->noffers; i++) {
        struct sim_offer *o = &vm->offers[i];
        if (!o->valid || o->rescinded)
            continue;
        if (cls && memcmp(&o->if_type, cls, sizeof(*cls)) != 0)
            continue;
        if (n-- == 0)
            return o;
    }
    return NULL;
}

void sim_guest_forget(struct sim_vm *vm)
{
    memset(vm->offers, 0, sizeof(vm->offers));
    vm->noffers = 0;
    memset(vm->chans, 0, sizeof(vm->chans));
    vm->version = 0;
    vm->all_offers_delivered = false;
}

int sim_unload(struct sim_vm *vm)
{
    struct vmbus_channel_message_header h = {.msgtype = CHANNELMSG_UNLOAD};
    int st = sim_post_msg(vm, &h, sizeof(h));
    if (st != 0)
        return st < 0 ? st : -EIO;
    if (!sim_wait_msg(vm, CHANNELMSG_UNLOAD_RESPONSE, NULL, NULL, NULL, SIM_TIMEOUT_MS))
        return -ETIMEDOUT;
    sim_guest_forget(vm);
    sim_drain_msgs(vm);
    return 0;
}

int sim_bringup(struct sim_vm *vm, uint32_t version)
{
    int r = version ? sim_connect_version(vm, version) : (sim_connect(vm) ? 1 : 0);
    if (r < 0)
        return r;
    if (r == 0)
        return -ECONNREFUSED;
    return sim_request_offers(vm);
}

/* ------------------------------------------------------------------ */
/* GPADLs                                                               */

int sim_gpadl_post(struct sim_vm *vm, uint32_t relid, uint32_t handle, const uint64_t *pfns,
                   uint32_t total_pfns, uint32_t send_pfns, uint32_t byte_count_override,
                   uint32_t buflen_override)
{
    uint8_t buf[HV_MESSAGE_PAYLOAD_SIZE];
    memset(buf, 0, sizeof(buf));
    struct vmbus_channel_gpadl_header *h = (void *)buf;
    h->header.msgtype = CHANNELMSG_GPADL_HEADER;
    h->child_relid = relid;
    h->gpadl = handle;
    h->range_buflen = (uint16_t)(buflen_override ? buflen_override : 8 + 8 * total_pfns);
    h->rangecount = 1;
    uint32_t bc = byte_count_override ? byte_count_override : total_pfns * HV_PAGE_SIZE;
    memcpy(buf + 20, &bc, 4);
    uint32_t zero = 0;
    memcpy(buf + 24, &zero, 4);
    uint32_t n = send_pfns < VMBUS_GPADL_HEADER_MAX_PFNS ? send_pfns
                                                         : VMBUS_GPADL_HEADER_MAX_PFNS;
    uint32_t nhdr = n;
    memcpy(buf + 28, pfns, 8 * (size_t)n);
    int st = sim_post_msg(vm, buf, 28 + 8 * nhdr);
    if (st != 0)
        return st;
    uint32_t done = n;
    while (done < send_pfns) {
        uint32_t c = send_pfns - done;
        if (c > VMBUS_GPADL_BODY_MAX_PFNS)
            c = VMBUS_GPADL_BODY_MAX_PFNS;
        memset(buf, 0, sizeof(buf));
        struct vmbus_channel_gpadl_body *b = (void *)buf;
        b->header.msgtype = CHANNELMSG_GPADL_BODY;
        b->msgnumber = 0;
        b->gpadl = handle;
        memcpy(buf + 16, pfns + done, 8 * (size_t)c);
        st = sim_post_msg(vm, buf, 16 + 8 * c);
        if (st != 0)
            return st;
        done += c;
    }
    return 0;
}

struct gpadl_key {
    uint32_t relid, gpadl;
    bool match_relid;
};

static bool match_gpadl_created(const struct sim_qmsg *m, const void *arg)
{
    const struct gpadl_key *k = arg;
    struct vmbus_channel_gpadl_created c;
    memcpy(&c, m->payload, sizeof(c));
    return c.child_relid == k->relid && c.gpadl == k->gpadl;
}

static bool match_gpadl_torndown(const struct sim_qmsg *m, const void *arg)
{
    const struct gpadl_key *k = arg;
    struct vmbus_channel_gpadl_torndown t;
    memcpy(&t, m->payload, sizeof(t));
    return t.gpadl == k->gpadl;
}

static bool match_relid8(const struct sim_qmsg *m, const void *arg)
{
    uint32_t relid;
    memcpy(&relid, m->payload + 8, 4);
    return relid == *(const uint32_t *)arg;
}

int sim_gpadl_create(struct sim_vm *vm, uint32_t relid, const uint64_t *pfns, uint32_t npages,
                     uint32_t *handle)
{
    uint32_t h = vm->next_gpadl++;
    if (handle)
        *handle = h;
    int st = sim_gpadl_post(vm, relid, h, pfns, npages, npages, 0, 0);
    if (st != 0)
        return st < 0 ? st : -EIO;
    struct gpadl_key k = {.relid = relid, .gpadl = h};
    struct sim_qmsg r;
    if (!sim_wait_msg(vm, CHANNELMSG_GPADL_CREATED, match_gpadl_created, &k, &r, SIM_TIMEOUT_MS))
        return -ETIMEDOUT;
    struct vmbus_channel_gpadl_created c;
    memcpy(&c, r.payload, sizeof(c));
    return (int)c.creation_status;
}

int sim_gpadl_create_pages(struct sim_vm *vm, uint32_t relid, uint32_t npages, uint32_t *handle,
                           uint64_t *off)
{
    uint64_t o = sim_alloc_pages(vm, npages);
    uint64_t *pfns = calloc(npages, 8);
    if (!pfns)
        return -ENOMEM;
    for (uint32_t i = 0; i < npages; i++)
        pfns[i] = sim_page_pfn(vm, o + (uint64_t)i * HV_PAGE_SIZE);
    if (off)
        *off = o;
    int r = sim_gpadl_create(vm, relid, pfns, npages, handle);
    free(pfns);
    return r;
}

int sim_gpadl_teardown(struct sim_vm *vm, uint32_t relid, uint32_t handle)
{
    struct vmbus_channel_gpadl_teardown t = {
        .header.msgtype = CHANNELMSG_GPADL_TEARDOWN, .child_relid = relid, .gpadl = handle};
    int st = sim_post_msg(vm, &t, sizeof(t));
    if (st != 0)
        return st < 0 ? st : -EIO;
    struct gpadl_key k = {.relid = relid, .gpadl = handle};
    uint64_t end = sim_now_ms() + SIM_TIMEOUT_MS;
    while (sim_now_ms() < end) {
        if (sim_take_msg(vm, CHANNELMSG_GPADL_TORNDOWN, match_gpadl_torndown, &k, NULL))
            return 0;
        struct sim_offer *o = sim_find_offer(vm, relid);
        if (o && o->rescinded)
            return 0; /* the rescind wakes the waiter */
        sim_poll(vm, 50);
    }
    return -ETIMEDOUT;
}

/* ------------------------------------------------------------------ */
/* Channels                                                             */

static void ring_init(struct sim_ring *r, uint8_t *base, uint32_t pages, uint32_t max_pkt)
{
    r->hdr = (struct vmbus_ring_header *)base;
    r->data = base + HV_PAGE_SIZE;
    r->size = (pages - 1) * HV_PAGE_SIZE;
    r->priv_read = 0;
    r->max_pkt = max_pkt ? max_pkt : r->size;
    r->hdr->read_index = 0;
    r->hdr->write_index = 0;
    r->hdr->feature_bits = VMBUS_RING_FEAT_PENDING_SEND_SZ;
}

struct open_key {
    uint32_t relid, openid;
};

static bool match_open_result(const struct sim_qmsg *m, const void *arg)
{
    const struct open_key *k = arg;
    struct vmbus_channel_open_result r;
    memcpy(&r, m->payload, sizeof(r));
    return r.child_relid == k->relid && r.openid == k->openid;
}

struct sim_chan *sim_chan_open(struct sim_vm *vm, uint32_t relid, uint32_t send_pages,
                               uint32_t recv_pages, int *status)
{
    int dummy;
    if (!status)
        status = &dummy;
    *status = -EINVAL;
    struct sim_offer *of = sim_find_offer(vm, relid);
    if (!of || of->rescinded || send_pages < 2 || recv_pages < 2)
        return NULL;
    struct sim_chan *ch = sim_chan(vm, relid);
    if (ch && ch->open)
        return NULL;
    if (!ch)
        for (int i = 0; i < SIM_MAX_CHANNELS && !ch; i++)
            if (!vm->chans[i].vm)
                ch = &vm->chans[i];
    if (!ch)
        return NULL;
    memset(ch, 0, sizeof(*ch));
    ch->vm = vm;
    ch->relid = relid;
    ch->send_pages = send_pages;
    ch->recv_pages = recv_pages;
    ch->target_vp = vm->target_vcpu;
    uint32_t total = send_pages + recv_pages;
    ch->ring_off = sim_alloc_pages(vm, total);
    ring_init(&ch->out, vm->mem + ch->ring_off, send_pages, 0);
    ring_init(&ch->in, vm->mem + ch->ring_off + (uint64_t)send_pages * HV_PAGE_SIZE, recv_pages,
              (uint32_t)vm->max_pkt);

    uint64_t *pfns = calloc(total, 8);
    if (!pfns) {
        ch->vm = NULL;
        *status = -ENOMEM;
        return NULL;
    }
    for (uint32_t i = 0; i < total; i++)
        pfns[i] = sim_page_pfn(vm, ch->ring_off + (uint64_t)i * HV_PAGE_SIZE);
    uint64_t t0 = sim_now_ns();
    int st = sim_gpadl_create(vm, relid, pfns, total, &ch->gpadl);
    ch->open_gpadl_ns = sim_now_ns() - t0;
    free(pfns);
    if (st != 0) {
        *status = st;
        ch->vm = NULL;
        return NULL;
    }
    struct vmbus_channel_open_channel m;
    memset(&m, 0, sizeof(m));
    m.header.msgtype = CHANNELMSG_OPENCHANNEL;
    m.child_relid = relid;
    m.openid = relid;
    m.ringbuffer_gpadlhandle = ch->gpadl;
    m.target_vp = ch->target_vp;
    m.downstream_ringbuffer_pageoffset = send_pages;
    t0 = sim_now_ns();
    st = sim_post_msg(vm, &m, sizeof(m));
    if (st != 0) {
        *status = st < 0 ? st : -EIO;
        goto teardown;
    }
    struct open_key k = {.relid = relid, .openid = relid};
    struct sim_qmsg r;
    uint64_t end = sim_now_ms() + SIM_TIMEOUT_MS;
    bool got = false;
    while (!got && sim_now_ms() < end) {
        got = sim_take_msg(vm, CHANNELMSG_OPENCHANNEL_RESULT, match_open_result, &k, &r);
        if (!got) {
            if (of->rescinded) {
                *status = -ENODEV;
                goto teardown;
            }
            sim_poll(vm, 50);
        }
    }
    ch->open_msg_ns = sim_now_ns() - t0;
    if (!got) {
        *status = -ETIMEDOUT;
        goto teardown;
    }
    struct vmbus_channel_open_result res;
    memcpy(&res, r.payload, sizeof(res));
    *status = (int)res.status;
    if (res.status != 0)
        goto teardown;
    ch->open = true;
    return ch;
teardown:
    sim_gpadl_teardown(vm, relid, ch->gpadl);
    ch->vm = NULL;
    return NULL;
}

int sim_chan_close(struct sim_chan *ch)
{
    struct sim_vm *vm = ch->vm;
    if (!ch->open)
        return -EINVAL;
    ch->open = false;
    struct vmbus_channel_relid_msg m = {.header.msgtype = CHANNELMSG_CLOSECHANNEL,
                                        .child_relid = ch->relid};
    int st = sim_post_msg(vm, &m, sizeof(m));
    if (st != 0)
        return st < 0 ? st : -EIO;
    struct sim_offer *of = sim_find_offer(vm, ch->relid);
    if (of && of->rescinded)
        return 0; /* Linux skips the teardown for a rescinded channel */
    return sim_gpadl_teardown(vm, ch->relid, ch->gpadl);
}

int sim_chan_modify(struct sim_vm *vm, uint32_t relid, uint32_t target_vp)
{
    struct vmbus_channel_modifychannel m = {.header.msgtype = CHANNELMSG_MODIFYCHANNEL,
                                            .child_relid = relid, .target_vp = target_vp};
    int st = sim_post_msg(vm, &m, sizeof(m));
    if (st != 0)
        return st < 0 ? st : -EIO;
    struct sim_chan *ch = sim_chan(vm, relid);
    if (vm->version < VMBUS_VERSION_WIN10_V5_3) {
        if (ch)
            ch->target_vp = target_vp;
        return 0;
    }
    struct sim_qmsg r;
    if (!sim_wait_msg(vm, CHANNELMSG_MODIFYCHANNEL_RESPONSE, match_relid8, &relid, &r,
                      SIM_TIMEOUT_MS))
        return -ETIMEDOUT;
    struct vmbus_channel_modifychannel_response resp;
    memcpy(&resp, r.payload, sizeof(resp));
    if (resp.status == 0 && ch)
        ch->target_vp = target_vp;
    return (int)resp.status;
}

int sim_relid_released(struct sim_vm *vm, uint32_t relid)
{
    struct vmbus_channel_relid_msg m = {.header.msgtype = CHANNELMSG_RELID_RELEASED,
                                        .child_relid = relid};
    int st = sim_post_msg(vm, &m, sizeof(m));
    struct sim_offer *of = sim_find_offer(vm, relid);
    if (of && of->rescinded)
        of->valid = false;
    struct sim_chan *ch = sim_chan(vm, relid);
    if (ch && !ch->open)
        ch->vm = NULL;
    return st;
}

int sim_release_subchannels(struct sim_vm *vm)
{
    int n = 0;
    for (int i = 0; i < vm->noffers; i++) {
        struct sim_offer *o = &vm->offers[i];
        if (!o->valid || !o->rescinded || o->sub_channel_index == 0)
            continue;
        struct sim_chan *ch = sim_chan(vm, o->relid);
        if (ch && ch->open)
            continue; /* released when its driver closes it */
        int st = sim_relid_released(vm, o->relid);
        if (st != 0)
            return st < 0 ? st : -EIO;
        n++;
    }
    return n;
}

/* ---- rings ---- */

static void copy_to_ring(struct sim_ring *r, uint32_t *pos, const void *src, uint32_t len)
{
    const uint8_t *s = src;
    while (len) {
        uint32_t n = r->size - *pos;
        if (n > len)
            n = len;
        memcpy(r->data + *pos, s, n);
        s += n;
        len -= n;
        *pos += n;
        if (*pos >= r->size)
            *pos -= r->size;
    }
}

static void copy_from_ring(const struct sim_ring *r, uint32_t pos, void *dst, uint32_t len)
{
    uint8_t *d = dst;
    while (len) {
        uint32_t n = r->size - pos;
        if (n > len)
            n = len;
        memcpy(d, r->data + pos, n);
        d += n;
        len -= n;
        pos += n;
        if (pos >= r->size)
            pos -= r->size;
    }
}

static uint32_t bytes_to_write(const struct sim_ring *r, uint32_t rd, uint32_t wr)
{
    return wr >= rd ? r->size - (wr - rd) : rd - wr;
}

/* vmbus_setevent */
static void chan_signal(struct sim_chan *ch)
{
    struct sim_vm *vm = ch->vm;
    struct sim_offer *of = sim_find_offer(vm, ch->relid);
    if (!of)
        return;
    uint32_t conn = of->connection_id;
    bool dedicated = of->is_dedicated_interrupt;
    if (vm->version == VMBUS_VERSION_WS2008) { /* FreeBSD: fixed event connection id */
        conn = VMBUS_EVENT_CONNECTION_ID;
        dedicated = false;
    }
    uint8_t *send_int = vm->mem + vm->int_page_off + HV_PAGE_SIZE / 2;
    if (of->monitor_allocated) {
        __atomic_fetch_or(&send_int[ch->relid / 8], (uint8_t)(1u << (ch->relid % 8)),
                          __ATOMIC_SEQ_CST);
        struct hv_monitor_page *mp = (void *)(vm->mem + vm->mon2_off);
        __atomic_fetch_or(&mp->trigger_group[(of->monitorid / 32) & 3].pending,
                          1u << (of->monitorid % 32), __ATOMIC_SEQ_CST);
        ch->signals_sent++;
        return;
    }
    if (!dedicated)
        __atomic_fetch_or(&send_int[ch->relid / 8], (uint8_t)(1u << (ch->relid % 8)),
                          __ATOMIC_SEQ_CST);
    ch->signals_sent++;
    sim_signal_event(vm, conn);
}

int sim_chan_send(struct sim_chan *ch, uint16_t type, uint16_t flags, uint64_t trans_id,
                  const void *payload, uint32_t len)
{
    return sim_chan_send_hdr(ch, type, flags, trans_id, NULL, 0, payload, len);
}

int sim_chan_send_hdr(struct sim_chan *ch, uint16_t type, uint16_t flags, uint64_t trans_id,
                      const void *hdr, uint32_t hdr_len, const void *payload, uint32_t len)
{
    struct sim_offer *of = sim_find_offer(ch->vm, ch->relid);
    if (!ch->open || (of && of->rescinded))
        return -ENODEV;
    if (hdr_len % 8)
        return -EINVAL;
    struct sim_ring *r = &ch->out;
    uint32_t padded = (len + 7) & ~7u;
    uint32_t pktlen = 16 + hdr_len + padded;
    if (pktlen / 8 > 0xffff || (16 + hdr_len) / 8 > 0xffff)
        return -EMSGSIZE;
    uint32_t total = pktlen + VMBUS_PKT_TRAILER_SIZE;
    if (total >= r->size)
        return -EMSGSIZE;
    uint32_t rd = __atomic_load_n(&r->hdr->read_index, __ATOMIC_ACQUIRE);
    uint32_t wr = r->hdr->write_index;
    if (rd >= r->size || wr >= r->size)
        return -EIO; /* we corrupted it ourselves in a test */
    if (bytes_to_write(r, rd, wr) <= total)
        return -EAGAIN;
    uint32_t old_write = wr, pos = wr;
    struct vmpacket_descriptor d = {.type = type, .offset8 = (uint16_t)((16 + hdr_len) / 8),
                                    .len8 = (uint16_t)(pktlen / 8), .flags = flags,
                                    .trans_id = trans_id};
    copy_to_ring(r, &pos, &d, sizeof(d));
    if (hdr_len)
        copy_to_ring(r, &pos, hdr, hdr_len);
    if (len)
        copy_to_ring(r, &pos, payload, len);
    static const uint8_t zeros[8];
    if (padded > len)
        copy_to_ring(r, &pos, zeros, padded - len);
    uint64_t trailer = (uint64_t)old_write << 32;
    copy_to_ring(r, &pos, &trailer, 8);
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    __atomic_store_n(&r->hdr->write_index, pos, __ATOMIC_RELEASE);
    /* hv_signal_on_write */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (__atomic_load_n(&r->hdr->interrupt_mask, __ATOMIC_ACQUIRE))
        return 0;
    if (old_write == __atomic_load_n(&r->hdr->read_index, __ATOMIC_ACQUIRE))
        chan_signal(ch);
    return 0;
}

int sim_chan_try_recv(struct sim_chan *ch, struct vmpacket_descriptor *desc, void *buf,
                      uint32_t buflen, uint32_t *len)
{
    struct sim_ring *r = &ch->in;
    if (!ch->open)
        return 0;
    /* hv_pkt_iter_first */
    uint32_t wr = __atomic_load_n(&r->hdr->write_index, __ATOMIC_ACQUIRE);
    uint32_t avail = wr >= r->priv_read ? wr - r->priv_read : r->size - r->priv_read + wr;
    if (wr >= r->size) /* Linux does not check; we would read out of bounds */
        avail = 0;
    if (avail < sizeof(struct vmpacket_descriptor))
        return 0;
    if (avail > r->max_pkt)
        avail = r->max_pkt;
    struct vmpacket_descriptor d;
    copy_from_ring(r, r->priv_read, &d, sizeof(d));
    uint32_t pkt_len = (uint32_t)d.len8 << 3, pkt_off = (uint32_t)d.offset8 << 3;
    if (pkt_len < sizeof(d) || pkt_len > avail)
        pkt_len = avail;
    if (pkt_off < sizeof(d) || pkt_off > pkt_len)
        pkt_off = sizeof(d);
    /* Linux copies into a buffer it allocated with the channel: no
     * allocation per packet for the usual small ones. */
    uint8_t small[512];
    uint8_t *copy = pkt_len <= sizeof(small) ? small : malloc(pkt_len);
    if (!copy)
        return 0;
    copy_from_ring(r, r->priv_read, copy, pkt_len);
    memcpy(&d, copy, sizeof(d));
    d.len8 = (uint16_t)(pkt_len >> 3);
    d.offset8 = (uint16_t)(pkt_off >> 3);
    if (desc)
        *desc = d;
    uint32_t from = ch->recv_whole ? 0 : pkt_off;
    uint32_t plen = pkt_len - from;
    if (len)
        *len = plen;
    if (buf)
        memcpy(buf, copy + from, plen < buflen ? plen : buflen);
    if (copy != small)
        free(copy);
    /* __hv_pkt_iter_next */
    uint32_t start_read = r->hdr->read_index;
    r->priv_read += pkt_len + VMBUS_PKT_TRAILER_SIZE;
    if (r->priv_read >= r->size)
        r->priv_read -= r->size;
    /* hv_pkt_iter_close */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    __atomic_store_n(&r->hdr->read_index, r->priv_read, __ATOMIC_RELEASE);
    if (!(r->hdr->feature_bits & VMBUS_RING_FEAT_PENDING_SEND_SZ))
        return 1;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    uint32_t pending = __atomic_load_n(&r->hdr->pending_send_sz, __ATOMIC_ACQUIRE);
    if (!pending)
        return 1;
    uint32_t wr2 = __atomic_load_n(&r->hdr->write_index, __ATOMIC_ACQUIRE);
    uint32_t curr_write_sz = bytes_to_write(r, r->priv_read, wr2 % r->size);
    uint32_t bytes_read = r->priv_read >= start_read ? r->priv_read - start_read
                                                     : r->size - start_read + r->priv_read;
    if (curr_write_sz - bytes_read > pending)
        return 1;
    if (curr_write_sz <= pending)
        return 1;
    chan_signal(ch);
    return 1;
}

void sim_chan_discard(struct sim_chan *ch)
{
    struct sim_ring *r = &ch->in;
    if (!ch->open)
        return;
    uint32_t wr = __atomic_load_n(&r->hdr->write_index, __ATOMIC_ACQUIRE);
    if (wr >= r->size || wr == r->priv_read)
        return;
    r->priv_read = wr;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    __atomic_store_n(&r->hdr->read_index, wr, __ATOMIC_RELEASE);
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    /* The whole ring is free now: more than any request can ask for. */
    if ((r->hdr->feature_bits & VMBUS_RING_FEAT_PENDING_SEND_SZ) &&
        __atomic_load_n(&r->hdr->pending_send_sz, __ATOMIC_ACQUIRE))
        chan_signal(ch);
}

int sim_chan_recv_batched(struct sim_chan *ch, struct vmpacket_descriptor *desc, void *buf,
                          uint32_t cap, uint32_t *len)
{
    __atomic_store_n(&ch->in.hdr->interrupt_mask, 1, __ATOMIC_SEQ_CST);
    int r = sim_chan_try_recv(ch, desc, buf, cap, len);
    if (r == 1)
        return 1;
    __atomic_store_n(&ch->in.hdr->interrupt_mask, 0, __ATOMIC_SEQ_CST);
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    r = sim_chan_try_recv(ch, desc, buf, cap, len);
    if (r == 1)
        __atomic_store_n(&ch->in.hdr->interrupt_mask, 1, __ATOMIC_SEQ_CST);
    return r;
}

bool sim_chan_wait_event(struct sim_chan *ch, uint64_t since, int timeout_ms)
{
    uint64_t end = sim_now_ms() + (uint64_t)timeout_ms;
    while (ch->events == since) {
        int64_t left = (int64_t)(end - sim_now_ms());
        if (left <= 0)
            return false;
        sim_poll(ch->vm, (int)(left < 50 ? left : 50));
    }
    return true;
}

int sim_chan_recv(struct sim_chan *ch, struct vmpacket_descriptor *desc, void *buf,
                  uint32_t buflen, uint32_t *len, int timeout_ms)
{
    /* the clock is read only once there is nothing to take (a guest
     * driver reads none per packet; the benchmarks count this one's CPU) */
    uint64_t end = 0;
    for (;;) {
        uint64_t ev = ch->events;
        /* batched mode: mask while draining, unmask and re-check */
        __atomic_store_n(&ch->in.hdr->interrupt_mask, 1, __ATOMIC_SEQ_CST);
        int r = sim_chan_try_recv(ch, desc, buf, buflen, len);
        __atomic_store_n(&ch->in.hdr->interrupt_mask, 0, __ATOMIC_SEQ_CST);
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        if (r)
            return r;
        r = sim_chan_try_recv(ch, desc, buf, buflen, len);
        if (r)
            return r;
        uint64_t now = sim_now_ms();
        if (!end)
            end = now + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0);
        if (now >= end || !ch->open)
            return 0;
        sim_chan_wait_event(ch, ev, (int)(end - now));
    }
}

/* ---- echo helpers ---- */

int sim_echo_roundtrip(struct sim_chan *ch, uint32_t len, uint64_t trans_id, bool want_comp)
{
    uint8_t *out = malloc(len + 8), *in = malloc(len + 64);
    if (!out || !in) {
        free(out);
        free(in);
        return -ENOMEM;
    }
    sim_fill_pattern(out, len, trans_id);
    int ret = 0;
    uint64_t end = sim_now_ms() + SIM_TIMEOUT_MS;
    int r;
    while ((r = sim_chan_send(ch, VM_PKT_DATA_INBAND,
                              want_comp ? VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED : 0,
                              trans_id, out, len)) == -EAGAIN &&
           sim_now_ms() < end)
        sim_poll(ch->vm, 10);
    if (r != 0) {
        fprintf(stderr, "sim(%s): echo send relid %u failed: %d\n", ch->vm->name, ch->relid, r);
        ret = r == -EAGAIN ? -ETIMEDOUT : r;
        goto out;
    }
    struct vmpacket_descriptor d;
    uint32_t got = 0;
    if (sim_chan_recv(ch, &d, in, len + 64, &got, SIM_TIMEOUT_MS) != 1) {
        fprintf(stderr, "sim(%s): no echo on relid %u (len %u)\n", ch->vm->name, ch->relid, len);
        ret = -ETIMEDOUT;
        goto out;
    }
    uint16_t want_type = want_comp ? VM_PKT_COMP : VM_PKT_DATA_INBAND;
    uint32_t padded = (len + 7) & ~7u;
    if (d.type != want_type || d.trans_id != trans_id || got < len || got > padded ||
        memcmp(in, out, len) != 0) {
        fprintf(stderr,
                "sim(%s): bad echo relid %u: type %u (want %u) trans %llu (want %llu) "
                "len %u (want %u..%u) data %s\n",
                ch->vm->name, ch->relid, d.type, want_type, (unsigned long long)d.trans_id,
                (unsigned long long)trans_id, got, len, padded,
                got >= len && memcmp(in, out, len) == 0 ? "ok" : "differs");
        ret = -1;
    }
out:
    free(out);
    free(in);
    return ret;
}

int sim_echo_stream(struct sim_chan *ch, uint32_t n, uint32_t len, bool want_comp)
{
    uint8_t *out = malloc(len + 8), *in = malloc(len + 64), *exp = malloc(len + 8);
    int ret = 0;
    if (!out || !in || !exp) {
        ret = -ENOMEM;
        goto done;
    }
    uint32_t sent = 0, recvd = 0;
    uint64_t deadline = sim_now_ms() + 4 * SIM_TIMEOUT_MS;
    uint32_t need = 16 + ((len + 7) & ~7u) + 8;
    while (recvd < n) {
        bool progress = false;
        uint64_t ev = ch->events;
        while (sent < n) {
            uint64_t tid = 1000000 + sent;
            sim_fill_pattern(out, len, tid);
            int r = sim_chan_send(ch, VM_PKT_DATA_INBAND,
                                  want_comp ? VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED : 0,
                                  tid, out, len);
            if (r == -EAGAIN) {
                /* ask the host to signal when there is room (hv_sock style) */
                __atomic_store_n(&ch->out.hdr->pending_send_sz, need, __ATOMIC_SEQ_CST);
                break;
            }
            if (r != 0) {
                ret = r;
                goto done;
            }
            __atomic_store_n(&ch->out.hdr->pending_send_sz, 0, __ATOMIC_SEQ_CST);
            sent++;
            progress = true;
        }
        struct vmpacket_descriptor d;
        uint32_t got;
        while (sim_chan_recv_batched(ch, &d, in, len + 64, &got) == 1) {
            uint64_t tid = 1000000 + recvd;
            sim_fill_pattern(exp, len, tid);
            uint16_t want_type = want_comp ? VM_PKT_COMP : VM_PKT_DATA_INBAND;
            if (d.type != want_type || d.trans_id != tid || got < len ||
                memcmp(in, exp, len) != 0) {
                fprintf(stderr,
                        "sim(%s): stream relid %u pkt %u: type %u trans %llu (want %llu) "
                        "len %u\n",
                        ch->vm->name, ch->relid, recvd, d.type, (unsigned long long)d.trans_id,
                        (unsigned long long)tid, got);
                ret = -1;
                goto done;
            }
            recvd++;
            progress = true;
        }
        if (!progress) {
            if (sim_now_ms() > deadline ||
                !sim_chan_wait_event(ch, ev, (int)(deadline - sim_now_ms()))) {
                fprintf(stderr, "sim(%s): stream relid %u stalled: sent %u recvd %u of %u\n",
                        ch->vm->name, ch->relid, sent, recvd, n);
                ret = -ETIMEDOUT;
                goto done;
            }
        }
    }
done:
    if (ch->out.hdr)
        __atomic_store_n(&ch->out.hdr->pending_send_sz, 0, __ATOMIC_SEQ_CST);
    free(out);
    free(in);
    free(exp);
    return ret;
}

int sim_healthy_cycle(struct sim_daemon *d, const char *vm_name, uint32_t version)
{
    int ret = -1;
    struct sim_vm *vm = sim_vm_create(d, vm_name);
    if (!vm) {
        fprintf(stderr, "healthy(%s): cannot create VM\n", vm_name);
        return -1;
    }
    int n = sim_bringup(vm, version);
    if (n <= 0) {
        fprintf(stderr, "healthy(%s): bringup -> %d\n", vm_name, n);
        goto out;
    }
    struct sim_offer *of = sim_offer_by_class(vm, sim_echo_class(), 0);
    if (!of) {
        fprintf(stderr, "healthy(%s): no echo offer\n", vm_name);
        goto out;
    }
    int st;
    struct sim_chan *ch = sim_chan_open(vm, of->relid, 4, 4, &st);
    if (!ch) {
        fprintf(stderr, "healthy(%s): open relid %u -> %d\n", vm_name, of->relid, st);
        goto out;
    }
    if (sim_echo_roundtrip(ch, 64, 7, true) != 0 || sim_echo_roundtrip(ch, 200, 8, false) != 0)
        goto out;
    if (sim_chan_close(ch) != 0) {
        fprintf(stderr, "healthy(%s): close failed\n", vm_name);
        goto out;
    }
    if (vm->version >= VMBUS_VERSION_WIN8_1 && sim_unload(vm) != 0) {
        fprintf(stderr, "healthy(%s): unload failed\n", vm_name);
        goto out;
    }
    if (vm->bad_host_msgs) {
        fprintf(stderr, "healthy(%s): %llu malformed host messages\n", vm_name,
                (unsigned long long)vm->bad_host_msgs);
        goto out;
    }
    ret = 0;
out:
    sim_vm_free(vm);
    return ret;
}
