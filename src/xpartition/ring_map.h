/* SPDX-License-Identifier: MIT */
/*
 * Map a ring's guest pages into vmbusd: control page first, then the data
 * pages twice back to back, so a packet that wraps reads contiguously.
 * Each page is mapped MAP_SHARED from the guest memory fd at its file offset.
 */
#ifndef VMBUSD_RING_MAP_H
#define VMBUSD_RING_MAP_H

#include <stddef.h>
#include <stdint.h>

struct ring_page_src {
    int fd;          /* guest memory fd */
    uint64_t offset; /* page-aligned file offset of this guest page */
};

struct ring_mapping {
    void *base;      /* control page; base + 4096 = data area (mapped twice) */
    size_t len;      /* bytes reserved: 4096 + 2 * data */
    uint32_t data_size;
};

/* pages[0] = control page, pages[1..n-1] = data pages (n >= 2).
 * Returns 0 or -errno. */
int ring_map(struct ring_mapping *m, const struct ring_page_src *pages, size_t n);
void ring_unmap(struct ring_mapping *m);

#endif
