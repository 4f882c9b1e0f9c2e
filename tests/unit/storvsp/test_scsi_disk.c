/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for the SCSI disk target (src/vsp/storvsp/scsi_*.c) over a
 * file backend in a temporary directory, run by meson once on io_uring and
 * once on the forced thread pool.  Every command the target implements, and
 * its error paths: what a guest's sd driver would see (status, sense key /
 * ASC / ASCQ, bytes transferred) and what is in the image afterwards.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "scsi_disk.h"
#include "stor_test.h"

#define BLOCKS 8192u /* 4 MiB images */

/* The thread pool's pwritev2 (pwritev64v2 with _FILE_OFFSET_BITS=64, which
 * meson sets), wrapped (--wrap): fails with write_errno when set, so a test
 * can pick the error (ENOSPC, EIO) a write meets. */
ssize_t __real_pwritev64v2(int fd, const struct iovec *iov, int n, off_t off, int flags);
ssize_t __wrap_pwritev64v2(int fd, const struct iovec *iov, int n, off_t off, int flags);
static volatile int write_errno;

ssize_t __wrap_pwritev64v2(int fd, const struct iovec *iov, int n, off_t off, int flags)
{
    if (write_errno) {
        errno = write_errno;
        return -1;
    }
    return __real_pwritev64v2(fd, iov, n, off, flags);
}
#define MAX_XFER (256u * 1024)

struct fx {
    char path[300];
    struct stor_backend *b;
    struct stor_queue *q;
    struct scsi_disk *d;
};

static struct fx *fx_new(const char *name, bool ro_cfg, bool ro_backend, unsigned depth)
{
    struct fx *f = calloc(1, sizeof(*f));
    snprintf(f->path, sizeof(f->path), "%s",
             stor_test_file(stor_test_dir(), name, (uint64_t)BLOCKS * 512));
    stor_test_open(f->path, ro_backend, depth, &f->b, &f->q);
    struct scsi_disk_config cfg = { .max_transfer = MAX_XFER, .readonly = ro_cfg, .lun = 3,
                                    .serial = "SER-42" };
    f->d = scsi_disk_create(f->b, &cfg);
    assert_non_null(f->d);
    return f;
}

static void fx_free(struct fx *f)
{
    scsi_disk_destroy(f->d);
    stor_queue_destroy(f->q);
    stor_backend_close(f->b);
    free(f);
}

static void cmd_done(struct scsi_cmd *cmd)
{
    bool *flag = cmd->arg;
    assert_false(*flag); /* exactly once */
    *flag = true;
}

/* Run one command with buf[0..buflen) as the only guest buffer. */
static void run_iov(struct fx *f, struct scsi_cmd *cmd, const uint8_t *cdb, unsigned cdb_len,
                    enum scsi_dir dir, uint32_t xfer, const struct iovec *iov, int iovcnt)
{
    static bool flag;
    memset(cmd, 0, sizeof(*cmd));
    memcpy(cmd->cdb, cdb, cdb_len);
    cmd->cdb_len = (uint8_t)cdb_len;
    cmd->dir = dir;
    cmd->xfer_len = xfer;
    cmd->iov = iov;
    cmd->iovcnt = iovcnt;
    cmd->done = cmd_done;
    flag = false;
    cmd->arg = &flag;
    scsi_disk_execute(f->d, f->q, cmd);
    stor_test_wait(f->q, &flag);
}

static void run(struct fx *f, struct scsi_cmd *cmd, const uint8_t *cdb, unsigned cdb_len,
                enum scsi_dir dir, void *buf, uint32_t buflen)
{
    static struct iovec iov;
    iov = (struct iovec){ buf, buflen };
    run_iov(f, cmd, cdb, cdb_len, dir, buflen, buf ? &iov : NULL, buf ? 1 : 0);
}

static void assert_good(const struct scsi_cmd *c, uint32_t transferred)
{
    if (c->status != SCSI_STATUS_GOOD)
        fail_msg("status %#x sense %x/%02x/%02x", c->status, c->sense[2], c->sense[12],
                 c->sense[13]);
    assert_int_equal(c->sense_len, 0);
    assert_int_equal(c->transferred, transferred);
}

static void assert_sense(const struct scsi_cmd *c, uint8_t key, uint8_t asc, uint8_t ascq)
{
    assert_int_equal(c->status, SCSI_STATUS_CHECK_CONDITION);
    assert_int_equal(c->sense_len, SCSI_SENSE_LEN);
    assert_int_equal(c->sense[0], 0x70);
    assert_int_equal(c->sense[7], 10);
    if (c->sense[2] != key || c->sense[12] != asc || c->sense[13] != ascq)
        fail_msg("sense %x/%02x/%02x, want %x/%02x/%02x", c->sense[2], c->sense[12],
                 c->sense[13], key, asc, ascq);
    assert_int_equal(c->transferred, 0);
}

static void be16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static void be32(uint8_t *p, uint32_t v) { be16(p, (uint16_t)(v >> 16)); be16(p + 2, (uint16_t)v); }
static void be64(uint8_t *p, uint64_t v) { be32(p, (uint32_t)(v >> 32)); be32(p + 4, (uint32_t)v); }
static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static uint32_t rd32(const uint8_t *p) { return (uint32_t)rd16(p) << 16 | rd16(p + 2); }
static uint64_t rd64(const uint8_t *p) { return (uint64_t)rd32(p) << 32 | rd32(p + 4); }

/* READ/WRITE CDBs of each size */
static unsigned cdb_rw(uint8_t *c, int size, bool write, uint64_t lba, uint32_t n)
{
    memset(c, 0, 16);
    switch (size) {
    case 6:
        c[0] = write ? 0x0a : 0x08;
        c[1] = (uint8_t)(lba >> 16) & 0x1f;
        be16(c + 2, (uint16_t)lba);
        c[4] = (uint8_t)n;
        return 6;
    case 10:
        c[0] = write ? 0x2a : 0x28;
        be32(c + 2, (uint32_t)lba);
        be16(c + 7, (uint16_t)n);
        return 10;
    case 12:
        c[0] = write ? 0xaa : 0xa8;
        be32(c + 2, (uint32_t)lba);
        be32(c + 6, n);
        return 12;
    default:
        c[0] = write ? 0x8a : 0x88;
        be64(c + 2, lba);
        be32(c + 10, n);
        return 16;
    }
}

static void file_read(const char *path, void *buf, size_t len, uint64_t off)
{
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, buf, len, (off_t)off), (ssize_t)len);
    close(fd);
}

static void check_pattern(const uint8_t *buf, size_t len, uint64_t off)
{
    for (size_t i = 0; i < len; i++)
        if (buf[i] != stor_test_pattern(off + i))
            fail_msg("byte at %llu differs", (unsigned long long)(off + i));
}

/* ---- commands answered from memory ---------------------------------- */

