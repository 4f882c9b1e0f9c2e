/* SPDX-License-Identifier: MIT */
/*
 * Hyper-V enlightenments through KVM's own Hyper-V emulation:
 *  - CPUID: the host's supported leaves minus KVM's paravirt leaves (a KVM
 *    signature would make Linux prefer KVM over Hyper-V), plus the Hyper-V
 *    leaves from KVM_GET_SUPPORTED_HV_CPUID under the "Microsoft Hv" vendor,
 *    with synthetic timers and debugging hidden (stimer messages would land
 *    in the VMBus SINT slot that vmbusd owns).
 *  - SynIC (KVM_CAP_HYPERV_SYNIC2) on every vCPU; VP index = vCPU index.
 *  - GSI routing: the default PIC/IOAPIC routes plus one HV_SINT route per VP
 *    for SINT 2, each with an irqfd and a resample (EOM/EOI) eventfd.
 *  - KVM_EXIT_HYPERV: SynIC MSR writes and HvPostMessage/HvSignalEvent go to
 *    vmbusd; anything else is refused.
 */
#include "vmm/vmm.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "common/log.h"
#include "vmbusd/hv_wire.h"

#define HV_CPUID_VENDOR     0x40000000u
#define HV_CPUID_INTERFACE  0x40000001u
#define HV_CPUID_VERSION    0x40000002u
#define HV_CPUID_FEATURES   0x40000003u
#define HV_CPUID_ENLIGHT    0x40000004u
#define HV_CPUID_LIMITS     0x40000005u
#define HV_CPUID_LAST       HV_CPUID_LIMITS

/* 0x40000003 EAX */
#define HV_F_SYNTIMER           (1u << 3)
#define HV_F_HYPERCALL          (1u << 5)
#define HV_F_VP_INDEX           (1u << 6)
#define HV_F_REENLIGHTENMENT    (1u << 13)
/* 0x40000003 EBX */
#define HV_F_CPU_MANAGEMENT     (1u << 12)
#define HV_F_DEBUGGING          (1u << 11)
/* 0x40000003 EDX */
#define HV_F_XMM_INPUT          (1u << 4)
#define HV_F_GUEST_DEBUGGING    (1u << 1)
#define HV_F_DEBUG_MSRS         (1u << 11)
#define HV_F_STIMER_DIRECT      (1u << 19)
/* 0x40000004 EAX */
#define HV_H_DEPRECATING_AEOI   (1u << 9)
#define HV_H_ENLIGHTENED_VMCS   (1u << 14)

#define HV_X64_MSR_SCONTROL 0x40000080u
#define HV_X64_MSR_SIEFP    0x40000082u
#define HV_X64_MSR_SIMP     0x40000083u

#define HV_HYPERCALL_FAST_BIT (1ull << 16)
#define HV_HYPERCALL_REP_MASK (0xfffull << 32)

#define SINT_GSI_BASE 24 /* after the IOAPIC's 24 pins */

int hv_check_caps(int kvm_fd)
{
    static const struct { int cap; const char *name; } need[] = {
        {KVM_CAP_HYPERV, "KVM_CAP_HYPERV"},
        {KVM_CAP_HYPERV_SYNIC2, "KVM_CAP_HYPERV_SYNIC2"},
        {KVM_CAP_HYPERV_VP_INDEX, "KVM_CAP_HYPERV_VP_INDEX"},
        {KVM_CAP_HYPERV_EVENTFD, "KVM_CAP_HYPERV_EVENTFD"},
        {KVM_CAP_SYS_HYPERV_CPUID, "KVM_CAP_SYS_HYPERV_CPUID"},
        {KVM_CAP_HYPERV_TIME, "KVM_CAP_HYPERV_TIME"},
    };
    char missing[256] = "";
    for (size_t i = 0; i < sizeof(need) / sizeof(need[0]); i++) {
        if (ioctl(kvm_fd, KVM_CHECK_EXTENSION, need[i].cap) <= 0) {
            if (missing[0])
                strncat(missing, ", ", sizeof(missing) - strlen(missing) - 1);
            strncat(missing, need[i].name, sizeof(missing) - strlen(missing) - 1);
        }
    }
    if (missing[0]) {
        log_err("this KVM has no Hyper-V support (missing %s): vmbus-vmm needs KVM's "
                "Hyper-V emulation (SynIC, Hyper-V eventfds, Hyper-V CPUID). Use a stock "
                "kvm-intel/kvm-amd host, or run inside the nested harness: "
                "tests/e2e/nested-run -- vmbus-vmm ...", missing);
        return -1;
    }
    return 0;
}

