/* SPDX-License-Identifier: MIT */
/*
 * The NIC's channels: NVSP version and buffer setup, RNDIS messages in both
 * directions, vRSS subchannels, frames between the guest and the backend.
 *
 * Each channel is a queue with its own backend queue fd: the primary
 * (queue 0) carries the control traffic and frames, each subchannel
 * (queue i) frames only.  The guest's receive and send buffers are set up
 * on the primary and shared by all queues (struct nic: buf_lock,
 * pool_lock); the channels' callbacks run in parallel.
 *
 * Every reply to a guest request is sent into ring room reserved before
 * the request was pulled (one completion, and one transfer-page packet for
 * an RNDIS reply), so a full ring never makes the host drop or queue a
 * reply: the request stays in the guest's ring until there is room.
 * Received frames also go into reserved room; with none, or with no free
 * receive sub-allocation, the backend's fd watch is removed and added
 * again when the guest frees room or completes sub-allocations.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "vsp/netvsp/netvsp.h"
#include "vsp/netvsp/nvsp_msg.h"
#include "vsp/netvsp/offload.h"
#include "vsp/netvsp/protocol.h"

/* Versions offered to the guest, highest first (Linux proposes each in
 * turn with min = max). */
static const uint32_t nvsp_versions[] = {NVSP_VERSION_61, NVSP_VERSION_6, NVSP_VERSION_5,
                                         NVSP_VERSION_4,  NVSP_VERSION_2, NVSP_VERSION_1};

/* Send-buffer section size the host asks for (the guest's default). */
#define SEND_SECTION_SIZE 6144u
/* Frames per transfer-page packet (one sub-allocation each), and frames
 * per fd callback before the callback returns to let other work run. */
#define RX_BATCH 64u
#define RX_FRAMES_PER_CALL 256u
/* With receive coalescing: the longest frame the TAP hands over (an
 * 802.1Q tag, an IPv6 header and 64 KB of IPv6 payload), and the most
 * sub-allocations one read may take for it; a packet then carries up to
 * NVSP_RSC_MAX ranges (what Linux reads). */
#define RSC_FRAME_MAX (18u + 40u + 65535u)
#define RSC_READ_MAX 64u
/* Sub-allocation size for guests that take coalesced frames, and the
 * fewest of them that size may leave (receive buffer of 2 MiB or more;
 * Linux's default is 16 MiB). */
#define RX_SUB_RSC 16384u
#define RX_SUB_RSC_MIN 128u
/* Private copy of one transmit: the largest RNDIS transfer the host
 * announced, plus a full send section of earlier packets. */
#define TX_COPY_MAX (128u * 1024u + SEND_SECTION_SIZE)
#define TX_MAX_IOV 64
/* Transmits longer than this copy only the first TX_GPA_PREFIX bytes of
 * their GPA-direct ranges when that holds all netvsp reads (struct tx_msg);
 * offload_tx_prepare reads at most the L4 offset of the request (10 bits)
 * plus a TCP header of a frame. */
#define TX_PARTIAL_MIN 16384u
#define TX_GPA_PREFIX 4096u
#define TX_FRAME_HDR_MAX 2048u

/* Reservation sizes (what follows the descriptor): a completion, and the
 * second reply a request may get (an RNDIS reply's transfer-page packet,
 * or the send indirection table after a subchannel request). */
#define RES_COMP NVSP_MSG_MAX
#define RES_XFER(n) (8u + 8u * (n) + NVSP_MSG_MAX)
#define RES_TABLE (NVSP_MSG_MAX + 4u * NVSP_SEND_TABLE_SIZE)
#define RES_REPLY (RES_TABLE > RES_XFER(1) ? RES_TABLE : RES_XFER(1))

struct xfer_hdr {
    uint16_t pageset_id;
    uint8_t sender_owns;
    uint8_t reserved;
    uint32_t range_cnt;
    struct vmtransfer_page_range ranges[NVSP_RSC_MAX];
} HV_PACKED;

/* Room reserved for the replies to one request. */
struct replies {
    bool comp, xfer;
};

static uint32_t msg_size_of(uint32_t version)
{
    return version >= NVSP_VERSION_6 ? NVSP_MSG_SIZE_V6 : NVSP_MSG_SIZE_V1;
}

/* A guest error on queue q's channel: counted for vmbusctl, logged by
 * vmbusd (rate-limited per VM, naming VM and relid). */
#define guest_error(q, ...)                                                                \
    do {                                                                                   \
        pthread_mutex_lock(&(q)->nic->lock);                                               \
        (q)->nic->stats.guest_errors++;                                                    \
        pthread_mutex_unlock(&(q)->nic->lock);                                             \
        vsp_guest_error((q)->ch, __VA_ARGS__);                                             \
    } while (0)

static void count(struct nic *nic, uint64_t *field, uint64_t n)
{
    pthread_mutex_lock(&nic->lock);
    *field += n;
    pthread_mutex_unlock(&nic->lock);
}

/* ---- receive sub-allocations, shared by the queues ------------------------ */

/* Queues that found no free sub-allocation wait on their wake eventfd:
 * whoever frees some (a completion on any channel, a batch giving back
 * what it did not fill) writes it.  Called with pool_lock held, which it
 * releases. */
