/* SPDX-License-Identifier: MIT */
/*
 * Guest RAM: one memfd, mapped once in the VMM and handed to vmbusd, so both
 * see the same pages.  RAM up to 3 GiB sits at GPA 0; anything beyond goes
 * above 4 GiB as a second region, leaving the 32-bit hole for LAPIC/IOAPIC.
 */
#include "vmm/vmm.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/log.h"

int mem_create(struct guest_mem *m, uint64_t bytes)
{
    memset(m, 0, sizeof(*m));
    m->memfd = -1;
    if (bytes < (64ull << 20) || (bytes & 0xfffff)) {
        log_err("guest memory must be a multiple of 1 MiB and at least 64 MiB");
        return -1;
    }
    int fd = memfd_create("vmbus-vmm-ram", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0) {
        log_err("memfd_create: %s", strerror(errno));
        return -1;
    }
    if (ftruncate(fd, (off_t)bytes) < 0) {
        log_err("ftruncate guest RAM to %llu bytes: %s", (unsigned long long)bytes,
                strerror(errno));
        close(fd);
        return -1;
    }
    /* vmbusd maps this memory and refuses a memfd that could shrink under
     * it (docs/vmbus-user-protocol.md, MEM_REGION).  Guest RAM never changes
     * size, and its seals need not change either: F_SEAL_SEAL also keeps
     * anyone from write-sealing it later, which would break vmbusd's ring
     * mappings. */
    if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) {
        log_err("sealing guest RAM: %s", strerror(errno));
        close(fd);
        return -1;
    }
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
    if (p == MAP_FAILED) {
        log_err("mmap guest RAM: %s", strerror(errno));
        close(fd);
        return -1;
    }
    madvise(p, bytes, MADV_MERGEABLE);
    m->memfd = fd;
    m->host = p;
    m->total = bytes;
    uint64_t low = bytes < GUEST_HOLE_START ? bytes : GUEST_HOLE_START;
    m->regions[0] = (struct mem_region){.gpa = 0, .size = low, .fd_offset = 0};
    m->nregions = 1;
    if (bytes > low) {
        m->regions[1] = (struct mem_region){
            .gpa = GUEST_HIGH_START, .size = bytes - low, .fd_offset = low};
        m->nregions = 2;
    }
    return 0;
}

void mem_destroy(struct guest_mem *m)
{
    if (m->host)
        munmap(m->host, m->total);
    if (m->memfd >= 0)
        close(m->memfd);
    m->host = NULL;
    m->memfd = -1;
}

/* Returns all RAM to zero (guest reset) without changing the mapping. */
int mem_clear(struct guest_mem *m)
{
    if (fallocate(m->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, (off_t)m->total) < 0) {
        memset(m->host, 0, m->total);
    }
    return 0;
}

void *mem_gpa(struct guest_mem *m, uint64_t gpa, uint64_t len)
{
    for (int i = 0; i < m->nregions; i++) {
        const struct mem_region *r = &m->regions[i];
        if (gpa >= r->gpa && gpa - r->gpa <= r->size && len <= r->size - (gpa - r->gpa))
            return m->host + r->fd_offset + (gpa - r->gpa);
    }
    return NULL;
}

uint64_t mem_low_end(const struct guest_mem *m)
{
    return m->regions[0].size;
}
