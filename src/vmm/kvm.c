/* SPDX-License-Identifier: MIT */
/*
 * The KVM side: open /dev/kvm and check what we need, create the VM
 * (in-kernel irqchip + PIT, RAM slots), create vCPUs, and run one thread per
 * vCPU.  vCPU threads report poweroff/reboot/panic to the main thread with
 * vm_post_event(); vm_stop_vcpus() kicks them out of KVM_RUN with a signal.
 */
#include "vmm/vmm.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/log.h"

#define VCPU_KICK_SIGNAL SIGUSR1

static void kick_handler(int sig)
{
    (void)sig;
}

int kvm_open_checked(struct vm *vm)
{
    int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        if (e == ENOENT)
            log_err("/dev/kvm does not exist: load kvm-intel or kvm-amd (modprobe kvm_amd / "
                    "kvm_intel), enable virtualization in the firmware, or run inside the "
                    "nested harness tests/e2e/nested-run");
        else
            log_err("cannot open /dev/kvm: %s%s", strerror(e),
                    e == EACCES ? " (add this user to the 'kvm' group or run as root)" : "");
        return -1;
    }
    int api = ioctl(fd, KVM_GET_API_VERSION, 0);
    if (api != KVM_API_VERSION) {
        log_err("/dev/kvm speaks KVM API %d, need %d", api, KVM_API_VERSION);
        close(fd);
        return -1;
    }
    static const struct { int cap; const char *name; } basic[] = {
        {KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP"},
        {KVM_CAP_PIT2, "KVM_CAP_PIT2"},
        {KVM_CAP_IRQ_ROUTING, "KVM_CAP_IRQ_ROUTING"},
        {KVM_CAP_IRQFD, "KVM_CAP_IRQFD"},
        {KVM_CAP_IRQFD_RESAMPLE, "KVM_CAP_IRQFD_RESAMPLE"},
        {KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID"},
        {KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY"},
    };
    for (size_t i = 0; i < sizeof(basic) / sizeof(basic[0]); i++) {
        if (ioctl(fd, KVM_CHECK_EXTENSION, basic[i].cap) <= 0) {
            log_err("/dev/kvm lacks %s; vmbus-vmm needs a full x86 KVM (kvm-intel or kvm-amd)",
                    basic[i].name);
            close(fd);
            return -1;
        }
    }
    if (hv_check_caps(fd) < 0) {
        close(fd);
        return -1;
    }
    hv_check_host_clock("/sys/devices/system/clocksource/clocksource0/current_clocksource");
    int sz = ioctl(fd, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (sz <= 0) {
        log_err("KVM_GET_VCPU_MMAP_SIZE: %s", strerror(errno));
        close(fd);
        return -1;
    }
    vm->kvm_fd = fd;
    vm->run_size = sz;
    return 0;
}

static int set_lapic_lints(struct vcpu *vc)
{
    struct kvm_lapic_state la;
    if (ioctl(vc->fd, KVM_GET_LAPIC, &la) < 0)
        return -1;
    uint32_t lint0, lint1;
    memcpy(&lint0, la.regs + 0x350, 4);
    memcpy(&lint1, la.regs + 0x360, 4);
    lint0 = (lint0 & ~0x700u) | 0x700u; /* ExtINT */
    lint1 = (lint1 & ~0x700u) | 0x400u; /* NMI */
    memcpy(la.regs + 0x350, &lint0, 4);
    memcpy(la.regs + 0x360, &lint1, 4);
    return ioctl(vc->fd, KVM_SET_LAPIC, &la);
}

int vm_create(struct vm *vm)
{
    vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
    if (vm->vm_fd < 0) {
        log_err("KVM_CREATE_VM: %s", strerror(errno));
        return -1;
    }
    fcntl(vm->vm_fd, F_SETFD, FD_CLOEXEC);
    if (ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, 0xfffbd000ul) < 0)
        log_debug("KVM_SET_TSS_ADDR: %s", strerror(errno));
    uint64_t idmap = 0xfffbc000ull;
    if (ioctl(vm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &idmap) < 0)
        log_debug("KVM_SET_IDENTITY_MAP_ADDR: %s", strerror(errno));
    if (ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0) {
        log_err("KVM_CREATE_IRQCHIP: %s", strerror(errno));
        return -1;
    }
    struct kvm_pit_config pit = {.flags = KVM_PIT_SPEAKER_DUMMY};
    if (ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit) < 0) {
        log_err("KVM_CREATE_PIT2: %s", strerror(errno));
        return -1;
    }
    for (int i = 0; i < vm->mem.nregions; i++) {
        const struct mem_region *r = &vm->mem.regions[i];
        struct kvm_userspace_memory_region ur = {
            .slot = (uint32_t)i,
            .guest_phys_addr = r->gpa,
            .memory_size = r->size,
            .userspace_addr = (uint64_t)(uintptr_t)(vm->mem.host + r->fd_offset),
        };
        if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &ur) < 0) {
            log_err("KVM_SET_USER_MEMORY_REGION %d: %s", i, strerror(errno));
            return -1;
        }
    }
    log_debug("VM created; %d RAM slot(s) mapped", vm->mem.nregions);
    for (int i = 0; i < vm->ncpus; i++) {
        struct vcpu *vc = &vm->vcpus[i];
        vc->vm = vm;
        vc->index = i;
        vc->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, (unsigned long)i);
        if (vc->fd < 0) {
            log_err("KVM_CREATE_VCPU %d: %s", i, strerror(errno));
            return -1;
        }
        fcntl(vc->fd, F_SETFD, FD_CLOEXEC);
        vc->run = mmap(NULL, (size_t)vm->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vc->fd, 0);
        if (vc->run == MAP_FAILED) {
            vc->run = NULL;
            log_err("mmap kvm_run: %s", strerror(errno));
            return -1;
        }
        if (hv_vcpu_setup(vm, vc) < 0)
            return -1;
        if (set_lapic_lints(vc) < 0)
            log_warn("vCPU %d: could not program LAPIC LINT0/LINT1: %s", i, strerror(errno));
    }
    return 0;
}

