/* SPDX-License-Identifier: MIT */
/* Inside the SCSI disk target: the disk, big-endian field access, and the
 * ways a command ends (scsi_util.c), shared by the command files. */
#ifndef VMBUSD_STORVSP_SCSI_PRIV_H
#define VMBUSD_STORVSP_SCSI_PRIV_H

#include <endian.h>
#include <string.h>

#include "scsi_disk.h"

struct scsi_disk {
    struct stor_backend *b;
    uint64_t blocks;
    bool readonly;
    bool discard;
    uint8_t phys_exp;            /* log2(logical blocks per physical block) */
    uint16_t lun;
    uint32_t max_xfer_blocks;
    uint32_t max_unmap_blocks;   /* 0 when discard is off */
    uint16_t max_unmap_desc;     /* 0 when discard is off */
    uint64_t id;
    char vendor[9], product[17], revision[5], serial[65];
};

/* additional sense codes */
#define ASC_PARAM_LIST_LENGTH   0x1a
#define ASC_INVALID_OPCODE      0x20
#define ASC_LBA_OUT_OF_RANGE    0x21
#define ASC_INVALID_FIELD_CDB   0x24
#define ASC_LUN_NOT_SUPPORTED   0x25
#define ASC_INVALID_FIELD_PARAM 0x26
#define ASC_WRITE_PROTECTED     0x27
#define ASC_SAVING_NOT_SUPPORTED 0x39
#define ASC_WRITE_ERROR         0x0c
#define ASC_READ_ERROR          0x11

static inline uint16_t get_be16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return be16toh(v); }
static inline uint32_t get_be32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return be32toh(v); }
static inline uint64_t get_be64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return be64toh(v); }
static inline void put_be16(uint8_t *p, uint16_t v) { v = htobe16(v); memcpy(p, &v, 2); }
static inline void put_be32(uint8_t *p, uint32_t v) { v = htobe32(v); memcpy(p, &v, 4); }
static inline void put_be64(uint8_t *p, uint64_t v) { v = htobe64(v); memcpy(p, &v, 8); }

/* Bytes of guest buffer usable in the direction dir: min(xfer_len, the
 * iovecs' total) when cmd->dir is dir, else 0. */
size_t scsi_usable(const struct scsi_cmd *cmd, enum scsi_dir dir);
/* Copy up to len bytes of the data-out buffer into dst (a local copy, read
 * once); returns the bytes copied. */
size_t scsi_copy_from_guest(const struct scsi_cmd *cmd, void *dst, size_t len);

/* Endings: each sets the result and runs cmd->done. */
void scsi_good(struct scsi_cmd *cmd, uint32_t transferred);
void scsi_check(struct scsi_cmd *cmd, uint8_t key, uint8_t asc, uint8_t ascq);
void scsi_status_only(struct scsi_cmd *cmd, uint8_t status);
/* data-in answer built in memory: moves min(len, alloc, usable) bytes */
void scsi_data_in(struct scsi_cmd *cmd, const void *buf, size_t len, size_t alloc);

/* scsi_info.c: commands answered from memory */
void scsi_inquiry(struct scsi_disk *d, struct scsi_cmd *cmd, const uint8_t *cdb);
void scsi_read_capacity10(struct scsi_disk *d, struct scsi_cmd *cmd, const uint8_t *cdb);
void scsi_read_capacity16(struct scsi_disk *d, struct scsi_cmd *cmd, const uint8_t *cdb);
void scsi_mode_sense(struct scsi_disk *d, struct scsi_cmd *cmd, const uint8_t *cdb, bool ten);

#endif