static void test_tur_start_stop_request_sense(void **state)
{
    struct fx *f = fx_new("tur", false, false, 4);
    struct scsi_cmd c;
    uint8_t cdb[16] = { 0x00 };
    run(f, &c, cdb, 6, SCSI_DIR_NONE, NULL, 0);
    assert_good(&c, 0);
    cdb[0] = 0x1b, cdb[4] = 0x01; /* START */
    run(f, &c, cdb, 6, SCSI_DIR_NONE, NULL, 0);
    assert_good(&c, 0);
    uint8_t buf[32];
    memset(cdb, 0, 16);
    cdb[0] = 0x03, cdb[4] = 18;
    run(f, &c, cdb, 6, SCSI_DIR_FROM_DEV, buf, sizeof(buf));
    assert_good(&c, 18);
    assert_int_equal(buf[0], 0x70);
    assert_int_equal(buf[2], 0);
    fx_free(f);
}

static void test_inquiry_standard(void **state)
{
    struct fx *f = fx_new("inq", false, false, 4);
    struct scsi_cmd c;
    uint8_t cdb[6] = { 0x12, 0, 0, 0, 36, 0 };
    uint8_t buf[96];
    memset(buf, 0xee, sizeof(buf));
    run(f, &c, cdb, 6, SCSI_DIR_FROM_DEV, buf, sizeof(buf));
    assert_good(&c, 36);
    assert_int_equal(buf[0], 0x00);           /* connected direct-access device */
    assert_int_equal(buf[4] + 5, 36);         /* additional length */
    assert_int_equal(buf[3] & 0x0f, 2);
    assert_true(buf[2] >= 5);
    assert_true(buf[7] & 0x02);               /* CMDQUE */
    assert_memory_equal(buf + 8, "Msft    ", 8);
    assert_memory_equal(buf + 16, "Virtual Disk    ", 16);
    assert_memory_equal(buf + 32, "1.0 ", 4);
    assert_int_equal(buf[36], 0xee);          /* nothing past the answer */

    /* allocation length 5 (the midlayer's first look) truncates */
    cdb[4] = 5;
    memset(buf, 0xee, sizeof(buf));
    run(f, &c, cdb, 6, SCSI_DIR_FROM_DEV, buf, sizeof(buf));
    assert_good(&c, 5);
    assert_int_equal(buf[5], 0xee);
    /* a guest buffer shorter than the allocation length */
    cdb[4] = 36;
    run(f, &c, cdb, 6, SCSI_DIR_FROM_DEV, buf, 10);
    assert_good(&c, 10);
    /* CMDDT, or a page code without EVPD */
    uint8_t bad1[6] = { 0x12, 0x02, 0, 0, 36, 0 };
    run(f, &c, bad1, 6, SCSI_DIR_FROM_DEV, buf, sizeof(buf));
    assert_sense(&c, SCSI_SK_ILLEGAL_REQUEST, 0x24, 0);
    uint8_t bad2[6] = { 0x12, 0x00, 0x83, 0, 36, 0 };
    run(f, &c, bad2, 6, SCSI_DIR_FROM_DEV, buf, sizeof(buf));
    assert_sense(&c, SCSI_SK_ILLEGAL_REQUEST, 0x24, 0);
    fx_free(f);
}

static void vpd(struct fx *f, struct scsi_cmd *c, uint8_t page, uint8_t *buf, size_t len)
{
    uint8_t cdb[6] = { 0x12, 0x01, page, 0, 0, 0 };
    be16(cdb + 3, (uint16_t)len);
    memset(buf, 0xee, len);
    run(f, c, cdb, 6, SCSI_DIR_FROM_DEV, buf, (uint32_t)len);
}

static void test_inquiry_vpd(void **state)
{
    struct fx *f = fx_new("vpd", false, false, 4);
    struct scsi_cmd c;
    uint8_t buf[256];

    vpd(f, &c, 0x00, buf, sizeof(buf));
    assert_good(&c, 4 + rd16(buf + 2));
    assert_int_equal(buf[1], 0x00);
    const uint8_t want[] = { 0x00, 0x80, 0x83, 0xb0, 0xb1, 0xb2 };
    assert_int_equal(rd16(buf + 2), sizeof(want));
    assert_memory_equal(buf + 4, want, sizeof(want));

    vpd(f, &c, 0x80, buf, sizeof(buf));
    assert_good(&c, 4 + 6);
    assert_int_equal(buf[1], 0x80);
    assert_memory_equal(buf + 4, "SER-42", 6);

    vpd(f, &c, 0x83, buf, sizeof(buf));
    assert_good(&c, 4 + rd16(buf + 2));
    /* first designator: NAA (type 3), binary, 8 bytes, NAA 3 locally assigned */
    assert_int_equal(buf[4] & 0x0f, 1);
    assert_int_equal(buf[5] & 0x0f, 3);
    assert_int_equal(buf[7], 8);
    assert_int_equal(buf[8] >> 4, 3);
    /* second: T10 vendor id "Msft    SER-42" */
    assert_int_equal(buf[17] & 0x0f, 1);
    assert_int_equal(buf[19], 14);
    assert_memory_equal(buf + 20, "Msft    SER-42", 14);

    vpd(f, &c, 0xb0, buf, sizeof(buf));
    assert_good(&c, 64);
    assert_int_equal(rd16(buf + 2), 0x3c);
    assert_int_equal(rd32(buf + 8), MAX_XFER / 512);   /* maximum transfer length */
    assert_int_equal(rd32(buf + 20), 0x400000);        /* maximum unmap LBA count */
    assert_int_equal(rd32(buf + 24), 256);             /* maximum unmap descriptors */
    assert_true(rd32(buf + 28) >= 1);                  /* unmap granularity */
    assert_int_equal(rd64(buf + 36), 0x400000);        /* maximum WRITE SAME length */

    vpd(f, &c, 0xb1, buf, sizeof(buf));
    assert_good(&c, 64);
    assert_int_equal(rd16(buf + 4), 1);                /* non-rotating */

    vpd(f, &c, 0xb2, buf, sizeof(buf));
    assert_good(&c, 8);
    assert_true(buf[5] & 0x80);                        /* LBPU: UNMAP */
    assert_true(buf[5] & 0x40);                        /* LBPWS: WRITE SAME(16) unmap */
    assert_true(buf[5] & 0x04);                        /* LBPRZ */
    assert_int_equal(buf[6] & 0x07, 2);                /* thin */

    /* truncated by the allocation length */
    vpd(f, &c, 0xb0, buf, 10);
    assert_good(&c, 10);

    /* a page not listed: no data (the guest ignores INQUIRY's status) */
    vpd(f, &c, 0x89, buf, sizeof(buf));
    assert_sense(&c, SCSI_SK_ILLEGAL_REQUEST, 0x24, 0);
    assert_int_equal(buf[0], 0xee);
    fx_free(f);
}

