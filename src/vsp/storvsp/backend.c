/* SPDX-License-Identifier: MIT */
/* Opening a storage backend: what the image is (file or block device), its
 * size, whether O_DIRECT can be used and with which alignment, and whether
 * discards can punch holes. */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <linux/magic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "backend_priv.h"

/* Alignment assumed when the kernel does not say (statx without
 * STATX_DIOALIGN): a page covers every device's DMA alignment. */
#define DIO_ALIGN_UNKNOWN 4096u
/* Physical block reported for a regular file: holes are punched in pages. */
#define FILE_PHYS_BLOCK 4096u

static int fail(int err, char *buf, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(int err, char *buf, size_t len, const char *fmt, ...)
{
    if (buf && len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(buf, len, fmt, ap);
        va_end(ap);
    }
    return err;
}

static void set_why(struct stor_backend_info *info, const char *why)
{
    snprintf(info->why_buffered, sizeof(info->why_buffered), "%s", why);
}

/* Accepting O_DIRECT is not doing it: an overlayfs file whose upper layer is
 * tmpfs (Linux 6.1) takes the flag in open() and fcntl() but fails every
 * direct read with EINVAL.  Read the first block the way requests will. */
static bool direct_read_works(int fd, uint32_t mem_align)
{
    size_t align = mem_align > STOR_BLOCK_SIZE ? mem_align : STOR_BLOCK_SIZE;
    void *buf = NULL;
    if (posix_memalign(&buf, align, STOR_BLOCK_SIZE) != 0)
        return true; /* cannot tell; the requests will say */
    ssize_t n = pread(fd, buf, STOR_BLOCK_SIZE, 0);
    int err = errno;
    free(buf);
    return n >= 0 || err != EINVAL;
}

/* Switch fd to O_DIRECT if the file allows 512-byte direct I/O; else leave it
 * buffered and record why. */
static void choose_direct(int fd, const struct stat *st, struct stor_backend_info *info)
{
    uint32_t mem_align = DIO_ALIGN_UNKNOWN;

    if (info->dev_block_size > STOR_BLOCK_SIZE) {
        /* 512-byte guest writes need read-modify-write: the page cache does it */
        set_why(info, "device logical block size above 512");
        return;
    }
    struct statx sx;
    if (statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &sx) == 0 && (sx.stx_mask & STATX_DIOALIGN)) {
        if (sx.stx_dio_mem_align == 0) {
            set_why(info, "file system does not support O_DIRECT");
            return;
        }
        if (sx.stx_dio_offset_align > STOR_BLOCK_SIZE) {
            set_why(info, "O_DIRECT needs offsets aligned above 512");
            return;
        }
        mem_align = sx.stx_dio_mem_align;
    } else if (S_ISREG(st->st_mode)) {
        struct statfs sfs;
        /* tmpfs may accept O_DIRECT but its pages are the storage anyway */
        if (fstatfs(fd, &sfs) == 0 && sfs.f_type == TMPFS_MAGIC) {
            set_why(info, "tmpfs (no O_DIRECT)");
            return;
        }
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_DIRECT) < 0) {
        set_why(info, "the file refuses O_DIRECT");
        return;
    }
    if (!direct_read_works(fd, mem_align)) {
        fcntl(fd, F_SETFL, fl);
        set_why(info, "O_DIRECT reads fail (EINVAL)");
        return;
    }
    info->direct = true;
    info->dio_mem_align = mem_align;
}

/* A block device punches holes with WRITE ZEROES (unmapping where it can)
 * and refuses without it: ask sysfs (a partition's queue is its disk's). */
static bool blockdev_can_zero(int fd)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        return false;
    static const char *const where[] = { "queue", "../queue" };
    for (size_t i = 0; i < 2; i++) {
        char path[96];
        snprintf(path, sizeof(path), "/sys/dev/block/%u:%u/%s/write_zeroes_max_bytes",
                 major(st.st_rdev), minor(st.st_rdev), where[i]);
        FILE *f = fopen(path, "re");
        if (!f)
            continue;
        unsigned long long v = 0;
        bool ok = fscanf(f, "%llu", &v) == 1 && v > 0;
        fclose(f);
        return ok;
    }
    return false;
}

