/* SPDX-License-Identifier: MIT */
/*
 * The storage backend and SCSI target over a real block device: loop devices
 * made by the test (loopdev.h) on sparse files in the test's directory, run
 * by meson once on io_uring and once on the thread pool.  What a guest sees
 * (READ CAPACITY, VPD pages, sense) and what lands on the device, checked
 * byte for byte in the loop's backing file.  Exits 77 where loop devices
 * cannot be made (not root, no /dev/loop-control).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "loopdev.h"
#include "scsi_disk.h"
#include "stor_test.h"

#define IMG_SIZE (8u << 20)
#define BLOCKS (IMG_SIZE / 512)

struct fx {
    char file[300];        /* the loop's backing file */
    struct loopdev loop;
    struct stor_backend *b;
    struct stor_queue *q;
    struct scsi_disk *d;
};

/* A loop device over a new file of IMG_SIZE: sparse, or full of
 * stor_test_pattern when filled. */
static struct fx *fx_new(const char *name, bool filled, unsigned sector, bool ro_dev)
{
    struct fx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    if (filled) {
        snprintf(f->file, sizeof(f->file), "%s", stor_test_file(stor_test_dir(), name, IMG_SIZE));
    } else {
        snprintf(f->file, sizeof(f->file), "%s/%s", stor_test_dir(), name);
        int fd = open(f->file, O_RDWR | O_CREAT | O_TRUNC, 0600);
        assert_true(fd >= 0);
        assert_int_equal(ftruncate(fd, IMG_SIZE), 0);
        close(fd);
    }
    loopdev_attach(f->file, sector, ro_dev, &f->loop);
    return f;
}

static void fx_open(struct fx *f)
{
    stor_test_open(f->loop.path, false, 16, &f->b, &f->q);
    struct scsi_disk_config cfg = { .max_transfer = 256u * 1024 };
    f->d = scsi_disk_create(f->b, &cfg);
    assert_non_null(f->d);
}

static void fx_free(struct fx *f)
{
    if (f->d)
        scsi_disk_destroy(f->d);
    if (f->q)
        stor_queue_destroy(f->q);
    if (f->b)
        stor_backend_close(f->b);
    loopdev_detach(&f->loop);
    free(f);
}

static void cmd_done(struct scsi_cmd *cmd)
{
    bool *flag = cmd->arg;
    assert_false(*flag); /* exactly once */
    *flag = true;
}

static void run(struct fx *f, struct scsi_cmd *cmd, const uint8_t *cdb, unsigned cdb_len,
                enum scsi_dir dir, void *buf, uint32_t len)
{
    static bool flag;
    static struct iovec iov;
    iov = (struct iovec){ buf, len };
    memset(cmd, 0, sizeof(*cmd));
    memcpy(cmd->cdb, cdb, cdb_len);
    cmd->cdb_len = (uint8_t)cdb_len;
    cmd->dir = dir;
    cmd->xfer_len = len;
    cmd->iov = buf ? &iov : NULL;
    cmd->iovcnt = buf ? 1 : 0;
    cmd->done = cmd_done;
    flag = false;
    cmd->arg = &flag;
    scsi_disk_execute(f->d, f->q, cmd);
    stor_test_wait(f->q, &flag);
}

static void assert_good(const struct scsi_cmd *c)
{
    if (c->status != SCSI_STATUS_GOOD)
        fail_msg("status %#x sense %x/%02x/%02x", c->status, c->sense[2], c->sense[12],
                 c->sense[13]);
}

static void assert_sense(const struct scsi_cmd *c, uint8_t key, uint8_t asc)
{
    assert_int_equal(c->status, SCSI_STATUS_CHECK_CONDITION);
    if (c->sense[2] != key || c->sense[12] != asc)
        fail_msg("sense %x/%02x, want %x/%02x", c->sense[2], c->sense[12], key, asc);
}

static void be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}
static void be64(uint8_t *p, uint64_t v) { be32(p, (uint32_t)(v >> 32)); be32(p + 4, (uint32_t)v); }
static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static uint64_t rd64(const uint8_t *p) { return (uint64_t)rd32(p) << 32 | rd32(p + 4); }

