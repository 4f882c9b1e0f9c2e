/* SPDX-License-Identifier: MIT */
/*
 * VMBus ring buffers, host side.
 *
 * Each channel has two rings in guest memory: guest->host (we are the
 * consumer, struct ring_reader) and host->guest (we are the producer,
 * struct ring_writer).  Both have the same 4 KiB control page:
 *
 *   write_index      owned by the producer; byte offset of the next packet
 *   read_index       owned by the consumer; byte offset of the oldest unread byte
 *   interrupt_mask   owned by the consumer; non-zero means "I am draining,
 *                    don't signal me"
 *   pending_send_sz  owned by the producer; non-zero means "I am blocked,
 *                    signal me once more than this many bytes are free"
 *   feature_bits     bit 0: the side that owns this ring's producer role
 *                    honours pending_send_sz (Linux sets it on both rings)
 *
 * Rules this file follows (and expects the guest to follow):
 *
 *  1. Indices are byte offsets into the data area, multiples of 8, below
 *     the data size.  read == write means empty, so a producer never fills
 *     the ring completely: it writes a packet only if the free space is
 *     strictly larger than the packet plus its trailer.
 *  2. A packet is a 16-byte descriptor, body padded to 8 bytes, then an
 *     8-byte trailer whose upper 32 bits hold the write index the packet
 *     started at.  len8 counts descriptor + body (not the trailer) in
 *     8-byte units; offset8 is where the payload starts, also in units of 8.
 *  3. Producer order: copy the packet, then publish write_index with
 *     release semantics [A].  Consumer order: load write_index with acquire
 *     semantics [A], then read the packet.
 *  4. Consumer order: finish reading the packets, then publish read_index
 *     with release semantics [B].  Producer order: load read_index with
 *     acquire semantics [B] before overwriting any free byte.
 *  5. Producer signals after publishing iff interrupt_mask is 0 and the
 *     ring was empty before this packet (the consumer's read index equals
 *     the old write index).  Both are loaded after a full barrier [C]
 *     that pairs with the consumer's "clear interrupt_mask, full barrier,
 *     re-check for data" [C] when it stops draining: one of the two sides
 *     always sees the other, so no wake-up is lost.  Packets written
 *     deferred are published together (ring_writer_publish), under the
 *     same rule with "before this packet" meaning before the batch.
 *  6. A blocked producer stores pending_send_sz, issues a full barrier [D]
 *     and re-checks the free space before giving up.  The consumer, after
 *     publishing read_index, issues a full barrier [D], loads
 *     pending_send_sz and signals iff this batch moved the free space from
 *     <= pending_send_sz to > pending_send_sz.
 *
 * The guest may rewrite any byte at any moment, so every shared index is
 * loaded exactly once into a local, checked, and then only the local is
 * used.  Packets are copied into the caller's buffer before anything but
 * len8 is looked at, and the descriptor handed back comes from the copy.
 * Our own indices (the reader's read index, the writer's write index) are
 * kept privately; the shared copies are only stored to.
 */
#include "xpartition/ring.h"

#include <assert.h>
#include <errno.h>
#include <string.h>

#define DESC_SIZE ((uint32_t)sizeof(struct vmpacket_descriptor))
#define MIN_PKT_IN_RING (DESC_SIZE + VMBUS_PKT_TRAILER_SIZE)
#define INDEX_INVALID UINT32_MAX

/* The header struct is packed (for the layout pins), but every field sits at
 * its natural alignment inside a page-aligned header, so aligned atomic
 * access through these pointers is fine. */
static inline uint32_t *hdr_u32(struct vmbus_ring_header *hdr, size_t off)
{
    return (uint32_t *)(void *)((uint8_t *)(void *)hdr + off);
}
#define HDR_U32(hdr, field) hdr_u32((hdr), offsetof(struct vmbus_ring_header, field))

