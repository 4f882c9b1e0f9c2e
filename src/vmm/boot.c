/* SPDX-License-Identifier: MIT */
/*
 * Direct boot of a Linux bzImage through the x86-64 boot protocol: the VMM
 * plays boot loader, fills in the zero page (boot_params), builds identity
 * page tables and a GDT, and starts the BSP in long mode at the 64-bit entry.
 *
 * Low-memory layout used here (all below 1 MiB):
 *   0x00500  GDT
 *   0x07000  boot_params ("zero page")
 *   0x09000  PML4, 0x0A000 PDPT, 0x0B000..0x0EFFF four page directories (0-4 GiB, 2 MiB pages)
 *   0x20000  kernel command line
 *   0xE0000  ACPI tables (acpi.c), reserved in the e820 map
 *   0xFFFF0  real-mode reset stub (writes the ACPI reset register)
 *   0x100000 protected-mode kernel
 * The initrd goes as high as the kernel allows, below the 32-bit hole.
 */
#include "vmm/vmm.h"

#include <asm/bootparam.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"

#define BOOT_GDT_GPA      0x500ull
#define BOOT_PARAMS_GPA   0x7000ull
#define BOOT_PML4_GPA     0x9000ull
#define BOOT_PDPT_GPA     0xA000ull
#define BOOT_PD_GPA       0xB000ull
#define BOOT_CMDLINE_GPA  0x20000ull
#define BOOT_CMDLINE_MAX  0x10000ull
#define BOOT_KERNEL_GPA   0x100000ull
#define EBDA_START        0x9FC00ull

#define HDR_MAGIC 0x53726448u /* "HdrS" */




static int read_file(const char *path, const char *what, uint8_t **out, size_t *size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        log_err("cannot open %s %s: %s", what, path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        log_err("%s %s is not a regular file", what, path);
        close(fd);
        return -1;
    }
    uint8_t *buf = malloc(st.st_size ? (size_t)st.st_size : 1);
    if (!buf) {
        close(fd);
        return -1;
    }
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
        if (n <= 0) {
            log_err("reading %s %s: %s", what, path, n < 0 ? strerror(errno) : "short read");
            free(buf);
            close(fd);
            return -1;
        }
        got += (size_t)n;
    }
    close(fd);
    *out = buf;
    *size = got;
    return 0;
}

static int check_bzimage(const uint8_t *k, size_t size, const char *path)
{
    const struct setup_header *h;
    if (size < 0x1000) {
        log_err("%s is not a bzImage (only %zu bytes); pass a Linux x86 bzImage such as "
                "/boot/vmlinuz-*", path, size);
        return -1;
    }
    h = (const struct setup_header *)(k + 0x1f1);
    uint32_t magic;
    uint16_t version, xlf;
    memcpy(&magic, &h->header, 4);
    memcpy(&version, &h->version, 2);
    memcpy(&xlf, &h->xloadflags, 2);
    if (magic != HDR_MAGIC || k[0x1fe] != 0x55 || k[0x1ff] != 0xAA) {
        log_err("%s is not a bzImage (no \"HdrS\" boot header; an uncompressed vmlinux ELF "
                "will not do); pass a Linux x86 bzImage such as /boot/vmlinuz-*", path);
        return -1;
    }
    if (version < 0x020c || !(xlf & XLF_KERNEL_64) || !(h->loadflags & LOADED_HIGH)) {
        log_err("%s: boot protocol %u.%02u without a 64-bit entry point; need a 64-bit "
                "bzImage with boot protocol >= 2.12", path, version >> 8, version & 0xff);
        return -1;
    }
    unsigned setup_sects = h->setup_sects ? h->setup_sects : 4;
    if ((size_t)(setup_sects + 1) * 512 >= size) {
        log_err("%s: truncated bzImage", path);
        return -1;
    }
    return 0;
}

int boot_load_files(struct boot_image *img, const char *kernel, const char *initrd)
{
    memset(img, 0, sizeof(*img));
    if (read_file(kernel, "kernel", &img->kernel, &img->kernel_size) < 0)
        return -1;
    if (check_bzimage(img->kernel, img->kernel_size, kernel) < 0) {
        boot_free_files(img);
        return -1;
    }
    if (initrd && read_file(initrd, "initrd", &img->initrd, &img->initrd_size) < 0) {
        boot_free_files(img);
        return -1;
    }
    return 0;
}

void boot_free_files(struct boot_image *img)
{
    free(img->kernel);
    free(img->initrd);
    memset(img, 0, sizeof(*img));
}