static void test_vpd_read_only_disk_no_unmap(void **state)
{
    struct fx *f = fx_new("vpdro", true, false, 4);
    struct scsi_cmd c;
    uint8_t buf[256];
    vpd(f, &c, 0xb0, buf, sizeof(buf));
    assert_good(&c, 64);
    assert_int_equal(rd32(buf + 20), 0);
    assert_int_equal(rd64(buf + 36), 0);
    vpd(f, &c, 0xb2, buf, sizeof(buf));
    assert_good(&c, 8);
    assert_int_equal(buf[5] & 0xe0, 0);
    uint8_t rc16[16] = { 0x9e, 0x10 };
    be32(rc16 + 10, 32);
    run(f, &c, rc16, 16, SCSI_DIR_FROM_DEV, buf, 32);
    assert_good(&c, 32);
    assert_int_equal(buf[14] & 0x80, 0);               /* no LBPME */
    fx_free(f);
}

static void test_report_luns(void **state)
{
    struct fx *f = fx_new("luns", false, false, 4);
    struct scsi_cmd c;
    uint8_t cdb[12] = { 0xa0 };
    be32(cdb + 6, 4096);
    uint8_t buf[4096];
    run(f, &c, cdb, 12, SCSI_DIR_FROM_DEV, buf, sizeof(buf));
    assert_good(&c, 16);
    assert_int_equal(rd32(buf), 8);
    assert_int_equal(rd64(buf + 8), 3ull << 48);       /* LUN 3, peripheral addressing */

    /* the controller's list, flat addressing above 255 */
    uint16_t luns[3] = { 0, 7, 300 };
    memset(&c, 0, sizeof(c));
    memcpy(c.cdb, cdb, 12);
    c.cdb_len = 12;
    c.dir = SCSI_DIR_FROM_DEV;
    c.xfer_len = sizeof(buf);
    struct iovec iov = { buf, sizeof(buf) };
    c.iov = &iov;
    c.iovcnt = 1;
    bool flag = false;
    c.done = cmd_done;
    c.arg = &flag;
    scsi_report_luns(&c, luns, 3);
    assert_true(flag);
    assert_good(&c, 32);
    assert_int_equal(rd32(buf), 24);
    assert_int_equal(rd16(buf + 16), 7);
    assert_int_equal(rd16(buf + 24), 0x4000 | 300);

    /* allocation length under 16 */
    be32(cdb + 6, 8);
    run(f, &c, cdb, 12, SCSI_DIR_FROM_DEV, buf, sizeof(buf));
    assert_sense(&c, SCSI_SK_ILLEGAL_REQUEST, 0x24, 0);
    fx_free(f);
}

static void test_absent_lun(void **state)
{
    struct scsi_cmd c;
    uint8_t buf[64];
    struct iovec iov = { buf, sizeof(buf) };
    bool flag = false;
    memset(&c, 0, sizeof(c));
    c.cdb[0] = 0x12;
    c.cdb[4] = 36;
    c.cdb_len = 6;
    c.dir = SCSI_DIR_FROM_DEV;
    c.xfer_len = sizeof(buf);
    c.iov = &iov;
    c.iovcnt = 1;
    c.done = cmd_done;
    c.arg = &flag;
    scsi_no_lun(&c);
    assert_true(flag);
    assert_good(&c, 36);
    assert_int_equal(buf[0], 0x7f);

    flag = false;
    memset(c.cdb, 0, 16);
    c.cdb[0] = 0x28;
    c.cdb_len = 10;
    scsi_no_lun(&c);
    assert_true(flag);
    assert_sense(&c, SCSI_SK_ILLEGAL_REQUEST, 0x25, 0);
}

static void test_read_capacity(void **state)
{
    struct fx *f = fx_new("cap", false, false, 4);
    struct scsi_cmd c;
    uint8_t buf[64];
    uint8_t rc10[10] = { 0x25 };
    run(f, &c, rc10, 10, SCSI_DIR_FROM_DEV, buf, sizeof(buf));
    assert_good(&c, 8);
    assert_int_equal(rd32(buf), BLOCKS - 1);
    assert_int_equal(rd32(buf + 4), 512);

    uint8_t rc16[16] = { 0x9e, 0x10 };
    be32(rc16 + 10, 32);
    run(f, &c, rc16, 16, SCSI_DIR_FROM_DEV, buf, sizeof(buf));
    assert_good(&c, 32);
    assert_int_equal(rd64(buf), BLOCKS - 1);
    assert_int_equal(rd32(buf + 8), 512);
    assert_true(buf[14] & 0x80);                       /* LBPME: UNMAP will be used */
    assert_true(buf[14] & 0x40);                       /* LBPRZ */
    /* allocation length truncates */
    be32(rc16 + 10, 12);
    run(f, &c, rc16, 16, SCSI_DIR_FROM_DEV, buf, sizeof(buf));
    assert_good(&c, 12);
    /* SERVICE ACTION IN(16) with another action */
    rc16[1] = 0x11;
    run(f, &c, rc16, 16, SCSI_DIR_FROM_DEV, buf, sizeof(buf));
    assert_sense(&c, SCSI_SK_ILLEGAL_REQUEST, 0x24, 0);
    fx_free(f);
}

static void test_read_capacity_beyond_2tib(void **state)
{
    char *p = stor_test_file(stor_test_dir(), "huge", 4096);
    assert_int_equal(truncate(p, 3ll << 40), 0); /* sparse, 3 TiB */
    struct stor_backend *b;
    struct stor_queue *q;
    stor_test_open(p, false, 4, &b, &q);
    struct scsi_disk *d = scsi_disk_create(b, NULL);
    struct fx f = { .b = b, .q = q, .d = d };
    struct scsi_cmd c;
    uint8_t buf[32];
    uint8_t rc10[10] = { 0x25 };
    run(&f, &c, rc10, 10, SCSI_DIR_FROM_DEV, buf, sizeof(buf));
    assert_good(&c, 8);
    assert_int_equal(rd32(buf), 0xffffffffu);          /* ask READ CAPACITY(16) */
    uint8_t rc16[16] = { 0x9e, 0x10 };
    be32(rc16 + 10, 32);
    run(&f, &c, rc16, 16, SCSI_DIR_FROM_DEV, buf, sizeof(buf));
    assert_int_equal(rd64(buf), (3ull << 40) / 512 - 1);
    /* MODE SENSE(6)'s short block descriptor saturates */
    uint8_t ms6[6] = { 0x1a, 0, 0x3f, 0, 255, 0 };
    run(&f, &c, ms6, 6, SCSI_DIR_FROM_DEV, buf, sizeof(buf));
    assert_int_equal(rd32(buf + 4) & 0xffffff, 0xffffff);
    scsi_disk_destroy(d);
    stor_queue_destroy(q);
    stor_backend_close(b);
    unlink(p);
}