static struct kvm_cpuid2 *alloc_cpuid(int n)
{
    struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + (size_t)n * sizeof(struct kvm_cpuid_entry2));
    if (c)
        c->nent = (uint32_t)n;
    return c;
}

/* Whether the host's KVM runs guests with APICv (Intel) or AVIC (AMD):
 * the modules clear these parameters when the hardware lacks it. */
static bool host_apicv(void)
{
    static const char *const params[] = {"/sys/module/kvm_intel/parameters/enable_apicv",
                                         "/sys/module/kvm_amd/parameters/avic"};
    for (size_t i = 0; i < sizeof(params) / sizeof(params[0]); i++) {
        FILE *f = fopen(params[i], "re");
        if (!f)
            continue;
        int c = fgetc(f);
        fclose(f);
        if (c == 'Y' || c == '1')
            return true;
    }
    return false;
}

/* Auto-EOI for SINT 2 or not.  KVM's SynIC keeps every SINT vector in the
 * set whose EOI it must see (the ack is how vmbusd learns of the guest's
 * EOM), so without auto-EOI each VMBus interrupt costs the guest an EOI
 * write that exits, and paravirtual EOI never applies to it.  With
 * auto-EOI KVM acks at injection.  KVM nevertheless recommends against
 * auto-EOI, because a guest that uses it turns APICv/AVIC off for the whole
 * VM; where the host has neither, that costs nothing. */
static bool want_aeoi(enum hv_aeoi mode)
{
    bool apicv = host_apicv();
    bool on = mode == HV_AEOI_ON || (mode == HV_AEOI_AUTO && !apicv);
    log_info("VMBus interrupts: %s (%s, host APICv/AVIC %s)",
             on ? "auto-EOI" : "EOI written by the guest", mode == HV_AEOI_AUTO ? "--aeoi auto" :
             mode == HV_AEOI_ON ? "--aeoi on" : "--aeoi off", apicv ? "on" : "off");
    return on;
}

struct kvm_cpuid2 *hv_build_cpuid(int kvm_fd, int ncpus, enum hv_aeoi aeoi)
{
    struct kvm_cpuid2 *std = alloc_cpuid(256);
    struct kvm_cpuid2 *hv = alloc_cpuid(64);
    struct kvm_cpuid2 *out = alloc_cpuid(256 + 64);
    if (!std || !hv || !out)
        goto fail;
    if (ioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, std) < 0) {
        log_err("KVM_GET_SUPPORTED_CPUID: %s", strerror(errno));
        goto fail;
    }
    if (ioctl(kvm_fd, KVM_GET_SUPPORTED_HV_CPUID, hv) < 0) {
        log_err("KVM_GET_SUPPORTED_HV_CPUID: %s", strerror(errno));
        goto fail;
    }
    uint32_t n = 0;
    for (uint32_t i = 0; i < std->nent; i++) {
        struct kvm_cpuid_entry2 e = std->entries[i];
        if (e.function >= 0x40000000u && e.function < 0x50000000u)
            continue; /* KVM's own paravirt leaves: must not be visible */
        if (e.function == 1)
            e.ecx |= 1u << 31; /* hypervisor present */
        if (e.function == 0x80000001u)
            e.ecx &= ~(1u << 2); /* no nested SVM for the guest */
        if (e.function == 1)
            e.ecx &= ~(1u << 5); /* no nested VMX either */
        out->entries[n++] = e;
    }
    uint32_t have_features = 0;
    for (uint32_t i = 0; i < hv->nent; i++) {
        struct kvm_cpuid_entry2 e = hv->entries[i];
        if (e.function > HV_CPUID_LAST)
            continue; /* syndbg, nested features: not for this guest */
        switch (e.function) {
        case HV_CPUID_VENDOR:
            e.eax = HV_CPUID_LAST;
            memcpy(&e.ebx, "Micr", 4);
            memcpy(&e.ecx, "osof", 4);
            memcpy(&e.edx, "t Hv", 4);
            break;
        case HV_CPUID_FEATURES:
            e.eax &= ~(HV_F_SYNTIMER | HV_F_REENLIGHTENMENT);
            e.eax |= HV_F_HYPERCALL | HV_F_VP_INDEX;
            e.ebx &= ~(HV_F_CPU_MANAGEMENT | HV_F_DEBUGGING);
            e.edx &= ~(HV_F_STIMER_DIRECT | HV_F_GUEST_DEBUGGING | HV_F_DEBUG_MSRS |
                       HV_F_XMM_INPUT);
            have_features = e.eax;
            break;
        case HV_CPUID_ENLIGHT:
            e.eax &= ~HV_H_ENLIGHTENED_VMCS;
            if (want_aeoi(aeoi))
                e.eax &= ~HV_H_DEPRECATING_AEOI;
            else
                e.eax |= HV_H_DEPRECATING_AEOI;
            break;
        case HV_CPUID_LIMITS:
            e.eax = (uint32_t)ncpus;
            break;
        default:
            break;
        }
        out->entries[n++] = e;
    }
    if (!(have_features & HV_F_HYPERCALL)) {
        log_err("KVM_GET_SUPPORTED_HV_CPUID returned no Hyper-V feature leaf");
        goto fail;
    }
    out->nent = n;
    free(std);
    free(hv);
    return out;
