/* SPDX-License-Identifier: MIT */
/* The SCSI disk target: decoding a CDB and running the commands that reach
 * the backend (READ, WRITE, SYNCHRONIZE CACHE, UNMAP, WRITE SAME); the
 * answers from memory are in scsi_info.c. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "scsi_priv.h"

#define DEFAULT_MAX_TRANSFER   (1u << 20)
#define DEFAULT_MAX_UNMAP      0x400000u /* blocks: 2 GiB */
#define DEFAULT_MAX_UNMAP_DESC 256
#define WRITE_SAME_CHUNK       (1u << 20) /* bytes of pattern written per request */

enum cmd_kind { KIND_RW, KIND_NODATA, KIND_UNMAP, KIND_WRITE_SAME };

struct unmap_desc {
    uint64_t lba;
    uint32_t count;
};

struct scsi_disk *scsi_disk_create(struct stor_backend *b, const struct scsi_disk_config *cfg)
{
    static const struct scsi_disk_config none = { 0 };
    const struct stor_backend_info *info = stor_backend_info(b);
    struct scsi_disk *d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    if (!cfg)
        cfg = &none;
    d->b = b;
    d->blocks = info->size / STOR_BLOCK_SIZE;
    d->readonly = cfg->readonly || info->readonly;
    d->discard = info->discard && !d->readonly;
    /* 512-byte blocks on the backend's physical block (a 4 KiB-sector device
     * shows as 512e): the guest aligns its I/O to it */
    uint32_t per_phys = info->phys_block_size / STOR_BLOCK_SIZE;
    while (d->phys_exp < 15 && (2u << d->phys_exp) <= per_phys)
        d->phys_exp++;
    d->lun = cfg->lun;
    uint32_t mt = cfg->max_transfer ? cfg->max_transfer : DEFAULT_MAX_TRANSFER;
    d->max_xfer_blocks = mt / STOR_BLOCK_SIZE ? mt / STOR_BLOCK_SIZE : 1;
    if (d->discard) {
        d->max_unmap_blocks = cfg->max_unmap_blocks ? cfg->max_unmap_blocks : DEFAULT_MAX_UNMAP;
        d->max_unmap_desc = cfg->max_unmap_descriptors ? cfg->max_unmap_descriptors
                                                        : DEFAULT_MAX_UNMAP_DESC;
    }
    d->id = cfg->id ? cfg->id : info->file_id;
    snprintf(d->vendor, sizeof(d->vendor), "%s", cfg->vendor ? cfg->vendor : "Msft");
    snprintf(d->product, sizeof(d->product), "%s", cfg->product ? cfg->product : "Virtual Disk");
    snprintf(d->revision, sizeof(d->revision), "%s", cfg->revision ? cfg->revision : "1.0");
    if (cfg->serial)
        snprintf(d->serial, sizeof(d->serial), "%s", cfg->serial);
    else
        snprintf(d->serial, sizeof(d->serial), "%016" PRIx64, d->id);
    return d;
}

void scsi_disk_destroy(struct scsi_disk *d)
{
    free(d);
}

uint64_t scsi_disk_blocks(const struct scsi_disk *d) { return d->blocks; }
bool scsi_disk_readonly(const struct scsi_disk *d) { return d->readonly; }

static void illegal(struct scsi_cmd *cmd, uint8_t asc)
{
    scsi_check(cmd, SCSI_SK_ILLEGAL_REQUEST, asc, 0);
}

static bool out_of_range(const struct scsi_disk *d, uint64_t lba, uint64_t n)
{
    return lba > d->blocks || n > d->blocks - lba;
}

static void release(struct scsi_cmd *cmd)
{
    free(cmd->priv.clip);
    cmd->priv.clip = NULL;
    free(cmd->priv.buf);
    cmd->priv.buf = NULL;
}

/* A backend error of this request only: medium error for a read, write
 * error for anything that changes the image; a full file system is a
 * provisioning failure the guest can tell apart. */