static void test_mode_sense6(void **state)
{
    struct fx *f = fx_new("ms6", false, false, 4);
    struct scsi_cmd c;
    uint8_t buf[255];
    uint8_t cdb[6] = { 0x1a, 0, 0x3f, 0, 255, 0 };
    run(f, &c, cdb, 6, SCSI_DIR_FROM_DEV, buf, sizeof(buf));
    assert_good(&c, 4 + 8 + 20);
    assert_int_equal(buf[0], 4 + 8 + 20 - 1);          /* mode data length */
    assert_int_equal(buf[2] & 0x80, 0);                /* not write-protected */
    assert_int_equal(buf[3], 8);                       /* block descriptor length */
    assert_int_equal(rd32(buf + 8) & 0xffffff, 512);
    assert_int_equal(buf[12], 0x08);                   /* caching page */
    assert_int_equal(buf[13], 18);
    assert_true(buf[14] & 0x04);                       /* WCE: the guest will flush */

    /* the midlayer's first look: 4 bytes */
    cdb[4] = 4;
    run(f, &c, cdb, 6, SCSI_DIR_FROM_DEV, buf, sizeof(buf));
    assert_good(&c, 4);
    assert_int_equal(buf[0], 31);                      /* still the full length */

    /* DBD, page 8 only */
    uint8_t p8[6] = { 0x1a, 0x08, 0x08, 0, 255, 0 };
    run(f, &c, p8, 6, SCSI_DIR_FROM_DEV, buf, sizeof(buf));
    assert_good(&c, 24);
    assert_int_equal(buf[0], 23);
    assert_int_equal(buf[3], 0);
    assert_int_equal(buf[4], 0x08);
    assert_true(buf[6] & 0x04);

    /* changeable values: nothing */
    uint8_t ch[6] = { 0x1a, 0x08, 0x48, 0, 255, 0 };
    run(f, &c, ch, 6, SCSI_DIR_FROM_DEV, buf, sizeof(buf));
    assert_good(&c, 24);
    assert_int_equal(buf[6], 0);

    /* saved values, an unknown page, a subpage */
    uint8_t sv[6] = { 0x1a, 0, 0xc8, 0, 255, 0 };
    run(f, &c, sv, 6, SCSI_DIR_FROM_DEV, buf, sizeof(buf));
    assert_sense(&c, SCSI_SK_ILLEGAL_REQUEST, 0x39, 0);
    uint8_t unk[6] = { 0x1a, 0, 0x0a, 0, 255, 0 };
    run(f, &c, unk, 6, SCSI_DIR_FROM_DEV, buf, sizeof(buf));
    assert_sense(&c, SCSI_SK_ILLEGAL_REQUEST, 0x24, 0);
    uint8_t sub[6] = { 0x1a, 0, 0x08, 0x01, 255, 0 };
    run(f, &c, sub, 6, SCSI_DIR_FROM_DEV, buf, sizeof(buf));
    assert_sense(&c, SCSI_SK_ILLEGAL_REQUEST, 0x24, 0);
    fx_free(f);
}

static void test_mode_sense10_and_write_protect(void **state)
{
    struct fx *f = fx_new("ms10", true, false, 4);
    struct scsi_cmd c;
    uint8_t buf[512];
    uint8_t cdb[10] = { 0x5a, 0, 0x3f };
    be16(cdb + 7, sizeof(buf));
    run(f, &c, cdb, 10, SCSI_DIR_FROM_DEV, buf, sizeof(buf));
    assert_good(&c, 8 + 8 + 20);
    assert_int_equal(rd16(buf), 8 + 8 + 20 - 2);
    assert_true(buf[3] & 0x80);                        /* WP */
    assert_int_equal(rd16(buf + 6), 8);
    assert_int_equal(buf[16], 0x08);
    assert_int_equal(buf[18] & 0x04, 0);               /* read-only: no write cache */

    /* long LBA block descriptor */
    cdb[1] = 0x10;
    run(f, &c, cdb, 10, SCSI_DIR_FROM_DEV, buf, sizeof(buf));
    assert_good(&c, 8 + 16 + 20);
    assert_int_equal(buf[4] & 1, 1);
    assert_int_equal(rd16(buf + 6), 16);
    assert_int_equal(rd64(buf + 8), BLOCKS);
    assert_int_equal(rd32(buf + 20), 512);

    /* MODE SENSE(6) on the read-only disk: WP too */
    uint8_t ms6[6] = { 0x1a, 0, 0x3f, 0, 4, 0 };
    run(f, &c, ms6, 6, SCSI_DIR_FROM_DEV, buf, sizeof(buf));
    assert_good(&c, 4);
    assert_true(buf[2] & 0x80);
    fx_free(f);
}

/* ---- data ------------------------------------------------------------ */

static void test_read_write_all_sizes(void **state)
{
    struct fx *f = fx_new("rw", false, false, 4);
    struct scsi_cmd c;
    uint8_t cdb[16];
    uint8_t *buf = aligned_alloc(4096, 64 * 1024);
    const int sizes[] = { 6, 10, 12, 16 };
    for (int s = 0; s < 4; s++) {
        uint64_t lba = 100 + 40 * (uint64_t)s;
        unsigned n = cdb_rw(cdb, sizes[s], false, lba, 8);
        run(f, &c, cdb, n, SCSI_DIR_FROM_DEV, buf, 4096);
        assert_good(&c, 4096);
        check_pattern(buf, 4096, lba * 512);

        for (int i = 0; i < 4096; i++)
            buf[i] = (uint8_t)(s * 31 + i);
        n = cdb_rw(cdb, sizes[s], true, lba + 8, 8);
        run(f, &c, cdb, n, SCSI_DIR_TO_DEV, buf, 4096);
        assert_good(&c, 4096);
        uint8_t chk[4096 + 512];
        file_read(f->path, chk, sizeof(chk), (lba + 8) * 512);
        for (int i = 0; i < 4096; i++)
            assert_int_equal(chk[i], (uint8_t)(s * 31 + i));
        check_pattern(chk + 4096, 512, (lba + 16) * 512);

        memset(buf, 0, 4096);
        n = cdb_rw(cdb, sizes[s], false, lba + 8, 8);
        run(f, &c, cdb, n, SCSI_DIR_FROM_DEV, buf, 4096);
        assert_good(&c, 4096);
        for (int i = 0; i < 4096; i++)
            assert_int_equal(buf[i], (uint8_t)(s * 31 + i));
    }
    /* READ(6) with length 0 means 256 blocks */
    cdb_rw(cdb, 6, false, 4096, 0);
    uint8_t *big = malloc(256 * 512);
    run(f, &c, cdb, 6, SCSI_DIR_FROM_DEV, big, 256 * 512);
    assert_good(&c, 256 * 512);
    check_pattern(big, 256 * 512, 4096 * 512);
    /* READ(10) of 0 blocks: nothing, GOOD */
    cdb_rw(cdb, 10, false, 0, 0);
    run(f, &c, cdb, 10, SCSI_DIR_NONE, NULL, 0);
    assert_good(&c, 0);
    /* the last block, READ(16) */
    cdb_rw(cdb, 16, false, BLOCKS - 1, 1);
    run(f, &c, cdb, 16, SCSI_DIR_FROM_DEV, buf, 512);
    assert_good(&c, 512);
    check_pattern(buf, 512, (uint64_t)(BLOCKS - 1) * 512);
    /* FUA write */
    cdb_rw(cdb, 10, true, 10, 1);
    cdb[1] = 0x08;
    run(f, &c, cdb, 10, SCSI_DIR_TO_DEV, buf, 512);
    assert_good(&c, 512);
    free(big);
    free(buf);
    fx_free(f);
}