/* Regular files: punch a hole past the end (changes nothing) to learn whether
 * the file system can.  A block device zeroes whole logical blocks only (the
 * kernel refuses a range not aligned to them): with blocks above 512 bytes a
 * guest's 512-byte-granular UNMAP could neither be done nor leave zeros, so
 * such a device gets no discard at all rather than a partial one. */
static bool probe_discard(int fd, const struct stor_backend_info *info)
{
    if (info->readonly)
        return false;
    if (info->blockdev)
        return info->dev_block_size == STOR_BLOCK_SIZE && blockdev_can_zero(fd);
    off_t end = (off_t)((info->size + 4095) & ~4095ull);
    return fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, end + 4096, 4096) == 0;
}

/* A block device's size is not st_size (0 for a device node): ask the
 * device, with its block sizes and whether it is read-only. */
static int blockdev_geometry(int fd, struct stor_backend_info *info, uint64_t *size, char *err,
                             size_t errlen)
{
    info->blockdev = true;
    if (ioctl(fd, BLKGETSIZE64, size) < 0)
        return fail(-errno, err, errlen, "BLKGETSIZE64: %s", strerror(errno));
    int lbs = 0, pbs = 0, ro = 0;
    if (ioctl(fd, BLKSSZGET, &lbs) < 0)
        return fail(-errno, err, errlen, "BLKSSZGET: %s", strerror(errno));
    /* a power of two from 512 to 64 KiB is all Linux has; anything else
     * cannot be mapped onto 512-byte blocks */
    if (lbs < (int)STOR_BLOCK_SIZE || lbs > 65536 || (lbs & (lbs - 1)))
        return fail(-EINVAL, err, errlen, "unsupported logical block size %d", lbs);
    if (ioctl(fd, BLKPBSZGET, &pbs) < 0 || pbs < lbs || pbs > 65536 || (pbs & (pbs - 1)))
        pbs = lbs; /* unknown or nonsense: the logical block is all we know */
    info->dev_block_size = (uint32_t)lbs;
    info->phys_block_size = (uint32_t)pbs;
    if (ioctl(fd, BLKROGET, &ro) == 0 && ro && !info->readonly) {
        /* writes would fail one by one with EPERM: say so once, up front */
        info->readonly = true;
        info->device_readonly = true;
    }
    return 0;
}

static int backend_setup(int fd, bool readonly, bool try_direct, struct stor_backend **out,
                         char *err, size_t errlen)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        return fail(-errno, err, errlen, "fstat: %s", strerror(errno));

    struct stor_backend_info info = {
        .block_size = STOR_BLOCK_SIZE,
        .readonly = readonly,
        .dio_mem_align = 1,
    };
    uint64_t size;
    if (S_ISREG(st.st_mode)) {
        size = (uint64_t)st.st_size;
        info.dev_block_size = STOR_BLOCK_SIZE;
        info.phys_block_size = FILE_PHYS_BLOCK;
    } else if (S_ISBLK(st.st_mode)) {
        int r = blockdev_geometry(fd, &info, &size, err, errlen);
        if (r < 0)
            return r;
    } else {
        return fail(-EINVAL, err, errlen, "not a regular file or block device");
    }
    /* FNV-1a of (st_dev, st_ino): stable across restarts, differs per image */
    uint64_t h = 0xcbf29ce484222325ull, key[2] = { st.st_dev, st.st_ino };
    const uint8_t *kp = (const uint8_t *)key;
    for (size_t i = 0; i < sizeof(key); i++)
        h = (h ^ kp[i]) * 0x100000001b3ull;
    info.file_id = h;
    info.size = size & ~(uint64_t)(STOR_BLOCK_SIZE - 1);
    if (info.size == 0)
        return fail(-EINVAL, err, errlen, "smaller than one 512-byte block");

    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0 && (fl & O_DIRECT)) {
        info.direct = true;
        info.dio_mem_align = DIO_ALIGN_UNKNOWN;
        struct statx sx;
        if (statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &sx) == 0 &&
            (sx.stx_mask & STATX_DIOALIGN) && sx.stx_dio_mem_align)
            info.dio_mem_align = sx.stx_dio_mem_align;
    } else if (try_direct) {
        choose_direct(fd, &st, &info);
    } else {
        set_why(&info, "O_DIRECT not asked for");
    }
    info.discard = probe_discard(fd, &info);

    struct stor_backend *b = calloc(1, sizeof(*b));
    if (!b)
        return fail(-ENOMEM, err, errlen, "out of memory");
    b->fd = fd;
    b->info = info;
    *out = b;
    return 0;
}

