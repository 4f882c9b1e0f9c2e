/* SPDX-License-Identifier: MIT */
/*
 * Test fixture shared by the ring unit tests: a memfd plays guest RAM, one
 * ring is built from a deliberately scrambled list of its pages and mapped
 * with ring_map (the host view).  The "guest" side of each test touches the
 * same ring only through the flat memfd mapping and the page list, with its
 * own byte-by-byte wrap handling, so it never depends on the double mapping
 * it is checking.
 */
#ifndef VMBUSD_TEST_RING_FIXTURE_H
#define VMBUSD_TEST_RING_FIXTURE_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vmbusd/hv_wire.h"
#include "xpartition/ring.h"
#include "xpartition/ring_map.h"

#define FX_MEM_PAGES 12u
#define FX_DATA_PAGES 4u

/* Guest page numbers: control page first, then the data pages in ring
 * order.  3,4 are contiguous (one mmap run); the rest are scattered. */
static const unsigned fx_page_list[1 + FX_DATA_PAGES] = {9, 3, 4, 10, 1};

struct fx {
    int fd;
    uint8_t *mem;                  /* guest view: the whole memfd, flat */
    struct ring_mapping m;         /* host view */
    struct vmbus_ring_header *hdr; /* host view of the control page */
    uint8_t *data;                 /* host view of the data area (double-mapped) */
    uint32_t size;
};

static inline int fx_open(struct fx *f)
{
    memset(f, 0, sizeof(*f));
    f->fd = memfd_create("fake-guest-ram", MFD_CLOEXEC);
    if (f->fd < 0)
        return -1;
    if (ftruncate(f->fd, (off_t)FX_MEM_PAGES * HV_PAGE_SIZE) < 0)
        return -1;
    f->mem = mmap(NULL, FX_MEM_PAGES * HV_PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, f->fd, 0);
    if (f->mem == MAP_FAILED)
        return -1;
    struct ring_page_src src[1 + FX_DATA_PAGES];
    for (unsigned i = 0; i < 1 + FX_DATA_PAGES; i++) {
        src[i].fd = f->fd;
        src[i].offset = (uint64_t)fx_page_list[i] * HV_PAGE_SIZE;
    }
    if (ring_map(&f->m, src, 1 + FX_DATA_PAGES) != 0)
        return -1;
    f->hdr = ring_mapping_hdr(&f->m);
    f->data = ring_mapping_data(&f->m);
    f->size = f->m.data_size;
    return 0;
}

static inline void fx_close(struct fx *f)
{
    ring_unmap(&f->m);
    if (f->mem && f->mem != MAP_FAILED)
        munmap(f->mem, FX_MEM_PAGES * HV_PAGE_SIZE);
    if (f->fd >= 0)
        close(f->fd);
}

/* ---- guest view ---------------------------------------------------- */

static inline struct vmbus_ring_header *g_hdr(struct fx *f)
{
    return (struct vmbus_ring_header *)(void *)(f->mem + fx_page_list[0] * HV_PAGE_SIZE);
}

static inline uint8_t *g_byte(struct fx *f, uint32_t off)
{
    off %= f->size;
    return f->mem + fx_page_list[1 + off / HV_PAGE_SIZE] * HV_PAGE_SIZE + off % HV_PAGE_SIZE;
}

static inline void g_write(struct fx *f, uint32_t off, const void *src, uint32_t len)
{
    for (uint32_t i = 0; i < len; i++)
        *g_byte(f, off + i) = ((const uint8_t *)src)[i];
}

static inline void g_read(struct fx *f, uint32_t off, void *dst, uint32_t len)
{
    for (uint32_t i = 0; i < len; i++)
        ((uint8_t *)dst)[i] = *g_byte(f, off + i);
}

/* Write a descriptor at the guest's current write_index, without moving it. */
static inline void g_put_desc(struct fx *f, uint16_t type, uint16_t off8, uint16_t len8,
                              uint64_t tid)
{
    struct vmpacket_descriptor d = {
        .type = type, .offset8 = off8, .len8 = len8, .flags = 0, .trans_id = tid};
    g_write(f, g_hdr(f)->write_index, &d, sizeof(d));
}

/* Like a Linux guest writer: descriptor, payload, padding, trailer, then
 * publish write_index.  No space check (tests arrange it).  Returns the
 * old write index. */
static inline uint32_t g_put_pkt(struct fx *f, uint16_t type, uint64_t tid, const void *payload,
                                 uint32_t plen)
{
    struct vmbus_ring_header *h = g_hdr(f);
    uint32_t w = h->write_index;
    uint32_t len = 16 + plen, padded = (len + 7) & ~7u;
    g_put_desc(f, type, 2, (uint16_t)(padded / 8), tid);
    g_write(f, w + 16, payload, plen);
    static const uint8_t zero[8];
    g_write(f, w + len, zero, padded - len);
    uint64_t trailer = (uint64_t)w << 32;
    g_write(f, w + padded, &trailer, 8);
    __atomic_store_n(&h->write_index, (w + padded + 8) % f->size, __ATOMIC_RELEASE);
    return w;
}

/* Like a Linux guest reader on the host->guest ring.  Returns the packet
 * length (len8 * 8) or 0 if empty; *trailer_ok tells whether the trailer
 * holds the packet's start index. */
static inline uint32_t g_get_pkt(struct fx *f, void *buf, uint32_t buflen, bool *trailer_ok)
{
    struct vmbus_ring_header *h = g_hdr(f);
    uint32_t r = h->read_index, w = __atomic_load_n(&h->write_index, __ATOMIC_ACQUIRE);
    if (r == w)
        return 0;
    struct vmpacket_descriptor d;
    g_read(f, r, &d, sizeof(d));
    uint32_t len = d.len8 * 8u;
    if (len > buflen)
        return 0;
    g_read(f, r, buf, len);
    uint64_t trailer;
    g_read(f, r + len, &trailer, 8);
    if (trailer_ok)
        *trailer_ok = trailer == (uint64_t)r << 32;
    __atomic_store_n(&h->read_index, (r + len + 8) % f->size, __ATOMIC_RELEASE);
    return len;
}

/* Guest "drains" by moving read_index up to write_index. */
static inline void g_consume_all(struct fx *f)
{
    g_hdr(f)->read_index = g_hdr(f)->write_index;
}

#endif
