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
 *
 * Threading: one ring_reader / ring_writer per ring, used by one thread at
 * a time (the caller serialises).  The protocol contract (who writes which
 * header field, when either side signals) is spelled out in ring.c.
 */
#ifndef VMBUSD_RING_H
#define VMBUSD_RING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "vmbusd/hv_wire.h"

#ifdef VMBUSD_GUESTFUZZ
/* vmbusd-guestfuzz only: every store of a header field the host owns goes
 * through this hook first (field: RING_FIELD_*).  It may change *value;
 * false skips the store.  The host keeps using its private indices, so
 * only the guest sees the lie. */
#define RING_FIELD_WRITE_INDEX 0     /* host->guest ring */
#define RING_FIELD_READ_INDEX 1      /* guest->host ring */
#define RING_FIELD_INTERRUPT_MASK 2  /* guest->host ring */
#define RING_FIELD_PENDING_SEND_SZ 3 /* host->guest ring */
typedef bool (*ring_fuzz_fn)(void *ctx, unsigned field, uint32_t ring_size, uint32_t *value);
#endif

struct ring {
    struct vmbus_ring_header *hdr; /* shared control page */
    uint8_t *data;                 /* data area, double-mapped: 2 * size bytes readable */
    uint32_t size;                 /* data area bytes; multiple of 8, >= 4096 in practice */
#ifdef VMBUSD_GUESTFUZZ
    ring_fuzz_fn fuzz; /* NULL: stores as usual; set after ring_*_init */
    void *fuzz_ctx;
#endif
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
/* Also knows -EAGAIN, -EMSGSIZE and -EINVAL from ring_write. */
const char *ring_strerror(int err);

/* Bytes a packet whose descriptor + payload is `len` bytes occupies in the
 * ring: padded to 8, plus the 8-byte trailer.  A writer may only write it
 * when strictly more than this many bytes are free. */
static inline uint32_t ring_packet_size(uint32_t len)
{
    return ((len + 7u) & ~7u) + VMBUS_PKT_TRAILER_SIZE;
}

/* Largest descriptor + payload the len8 field can describe. */
#define RING_MAX_PKT_LEN (0xffffu * 8u)

/* ------------------------------------------------------------------ */
/* Host reads the guest->host ring.                                    */

struct ring_reader {
    struct ring r;
    uint32_t read;         /* private read index, published by ring_reader_commit */
    uint32_t start_read;   /* read index at the start of this batch (last commit) */
};

struct ring_pkt {
    struct vmpacket_descriptor desc; /* validated copy (len8 is the length actually copied) */
    uint32_t total_len;              /* len8 * 8: descriptor + headers + payload */
    uint32_t payload_off;            /* offset8 * 8, in [16, total_len] */
};

/* Takes the current shared read_index as the starting point (checked on the
 * first ring_read_next).  size must be a multiple of 8 and data 8-aligned. */
void ring_reader_init(struct ring_reader *rd, struct vmbus_ring_header *hdr, uint8_t *data,
                      uint32_t size);
/* Copy the next packet (descriptor through payload, without trailer) into
 * buf, then validate the copy.  Returns RING_OK with *pkt filled (the
 * private read index moves past the packet), RING_EMPTY, or a RING_ERR_*
 * (the read index does not move).  On RING_ERR_TOOBIG, pkt->total_len is
 * the size buf would need, so the caller may retry with a larger buffer.
 * The shared read_index is not touched: see ring_reader_commit. */
int ring_read_next(struct ring_reader *rd, void *buf, size_t buflen, struct ring_pkt *pkt);
/* Publish the private read index (release) and start a new batch.
 * Returns true if the guest must be signalled: the guest advertised
 * pending_send_sz (feature bit 0 in this ring's header), set it non-zero,
 * and this batch moved the free space from <= pending_send_sz to
 * > pending_send_sz (the Linux writer needs strictly more free bytes than it
 * writes, so "exactly pending_send_sz free" does not wake it). */
bool ring_reader_commit(struct ring_reader *rd);
/* Whether to commit in the middle of a batch, right after a packet: a
 * quarter of the ring was consumed since the last commit, or the guest is
 * blocked (pending_send_sz, with feature bit 0) on space that the published
 * read index does not give it and the private one does.  Without it a producer that keeps
 * the ring busy would see it full although everything in it was read. */
bool ring_reader_commit_due(const struct ring_reader *rd);
/* Bytes waiting to be read after the private read index (0 if indices are invalid). */
uint32_t ring_reader_avail(const struct ring_reader *rd);
/* Set interrupt_mask (true: "don't signal me", while draining) and issue a
 * full barrier. */
void ring_reader_set_mask(struct ring_reader *rd, bool masked);
/* Before the host stops draining: clear interrupt_mask, full barrier, and
 * re-check.  Returns true if the caller must call ring_read_next again:
 * more data arrived meanwhile, or the write index is corrupt (so that
 * ring_read_next reports the error). */
bool ring_reader_rearm(struct ring_reader *rd);

/* ------------------------------------------------------------------ */
/* Host writes the host->guest ring.                                   */

struct ring_writer {
    struct ring r;
    uint32_t write;        /* private write index (the shared one is only ever stored);
                              UINT32_MAX if the guest handed us a corrupt one at init */
    uint32_t published;    /* what we last stored as the shared write index: behind
                              `write` while deferred packets wait (ring_writer_publish) */
    uint32_t max_pkt;      /* 0 or the guest's receive buffer size (len8 * 8 limit) */
    bool pending_set;      /* we set pending_send_sz and have not cleared it yet */
#ifdef VMBUSD_GUESTFUZZ
    bool raw;              /* inside ring_write_raw_keep */
#endif
};

/* Takes the current shared write_index as the starting point and sets
 * feature bit 0 (pending_send_sz) in this ring's header: the host promises to
 * use pending_send_sz when blocked and honour it on the other ring. */
void ring_writer_init(struct ring_writer *wr, struct vmbus_ring_header *hdr, uint8_t *data,
                      uint32_t size);
/* Refuse (-EMSGSIZE) packets whose descriptor + payload exceeds max_pkt
 * bytes: the Linux reader copies into a fixed max_pkt_size buffer and a
 * larger packet desynchronises the ring.  0 = only the ring size limits. */
void ring_writer_set_max_pkt(struct ring_writer *wr, uint32_t max_pkt);
/* Write one packet made of iov[] (descriptor included, written by the
 * caller), padded to 8 bytes, plus the trailer.  The descriptor must be
 * consistent: len8 * 8 == total iov length rounded up to 8, and
 * 2 <= offset8 <= len8, else -EINVAL.  Returns RING_OK and sets *signal
 * (may be NULL) if the guest must be interrupted (ring was empty and
 * interrupt_mask is 0); -EAGAIN if there is no room (pending_send_sz is set
 * so the guest signals when it frees space; it is cleared again by the next
 * successful write); -EMSGSIZE if it can never fit; RING_ERR_INDEX if the
 * guest corrupted the indices. */
int ring_write(struct ring_writer *wr, const struct iovec *iov, int iovcnt, bool *signal);
/* ring_write that leaves `keep` bytes of the free space untouched (room
 * reserved for other packets): it writes only when more than
 * ring_packet_size(len) + keep bytes are free, and a blocked write asks the
 * guest (pending_send_sz) for that much. */
int ring_write_keep(struct ring_writer *wr, const struct iovec *iov, int iovcnt, uint32_t keep,
                    bool *signal);
/* ring_write_keep that copies the packet in but leaves the shared write
 * index (and the signal) to ring_writer_publish: several packets then
 * reach the guest with one index update and at most one interrupt.  Room,
 * `keep` and pending_send_sz are handled as by ring_write_keep. */
int ring_write_keep_deferred(struct ring_writer *wr, const struct iovec *iov, int iovcnt,
                             uint32_t keep);
/* Publish every packet written so far (nothing if none waits): true if the
 * guest must be interrupted, i.e. interrupt_mask is 0 and the guest had
 * read everything published before (the rule of a single write, applied
 * to the batch). */
bool ring_writer_publish(struct ring_writer *wr);
/* -EMSGSIZE if a packet of len bytes (descriptor included) can never be
 * written to this ring (len8 limit, ring size, max_pkt), else 0. */
int ring_writer_check_len(const struct ring_writer *wr, size_t len);
/* Whether a packet taking `need` ring bytes (ring_packet_size) would fit now
 * beside `keep` reserved bytes, without writing it: 0, -EAGAIN (then
 * pending_send_sz asks the guest to signal once more than need + keep bytes
 * are free, as a blocked ring_write does), or RING_ERR_INDEX. */
int ring_writer_room(struct ring_writer *wr, uint32_t need, uint32_t keep);
/* Take back a pending_send_sz request (nobody waits for room any more). */
void ring_writer_clear_pending(struct ring_writer *wr);
/* Free bytes in the host->guest ring (0 if indices are invalid).  A packet
 * fits iff ring_writer_free() > ring_packet_size(len). */
uint32_t ring_writer_free(const struct ring_writer *wr);
#ifdef VMBUSD_GUESTFUZZ
/* vmbusd-guestfuzz only: ring_write_keep without the descriptor
 * consistency and max_pkt checks, so a mutated packet reaches the guest as
 * mutated; the bytes still go only into free space of the ring, beside the
 * `keep` reserved bytes. */
int ring_write_raw_keep(struct ring_writer *wr, const struct iovec *iov, int iovcnt,
                        uint32_t keep, bool *signal);
#endif

/* How full r is, in percent of its data area, from the shared indices
 * (each loaded once); 0 if they are corrupt.  For status displays. */
uint32_t ring_fill_pct(const struct ring *r);

/* The shared header's words as they are now (each loaded once, not
 * checked): what vmbusctl list --rings shows of a stalled channel. */
struct ring_state {
    uint32_t write_index, read_index, interrupt_mask, pending_send_sz;
};
void ring_peek(const struct ring *r, struct ring_state *st);

#endif /* VMBUSD_RING_H */