/* READ(16) / WRITE(16), FUA on writes */
static void rw(struct fx *f, bool write, uint64_t lba, void *buf, uint32_t nblocks)
{
    uint8_t cdb[16] = { write ? 0x8a : 0x88, write ? 0x08 : 0 };
    be64(cdb + 2, lba);
    be32(cdb + 10, nblocks);
    struct scsi_cmd c;
    run(f, &c, cdb, 16, write ? SCSI_DIR_TO_DEV : SCSI_DIR_FROM_DEV, buf, nblocks * 512);
    assert_good(&c);
    assert_int_equal(c.transferred, nblocks * 512);
}

static void sync_cache(struct fx *f)
{
    uint8_t cdb[10] = { 0x35 };
    struct scsi_cmd c;
    run(f, &c, cdb, 10, SCSI_DIR_NONE, NULL, 0);
    assert_good(&c);
}

static void read_capacity16(struct fx *f, uint8_t *b32)
{
    uint8_t cdb[16] = { 0x9e, 0x10 };
    be32(cdb + 10, 32);
    struct scsi_cmd c;
    run(f, &c, cdb, 16, SCSI_DIR_FROM_DEV, b32, 32);
    assert_good(&c);
}

static void vpd(struct fx *f, uint8_t page, uint8_t *buf, uint16_t len)
{
    uint8_t cdb[6] = { 0x12, 0x01, page, (uint8_t)(len >> 8), (uint8_t)len };
    struct scsi_cmd c;
    run(f, &c, cdb, 6, SCSI_DIR_FROM_DEV, buf, len);
    assert_good(&c);
}

static void file_read(const char *path, void *buf, size_t len, uint64_t off)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, buf, len, (off_t)off), (ssize_t)len);
    close(fd);
}

static bool is_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return false;
    return true;
}

static unsigned ilog2(unsigned v)
{
    unsigned e = 0;
    while (v >>= 1)
        e++;
    return e;
}

/* The device's own answer, asked on the loop's holder fd. */
static int dev_ioctl_int(struct fx *f, unsigned long req)
{
    int v = 0;
    assert_int_equal(ioctl(f->loop.fd, req, &v), 0);
    return v;
}

/* 512-byte logical blocks: the size is the device's (a device node's
 * st_size is 0), the physical block is the device's, O_DIRECT is used, and
 * discard is offered exactly when the device can write zeroes. */
static void test_geometry_512(void **state)
{
    (void)state;
    struct fx *f = fx_new("g512", false, 0, false);
    fx_open(f);
    const struct stor_backend_info *i = stor_backend_info(f->b);
    int pbs = dev_ioctl_int(f, BLKPBSZGET);
    assert_true(i->blockdev);
    assert_false(i->readonly);
    assert_int_equal(i->size, IMG_SIZE);
    assert_int_equal(i->dev_block_size, 512);
    assert_int_equal(i->phys_block_size, pbs);
    assert_true(i->direct);

    uint8_t b[32];
    read_capacity16(f, b);
    assert_int_equal(rd64(b), BLOCKS - 1);
    assert_int_equal(rd32(b + 8), 512);
    assert_int_equal(b[13] & 0x0f, ilog2((unsigned)pbs / 512));
    assert_int_equal(!!(b[14] & 0x80), i->discard); /* LBPME */

    uint8_t b0[64];
    vpd(f, 0xb0, b0, sizeof(b0));
    assert_int_equal(b0[6] << 8 | b0[7], pbs / 512); /* optimal transfer granularity */
    fx_free(f);
}

/* 4096-byte logical blocks: still 512-byte blocks for the guest (through the
 * page cache), 4 KiB physical, and no discard since the device cannot zero
 * a 512-byte block: READ CAPACITY's LBPME, VPD B2 and B0 say so and UNMAP
 * is not there.  A 512-byte write inside a 4 KiB block lands where it should
 * and leaves the rest of that block alone. */