void vm_destroy(struct vm *vm)
{
    for (int i = 0; i < vm->ncpus; i++) {
        struct vcpu *vc = &vm->vcpus[i];
        if (vc->run)
            munmap(vc->run, (size_t)vm->run_size);
        if (vc->fd >= 0)
            close(vc->fd);
        vc->run = NULL;
        vc->fd = -1;
    }
    if (vm->vm_fd >= 0)
        close(vm->vm_fd);
    vm->vm_fd = -1;
}

int vm_irq_line(struct vm *vm, int irq, int level)
{
    struct kvm_irq_level l = {.irq = (uint32_t)irq, .level = (uint32_t)level};
    return ioctl(vm->vm_fd, KVM_IRQ_LINE, &l);
}

void vm_post_event(struct vm *vm, enum vm_event ev)
{
    pthread_mutex_lock(&vm->lock);
    if (vm->event == VM_EV_NONE)
        vm->event = ev;
    vm->stopping = true;
    pthread_cond_broadcast(&vm->cond);
    pthread_mutex_unlock(&vm->lock);
}

/* VM_EV_REBOOT like vm_post_event, remembering which vCPU triple-faulted so
 * that the main thread logs the vCPUs' state before resetting the VM. */
static void post_triple_fault(struct vcpu *vc)
{
    struct vm *vm = vc->vm;
    pthread_mutex_lock(&vm->lock);
    if (vm->event == VM_EV_NONE) {
        vm->event = VM_EV_REBOOT;
        vm->triple_fault_vcpu = vc->index;
    }
    vm->stopping = true;
    pthread_cond_broadcast(&vm->cond);
    pthread_mutex_unlock(&vm->lock);
}

static const char *exit_name(uint32_t r)
{
    switch (r) {
    case KVM_EXIT_UNKNOWN: return "UNKNOWN";
    case KVM_EXIT_EXCEPTION: return "EXCEPTION";
    case KVM_EXIT_HLT: return "HLT";
    case KVM_EXIT_MMIO: return "MMIO";
    case KVM_EXIT_FAIL_ENTRY: return "FAIL_ENTRY";
    case KVM_EXIT_INTERNAL_ERROR: return "INTERNAL_ERROR";
    default: return "?";
    }
}

static void dump_regs(struct vcpu *vc)
{
    struct kvm_regs r;
    struct kvm_sregs s;
    if (ioctl(vc->fd, KVM_GET_REGS, &r) == 0 && ioctl(vc->fd, KVM_GET_SREGS, &s) == 0)
        log_err("vCPU %d: rip=%#llx rsp=%#llx cr0=%#llx cr3=%#llx cr4=%#llx efer=%#llx", vc->index,
                (unsigned long long)r.rip, (unsigned long long)r.rsp,
                (unsigned long long)s.cr0, (unsigned long long)s.cr3,
                (unsigned long long)s.cr4, (unsigned long long)s.efer);
}

void vm_dump_vcpus(struct vm *vm)
{
    for (int i = 0; i < vm->ncpus; i++) {
        struct vcpu *vc = &vm->vcpus[i];
        struct kvm_regs r;
        struct kvm_sregs s;
        struct kvm_mp_state mp = {0};
        if (vc->fd < 0 || ioctl(vc->fd, KVM_GET_REGS, &r) < 0 || ioctl(vc->fd, KVM_GET_SREGS, &s) < 0)
            continue;
        ioctl(vc->fd, KVM_GET_MP_STATE, &mp);
        log_info("vCPU %d stopped at rip=%#llx rsp=%#llx rflags=%#llx cr3=%#llx mp_state=%u", i,
                 (unsigned long long)r.rip, (unsigned long long)r.rsp,
                 (unsigned long long)r.rflags, (unsigned long long)s.cr3, mp.mp_state);
        log_info("vCPU %d: cr0=%#llx cr2=%#llx cr4=%#llx efer=%#llx cs=%#x idt=%#llx/%#x "
                 "gs.base=%#llx tr.base=%#llx", i, (unsigned long long)s.cr0,
                 (unsigned long long)s.cr2, (unsigned long long)s.cr4,
                 (unsigned long long)s.efer, s.cs.selector, (unsigned long long)s.idt.base,
                 s.idt.limit, (unsigned long long)s.gs.base, (unsigned long long)s.tr.base);
    }
}