static inline uint32_t load_acquire(uint32_t *p)
{
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

static inline uint32_t load_once(uint32_t *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

static inline void store_release(uint32_t *p, uint32_t v)
{
    __atomic_store_n(p, v, __ATOMIC_RELEASE);
}

static inline void store_once(uint32_t *p, uint32_t v)
{
    __atomic_store_n(p, v, __ATOMIC_RELAXED);
}

static inline void full_barrier(void)
{
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
}

static inline bool index_ok(const struct ring *r, uint32_t idx)
{
    return idx < r->size && (idx & 7u) == 0;
}

/* Bytes from `from` up to `to`, going forward around the ring.  Both
 * indices must already be checked. */
static inline uint32_t ring_dist(const struct ring *r, uint32_t from, uint32_t to)
{
    return to >= from ? to - from : r->size - from + to;
}

static inline uint32_t ring_advance(const struct ring *r, uint32_t idx, uint32_t n)
{
    /* idx < size and n < size (callers guarantee), so one subtraction suffices. */
    uint32_t v = idx + n;
    return v >= r->size ? v - r->size : v;
}

static void ring_setup(struct ring *r, struct vmbus_ring_header *hdr, uint8_t *data,
                       uint32_t size)
{
    /* Host invariants, not guest input: the caller sized the mapping. */
    assert(hdr && data);
    assert(size >= MIN_PKT_IN_RING && (size & 7u) == 0);
    assert(size <= (1u << 30)); /* index + length arithmetic stays in 32 bits */
    assert(((uintptr_t)data & 7u) == 0);
    r->hdr = hdr;
    r->data = data;
    r->size = size;
}

const char *ring_strerror(int err)
{
    switch (err) {
    case RING_OK:
        return "ok";
    case RING_EMPTY:
        return "ring empty";
    case RING_ERR_INDEX:
        return "ring index out of range or unaligned";
    case RING_ERR_DESC:
        return "packet descriptor inconsistent (len8/offset8)";
    case RING_ERR_OVERRUN:
        return "packet overruns the bytes available in the ring";
    case RING_ERR_TOOBIG:
        return "packet larger than the receive buffer";
    case -EAGAIN:
        return "ring full";
    case -EMSGSIZE:
        return "packet can never fit the ring";
    case -EINVAL:
        return "invalid packet";
    default:
        return "unknown ring error";
    }
}

/* Stores of the header fields the host owns; in vmbusd-guestfuzz they pass
 * the ring's fuzz hook first (ring.h). */
#ifdef VMBUSD_GUESTFUZZ
#define HOST_STORE(r, field, store, ptr, v)                                             \
    do {                                                                                \
        uint32_t v_ = (v);                                                              \
        if (!(r)->fuzz || (r)->fuzz((r)->fuzz_ctx, (field), (r)->size, &v_))            \
            store(ptr, v_);                                                             \
    } while (0)
#define CHECKED(wr) (!(wr)->raw) /* ring_write_raw_keep skips the descriptor checks */
#else
#define HOST_STORE(r, field, store, ptr, v) store(ptr, v)
#define CHECKED(wr) true
#endif

/* ------------------------------------------------------------------ */
/* Reader (guest->host ring)                                           */

void ring_reader_init(struct ring_reader *rd, struct vmbus_ring_header *hdr, uint8_t *data,
                      uint32_t size)
{
    ring_setup(&rd->r, hdr, data, size);
    /* Checked in ring_read_next / ring_reader_avail before any use. */
    rd->read = load_once(HDR_U32(hdr, read_index));
    rd->start_read = rd->read;
}

uint32_t ring_reader_avail(const struct ring_reader *rd)
{
    uint32_t w = load_acquire(HDR_U32(rd->r.hdr, write_index)); /* [A] */
    if (!index_ok(&rd->r, w) || !index_ok(&rd->r, rd->read))
        return 0;
    return ring_dist(&rd->r, rd->read, w);
}

int ring_read_next(struct ring_reader *rd, void *buf, size_t buflen, struct ring_pkt *pkt)
{
    const struct ring *r = &rd->r;
    uint32_t rpos = rd->read;
    uint32_t w = load_acquire(HDR_U32(r->hdr, write_index)); /* [A] */

    if (!index_ok(r, w) || !index_ok(r, rpos))
        return RING_ERR_INDEX;
    uint32_t avail = ring_dist(r, rpos, w);
    if (avail == 0)
        return RING_EMPTY;
    /* The producer publishes whole packets only; a sliver is corruption. */
    if (avail < MIN_PKT_IN_RING)
        return RING_ERR_OVERRUN;

    /* len8 is the one field we must look at in place: it says how much to
     * copy.  Load it once; rpos is 8-aligned and data too, so it is aligned. */
    const uint8_t *src = r->data + rpos;
    uint32_t len8 = __atomic_load_n((const uint16_t *)(src + offsetof(struct vmpacket_descriptor,
                                                                      len8)),
                                    __ATOMIC_RELAXED);
    uint32_t len = len8 * 8u;
    if (len < DESC_SIZE)
        return RING_ERR_DESC;
    if (len > avail - VMBUS_PKT_TRAILER_SIZE)
        return RING_ERR_OVERRUN;
    if (len > buflen) {
        if (pkt) {
            memset(pkt, 0, sizeof(*pkt));
            pkt->total_len = len;
        }
        return RING_ERR_TOOBIG;
    }

    /* One copy even when the packet wraps: rpos + len < 2 * size and the
     * data area is mapped twice. */
    memcpy(buf, src, len);

    /* From here on only the private copy is parsed.  Pin len8 in the copy
     * to what was actually copied, in case the guest changed it meanwhile. */
    struct vmpacket_descriptor d;
    memcpy(&d, buf, sizeof(d));
    d.len8 = (uint16_t)len8;
    memcpy(buf, &d, sizeof(d));
    uint32_t off = (uint32_t)d.offset8 * 8u;
    if (off < DESC_SIZE || off > len)
        return RING_ERR_DESC;

    rd->read = ring_advance(r, rpos, len + VMBUS_PKT_TRAILER_SIZE);
    if (pkt) {
        pkt->desc = d;
        pkt->total_len = len;
        pkt->payload_off = off;
    }
    return RING_OK;
}

bool ring_reader_commit(struct ring_reader *rd)
{
    const struct ring *r = &rd->r;
    uint32_t start = rd->start_read;
    uint32_t now = rd->read;

    /* All packet reads happened before this store [B]. */
    HOST_STORE(r, RING_FIELD_READ_INDEX, store_release, HDR_U32(r->hdr, read_index), now);
    rd->start_read = now;

    if (start == now || !index_ok(r, start) || !index_ok(r, now))
        return false; /* nothing consumed: free space did not change */
    if (!(load_once(HDR_U32(r->hdr, feature_bits)) & VMBUS_RING_FEAT_PENDING_SEND_SZ))
        return false;

    /* The read_index store must be visible before we sample pending_send_sz,
     * or a producer that blocks right now could miss both our new index and
     * our signal [D]. */
    full_barrier();
    uint32_t pending = load_once(HDR_U32(r->hdr, pending_send_sz));
    if (pending == 0)
        return false;
    uint32_t w = load_once(HDR_U32(r->hdr, write_index));
    if (!index_ok(r, w))
        return false;

    uint32_t free_now = r->size - ring_dist(r, now, w);
    uint32_t consumed = ring_dist(r, start, now);
    uint32_t free_before = free_now > consumed ? free_now - consumed : 0;
    return free_before <= pending && free_now > pending;
}

bool ring_reader_commit_due(const struct ring_reader *rd)
{
    const struct ring *r = &rd->r;
    if (!index_ok(r, rd->start_read) || !index_ok(r, rd->read))
        return false;
    uint32_t consumed = ring_dist(r, rd->start_read, rd->read);
    if (consumed == 0)
        return false;
    if (consumed >= r->size / 4)
        return true;
    /* Only a hint: ring_reader_commit does the ordered check [D], and a
     * request this load misses is honoured by the commit at the end of
     * the batch. */
    uint32_t pending = load_once(HDR_U32(r->hdr, pending_send_sz));
    if (pending == 0 ||
        !(load_once(HDR_U32(r->hdr, feature_bits)) & VMBUS_RING_FEAT_PENDING_SEND_SZ))
        return false;
    uint32_t w = load_once(HDR_U32(r->hdr, write_index));
    if (!index_ok(r, w))
        return false;
    /* Once: when what is published (start_read) still leaves the guest
     * waiting and what was read would not. */
    return r->size - ring_dist(r, rd->start_read, w) <= pending &&
           r->size - ring_dist(r, rd->read, w) > pending;
}

void ring_reader_set_mask(struct ring_reader *rd, bool masked)
{
    HOST_STORE(&rd->r, RING_FIELD_INTERRUPT_MASK, store_once, HDR_U32(rd->r.hdr, interrupt_mask),
               masked ? 1u : 0u);
    full_barrier();
}

bool ring_reader_rearm(struct ring_reader *rd)
{
    HOST_STORE(&rd->r, RING_FIELD_INTERRUPT_MASK, store_once, HDR_U32(rd->r.hdr, interrupt_mask),
               0);
    full_barrier(); /* [C]: the unmask is visible before we look for data */
    uint32_t w = load_acquire(HDR_U32(rd->r.hdr, write_index));
    if (!index_ok(&rd->r, w) || !index_ok(&rd->r, rd->read))
        return true; /* let ring_read_next report it */
    return w != rd->read;
}

/* ------------------------------------------------------------------ */
/* Writer (host->guest ring)                                           */

void ring_writer_init(struct ring_writer *wr, struct vmbus_ring_header *hdr, uint8_t *data,
                      uint32_t size)
{
    ring_setup(&wr->r, hdr, data, size);
    uint32_t w = load_once(HDR_U32(hdr, write_index));
    wr->write = index_ok(&wr->r, w) ? w : INDEX_INVALID;
    wr->published = wr->write;
    wr->max_pkt = 0;
    wr->pending_set = false;
    __atomic_fetch_or(HDR_U32(hdr, feature_bits), VMBUS_RING_FEAT_PENDING_SEND_SZ,
                      __ATOMIC_RELAXED);
}

void ring_writer_set_max_pkt(struct ring_writer *wr, uint32_t max_pkt)
{
    wr->max_pkt = max_pkt;
}

uint32_t ring_writer_free(const struct ring_writer *wr)
{
    uint32_t rpos = load_acquire(HDR_U32(wr->r.hdr, read_index)); /* [B] */
    if (!index_ok(&wr->r, rpos) || !index_ok(&wr->r, wr->write))
        return 0;
    return wr->r.size - ring_dist(&wr->r, rpos, wr->write);
}

/* Check the caller-built descriptor (host data, but a wrong len8 would
 * desynchronise the guest's reader, so refuse it loudly). */
static int check_out_desc(const struct iovec *iov, int iovcnt, uint32_t padded)
{
    struct vmpacket_descriptor d;
    uint8_t *dst = (uint8_t *)&d;
    size_t got = 0;
    for (int i = 0; i < iovcnt && got < sizeof(d); i++) {
        size_t n = iov[i].iov_len;
        if (n > sizeof(d) - got)
            n = sizeof(d) - got;
        if (n)
            memcpy(dst + got, iov[i].iov_base, n);
        got += n;
    }
    if (got < sizeof(d))
        return -EINVAL;
    if ((uint32_t)d.len8 * 8u != padded)
        return -EINVAL;
    if (d.offset8 < DESC_SIZE / 8 || d.offset8 > d.len8)
        return -EINVAL;
    return 0;
}

int ring_writer_check_len(const struct ring_writer *wr, size_t len)
{
    if (len > RING_MAX_PKT_LEN)
        return -EMSGSIZE;
    uint32_t padded = ((uint32_t)len + 7u) & ~7u;
    uint32_t need = padded + VMBUS_PKT_TRAILER_SIZE;
    if (padded > RING_MAX_PKT_LEN || need >= wr->r.size ||
        (CHECKED(wr) && wr->max_pkt && padded > wr->max_pkt))
        return -EMSGSIZE;
    return 0;
}

int ring_writer_room(struct ring_writer *wr, uint32_t need, uint32_t keep)
{
    /* Ask the guest to signal once there is room (pending_send_sz) and
     * look again: it may have consumed in between and not seen the
     * request [D]. */
    const struct ring *r = &wr->r;
    uint32_t w = wr->write;
    if (!index_ok(r, w))
        return RING_ERR_INDEX;
    uint32_t rpos = load_acquire(HDR_U32(r->hdr, read_index)); /* [B] */
    if (!index_ok(r, rpos))
        return RING_ERR_INDEX;
    uint32_t free_bytes = r->size - ring_dist(r, rpos, w);
    /* need < size and keep < 2 * size (the caller's reservations): no overflow */
    if (free_bytes <= need + keep) {
        HOST_STORE(r, RING_FIELD_PENDING_SEND_SZ, store_once, HDR_U32(r->hdr, pending_send_sz),
                   need + keep);
        wr->pending_set = true;
        full_barrier();
        rpos = load_acquire(HDR_U32(r->hdr, read_index));
        if (!index_ok(r, rpos))
            return RING_ERR_INDEX;
        free_bytes = r->size - ring_dist(r, rpos, w);
        if (free_bytes <= need + keep)
            return -EAGAIN;
    }
    return RING_OK;
}

void ring_writer_clear_pending(struct ring_writer *wr)
{
    if (wr->pending_set) {
        HOST_STORE(&wr->r, RING_FIELD_PENDING_SEND_SZ, store_once,
                   HDR_U32(wr->r.hdr, pending_send_sz), 0);
        wr->pending_set = false;
    }
}

int ring_write(struct ring_writer *wr, const struct iovec *iov, int iovcnt, bool *signal)
{
    return ring_write_keep(wr, iov, iovcnt, 0, signal);
}

/* Copy one packet into free space and advance the private write index. */
static int copy_packet(struct ring_writer *wr, const struct iovec *iov, int iovcnt, uint32_t keep)
{
    const struct ring *r = &wr->r;
    if (iovcnt < 0 || (iovcnt > 0 && !iov))
        return -EINVAL;

    size_t len = 0;
    for (int i = 0; i < iovcnt; i++) {
        if (iov[i].iov_len > RING_MAX_PKT_LEN || len + iov[i].iov_len > RING_MAX_PKT_LEN)
            return -EMSGSIZE;
        len += iov[i].iov_len;
    }
    int err = ring_writer_check_len(wr, len);
    if (err)
        return err;
    uint32_t padded = ((uint32_t)len + 7u) & ~7u;
    uint32_t need = padded + VMBUS_PKT_TRAILER_SIZE;
    err = CHECKED(wr) ? check_out_desc(iov, iovcnt, padded) : 0;
    if (err)
        return err;

    uint32_t w = wr->write;
    err = ring_writer_room(wr, need, keep);
    if (err)
        return err;

    /* w + need < 2 * size: contiguous thanks to the double mapping, and all
     * of it lies in free space (need + keep < free bytes). */
    uint8_t *dst = r->data + w;
    for (int i = 0; i < iovcnt; i++) {
        if (iov[i].iov_len) {
            memcpy(dst, iov[i].iov_base, iov[i].iov_len);
            dst += iov[i].iov_len;
        }
    }
    memset(dst, 0, padded - len);
    dst += padded - len;
    uint64_t trailer = (uint64_t)w << 32;
    memcpy(dst, &trailer, sizeof(trailer));

    wr->write = ring_advance(r, w, need);
    ring_writer_clear_pending(wr);
    return RING_OK;
}

bool ring_writer_publish(struct ring_writer *wr)
{
    const struct ring *r = &wr->r;
    uint32_t old = wr->published;
    if (old == wr->write)
        return false;
    HOST_STORE(r, RING_FIELD_WRITE_INDEX, store_release, HDR_U32(r->hdr, write_index),
               wr->write); /* [A] */
    wr->published = wr->write;
    /* [C]: our write_index is visible before we look at the consumer's state. */
    full_barrier();
    return load_once(HDR_U32(r->hdr, interrupt_mask)) == 0 &&
           load_once(HDR_U32(r->hdr, read_index)) == old;
}

int ring_write_keep_deferred(struct ring_writer *wr, const struct iovec *iov, int iovcnt,
                             uint32_t keep)
{
    return copy_packet(wr, iov, iovcnt, keep);
}

int ring_write_keep(struct ring_writer *wr, const struct iovec *iov, int iovcnt, uint32_t keep,
                    bool *signal)
{
    if (signal)
        *signal = false;
    int err = copy_packet(wr, iov, iovcnt, keep);
    if (err)
        return err;
    bool sig = ring_writer_publish(wr);
    if (signal)
        *signal = sig;
    return RING_OK;
}

#ifdef VMBUSD_GUESTFUZZ
int ring_write_raw_keep(struct ring_writer *wr, const struct iovec *iov, int iovcnt,
                        uint32_t keep, bool *signal)
{
    wr->raw = true;
    int ret = ring_write_keep(wr, iov, iovcnt, keep, signal);
    wr->raw = false;
    return ret;
}
#endif

/* ------------------------------------------------------------------ */
/* Status                                                              */

void ring_peek(const struct ring *r, struct ring_state *st)
{
    *st = (struct ring_state){0};
    if (!r->hdr)
        return;
    st->write_index = load_once(HDR_U32(r->hdr, write_index));
    st->read_index = load_once(HDR_U32(r->hdr, read_index));
    st->interrupt_mask = load_once(HDR_U32(r->hdr, interrupt_mask));
    st->pending_send_sz = load_once(HDR_U32(r->hdr, pending_send_sz));
}

uint32_t ring_fill_pct(const struct ring *r)
{
    if (!r->hdr || !r->size)
        return 0;
    uint32_t w = load_acquire(HDR_U32(r->hdr, write_index));
    uint32_t rd = load_acquire(HDR_U32(r->hdr, read_index));
    if (!index_ok(r, w) || !index_ok(r, rd))
        return 0;
    return (uint32_t)((uint64_t)ring_dist(r, rd, w) * 100 / r->size);
}