/* Open path for the backend.  A block device is opened with O_EXCL (Linux:
 * without O_CREAT that claims the device), so one that is mounted, held by
 * md/dm, or already served to a VM is refused instead of corrupted by two
 * writers; its page cache would not be coherent with theirs either.  A device
 * that refuses to be opened for writing is opened read-only (backend_setup
 * then finds it read-only and says so). */
static int open_image(const char *path, bool readonly, char *err, size_t errlen)
{
    struct stat st;
    int excl = stat(path, &st) == 0 && S_ISBLK(st.st_mode) ? O_EXCL : 0;
    int fd = open(path, (readonly ? O_RDONLY : O_RDWR) | excl | O_CLOEXEC);
    if (fd < 0 && excl && !readonly && (errno == EROFS || errno == EACCES))
        fd = open(path, O_RDONLY | excl | O_CLOEXEC);
    if (fd >= 0)
        return fd;
    int e = errno;
    if (excl && e == EBUSY)
        return fail(-e, err, errlen,
                    "%s: block device in use (mounted, or held by md/dm/LVM or another VM)",
                    path);
    return fail(-e, err, errlen, "%s: %s", path, strerror(e));
}

int stor_backend_open(const char *path, bool readonly, unsigned flags,
                      struct stor_backend **out, char *err, size_t errlen)
{
    int fd = open_image(path, readonly, err, errlen);
    if (fd < 0)
        return fd;
    int r = backend_setup(fd, readonly, !(flags & STOR_OPEN_NO_DIRECT), out, err, errlen);
    if (r < 0) {
        close(fd);
        if (err && errlen) {
            char tmp[256];
            snprintf(tmp, sizeof(tmp), "%s", err);
            snprintf(err, errlen, "%s: %s", path, tmp);
        }
    }
    return r;
}

int stor_backend_open_fd(int fd, bool readonly, struct stor_backend **out, char *err,
                         size_t errlen)
{
    int r = backend_setup(fd, readonly, false, out, err, errlen);
    if (r < 0)
        close(fd);
    return r;
}

void stor_backend_close(struct stor_backend *b)
{
    if (!b)
        return;
    close(b->fd);
    free(b);
}

const struct stor_backend_info *stor_backend_info(const struct stor_backend *b)
{
    return &b->info;
}

void stor_backend_describe(const struct stor_backend *b, char *buf, size_t len)
{
    const struct stor_backend_info *i = &b->info;
    char io[96];
    if (i->direct)
        snprintf(io, sizeof(io), "O_DIRECT (memory alignment %u)", i->dio_mem_align);
    else
        snprintf(io, sizeof(io), "buffered: %s", i->why_buffered);
    char kind[96] = "file";
    if (i->blockdev)
        snprintf(kind, sizeof(kind), "block device, logical block %u%s, physical %u",
                 i->dev_block_size, i->dev_block_size > STOR_BLOCK_SIZE ? " (512 emulated)" : "",
                 i->phys_block_size);
    snprintf(buf, len, "%llu bytes, %s, %s, %s, %s", (unsigned long long)i->size, kind,
             i->device_readonly ? "read-only (device is read-only)"
             : i->readonly      ? "read-only"
                                : "read-write",
             io, i->discard ? "discard punches holes" : "no discard");
}
