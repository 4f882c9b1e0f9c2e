/* SPDX-License-Identifier: MIT */
/*
 * ACPI tables for a hardware-reduced x86 machine: RSDP -> XSDT -> {FADT, MADT},
 * FADT -> DSDT.  The DSDT is AML generated here byte by byte (no iasl at build
 * time) and holds:
 *   \_SB.VMBS   _HID "VMBUS", _UID 0, _CRS (empty resource template), _STA 0xF
 *   \_SB.COM1   PNP0501 at 0x3f8, IRQ 4 (maps the UART's interrupt)
 *   \_S5        sleep type for poweroff
 * Poweroff and reboot go through the FADT's sleep control and reset registers,
 * which are I/O ports trapped by pio.c.
 */
#include "vmm/vmm.h"

#include <string.h>

#include "common/log.h"

#define OEM_ID       "VMBUSD"
#define OEM_TABLE_ID "VMBUSVMM"

struct aml {
    uint8_t *p;
    size_t len;
    size_t cap;
    bool overflow;
};

static void aml_bytes(struct aml *a, const void *src, size_t n)
{
    if (a->len + n > a->cap) {
        a->overflow = true;
        return;
    }
    memcpy(a->p + a->len, src, n);
    a->len += n;
}

static void aml_byte(struct aml *a, uint8_t b)
{
    aml_bytes(a, &b, 1);
}

/*
 * Emits a PkgLength-prefixed object: opcode bytes, then PkgLength covering
 * itself plus body, then body.  Body sizes here are small (< 4 KiB).
 */
static void aml_pkg(struct aml *a, const uint8_t *op, size_t oplen, const struct aml *body)
{
    aml_bytes(a, op, oplen);
    size_t n = body->len;
    if (n + 1 < 0x40) {
        aml_byte(a, (uint8_t)(n + 1));
    } else {
        size_t total = n + 2;
        aml_byte(a, (uint8_t)(0x40 | (total & 0xf)));
        aml_byte(a, (uint8_t)(total >> 4));
    }
    aml_bytes(a, body->p, body->len);
    if (body->overflow)
        a->overflow = true;
}

#define AML_SCOPE_OP   0x10
#define AML_NAME_OP    0x08
#define AML_STRING     0x0D
#define AML_BYTE       0x0A
#define AML_BUFFER_OP  0x11
#define AML_PACKAGE_OP 0x12
#define AML_METHOD_OP  0x14
#define AML_RETURN_OP  0xA4
#define AML_ZERO       0x00

static void aml_name_string(struct aml *a, const char *name, const char *str)
{
    aml_byte(a, AML_NAME_OP);
    aml_bytes(a, name, 4);
    aml_byte(a, AML_STRING);
    aml_bytes(a, str, strlen(str) + 1);
}

static void aml_name_byte(struct aml *a, const char *name, uint8_t v)
{
    aml_byte(a, AML_NAME_OP);
    aml_bytes(a, name, 4);
    if (v == 0) {
        aml_byte(a, AML_ZERO);
    } else {
        aml_byte(a, AML_BYTE);
        aml_byte(a, v);
    }
}

/*
 * COM1 as an ACPI device: a hardware-reduced machine has no legacy PIC, so
 * Linux only maps ISA IRQ 4 to an IOAPIC pin if a device's _CRS names it.
 */
static void aml_com1(struct aml *sb)
{
    uint8_t b_crs[32], b_dev[96];
    struct aml crs = {b_crs, 0, sizeof(b_crs), false};
    static const uint8_t res[] = {
        0x47, 0x01, 0xf8, 0x03, 0xf8, 0x03, 0x01, 0x08, /* IO (Decode16, 0x3f8, 0x3f8, 1, 8) */
        0x22, 0x10, 0x00,                               /* IRQNoFlags () {4} */
        0x79, 0x00,                                     /* end tag */
    };
    aml_byte(&crs, AML_BYTE);
    aml_byte(&crs, sizeof(res));
    aml_bytes(&crs, res, sizeof(res));

    struct aml dev = {b_dev, 0, sizeof(b_dev), false};
    aml_bytes(&dev, "COM1", 4);
    aml_byte(&dev, AML_NAME_OP);
    aml_bytes(&dev, "_HID", 4);
    static const uint8_t pnp0501[] = {0x0C, 0x41, 0xD0, 0x05, 0x01}; /* EisaId ("PNP0501") */
    aml_bytes(&dev, pnp0501, sizeof(pnp0501));
    aml_name_byte(&dev, "_UID", 1);
    aml_byte(&dev, AML_NAME_OP);
    aml_bytes(&dev, "_CRS", 4);
    static const uint8_t buf_op[] = {AML_BUFFER_OP};
    aml_pkg(&dev, buf_op, 1, &crs);
    static const uint8_t device_op[] = {0x5B, 0x82};
    aml_pkg(sb, device_op, 2, &dev);
}