static void add_e820(struct boot_params *bp, uint64_t addr, uint64_t size, uint32_t type)
{
    if (bp->e820_entries >= E820_MAX_ENTRIES_ZEROPAGE || size == 0)
        return;
    struct boot_e820_entry *e = &bp->e820_table[bp->e820_entries++];
    e->addr = addr;
    e->size = size;
    e->type = type;
}

static void setup_page_tables(struct guest_mem *m)
{
    uint64_t *pml4 = mem_gpa(m, BOOT_PML4_GPA, 4096);
    uint64_t *pdpt = mem_gpa(m, BOOT_PDPT_GPA, 4096);
    uint64_t *pd = mem_gpa(m, BOOT_PD_GPA, 4 * 4096);
    memset(pml4, 0, 4096);
    memset(pdpt, 0, 4096);
    pml4[0] = BOOT_PDPT_GPA | 0x3; /* present, writable */
    for (int i = 0; i < 4; i++)
        pdpt[i] = (BOOT_PD_GPA + (uint64_t)i * 4096) | 0x3;
    for (uint64_t i = 0; i < 4 * 512; i++)
        pd[i] = (i << 21) | 0x83; /* present, writable, 2 MiB page */
}

/*
 * There is no BIOS, but Linux on a hardware-reduced ACPI machine without
 * EFI reboots by jumping to the real-mode reset vector F000:FFF0.  Put a
 * four-instruction stub there that writes the ACPI reset register.
 */
static void setup_reset_stub(struct guest_mem *m)
{
    static const uint8_t stub[] = {
        0xba, ACPI_RESET_PORT & 0xff, ACPI_RESET_PORT >> 8, /* mov dx, ACPI_RESET_PORT */
        0xb0, ACPI_RESET_VALUE,                             /* mov al, ACPI_RESET_VALUE */
        0xee,                                               /* out dx, al */
        0xf4,                                               /* hlt */
        0xeb, 0xfd,                                         /* jmp hlt */
    };
    uint8_t *p = mem_gpa(m, 0xffff0, 16);
    if (p) {
        memset(p, 0x90, 16);
        memcpy(p, stub, sizeof(stub));
    }
}

static void setup_gdt(struct guest_mem *m)
{
    uint64_t *gdt = mem_gpa(m, BOOT_GDT_GPA, 32);
    gdt[0] = 0;
    gdt[1] = 0;
    gdt[2] = 0x00af9b000000ffffull; /* 0x10: 64-bit code, DPL0 */
    gdt[3] = 0x00cf93000000ffffull; /* 0x18: flat data, DPL0 */
}

static void seg(struct kvm_segment *s, uint16_t sel, uint8_t type, bool code)
{
    memset(s, 0, sizeof(*s));
    s->base = 0;
    s->limit = 0xffffffff;
    s->selector = sel;
    s->type = type;
    s->present = 1;
    s->dpl = 0;
    s->s = 1;
    s->l = code ? 1 : 0;
    s->db = code ? 0 : 1;
    s->g = 1;
}

static int setup_bsp_regs(struct vm *vm, uint64_t entry)
{
    struct vcpu *vc = &vm->vcpus[0];
    struct kvm_sregs sregs;
    if (ioctl(vc->fd, KVM_GET_SREGS, &sregs) < 0) {
        log_err("KVM_GET_SREGS: %s", strerror(errno));
        return -1;
    }
    seg(&sregs.cs, 0x10, 0xb, true);
    seg(&sregs.ds, 0x18, 0x3, false);
    sregs.es = sregs.fs = sregs.gs = sregs.ss = sregs.ds;
    sregs.gdt.base = BOOT_GDT_GPA;
    sregs.gdt.limit = 4 * 8 - 1;
    sregs.idt.base = 0;
    sregs.idt.limit = 0;
    sregs.cr3 = BOOT_PML4_GPA;
    sregs.cr4 = 0x20;                  /* PAE */
    sregs.cr0 = 0x80000001u | 0x10u;   /* PG | PE | ET */
    sregs.efer = 0x500;                /* LME | LMA */
    if (ioctl(vc->fd, KVM_SET_SREGS, &sregs) < 0) {
        log_err("KVM_SET_SREGS: %s", strerror(errno));
        return -1;
    }
    struct kvm_regs regs;
    memset(&regs, 0, sizeof(regs));
    regs.rflags = 2;
    regs.rip = entry;
    regs.rsi = BOOT_PARAMS_GPA;
    regs.rsp = 0x8000;
    if (ioctl(vc->fd, KVM_SET_REGS, &regs) < 0) {
        log_err("KVM_SET_REGS: %s", strerror(errno));
        return -1;
    }
    return 0;
}