static void backend_failed(struct scsi_cmd *cmd, ssize_t res)
{
    release(cmd);
    if (res == -EAGAIN)
        return scsi_status_only(cmd, SCSI_STATUS_TASK_SET_FULL);
    if (res == -ENOMEM)
        return scsi_status_only(cmd, SCSI_STATUS_BUSY);
    if (res == -EROFS)
        return scsi_check(cmd, SCSI_SK_DATA_PROTECT, ASC_WRITE_PROTECTED, 0);
    if (res == -ENOSPC)
        return scsi_check(cmd, SCSI_SK_DATA_PROTECT, ASC_WRITE_PROTECTED, 0x07);
    if (cmd->priv.req.op == STOR_OP_READ)
        return scsi_check(cmd, SCSI_SK_MEDIUM_ERROR, ASC_READ_ERROR, 0);
    scsi_check(cmd, SCSI_SK_MEDIUM_ERROR, ASC_WRITE_ERROR, 0);
}

static void req_done(struct stor_req *req, ssize_t res);

static void submit(struct scsi_cmd *cmd)
{
    struct stor_req *req = &cmd->priv.req;
    req->done = req_done;
    req->arg = cmd;
    int r = stor_queue_submit(cmd->priv.q, req);
    if (r < 0)
        backend_failed(cmd, r);
}

/* WRITE SAME: the next chunk of repeated pattern, or the whole range as one
 * discard. */
static void write_same_next(struct scsi_cmd *cmd)
{
    struct stor_req *req = &cmd->priv.req;
    uint64_t per_chunk = WRITE_SAME_CHUNK / STOR_BLOCK_SIZE;
    uint64_t n = cmd->priv.left < per_chunk ? cmd->priv.left : per_chunk;
    req->op = STOR_OP_WRITE;
    req->fua = false;
    req->offset = cmd->priv.lba * STOR_BLOCK_SIZE;
    cmd->priv.one.iov_base = cmd->priv.buf;
    cmd->priv.one.iov_len = n * STOR_BLOCK_SIZE;
    req->iov = &cmd->priv.one;
    req->iovcnt = 1;
    cmd->priv.lba += n;
    cmd->priv.left -= n;
    submit(cmd);
}

static void unmap_next(struct scsi_cmd *cmd)
{
    const struct unmap_desc *ud = cmd->priv.buf;
    const struct unmap_desc *u = &ud[cmd->priv.lba++];
    cmd->priv.left--;
    struct stor_req *req = &cmd->priv.req;
    req->op = STOR_OP_DISCARD;
    req->offset = u->lba * STOR_BLOCK_SIZE;
    req->len = (uint64_t)u->count * STOR_BLOCK_SIZE;
    submit(cmd);
}

static void req_done(struct stor_req *req, ssize_t res)
{
    struct scsi_cmd *cmd = req->arg;
    if (res < 0)
        return backend_failed(cmd, res);
    switch (cmd->priv.kind) {
    case KIND_UNMAP:
        if (cmd->priv.left)
            return unmap_next(cmd);
        break;
    case KIND_WRITE_SAME:
        if (cmd->priv.left)
            return write_same_next(cmd);
        break;
    default:
        break;
    }
    uint32_t moved = cmd->priv.kind == KIND_RW ? (uint32_t)res : 0;
    release(cmd);
    scsi_good(cmd, moved);
}

/* The first `bytes` of the guest's iovecs, as the request's iovec list:
 * the caller's own array when it ends there, else a trimmed copy. */
static int clip_iov(struct scsi_cmd *cmd, size_t bytes)
{
    size_t acc = 0;
    int i = 0;
    while (acc + cmd->iov[i].iov_len < bytes)
        acc += cmd->iov[i++].iov_len;
    /* iov[i] holds the last byte */
    int n = i + 1;
    if (n == cmd->iovcnt && acc + cmd->iov[i].iov_len == bytes) {
        cmd->priv.req.iov = cmd->iov;
    } else {
        struct iovec *c = malloc(sizeof(*c) * (size_t)n);
        if (!c)
            return -ENOMEM;
        memcpy(c, cmd->iov, sizeof(*c) * (size_t)n);
        c[i].iov_len = bytes - acc;
        cmd->priv.clip = c;
        cmd->priv.req.iov = c;
    }
    cmd->priv.req.iovcnt = n;
    return 0;
}

