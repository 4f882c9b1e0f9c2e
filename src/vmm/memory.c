/* SPDX-License-Identifier: MIT */
/*
 * Guest RAM: one memfd, mapped once in the VMM and handed to vmbusd, so both
 * see the same pages.  RAM up to 3 GiB sits at GPA 0; anything beyond goes
 * above 4 GiB as a second region, leaving the 32-bit hole for LAPIC/IOAPIC.
 *
 * The memfd is shmem, whose transparent huge pages the host's
 * /sys/kernel/mm/transparent_hugepage/shmem_enabled governs apart from
 * anonymous memory's (Debian ships it "never").  On 4 KiB host pages every
 * guest TLB miss walks a nested page table that ends in 4 KiB entries; a VMM
 * on anonymous memory (QEMU marks its RAM MADV_HUGEPAGE) gets 2 MiB ones.
 * So the mapping is 2 MiB aligned and asks for huge pages, and the log says
 * whether the host lets it have them (docs/vmm.md, "Huge pages").
 * hugetlbfs is no alternative: vmbusd maps ring and GPADL pages of this fd
 * 4 KiB at a time, which a hugetlbfs file refuses.
 */
#include "vmm/vmm.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/log.h"

#define HUGE_2M (2ull << 20)
#define SHMEM_THP_KNOB "/sys/kernel/mm/transparent_hugepage/shmem_enabled"

/* The bracketed word of SHMEM_THP_KNOB ("always within_size [advise] never
 * ..."), or "" when the kernel has no such file (no THP at all). */
static void shmem_thp_setting(char *out, size_t outlen)
{
    char buf[128] = "";
    out[0] = 0;
    FILE *f = fopen(SHMEM_THP_KNOB, "re");
    if (!f)
        return;
    if (!fgets(buf, sizeof(buf), f))
        buf[0] = 0;
    fclose(f);
    char *open = strchr(buf, '['), *close = open ? strchr(open, ']') : NULL;
    if (open && close && (size_t)(close - open - 1) < outlen) {
        memcpy(out, open + 1, (size_t)(close - open - 1));
        out[close - open - 1] = 0;
    }
}

/* Whether a MADV_HUGEPAGE shmem mapping gets huge pages under SETTING. */
static bool shmem_thp_allows(const char *setting)
{
    return !strcmp(setting, "advise") || !strcmp(setting, "always") ||
           !strcmp(setting, "within_size") || !strcmp(setting, "force");
}

/* Maps BYTES of FD at a 2 MiB aligned address: KVM maps a guest range with
 * 2 MiB entries only where the host address and the GPA agree modulo 2 MiB,
 * and both RAM regions start at 2 MiB multiples of GPA and of fd offset. */
static void *map_aligned(int fd, uint64_t bytes)
{
    uint64_t span = bytes + HUGE_2M;
    uint8_t *res = mmap(NULL, span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (res == MAP_FAILED)
        return MAP_FAILED;
    uint8_t *at = (uint8_t *)(((uintptr_t)res + HUGE_2M - 1) & ~(uintptr_t)(HUGE_2M - 1));
    void *p = mmap(at, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE | MAP_FIXED, fd, 0);
    if (p == MAP_FAILED) {
        int e = errno;
        munmap(res, span);
        errno = e;
        return MAP_FAILED;
    }
    if (at > res)
        munmap(res, (size_t)(at - res));
    if (res + span > at + bytes)
        munmap(at + bytes, (size_t)(res + span - (at + bytes)));
    return p;
}

int mem_create(struct guest_mem *m, uint64_t bytes, bool huge)
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
    void *p = map_aligned(fd, bytes);
    if (p == MAP_FAILED) {
        log_err("mmap guest RAM: %s", strerror(errno));
        close(fd);
        return -1;
    }
    char thp[32];
    shmem_thp_setting(thp, sizeof(thp));
    if (!huge) {
        madvise(p, bytes, MADV_NOHUGEPAGE);
        log_info("guest RAM on 4 KiB pages (--huge-pages off)");
    } else if (madvise(p, bytes, MADV_HUGEPAGE) < 0) {
        log_info("guest RAM on 4 KiB pages: this kernel has no transparent huge pages (%s)",
                 strerror(errno));
    } else if (shmem_thp_allows(thp)) {
        log_info("guest RAM on 2 MiB transparent huge pages where the host has them "
                 "(shmem_enabled: %s)", thp);
    } else {
        log_info("guest RAM on 4 KiB pages: the host's %s is '%s'; writing 'advise' there "
                 "lets vmbus-vmm use 2 MiB pages (docs/vmm.md, \"Huge pages\")",
                 SHMEM_THP_KNOB, thp[0] ? thp : "?");
    }
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

bool smaps_field(const void *start, const char *field, char *out, size_t outlen)
{
    char want[32], line[512];
    size_t flen = strlen(field);
    bool in = false, found = false;
    snprintf(want, sizeof(want), "%lx-", (unsigned long)(uintptr_t)start);
    FILE *f = fopen("/proc/self/smaps", "re");
    if (!f)
        return false;
    while (fgets(line, sizeof(line), f)) {
        if (!in) {
            in = strncmp(line, want, strlen(want)) == 0;
            continue;
        }
        if (strncmp(line, field, flen) == 0 && line[flen] == ':') {
            snprintf(out, outlen, "%s", line + flen + 1);
            found = true;
            break;
        }
        if (strncmp(line, "VmFlags:", 8) == 0)
            break; /* the last field of the entry */
    }
    fclose(f);
    return found;
}

void mem_log_page_sizes(const struct guest_mem *m)
{
    char v[64];
    unsigned long rss_kb = 0, huge_kb = 0;
    if (!m->host)
        return;
    if (smaps_field(m->host, "Rss", v, sizeof(v)))
        rss_kb = strtoul(v, NULL, 10);
    if (smaps_field(m->host, "ShmemPmdMapped", v, sizeof(v)))
        huge_kb = strtoul(v, NULL, 10);
    log_info("guest RAM: %lu MiB resident, %lu MiB of it on 2 MiB host pages", rss_kb >> 10,
             huge_kb >> 10);
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