int acpi_build_dsdt(uint8_t *out, size_t cap)
{
    uint8_t b_crs[16], b_sta[16], b_dev[256], b_sb[320], b_s5[16];

    /* Name (_CRS, ResourceTemplate () {}) : Buffer (2) { EndTag, checksum } */
    struct aml crs = {b_crs, 0, sizeof(b_crs), false};
    aml_byte(&crs, AML_BYTE);
    aml_byte(&crs, 2);
    aml_byte(&crs, 0x79);
    aml_byte(&crs, 0x00);

    /* Method (_STA, 0) { Return (0x0F) } */
    struct aml sta = {b_sta, 0, sizeof(b_sta), false};
    aml_bytes(&sta, "_STA", 4);
    aml_byte(&sta, 0x00); /* no args, not serialized */
    aml_byte(&sta, AML_RETURN_OP);
    aml_byte(&sta, AML_BYTE);
    aml_byte(&sta, 0x0F);

    /* Device (VMBS) { ... } */
    struct aml dev = {b_dev, 0, sizeof(b_dev), false};
    aml_bytes(&dev, "VMBS", 4);
    aml_name_string(&dev, "_HID", "VMBUS");
    aml_name_byte(&dev, "_UID", 0);
    aml_byte(&dev, AML_NAME_OP);
    aml_bytes(&dev, "_CRS", 4);
    static const uint8_t buf_op[] = {AML_BUFFER_OP};
    aml_pkg(&dev, buf_op, 1, &crs);
    static const uint8_t method_op[] = {AML_METHOD_OP};
    aml_pkg(&dev, method_op, 1, &sta);

    /* Scope (\_SB) { Device ... } */
    struct aml sb = {b_sb, 0, sizeof(b_sb), false};
    aml_bytes(&sb, "\\_SB_", 5);
    static const uint8_t device_op[] = {0x5B, 0x82};
    aml_pkg(&sb, device_op, 2, &dev);
    aml_com1(&sb);

    /* Name (\_S5, Package (2) { 5, 5 }) */
    struct aml s5 = {b_s5, 0, sizeof(b_s5), false};
    aml_byte(&s5, 2); /* NumElements */
    aml_byte(&s5, AML_BYTE);
    aml_byte(&s5, ACPI_S5_TYPE);
    aml_byte(&s5, AML_BYTE);
    aml_byte(&s5, ACPI_S5_TYPE);

    struct aml t = {out, 0, cap, false};
    uint8_t hdr[36] = {0};
    aml_bytes(&t, hdr, sizeof(hdr));
    static const uint8_t scope_op[] = {AML_SCOPE_OP};
    aml_pkg(&t, scope_op, 1, &sb);
    aml_byte(&t, AML_NAME_OP);
    aml_bytes(&t, "\\_S5_", 5);
    static const uint8_t pkg_op[] = {AML_PACKAGE_OP};
    aml_pkg(&t, pkg_op, 1, &s5);
    if (t.overflow || crs.overflow || sta.overflow || dev.overflow || sb.overflow || s5.overflow)
        return -1;
    return (int)t.len;
}

static uint8_t checksum(const uint8_t *p, size_t n)
{
    uint8_t s = 0;
    for (size_t i = 0; i < n; i++)
        s += p[i];
    return s;
}

int acpi_checksum_ok(const uint8_t *table, size_t len)
{
    return checksum(table, len) == 0;
}

static void put16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }
static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

static void table_header(uint8_t *t, const char *sig, uint32_t len, uint8_t rev)
{
    memcpy(t, sig, 4);
    put32(t + 4, len);
    t[8] = rev;
    memcpy(t + 10, OEM_ID, 6);
    memcpy(t + 16, OEM_TABLE_ID, 8);
    put32(t + 24, 1);      /* OEM revision */
    memcpy(t + 28, "VMBV", 4); /* creator id */
    put32(t + 32, 1);      /* creator revision */
    t[9] = 0;
    t[9] = (uint8_t)(0 - checksum(t, len));
}

/* Generic Address Structure: one byte-wide I/O port. */
static void gas_io8(uint8_t *p, uint16_t port)
{
    p[0] = 1; /* SystemIO */
    p[1] = 8; /* bit width */
    p[2] = 0; /* bit offset */
    p[3] = 1; /* byte access */
    put64(p + 4, port);
}