/* The guest's buffers as many small, unaligned pieces */
static void test_scattered_guest_buffers(void **state)
{
    struct fx *f = fx_new("scatter", false, false, 4);
    struct scsi_cmd c;
    uint8_t cdb[16];
    uint8_t *m = malloc(8192 + 64);
    struct iovec iov[5] = { { m + 1, 100 }, { m + 200, 924 }, { m + 1200, 1000 },
                            { m + 2300, 1072 }, { m + 4000, 4096 } };
    unsigned n = cdb_rw(cdb, 10, false, 7, 14); /* 7168 bytes: ends inside iov[4] */
    memset(m, 0xee, 8192 + 64);
    run_iov(f, &c, cdb, n, SCSI_DIR_FROM_DEV, 8192, iov, 5);
    assert_good(&c, 7168);
    uint8_t flat[7168];
    size_t o = 0;
    for (int i = 0; i < 5 && o < sizeof(flat); i++) {
        size_t k = iov[i].iov_len < sizeof(flat) - o ? iov[i].iov_len : sizeof(flat) - o;
        memcpy(flat + o, iov[i].iov_base, k);
        o += k;
    }
    check_pattern(flat, sizeof(flat), 7 * 512);
    /* not a byte past the transfer in the last piece */
    assert_int_equal(m[4000 + (7168 - (100 + 924 + 1000 + 1072))], 0xee);
    assert_int_equal(m[0], 0xee);
    assert_int_equal(m[101], 0xee);
    free(m);
    fx_free(f);
}

static void test_rw_errors(void **state)
{
    struct fx *f = fx_new("rwerr", false, false, 4);
    struct scsi_cmd c;
    uint8_t cdb[16];
    uint8_t *buf = malloc(MAX_XFER + 4096);
    unsigned n;

    /* LBA out of range: across the end, past it, and wrapping 64 bits */
    n = cdb_rw(cdb, 10, false, BLOCKS - 1, 2);
    run(f, &c, cdb, n, SCSI_DIR_FROM_DEV, buf, 1024);
    assert_sense(&c, SCSI_SK_ILLEGAL_REQUEST, 0x21, 0);
    n = cdb_rw(cdb, 16, true, BLOCKS, 1);
    run(f, &c, cdb, n, SCSI_DIR_TO_DEV, buf, 512);
    assert_sense(&c, SCSI_SK_ILLEGAL_REQUEST, 0x21, 0);
    n = cdb_rw(cdb, 16, false, UINT64_MAX, 2);
    run(f, &c, cdb, n, SCSI_DIR_FROM_DEV, buf, 1024);
    assert_sense(&c, SCSI_SK_ILLEGAL_REQUEST, 0x21, 0);

    /* above the maximum transfer length */
    n = cdb_rw(cdb, 10, false, 0, MAX_XFER / 512 + 1);
    run(f, &c, cdb, n, SCSI_DIR_FROM_DEV, buf, MAX_XFER + 512);
    assert_sense(&c, SCSI_SK_ILLEGAL_REQUEST, 0x24, 0);
    n = cdb_rw(cdb, 10, false, 0, MAX_XFER / 512);
    run(f, &c, cdb, n, SCSI_DIR_FROM_DEV, buf, MAX_XFER);
    assert_good(&c, MAX_XFER);

    /* guest buffer shorter than the CDB's transfer: refused, buffer untouched */
    memset(buf, 0xee, 4096);
    n = cdb_rw(cdb, 10, false, 0, 8);
    run(f, &c, cdb, n, SCSI_DIR_FROM_DEV, buf, 4096 - 512);
    assert_sense(&c, SCSI_SK_ILLEGAL_REQUEST, 0x24, 0);
    assert_int_equal(buf[0], 0xee);
    /* transfer length (xfer_len) shorter than the iovecs and the CDB */
    struct iovec iov = { buf, 4096 };
    run_iov(f, &c, cdb, n, SCSI_DIR_FROM_DEV, 2048, &iov, 1);
    assert_sense(&c, SCSI_SK_ILLEGAL_REQUEST, 0x24, 0);
    assert_int_equal(buf[0], 0xee);
    /* a larger buffer: the transfer only, the residual is the rest */
    run(f, &c, cdb, n, SCSI_DIR_FROM_DEV, buf, 8192);
    assert_good(&c, 4096);
    check_pattern(buf, 4096, 0);
    memset(buf, 0xee, 8192);
    run(f, &c, cdb, n, SCSI_DIR_FROM_DEV, buf, 8192);
    assert_int_equal(buf[4096], 0xee);
    /* the wrong direction: a READ whose buffer is data-out */
    run(f, &c, cdb, n, SCSI_DIR_TO_DEV, buf, 4096);
    assert_sense(&c, SCSI_SK_ILLEGAL_REQUEST, 0x24, 0);
    n = cdb_rw(cdb, 10, true, 0, 8);
    run(f, &c, cdb, n, SCSI_DIR_FROM_DEV, buf, 4096);
    assert_sense(&c, SCSI_SK_ILLEGAL_REQUEST, 0x24, 0);
    /* RDPROTECT */
    n = cdb_rw(cdb, 10, false, 0, 8);
    cdb[1] = 0x20;
    run(f, &c, cdb, n, SCSI_DIR_FROM_DEV, buf, 4096);
    assert_sense(&c, SCSI_SK_ILLEGAL_REQUEST, 0x24, 0);
    /* a CDB shorter than its opcode needs */
    n = cdb_rw(cdb, 16, false, 0, 1);
    run(f, &c, cdb, 10, SCSI_DIR_FROM_DEV, buf, 512);
    assert_sense(&c, SCSI_SK_ILLEGAL_REQUEST, 0x24, 0);
    /* the image is unchanged by all that */
    uint8_t chk[4096];
    file_read(f->path, chk, sizeof(chk), 0);
    check_pattern(chk, sizeof(chk), 0);
    free(buf);
    fx_free(f);
}

static void test_unknown_opcodes(void **state)
{
    struct fx *f = fx_new("unk", false, false, 4);
    struct scsi_cmd c;
    uint8_t buf[512];
    const uint8_t ops[] = { 0x01, 0x04, 0x1e, 0x2f, 0x4d, 0x55, 0x85, 0xa1, 0xa3, 0xff, 0x7f };
    for (size_t i = 0; i < sizeof(ops); i++) {
        uint8_t cdb[16] = { ops[i] };
        run(f, &c, cdb, 16, SCSI_DIR_FROM_DEV, buf, sizeof(buf));
        assert_sense(&c, SCSI_SK_ILLEGAL_REQUEST, 0x20, 0);
    }
    fx_free(f);
}

