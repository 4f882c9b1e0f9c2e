/* SPDX-License-Identifier: MIT */
/*
 * SCSI direct-access (disk) target for one LUN, over a stor_backend.
 *
 * The storage VSP turns each EXECUTE_SRB into a struct scsi_cmd (CDB,
 * direction, transfer length, iovecs into guest memory) and calls
 * scsi_disk_execute(); the command's done callback runs exactly once, either
 * before scsi_disk_execute returns (commands answered from memory: INQUIRY,
 * READ CAPACITY, MODE SENSE, errors, ...) or later from stor_queue_reap() on
 * the queue the command was given (READ, WRITE, SYNCHRONIZE CACHE, UNMAP,
 * WRITE SAME).  Each command takes at most one slot of that queue; when the
 * queue is full the command completes with TASK SET FULL (the guest retries).
 *
 * Guest memory is hostile and may change at any time: the CDB is copied into
 * the command by the caller; parameter lists (UNMAP) are copied from the
 * iovecs into a local buffer before they are validated.  Data is never read
 * or written past the iovecs nor past xfer_len; what was not moved is the
 * residual (xfer_len - transferred).
 *
 * Commands: INQUIRY (standard, VPD 0x00 0x80 0x83 0xB0 0xB1 0xB2), REPORT
 * LUNS (this LUN only; a controller answers it with scsi_report_luns),
 * TEST UNIT READY, READ CAPACITY(10/16), MODE SENSE(6/10) (pages 0x08, 0x3F),
 * READ/WRITE(6/10/12/16), SYNCHRONIZE CACHE(10/16), UNMAP, WRITE SAME(10/16)
 * with the UNMAP bit, START STOP UNIT.  Anything else: CHECK CONDITION,
 * ILLEGAL REQUEST, INVALID COMMAND OPERATION CODE.  Sense is fixed format
 * (0x70), SCSI_SENSE_LEN bytes.
 */
#ifndef VMBUSD_STORVSP_SCSI_DISK_H
#define VMBUSD_STORVSP_SCSI_DISK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "backend.h"

/* SAM status */
#define SCSI_STATUS_GOOD            0x00
#define SCSI_STATUS_CHECK_CONDITION 0x02
#define SCSI_STATUS_BUSY            0x08
#define SCSI_STATUS_TASK_SET_FULL   0x28

/* sense keys */
#define SCSI_SK_NO_SENSE        0x0
#define SCSI_SK_NOT_READY       0x2
#define SCSI_SK_MEDIUM_ERROR    0x3
#define SCSI_SK_ILLEGAL_REQUEST 0x5
#define SCSI_SK_DATA_PROTECT    0x7

#define SCSI_SENSE_LEN 18 /* fixed format, additional length 10 */
#define SCSI_CDB_MAX   16

enum scsi_dir {
    SCSI_DIR_NONE,      /* no data */
    SCSI_DIR_TO_DEV,    /* data-out: guest -> disk (WRITE, UNMAP parameter list) */
    SCSI_DIR_FROM_DEV,  /* data-in: disk -> guest (READ, INQUIRY, ...) */
};

struct scsi_cmd;
typedef void (*scsi_done_fn)(struct scsi_cmd *cmd);

struct scsi_cmd {
    /* in: set by the caller */
    uint8_t cdb[SCSI_CDB_MAX];  /* a private copy, never guest memory */
    uint8_t cdb_len;            /* 6..16; bytes beyond it are ignored (treated as 0) */
    enum scsi_dir dir;
    uint32_t xfer_len;          /* the guest's data_transfer_length */
    const struct iovec *iov;    /* guest buffers (>= xfer_len bytes is not required:
                                   the usable length is min(xfer_len, iovecs' total)) */
    int iovcnt;                 /* <= STOR_MAX_IOV */
    scsi_done_fn done;
    void *arg;                  /* free for the caller */

    /* out: valid in done */
    uint8_t status;             /* SCSI_STATUS_* */
    uint8_t sense_len;          /* 0, or SCSI_SENSE_LEN with CHECK CONDITION */
    uint8_t sense[SCSI_SENSE_LEN];
    uint32_t transferred;       /* data bytes moved to/from the iovecs */

    /* private to the target */
    struct {
        struct scsi_disk *disk;
        struct stor_queue *q;
        struct stor_req req;
        struct iovec *clip;     /* READ/WRITE: the guest's iovecs cut to the transfer */
        struct iovec one;       /* WRITE SAME: the pattern chunk */
        void *buf;              /* UNMAP descriptors / WRITE SAME pattern chunk */
        uint64_t lba;           /* WRITE SAME: next block; UNMAP: next descriptor */
        uint64_t left;          /* WRITE SAME: blocks left; UNMAP: descriptors left */
        uint8_t kind;
    } priv;
};

struct scsi_disk_config {
    uint32_t max_transfer;      /* bytes per READ/WRITE (VPD B0 maximum transfer
                                   length); 0 = 1 MiB.  Rounded down to 512. */
    uint32_t max_unmap_blocks;  /* per UNMAP / WRITE SAME; 0 = 0x400000 (2 GiB) */
    uint16_t max_unmap_descriptors; /* per UNMAP; 0 = 256 */
    bool readonly;              /* refuse writes even if the backend is writable */
    uint16_t lun;               /* this disk's LUN, for its own REPORT LUNS answer */
    uint64_t id;                /* identifier (VPD 0x83: NAA 3, locally assigned, 60
                                   bits used), unique per disk; 0 = the backend's file_id */
    const char *vendor;         /* 8 chars max; NULL = "Msft" */
    const char *product;        /* 16 max; NULL = "Virtual Disk" */
    const char *revision;       /* 4 max; NULL = "1.0" */
    const char *serial;         /* VPD 0x80 (ASCII, <= 64); NULL = 16 hex digits of id */
};

struct scsi_disk;

/* b must outlive the disk.  NULL on allocation failure. */
struct scsi_disk *scsi_disk_create(struct stor_backend *b, const struct scsi_disk_config *cfg);
void scsi_disk_destroy(struct scsi_disk *d);
uint64_t scsi_disk_blocks(const struct scsi_disk *d);
bool scsi_disk_readonly(const struct scsi_disk *d);

/* Execute cmd on q (the calling channel's queue); cmd->done runs exactly once
 * (see the top of this file).  cmd must stay valid until then. */
void scsi_disk_execute(struct scsi_disk *d, struct stor_queue *q, struct scsi_cmd *cmd);

/* ---- helpers for the controller (the VSP), no disk needed ---------- */
/* REPORT LUNS with the given LUN numbers (flat addressing, < 16384);
 * completes cmd (done runs before return). */
void scsi_report_luns(struct scsi_cmd *cmd, const uint16_t *luns, unsigned n);
/* A command for a LUN that does not exist: INQUIRY answers peripheral
 * qualifier 3 / type 0x1F (byte 0 = 0x7F) with GOOD, REPORT LUNS is left to
 * scsi_report_luns, anything else is ILLEGAL REQUEST / LOGICAL UNIT NOT
 * SUPPORTED (0x25/0x00).  Completes cmd. */
void scsi_no_lun(struct scsi_cmd *cmd);

#endif
