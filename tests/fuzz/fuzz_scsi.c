/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for the SCSI disk target and the block backend
 * (src/vsp/storvsp): arbitrary CDBs with arbitrary directions, transfer
 * lengths and guest buffers (data-out contents from the input) against a
 * 64 KiB disk image in a memfd (tmpfs), on io_uring or on the thread pool,
 * read-write or read-only.  Each guest buffer is its own allocation, so
 * AddressSanitizer catches any byte read or written past it.  Between
 * execute and the completion a hostile guest rewrites its buffers.
 *
 * Checked for every command: done runs exactly once; never more bytes
 * transferred than min(transfer length, buffers); CHECK CONDITION comes with
 * fixed-format sense, GOOD without; bytes of guest buffers past what was
 * transferred to them are untouched (data-in).
 *
 * Input layout (little-endian, short input reads as zeros):
 *   u8  cfg      bit 0: thread pool (else io_uring); bit 1: read-only disk;
 *                bits 2-3: direction (0 none, 1 data-out, 2 data-in, 3 data-in)
 *   u8  cdb_len
 *   16  cdb
 *   u32 xfer_len (masked to 18 bits)
 *   u8  niov (mod 9)
 *   niov x { u16 len, u8 misalignment (mod 64) }
 *   u8  hostile  xor applied to every buffer byte while the command runs
 *   rest         data-out contents, repeated over the buffers
 */
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz_input.h"
#include "vsp/storvsp/backend.h"
#include "vsp/storvsp/scsi_disk.h"

#define IMG_SIZE (64 * 1024)
#define MAX_IOV 8
#define CANARY 0xcd

static struct stor_backend *backend;
static struct stor_queue *queues[2];   /* io_uring (or its fallback), thread pool */
static struct scsi_disk *disks[2];     /* read-write, read-only */

static void setup(void)
{
    int fd = memfd_create("fuzz-scsi", MFD_CLOEXEC);
    FUZZ_CHECK(fd >= 0);
    FUZZ_CHECK(ftruncate(fd, IMG_SIZE) == 0);
    FUZZ_CHECK(stor_backend_open_fd(fd, false, &backend, NULL, 0) == 0);
    FUZZ_CHECK(stor_queue_create(backend, 8, 0, &queues[0]) == 0);
    FUZZ_CHECK(stor_queue_create(backend, 8, STOR_QUEUE_THREADS, &queues[1]) == 0);
    struct scsi_disk_config rw = { .max_transfer = 32 * 1024, .max_unmap_blocks = 64 };
    struct scsi_disk_config ro = { .max_transfer = 32 * 1024, .readonly = true };
    disks[0] = scsi_disk_create(backend, &rw);
    disks[1] = scsi_disk_create(backend, &ro);
    FUZZ_CHECK(disks[0] && disks[1]);
}

static int done_count;

static void on_done(struct scsi_cmd *cmd)
{
    done_count++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!backend)
        setup();
    struct fuzz_in in = { data, size };
    uint8_t cfg = fuzz_u8(&in);
    struct stor_queue *q = queues[cfg & 1];
    struct scsi_disk *d = disks[(cfg >> 1) & 1];
    static const enum scsi_dir dirs[4] = { SCSI_DIR_NONE, SCSI_DIR_TO_DEV, SCSI_DIR_FROM_DEV,
                                           SCSI_DIR_FROM_DEV };

    struct scsi_cmd cmd;
    memset(&cmd, 0, sizeof(cmd));
    cmd.cdb_len = fuzz_u8(&in);
    fuzz_take(&in, cmd.cdb, sizeof(cmd.cdb));
    cmd.dir = dirs[(cfg >> 2) & 3];
    cmd.xfer_len = fuzz_u32(&in) & 0x3ffff;

    int niov = fuzz_u8(&in) % (MAX_IOV + 1);
    struct iovec iov[MAX_IOV];
    uint8_t *alloc[MAX_IOV];
    size_t total = 0;
    for (int i = 0; i < niov; i++) {
        size_t len = fuzz_u16(&in);
        size_t mis = fuzz_u8(&in) % 64;
        alloc[i] = malloc(len + mis + 1);
        FUZZ_CHECK(alloc[i]);
        iov[i].iov_base = alloc[i] + mis;
        iov[i].iov_len = len;
        total += len;
    }
    uint8_t hostile = fuzz_u8(&in);
    /* data-out contents: the rest of the input, repeated; canaries for data-in */
    size_t k = 0;
    for (int i = 0; i < niov; i++) {
        uint8_t *b = iov[i].iov_base;
        for (size_t j = 0; j < iov[i].iov_len; j++, k++)
            b[j] = cmd.dir == SCSI_DIR_FROM_DEV ? CANARY : (in.left ? in.p[k % in.left] : 0);
    }
    cmd.iov = niov ? iov : NULL;
    cmd.iovcnt = niov;
    cmd.done = on_done;

    done_count = 0;
    scsi_disk_execute(d, q, &cmd);
    if (!done_count && hostile && cmd.dir != SCSI_DIR_FROM_DEV) {
        /* the guest rewrites its data-out buffers under the running command */
        for (int i = 0; i < niov; i++)
            for (size_t j = 0; j < iov[i].iov_len; j++)
                ((uint8_t *)iov[i].iov_base)[j] ^= hostile;
    }
    stor_queue_kick(q);
    while (!done_count) {
        struct pollfd pfd = { .fd = stor_queue_fd(q), .events = POLLIN };
        FUZZ_CHECK(poll(&pfd, 1, 30000) == 1);
        stor_queue_reap(q, 0);
    }
    FUZZ_CHECK(done_count == 1);
    FUZZ_CHECK(stor_queue_inflight(q) == 0);

    size_t usable = total < cmd.xfer_len ? total : cmd.xfer_len;
    FUZZ_CHECK(cmd.transferred <= usable);
    if (cmd.status == SCSI_STATUS_CHECK_CONDITION) {
        FUZZ_CHECK(cmd.sense_len == SCSI_SENSE_LEN);
        FUZZ_CHECK(cmd.sense[0] == 0x70);
        FUZZ_CHECK(cmd.transferred == 0);
    } else {
        FUZZ_CHECK(cmd.sense_len == 0);
    }
    if (cmd.dir == SCSI_DIR_FROM_DEV) {
        /* nothing written past what was transferred */
        size_t off = 0;
        for (int i = 0; i < niov; i++) {
            const uint8_t *b = iov[i].iov_base;
            for (size_t j = 0; j < iov[i].iov_len; j++, off++)
                if (off >= cmd.transferred)
                    FUZZ_CHECK(b[j] == CANARY);
        }
    }
    for (int i = 0; i < niov; i++)
        free(alloc[i]);
    return 0;
}