int boot_setup(struct vm *vm, const struct boot_image *img, const char *cmdline)
{
    struct guest_mem *m = &vm->mem;
    const struct setup_header *kh = (const struct setup_header *)(img->kernel + 0x1f1);
    unsigned setup_sects = kh->setup_sects ? kh->setup_sects : 4;
    size_t setup_size = (size_t)(setup_sects + 1) * 512;
    size_t pm_size = img->kernel_size - setup_size;
    uint64_t low_end = mem_low_end(m);

    uint32_t init_size;
    memcpy(&init_size, &kh->init_size, 4);
    if (init_size < pm_size)
        init_size = (uint32_t)pm_size;
    if (BOOT_KERNEL_GPA + init_size > low_end) {
        log_err("guest RAM too small for the kernel (needs %u bytes above 1 MiB)", init_size);
        return -1;
    }
    memcpy(mem_gpa(m, BOOT_KERNEL_GPA, pm_size), img->kernel + setup_size, pm_size);

    /* The zero page: a copy of the kernel's setup header plus what a loader fills in. */
    struct boot_params *bp = mem_gpa(m, BOOT_PARAMS_GPA, sizeof(*bp));
    memset(bp, 0, sizeof(*bp));
    size_t hdr_end = 0x202 + img->kernel[0x201];
    if (hdr_end > 0x1f1 + sizeof(struct setup_header))
        hdr_end = 0x1f1 + sizeof(struct setup_header);
    memcpy((uint8_t *)bp + 0x1f1, img->kernel + 0x1f1, hdr_end - 0x1f1);
    struct setup_header *h = &bp->hdr;
    h->type_of_loader = 0xff;
    h->loadflags |= CAN_USE_HEAP;
    h->heap_end_ptr = 0xfe00;
    h->vid_mode = 0xffff;
    h->code32_start = BOOT_KERNEL_GPA;

    size_t clen = strlen(cmdline);
    uint32_t cmax = h->version >= 0x0206 ? h->cmdline_size : 255;
    if (clen > cmax || clen + 1 > BOOT_CMDLINE_MAX) {
        log_err("kernel command line is %zu bytes; this kernel accepts at most %u", clen, cmax);
        return -1;
    }
    memcpy(mem_gpa(m, BOOT_CMDLINE_GPA, clen + 1), cmdline, clen + 1);
    h->cmd_line_ptr = BOOT_CMDLINE_GPA;

    if (img->initrd) {
        uint64_t top = low_end;
        if (h->initrd_addr_max && (uint64_t)h->initrd_addr_max + 1 < top)
            top = (uint64_t)h->initrd_addr_max + 1;
        if (img->initrd_size > top) {
            log_err("initrd of %zu bytes does not fit in guest RAM", img->initrd_size);
            return -1;
        }
        uint64_t addr = (top - img->initrd_size) & ~0xfffull;
        if (addr < BOOT_KERNEL_GPA + init_size) {
            log_err("initrd (%zu bytes) and kernel (%u bytes) do not fit in %llu MiB of RAM; "
                    "raise --mem", img->initrd_size, init_size,
                    (unsigned long long)(low_end >> 20));
            return -1;
        }
        memcpy(mem_gpa(m, addr, img->initrd_size), img->initrd, img->initrd_size);
        h->ramdisk_image = (uint32_t)addr;
        h->ramdisk_size = (uint32_t)img->initrd_size;
    }

    add_e820(bp, 0, EBDA_START, 1);
    add_e820(bp, EBDA_START, 0xA0000 - EBDA_START, 2);
    add_e820(bp, ACPI_TABLES_GPA, ACPI_TABLES_SIZE, 2);
    add_e820(bp, BOOT_KERNEL_GPA, low_end - BOOT_KERNEL_GPA, 1);
    for (int i = 1; i < m->nregions; i++)
        add_e820(bp, m->regions[i].gpa, m->regions[i].size, 1);

    uint64_t rsdp = acpi_build(vm);
    if (!rsdp)
        return -1;
    bp->acpi_rsdp_addr = rsdp;

    setup_page_tables(m);
    setup_gdt(m);
    setup_reset_stub(m);
    return setup_bsp_regs(vm, BOOT_KERNEL_GPA + 0x200);
}