fail:
    free(std);
    free(hv);
    free(out);
    return NULL;
}

int hv_vcpu_setup(struct vm *vm, struct vcpu *vc)
{
    uint32_t n = vm->cpuid->nent;
    struct kvm_cpuid2 *c = alloc_cpuid((int)n);
    if (!c)
        return -1;
    memcpy(c->entries, vm->cpuid->entries, n * sizeof(c->entries[0]));
    for (uint32_t i = 0; i < n; i++) {
        struct kvm_cpuid_entry2 *e = &c->entries[i];
        if (e->function == 1)
            e->ebx = (e->ebx & 0x00ffffffu) | ((uint32_t)vc->index << 24);
        if (e->function == 0xb || e->function == 0x1f)
            e->edx = (uint32_t)vc->index;
    }
    int r = ioctl(vc->fd, KVM_SET_CPUID2, c);
    free(c);
    if (r < 0) {
        log_err("vCPU %d: KVM_SET_CPUID2: %s", vc->index, strerror(errno));
        return -1;
    }
    struct kvm_enable_cap cap = {.cap = KVM_CAP_HYPERV_SYNIC2};
    if (ioctl(vc->fd, KVM_ENABLE_CAP, &cap) < 0) {
        log_err("vCPU %d: enabling KVM_CAP_HYPERV_SYNIC2: %s", vc->index, strerror(errno));
        return -1;
    }
    return 0;
}

int hv_setup_sint_routes(struct vm *vm)
{
    int nroutes = 24 + 16 + vm->ncpus; /* IOAPIC pins, PIC pins, SINTs */
    struct kvm_irq_routing *rt =
        calloc(1, sizeof(*rt) + (size_t)nroutes * sizeof(struct kvm_irq_routing_entry));
    if (!rt)
        return -1;
    int n = 0;
    for (uint32_t gsi = 0; gsi < 24; gsi++) {
        struct kvm_irq_routing_entry *e = &rt->entries[n++];
        e->gsi = gsi;
        e->type = KVM_IRQ_ROUTING_IRQCHIP;
        e->u.irqchip.irqchip = KVM_IRQCHIP_IOAPIC;
        e->u.irqchip.pin = gsi;
        if (gsi < 16) {
            e = &rt->entries[n++];
            e->gsi = gsi;
            e->type = KVM_IRQ_ROUTING_IRQCHIP;
            e->u.irqchip.irqchip = gsi < 8 ? KVM_IRQCHIP_PIC_MASTER : KVM_IRQCHIP_PIC_SLAVE;
            e->u.irqchip.pin = gsi % 8;
        }
    }
    for (int i = 0; i < vm->ncpus; i++) {
        struct kvm_irq_routing_entry *e = &rt->entries[n++];
        e->gsi = SINT_GSI_BASE + (uint32_t)i;
        e->type = KVM_IRQ_ROUTING_HV_SINT;
        e->u.hv_sint.vcpu = (uint32_t)i; /* VP index */
        e->u.hv_sint.sint = VMBUS_MESSAGE_SINT;
        vm->vcpus[i].sint_gsi = SINT_GSI_BASE + i;
    }
    rt->nr = (uint32_t)n;
    int r = ioctl(vm->vm_fd, KVM_SET_GSI_ROUTING, rt);
    free(rt);
    if (r < 0) {
        log_err("KVM_SET_GSI_ROUTING: %s", strerror(errno));
        return -1;
    }
    for (int i = 0; i < vm->ncpus; i++) {
        struct vcpu *vc = &vm->vcpus[i];
        if (vc->sint_irqfd < 0) {
            vc->sint_irqfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
            vc->sint_resamplefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
            if (vc->sint_irqfd < 0 || vc->sint_resamplefd < 0) {
                log_err("eventfd: %s", strerror(errno));
                return -1;
            }
        }
        struct kvm_irqfd irqfd = {
            .fd = (uint32_t)vc->sint_irqfd,
            .gsi = (uint32_t)vc->sint_gsi,
            .flags = KVM_IRQFD_FLAG_RESAMPLE,
            .resamplefd = (uint32_t)vc->sint_resamplefd,
        };
        if (ioctl(vm->vm_fd, KVM_IRQFD, &irqfd) < 0) {
            log_err("vCPU %d: KVM_IRQFD for SINT%d: %s", i, VMBUS_MESSAGE_SINT, strerror(errno));
            return -1;
        }
    }
    log_debug("SINT%d routed for %d VP(s) at GSI %d..%d", VMBUS_MESSAGE_SINT, vm->ncpus,
              SINT_GSI_BASE, SINT_GSI_BASE + vm->ncpus - 1);
    return 0;
}

