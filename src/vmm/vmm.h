/* SPDX-License-Identifier: MIT */
/*
 * vmbus-vmm: a small KVM VMM that boots a Linux bzImage directly, presents
 * Hyper-V enlightenments through KVM's own Hyper-V support, and hands the
 * VMBus side of the machine to vmbusd over the vmbus-user socket.
 *
 * This header holds the types shared by the VMM's small modules.
 */
#ifndef VMM_VMM_H
#define VMM_VMM_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <linux/kvm.h>

#define VMM_MAX_CPUS 64
#define VMM_MAX_REGIONS 2

/* Exit statuses of the vmbus-vmm process (docs/vmm.md). */
enum vmm_exit {
    VMM_EXIT_POWEROFF = 0, /* guest powered off */
    VMM_EXIT_ERROR = 1,    /* setup failure or VMM-internal error */
    VMM_EXIT_REBOOT = 2,   /* guest rebooted and --no-reboot was given */
    VMM_EXIT_PANIC = 3,    /* guest kernel panicked (Hyper-V crash MSR) */
    VMM_EXIT_USAGE = 64,   /* bad command line */
};

/* What a vCPU thread reports to the main thread. */
enum vm_event {
    VM_EV_NONE = 0,
    VM_EV_POWEROFF,
    VM_EV_REBOOT,
    VM_EV_PANIC,
    VM_EV_ERROR,
    VM_EV_SIGNAL,
};

/* Whether the guest is told to use auto-EOI for its SynIC (--aeoi). */
enum hv_aeoi { HV_AEOI_AUTO, HV_AEOI_ON, HV_AEOI_OFF };

struct vmm_options {
    const char *kernel;
    const char *initrd;
    const char *cmdline;
    const char *serial_log;
    const char *socket_path;
    const char *name;
    uint64_t mem_bytes;
    int cpus;
    bool no_vmbus;
    enum hv_aeoi aeoi;
    bool huge_pages;        /* MADV_HUGEPAGE on guest RAM (--huge-pages) */
    bool no_reboot;
    int max_reboots; /* 0 = unlimited */
    int verbose;
};

/* ---- memory.c: memfd-backed guest RAM ---- */
struct mem_region {
    uint64_t gpa;
    uint64_t size;
    uint64_t fd_offset;
};

struct guest_mem {
    int memfd;
    uint8_t *host;          /* mapping of the whole memfd */
    uint64_t total;         /* bytes of RAM (= memfd size) */
    int nregions;
    struct mem_region regions[VMM_MAX_REGIONS];
};

#define GUEST_HOLE_START 0xC0000000ull /* 3 GiB: 32-bit MMIO hole (LAPIC, IOAPIC) */
#define GUEST_HIGH_START 0x100000000ull

int mem_create(struct guest_mem *m, uint64_t bytes, bool huge);
void mem_destroy(struct guest_mem *m);
int mem_clear(struct guest_mem *m);
/* The value of FIELD ("Rss", "VmFlags", ...) in the /proc/self/smaps entry
 * of the mapping that starts at START, into OUT; false if there is none. */
bool smaps_field(const void *start, const char *field, char *out, size_t outlen);
/* Logs how much of guest RAM the host has resident, and how much of that on
 * 2 MiB pages: whether --huge-pages took effect. */
void mem_log_page_sizes(const struct guest_mem *m);
/* Host pointer for [gpa, gpa+len) if it lies entirely inside one RAM region, else NULL. */
void *mem_gpa(struct guest_mem *m, uint64_t gpa, uint64_t len);
uint64_t mem_low_end(const struct guest_mem *m);

/* ---- serial.c: 16550 UART on COM1 ---- */
struct serial {
    pthread_mutex_t lock;
    int out_fd;
    uint8_t ier, lcr, mcr, scr, dll, dlm, fcr;
    bool thre_pending;
    bool irq_level;
    struct vm *vm;
    int at_line_start;
};

void serial_init(struct serial *s, struct vm *vm, int out_fd);
void serial_reset(struct serial *s);
/* Returns true if the port belongs to the UART. */
bool serial_io(struct serial *s, uint16_t port, bool is_write, uint8_t *data);

/* ---- kvm.c: the VM and its vCPUs ---- */
struct vcpu {
    struct vm *vm;
    int index;
    int fd;
    struct kvm_run *run;
    pthread_t thread;
    bool thread_started;
    int sint_gsi;
    int sint_irqfd;      /* eventfd vmbusd writes to raise SINT2 on this VP */
    int sint_resamplefd; /* eventfd KVM signals when the guest acks SINT2 */

    /* A post-message waiting for vmbusd's answer. */
    uint32_t wait_seq;
    bool waiting;
    bool answered;
    uint32_t answer;
};

struct vmbus_client;

