/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for src/xpartition/ring_map.c.  Linked with --wrap for mmap,
 * mmap64 (what mmap becomes with _FILE_OFFSET_BITS=64, which meson sets) and
 * munmap, so the tests can count the mmap calls (coalescing) and inject a
 * failure part-way (cleanup).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "xpartition/ring_map.h"

void *__real_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off);
void *__real_mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off);
int __real_munmap(void *addr, size_t len);
void *__wrap_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off);
void *__wrap_mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off);
int __wrap_munmap(void *addr, size_t len);

static int mmap_calls;
static int mmap_fail_at; /* 1-based call number to fail, 0 = never */
static void *last_munmap_addr;
static size_t last_munmap_len;

static bool fail_this_call(void)
{
    mmap_calls++;
    if (mmap_fail_at && mmap_calls == mmap_fail_at) {
        errno = ENOMEM;
        return true;
    }
    return false;
}

void *__wrap_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    return fail_this_call() ? MAP_FAILED : __real_mmap(addr, len, prot, flags, fd, off);
}

void *__wrap_mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    return fail_this_call() ? MAP_FAILED : __real_mmap64(addr, len, prot, flags, fd, off);
}

int __wrap_munmap(void *addr, size_t len)
{
    last_munmap_addr = addr;
    last_munmap_len = len;
    return __real_munmap(addr, len);
}

#define PG 4096u
#define MEM_PAGES 16u