static uint32_t hcall_post_message(struct vcpu *vc, uint64_t control, uint64_t in_gpa)
{
    if (control & HV_HYPERCALL_FAST_BIT)
        return HV_STATUS_INVALID_HYPERCALL_INPUT;
    if (in_gpa & 7)
        return HV_STATUS_INVALID_ALIGNMENT;
    const struct hv_post_message_input *in =
        mem_gpa(&vc->vm->mem, in_gpa, sizeof(struct hv_post_message_input));
    if (!in)
        return HV_STATUS_INVALID_PARAMETER;
    struct hv_post_message_input copy;
    memcpy(&copy, in, sizeof(copy)); /* one snapshot: the guest may change the page */
    if (copy.payload_size > HV_MESSAGE_PAYLOAD_SIZE)
        return HV_STATUS_INVALID_PARAMETER;
    if (copy.message_type == 0 || (copy.message_type & 0x80000000u))
        return HV_STATUS_INVALID_PARAMETER;
    return vmbus_post_message(vc, &copy);
}

static uint32_t hcall_signal_event(struct vcpu *vc, uint64_t control, uint64_t param)
{
    uint64_t v = param;
    if (!(control & HV_HYPERCALL_FAST_BIT)) {
        if (param & 7)
            return HV_STATUS_INVALID_ALIGNMENT;
        const uint64_t *p = mem_gpa(&vc->vm->mem, param, 8);
        if (!p)
            return HV_STATUS_INVALID_PARAMETER;
        memcpy(&v, p, 8);
    }
    uint32_t conn = (uint32_t)(v & 0xffffff);
    uint32_t flag = (uint32_t)((v >> 32) & 0xffff);
    if ((v & 0xff000000ull) || flag != 0)
        return HV_STATUS_INVALID_HYPERCALL_INPUT;
    return vmbus_signal_event(vc, conn, flag);
}

int hv_handle_exit(struct vcpu *vc)
{
    struct kvm_hyperv_exit *hx = &vc->run->hyperv;
    switch (hx->type) {
    case KVM_EXIT_HYPERV_SYNIC:
        log_debug("VP %d: SynIC msr %#x: scontrol=%#llx simp=%#llx siefp=%#llx", vc->index,
                  hx->u.synic.msr, (unsigned long long)hx->u.synic.control,
                  (unsigned long long)hx->u.synic.msg_page,
                  (unsigned long long)hx->u.synic.evt_page);
        vmbus_synic_state(vc->vm, (uint32_t)vc->index, hx->u.synic.control,
                          hx->u.synic.msg_page, hx->u.synic.evt_page);
        return 0;
    case KVM_EXIT_HYPERV_HCALL: {
        uint64_t control = hx->u.hcall.input;
        uint16_t code = (uint16_t)(control & 0xffff);
        uint32_t st;
        if (control & HV_HYPERCALL_REP_MASK) {
            st = HV_STATUS_INVALID_HYPERCALL_INPUT;
        } else if (code == HVCALL_POST_MESSAGE) {
            st = hcall_post_message(vc, control, hx->u.hcall.params[0]);
        } else if (code == HVCALL_SIGNAL_EVENT) {
            st = hcall_signal_event(vc, control, hx->u.hcall.params[0]);
        } else {
            log_debug("VP %d: hypercall %#x refused", vc->index, code);
            st = HV_STATUS_INVALID_HYPERCALL_CODE;
        }
        hx->u.hcall.result = st;
        return 0;
    }
    default:
        log_warn("VP %d: unhandled Hyper-V exit type %u", vc->index, hx->type);
        return 0;
    }
}