static void test_read_only_refuses_writes(void **state)
{
    /* read-only by configuration over a writable file, and a read-only backend */
    for (int variant = 0; variant < 2; variant++) {
        struct fx *f = fx_new(variant ? "ro2" : "ro1", variant == 0, variant == 1, 4);
        assert_true(scsi_disk_readonly(f->d));
        struct scsi_cmd c;
        uint8_t cdb[16];
        uint8_t buf[4096] = { 0 };
        const int sizes[] = { 6, 10, 12, 16 };
        for (int s = 0; s < 4; s++) {
            unsigned n = cdb_rw(cdb, sizes[s], true, 0, 1);
            run(f, &c, cdb, n, SCSI_DIR_TO_DEV, buf, 512);
            assert_sense(&c, SCSI_SK_DATA_PROTECT, 0x27, 0);
        }
        uint8_t ws[16] = { 0x93, 0x08 };
        be32(ws + 10, 8);
        run(f, &c, ws, 16, SCSI_DIR_TO_DEV, buf, 512);
        assert_sense(&c, SCSI_SK_DATA_PROTECT, 0x27, 0);
        uint8_t um[10] = { 0x42 };
        be16(um + 7, 24);
        run(f, &c, um, 10, SCSI_DIR_TO_DEV, buf, 24);
        assert_sense(&c, SCSI_SK_DATA_PROTECT, 0x27, 0);
        /* reads and flushes are fine */
        unsigned n = cdb_rw(cdb, 10, false, 0, 8);
        run(f, &c, cdb, n, SCSI_DIR_FROM_DEV, buf, 4096);
        assert_good(&c, 4096);
        uint8_t sc[10] = { 0x35 };
        run(f, &c, sc, 10, SCSI_DIR_NONE, NULL, 0);
        assert_good(&c, 0);
        uint8_t chk[512];
        file_read(f->path, chk, sizeof(chk), 0);
        check_pattern(chk, sizeof(chk), 0);
        fx_free(f);
    }
}

static void test_synchronize_cache(void **state)
{
    struct fx *f = fx_new("sync", false, false, 4);
    struct scsi_cmd c;
    uint8_t sc10[10] = { 0x35 };
    run(f, &c, sc10, 10, SCSI_DIR_NONE, NULL, 0);
    assert_good(&c, 0);
    be32(sc10 + 2, 100);
    be16(sc10 + 7, 10);
    run(f, &c, sc10, 10, SCSI_DIR_NONE, NULL, 0);
    assert_good(&c, 0);
    be32(sc10 + 2, BLOCKS - 5);
    run(f, &c, sc10, 10, SCSI_DIR_NONE, NULL, 0);
    assert_sense(&c, SCSI_SK_ILLEGAL_REQUEST, 0x21, 0);
    uint8_t sc16[16] = { 0x91 };
    run(f, &c, sc16, 16, SCSI_DIR_NONE, NULL, 0);
    assert_good(&c, 0);
    be64(sc16 + 2, BLOCKS);
    run(f, &c, sc16, 16, SCSI_DIR_NONE, NULL, 0);
    assert_sense(&c, SCSI_SK_ILLEGAL_REQUEST, 0x21, 0);
    fx_free(f);
}

/* ---- UNMAP and WRITE SAME -------------------------------------------- */

static unsigned unmap_list(uint8_t *pl, const uint64_t *lba, const uint32_t *cnt, int n)
{
    memset(pl, 0, 8 + 16 * (size_t)n);
    be16(pl, (uint16_t)(6 + 16 * n));
    be16(pl + 2, (uint16_t)(16 * n));
    for (int i = 0; i < n; i++) {
        be64(pl + 8 + 16 * i, lba[i]);
        be32(pl + 16 + 16 * i, cnt[i]);
    }
    return 8 + 16 * (unsigned)n;
}

static void assert_zero_range(const char *path, uint64_t lba, uint32_t n)
{
    uint8_t *b = malloc((size_t)n * 512);
    file_read(path, b, (size_t)n * 512, lba * 512);
    for (size_t i = 0; i < (size_t)n * 512; i++)
        if (b[i])
            fail_msg("block %llu not zero", (unsigned long long)(lba + i / 512));
    free(b);
}

static void test_unmap_punches_holes(void **state)
{
    struct fx *f = fx_new("unmap", false, false, 4);
    struct scsi_cmd c;
    uint8_t pl[8 + 16 * 3];
    uint64_t lba[3] = { 2048, 0, 6144 };
    uint32_t cnt[3] = { 2048, 0, 1024 };     /* 1 MiB, nothing, 512 KiB */
    unsigned len = unmap_list(pl, lba, cnt, 3);
    uint8_t cdb[10] = { 0x42 };
    be16(cdb + 7, (uint16_t)len);
    uint64_t before = stor_test_st_blocks(f->path);
    run(f, &c, cdb, 10, SCSI_DIR_TO_DEV, pl, len);
    assert_good(&c, 0);
    uint64_t after = stor_test_st_blocks(f->path);
    assert_true(after <= before - 3072);
    assert_zero_range(f->path, 2048, 2048);
    assert_zero_range(f->path, 6144, 1024);
    uint8_t chk[512];
    file_read(f->path, chk, 512, 2047 * 512);
    check_pattern(chk, 512, 2047 * 512);
    file_read(f->path, chk, 512, 4096 * 512);
    check_pattern(chk, 512, 4096 * 512);
    fx_free(f);
}

/* The parameter list is read once: a guest rewriting it after the command
 * was taken changes nothing of what is discarded. */
static void test_unmap_list_read_once(void **state)
{
    struct fx *f = fx_new("unmaponce", false, false, 1);
    struct scsi_cmd c;
    uint8_t pl[8 + 16 * 2];
    uint64_t lba[2] = { 1024, 4096 };
    uint32_t cnt[2] = { 8, 8 };
    unsigned len = unmap_list(pl, lba, cnt, 2);
    uint8_t cdb[10] = { 0x42 };
    be16(cdb + 7, (uint16_t)len);
    struct iovec iov = { pl, len };
    bool flag = false;
    memset(&c, 0, sizeof(c));
    memcpy(c.cdb, cdb, 10);
    c.cdb_len = 10;
    c.dir = SCSI_DIR_TO_DEV;
    c.xfer_len = len;
    c.iov = &iov;
    c.iovcnt = 1;
    c.done = cmd_done;
    c.arg = &flag;
    scsi_disk_execute(f->d, f->q, &c);
    /* the first descriptor is under way; the guest now rewrites the second */
    be64(pl + 8 + 16, 0);
    be32(pl + 16 + 16, 4096);
    stor_test_wait(f->q, &flag);
    assert_good(&c, 0);
    assert_zero_range(f->path, 4096, 8);
    uint8_t chk[512];
    file_read(f->path, chk, 512, 0);
    check_pattern(chk, 512, 0);
    fx_free(f);
}