static int memfd_pages(unsigned n)
{
    int fd = memfd_create("ring-map-test", MFD_CLOEXEC);
    if (fd >= 0 && ftruncate(fd, (off_t)n * PG) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static void reset_counters(void)
{
    mmap_calls = 0;
    mmap_fail_at = 0;
    last_munmap_addr = NULL;
    last_munmap_len = 0;
}

static void fill_src(struct ring_page_src *src, int fd, const unsigned *pages, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        src[i].fd = fd;
        src[i].offset = (uint64_t)pages[i] * PG;
    }
}

static void test_invalid_args(void **state)
{
    (void)state;
    int fd = memfd_pages(4);
    assert_true(fd >= 0);
    struct ring_mapping m;
    struct ring_page_src src[3] = {{fd, 0}, {fd, PG}, {fd, 2 * PG}};

    assert_int_equal(ring_map(&m, src, 0), -EINVAL);
    assert_int_equal(ring_map(&m, src, 1), -EINVAL);
    assert_null(m.base);
    assert_int_equal(ring_map(&m, NULL, 3), -EINVAL);
    assert_int_equal(ring_map(NULL, src, 3), -EINVAL);
    assert_int_equal(ring_map(&m, src, (size_t)RING_MAP_MAX_DATA_PAGES + 2), -EINVAL);

    src[2].offset = 2 * PG + 8; /* not page aligned */
    assert_int_equal(ring_map(&m, src, 3), -EINVAL);
    src[2].offset = UINT64_MAX & ~(uint64_t)(PG - 1); /* beyond off_t */
    assert_int_equal(ring_map(&m, src, 3), -EINVAL);
    src[2].offset = 2 * PG;
    src[1].fd = -1;
    assert_int_equal(ring_map(&m, src, 3), -EBADF);
    assert_null(m.base);
    assert_int_equal(m.len, 0);

    /* A closed fd is reported by mmap itself. */
    src[1].fd = fd;
    int dead = memfd_pages(1);
    close(dead);
    src[0].fd = dead;
    assert_int_equal(ring_map(&m, src, 3), -EBADF);
    assert_null(m.base);
    close(fd);
}

/* Scrambled page order: every data byte is visible at i and i + size, and
 * lands in the memfd page the list named. */
static void test_alias_scrambled(void **state)
{
    (void)state;
    int fd = memfd_pages(MEM_PAGES);
    assert_true(fd >= 0);
    uint8_t *flat = mmap(NULL, MEM_PAGES * PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    assert_true(flat != MAP_FAILED);

    const unsigned pages[] = {11, 7, 2, 3, 14, 0};
    struct ring_page_src src[6];
    fill_src(src, fd, pages, 6);
    struct ring_mapping m;
    assert_int_equal(ring_map(&m, src, 6), 0);
    assert_int_equal(m.data_size, 5 * PG);
    assert_int_equal(m.len, PG + 2 * 5 * PG);
    uint8_t *data = ring_mapping_data(&m);
    assert_ptr_equal(ring_mapping_hdr(&m), m.base);

    ring_mapping_hdr(&m)->write_index = 0xabcd;
    assert_int_equal(*(uint32_t *)(void *)(flat + 11 * PG), 0xabcd);

    for (uint32_t i = 0; i < m.data_size; i += 509) {
        data[i] = (uint8_t)(i * 3 + 1);
        assert_int_equal(data[i + m.data_size], (uint8_t)(i * 3 + 1));
        assert_int_equal(flat[pages[1 + i / PG] * PG + i % PG], (uint8_t)(i * 3 + 1));
    }
    /* Writes through the second copy land in the same place. */
    data[m.data_size + 5] = 0x77;
    assert_int_equal(data[5], 0x77);
    assert_int_equal(flat[7 * PG + 5], 0x77);

    /* A wrapping 100-byte record reads contiguously. */
    uint8_t rec[100];
    for (int i = 0; i < 100; i++)
        rec[i] = (uint8_t)(200 + i);
    for (int i = 0; i < 100; i++)
        data[(m.data_size - 50 + i) % m.data_size] = rec[i];
    assert_memory_equal(data + m.data_size - 50, rec, sizeof(rec));

    ring_unmap(&m);
    assert_null(m.base);
    ring_unmap(&m); /* idempotent */
    munmap(flat, MEM_PAGES * PG);
    close(fd);
}

/* Physically contiguous ring: reservation + one run per copy. */
static void test_coalesce(void **state)
{
    (void)state;
    int fd = memfd_pages(MEM_PAGES);
    assert_true(fd >= 0);
    struct ring_mapping m;

    const unsigned contig[] = {4, 5, 6, 7, 8, 9, 10, 11, 12};
    struct ring_page_src src[9];
    fill_src(src, fd, contig, 9);
    reset_counters();
    assert_int_equal(ring_map(&m, src, 9), 0);
    assert_int_equal(mmap_calls, 3);
    ring_unmap(&m);

    /* Control page elsewhere, data contiguous: 1 + (1 + 1) + 1. */
    const unsigned split[] = {0, 5, 6, 7, 8};
    fill_src(src, fd, split, 5);
    reset_counters();
    assert_int_equal(ring_map(&m, src, 5), 0);
    assert_int_equal(mmap_calls, 4);
    ring_unmap(&m);

    /* Runs {2,3,4} {9,10,11}, data copy {3,4} {9,10,11}: 1 + 2 + 2. */
    const unsigned runs[] = {2, 3, 4, 9, 10, 11};
    fill_src(src, fd, runs, 6);
    reset_counters();
    assert_int_equal(ring_map(&m, src, 6), 0);
    assert_int_equal(mmap_calls, 5);
    ring_unmap(&m);

    /* Same offsets but a different fd break a run. */
    int fd2 = memfd_pages(MEM_PAGES);
    assert_true(fd2 >= 0);
    fill_src(src, fd, contig, 5);
    src[3].fd = fd2;
    reset_counters();
    assert_int_equal(ring_map(&m, src, 5), 0);
    assert_int_equal(mmap_calls, 1 + 3 + 3);
    ring_mapping_data(&m)[2 * PG] = 0x42; /* data page 2 = fd2, offset 7 pages */
    uint8_t b = 0;
    assert_int_equal(pread(fd2, &b, 1, 7 * PG), 1);
    assert_int_equal(b, 0x42);
    assert_int_equal(pread(fd, &b, 1, 7 * PG), 1);
    assert_int_equal(b, 0);
    ring_unmap(&m);
    close(fd2);
    close(fd);
}

/* A failing mmap part-way leaves nothing mapped. */
static void test_failure_cleanup(void **state)
{
    (void)state;
    int fd = memfd_pages(MEM_PAGES);
    assert_true(fd >= 0);
    const unsigned pages[] = {1, 3, 5, 7};
    struct ring_page_src src[4];
    fill_src(src, fd, pages, 4);
    struct ring_mapping m;

    for (int fail = 1; fail <= 8; fail++) {
        reset_counters();
        mmap_fail_at = fail;
        int rc = ring_map(&m, src, 4);
        if (fail <= 1 + 4 + 3) {
            assert_int_equal(rc, -ENOMEM);
            assert_null(m.base);
            if (fail > 1) { /* the reservation was released as a whole */
                assert_non_null(last_munmap_addr);
                assert_int_equal(last_munmap_len, PG + 2 * 3 * PG);
            }
        }
    }
    reset_counters();
    assert_int_equal(ring_map(&m, src, 4), 0);
    ring_unmap(&m);
    assert_int_equal(last_munmap_len, PG + 2 * 3 * PG);
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_invalid_args),
        cmocka_unit_test(test_alias_scrambled),
        cmocka_unit_test(test_coalesce),
        cmocka_unit_test(test_failure_cleanup),
    };
    return cmocka_run_group_tests_name("ring_map", tests, NULL, NULL);
}