static void test_4k_sectors(void **state)
{
    (void)state;
    struct fx *f = fx_new("g4k", false, 4096, false);
    fx_open(f);
    const struct stor_backend_info *i = stor_backend_info(f->b);
    assert_int_equal(i->size, IMG_SIZE);
    assert_int_equal(i->dev_block_size, 4096);
    assert_int_equal(i->phys_block_size, 4096);
    assert_false(i->direct);
    assert_false(i->discard);

    uint8_t b[32];
    read_capacity16(f, b);
    assert_int_equal(rd64(b), BLOCKS - 1);
    assert_int_equal(rd32(b + 8), 512);
    assert_int_equal(b[13] & 0x0f, 3);
    assert_int_equal(b[14] & 0xc0, 0); /* no LBPME, no LBPRZ */
    uint8_t b2[8];
    vpd(f, 0xb2, b2, sizeof(b2));
    assert_int_equal(b2[5] & 0xe0, 0); /* no LBPU, LBPWS, LBPWS10 */
    uint8_t b0[64];
    vpd(f, 0xb0, b0, sizeof(b0));
    assert_int_equal(b0[6] << 8 | b0[7], 8);
    assert_int_equal(rd64(b0 + 36), 0); /* maximum WRITE SAME length */
    uint8_t cdb[10] = { 0x42 }, pl[24] = { 0 };
    cdb[8] = sizeof(pl);
    struct scsi_cmd c;
    run(f, &c, cdb, 10, SCSI_DIR_TO_DEV, pl, sizeof(pl));
    assert_sense(&c, SCSI_SK_ILLEGAL_REQUEST, 0x20);

    uint8_t w[512], r[4096], img[4096];
    for (size_t k = 0; k < sizeof(w); k++)
        w[k] = (uint8_t)(k * 7 + 1);
    rw(f, true, 3, w, 1); /* the fourth 512-byte block of device block 0 */
    sync_cache(f);
    rw(f, false, 0, r, 8);
    file_read(f->file, img, sizeof(img), 0);
    assert_memory_equal(r, img, sizeof(r));
    assert_true(is_zero(img, 3 * 512));
    assert_memory_equal(img + 3 * 512, w, 512);
    assert_true(is_zero(img + 4 * 512, 4 * 512));
    fx_free(f);
}

/* A read-only device asked for read-write becomes a read-only LUN: writes
 * get DATA PROTECT / WRITE PROTECTED (not a medium error per write), MODE
 * SENSE sets WP, reads work. */
static void test_read_only_device(void **state)
{
    (void)state;
    struct fx *f = fx_new("ro", true, 0, true);
    fx_open(f);
    const struct stor_backend_info *i = stor_backend_info(f->b);
    assert_true(i->readonly);
    assert_true(i->device_readonly);
    assert_false(i->discard);
    char desc[256];
    stor_backend_describe(f->b, desc, sizeof(desc));
    assert_non_null(strstr(desc, "device is read-only"));
    assert_true(scsi_disk_readonly(f->d));

    uint8_t buf[4096];
    rw(f, false, 16, buf, 8);
    for (size_t k = 0; k < sizeof(buf); k++)
        assert_int_equal(buf[k], stor_test_pattern(16 * 512 + k));
    uint8_t cdb[10] = { 0x2a, 0, 0, 0, 0, 16, 0, 0, 1, 0 };
    struct scsi_cmd c;
    run(f, &c, cdb, 10, SCSI_DIR_TO_DEV, buf, 512);
    assert_sense(&c, SCSI_SK_DATA_PROTECT, 0x27);
    uint8_t ms6[6] = { 0x1a, 0x08, 0x3f, 0, 64 }, m[64];
    run(f, &c, ms6, 6, SCSI_DIR_FROM_DEV, m, sizeof(m));
    assert_good(&c);
    assert_true(m[2] & 0x80); /* WP */
    fx_free(f);
}

/* A device someone else holds exclusively (a mount does) or that another
 * backend (VM) serves is refused with -EBUSY and a reason; it opens again
 * once released. */
static void test_in_use_refused(void **state)
{
    (void)state;
    struct fx *f = fx_new("busy", false, 0, false);
    struct stor_backend *b2 = NULL;
    char err[256] = "";

    int held = open(f->loop.path, O_RDONLY | O_EXCL | O_CLOEXEC);
    assert_true(held >= 0);
    assert_int_equal(stor_backend_open(f->loop.path, false, 0, &b2, err, sizeof(err)), -EBUSY);
    assert_non_null(strstr(err, "in use"));
    close(held);

    fx_open(f);
    err[0] = 0;
    assert_int_equal(stor_backend_open(f->loop.path, true, 0, &b2, err, sizeof(err)), -EBUSY);
    assert_non_null(strstr(err, "in use"));
    stor_queue_destroy(f->q);
    stor_backend_close(f->b);
    f->q = NULL;
    f->d = (scsi_disk_destroy(f->d), NULL);
    f->b = NULL;
    assert_int_equal(stor_backend_open(f->loop.path, false, 0, &b2, err, sizeof(err)), 0);
    stor_backend_close(b2);
    fx_free(f);
}

/* Write, flush, read back and discard through the device, each checked byte
 * for byte in the loop's backing file; the blocks around are untouched. */