static void *vcpu_thread(void *arg)
{
    struct vcpu *vc = arg;
    struct vm *vm = vc->vm;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, VCPU_KICK_SIGNAL);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);

    while (!vm->stopping) {
        int r = ioctl(vc->fd, KVM_RUN, 0);
        if (r < 0) {
            if (errno == EINTR || errno == EAGAIN) {
                vc->run->immediate_exit = 0;
                continue;
            }
            log_err("vCPU %d: KVM_RUN: %s", vc->index, strerror(errno));
            vm_post_event(vm, VM_EV_ERROR);
            break;
        }
        struct kvm_run *run = vc->run;
        switch (run->exit_reason) {
        case KVM_EXIT_IO:
            pio_handle(vc);
            break;
        case KVM_EXIT_MMIO:
            /* Nothing is mapped there: reads see all ones, writes vanish. */
            if (!run->mmio.is_write)
                memset(run->mmio.data, 0xff, sizeof(run->mmio.data));
            break;
        case KVM_EXIT_HYPERV:
            if (hv_handle_exit(vc) < 0)
                vm_post_event(vm, VM_EV_ERROR);
            break;
        case KVM_EXIT_SHUTDOWN:
            log_info("vCPU %d: triple fault / shutdown: treating as reboot", vc->index);
            post_triple_fault(vc);
            break;
        case KVM_EXIT_SYSTEM_EVENT:
            switch (run->system_event.type) {
            case KVM_SYSTEM_EVENT_CRASH:
                log_err("guest kernel panicked (Hyper-V crash notification from vCPU %d)",
                        vc->index);
                vm_post_event(vm, VM_EV_PANIC);
                break;
            case KVM_SYSTEM_EVENT_RESET:
                log_info("guest requested reset (vCPU %d)", vc->index);
                vm_post_event(vm, VM_EV_REBOOT);
                break;
            case KVM_SYSTEM_EVENT_SHUTDOWN:
                log_info("guest requested shutdown (vCPU %d)", vc->index);
                vm_post_event(vm, VM_EV_POWEROFF);
                break;
            default:
                log_warn("vCPU %d: system event %u ignored", vc->index, run->system_event.type);
                break;
            }
            break;
        case KVM_EXIT_INTR:
            break;
        case KVM_EXIT_FAIL_ENTRY:
            log_err("vCPU %d: KVM entry failed, hardware reason %#llx", vc->index,
                    (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
            dump_regs(vc);
            vm_post_event(vm, VM_EV_ERROR);
            break;
        case KVM_EXIT_INTERNAL_ERROR:
            log_err("vCPU %d: KVM internal error, suberror %u", vc->index, run->internal.suberror);
            dump_regs(vc);
            vm_post_event(vm, VM_EV_ERROR);
            break;
        default:
            log_err("vCPU %d: unexpected exit %u (%s)", vc->index, run->exit_reason,
                    exit_name(run->exit_reason));
            dump_regs(vc);
            vm_post_event(vm, VM_EV_ERROR);
            break;
        }
    }
    return NULL;
}

int vm_start_vcpus(struct vm *vm)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = kick_handler;
    sigaction(VCPU_KICK_SIGNAL, &sa, NULL);
    vm->stopping = false;
    vm->event = VM_EV_NONE;
    vm->triple_fault_vcpu = -1;
    for (int i = 0; i < vm->ncpus; i++) {
        struct vcpu *vc = &vm->vcpus[i];
        if (pthread_create(&vc->thread, NULL, vcpu_thread, vc) != 0) {
            log_err("cannot start vCPU thread %d", i);
            return -1;
        }
        vc->thread_started = true;
        char nm[16];
        snprintf(nm, sizeof(nm), "vcpu%d", i);
        pthread_setname_np(vc->thread, nm);
    }
    return 0;
}

void vm_stop_vcpus(struct vm *vm)
{
    pthread_mutex_lock(&vm->lock);
    vm->stopping = true;
    pthread_cond_broadcast(&vm->cond);
    pthread_mutex_unlock(&vm->lock);
    for (int i = 0; i < vm->ncpus; i++) {
        struct vcpu *vc = &vm->vcpus[i];
        if (!vc->thread_started)
            continue;
        if (vc->run)
            vc->run->immediate_exit = 1;
        pthread_kill(vc->thread, VCPU_KICK_SIGNAL);
    }
    for (int i = 0; i < vm->ncpus; i++) {
        struct vcpu *vc = &vm->vcpus[i];
        if (!vc->thread_started)
            continue;
        /* A vCPU may sit in KVM_RUN again if the signal raced with entry: keep kicking. */
        for (;;) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 50 * 1000 * 1000;
            if (ts.tv_nsec >= 1000000000) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000;
            }
            if (pthread_timedjoin_np(vc->thread, NULL, &ts) == 0)
                break;
            if (vc->run)
                vc->run->immediate_exit = 1;
            pthread_kill(vc->thread, VCPU_KICK_SIGNAL);
        }
        vc->thread_started = false;
    }
}