uint64_t acpi_build(struct vm *vm)
{
    uint8_t *base = mem_gpa(&vm->mem, ACPI_TABLES_GPA, ACPI_TABLES_SIZE);
    if (!base) {
        log_err("no guest RAM for the ACPI tables");
        return 0;
    }
    memset(base, 0, ACPI_TABLES_SIZE);
    const uint64_t rsdp_gpa = ACPI_TABLES_GPA;
    const uint64_t xsdt_gpa = ACPI_TABLES_GPA + 0x40;
    const uint64_t fadt_gpa = ACPI_TABLES_GPA + 0x100;
    const uint64_t madt_gpa = ACPI_TABLES_GPA + 0x400;
    const uint64_t dsdt_gpa = ACPI_TABLES_GPA + 0x1000;

    /* DSDT */
    uint8_t *dsdt = base + (dsdt_gpa - ACPI_TABLES_GPA);
    int dlen = acpi_build_dsdt(dsdt, 0x4000);
    if (dlen < 0) {
        log_err("DSDT does not fit");
        return 0;
    }
    table_header(dsdt, "DSDT", (uint32_t)dlen, 2);

    /* FADT, revision 6.x, 276 bytes, hardware-reduced */
    uint8_t *fadt = base + (fadt_gpa - ACPI_TABLES_GPA);
    const uint32_t fadt_len = 276;
    put32(fadt + 40, (uint32_t)dsdt_gpa);
    fadt[45] = 0;                  /* preferred PM profile: unspecified */
    put16(fadt + 109, (1u << 2) | (1u << 4)); /* IAPC_BOOT_ARCH: no VGA, no ASPM */
    put32(fadt + 112, (1u << 20) | (1u << 10) | (1u << 4)); /* HW_REDUCED, RESET_REG_SUP, PWR_BUTTON */
    gas_io8(fadt + 116, ACPI_RESET_PORT);
    fadt[128] = ACPI_RESET_VALUE;
    fadt[131] = 4;                 /* FADT minor version: 6.4 */
    put64(fadt + 140, dsdt_gpa);   /* X_DSDT */
    gas_io8(fadt + 244, ACPI_SLEEP_CTL_PORT);
    gas_io8(fadt + 256, ACPI_SLEEP_STS_PORT);
    memcpy(fadt + 268, "VMBUSVMM", 8); /* hypervisor vendor identity */
    table_header(fadt, "FACP", fadt_len, 6);

    /* MADT: one local APIC per vCPU, one IOAPIC */
    uint8_t *madt = base + (madt_gpa - ACPI_TABLES_GPA);
    uint32_t mlen = 44;
    put32(madt + 36, LAPIC_GPA);
    put32(madt + 40, 1); /* PCAT_COMPAT: dual 8259s present */
    for (int i = 0; i < vm->ncpus; i++) {
        uint8_t *e = madt + mlen;
        e[0] = 0;
        e[1] = 8;
        e[2] = (uint8_t)i; /* ACPI processor uid */
        e[3] = (uint8_t)i; /* APIC id */
        put32(e + 4, 1);   /* enabled */
        mlen += 8;
    }
    uint8_t *io = madt + mlen;
    io[0] = 1;
    io[1] = 12;
    io[2] = (uint8_t)vm->ncpus; /* IOAPIC id after the CPUs' */
    put32(io + 4, IOAPIC_GPA);
    put32(io + 8, 0);           /* GSI base */
    mlen += 12;
    table_header(madt, "APIC", mlen, 5);

    /* XSDT */
    uint8_t *xsdt = base + (xsdt_gpa - ACPI_TABLES_GPA);
    put64(xsdt + 36, fadt_gpa);
    put64(xsdt + 44, madt_gpa);
    table_header(xsdt, "XSDT", 36 + 16, 1);

    /* RSDP, ACPI 2.0+ (36 bytes) */
    uint8_t *rsdp = base;
    memcpy(rsdp, "RSD PTR ", 8);
    memcpy(rsdp + 9, OEM_ID, 6);
    rsdp[15] = 2;                /* revision */
    put32(rsdp + 16, 0);         /* no RSDT */
    put32(rsdp + 20, 36);
    put64(rsdp + 24, xsdt_gpa);
    rsdp[8] = (uint8_t)(0 - checksum(rsdp, 20));
    rsdp[32] = (uint8_t)(0 - checksum(rsdp, 36));
    return rsdp_gpa;
}
