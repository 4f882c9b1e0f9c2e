/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of the VMM parts that need no KVM: the ACPI tables and AML, the
 * guest-memory bounds checks and the bzImage checks.
 */
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/log.h"
#include "vmm/vmm.h"

static bool contains(const uint8_t *hay, size_t n, const void *needle, size_t m)
{
    for (size_t i = 0; i + m <= n; i++)
        if (memcmp(hay + i, needle, m) == 0)
            return true;
    return false;
}

static char last_warning[512];

static void capture_warning(enum log_level lvl, const char *line, void *arg)
{
    (void)arg;
    if (lvl == LOG_WARN)
        snprintf(last_warning, sizeof(last_warning), "%s", line);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* The guest's reference TSC page is valid only on a TSC-clocked host: the
 * user is told which clocksource the host has, and what to do, once. */
static void test_host_clock_warning(void **state)
{
    (void)state;
    char dir[] = "/tmp/test_vmm_clock.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[sizeof(dir) + 32];
    snprintf(path, sizeof(path), "%s/current_clocksource", dir);
    log_set_sink(capture_warning, NULL);

    write_file(path, "tsc\n");
    last_warning[0] = '\0';
    assert_true(hv_check_host_clock(path));
    assert_string_equal(last_warning, "");

    write_file(path, "hpet\n");
    assert_false(hv_check_host_clock(path));
    assert_non_null(strstr(last_warning, "'hpet'"));
    assert_non_null(strstr(last_warning, "tsc=reliable"));

    unlink(path);
    last_warning[0] = '\0';
    assert_true(hv_check_host_clock(path)); /* unreadable: nothing known, nothing said */
    assert_string_equal(last_warning, "");

    log_set_sink(NULL, NULL);
    rmdir(dir);
}

static void test_dsdt_aml(void **state)
{
    (void)state;
    uint8_t buf[1024];
    int n = acpi_build_dsdt(buf, sizeof(buf));
    assert_true(n > 36);
    const uint8_t *aml = buf + 36;
    size_t len = (size_t)n - 36;
    /* Name (_HID, "VMBUS") */
    static const uint8_t hid[] = {0x08, '_', 'H', 'I', 'D', 0x0d, 'V', 'M', 'B', 'U', 'S', 0};
    assert_true(contains(aml, len, hid, sizeof(hid)));
    /* Name (_CRS, Buffer (2) { 0x79, 0x00 }) */
    static const uint8_t crs[] = {0x08, '_', 'C', 'R', 'S', 0x11, 0x05, 0x0a, 0x02, 0x79, 0x00};
    assert_true(contains(aml, len, crs, sizeof(crs)));
    /* Method (_STA) { Return (0x0F) } */
    static const uint8_t sta[] = {0x14, 0x09, '_', 'S', 'T', 'A', 0x00, 0xa4, 0x0a, 0x0f};
    assert_true(contains(aml, len, sta, sizeof(sta)));
    /* Name (\_S5, Package (2) { 5, 5 }) */
    static const uint8_t s5[] = {0x08, '\\', '_', 'S', '5', '_', 0x12, 0x06, 0x02, 0x0a, 0x05};
    assert_true(contains(aml, len, s5, sizeof(s5)));
    /* COM1: EisaId ("PNP0501") and IRQNoFlags {4} */
    static const uint8_t pnp[] = {0x0c, 0x41, 0xd0, 0x05, 0x01};
    static const uint8_t irq4[] = {0x22, 0x10, 0x00};
    assert_true(contains(aml, len, pnp, sizeof(pnp)));
    assert_true(contains(aml, len, irq4, sizeof(irq4)));
    /* The outer Scope's PkgLength covers everything up to \_S5. */
    assert_int_equal(aml[0], 0x10);
    unsigned pk = aml[1];
    size_t scope_len = (pk >> 6) == 0 ? (pk & 0x3f) : ((pk & 0x0f) | ((size_t)aml[2] << 4));
    assert_memory_equal(aml + 1 + scope_len, s5, 6);
    /* Too small a buffer fails cleanly. */
    assert_int_equal(acpi_build_dsdt(buf, 40), -1);
}

static uint64_t rd64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}
static uint32_t rd32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static void test_tables(void **state)
{
    (void)state;
    static struct vm vm;
    memset(&vm, 0, sizeof(vm));
    vm.ncpus = 3;
    assert_int_equal(mem_create(&vm.mem, 64ull << 20, true), 0);
    uint64_t rsdp_gpa = acpi_build(&vm);
    assert_int_equal(rsdp_gpa, ACPI_TABLES_GPA);
    const uint8_t *rsdp = mem_gpa(&vm.mem, rsdp_gpa, 36);
    assert_memory_equal(rsdp, "RSD PTR ", 8);
    assert_true(acpi_checksum_ok(rsdp, 20));
    assert_true(acpi_checksum_ok(rsdp, 36));
    const uint8_t *xsdt = mem_gpa(&vm.mem, rd64(rsdp + 24), 36);
    assert_memory_equal(xsdt, "XSDT", 4);
    uint32_t xlen = rd32(xsdt + 4);
    assert_true(acpi_checksum_ok(mem_gpa(&vm.mem, rd64(rsdp + 24), xlen), xlen));
    bool have_fadt = false, have_madt = false;
    for (uint32_t off = 36; off + 8 <= xlen; off += 8) {
        const uint8_t *t = mem_gpa(&vm.mem, rd64(xsdt + off), 36);
        assert_non_null(t);
        uint32_t tl = rd32(t + 4);
        t = mem_gpa(&vm.mem, rd64(xsdt + off), tl);
        assert_true(acpi_checksum_ok(t, tl));
        if (memcmp(t, "FACP", 4) == 0) {
            have_fadt = true;
            assert_int_equal(tl, 276);
            uint32_t flags = rd32(t + 112);
            assert_true(flags & (1u << 20)); /* HW_REDUCED_ACPI */
            assert_true(flags & (1u << 10)); /* RESET_REG_SUP */
            assert_int_equal(t[116], 1);     /* reset reg in I/O space */
            assert_int_equal(rd64(t + 120), ACPI_RESET_PORT);
            assert_int_equal(t[128], ACPI_RESET_VALUE);
            assert_int_equal(rd64(t + 248), ACPI_SLEEP_CTL_PORT);
            assert_int_equal(rd64(t + 260), ACPI_SLEEP_STS_PORT);
            const uint8_t *dsdt = mem_gpa(&vm.mem, rd64(t + 140), 36);
            assert_memory_equal(dsdt, "DSDT", 4);
            uint32_t dl = rd32(dsdt + 4);
            assert_true(acpi_checksum_ok(mem_gpa(&vm.mem, rd64(t + 140), dl), dl));
        } else if (memcmp(t, "APIC", 4) == 0) {
            have_madt = true;
            int lapics = 0, ioapics = 0;
            for (uint32_t o = 44; o + 2 <= tl; o += t[o + 1]) {
                assert_true(t[o + 1] >= 2);
                if (t[o] == 0)
                    lapics++;
                if (t[o] == 1)
                    ioapics++;
            }
            assert_int_equal(lapics, 3);
            assert_int_equal(ioapics, 1);
        }
    }
    assert_true(have_fadt);
    assert_true(have_madt);
    mem_destroy(&vm.mem);
}

