/* SPDX-License-Identifier: MIT */
/* SCSI commands a disk answers from memory: INQUIRY and its VPD pages, READ
 * CAPACITY, MODE SENSE, REPORT LUNS, and the answers for an absent LUN.
 * Field positions follow SPC-4/SBC-3. */
#include <stdlib.h>

#include "scsi_priv.h"

#define VPD_SUPPORTED   0x00
#define VPD_SERIAL      0x80
#define VPD_DEVICE_ID   0x83
#define VPD_LIMITS      0xb0
#define VPD_CHARACTER   0xb1
#define VPD_PROVISIONING 0xb2

#define UNMAP_GRANULARITY 8 /* blocks: 4 KiB, the page punched holes are made of */

static void pad_copy(uint8_t *dst, const char *src, size_t n)
{
    size_t l = strlen(src);
    memset(dst, ' ', n);
    memcpy(dst, src, l < n ? l : n);
}

static void inquiry_standard(struct scsi_disk *d, struct scsi_cmd *cmd, size_t alloc)
{
    uint8_t b[36] = { 0 };
    b[0] = 0x00;          /* peripheral qualifier 0, direct-access block device */
    b[2] = 0x06;          /* SPC-4 */
    b[3] = 0x02;          /* response data format 2 */
    b[4] = sizeof(b) - 5; /* additional length */
    b[7] = 0x02;          /* CMDQUE: tagged queueing */
    pad_copy(b + 8, d->vendor, 8);
    pad_copy(b + 16, d->product, 16);
    pad_copy(b + 32, d->revision, 4);
    scsi_data_in(cmd, b, sizeof(b), alloc);
}

static size_t vpd_supported(uint8_t *p)
{
    static const uint8_t pages[] = { VPD_SUPPORTED, VPD_SERIAL, VPD_DEVICE_ID,
                                     VPD_LIMITS, VPD_CHARACTER, VPD_PROVISIONING };
    memcpy(p, pages, sizeof(pages));
    return sizeof(pages);
}

static size_t vpd_serial(struct scsi_disk *d, uint8_t *p)
{
    size_t n = strlen(d->serial);
    memcpy(p, d->serial, n);
    return n;
}

static size_t vpd_device_id(struct scsi_disk *d, uint8_t *p)
{
    size_t off = 0;
    /* NAA 3 (locally assigned), binary, associated with the logical unit */
    p[off + 0] = 0x01;    /* code set binary */
    p[off + 1] = 0x03;    /* association LU, designator type NAA */
    p[off + 3] = 8;
    put_be64(p + off + 4, (3ull << 60) | (d->id & 0x0fffffffffffffffull));
    off += 12;
    /* T10 vendor identification: vendor + serial, ASCII */
    size_t sl = strlen(d->serial);
    p[off + 0] = 0x02;    /* code set ASCII */
    p[off + 1] = 0x01;    /* association LU, designator type T10 vendor id */
    p[off + 3] = (uint8_t)(8 + sl);
    pad_copy(p + off + 4, d->vendor, 8);
    memcpy(p + off + 12, d->serial, sl);
    off += 12 + sl;
    return off;
}

static size_t vpd_limits(struct scsi_disk *d, uint8_t *p)
{
    memset(p, 0, 0x3c);
    p[0] = 0x01;                              /* WSNZ: WRITE SAME of 0 blocks refused */
    put_be16(p + 2, (uint16_t)(1u << d->phys_exp)); /* optimal transfer length granularity:
                                                       the physical block */
    put_be32(p + 4, d->max_xfer_blocks);      /* maximum transfer length */
    put_be32(p + 8, d->max_xfer_blocks);      /* optimal transfer length */
    put_be32(p + 16, d->max_unmap_blocks);    /* maximum unmap LBA count */
    put_be32(p + 20, d->max_unmap_desc);      /* maximum unmap block descriptor count */
    if (d->discard) {
        put_be32(p + 24, UNMAP_GRANULARITY);  /* optimal unmap granularity */
        put_be32(p + 28, 0x80000000u);        /* UGAVALID, alignment 0 */
    }
    put_be64(p + 32, d->discard ? d->max_unmap_blocks : 0); /* maximum WRITE SAME length */
    return 0x3c;
}

