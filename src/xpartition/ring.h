/* SPDX-License-Identifier: MIT */
/*
 * Host side of a VMBus ring buffer pair, over guest memory.
 *
 * A ring = one 4 KiB control page (struct vmbus_ring_header) followed by the
 * data area.  The guest owns the memory and may change any byte at any time,
 * so every index read from the control page is read once, range-checked,
 * and never trusted twice; packets are copied out before they are parsed.
 *
 * The data area is expected to be mapped twice back to back
 * (data[i] and data[i + size] are the same byte), so a packet that wraps
 * is contiguous in host memory; ring_map.c builds such mappings.
 */
#ifndef VMBUSD_RING_H
#define VMBUSD_RING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "vmbusd/hv_wire.h"

struct ring {
    struct vmbus_ring_header *hdr; /* shared control page */
    uint8_t *data;                 /* data area, double-mapped: 2 * size bytes readable */
    uint32_t size;                 /* data area bytes; multiple of 8, >= 4096 */
};

/* Why a ring was rejected: the caller logs it and tears the channel down. */
enum ring_error {
    RING_OK = 0,
    RING_EMPTY = 1,          /* not an error: nothing to read */
    RING_ERR_INDEX = -1,     /* write/read index outside the data area or unaligned */
    RING_ERR_DESC = -2,      /* descriptor len8/offset8 inconsistent */
    RING_ERR_OVERRUN = -3,   /* packet claims more bytes than are in the ring */
    RING_ERR_TOOBIG = -4,    /* packet larger than the caller's buffer */
};
const char *ring_strerror(int err);

/* Host reads the guest->host ring. */
struct ring_reader {
    struct ring r;
    uint32_t read;         /* private read index, published by ring_reader_commit */
    uint32_t start_read;   /* read index at the start of this batch */
};

struct ring_pkt {
    struct vmpacket_descriptor desc; /* validated copy */
    uint32_t total_len;              /* len8 * 8: descriptor + headers + payload */
    uint32_t payload_off;            /* offset8 * 8 */
};

void ring_reader_init(struct ring_reader *rd, struct vmbus_ring_header *hdr, uint8_t *data,
                      uint32_t size);
/* Copy the next packet (descriptor through payload, without trailer) into
 * buf.  Returns RING_OK with *pkt filled, RING_EMPTY, or a RING_ERR_*. */
int ring_read_next(struct ring_reader *rd, void *buf, size_t buflen, struct ring_pkt *pkt);
/* Publish the private read index.  Returns true if the guest must be
 * signalled (it set pending_send_sz and free space crossed it). */
bool ring_reader_commit(struct ring_reader *rd);
/* Bytes waiting to be read right now (0 if indices are invalid). */
uint32_t ring_reader_avail(const struct ring_reader *rd);
/* Before the host stops draining: clear interrupt_mask and re-check.
 * Returns true if more data arrived meanwhile (keep draining). */
bool ring_reader_rearm(struct ring_reader *rd);

/* Host writes the host->guest ring. */
struct ring_writer {
    struct ring r;
};

void ring_writer_init(struct ring_writer *wr, struct vmbus_ring_header *hdr, uint8_t *data,
                      uint32_t size);
/* Write one packet made of iov[] (descriptor included, written by the
 * caller), padded to 8 bytes, plus the trailer.  Returns RING_OK and sets
 * *signal if the guest must be interrupted (ring was empty and
 * interrupt_mask is 0); -EAGAIN if there is no room (pending_send_sz is set
 * so the guest signals when it frees space); -EMSGSIZE if it can never fit;
 * RING_ERR_INDEX if the guest corrupted the indices. */
int ring_write(struct ring_writer *wr, const struct iovec *iov, int iovcnt, bool *signal);
/* Free bytes in the host->guest ring (0 if indices are invalid). */
uint32_t ring_writer_free(const struct ring_writer *wr);

#endif /* VMBUSD_RING_H */