static void test_mem_bounds(void **state)
{
    (void)state;
    struct guest_mem m;
    assert_int_equal(mem_create(&m, 64ull << 20, true), 0);
    assert_non_null(mem_gpa(&m, 0, 4096));
    assert_non_null(mem_gpa(&m, (64ull << 20) - 256, 256));
    assert_null(mem_gpa(&m, (64ull << 20) - 255, 256));
    assert_null(mem_gpa(&m, 64ull << 20, 1));
    assert_null(mem_gpa(&m, UINT64_MAX - 10, 256)); /* no wrap-around */
    assert_null(mem_gpa(&m, 0, UINT64_MAX));
    /* vmbusd only maps guest RAM that cannot shrink; a reset still clears it */
    int seals = fcntl(m.memfd, F_GET_SEALS);
    assert_true(seals >= 0 && (seals & F_SEAL_SHRINK) && !(seals & F_SEAL_WRITE));
    assert_int_equal(ftruncate(m.memfd, 0), -1);
    assert_int_equal(errno, EPERM);
    *(volatile uint8_t *)mem_gpa(&m, 4096, 1) = 0x5a;
    assert_int_equal(mem_clear(&m), 0);
    assert_int_equal(*(volatile uint8_t *)mem_gpa(&m, 4096, 1), 0);
    mem_destroy(&m);
    assert_int_equal(mem_create(&m, 1000, true), -1);
}

