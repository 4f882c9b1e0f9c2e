/* SPDX-License-Identifier: MIT */
/*
 * Double mapping of a ring's guest pages.
 *
 * Layout of the reservation (all offsets from base):
 *
 *   0                 control page            pages[0]
 *   4096              data copy 1             pages[1..n-1]
 *   4096 + data       data copy 2             pages[1..n-1] again
 *   4096 + 2 * data   end
 *
 * The whole range is first reserved PROT_NONE so that the fixed mappings
 * cannot land on anything else, then each run of fd-contiguous pages is
 * mapped over it with MAP_FIXED.  The control page and data copy 1 are
 * adjacent in host memory too, so a physically contiguous ring costs two
 * mmap calls (plus the reservation).
 */
#include "xpartition/ring_map.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define PG ((size_t)HV_PAGE_SIZE)

/* Map cnt pages from src[] at dst, one mmap per fd-contiguous run. */
static int map_runs(uint8_t *dst, const struct ring_page_src *src, size_t cnt)
{
    size_t i = 0;
    while (i < cnt) {
        size_t j = i + 1;
        while (j < cnt && src[j].fd == src[i].fd &&
               src[j].offset == src[i].offset + (uint64_t)(j - i) * PG)
            j++;
        void *want = dst + i * PG;
        void *got = mmap(want, (j - i) * PG, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED,
                         src[i].fd, (off_t)src[i].offset);
        if (got == MAP_FAILED)
            return -errno;
        if (got != want) /* cannot happen with MAP_FIXED; be defensive */
            return -EFAULT;
        i = j;
    }
    return 0;
}

int ring_map(struct ring_mapping *m, const struct ring_page_src *pages, size_t n)
{
    if (!m)
        return -EINVAL;
    memset(m, 0, sizeof(*m));
    if (!pages || n < 2 || n - 1 > RING_MAP_MAX_DATA_PAGES)
        return -EINVAL;
    long host_page = sysconf(_SC_PAGESIZE);
    if (host_page != (long)PG)
        return -EINVAL; /* guest pages would not line up with host pages */
    for (size_t i = 0; i < n; i++) {
        if (pages[i].fd < 0)
            return -EBADF;
        if (pages[i].offset & (PG - 1) || pages[i].offset > (uint64_t)INT64_MAX - PG)
            return -EINVAL;
    }

    size_t data = (n - 1) * PG;
    size_t len = PG + 2 * data;
    uint8_t *base = mmap(NULL, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (base == MAP_FAILED)
        return -errno;

    int err = map_runs(base, pages, n); /* control page + data copy 1 */
    if (!err)
        err = map_runs(base + PG + data, pages + 1, n - 1); /* data copy 2 */
    if (err) {
        munmap(base, len);
        return err;
    }
    m->base = base;
    m->len = len;
    m->data_size = (uint32_t)data;
    return 0;
}

void ring_unmap(struct ring_mapping *m)
{
    if (!m)
        return;
    if (m->base)
        munmap(m->base, m->len);
    memset(m, 0, sizeof(*m));
}