static void test_unmap_errors(void **state)
{
    struct fx *f = fx_new("unmaperr", false, false, 4);
    struct scsi_cmd c;
    uint8_t pl[8 + 16 * 300];
    uint8_t cdb[10] = { 0x42 };
    uint64_t lba[2] = { 0, BLOCKS - 4 };
    uint32_t cnt[2] = { 8, 8 };

    /* parameter list length 0: nothing to do */
    run(f, &c, cdb, 10, SCSI_DIR_NONE, NULL, 0);
    assert_good(&c, 0);
    /* shorter than its header */
    be16(cdb + 7, 6);
    run(f, &c, cdb, 10, SCSI_DIR_TO_DEV, pl, 6);
    assert_sense(&c, SCSI_SK_ILLEGAL_REQUEST, 0x1a, 0);
    /* longer than the guest's buffer */
    unsigned len = unmap_list(pl, lba, cnt, 1);
    be16(cdb + 7, (uint16_t)len);
    run(f, &c, cdb, 10, SCSI_DIR_TO_DEV, pl, len - 1);
    assert_sense(&c, SCSI_SK_ILLEGAL_REQUEST, 0x1a, 0);
    /* block descriptor length not a multiple of 16, or past the list */
    be16(pl + 2, 15);
    run(f, &c, cdb, 10, SCSI_DIR_TO_DEV, pl, len);
    assert_sense(&c, SCSI_SK_ILLEGAL_REQUEST, 0x26, 0);
    be16(pl + 2, 32);
    run(f, &c, cdb, 10, SCSI_DIR_TO_DEV, pl, len);
    assert_sense(&c, SCSI_SK_ILLEGAL_REQUEST, 0x26, 0);
    /* a descriptor past the end: nothing is discarded, not even the first */
    len = unmap_list(pl, lba, cnt, 2);
    be16(cdb + 7, (uint16_t)len);
    run(f, &c, cdb, 10, SCSI_DIR_TO_DEV, pl, len);
    assert_sense(&c, SCSI_SK_ILLEGAL_REQUEST, 0x21, 0);
    uint8_t chk[512];
    file_read(f->path, chk, 512, 0);
    check_pattern(chk, 512, 0);
    /* more descriptors than VPD B0 allows */
    uint64_t l300[300];
    uint32_t c300[300];
    for (int i = 0; i < 300; i++)
        l300[i] = (uint64_t)i * 8, c300[i] = 1;
    len = unmap_list(pl, l300, c300, 257);
    be16(cdb + 7, (uint16_t)len);
    run(f, &c, cdb, 10, SCSI_DIR_TO_DEV, pl, len);
    assert_sense(&c, SCSI_SK_ILLEGAL_REQUEST, 0x26, 0);
    /* more blocks in all than the maximum unmap LBA count (a disk configured
     * with 16): refused, nothing done */
    struct scsi_disk_config small = { .max_unmap_blocks = 16 };
    struct scsi_disk *d16 = scsi_disk_create(f->b, &small);
    struct scsi_disk *saved = f->d;
    f->d = d16;
    uint64_t lb1[2] = { 0, 64 };
    uint32_t cb1[2] = { 8, 9 };
    len = unmap_list(pl, lb1, cb1, 2);
    be16(cdb + 7, (uint16_t)len);
    run(f, &c, cdb, 10, SCSI_DIR_TO_DEV, pl, len);
    assert_sense(&c, SCSI_SK_ILLEGAL_REQUEST, 0x26, 0);
    file_read(f->path, chk, 512, 0);
    check_pattern(chk, 512, 0);
    cb1[1] = 8;
    len = unmap_list(pl, lb1, cb1, 2);
    run(f, &c, cdb, 10, SCSI_DIR_TO_DEV, pl, len);
    assert_good(&c, 0);
    f->d = saved;
    scsi_disk_destroy(d16);
    /* ANCHOR */
    len = unmap_list(pl, lba, cnt, 1);
    uint8_t an[10] = { 0x42, 0x01 };
    be16(an + 7, (uint16_t)len);
    run(f, &c, an, 10, SCSI_DIR_TO_DEV, pl, len);
    assert_sense(&c, SCSI_SK_ILLEGAL_REQUEST, 0x24, 0);
    /* data-in buffer given for UNMAP's data-out list: no list */
    be16(cdb + 7, (uint16_t)len);
    run(f, &c, cdb, 10, SCSI_DIR_FROM_DEV, pl, len);
    assert_sense(&c, SCSI_SK_ILLEGAL_REQUEST, 0x1a, 0);
    fx_free(f);
}

static void test_write_same(void **state)
{
    struct fx *f = fx_new("ws", false, false, 4);
    struct scsi_cmd c;
    uint8_t blk[512] = { 0 };

    /* WRITE SAME(16) UNMAP with a zero block: a hole */
    uint8_t ws16[16] = { 0x93, 0x08 };
    be64(ws16 + 2, 1024);
    be32(ws16 + 10, 2048);
    uint64_t before = stor_test_st_blocks(f->path);
    run(f, &c, ws16, 16, SCSI_DIR_TO_DEV, blk, 512);
    assert_good(&c, 0);
    assert_true(stor_test_st_blocks(f->path) <= before - 2048);
    assert_zero_range(f->path, 1024, 2048);

    /* WRITE SAME(10) without UNMAP: the block written 3000 times (across
     * the 1 MiB chunks), the neighbours untouched */
    for (int i = 0; i < 512; i++)
        blk[i] = (uint8_t)(i ^ 0x5a);
    uint8_t ws10[10] = { 0x41 };
    be32(ws10 + 2, 4100);
    be16(ws10 + 7, 3000);
    run(f, &c, ws10, 10, SCSI_DIR_TO_DEV, blk, 512);
    assert_good(&c, 0);
    uint8_t *b = malloc(3002 * 512);
    file_read(f->path, b, 3002 * 512, 4099 * 512);
    check_pattern(b, 512, 4099 * 512);
    for (int k = 1; k <= 3000; k++)
        assert_memory_equal(b + 512 * k, blk, 512);
    check_pattern(b + 3001 * 512, 512, 7100 * 512);
    free(b);

    /* UNMAP bit with a non-zero block: written, not a hole */
    be64(ws16 + 2, 10);
    be32(ws16 + 10, 2);
    run(f, &c, ws16, 16, SCSI_DIR_TO_DEV, blk, 512);
    assert_good(&c, 0);
    uint8_t chk[1024];
    file_read(f->path, chk, 1024, 10 * 512);
    assert_memory_equal(chk, blk, 512);
    assert_memory_equal(chk + 512, blk, 512);

    /* NDOB: no data-out buffer, zeros */
    uint8_t nd[16] = { 0x93, 0x09 };
    be64(nd + 2, 20);
    be32(nd + 10, 8);
    run(f, &c, nd, 16, SCSI_DIR_NONE, NULL, 0);
    assert_good(&c, 0);
    assert_zero_range(f->path, 20, 8);

    /* errors: 0 blocks (WSNZ), out of range, no block given, ANCHOR */
    be32(ws16 + 10, 0);
    run(f, &c, ws16, 16, SCSI_DIR_TO_DEV, blk, 512);
    assert_sense(&c, SCSI_SK_ILLEGAL_REQUEST, 0x24, 0);
    be64(ws16 + 2, BLOCKS - 1);
    be32(ws16 + 10, 2);
    run(f, &c, ws16, 16, SCSI_DIR_TO_DEV, blk, 512);
    assert_sense(&c, SCSI_SK_ILLEGAL_REQUEST, 0x21, 0);
    be64(ws16 + 2, 0);
    run(f, &c, ws16, 16, SCSI_DIR_TO_DEV, blk, 100);
    assert_sense(&c, SCSI_SK_ILLEGAL_REQUEST, 0x24, 0);
    ws16[1] = 0x18;
    run(f, &c, ws16, 16, SCSI_DIR_TO_DEV, blk, 512);
    assert_sense(&c, SCSI_SK_ILLEGAL_REQUEST, 0x24, 0);
    fx_free(f);
}

