/* SPDX-License-Identifier: MIT */
/* How a SCSI command ends (status, fixed-format sense, data-in copies) and
 * reading the guest's data-out buffer once into local memory. */
#include "scsi_priv.h"

size_t scsi_usable(const struct scsi_cmd *cmd, enum scsi_dir dir)
{
    if (cmd->dir != dir || !cmd->iov || cmd->iovcnt <= 0 || cmd->iovcnt > STOR_MAX_IOV)
        return 0;
    size_t total = 0;
    for (int i = 0; i < cmd->iovcnt && total < cmd->xfer_len; i++)
        total += cmd->iov[i].iov_len;
    return total < cmd->xfer_len ? total : cmd->xfer_len;
}

size_t scsi_copy_from_guest(const struct scsi_cmd *cmd, void *dst, size_t len)
{
    size_t n = scsi_usable(cmd, SCSI_DIR_TO_DEV), done = 0;
    if (len > n)
        len = n;
    for (int i = 0; done < len; i++) {
        size_t c = cmd->iov[i].iov_len;
        if (c > len - done)
            c = len - done;
        memcpy((uint8_t *)dst + done, cmd->iov[i].iov_base, c);
        done += c;
    }
    return done;
}

static void end(struct scsi_cmd *cmd, uint8_t status, uint32_t transferred)
{
    cmd->status = status;
    cmd->transferred = transferred;
    cmd->done(cmd);
}

void scsi_good(struct scsi_cmd *cmd, uint32_t transferred)
{
    cmd->sense_len = 0;
    end(cmd, SCSI_STATUS_GOOD, transferred);
}

void scsi_status_only(struct scsi_cmd *cmd, uint8_t status)
{
    cmd->sense_len = 0;
    end(cmd, status, 0);
}

void scsi_check(struct scsi_cmd *cmd, uint8_t key, uint8_t asc, uint8_t ascq)
{
    memset(cmd->sense, 0, sizeof(cmd->sense));
    cmd->sense[0] = 0x70;                 /* current error, fixed format */
    cmd->sense[2] = key;
    cmd->sense[7] = SCSI_SENSE_LEN - 8;   /* additional sense length */
    cmd->sense[12] = asc;
    cmd->sense[13] = ascq;
    cmd->sense_len = SCSI_SENSE_LEN;
    end(cmd, SCSI_STATUS_CHECK_CONDITION, 0);
}

void scsi_data_in(struct scsi_cmd *cmd, const void *buf, size_t len, size_t alloc)
{
    size_t n = scsi_usable(cmd, SCSI_DIR_FROM_DEV);
    if (n > len)
        n = len;
    if (n > alloc)
        n = alloc;
    size_t done = 0;
    for (int i = 0; done < n; i++) {
        size_t c = cmd->iov[i].iov_len;
        if (c > n - done)
            c = n - done;
        memcpy(cmd->iov[i].iov_base, (const uint8_t *)buf + done, c);
        done += c;
    }
    scsi_good(cmd, (uint32_t)n);
}