static size_t vpd_characteristics(uint8_t *p)
{
    memset(p, 0, 0x3c);
    put_be16(p + 0, 1); /* medium rotation rate: non-rotating */
    return 0x3c;
}

static size_t vpd_provisioning(struct scsi_disk *d, uint8_t *p)
{
    memset(p, 0, 4);
    if (d->discard) {
        p[1] = 0x80 | 0x40 | 0x20 | 0x04; /* LBPU, LBPWS, LBPWS10, LBPRZ (holes read zeros) */
        p[2] = 0x02;                      /* thin provisioned */
    }
    return 4;
}

void scsi_inquiry(struct scsi_disk *d, struct scsi_cmd *cmd, const uint8_t *cdb)
{
    size_t alloc = get_be16(cdb + 3);
    bool evpd = cdb[1] & 0x01;
    uint8_t page = cdb[2];

    if (cdb[1] & 0xfe)  /* CMDDT and reserved bits */
        return scsi_check(cmd, SCSI_SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB, 0);
    if (!evpd) {
        if (page)
            return scsi_check(cmd, SCSI_SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB, 0);
        return inquiry_standard(d, cmd, alloc);
    }
    uint8_t b[4 + 256] = { 0 };
    size_t n;
    switch (page) {
    case VPD_SUPPORTED:    n = vpd_supported(b + 4); break;
    case VPD_SERIAL:       n = vpd_serial(d, b + 4); break;
    case VPD_DEVICE_ID:    n = vpd_device_id(d, b + 4); break;
    case VPD_LIMITS:       n = vpd_limits(d, b + 4); break;
    case VPD_CHARACTER:    n = vpd_characteristics(b + 4); break;
    case VPD_PROVISIONING: n = vpd_provisioning(d, b + 4); break;
    default:
        /* the guest overrides INQUIRY's status: no data is what tells it */
        return scsi_check(cmd, SCSI_SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB, 0);
    }
    b[0] = 0x00; /* direct-access block device */
    b[1] = page;
    put_be16(b + 2, (uint16_t)n);
    scsi_data_in(cmd, b, 4 + n, alloc);
}

void scsi_read_capacity10(struct scsi_disk *d, struct scsi_cmd *cmd, const uint8_t *cdb)
{
    uint8_t b[8];
    uint64_t last = d->blocks - 1;
    /* 0xffffffff tells the guest to ask READ CAPACITY(16) */
    put_be32(b, last > 0xffffffffull ? 0xffffffffu : (uint32_t)last);
    put_be32(b + 4, STOR_BLOCK_SIZE);
    scsi_data_in(cmd, b, sizeof(b), sizeof(b));
}

void scsi_read_capacity16(struct scsi_disk *d, struct scsi_cmd *cmd, const uint8_t *cdb)
{
    uint8_t b[32] = { 0 };
    put_be64(b, d->blocks - 1);
    put_be32(b + 8, STOR_BLOCK_SIZE);
    b[13] = d->phys_exp; /* logical blocks per physical block exponent */
    if (d->discard)
        b[14] = 0x80 | 0x40; /* LBPME, LBPRZ */
    scsi_data_in(cmd, b, sizeof(b), get_be32(cdb + 10));
}

/* caching mode page (0x08): write-back cache on a writable disk, so the guest
 * sends SYNCHRONIZE CACHE; nothing is changeable */
static size_t page_caching(struct scsi_disk *d, uint8_t *p, unsigned pc)
{
    memset(p, 0, 20);
    p[0] = 0x08;
    p[1] = 18;
    if (pc != 1 && !d->readonly)
        p[2] = 0x04; /* WCE */
    return 20;
}