static void read_write(struct scsi_disk *d, struct scsi_cmd *cmd, bool write, uint64_t lba,
                       uint32_t nblocks, uint8_t flags)
{
    if (write && d->readonly)
        return scsi_check(cmd, SCSI_SK_DATA_PROTECT, ASC_WRITE_PROTECTED, 0);
    if (flags & 0xe0) /* RDPROTECT/WRPROTECT: no protection information */
        return illegal(cmd, ASC_INVALID_FIELD_CDB);
    if (out_of_range(d, lba, nblocks))
        return scsi_check(cmd, SCSI_SK_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE, 0);
    if (nblocks == 0)
        return scsi_good(cmd, 0);
    if (nblocks > d->max_xfer_blocks)
        return illegal(cmd, ASC_INVALID_FIELD_CDB);
    size_t bytes = (size_t)nblocks * STOR_BLOCK_SIZE;
    /* never past the guest's buffer nor its transfer length */
    if (scsi_usable(cmd, write ? SCSI_DIR_TO_DEV : SCSI_DIR_FROM_DEV) < bytes)
        return illegal(cmd, ASC_INVALID_FIELD_CDB);
    cmd->priv.kind = KIND_RW;
    struct stor_req *req = &cmd->priv.req;
    req->op = write ? STOR_OP_WRITE : STOR_OP_READ;
    req->fua = write && (flags & 0x08);
    req->offset = lba * STOR_BLOCK_SIZE;
    if (clip_iov(cmd, bytes) < 0)
        return scsi_status_only(cmd, SCSI_STATUS_BUSY);
    submit(cmd);
}

/* n == 0: from lba to the end */
static void sync_cache(struct scsi_disk *d, struct scsi_cmd *cmd, uint64_t lba, uint64_t n)
{
    if (out_of_range(d, lba, n) || (n == 0 && lba >= d->blocks))
        return scsi_check(cmd, SCSI_SK_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE, 0);
    if (d->readonly)
        return scsi_good(cmd, 0); /* nothing was written */
    cmd->priv.kind = KIND_NODATA;
    cmd->priv.req.op = STOR_OP_FLUSH;
    submit(cmd);
}

static void unmap(struct scsi_disk *d, struct scsi_cmd *cmd, const uint8_t *cdb)
{
    /* a writable disk that cannot punch holes has no UNMAP (VPD B0/B2 say
     * so); a read-only one answers write-protected below */
    if (!d->discard && !d->readonly)
        return illegal(cmd, ASC_INVALID_OPCODE);
    if (cdb[1] & 0x01) /* ANCHOR */
        return illegal(cmd, ASC_INVALID_FIELD_CDB);
    size_t plen = get_be16(cdb + 7);
    if (plen == 0)
        return scsi_good(cmd, 0);
    if (d->readonly)
        return scsi_check(cmd, SCSI_SK_DATA_PROTECT, ASC_WRITE_PROTECTED, 0);
    if (plen < 8)
        return illegal(cmd, ASC_PARAM_LIST_LENGTH);
    size_t max = 8 + 16 * (size_t)d->max_unmap_desc;
    uint8_t *pl = malloc(plen < max ? plen : max);
    if (!pl)
        return scsi_status_only(cmd, SCSI_STATUS_BUSY);
    /* one read of guest memory; everything below looks at the copy only */
    size_t got = scsi_copy_from_guest(cmd, pl, plen < max ? plen : max);
    if (got < 8 || got < (plen < max ? plen : max)) {
        free(pl);
        return illegal(cmd, ASC_PARAM_LIST_LENGTH);
    }
    size_t bdl = get_be16(pl + 2);
    if (bdl > plen - 8 || bdl % 16) {
        free(pl);
        return scsi_check(cmd, SCSI_SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_PARAM, 0);
    }
    size_t ndesc = bdl / 16;
    if (ndesc > d->max_unmap_desc) {
        free(pl);
        return scsi_check(cmd, SCSI_SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_PARAM, 0);
    }
    struct unmap_desc *ud = malloc(sizeof(*ud) * (ndesc ? ndesc : 1));
    if (!ud) {
        free(pl);
        return scsi_status_only(cmd, SCSI_STATUS_BUSY);
    }
    size_t n = 0;
    uint64_t total = 0;
    for (size_t i = 0; i < ndesc; i++) {
        uint64_t lba = get_be64(pl + 8 + 16 * i);
        uint32_t count = get_be32(pl + 8 + 16 * i + 8);
        if (out_of_range(d, lba, count)) {
            free(pl);
            free(ud);
            return scsi_check(cmd, SCSI_SK_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE, 0);
        }
        total += count;
        if (count)
            ud[n++] = (struct unmap_desc){ lba, count };
    }
    free(pl);
    if (total > d->max_unmap_blocks) {
        free(ud);
        return scsi_check(cmd, SCSI_SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_PARAM, 0);
    }
    if (n == 0) {
        free(ud);
        return scsi_good(cmd, 0);
    }
    cmd->priv.kind = KIND_UNMAP;
    cmd->priv.buf = ud;
    cmd->priv.lba = 0;
    cmd->priv.left = n;
    unmap_next(cmd);
}

