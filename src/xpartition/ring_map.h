/* SPDX-License-Identifier: MIT */
/*
 * Map a ring's guest pages into vmbusd: control page first, then the data
 * pages twice back to back, so a packet that wraps reads contiguously.
 * Each page is mapped MAP_SHARED from the guest memory fd at its file offset;
 * runs of pages that are consecutive in the same fd share one mmap call.
 */
#ifndef VMBUSD_RING_MAP_H
#define VMBUSD_RING_MAP_H

#include <stddef.h>
#include <stdint.h>

#include "vmbusd/hv_wire.h"

struct ring_page_src {
    int fd;          /* guest memory fd */
    uint64_t offset; /* page-aligned file offset of this guest page */
};

struct ring_mapping {
    void *base;      /* control page; base + 4096 = data area (mapped twice) */
    size_t len;      /* bytes reserved: 4096 + 2 * data */
    uint32_t data_size;
};

/* Upper bound on data pages per ring (1 GiB of data); Linux rings are far
 * smaller, and ring.c keeps its index arithmetic in 32 bits below this. */
#define RING_MAP_MAX_DATA_PAGES (1u << 18)

/* pages[0] = control page, pages[1..n-1] = data pages
 * (2 <= n <= RING_MAP_MAX_DATA_PAGES + 1, fds >= 0, offsets page aligned).
 * Returns 0 or -errno (-EINVAL / -EBADF for bad input, mmap's errno
 * otherwise); on failure nothing stays mapped and *m is zeroed. */
int ring_map(struct ring_mapping *m, const struct ring_page_src *pages, size_t n);
/* Release everything ring_map reserved; safe on a zeroed or unmapped *m. */
void ring_unmap(struct ring_mapping *m);

static inline struct vmbus_ring_header *ring_mapping_hdr(const struct ring_mapping *m)
{
    return (struct vmbus_ring_header *)m->base;
}

static inline uint8_t *ring_mapping_data(const struct ring_mapping *m)
{
    return (uint8_t *)m->base + HV_PAGE_SIZE;
}

#endif