void scsi_mode_sense(struct scsi_disk *d, struct scsi_cmd *cmd, const uint8_t *cdb, bool ten)
{
    bool dbd = cdb[1] & 0x08;
    bool llbaa = ten && (cdb[1] & 0x10);
    unsigned pc = cdb[2] >> 6, page = cdb[2] & 0x3f, subpage = cdb[3];
    size_t alloc = ten ? get_be16(cdb + 7) : cdb[4];

    if (pc == 3)
        return scsi_check(cmd, SCSI_SK_ILLEGAL_REQUEST, ASC_SAVING_NOT_SUPPORTED, 0);
    if ((page != 0x08 && page != 0x3f) || (subpage != 0 && !(page == 0x3f && subpage == 0xff)))
        return scsi_check(cmd, SCSI_SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB, 0);

    uint8_t b[8 + 16 + 20] = { 0 };
    size_t hdr = ten ? 8 : 4, off = hdr;
    uint8_t devspec = 0x10; /* DPOFUA: FUA writes are honoured */
    if (d->readonly)
        devspec |= 0x80;    /* WP */
    size_t bdl = 0;
    if (!dbd) {
        if (llbaa) {
            bdl = 16;
            put_be64(b + off, d->blocks);
            put_be32(b + off + 12, STOR_BLOCK_SIZE);
        } else {
            bdl = 8;
            put_be32(b + off, d->blocks > 0xffffff ? 0xffffff : (uint32_t)d->blocks);
            b[off] = 0; /* density code */
            put_be32(b + off + 4, STOR_BLOCK_SIZE);
        }
        off += bdl;
    }
    off += page_caching(d, b + off, pc);
    if (ten) {
        put_be16(b, (uint16_t)(off - 2));
        b[3] = devspec;
        b[4] = llbaa && bdl ? 0x01 : 0; /* LONGLBA */
        put_be16(b + 6, (uint16_t)bdl);
    } else {
        b[0] = (uint8_t)(off - 1);
        b[2] = devspec;
        b[3] = (uint8_t)bdl;
    }
    scsi_data_in(cmd, b, off, alloc);
}

void scsi_report_luns(struct scsi_cmd *cmd, const uint16_t *luns, unsigned n)
{
    uint8_t cdb[SCSI_CDB_MAX] = { 0 };
    memcpy(cdb, cmd->cdb, cmd->cdb_len < SCSI_CDB_MAX ? cmd->cdb_len : SCSI_CDB_MAX);
    if (cmd->cdb_len < 12)
        return scsi_check(cmd, SCSI_SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB, 0);
    uint32_t alloc = get_be32(cdb + 6);
    if (cdb[2] > 2 || alloc < 16)  /* SELECT REPORT beyond the standard ones */
        return scsi_check(cmd, SCSI_SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB, 0);
    if (n > 16384)
        n = 16384;
    size_t len = 8 + 8 * (size_t)n;
    uint8_t *b = calloc(1, len);
    if (!b)
        return scsi_status_only(cmd, SCSI_STATUS_BUSY);
    put_be32(b, 8 * n);
    for (unsigned i = 0; i < n; i++)
        put_be16(b + 8 + 8 * i, luns[i] < 256 ? luns[i] : (uint16_t)(0x4000 | (luns[i] & 0x3fff)));
    scsi_data_in(cmd, b, len, alloc);
    free(b);
}

void scsi_no_lun(struct scsi_cmd *cmd)
{
    uint8_t cdb[SCSI_CDB_MAX] = { 0 };
    memcpy(cdb, cmd->cdb, cmd->cdb_len < SCSI_CDB_MAX ? cmd->cdb_len : SCSI_CDB_MAX);
    if (cdb[0] == 0x12 && cmd->cdb_len >= 6 && !(cdb[1] & 0x01)) {
        uint8_t b[36] = { 0 };
        b[0] = 0x7f; /* peripheral qualifier 3: no logical unit here */
        b[2] = 0x06;
        b[3] = 0x02;
        b[4] = sizeof(b) - 5;
        return scsi_data_in(cmd, b, sizeof(b), get_be16(cdb + 3));
    }
    scsi_check(cmd, SCSI_SK_ILLEGAL_REQUEST, ASC_LUN_NOT_SUPPORTED, 0);
}