static bool all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return false;
    return true;
}

/* WRITE SAME: with UNMAP and a zero pattern the range becomes a hole (holes
 * read as zeros, LBPRZ); otherwise the block is written repeatedly. */
static void write_same(struct scsi_disk *d, struct scsi_cmd *cmd, const uint8_t *cdb, bool sixteen)
{
    uint8_t flags = cdb[1];
    uint64_t lba = sixteen ? get_be64(cdb + 2) : get_be32(cdb + 2);
    uint64_t n = sixteen ? get_be32(cdb + 10) : get_be16(cdb + 7);
    bool ndob = sixteen && (flags & 0x01);

    if (d->readonly)
        return scsi_check(cmd, SCSI_SK_DATA_PROTECT, ASC_WRITE_PROTECTED, 0);
    if (!d->discard)
        return illegal(cmd, ASC_INVALID_OPCODE);
    if ((flags & 0xe0) || (flags & 0x10)) /* WRPROTECT, ANCHOR */
        return illegal(cmd, ASC_INVALID_FIELD_CDB);
    if (out_of_range(d, lba, n))
        return scsi_check(cmd, SCSI_SK_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE, 0);
    if (n == 0 || n > d->max_unmap_blocks) /* WSNZ; maximum WRITE SAME length */
        return illegal(cmd, ASC_INVALID_FIELD_CDB);

    uint8_t pattern[STOR_BLOCK_SIZE] = { 0 };
    if (!ndob && scsi_copy_from_guest(cmd, pattern, sizeof(pattern)) < sizeof(pattern))
        return illegal(cmd, ASC_INVALID_FIELD_CDB);

    struct stor_req *req = &cmd->priv.req;
    if ((flags & 0x08) && all_zero(pattern, sizeof(pattern))) {
        cmd->priv.kind = KIND_NODATA; /* one request, no data moved */
        req->op = STOR_OP_DISCARD;
        req->offset = lba * STOR_BLOCK_SIZE;
        req->len = n * STOR_BLOCK_SIZE;
        return submit(cmd);
    }
    uint64_t chunk_blocks = n < WRITE_SAME_CHUNK / STOR_BLOCK_SIZE ? n
                                                                   : WRITE_SAME_CHUNK / STOR_BLOCK_SIZE;
    void *mem;
    /* page-aligned so O_DIRECT takes it without a bounce */
    if (posix_memalign(&mem, 4096, chunk_blocks * STOR_BLOCK_SIZE) != 0)
        return scsi_status_only(cmd, SCSI_STATUS_BUSY);
    uint8_t *buf = mem;
    for (uint64_t i = 0; i < chunk_blocks; i++)
        memcpy(buf + i * STOR_BLOCK_SIZE, pattern, STOR_BLOCK_SIZE);
    cmd->priv.kind = KIND_WRITE_SAME;
    cmd->priv.buf = buf;
    cmd->priv.lba = lba;
    cmd->priv.left = n;
    write_same_next(cmd);
}