struct vm {
    struct vmm_options *opt;
    int kvm_fd;
    int vm_fd;
    int run_size;
    int ncpus;
    struct vcpu vcpus[VMM_MAX_CPUS];
    struct guest_mem mem;
    struct serial serial;
    struct vmbus_client *vmbus;

    /* kvm_fd-level CPUID template (without per-vCPU ids) */
    struct kvm_cpuid2 *cpuid;

    pthread_mutex_t lock;     /* guards event, stopping */
    pthread_cond_t cond;
    enum vm_event event;
    int triple_fault_vcpu;    /* the vCPU whose triple fault posted VM_EV_REBOOT, or -1 */
    volatile bool stopping;
    volatile bool in_run_loop; /* vCPUs started, main thread waits for events */
    pthread_t main_thread;
    uint8_t cmos_index;
};

int kvm_open_checked(struct vm *vm);
int vm_create(struct vm *vm);
void vm_destroy(struct vm *vm);
int vm_start_vcpus(struct vm *vm);
void vm_stop_vcpus(struct vm *vm);
/* Logs every vCPU's registers and control registers (where a stopped or
 * failed guest was). */
void vm_dump_vcpus(struct vm *vm);
void vm_post_event(struct vm *vm, enum vm_event ev);
int vm_irq_line(struct vm *vm, int irq, int level);

/* ---- hyperv.c: CPUID and SynIC ---- */
int hv_check_caps(int kvm_fd);
/* Warns and returns false when the host clocksource named in PATH (sysfs) is
 * not the TSC; true when it is or cannot be read. */
bool hv_check_host_clock(const char *path);
struct kvm_cpuid2 *hv_build_cpuid(int kvm_fd, int ncpus, enum hv_aeoi aeoi);
int hv_vcpu_setup(struct vm *vm, struct vcpu *vc);
/* Installs IOAPIC/PIC default routes plus one HV_SINT route per vCPU and the irqfds. */
int hv_setup_sint_routes(struct vm *vm);
/* Handles KVM_EXIT_HYPERV; returns 0 to continue running the vCPU. */
int hv_handle_exit(struct vcpu *vc);

/* ---- boot.c: Linux x86-64 boot protocol ---- */
struct boot_image {
    uint8_t *kernel;
    size_t kernel_size;
    uint8_t *initrd;
    size_t initrd_size;
};

int boot_load_files(struct boot_image *img, const char *kernel, const char *initrd);
void boot_free_files(struct boot_image *img);
int boot_setup(struct vm *vm, const struct boot_image *img, const char *cmdline);

/* ---- acpi.c: RSDP/XSDT/FADT/MADT/DSDT ---- */
#define ACPI_TABLES_GPA   0xE0000ull
#define ACPI_TABLES_SIZE  0x20000ull
#define ACPI_SLEEP_CTL_PORT 0x600
#define ACPI_SLEEP_STS_PORT 0x601
#define ACPI_RESET_PORT     0x602
#define ACPI_RESET_VALUE    0x0F
#define ACPI_S5_TYPE        5
#define IOAPIC_GPA        0xFEC00000u
#define LAPIC_GPA         0xFEE00000u

/* Writes the tables into guest memory; returns the RSDP's GPA or 0 on error. */
uint64_t acpi_build(struct vm *vm);
/* The DSDT's AML, exposed for the unit test. Returns bytes written or -1. */
int acpi_build_dsdt(uint8_t *out, size_t cap);
int acpi_checksum_ok(const uint8_t *table, size_t len);

/* ---- pio.c: port I/O dispatch ---- */
int pio_handle(struct vcpu *vc);

/* ---- vmbus_client.c: the vmbus-user protocol, VMM side ---- */
int vmbus_connect(struct vm *vm, const char *path, const char *name);
/* Sends the VM's RAM regions and the per-vCPU SINT routes (after hv_setup_sint_routes). */
int vmbus_send_setup(struct vm *vm);
int vmbus_start_reader(struct vm *vm);
/* Guest reset: tell vmbusd, drop our eventfd registrations. */
void vmbus_reset(struct vm *vm);
/* Re-registers known HvSignalEvent eventfds with a freshly created VM. */
void vmbus_rearm_eventfds(struct vm *vm);
bool vmbus_connected(struct vm *vm);
void vmbus_synic_state(struct vm *vm, uint32_t vp, uint64_t scontrol, uint64_t simp,
                       uint64_t siefp);
/* Forwards a guest HvPostMessage and waits for the answer; returns an HV_STATUS. */
uint32_t vmbus_post_message(struct vcpu *vc, const void *input_page);
uint32_t vmbus_signal_event(struct vcpu *vc, uint32_t conn_id, uint32_t flag);
void vmbus_close(struct vm *vm);

#endif