static void pool_wake(struct nic *nic)
{
    uint64_t w = nic->pool_waiters;
    nic->pool_waiters = 0;
    pthread_mutex_unlock(&nic->pool_lock);
    for (unsigned i = 0; w; i++, w >>= 1) {
        uint64_t one = 1;
        if ((w & 1) && write(nic->q[i].wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
            vsp_plog(nic->p, VSP_LOG_WARN, "netvsp: wake queue %u: %s", i, strerror(errno));
    }
}

/* Take up to want free sub-allocations (control: the reserve too) into
 * idx; with fewer than min, none, and q waits for a wake.  The caller
 * holds buf_lock. */
static uint32_t pool_take(struct nic_queue *q, bool control, uint32_t *idx, uint32_t want,
                          uint32_t min)
{
    struct nic *nic = q->nic;
    uint32_t n = 0;
    pthread_mutex_lock(&nic->pool_lock);
    while (n < want && rx_pool_get(&nic->pool, control, &idx[n]))
        n++;
    if (n < min) {
        rx_pool_put(&nic->pool, idx, n);
        n = 0;
    }
    if (n == 0)
        nic->pool_waiters |= 1ull << q->index;
    pthread_mutex_unlock(&nic->pool_lock);
    return n;
}

static void pool_put(struct nic *nic, const uint32_t *idx, uint32_t n)
{
    if (!n)
        return;
    pthread_mutex_lock(&nic->pool_lock);
    rx_pool_put(&nic->pool, idx, n);
    pool_wake(nic);
}

/* The guest completed transaction tid on queue q: 0, or -EINVAL. */
static int pool_complete(struct nic_queue *q, uint64_t tid)
{
    struct nic *nic = q->nic;
    pthread_mutex_lock(&nic->pool_lock);
    int r = rx_pool_complete(&nic->pool, tid, q->index);
    pool_wake(nic);
    return r < 0 ? r : 0;
}

/* ---- replies ---------------------------------------------------------- */

/* Send the transmit completions q held back (each into its reservation),
 * after counting their frames: vmbusctl's figures never lag behind what
 * the guest was told. */
static void flush_comps(struct nic_queue *q)
{
    struct nic *nic = q->nic;
    if (!q->ncomp)
        return;
    pthread_mutex_lock(&nic->lock);
    nic->stats.tx_frames += q->comp_sent;
    nic->stats.tx_dropped += q->comp_dropped;
    pthread_mutex_unlock(&nic->lock);
    q->comp_sent = q->comp_dropped = 0;
    struct nvsp_msg m;
    memset(&m, 0, sizeof(m));
    m.type = NVSP_MSG1_SEND_RNDIS_PKT_COMPLETE;
    struct iovec iov = {&m, nic->msg_size ? nic->msg_size : NVSP_MSG_SIZE_V6};
    /* one signal for all: a guest woken by the first would take only that
     * one and need waking again for each of the others */
    vsp_send_batch_begin(q->ch);
    for (unsigned i = 0; i < q->ncomp; i++) {
        m.u.rndis_pkt_complete.status = q->comp[i].status;
        int ret = vsp_send_reserved(q->ch, RES_COMP, VM_PKT_COMP, 0, q->comp[i].trans_id,
                                    NULL, 0, &iov, 1);
        if (ret < 0 && ret != -EPIPE)
            vsp_log(q->ch, VSP_LOG_WARN, "netvsp: completion not sent: %s", strerror(-ret));
    }
    vsp_send_batch_end(q->ch);
    q->ncomp = 0;
}

/* Hold back the completion of a transmit whose reservation r has. */
static void defer_comp(struct nic_queue *q, struct replies *r, uint64_t trans_id,
                       uint32_t status, uint64_t sent, uint64_t dropped)
{
    if (!r->comp)
        return;
    r->comp = false;
    q->comp[q->ncomp].trans_id = trans_id;
    q->comp[q->ncomp].status = status;
    q->ncomp++;
    q->comp_sent += sent;
    q->comp_dropped += dropped;
    if (q->ncomp == NETVSP_COMP_BATCH)
        flush_comps(q);
}

static void send_comp(struct nic_queue *q, struct replies *r, uint64_t trans_id,
                      const struct nvsp_msg *m)
{
    if (!r->comp)
        return;
    struct nic *nic = q->nic;
    flush_comps(q); /* completions go in the order of their requests */
    struct iovec iov = {(void *)m, nic->msg_size ? nic->msg_size : NVSP_MSG_SIZE_V6};
    r->comp = false;
    int ret = vsp_send_reserved(q->ch, RES_COMP, VM_PKT_COMP, 0, trans_id, NULL, 0, &iov, 1);
    if (ret < 0 && ret != -EPIPE)
        vsp_log(q->ch, VSP_LOG_WARN, "netvsp: completion not sent: %s", strerror(-ret));
}

/* Send n sub-allocations idx[] (filled, lens[]) as one transfer-page
 * packet into a reservation of `reserved` bytes, or, reserved == 0, as an
 * ordinary send.  On failure the sub-allocations are free again. */
static int send_xfer(struct nic_queue *q, size_t reserved, uint32_t channel_type,
                     const uint32_t *idx, const uint32_t *lens, uint32_t n)
{
    struct nic *nic = q->nic;
    struct xfer_hdr h;
    h.pageset_id = NVSP_RECV_BUF_ID;
    h.sender_owns = 0;
    h.reserved = 0;
    h.range_cnt = n;
    for (uint32_t i = 0; i < n; i++) {
        h.ranges[i].byte_count = lens[i];
        h.ranges[i].byte_offset = idx[i] * nic->sub_size;
    }
    struct nvsp_msg m;
    memset(&m, 0, sizeof(m));
    m.type = NVSP_MSG1_SEND_RNDIS_PKT;
    m.u.rndis_pkt.channel_type = channel_type;
    m.u.rndis_pkt.section_index = NVSP_INVALID_SECTION;
    struct iovec iov = {&m, nic->msg_size};
    pthread_mutex_lock(&nic->pool_lock);
    uint64_t tid = rx_pool_send(&nic->pool, idx, n, q->index);
    /* out of the pool: what the guest holds (rx_pool_in_flight, which
     * scans the pool: too dear per packet), and what other queues are
     * filling right now */
    uint32_t out = nic->pool.count - nic->pool.nfree;
    pthread_mutex_unlock(&nic->pool_lock);
    if (channel_type == 0 && out > q->trace.out_max)
        q->trace.out_max = out;
    size_t hlen = 8 + 8 * (size_t)n;
    int ret = reserved ? vsp_send_reserved(q->ch, reserved, VM_PKT_DATA_USING_XFER_PAGES,
                                           VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED, tid,
                                           &h, hlen, &iov, 1)
                       : vsp_send_packet(q->ch, VM_PKT_DATA_USING_XFER_PAGES,
                                         VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED, tid, &h,
                                         hlen, &iov, 1);
    if (ret < 0)
        pool_complete(q, tid);
    return ret;
}

/* An RNDIS control message from the host (a completion or an indication)
 * in one control sub-allocation, on the primary (whose callbacks are the
 * only ones that change the buffers: no buf_lock needed here). */
static int send_rndis_control(struct nic_queue *q, size_t reserved, const uint8_t *msg,
                              size_t len)
{
    struct nic *nic = q->nic;
    uint32_t idx;
    if (!nic->recv_buf || pool_take(q, true, &idx, 1, 1) == 0) {
        if (reserved)
            vsp_send_unreserve(q->ch, reserved);
        return -ENOBUFS;
    }
    memcpy(nic->recv_buf + (size_t)idx * nic->sub_size, msg, len);
    uint32_t l = (uint32_t)len;
    return send_xfer(q, reserved, 1, &idx, &l, 1);
}

/* ---- receive path: backend -> guest ------------------------------------ */

static void on_backend(void *arg);
static void rsc_update(struct nic *nic);

static void rx_pause(struct nic_queue *q)
{
    if (q->watch) {
        vsp_fd_watch_remove(q->watch);
        q->watch = NULL;
    }
    q->rx_paused = true;
}

static void rx_resume(struct nic_queue *q)
{
    if (!q->rx_paused || q->backend_closed || !q->ch || !vsp_channel_is_open(q->ch))
        return;
    q->watch = vsp_fd_watch_add(q->nic->p, q->ch, q->fd, on_backend, q);
    if (q->watch)
        q->rx_paused = false;
    else
        vsp_log(q->ch, VSP_LOG_WARN, "netvsp: cannot watch the backend again: %s",
                strerror(errno));
}

/* Another queue freed sub-allocations this one waited for. */
static void on_wake(void *arg)
{
    struct nic_queue *q = arg;
    uint64_t v;
    if (read(q->wake_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
        vsp_log(q->ch, VSP_LOG_WARN, "netvsp: wake eventfd: %s", strerror(errno));
    rx_resume(q);
}

/* A packet fd read end of file: its peer closed it.  Stop watching it
 * (it would stay readable for ever); transmits are dropped from now on. */
static void backend_gone(struct nic_queue *q)
{
    if (!q->backend_closed)
        vsp_log(q->ch, VSP_LOG_WARN, "netvsp: the backend's peer closed queue %u: no more "
                "frames for the guest on it", q->index);
    q->backend_closed = true;
    rx_pause(q);
}

/* Frames nobody may receive (no receive buffer yet, RNDIS not initialised,
 * packet filter 0) are read and dropped, never queued: the guest must not
 * get stale frames once it enables receive. */
static void rx_drain(struct nic_queue *q)
{
    struct nic *nic = q->nic;
    uint8_t scratch[64];
    uint64_t n = 0;
    for (int i = 0; i < 256; i++) {
        /* A short read discards the rest of a datagram / TAP frame. */
        ssize_t got = read(q->fd, scratch, sizeof(scratch));
        if (got == 0)
            backend_gone(q);
        if (got <= 0)
            break;
        n++;
    }
    if (n)
        count(nic, &nic->stats.rx_filtered, n);
}

/* Sub-allocations one read needs with coalescing: the longest frame, and
 * one more, so that a read that fills them all was cut short. */
static uint32_t rsc_frags(uint32_t sub_size)
{
    uint32_t room = sub_size - RNDIS_RX_HDR_RSC_LEN;
    return (RSC_FRAME_MAX + room - 1) / room + 1;
}

/* One frame read into sub-allocations slot[0..nslots) (their data starts
 * hdr bytes in; a frame longer than one spans several, coalesced frames
 * only).  Writes the RNDIS header of each sub-allocation it fills, their
 * range lengths into lens[], and returns how many it filled: 0 for a frame
 * dropped (counted), -1 when the backend is empty or gone. */
static int rx_read(struct nic_queue *q, uint8_t *const *slot, uint32_t nslots, uint32_t hdr,
                   uint8_t rsc, uint32_t *lens)
{
    struct nic *nic = q->nic;
    uint32_t room = nic->sub_size - hdr;
    struct vnet_hdr vh;
    struct iovec iov[1 + RSC_READ_MAX];
    int niov = 0;
    if (nic->cfg.offload)
        iov[niov++] = (struct iovec){&vh, sizeof(vh)};
    for (uint32_t j = 0; j < nslots; j++)
        iov[niov++] = (struct iovec){slot[j] + hdr, room};
    ssize_t got = readv(q->fd, iov, niov);
    if (got == 0) {
        backend_gone(q);
        return -1;
    }
    if (got < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            vsp_log(q->ch, VSP_LOG_WARN, "netvsp: backend read: %s", strerror(errno));
        return -1;
    }
    bool gso = false;
    if (nic->cfg.offload) {
        if (got < (ssize_t)sizeof(vh))
            got = 0;
        else
            got -= (ssize_t)sizeof(vh);
        gso = vh.gso_type != VNET_HDR_GSO_NONE;
    }
    /* A frame that fills every sub-allocation given was cut short by the
     * read (longer than the MTU the guest set up for, or than any
     * coalesced frame): dropped, like a runt.  So is a frame longer than
     * one sub-allocation that is not a coalesced one. */
    uint32_t len = (uint32_t)got;
    uint32_t nf = (len + room - 1) / room;
    uint32_t csum = 0;
    int has_csum = 0;
    bool ok = len >= 14 && len < (uint64_t)room * nslots;
    struct iovec piece[RSC_READ_MAX]; /* a coalesced frame's parts */
    long tail = 0;                    /* a second frame split off it */
    uint32_t tail_csum = 0;
    if (ok && gso) {
        /* coalesced: only of a kind the guest takes */
        uint8_t kind = (vh.gso_type & 0x7f) == VNET_HDR_GSO_TCPV4   ? 1
                       : (vh.gso_type & 0x7f) == VNET_HDR_GSO_TCPV6 ? 2
                                                                      : 0;
        for (uint32_t j = 0; j < nf; j++)
            piece[j] = (struct iovec){slot[j] + hdr, j + 1 < nf ? room : len - j * room};
        ok = kind & rsc;
        /* Too long for the guest's allocator (OFFLOAD_RSC_FRAME_MAX): the
         * last segments go to the sub-allocation the read left empty,
         * then to the first one the shortened frame no longer needs. */
        unsigned nparts = nf;
        if (ok && nf < nslots)
            tail = offload_rx_gso_split(piece, &nparts, &vh, OFFLOAD_RSC_FRAME_MAX,
                                        slot[nf] + hdr, room);
        if (tail > 0 && nparts < nf)
            memcpy(slot[nparts] + hdr, slot[nf] + hdr, (size_t)tail);
        if (tail > 0) {
            struct iovec t = {slot[nparts] + hdr, (size_t)tail};
            nf = nparts;
            ok = offload_rx_gso(&t, 1, &vh, &tail_csum) == 0;
        }
        ok = ok && tail >= 0 && offload_rx_gso(piece, nf, &vh, &csum) == 0;
        has_csum = 1;
    } else if (ok) {
        ok = nf == 1 &&
             (!nic->cfg.offload || (has_csum = offload_rx_complete(slot[0] + hdr, len, &vh,
                                                                   &csum)) >= 0);
    }
    if (!ok) {
        count(nic, &nic->stats.rx_dropped, 1);
        return 0;
    }
    if (nf == 1 && !gso) {
        rndis_rx_header(slot[0], hdr, len, has_csum > 0, csum, 0, 0);
        lens[0] = hdr + len;
        return 1;
    }
    /* The fragments of one coalesced frame (gso: a longer frame was
     * dropped above), which the guest joins: each sub-allocation a PACKET
     * of its part, first and last marked. */
    for (uint32_t j = 0; j < nf; j++) {
        uint32_t part = (uint32_t)piece[j].iov_len;
        uint8_t frag = NDIS_PKTINFO_SUBALLOC | (j == 0 ? NDIS_PKTINFO_1ST_FRAG : 0) |
                       (j + 1 == nf ? NDIS_PKTINFO_LAST_FRAG : 0);
        rndis_rx_header(slot[j], hdr, part, true, csum, frag, q->rsc_id);
        lens[j] = hdr + part;
    }
    q->rsc_id++;
    if (tail > 0) {
        rndis_rx_header(slot[nf], hdr, (uint32_t)tail, true, tail_csum,
                        NDIS_PKTINFO_SUBALLOC | NDIS_PKTINFO_1ST_FRAG | NDIS_PKTINFO_LAST_FRAG,
                        q->rsc_id++);
        lens[nf] = hdr + (uint32_t)tail;
        return (int)nf + 1;
    }
    return (int)nf;
}

/* One batch of frames from q's backend queue into the guest, in one
 * transfer-page packet (the caller holds buf_lock, the receive buffer is
 * there and receive enabled).  Adds the frames read to *frames; false
 * once the backend is empty or q paused. */
static bool rx_batch(struct nic_queue *q, uint32_t *frames_read)
{
    struct nic *nic = q->nic;
    uint8_t rsc = atomic_load(&nic->rsc_mask);
    /* with offloads, room for a checksum info record (and a packet-id
     * record with coalescing) */
    uint32_t hdr = !nic->cfg.offload ? RNDIS_RX_HDR_LEN
                   : rsc             ? RNDIS_RX_HDR_RSC_LEN
                                     : RNDIS_RX_HDR_PPI_LEN;
    /* sub-allocations a read may fill, ranges a packet may carry */
    uint32_t per_read = 1, max_ranges = RX_BATCH;
    if (rsc) {
        per_read = rsc_frags(nic->sub_size);
        max_ranges = NVSP_RSC_MAX;
        if (per_read > RSC_READ_MAX) /* set up otherwise since (rsc_update) */
            per_read = 1;
    }
    int ret = vsp_send_reserve(q->ch, RES_XFER(max_ranges));
    if (ret == -EAGAIN) {
        q->trace.pause_ring++;
        rx_pause(q); /* writable() resumes */
        return false;
    }
    if (ret < 0) {
        rx_drain(q);
        return false;
    }
    uint32_t free_idx[NVSP_RSC_MAX];
    uint32_t nfree = pool_take(q, false, free_idx, max_ranges, per_read), used = 0;
    if (nfree == 0) {
        vsp_send_unreserve(q->ch, RES_XFER(max_ranges));
        q->trace.pause_pool++;
        rx_pause(q); /* completions from the guest wake it */
        return false;
    }
    uint32_t idx[NVSP_RSC_MAX], lens[NVSP_RSC_MAX], n = 0;
    uint64_t frames = 0, coalesced = 0;
    bool empty = false;
    /* (reads that yield no frame count too: a stream of runts ends the
     * batch like frames would) */
    for (unsigned reads = 0; nfree - used >= per_read && reads < 2 * RX_BATCH; reads++) {
        uint8_t *slot[RSC_READ_MAX];
        for (uint32_t j = 0; j < per_read; j++)
            slot[j] = nic->recv_buf + (size_t)free_idx[used + j] * nic->sub_size;
        int nf = rx_read(q, slot, per_read, hdr, rsc, lens + n);
        if (nf < 0) {
            empty = true;
            break;
        }
        if (nf == 0)
            continue; /* dropped: the sub-allocations are used again */
        for (int j = 0; j < nf; j++)
            idx[n++] = free_idx[used++];
        frames++;
        coalesced += nf > 1;
        if (n + per_read > max_ranges)
            break;
    }
    pool_put(nic, free_idx + used, nfree - used);
    *frames_read += (uint32_t)frames;
    if (n == 0) {
        vsp_send_unreserve(q->ch, RES_XFER(max_ranges));
        return false;
    }
    /* Counted before the send: the guest may see the frames before this
     * thread runs again, and status must not lag behind it. */
    pthread_mutex_lock(&nic->lock);
    nic->stats.rx_frames += frames;
    nic->stats.rx_coalesced += coalesced;
    pthread_mutex_unlock(&nic->lock);
    ret = send_xfer(q, RES_XFER(max_ranges), 0, idx, lens, n);
    if (ret < 0) {
        pthread_mutex_lock(&nic->lock);
        nic->stats.rx_frames -= frames;
        nic->stats.rx_coalesced -= coalesced;
        nic->stats.rx_dropped += frames;
        pthread_mutex_unlock(&nic->lock);
    } else {
        q->trace.pkts++;
        q->trace.frames += frames;
    }
    return !empty && !q->rx_paused;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void on_backend(void *arg)
{
    struct nic_queue *q = arg;
    struct nic *nic = q->nic;
    uint64_t t0 = now_ns();
    pthread_rwlock_rdlock(&nic->buf_lock);
    bool on = nic->recv_buf && atomic_load(&nic->rx_enabled);
    /* (batches that yield no frame count too: a stream of runts ends the
     * call like frames would) */
    uint32_t frames = 0;
    for (unsigned b = 0; on && b < RX_FRAMES_PER_CALL && frames < RX_FRAMES_PER_CALL; b++)
        if (!rx_batch(q, &frames))
            break;
    pthread_rwlock_unlock(&nic->buf_lock);
    if (!on)
        rx_drain(q);
    q->trace.wakeups++;
    q->trace.empty += frames == 0;
    q->trace.busy_ns += now_ns() - t0;
}

/* ---- NVSP messages ------------------------------------------------------ */

/* The guest revoked a buffer or closed the channel: let go of the mapping
 * (vmbusd answers the guest's GPADL teardown only after that). */
static void unmap_recv_buf(struct nic *nic)
{
    if (nic->recv_buf) {
        /* frames being delivered on subchannels finish first */
        pthread_rwlock_wrlock(&nic->buf_lock);
        vsp_gpadl_unmap(nic->ch, nic->recv_gpadl);
        nic->recv_buf = NULL;
        pthread_mutex_lock(&nic->pool_lock);
        rx_pool_fini(&nic->pool);
        pthread_mutex_unlock(&nic->pool_lock);
        pthread_rwlock_unlock(&nic->buf_lock);
    }
}

static void unmap_send_buf(struct nic *nic)
{
    if (nic->send_buf) {
        pthread_rwlock_wrlock(&nic->buf_lock);
        vsp_gpadl_unmap(nic->ch, nic->send_gpadl);
        nic->send_buf = NULL;
        pthread_rwlock_unlock(&nic->buf_lock);
    }
}

static void do_init(struct nic_queue *q, struct replies *r, uint64_t tid,
                    const struct nvsp_msg *in)
{
    struct nic *nic = q->nic;
    struct nvsp_msg m;
    memset(&m, 0, sizeof(m));
    m.type = NVSP_MSG_INIT_COMPLETE;
    m.u.init_complete.status = NVSP_STAT_FAIL;
    if (nic->recv_buf || nic->send_buf || nic->sub_requested) {
        guest_error(q, "netvsp: NVSP INIT after the buffers or subchannels were set up");
    } else {
        for (size_t i = 0; i < sizeof(nvsp_versions) / sizeof(nvsp_versions[0]); i++) {
            uint32_t v = nvsp_versions[i];
            if (v >= in->u.init.min_version && v <= in->u.init.max_version) {
                nic->version = v;
                nic->msg_size = msg_size_of(v);
                m.u.init_complete.version = v;
                m.u.init_complete.status = NVSP_STAT_SUCCESS;
                char vs[16];
                snprintf(vs, sizeof(vs), "0x%x", v);
                vsp_partition_set_status(nic->p, "netvsp.nvsp", vs);
                vsp_log(nic->ch, VSP_LOG_DEBUG, "netvsp: NVSP version 0x%x", v);
                break;
            }
        }
        if (m.u.init_complete.status != NVSP_STAT_SUCCESS)
            vsp_log(nic->ch, VSP_LOG_INFO, "netvsp: no NVSP version in 0x%x..0x%x",
                    in->u.init.min_version, in->u.init.max_version);
    }
    send_comp(q, r, tid, &m);
}

static void do_recv_buf(struct nic_queue *q, struct replies *r, uint64_t tid,
                        const struct nvsp_msg *in)
{
    struct nic *nic = q->nic;
    struct nvsp_msg m;
    memset(&m, 0, sizeof(m));
    m.type = NVSP_MSG1_SEND_RECV_BUF_COMPLETE;
    m.u.recv_buf_complete.status = NVSP_STAT_FAIL;
    size_t len = 0;
    void *buf = NULL;
    if (!nic->version)
        guest_error(q, "netvsp: receive buffer before NVSP INIT");
    else if (nic->recv_buf)
        guest_error(q, "netvsp: second receive buffer (GPADL %u)", in->u.send_buf.gpadl);
    else if (in->u.send_buf.id != NVSP_RECV_BUF_ID)
        guest_error(q, "netvsp: receive buffer id 0x%x is not 0xcafe", in->u.send_buf.id);
    else if (!(buf = vsp_gpadl_map(nic->ch, in->u.send_buf.gpadl, &len)))
        guest_error(q, "netvsp: receive buffer names no GPADL of the channel (%u)",
                    in->u.send_buf.gpadl);
    if (buf) {
        /* A sub-allocation holds the RNDIS header, room for per-packet
         * info and the largest frame (MTU + Ethernet + VLAN header). */
        uint32_t mtu = nic->guest_mtu > nic->cfg.mtu ? nic->guest_mtu : nic->cfg.mtu;
        uint32_t sub = (RNDIS_RX_HDR_LEN + 64 + mtu + 18 + 63) & ~63u;
        /* A guest that takes coalesced frames gets larger ones: hv_netvsc
         * handles every sub-allocation of a coalesced frame as an RNDIS
         * message of its own (header and per-packet info parsed and
         * copied, a piece appended to the skb), ~40 for a 64 KB frame in
         * MTU-sized pieces, 5 in 16 KiB ones (in the nested rig the
         * guest's CPU on receive went from 96 to 70 % busy).  Unless that
         * leaves too few to keep frames in flight (a guest that shrank its
         * buffer). */
        if (nic->cfg.offload && nic->version >= NVSP_VERSION_61 && nic->guest_rsc &&
            sub < RX_SUB_RSC && len / RX_SUB_RSC >= RX_SUB_RSC_MIN)
            sub = RX_SUB_RSC;
        uint64_t cnt = len / sub;
        if (cnt > UINT32_MAX / sub)
            cnt = UINT32_MAX / sub;
        struct rx_pool pool;
        if (cnt <= RX_POOL_CONTROL_RESERVE + 1 || rx_pool_init(&pool, (uint32_t)cnt) < 0) {
            guest_error(q, "netvsp: receive buffer too small (%zu bytes)", len);
            vsp_gpadl_unmap(nic->ch, in->u.send_buf.gpadl);
        } else {
            pthread_rwlock_wrlock(&nic->buf_lock);
            pthread_mutex_lock(&nic->pool_lock);
            nic->pool = pool;
            pool_wake(nic); /* queues that waited on an old buffer */
            nic->recv_buf = buf;
            nic->recv_len = len;
            nic->recv_gpadl = in->u.send_buf.gpadl;
            nic->sub_size = sub;
            pthread_rwlock_unlock(&nic->buf_lock);
            rsc_update(nic); /* coalescing set up for an earlier buffer */
            vsp_log(q->ch, VSP_LOG_INFO, "netvsp: receive buffer of %zu KiB: %llu "
                    "sub-allocations of %u bytes", len / 1024, (unsigned long long)cnt, sub);
            m.u.recv_buf_complete.status = NVSP_STAT_SUCCESS;
            m.u.recv_buf_complete.num_sections = 1;
            m.u.recv_buf_complete.section.offset = 0;
            m.u.recv_buf_complete.section.sub_alloc_size = sub;
            m.u.recv_buf_complete.section.num_sub_allocs = (uint32_t)cnt;
            m.u.recv_buf_complete.section.end_offset = (uint32_t)(cnt * sub);
        }
    }
    send_comp(q, r, tid, &m);
}

static void do_send_buf(struct nic_queue *q, struct replies *r, uint64_t tid,
                        const struct nvsp_msg *in)
{
    struct nic *nic = q->nic;
    struct nvsp_msg m;
    memset(&m, 0, sizeof(m));
    m.type = NVSP_MSG1_SEND_SEND_BUF_COMPLETE;
    m.u.send_buf_complete.status = NVSP_STAT_FAIL;
    size_t len = 0;
    void *buf = NULL;
    if (!nic->version)
        guest_error(q, "netvsp: send buffer before NVSP INIT");
    else if (nic->send_buf)
        guest_error(q, "netvsp: second send buffer (GPADL %u)", in->u.send_buf.gpadl);
    else if (!(buf = vsp_gpadl_map(nic->ch, in->u.send_buf.gpadl, &len)))
        guest_error(q, "netvsp: send buffer names no GPADL of the channel (%u)",
                    in->u.send_buf.gpadl);
    if (buf) {
        if (len < SEND_SECTION_SIZE) {
            guest_error(q, "netvsp: send buffer smaller than a section (%zu bytes)", len);
            vsp_gpadl_unmap(nic->ch, in->u.send_buf.gpadl);
        } else {
            pthread_rwlock_wrlock(&nic->buf_lock);
            nic->send_buf = buf;
            nic->send_len = len;
            nic->send_gpadl = in->u.send_buf.gpadl;
            uint64_t ns = len / SEND_SECTION_SIZE;
            nic->nsections = ns > UINT32_MAX - 1 ? UINT32_MAX - 1 : (uint32_t)ns;
            pthread_rwlock_unlock(&nic->buf_lock);
            m.u.send_buf_complete.status = NVSP_STAT_SUCCESS;
            m.u.send_buf_complete.section_size = SEND_SECTION_SIZE;
        }
    }
    send_comp(q, r, tid, &m);
}

/* One transmit (SEND_RNDIS_PKT): its first `copied` bytes are in the
 * queue's private copy, the rest [copied, len) still in guest memory
 * (GPA-direct ranges, valid until the channel closes).  Only a single
 * large frame is left partly in guest memory, and only beyond what netvsp
 * reads of it (RNDIS headers, per-packet info, the frame's headers): the
 * backend copies that payload once, and a guest changing it meanwhile
 * changes nothing but its own frame. */
struct tx_msg {
    size_t len, copied;
    struct iovec rest[TX_MAX_IOV];
    int nrest;
};

struct tx_ctx {
    struct nic_queue *q;
    const struct tx_msg *m;
    uint64_t sent, dropped;
    const char *why; /* a frame's offload requests were refused */
};

static int tx_frame(void *arg, uint8_t *frame, size_t len, const struct tx_offload *o)
{
    struct tx_ctx *c = arg;
    struct nic_queue *q = c->q;
    struct vnet_hdr vh;
    if (!q->nic->cfg.offload && (o->has_csum || o->has_lso)) {
        c->why = "checksum or LSO request, but no offload was offered";
        return -1;
    }
    if (offload_tx_prepare(frame, len, o, &vh, &c->why) < 0)
        return -1;
    struct iovec iov[2 + TX_MAX_IOV];
    int n = 0;
    size_t fo = (size_t)(frame - q->txcopy);
    size_t hl = q->nic->cfg.offload ? sizeof(vh) : 0;
    size_t want = len + hl;
    if (fo + len <= c->m->copied && !q->fd_is_socket) {
        /* All in the private copy: the header goes into the bytes before
         * the frame (its RNDIS header or per-packet info, read already:
         * data_offset puts at least 36 bytes there) and one write() takes
         * both, without an iovec to import. */
        memcpy(frame - hl, &vh, hl);
        if (write(q->fd, frame - hl, want) == (ssize_t)want)
            c->sent++;
        else
            c->dropped++;
        return 0;
    }
    if (hl)
        iov[n++] = (struct iovec){&vh, sizeof(vh)};
    if (fo + len > c->m->copied) {
        /* the frame's tail is in guest memory: the ranges up to its end */
        size_t here = c->m->copied - fo;
        size_t left = len - here;
        iov[n++] = (struct iovec){frame, here};
        for (int i = 0; i < c->m->nrest && left; i++) {
            size_t l = c->m->rest[i].iov_len < left ? c->m->rest[i].iov_len : left;
            iov[n++] = (struct iovec){c->m->rest[i].iov_base, l};
            left -= l;
        }
    } else {
        iov[n++] = (struct iovec){frame, len};
    }
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)n};
    /* A full backend drops the frame, as a NIC's full queue would; so does
     * a packet fd whose peer is gone. */
    ssize_t w = q->fd_is_socket ? sendmsg(q->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT)
                                : writev(q->fd, iov, n);
    if (w == (ssize_t)want)
        c->sent++;
    else
        c->dropped++;
    return 0;
}

/* Copy n bytes of iov[] from byte `skip` on to dst; returns the index of
 * the entry where the copy ended and, in *at, the offset in it. */
static int iov_copy(uint8_t *dst, const struct iovec *iov, int cnt, size_t skip, size_t n,
                    size_t *at)
{
    int i = 0;
    while (i < cnt && skip >= iov[i].iov_len)
        skip -= iov[i++].iov_len;
    while (i < cnt && n) {
        size_t l = iov[i].iov_len - skip < n ? iov[i].iov_len - skip : n;
        memcpy(dst, (uint8_t *)iov[i].iov_base + skip, l);
        dst += l;
        n -= l;
        skip += l;
        if (skip == iov[i].iov_len) {
            skip = 0;
            i++;
        }
    }
    *at = skip;
    return i;
}

/* Gather one SEND_RNDIS_PKT's bytes into q->txcopy: the send section's
 * first section_size bytes, then the packet's GPA-direct ranges, of which
 * a large single frame's payload stays in guest memory (struct tx_msg).
 * 0, or -1 (guest error logged).  The caller holds buf_lock. */
static int tx_gather(struct nic_queue *q, const struct vsp_packet *pkt,
                     const struct nvsp_rndis_pkt *rp, struct tx_msg *m)
{
    struct nic *nic = q->nic;
    size_t len = 0;
    m->nrest = 0;
    if (rp->section_index != NVSP_INVALID_SECTION) {
        if (!nic->send_buf || rp->section_index >= nic->nsections) {
            guest_error(q, "netvsp: send section index %u out of range (%u sections)",
                        rp->section_index,
                        nic->nsections);
            return -1;
        }
        if (rp->section_size > SEND_SECTION_SIZE) {
            guest_error(q, "netvsp: RNDIS data runs past its send section (%u bytes)",
                        rp->section_size);
            return -1;
        }
        memcpy(q->txcopy, nic->send_buf + (size_t)rp->section_index * SEND_SECTION_SIZE,
               rp->section_size);
        len = rp->section_size;
    }
    m->len = m->copied = len;
    if (pkt->type != VM_PKT_DATA_USING_GPA_DIRECT)
        return 0;
    struct iovec iov[TX_MAX_IOV];
    size_t glen = 0;
    int n = vsp_packet_gpa(q->ch, pkt, TX_COPY_MAX - len, iov, TX_MAX_IOV, &glen);
    if (n < 0) {
        if (n == -E2BIG)
            guest_error(q, "netvsp: RNDIS message in GPA ranges too long (%u)", pkt->len);
        return -1; /* other errors were logged by vmbusd */
    }
    m->len = len + glen;
    size_t first = glen;
    if (m->len > TX_PARTIAL_MIN && glen > TX_GPA_PREFIX)
        first = TX_GPA_PREFIX;
    size_t at;
    int i = iov_copy(q->txcopy + len, iov, n, 0, first, &at);
    m->copied = len + first;
    if (m->copied < m->len &&
        !rndis_tx_prefix_ok(q->txcopy, m->copied, m->len, TX_FRAME_HDR_MAX)) {
        /* not one frame with everything read early on: copy it all */
        iov_copy(q->txcopy + m->copied, iov, n, first, glen - first, &at);
        m->copied = m->len;
        return 0;
    }
    for (; i < n; i++, at = 0)
        m->rest[m->nrest++] = (struct iovec){(uint8_t *)iov[i].iov_base + at,
                                             iov[i].iov_len - at};
    return 0;
}

/* RNDIS state changed: a packet filter of 0 (or HALT) stops receive at
 * once, so the frames being delivered on subchannels finish first. */
static void rx_enable(struct nic *nic)
{
    bool on = nic->rndis.initialized && nic->rndis.packet_filter != 0;
    if (on == atomic_load(&nic->rx_enabled))
        return;
    if (on) {
        atomic_store(&nic->rx_enabled, true);
        return;
    }
    pthread_rwlock_wrlock(&nic->buf_lock);
    atomic_store(&nic->rx_enabled, false);
    pthread_rwlock_unlock(&nic->buf_lock);
}

/* Whether coalesced frames fit the receive buffer: not with
 * sub-allocations too small for one in RSC_READ_MAX of them, or too few
 * of them for a handful beside the control reserve (a small buffer).
 * Then RSC is neither offered nor turned on. */
static bool rsc_fits(const struct nic *nic)
{
    return nic->recv_buf && nic->sub_size > RNDIS_RX_HDR_RSC_LEN &&
           rsc_frags(nic->sub_size) <= RSC_READ_MAX &&
           nic->pool.count >= RX_POOL_CONTROL_RESERVE + 4 * rsc_frags(nic->sub_size);
}

/* The guest turned receive coalescing on or off (offload parameters,
 * HALT, the channel closed): the TAP hands over GSO frames of the kinds
 * it takes from now on, or no more; the ones already queued in the TAP
 * when it stops are dropped.  Only a TAP is told: an embedding program's
 * packet fds may write GSO frames, delivered only while the guest takes
 * them. */
static void rsc_update(struct nic *nic)
{
    uint8_t want = (nic->rndis.rsc_ip4 ? 1 : 0) | (nic->rndis.rsc_ip6 ? 2 : 0);
    if (!rsc_fits(nic))
        want = 0;
    if (want == atomic_load(&nic->rsc_mask))
        return;
    if (nic->cfg.tap[0]) {
        int r = backend_tap_offload(nic->q[0].fd, want & 1, want & 2);
        if (r < 0) {
            vsp_log(nic->ch, VSP_LOG_WARN, "netvsp: TAP %s: offloads for coalesced frames: %s",
                    nic->cfg.tap, strerror(-r));
            if (want)
                return; /* nothing changed: still the old kinds */
        }
    }
    /* under the write lock: no batch is between choosing its header size
     * and sending */
    pthread_rwlock_wrlock(&nic->buf_lock);
    atomic_store(&nic->rsc_mask, want);
    pthread_rwlock_unlock(&nic->buf_lock);
    vsp_log(nic->ch, VSP_LOG_INFO, "netvsp: receive coalescing %s%s%s",
            want ? "on for TCP over" : "off", want & 1 ? " IPv4" : "", want & 2 ? " IPv6" : "");
}

static void do_rndis(struct nic_queue *q, struct replies *r, const struct vsp_packet *pkt,
                     const struct nvsp_msg *in)
{
    struct nic *nic = q->nic;
    struct nvsp_msg m;
    memset(&m, 0, sizeof(m));
    m.type = NVSP_MSG1_SEND_RNDIS_PKT_COMPLETE;
    m.u.rndis_pkt_complete.status = NVSP_STAT_FAIL;
    ssize_t len = -1;
    struct tx_msg tm;
    /* The bytes are copied out under the lock; after that they are
     * private and the buffers may go (what stays in guest memory is in
     * GPA-direct ranges, valid until this channel closes). */
    pthread_rwlock_rdlock(&nic->buf_lock);
    if (!nic->recv_buf || !nic->send_buf)
        guest_error(q, "netvsp: RNDIS message before both buffers were set up");
    else if (tx_gather(q, pkt, &in->u.rndis_pkt, &tm) == 0)
        len = (ssize_t)tm.len;
    pthread_rwlock_unlock(&nic->buf_lock);
    if (len >= 0) {
        const char *why = NULL;
        uint32_t type = 0;
        if (len >= 4)
            memcpy(&type, q->txcopy, 4);
        if (type != RNDIS_MSG_PACKET)
            flush_comps(q); /* statistics queries count the frames before */
        if (type == RNDIS_MSG_PACKET) {
            struct tx_ctx c = {q, &tm, 0, 0, NULL};
            int frames = rndis_tx_walk(q->txcopy, (size_t)len, tx_frame, &c, &why);
            if (frames < 0)
                guest_error(q, "netvsp: %s", why);
            else if (c.why)
                guest_error(q, "netvsp: %s", c.why);
            else
                m.u.rndis_pkt_complete.status = NVSP_STAT_SUCCESS;
            defer_comp(q, r, pkt->trans_id, m.u.rndis_pkt_complete.status, c.sent, c.dropped);
            return;
        } else if (q->index != 0) {
            /* its reply would go on the primary: Linux never does this */
            guest_error(q, "netvsp: RNDIS control message (type 0x%x) on subchannel %u", type,
                        q->index);
        } else {
            uint8_t reply[RNDIS_REPLY_MAX];
            struct rndis_dev_info dev;
            memset(&dev, 0, sizeof(dev));
            memcpy(dev.mac, nic->cfg.mac, 6);
            /* The largest MTU netvsp takes: Linux starts at 1500 and
             * lowers any MTU it sets (ip link set mtu) to this figure. */
            dev.mtu = NETVSP_MTU_MAX;
            dev.link_speed = 100000000; /* 10 Gbit/s in 100 bit/s units */
            dev.offload = nic->cfg.offload;
            /* coalesced frames: NVSP 6.1 and a guest that said it takes
             * them (NDIS config) */
            dev.rsc = nic->cfg.offload && nic->version >= NVSP_VERSION_61 && nic->guest_rsc &&
                      rsc_fits(nic);
            /* vRSS needs NVSP 5 (subchannel messages) */
            dev.queues = nic->version >= NVSP_VERSION_5 ? nic->nqueues : 1;
            pthread_mutex_lock(&nic->lock);
            dev.link_up = nic->link_up;
            dev.tx_ok = nic->stats.tx_frames;
            dev.rx_ok = nic->stats.rx_frames;
            dev.tx_err = nic->stats.tx_dropped;
            dev.rx_no_buffer = nic->stats.rx_dropped;
            pthread_mutex_unlock(&nic->lock);
            uint32_t filter = nic->rndis.packet_filter;
            int n = rndis_control(&nic->rndis, &dev, q->txcopy, (size_t)len, reply,
                                  sizeof(reply), &why);
            if (n < 0) {
                guest_error(q, "netvsp: %s", why);
            } else {
                if (why) /* well-formed, value refused: its completion says so */
                    guest_error(q, "netvsp: %s", why);
                m.u.rndis_pkt_complete.status = NVSP_STAT_SUCCESS;
                nic->link_reported = dev.link_up;
                rx_enable(nic);
                rsc_update(nic);
                if (n > 0 && r->xfer) {
                    r->xfer = false;
                    if (send_rndis_control(q, RES_REPLY, reply, (size_t)n) == -ENOBUFS) {
                        pthread_mutex_lock(&nic->pool_lock);
                        uint32_t held = rx_pool_in_flight(&nic->pool);
                        pthread_mutex_unlock(&nic->pool_lock);
                        guest_error(q, "netvsp: no receive sub-allocation free for an RNDIS "
                                    "reply (%u in the guest's hands)", held);
                    }
                }
                if (filter != nic->rndis.packet_filter)
                    vsp_log(q->ch, VSP_LOG_DEBUG, "netvsp: packet filter 0x%x",
                            nic->rndis.packet_filter);
            }
        }
    }
    send_comp(q, r, pkt->trans_id, &m);
}

/* The send indirection table: which channel the guest transmits each of
 * its 16 hash buckets on, right after the message of the negotiated size
 * (Linux reads it there for every version). */
static void send_table(struct nic_queue *q, struct replies *r, unsigned nchannels)
{
    struct nic *nic = q->nic;
    uint8_t buf[NVSP_MSG_MAX + 4 * NVSP_SEND_TABLE_SIZE];
    struct nvsp_msg m;
    memset(&m, 0, sizeof(m));
    m.type = NVSP_MSG5_SEND_INDIRECTION_TABLE;
    m.u.send_table.count = NVSP_SEND_TABLE_SIZE;
    m.u.send_table.offset = nic->msg_size;
    memcpy(buf, &m, nic->msg_size);
    for (uint32_t i = 0; i < NVSP_SEND_TABLE_SIZE; i++) {
        uint32_t chn = i % nchannels;
        memcpy(buf + nic->msg_size + 4 * i, &chn, 4);
    }
    if (!r->xfer)
        return;
    r->xfer = false;
    struct iovec iov = {buf, nic->msg_size + 4 * NVSP_SEND_TABLE_SIZE};
    int ret = vsp_send_reserved(q->ch, RES_REPLY, VM_PKT_DATA_INBAND, 0, 0, NULL, 0, &iov, 1);
    if (ret < 0 && ret != -EPIPE)
        vsp_log(q->ch, VSP_LOG_WARN, "netvsp: send indirection table not sent: %s",
                strerror(-ret));
}

/* NVSP 5 SUBCHANNEL: offer up to the requested number of subchannels (as
 * many as the backend has queues besides the primary's), answer how many,
 * then send the send indirection table over all channels. */
static void do_subchannel(struct nic_queue *q, struct replies *r, uint64_t tid,
                          const struct nvsp_msg *in)
{
    struct nic *nic = q->nic;
    struct nvsp_msg m;
    memset(&m, 0, sizeof(m));
    m.type = NVSP_MSG5_SUBCHANNEL;
    m.u.subchannel_complete.status = NVSP_STAT_FAIL;
    uint32_t want = in->u.subchannel.num_subchannels;
    unsigned got = 0;
    if (nic->version < NVSP_VERSION_5)
        guest_error(q, "netvsp: subchannel request over NVSP 0x%x (needs 5)", nic->version);
    else if (!nic->recv_buf || !nic->send_buf || !nic->rndis.initialized)
        guest_error(q, "netvsp: subchannel request before the buffers and RNDIS were set up");
    else if (in->u.subchannel.op != NVSP_SUBCHANNEL_ALLOCATE)
        guest_error(q, "netvsp: subchannel request operation %u", in->u.subchannel.op);
    else if (nic->sub_requested)
        guest_error(q, "netvsp: second subchannel request (%u subchannels offered)", nic->nsub);
    else if (want == 0 || want >= NETVSP_MAX_QUEUES)
        guest_error(q, "netvsp: subchannel request for %u subchannels (1..%u)", want,
                    NETVSP_MAX_QUEUES - 1);
    else {
        nic->sub_requested = true;
        unsigned n = want < nic->nqueues - 1 ? want : nic->nqueues - 1;
        /* The subchannel's open sets its queue's channel: its callbacks
         * may run before the offer call returns. */
        for (unsigned i = 1; i <= n; i++) {
            if (!vsp_subchannel_offer(q->ch, (uint16_t)i, &nvsp_subchannel_ops, &nic->q[i]))
                break;
            got++;
        }
        nic->nsub = got;
        m.u.subchannel_complete.status = NVSP_STAT_SUCCESS;
        m.u.subchannel_complete.num_subchannels = got;
        vsp_log(q->ch, VSP_LOG_INFO, "netvsp: %u of %u subchannels offered (%u queues)", got,
                want, nic->nqueues);
    }
    send_comp(q, r, tid, &m);
    if (m.u.subchannel_complete.status == NVSP_STAT_SUCCESS && got)
        send_table(q, r, 1 + got);
}

/* The guest completed a transfer-page packet (its receive buffer
 * sub-allocations are the host's again). */
static void do_guest_comp(struct nic_queue *q, const struct vsp_packet *pkt)
{
    struct nic *nic = q->nic;
    uint32_t type = 0;
    if (pkt->len >= 4)
        memcpy(&type, pkt->data, 4);
    if (pkt->len < 8 || type != NVSP_MSG1_SEND_RNDIS_PKT_COMPLETE) {
        guest_error(q, "netvsp: completion is not an RNDIS packet completion (type %u)", type);
        return;
    }
    q->trace.comps++;
    pthread_rwlock_rdlock(&nic->buf_lock);
    int r = nic->recv_buf ? pool_complete(q, pkt->trans_id) : -EINVAL;
    pthread_rwlock_unlock(&nic->buf_lock);
    if (r < 0)
        guest_error(q, "netvsp: completion for receive sub-allocations the guest does not "
                    "hold on this channel (transaction %llu)",
                    (unsigned long long)pkt->trans_id);
}

static void do_packet(struct nic_queue *q, struct replies *r, const struct vsp_packet *pkt)
{
    struct nic *nic = q->nic;
    if (pkt->type == VM_PKT_COMP) {
        do_guest_comp(q, pkt);
        return;
    }
    if (pkt->type != VM_PKT_DATA_INBAND && pkt->type != VM_PKT_DATA_USING_GPA_DIRECT) {
        guest_error(q, "netvsp: unexpected packet type %u", pkt->type);
        return;
    }
    struct nvsp_msg in;
    const char *why = "";
    if (nvsp_parse(pkt->data, pkt->len, &in, &why) < 0) {
        guest_error(q, "netvsp: %s (type %u, %u bytes)", why, in.type, pkt->len);
        return;
    }
    if (in.type != NVSP_MSG1_SEND_RNDIS_PKT && pkt->type != VM_PKT_DATA_INBAND) {
        guest_error(q, "netvsp: NVSP message with GPA ranges (type %u)", in.type);
        return;
    }
    if (in.type != NVSP_MSG_INIT && !nic->version) {
        guest_error(q, "netvsp: NVSP message before INIT (type %u)", in.type);
        return;
    }
    if (q->index != 0 && in.type != NVSP_MSG1_SEND_RNDIS_PKT) {
        /* Setup belongs to the primary: a request that has a completion
         * gets a failed one. */
        struct nvsp_msg m;
        memset(&m, 0, sizeof(m));
        m.type = in.type == NVSP_MSG_INIT            ? NVSP_MSG_INIT_COMPLETE
                 : in.type == NVSP_MSG1_SEND_RECV_BUF ? NVSP_MSG1_SEND_RECV_BUF_COMPLETE
                 : in.type == NVSP_MSG1_SEND_SEND_BUF ? NVSP_MSG1_SEND_SEND_BUF_COMPLETE
                 : in.type == NVSP_MSG5_SUBCHANNEL    ? NVSP_MSG5_SUBCHANNEL
                                                      : 0;
        /* status is the first field of each of these completions but INIT's */
        if (m.type == NVSP_MSG_INIT_COMPLETE)
            m.u.init_complete.status = NVSP_STAT_FAIL;
        else
            m.u.rndis_pkt_complete.status = NVSP_STAT_FAIL;
        guest_error(q, "netvsp: NVSP message type %u on subchannel %u", in.type, q->index);
        if (m.type)
            send_comp(q, r, pkt->trans_id, &m);
        return;
    }
    switch (in.type) {
    case NVSP_MSG_INIT:
        do_init(q, r, pkt->trans_id, &in);
        break;
    case NVSP_MSG1_SEND_NDIS_VERSION:
        break; /* no reply expected */
    case NVSP_MSG2_SEND_NDIS_CONFIG: {
        /* The guest's MTU plus the Ethernet header, sent before the
         * receive buffer: its sub-allocations are sized for it (Linux
         * sends it again with a new buffer after `ip link set mtu`). */
        uint32_t mtu;
        memcpy(&mtu, in.u.raw, 4);
        if (mtu < 14 + 68 || mtu > 14 + NETVSP_MTU_MAX) {
            guest_error(q, "netvsp: NDIS config MTU %u outside 68..%u", mtu > 14 ? mtu - 14 : 0,
                        NETVSP_MTU_MAX);
            break;
        }
        nic->guest_mtu = mtu - 14;
        uint64_t cap;
        memcpy(&cap, in.u.raw + 8, 8);
        nic->guest_rsc = (cap & NVSP_NDIS_CONFIG_CAP_RSC) != 0;
        break;
    }
    case NVSP_MSG1_SEND_RECV_BUF:
        do_recv_buf(q, r, pkt->trans_id, &in);
        break;
    case NVSP_MSG1_SEND_SEND_BUF:
        do_send_buf(q, r, pkt->trans_id, &in);
        break;
    case NVSP_MSG1_REVOKE_RECV_BUF:
        unmap_recv_buf(nic);
        break;
    case NVSP_MSG1_REVOKE_SEND_BUF:
        unmap_send_buf(nic);
        break;
    case NVSP_MSG1_SEND_RNDIS_PKT:
        do_rndis(q, r, pkt, &in);
        break;
    case NVSP_MSG5_SUBCHANNEL:
        do_subchannel(q, r, pkt->trans_id, &in);
        break;
    case NVSP_MSG4_SWITCH_DATA_PATH:
        break; /* no VF: the synthetic path is the only one */
    }
}

/* ---- channel ops --------------------------------------------------------- */

/* Channels open, for vmbusctl (nic status, nic list). */
static void channels_changed(struct nic *nic, int delta)
{
    char v[16];
    pthread_mutex_lock(&nic->lock);
    nic->stats_channels += (unsigned)delta;
    snprintf(v, sizeof(v), "%u", nic->stats_channels);
    vsp_partition_set_status(nic->p, "netvsp.channels", v);
    pthread_mutex_unlock(&nic->lock);
}

/* Both kinds of channel: the backend queue and the wake eventfd watched,
 * a transmit copy buffer. */
static int queue_open(struct nic_queue *q, struct vsp_channel *ch)
{
    struct nic *nic = q->nic;
    q->ch = ch;
    q->txcopy = malloc(TX_COPY_MAX);
    if (!q->txcopy)
        return -ENOMEM;
    /* a multi-queue TAP spreads frames over the attached queues only */
    int r = q->index && nic->cfg.tap[0] ? backend_tap_queue(q->fd, true) : 0;
    if (r < 0)
        vsp_log(ch, VSP_LOG_ERROR, "netvsp: attaching TAP queue %u: %s", q->index, strerror(-r));
    errno = 0;
    if (r == 0)
        q->watch = vsp_fd_watch_add(nic->p, ch, q->fd, on_backend, q);
    if (q->watch)
        q->wake_watch = vsp_fd_watch_add(nic->p, ch, q->wake_fd, on_wake, q);
    if (!q->watch || !q->wake_watch) {
        int e = r < 0 ? -r : errno ? errno : ENOMEM;
        if (r == 0)
            vsp_log(ch, VSP_LOG_ERROR, "netvsp: cannot watch the backend: %s", strerror(e));
        if (q->watch)
            vsp_fd_watch_remove(q->watch);
        q->watch = NULL;
        if (r == 0 && q->index && nic->cfg.tap[0])
            backend_tap_queue(q->fd, false);
        free(q->txcopy);
        q->txcopy = NULL;
        return -e;
    }
    q->rx_paused = false;
    q->backend_closed = false;
    q->ncomp = 0; /* reservations end with the channel */
    q->comp_sent = q->comp_dropped = 0;
    memset(&q->trace, 0, sizeof(q->trace));
    channels_changed(nic, +1);
    return 0;
}

/* One line per queue on close: enough to tell, after a slow transfer,
 * whether frames waited for the backend (many wake-ups, few frames each),
 * for ring room or sub-allocations (pauses), or for the guest. */
static void trace_log(struct nic_queue *q)
{
    const struct nic_rx_trace *t = &q->trace;
    if (!t->wakeups && !t->turns)
        return;
    vsp_log(q->ch, VSP_LOG_INFO,
            "netvsp: queue %u closed: receive: %llu backend wake-ups (%llu empty), %llu frames "
            "in %llu packets, %.1f us per wake-up, paused %llu times for ring room and %llu "
            "for sub-allocations, at most %u sub-allocations out; guest turns: %llu taking "
            "%llu packets (%llu receive completions)",
            q->index, (unsigned long long)t->wakeups, (unsigned long long)t->empty,
            (unsigned long long)t->frames, (unsigned long long)t->pkts,
            t->wakeups ? (double)t->busy_ns / 1000.0 / (double)t->wakeups : 0.0,
            (unsigned long long)t->pause_ring, (unsigned long long)t->pause_pool, t->out_max,
            (unsigned long long)t->turns, (unsigned long long)t->taken,
            (unsigned long long)t->comps);
}

static void queue_close(struct nic_queue *q)
{
    struct nic *nic = q->nic;
    flush_comps(q); /* the channel is closed: only the frame counts remain */
    trace_log(q);
    if (q->watch)
        vsp_fd_watch_remove(q->watch);
    if (q->wake_watch)
        vsp_fd_watch_remove(q->wake_watch);
    q->watch = q->wake_watch = NULL;
    q->rx_paused = false;
    pthread_mutex_lock(&nic->pool_lock);
    nic->pool_waiters &= ~(1ull << q->index);
    pthread_mutex_unlock(&nic->pool_lock);
    free(q->txcopy);
    q->txcopy = NULL;
    channels_changed(nic, -1);
}

static int nvsp_open(struct vsp_channel *ch, const uint8_t *ud, size_t len)
{
    struct nic_queue *q = vsp_channel_opaque(ch);
    struct nic *nic = q->nic;
    nic->version = 0;
    nic->msg_size = 0;
    nic->guest_mtu = 0;
    nic->guest_rsc = false;
    nic->sub_requested = false;
    nic->nsub = 0;
    memset(&nic->rndis, 0, sizeof(nic->rndis));
    atomic_store(&nic->rx_enabled, false);
    return queue_open(q, ch);
}

/* vmbusd has closed (and rescinded) the subchannels already. */
static void nvsp_close(struct vsp_channel *ch)
{
    struct nic_queue *q = vsp_channel_opaque(ch);
    struct nic *nic = q->nic;
    queue_close(q);
    unmap_recv_buf(nic);
    unmap_send_buf(nic);
    nic->version = 0;
    nic->sub_requested = false;
    nic->nsub = 0;
    memset(&nic->rndis, 0, sizeof(nic->rndis));
    atomic_store(&nic->rx_enabled, false);
    rsc_update(nic); /* the TAP stops making GSO frames for the next guest */
}

static int nvsp_sub_open(struct vsp_channel *ch, const uint8_t *ud, size_t len)
{
    return queue_open(vsp_channel_opaque(ch), ch);
}

/* A subchannel closed (alone, or before its primary): what it sent the
 * guest and was not completed is free again, its TAP queue detached (the
 * kernel drops what was queued on it). */
static void nvsp_sub_close(struct vsp_channel *ch)
{
    struct nic_queue *q = vsp_channel_opaque(ch);
    struct nic *nic = q->nic;
    queue_close(q);
    if (nic->cfg.tap[0]) {
        int r = backend_tap_queue(q->fd, false);
        if (r < 0)
            vsp_log(ch, VSP_LOG_WARN, "netvsp: detaching TAP queue %u: %s", q->index,
                    strerror(-r));
    }
    pthread_rwlock_rdlock(&nic->buf_lock);
    if (nic->recv_buf) {
        pthread_mutex_lock(&nic->pool_lock);
        rx_pool_release_queue(&nic->pool, q->index);
        pool_wake(nic);
    }
    pthread_rwlock_unlock(&nic->buf_lock);
    q->ch = NULL;
}

static void nvsp_receive(struct vsp_channel *ch)
{
    struct nic_queue *q = vsp_channel_opaque(ch);
    /* A request's unused reservations serve the next one (frames use the
     * completion's only): reserved again only once used. */
    struct replies r = {false, false};
    q->trace.turns++;
    for (;;) {
        if (!r.comp && vsp_send_reserve(ch, RES_COMP) < 0)
            break; /* writable() calls back; the request waits in the ring */
        r.comp = true;
        if (!r.xfer && vsp_send_reserve(ch, RES_REPLY) < 0)
            break;
        r.xfer = true;
        struct vsp_packet pkt;
        int ret = vsp_recv(ch, &pkt);
        if (ret > 0) {
            q->trace.taken++;
            do_packet(q, &r, &pkt);
        }
        if (ret <= 0)
            break;
    }
    if (r.comp)
        vsp_send_unreserve(ch, RES_COMP);
    if (r.xfer)
        vsp_send_unreserve(ch, RES_REPLY);
    flush_comps(q);
    /* Completions may have freed sub-allocations, a SET may have turned
     * the filter on or off: let the backend be read again. */
    rx_resume(q);
}

static void nvsp_writable(struct vsp_channel *ch)
{
    nvsp_receive(ch);
}

/* Tell the guest the carrier changed, if RNDIS runs and it was told
 * otherwise.  Linux ignores changes that follow each other quickly
 * (docs/netvsp.md): vmbusctl's link command is the operator's. */
void nvsp_link_changed(void *arg)
{
    struct nic *nic = arg;
    if (!vsp_channel_is_open(nic->ch) || !nic->rndis.initialized || !nic->recv_buf)
        return;
    pthread_mutex_lock(&nic->lock);
    bool up = nic->link_up;
    pthread_mutex_unlock(&nic->lock);
    if (up == nic->link_reported)
        return;
    uint8_t msg[32];
    size_t n = rndis_indicate(msg, up ? RNDIS_STATUS_MEDIA_CONNECT : RNDIS_STATUS_MEDIA_DISCONNECT);
    int ret = send_rndis_control(&nic->q[0], 0, msg, n);
    if (ret < 0)
        vsp_log(nic->ch, VSP_LOG_WARN, "netvsp: link %s not indicated: %s", up ? "up" : "down",
                strerror(-ret));
    else
        nic->link_reported = up;
}

const struct vsp_channel_ops nvsp_channel_ops = {
    .open = nvsp_open,
    .close = nvsp_close,
    .receive = nvsp_receive,
    .writable = nvsp_writable,
};

const struct vsp_channel_ops nvsp_subchannel_ops = {
    .open = nvsp_sub_open,
    .close = nvsp_sub_close,
    .receive = nvsp_receive,
    .writable = nvsp_writable,
};