/* ---- backend failures and a full queue ----------------------------- */

static struct fx *fx_over_fd(const char *name, int flags)
{
    struct fx *f = calloc(1, sizeof(*f));
    snprintf(f->path, sizeof(f->path), "%s",
             stor_test_file(stor_test_dir(), name, (uint64_t)BLOCKS * 512));
    int fd = open(f->path, flags | O_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(stor_backend_open_fd(fd, false, &f->b, NULL, 0), 0);
    assert_int_equal(stor_queue_create(f->b, 4, stor_test_queue_flags, &f->q), 0);
    f->d = scsi_disk_create(f->b, NULL);
    return f;
}

/* A backend I/O error is a MEDIUM ERROR of that command only (read: 11/00,
 * write: 0C/00); the other direction on the same disk keeps working. */
static void test_medium_errors(void **state)
{
    struct scsi_cmd c;
    uint8_t cdb[16];
    uint8_t *buf = aligned_alloc(4096, 4096);
    memset(buf, 0x42, 4096);

    struct fx *f = fx_over_fd("wronly", O_WRONLY);
    unsigned n = cdb_rw(cdb, 10, false, 8, 8);
    run(f, &c, cdb, n, SCSI_DIR_FROM_DEV, buf, 4096);
    assert_sense(&c, SCSI_SK_MEDIUM_ERROR, 0x11, 0);
    n = cdb_rw(cdb, 10, true, 8, 8);
    run(f, &c, cdb, n, SCSI_DIR_TO_DEV, buf, 4096);
    assert_good(&c, 4096);
    fx_free(f);

    f = fx_over_fd("rdonly", O_RDONLY);
    n = cdb_rw(cdb, 16, true, 8, 8);
    run(f, &c, cdb, n, SCSI_DIR_TO_DEV, buf, 4096);
    assert_sense(&c, SCSI_SK_MEDIUM_ERROR, 0x0c, 0);
    n = cdb_rw(cdb, 16, false, 8, 8);
    run(f, &c, cdb, n, SCSI_DIR_FROM_DEV, buf, 4096);
    assert_good(&c, 4096);
    check_pattern(buf, 4096, 8 * 512);
    /* this fd cannot punch holes, so the disk offers no WRITE SAME */
    uint8_t ws[16] = { 0x93 };
    be32(ws + 10, 1);
    run(f, &c, ws, 16, SCSI_DIR_TO_DEV, buf, 512);
    assert_sense(&c, SCSI_SK_ILLEGAL_REQUEST, 0x20, 0);
    fx_free(f);
    free(buf);
}

/* A write the file system has no room for is a provisioning failure
 * (07/27/07), any other write error a medium error (the pool's pwritev2
 * fails on demand; io_uring has no such hook, so that run skips). */
static void test_write_error_kinds(void **state)
{
    if (!stor_test_queue_flags)
        skip();
    struct fx *f = fx_new("enospc", false, false, 4);
    struct scsi_cmd c;
    uint8_t cdb[16];
    uint8_t *buf = aligned_alloc(4096, 4096);
    memset(buf, 0x11, 4096);
    unsigned n = cdb_rw(cdb, 10, true, 16, 8);
    write_errno = ENOSPC;
    run(f, &c, cdb, n, SCSI_DIR_TO_DEV, buf, 4096);
    write_errno = 0;
    assert_sense(&c, SCSI_SK_DATA_PROTECT, 0x27, 0x07);
    write_errno = EIO;
    run(f, &c, cdb, n, SCSI_DIR_TO_DEV, buf, 4096);
    write_errno = 0;
    assert_sense(&c, SCSI_SK_MEDIUM_ERROR, 0x0c, 0);
    run(f, &c, cdb, n, SCSI_DIR_TO_DEV, buf, 4096);
    assert_good(&c, 4096);
    free(buf);
    fx_free(f);
}

/* A full queue: TASK SET FULL (the guest retries), not an error */
static void test_queue_full(void **state)
{
    struct fx *f = fx_new("full", false, false, 1);
    struct scsi_cmd c1, c2;
    uint8_t cdb[16];
    uint8_t *buf = aligned_alloc(4096, 8192);
    struct iovec iov1 = { buf, 4096 }, iov2 = { buf + 4096, 4096 };
    bool f1 = false, f2 = false;
    unsigned n = cdb_rw(cdb, 10, false, 0, 8);
    memset(&c1, 0, sizeof(c1));
    memcpy(c1.cdb, cdb, n);
    c1.cdb_len = (uint8_t)n;
    c1.dir = SCSI_DIR_FROM_DEV;
    c1.xfer_len = 4096;
    c1.iov = &iov1;
    c1.iovcnt = 1;
    c1.done = cmd_done;
    c1.arg = &f1;
    c2 = c1;
    c2.iov = &iov2;
    c2.arg = &f2;
    scsi_disk_execute(f->d, f->q, &c1);
    scsi_disk_execute(f->d, f->q, &c2);
    assert_true(f2);
    assert_int_equal(c2.status, SCSI_STATUS_TASK_SET_FULL);
    assert_int_equal(c2.transferred, 0);
    stor_test_wait(f->q, &f1);
    assert_good(&c1, 4096);
    free(buf);
    fx_free(f);
}

int main(int argc, char **argv)
{
    stor_test_init(argc, argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tur_start_stop_request_sense),
        cmocka_unit_test(test_inquiry_standard),
        cmocka_unit_test(test_inquiry_vpd),
        cmocka_unit_test(test_vpd_read_only_disk_no_unmap),
        cmocka_unit_test(test_report_luns),
        cmocka_unit_test(test_absent_lun),
        cmocka_unit_test(test_read_capacity),
        cmocka_unit_test(test_read_capacity_beyond_2tib),
        cmocka_unit_test(test_mode_sense6),
        cmocka_unit_test(test_mode_sense10_and_write_protect),
        cmocka_unit_test(test_read_write_all_sizes),
        cmocka_unit_test(test_scattered_guest_buffers),
        cmocka_unit_test(test_rw_errors),
        cmocka_unit_test(test_unknown_opcodes),
        cmocka_unit_test(test_read_only_refuses_writes),
        cmocka_unit_test(test_synchronize_cache),
        cmocka_unit_test(test_unmap_punches_holes),
        cmocka_unit_test(test_unmap_list_read_once),
        cmocka_unit_test(test_unmap_errors),
        cmocka_unit_test(test_write_same),
        cmocka_unit_test(test_medium_errors),
        cmocka_unit_test(test_write_error_kinds),
        cmocka_unit_test(test_queue_full),
    };
    return cmocka_run_group_tests_name(stor_test_queue_flags ? "scsi disk (thread pool)"
                                                             : "scsi disk (io_uring)",
                                       tests, NULL, NULL);
}