static void test_round_trip(void **state)
{
    (void)state;
    struct fx *f = fx_new("rt", true, 0, false);
    fx_open(f);
    const struct stor_backend_info *i = stor_backend_info(f->b);
    enum { LBA = 100, N = 64 };
    /* one page-aligned guest buffer and one misaligned (the O_DIRECT bounce) */
    uint8_t *mem = aligned_alloc(4096, (N + 8) * 512 + 8192); /* w2 ends 8 bytes past a page */
    uint8_t *r = aligned_alloc(4096, (N + 32) * 512);
    uint8_t *img = malloc((N + 32) * 512);
    assert_non_null(mem);
    assert_non_null(r);
    assert_non_null(img);
    uint8_t *w1 = mem, *w2 = mem + N * 512 + 4096 + 8;
    for (size_t k = 0; k < N * 512; k++)
        w1[k] = (uint8_t)~stor_test_pattern(LBA * 512 + k);
    for (size_t k = 0; k < 8 * 512; k++)
        w2[k] = (uint8_t)(k ^ 0x5a);
    rw(f, true, LBA, w1, N);
    rw(f, true, LBA + N + 4, w2, 8);
    sync_cache(f);

    /* LBA-16 .. LBA+N+16 through the device and in the backing file */
    uint64_t from = LBA - 16;
    rw(f, false, from, r, N + 32);
    file_read(f->file, img, (N + 32) * 512, from * 512);
    assert_memory_equal(r, img, (N + 32) * 512);
    for (size_t k = 0; k < 16 * 512; k++)
        assert_int_equal(img[k], stor_test_pattern(from * 512 + k));
    assert_memory_equal(img + 16 * 512, w1, N * 512);
    for (size_t k = 0; k < 4 * 512; k++)
        assert_int_equal(img[(16 + N) * 512 + k], stor_test_pattern((LBA + N) * 512 + k));
    assert_memory_equal(img + (16 + N + 4) * 512, w2, 8 * 512);

    if (!i->discard) {
        free(mem), free(r), free(img);
        fx_free(f);
        skip(); /* visible: this device (loop over this file system) cannot zero */
    }
    /* UNMAP 16 blocks in the middle of what was written */
    uint64_t blocks_before = stor_test_st_blocks(f->file);
    uint8_t cdb[10] = { 0x42 }, pl[24] = { 0 };
    cdb[8] = sizeof(pl);
    pl[1] = 22;
    pl[3] = 16;
    be64(pl + 8, LBA + 16);
    be32(pl + 16, 16);
    struct scsi_cmd c;
    run(f, &c, cdb, 10, SCSI_DIR_TO_DEV, pl, sizeof(pl));
    assert_good(&c);
    /* WRITE SAME(16) with UNMAP and a zero block: 8 more blocks */
    uint8_t ws[16] = { 0x93, 0x08 }, zero[512] = { 0 };
    be64(ws + 2, LBA + 40);
    be32(ws + 10, 8);
    run(f, &c, ws, 16, SCSI_DIR_TO_DEV, zero, sizeof(zero));
    assert_good(&c);
    sync_cache(f);

    rw(f, false, LBA, r, N);
    file_read(f->file, img, N * 512, LBA * 512);
    assert_memory_equal(r, img, N * 512);
    assert_memory_equal(img, w1, 16 * 512);
    assert_true(is_zero(img + 16 * 512, 16 * 512));
    assert_memory_equal(img + 32 * 512, w1 + 32 * 512, 8 * 512);
    assert_true(is_zero(img + 40 * 512, 8 * 512));
    assert_memory_equal(img + 48 * 512, w1 + 48 * 512, 16 * 512);
    /* holes in the backing file, not written zeros */
    assert_true(stor_test_st_blocks(f->file) < blocks_before);
    free(mem), free(r), free(img);
    fx_free(f);
}

int main(int argc, char **argv)
{
    const char *why = loopdev_unavailable();
    if (why) {
        fprintf(stderr, "SKIP: %s\n", why);
        return 77;
    }
    stor_test_init(argc, argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_geometry_512),
        cmocka_unit_test(test_4k_sectors),
        cmocka_unit_test(test_read_only_device),
        cmocka_unit_test(test_in_use_refused),
        cmocka_unit_test(test_round_trip),
    };
    return cmocka_run_group_tests_name(stor_test_queue_flags ? "block device (thread pool)"
                                                             : "block device (io_uring)",
                                       tests, NULL, NULL);
}