/* KVM maps guest RAM with 2 MiB entries only where host address and GPA
 * agree modulo 2 MiB, and the kernel gives a shmem mapping huge pages only
 * when it is marked for them: both, or neither with --huge-pages off. */
static void test_mem_huge_pages(void **state)
{
    (void)state;
    if (access("/sys/kernel/mm/transparent_hugepage", F_OK) != 0)
        skip(); /* a kernel without THP: madvise refuses, nothing to check */
    for (int huge = 0; huge <= 1; huge++) {
        struct guest_mem m;
        assert_int_equal(mem_create(&m, 70ull << 20, huge), 0);
        assert_int_equal((uintptr_t)m.host & ((2u << 20) - 1), 0);
        char flags[512];
        char rss[64];
        assert_true(smaps_field(m.host, "VmFlags", flags, sizeof(flags)));
        assert_true(smaps_field(m.host, "Rss", rss, sizeof(rss))); /* the exit log's */
        assert_false(smaps_field(m.host, "NoSuchField", rss, sizeof(rss)));
        assert_true(strstr(flags, huge ? " hg" : " nh") != NULL);
        assert_null(strstr(flags, huge ? " nh" : " hg"));
        mem_destroy(&m);
    }
}

static void test_bzimage_checks(void **state)
{
    (void)state;
    char path[] = "/tmp/vmm-test-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    static uint8_t junk[8192];
    memset(junk, 0x5a, sizeof(junk));
    assert_int_equal(write(fd, junk, sizeof(junk)), (ssize_t)sizeof(junk));
    close(fd);
    struct boot_image img;
    assert_int_equal(boot_load_files(&img, path, NULL), -1);
    assert_int_equal(boot_load_files(&img, "/nonexistent/bzImage", NULL), -1);
    /* A valid-looking header with a 32-bit-only boot protocol is refused. */
    junk[0x1fe] = 0x55;
    junk[0x1ff] = 0xaa;
    memcpy(junk + 0x202, "HdrS", 4);
    junk[0x206] = 0x0a; /* version 2.10 */
    junk[0x207] = 0x02;
    fd = open(path, O_WRONLY | O_TRUNC);
    assert_int_equal(write(fd, junk, sizeof(junk)), (ssize_t)sizeof(junk));
    close(fd);
    assert_int_equal(boot_load_files(&img, path, NULL), -1);
    unlink(path);
}

/* The guest kernel the e2e tier boots: VMM_TEST_KERNEL, else the newest
 * /boot/vmlinuz-* (version order, as tests/e2e/run-e2e picks it). */
static bool find_kernel(char *out, size_t len)
{
    const char *k = getenv("VMM_TEST_KERNEL");
    if (k && *k) {
        snprintf(out, len, "%s", k);
        return true;
    }
    glob_t g;
    if (glob("/boot/vmlinuz-*", 0, NULL, &g) != 0)
        return false;
    const char *best = NULL;
    for (size_t i = 0; i < g.gl_pathc; i++)
        if (!best || strverscmp(g.gl_pathv[i], best) > 0)
            best = g.gl_pathv[i];
    snprintf(out, len, "%s", best);
    globfree(&g);
    return true;
}

/* `test-vmm --real-kernel`: a real distribution bzImage passes the checks.
 * Exit 77 (meson: SKIP) without a kernel, a failure when CI=true. */
static int real_kernel_test(void)
{
    char k[4096] = "";
    if (!find_kernel(k, sizeof(k)) || access(k, R_OK) != 0) {
        const char *ci = getenv("CI");
        bool in_ci = ci && strcmp(ci, "true") == 0;
        fprintf(stderr, "%s: no readable guest kernel (%s; apt-get install linux-image-amd64)\n",
                in_ci ? "FAIL" : "SKIP", k[0] ? k : "no /boot/vmlinuz-*");
        return in_ci ? 1 : 77;
    }
    struct boot_image img;
    if (boot_load_files(&img, k, NULL) != 0) {
        fprintf(stderr, "FAIL: %s refused by the bzImage checks\n", k);
        return 1;
    }
    boot_free_files(&img);
    printf("%s: accepted\n", k);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--real-kernel") == 0)
        return real_kernel_test();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dsdt_aml),
        cmocka_unit_test(test_tables),
        cmocka_unit_test(test_mem_bounds),
        cmocka_unit_test(test_mem_huge_pages),
        cmocka_unit_test(test_bzimage_checks),
        cmocka_unit_test(test_host_clock_warning),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