/* CDB length each opcode group needs */
static unsigned cdb_group_len(uint8_t op)
{
    switch (op >> 5) {
    case 0: return 6;
    case 1: case 2: return 10;
    case 4: return 16;
    case 5: return 12;
    default: return 16;
    }
}

void scsi_disk_execute(struct scsi_disk *d, struct stor_queue *q, struct scsi_cmd *cmd)
{
    uint8_t cdb[SCSI_CDB_MAX] = { 0 };
    unsigned len = cmd->cdb_len < SCSI_CDB_MAX ? cmd->cdb_len : SCSI_CDB_MAX;
    memcpy(cdb, cmd->cdb, len);

    memset(&cmd->priv, 0, sizeof(cmd->priv));
    cmd->priv.disk = d;
    cmd->priv.q = q;
    cmd->status = SCSI_STATUS_GOOD;
    cmd->sense_len = 0;
    cmd->transferred = 0;

    if (len < cdb_group_len(cdb[0]))
        return illegal(cmd, ASC_INVALID_FIELD_CDB);

    switch (cdb[0]) {
    case 0x00: /* TEST UNIT READY */
    case 0x1b: /* START STOP UNIT: nothing spins */
        return scsi_good(cmd, 0);
    case 0x03: { /* REQUEST SENSE: errors are reported with autosense */
        uint8_t s[SCSI_SENSE_LEN] = { 0x70, 0, SCSI_SK_NO_SENSE, 0, 0, 0, 0, SCSI_SENSE_LEN - 8 };
        return scsi_data_in(cmd, s, sizeof(s), cdb[4]);
    }
    case 0x12:
        return scsi_inquiry(d, cmd, cdb);
    case 0x25:
        return scsi_read_capacity10(d, cmd, cdb);
    case 0x9e:
        if ((cdb[1] & 0x1f) != 0x10) /* READ CAPACITY(16) is the only action */
            return illegal(cmd, ASC_INVALID_FIELD_CDB);
        return scsi_read_capacity16(d, cmd, cdb);
    case 0x1a:
        return scsi_mode_sense(d, cmd, cdb, false);
    case 0x5a:
        return scsi_mode_sense(d, cmd, cdb, true);
    case 0xa0:
        return scsi_report_luns(cmd, &d->lun, 1);
    case 0x08: case 0x0a: { /* READ(6), WRITE(6) */
        uint32_t n = cdb[4] ? cdb[4] : 256;
        uint64_t lba = ((uint64_t)(cdb[1] & 0x1f) << 16) | (uint64_t)get_be16(cdb + 2);
        return read_write(d, cmd, cdb[0] == 0x0a, lba, n, 0);
    }
    case 0x28: case 0x2a: /* READ(10), WRITE(10) */
        return read_write(d, cmd, cdb[0] == 0x2a, get_be32(cdb + 2), get_be16(cdb + 7), cdb[1]);
    case 0xa8: case 0xaa: /* READ(12), WRITE(12) */
        return read_write(d, cmd, cdb[0] == 0xaa, get_be32(cdb + 2), get_be32(cdb + 6), cdb[1]);
    case 0x88: case 0x8a: /* READ(16), WRITE(16) */
        return read_write(d, cmd, cdb[0] == 0x8a, get_be64(cdb + 2), get_be32(cdb + 10), cdb[1]);
    case 0x35: /* SYNCHRONIZE CACHE(10) */
        return sync_cache(d, cmd, get_be32(cdb + 2), get_be16(cdb + 7));
    case 0x91: /* SYNCHRONIZE CACHE(16) */
        return sync_cache(d, cmd, get_be64(cdb + 2), get_be32(cdb + 10));
    case 0x42:
        return unmap(d, cmd, cdb);
    case 0x41:
        return write_same(d, cmd, cdb, false);
    case 0x93:
        return write_same(d, cmd, cdb, true);
    default:
        return illegal(cmd, ASC_INVALID_OPCODE);
    }
}
