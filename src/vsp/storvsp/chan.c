/* SPDX-License-Identifier: MIT */
/*
 * One storvsp channel: the vstor protocol the guest's storvsc speaks on it.
 *
 * The primary channel carries the init sequence (BEGIN_INITIALIZATION,
 * QUERY_PROTOCOL_VERSION until one is accepted, QUERY_PROPERTIES,
 * END_INITIALIZATION, then CREATE_SUB_CHANNELS), every channel carries
 * EXECUTE_SRB.  Each request is taken from the ring only after the room for
 * its completion was reserved in the guest's ring (vsp_send_reserve), so a
 * completion is always written, whenever the disk finishes, without a side
 * queue.  An SRB becomes a SCSI command for the addressed LUN; READ/WRITE
 * go to the backend queue this channel has for that disk, and complete
 * from the queue's eventfd watch, on this channel's serialised callbacks.
 * While requests are in flight the channel receives quietly: the reap of
 * their completions also takes what the guest queued meanwhile, so the
 * guest need not signal each burst (see SV_QUIET_INFLIGHT).
 *
 * Replies are sized to what the guest sends: 48-byte packets (36-byte SRB)
 * from guests that negotiated a protocol before WIN8, or that have not
 * negotiated yet (Linux before 6.0 starts with 48-byte init packets), 64
 * otherwise (Linux 6.0+ drops shorter completions).
 *
 * Everything the guest sends is checked: a malformed request gets an error
 * completion; a packet that is not a vstor request at all (wrong VMBus
 * packet type) fails the channel (dropped until the guest closes it).
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "storvsp.h"

#define SCSI_OP_INQUIRY 0x12
#define SCSI_OP_REPORT_LUNS 0xA0
#define SRB_STATUS_BUSY 0x05
/* Completions reaped per watch callback: others' work gets its turn. */
#define SV_REAP_BUDGET 128u
/* With this many requests in flight the channel receives quietly
 * (vsp_recv_quiet): the guest does not signal the requests it adds, the
 * reap of the next completion takes them.  That saves a guest signal and
 * a worker wake-up per burst, and lets the worker that was woken anyway do
 * the work: with normal scheduling each wake-up would otherwise preempt the
 * guest or io-wq in the middle of its burst and handle one or two requests.
 * The price: a request the guest adds then waits for the next completion.
 * So only while completions come at least every SV_QUIET_MAX_GAP_NS (a
 * moving average of the time between reaps while requests are in flight):
 * from the page cache or a fast SSD they come microseconds apart; a
 * slow or distant disk keeps the guest's signals.  At queue depth 1 nothing
 * changes: one request in flight never turns it on. */
#define SV_QUIET_INFLIGHT 2u
#define SV_QUIET_MAX_GAP_NS 200000u
/* A quiet channel is watched on this period: when no reap came for a whole
 * period (a backend request that hangs, e.g. a disk of this controller on
 * a stalled NFS mount), it stops being quiet and takes what the guest
 * queued, so requests for its other disks do not wait behind the hung one
 * (for longer than this, once).  The long gap counts in the moving
 * average, so it stays loud until completions come fast again.  Long
 * enough that the watch costs a busy channel little (100 runs a second). */
#define SV_QUIET_WATCH_MS 10u
_Static_assert(SV_QUIET_WATCH_MS * 1000000ull > SV_QUIET_MAX_GAP_NS,
               "a period without a reap must end quiet (quiet_watch)");
/* Polling after a turn ([vsp storvsp] poll_us, poll_requests): a channel
 * whose turns took requests keeps the guest's ring masked for a short
 * window and takes what the guest adds in it; the requests go to the disk
 * at once, their completions and those of the turn reach the guest
 * together at the window's end, with one interrupt.  A guest that queues
 * requests one after another (fio at queue depth 16 whose backend answers
 * at once) then neither signals each one nor takes an interrupt for each
 * completion; a guest waiting on the completion to send its next request
 * (queue depth 1) finds nothing to gain, only the window's delay.  So the
 * window adapts: it doubles (from SV_POLL_STEP_NS up to poll_us) when a
 * window caught a request and halves when it caught none, down to 0; at 0
 * every SV_POLL_PROBE_EVERY-th turn tries SV_POLL_STEP_NS again. */
#define SV_POLL_STEP_NS 4000u
#define SV_POLL_PROBE_EVERY 16u

struct sv_req {
    struct sv_req *next; /* free list */
    struct sv_chan *c;
    uint64_t trans_id;
    bool want_comp;
    uint32_t pkt_size;   /* reply size */
    struct vstor_packet pkt; /* the request as the guest sent it (copy) */
    struct scsi_cmd cmd;
    struct iovec iov[]; /* SV_IOV_FOR(the VM's max_transfer) */
};

/* ------------------------------------------------------------------ */
/* Disks and queues                                                    */

void sv_disk_unref(struct sv_disk *d)
{
    if (!d || atomic_fetch_sub(&d->refs, 1) != 1)
        return;
    scsi_disk_destroy(d->sd);
    stor_backend_close(d->b);
    free(d);
}

static void sv_reap(void *arg);

/* This channel's queue for disk, made on first use. */
static struct sv_queue *chan_queue(struct sv_chan *c, struct sv_disk *disk)
{
    struct sv_queue *freeslot = NULL;
    for (int i = 0; i < c->nqueues; i++) {
        if (c->queues[i].disk == disk)
            return &c->queues[i];
        if (!c->queues[i].disk && !freeslot)
            freeslot = &c->queues[i];
    }
    if (!freeslot) {
        if (c->nqueues == SV_MAX_LUNS)
            return NULL;
        freeslot = &c->queues[c->nqueues++];
    }
    struct sv_queue *sq = freeslot;
    struct sv_plugin *pl = c->ctrl->vm->pl;
    int ret = stor_queue_create(disk->b, SV_MAX_INFLIGHT, pl->queue_flags, &sq->q);
    if (ret < 0) {
        vsp_log(c->ch, VSP_LOG_ERROR, "disk %s (lun %d): cannot make an I/O queue: %s",
                disk->spec.path, disk->lun, strerror(-ret));
        return NULL;
    }
    sq->watch = vsp_fd_watch_add(vsp_channel_partition(c->ch), c->ch, stor_queue_fd(sq->q),
                                 sv_reap, sq);
    if (!sq->watch) {
        vsp_log(c->ch, VSP_LOG_ERROR, "disk %s (lun %d): cannot watch its I/O queue: %s",
                disk->spec.path, disk->lun, strerror(errno));
        stor_queue_destroy(sq->q);
        sq->q = NULL;
        return NULL;
    }
    atomic_fetch_add(&disk->refs, 1);
    sq->c = c;
    sq->disk = disk;
    sq->kick = false;
    return sq;
}

/* Waits for the queue's requests (their completions are sent, or fail once
 * the channel is closed), then lets the disk go. */
static void queue_drop(struct sv_queue *sq)
{
    if (!sq->disk)
        return;
    vsp_fd_watch_remove(sq->watch);
    stor_queue_destroy(sq->q);
    sv_disk_unref(sq->disk);
    *sq = (struct sv_queue){0};
}

/* Submit what this turn queued.  Then reap at once what already finished:
 * io_uring completes page-cache hits inside the submit, and answering them
 * now saves the eventfd -> watch -> worker round trip (at queue depth 1,
 * most of a request's latency).  The queue stays quiet meanwhile: an io-wq
 * thread finishing a read while this worker is between submit and reap
 * (it often preempts the submitter to do so) would otherwise wake another
 * worker, which then finds nothing to reap. */
_Atomic(void (*)(struct stor_queue *q)) sv_test_quiet_hook;

static void kick_queues(struct sv_chan *c)
{
    for (int i = 0; i < c->nqueues; i++)
        if (c->queues[i].kick) {
            struct stor_queue *q = c->queues[i].q;
            c->queues[i].kick = false;
            stor_queue_quiet(q, true);
            stor_queue_kick(q);
            unsigned n = stor_queue_reap(q, SV_REAP_BUDGET);
            void (*hook)(struct stor_queue *) = atomic_load(&sv_test_quiet_hook);
            if (hook)
                hook(q);
            if (stor_queue_quiet(q, false)) /* finished after that reap: no signal */
                stor_queue_reap(q, n < SV_REAP_BUDGET ? SV_REAP_BUDGET - n : 1);
        }
}

/* ------------------------------------------------------------------ */
/* Requests and completions                                            */

static struct sv_req *req_get(struct sv_chan *c)
{
    struct sv_req *r = c->free;
    if (r) {
        c->free = r->next;
    } else {
        r = malloc(sizeof(*r) + SV_IOV_FOR(c->ctrl->vm->max_transfer) * sizeof(r->iov[0]));
        if (!r)
            return NULL;
        c->nreqs++;
    }
    c->inflight++;
    r->c = c;
    return r;
}

static void req_put(struct sv_chan *c, struct sv_req *r)
{
    c->inflight--;
    r->next = c->free;
    c->free = r;
}

/* Send the completion of one request into its reservation (given back if
 * the guest asked for none). */
static void send_reply(struct sv_chan *c, uint64_t trans_id, bool want_comp,
                       const struct vstor_packet *rep, uint32_t size)
{
    if (!want_comp) {
        vsp_send_unreserve(c->ch, SV_COMP_RESERVE);
        return;
    }
    struct iovec iov = {.iov_base = (void *)rep, .iov_len = size};
    int ret = vsp_send_reserved(c->ch, SV_COMP_RESERVE, VM_PKT_COMP, 0, trans_id, NULL, 0, &iov,
                                1);
    if (ret < 0 && ret != -EPIPE)
        vsp_log(c->ch, VSP_LOG_ERROR, "completion of request %#llx lost: %s",
                (unsigned long long)trans_id, strerror(-ret));
}

/* A reply without an SRB (init operations, errors). */
static void reply_status(struct sv_chan *c, const struct vsp_packet *pkt, uint32_t size,
                         uint32_t status, const struct vstor_packet *body)
{
    struct vstor_packet rep = {0};
    if (body)
        rep = *body;
    rep.operation = VSTOR_OP_COMPLETE_IO;
    rep.flags = 0;
    rep.status = status;
    send_reply(c, pkt->trans_id, pkt->flags & VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED, &rep,
               size);
}

/* The SRB's completion: status, sense and transfer length into a copy of
 * the request's SRB, as Hyper-V answers. */
static void srb_complete(struct sv_req *r, uint8_t srb_status, uint8_t scsi_status,
                         uint32_t nt_status, const uint8_t *sense, uint8_t sense_len,
                         uint32_t transferred)
{
    struct sv_chan *c = r->c;
    struct vstor_packet rep = r->pkt;
    struct vstor_srb *srb = &rep.u.srb;
    bool pre_win8 = r->pkt_size < VSTOR_PACKET_SIZE;
    uint8_t room = pre_win8 ? VSTOR_SENSE_SIZE_PRE_WIN8 : VSTOR_SENSE_SIZE;
    if (room > r->pkt.u.srb.sense_info_length)
        room = r->pkt.u.srb.sense_info_length;
    rep.operation = VSTOR_OP_COMPLETE_IO;
    rep.flags = 0;
    rep.status = nt_status;
    srb->length = pre_win8 ? VSTOR_SRB_SIZE_PRE_WIN8 : VSTOR_SRB_SIZE;
    srb->scsi_status = scsi_status;
    srb->srb_status = srb_status;
    srb->data_transfer_length = transferred;
    memset(srb->cdb_sense, 0, sizeof(srb->cdb_sense));
    srb->sense_info_length = 0;
    if (sense && sense_len && room) {
        uint8_t n = sense_len < room ? sense_len : room;
        memcpy(srb->cdb_sense, sense, n);
        srb->sense_info_length = n;
        srb->srb_status |= SRB_STATUS_AUTOSENSE_VALID;
    }
    if (srb_status != SRB_STATUS_SUCCESS)
        c->errors++;
    send_reply(c, r->trans_id, r->want_comp, &rep, r->pkt_size);
    req_put(c, r);
}

static void cmd_done(struct scsi_cmd *cmd)
{
    struct sv_req *r = cmd->arg;
    switch (cmd->status) {
    case SCSI_STATUS_GOOD:
        srb_complete(r, SRB_STATUS_SUCCESS, 0, VSTOR_STATUS_SUCCESS, NULL, 0, cmd->transferred);
        return;
    case SCSI_STATUS_BUSY:
    case SCSI_STATUS_TASK_SET_FULL:
        /* Not an SRB status Linux acts on: its midlayer sees the SCSI
         * status and retries. */
        srb_complete(r, SRB_STATUS_BUSY, cmd->status, VSTOR_STATUS_DEVICE_BUSY, NULL, 0, 0);
        return;
    default:
        srb_complete(r, SRB_STATUS_ERROR, cmd->status, VSTOR_STATUS_IO_DEVICE_ERROR, cmd->sense,
                     cmd->sense_len, 0);
        return;
    }
}

static void receive_turn(struct sv_chan *c);
static bool settle_quiet(struct sv_chan *c);
static void quiet_watch(void *arg);

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sv_reap(void *arg)
{
    struct sv_queue *sq = arg;
    struct sv_chan *c = sq->c;
    if (!sq->q)
        return;
    /* requests were in flight since last_reap_ns (it is reset when they
     * start after none) */
    uint64_t now = mono_ns();
    if (c->inflight)
        c->reap_gap_ns = (3 * c->reap_gap_ns + (now - c->last_reap_ns)) / 4;
    c->last_reap_ns = now;
    /* the reap's completions reach the guest with one interrupt */
    vsp_send_batch_begin(c->ch);
    stor_queue_reap(sq->q, SV_REAP_BUDGET);
    kick_queues(c); /* a done callback may have queued more */
    vsp_send_batch_end(c->ch);
    /* What the guest queued without signalling (quiet), or what waited for
     * room in flight (stalled): in this turn, after the completions. */
    bool resume = c->quiet && !c->stalled;
    if (c->stalled && c->inflight < SV_MAX_INFLIGHT) {
        c->stalled = false;
        resume = true;
    }
    if (resume)
        receive_turn(c);
    while (settle_quiet(c))
        receive_turn(c);
}

/* ------------------------------------------------------------------ */
/* EXECUTE_SRB                                                         */

static void srb_reject(struct sv_req *r, const char *why)
{
    vsp_guest_error(r->c->ch, "SRB %#llx refused: %s", (unsigned long long)r->trans_id, why);
    srb_complete(r, SRB_STATUS_INVALID_REQUEST, 0, VSTOR_STATUS_INVALID_PARAMETER, NULL, 0, 0);
}

static void execute_srb(struct sv_chan *c, const struct vsp_packet *pkt,
                        const struct vstor_packet *req, uint32_t size)
{
    struct sv_req *r = req_get(c);
    if (!r) {
        reply_status(c, pkt, size, VSTOR_STATUS_DEVICE_BUSY, req);
        return;
    }
    r->trans_id = pkt->trans_id;
    r->want_comp = pkt->flags & VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED;
    r->pkt = *req;
    r->pkt_size = size;
    c->srbs++;
    const struct vstor_srb *srb = &r->pkt.u.srb;
    struct scsi_cmd *cmd = &r->cmd;
    memset(cmd, 0, sizeof(*cmd));

    if (srb->cdb_length == 0 || srb->cdb_length > SCSI_CDB_MAX)
        return srb_reject(r, "CDB length outside 1..16");
    if (srb->data_in > VSTOR_DATA_NONE)
        return srb_reject(r, "unknown data direction");
    uint32_t dtl = srb->data_transfer_length;
    uint32_t max = c->ctrl->vm->max_transfer;
    if (dtl > max) {
        char why[96];
        snprintf(why, sizeof(why), "transfer of %u bytes longer than max_transfer_bytes (%u)",
                 dtl, max);
        return srb_reject(r, why);
    }
    int niov = 0;
    if (pkt->type == VM_PKT_DATA_USING_GPA_DIRECT) {
        size_t glen = 0;
        niov = vsp_packet_gpa(c->ch, pkt, max, r->iov, (int)SV_IOV_FOR(max), &glen);
        if (niov < 0)
            return srb_reject(r, niov == -EFAULT   ? "a page outside guest RAM"
                                 : niov == -E2BIG ? "GPA ranges too long"
                                                  : "malformed GPA ranges");
        if (dtl > glen)
            return srb_reject(r, "transfer longer than its GPA ranges");
    } else if (dtl && srb->data_in != VSTOR_DATA_NONE) {
        return srb_reject(r, "data transfer without GPA ranges");
    }
    if (srb->data_in == VSTOR_DATA_NONE)
        dtl = 0;

    memcpy(cmd->cdb, srb->cdb_sense, srb->cdb_length);
    cmd->cdb_len = srb->cdb_length < 6 ? 6 : srb->cdb_length;
    cmd->dir = !dtl                               ? SCSI_DIR_NONE
               : srb->data_in == VSTOR_DATA_IN ? SCSI_DIR_FROM_DEV
                                               : SCSI_DIR_TO_DEV;
    cmd->xfer_len = dtl;
    cmd->iov = r->iov;
    cmd->iovcnt = dtl ? niov : 0;
    cmd->done = cmd_done;
    cmd->arg = r;

    /* Disks sit at path 0, target 0, LUN n, as on Hyper-V; every other
     * address is a target without logical units. */
    struct sv_ctrl *ctrl = c->ctrl;
    bool here = srb->path_id == 0 && srb->target_id == 0;
    if (cmd->cdb[0] == SCSI_OP_REPORT_LUNS) {
        uint16_t luns[SV_MAX_LUNS];
        unsigned n = 0;
        pthread_mutex_lock(&ctrl->lock);
        for (int i = 0; here && i < SV_MAX_LUNS; i++)
            if (ctrl->disks[i])
                luns[n++] = (uint16_t)i;
        pthread_mutex_unlock(&ctrl->lock);
        scsi_report_luns(cmd, luns, n);
        return;
    }
    struct sv_disk *disk = NULL;
    if (here && srb->lun < SV_MAX_LUNS) {
        pthread_mutex_lock(&ctrl->lock);
        disk = ctrl->disks[srb->lun];
        if (disk)
            atomic_fetch_add(&disk->refs, 1);
        pthread_mutex_unlock(&ctrl->lock);
    }
    if (!disk) {
        /* The guest overwrites INQUIRY's status with success, so an absent
         * LUN must answer INQUIRY with data (peripheral qualifier 3);
         * everything else gets INVALID_LUN, which makes Linux drop the LUN
         * (how a hot-removed disk disappears after ENUMERATE_BUS). */
        if (cmd->cdb[0] == SCSI_OP_INQUIRY) {
            scsi_no_lun(cmd);
            return;
        }
        srb_complete(r, SRB_STATUS_INVALID_LUN, 0, VSTOR_STATUS_DEVICE_DOES_NOT_EXIST, NULL, 0, 0);
        return;
    }
    struct sv_queue *sq = chan_queue(c, disk);
    sv_disk_unref(disk); /* the queue holds its own reference */
    if (!sq) {
        srb_complete(r, SRB_STATUS_BUSY, SCSI_STATUS_BUSY, VSTOR_STATUS_DEVICE_BUSY, NULL, 0, 0);
        return;
    }
    sq->kick = true;
    scsi_disk_execute(sq->disk->sd, sq->q, cmd);
}

/* ------------------------------------------------------------------ */
/* Init sequence (primary channel)                                     */

/* Why 0x0602 (WIN10) is accepted: it is what Linux proposes first and what
 * current Hyper-V hosts answer, so the guest takes the path every Azure VM
 * takes.  Its only effects on Linux 6.1 (vendor "Msft") are that the SCSI
 * level comes from our INQUIRY instead of being forced to SPC-3, and
 * WRITE SAME is not filtered, which the SCSI target implements.  Refusing
 * it (as OpenVMM does) would only make the guest fall back to WIN8.1.
 * Older versions are accepted too (Linux 4.x/5.x also propose WIN7 and
 * WIN6), with their 48-byte packets and no subchannels. */
static bool version_known(uint16_t v)
{
    return v == VSTOR_VERSION_WIN10 || v == VSTOR_VERSION_WIN8_1 || v == VSTOR_VERSION_WIN8 ||
           v == VSTOR_VERSION_WIN7 || v == VSTOR_VERSION_WIN6;
}

static void offer_subchannels(struct sv_chan *c, unsigned n)
{
    struct sv_ctrl *ctrl = c->ctrl;
    for (unsigned i = 1; i <= n; i++) {
        pthread_mutex_lock(&ctrl->lock);
        struct sv_chan *sc = ctrl->subs[i];
        if (!sc) {
            sc = calloc(1, sizeof(*sc));
            if (sc) {
                sc->ctrl = ctrl;
                sc->index = (uint16_t)i;
                ctrl->subs[i] = sc;
            }
        }
        bool busy = sc && sc->ch; /* still offered from before */
        pthread_mutex_unlock(&ctrl->lock);
        if (!sc || busy)
            continue;
        struct vsp_channel *sch = vsp_subchannel_offer(c->ch, (uint16_t)i, &sv_chan_ops, sc);
        pthread_mutex_lock(&ctrl->lock);
        sc->ch = sch;
        pthread_mutex_unlock(&ctrl->lock);
    }
}

static void send_rescan(struct sv_chan *c);

static void primary_op(struct sv_chan *c, const struct vsp_packet *pkt,
                       const struct vstor_packet *req, uint32_t size)
{
    struct sv_ctrl *ctrl = c->ctrl;
    struct vstor_packet body = {0};
    switch (req->operation) {
    case VSTOR_OP_BEGIN_INITIALIZATION:
        if (ctrl->state != SV_INIT_WAIT_BEGIN)
            break;
        ctrl->state = SV_INIT_BEGUN;
        return reply_status(c, pkt, size, VSTOR_STATUS_SUCCESS, NULL);
    case VSTOR_OP_QUERY_PROTOCOL_VERSION: {
        if (ctrl->state != SV_INIT_BEGUN)
            break;
        uint16_t v = req->u.version.major_minor;
        body.u.version = req->u.version;
        if (!version_known(v))
            return reply_status(c, pkt, size, VSTOR_STATUS_REVISION_MISMATCH, &body);
        ctrl->version = v;
        ctrl->pkt_size = v >= VSTOR_VERSION_WIN8 ? VSTOR_PACKET_SIZE : VSTOR_PACKET_SIZE_PRE_WIN8;
        ctrl->state = SV_INIT_VERSIONED;
        return reply_status(c, pkt, size, VSTOR_STATUS_SUCCESS, &body);
    }
    case VSTOR_OP_QUERY_PROPERTIES:
        if (ctrl->state < SV_INIT_VERSIONED)
            break;
        body.u.props.max_transfer_bytes = ctrl->vm->max_transfer;
        if (ctrl->version >= VSTOR_VERSION_WIN8 && ctrl->vm->max_subchannels) {
            body.u.props.flags = VSTOR_PROP_MULTI_CHANNEL;
            body.u.props.max_channel_cnt = (uint16_t)ctrl->vm->max_subchannels;
        }
        return reply_status(c, pkt, size, VSTOR_STATUS_SUCCESS, &body);
    case VSTOR_OP_END_INITIALIZATION:
        if (ctrl->state != SV_INIT_VERSIONED)
            break;
        ctrl->state = SV_INIT_READY;
        /* The guest scans its bus now: a rescan asked for before is moot. */
        atomic_store(&ctrl->rescan, false);
        atomic_store(&ctrl->ready, true);
        return reply_status(c, pkt, size, VSTOR_STATUS_SUCCESS, NULL);
    case VSTOR_OP_CREATE_SUB_CHANNELS: {
        if (ctrl->state < SV_INIT_VERSIONED)
            break;
        uint16_t n = req->u.sub_channel_count;
        unsigned max = ctrl->version >= VSTOR_VERSION_WIN8 ? ctrl->vm->max_subchannels : 0;
        if (n > max) {
            vsp_guest_error(c->ch, "CREATE_SUB_CHANNELS asks for %u subchannels (at most %u)",
                            n, max);
            return reply_status(c, pkt, size, VSTOR_STATUS_INVALID_PARAMETER, NULL);
        }
        /* Answer first: the guest's handler for the new offers is set
         * before it sends the request, either order works for it. */
        reply_status(c, pkt, size, VSTOR_STATUS_SUCCESS, NULL);
        offer_subchannels(c, n);
        return;
    }
    default:
        vsp_guest_error(c->ch, "unknown vstor operation %u", req->operation);
        return reply_status(c, pkt, size, VSTOR_STATUS_INVALID_DEVICE_REQUEST, NULL);
    }
    vsp_guest_error(c->ch, "vstor operation %u out of order (init state %d)", req->operation,
                    (int)ctrl->state);
    reply_status(c, pkt, size, VSTOR_STATUS_INVALID_DEVICE_STATE, NULL);
}

/* ------------------------------------------------------------------ */
/* Packets                                                             */

static void fail_channel(struct sv_chan *c, const char *why)
{
    vsp_guest_error(c->ch, "%s; channel stops serving the guest until it is closed", why);
    c->failed = true;
}

/* One packet; uses the completion room reserved for it exactly once. */
static void handle_packet(struct sv_chan *c, const struct vsp_packet *pkt)
{
    struct sv_ctrl *ctrl = c->ctrl;
    if (pkt->type != VM_PKT_DATA_INBAND && pkt->type != VM_PKT_DATA_USING_GPA_DIRECT) {
        vsp_send_unreserve(c->ch, SV_COMP_RESERVE);
        char why[64];
        snprintf(why, sizeof(why), "VMBus packet type %u is not a vstor request", pkt->type);
        fail_channel(c, why);
        return;
    }
    bool versioned = c->index || ctrl->state >= SV_INIT_VERSIONED;
    uint32_t min = versioned ? ctrl->pkt_size : VSTOR_PACKET_SIZE_PRE_WIN8;
    /* Reply sized to the version; before one is negotiated, 48 bytes only
     * to a 48-byte request (Linux < 6.0 reads its init replies into a
     * buffer that small), else 64 (what Linux 6.0+ requires). */
    uint32_t size = versioned ? ctrl->pkt_size
                    : pkt->len >= VSTOR_PACKET_SIZE_PRE_WIN8 && pkt->len < VSTOR_PACKET_SIZE
                        ? VSTOR_PACKET_SIZE_PRE_WIN8
                        : VSTOR_PACKET_SIZE;
    struct vstor_packet req = {0};
    memcpy(&req, pkt->data, pkt->len < sizeof(req) ? pkt->len : sizeof(req));
    if (pkt->len < min || pkt->len > VSTOR_PACKET_SIZE) {
        vsp_guest_error(c->ch, "vstor packet of %u bytes (operation %u; expected %u..%u)",
                        pkt->len, pkt->len >= 4 ? req.operation : 0, min, VSTOR_PACKET_SIZE);
        reply_status(c, pkt, size, VSTOR_STATUS_INVALID_PARAMETER, NULL);
        return;
    }
    if (pkt->type == VM_PKT_DATA_USING_GPA_DIRECT && req.operation != VSTOR_OP_EXECUTE_SRB) {
        vsp_guest_error(c->ch, "GPA ranges on vstor operation %u", req.operation);
        reply_status(c, pkt, size, VSTOR_STATUS_INVALID_PARAMETER, NULL);
        return;
    }
    switch (req.operation) {
    case VSTOR_OP_EXECUTE_SRB:
        if (!atomic_load(&ctrl->ready)) {
            vsp_guest_error(c->ch, "SRB before END_INITIALIZATION");
            reply_status(c, pkt, size, VSTOR_STATUS_INVALID_DEVICE_STATE, NULL);
            return;
        }
        execute_srb(c, pkt, &req, size);
        return;
    case VSTOR_OP_RESET_BUS:
    case VSTOR_OP_RESET_ADAPTER:
    case VSTOR_OP_RESET_LUN:
        /* Nothing to abort: every request completes on its own, and the
         * guest never times one out.  Answered like Hyper-V does. */
        reply_status(c, pkt, size, VSTOR_STATUS_SUCCESS, NULL);
        return;
    default:
        if (c->index) {
            vsp_guest_error(c->ch, "vstor operation %u on a subchannel", req.operation);
            reply_status(c, pkt, size, VSTOR_STATUS_INVALID_DEVICE_REQUEST, NULL);
            return;
        }
        primary_op(c, pkt, &req, size);
    }
}

/* Quiet while SV_QUIET_INFLIGHT requests are in flight (their reap comes
 * back) and completions come fast (SV_QUIET_MAX_GAP_NS), not otherwise.
 * true: packets came while it was quiet, nobody signals them, the caller
 * receives them now. */
static bool settle_quiet(struct sv_chan *c)
{
    bool quiet = !c->failed && c->inflight >= SV_QUIET_INFLIGHT &&
                 c->reap_gap_ns < SV_QUIET_MAX_GAP_NS;
    if (quiet == c->quiet)
        return false;
    c->quiet = quiet;
    /* NULL (the partition is going): the next quiet start tries again */
    if (quiet && !c->quiet_watch)
        c->quiet_watch = vsp_timer_start(vsp_channel_partition(c->ch), c->ch, SV_QUIET_WATCH_MS,
                                          SV_QUIET_WATCH_MS, quiet_watch, c);
    return vsp_recv_quiet(c->ch, quiet);
}

/* The channel's timer while it is quiet (SV_QUIET_WATCH_MS); it stops
 * itself at its first run after quiet ended. */
static void quiet_watch(void *arg)
{
    struct sv_chan *c = arg;
    if (c->quiet) {
        uint64_t idle = mono_ns() - c->last_reap_ns;
        if (idle < SV_QUIET_WATCH_MS * 1000000ull)
            return;
        vsp_log(c->ch, VSP_LOG_DEBUG,
                "no completion for %llu ms with %u requests in flight: receiving with signals",
                (unsigned long long)(idle / 1000000u), c->inflight);
        c->reap_gap_ns = idle; /* > SV_QUIET_MAX_GAP_NS: settle_quiet ends quiet */
        while (settle_quiet(c))
            receive_turn(c);
    }
    vsp_timer_cancel(c->quiet_watch);
    c->quiet_watch = NULL;
}

/* Take what the guest queued, as far as room and the in-flight limit
 * allow; the packets taken. */
static unsigned take_requests(struct sv_chan *c)
{
    struct vsp_channel *ch = c->ch;
    struct vsp_packet pkt;
    bool idle = c->inflight == 0;
    unsigned took = 0;
    for (;;) {
        if (c->inflight >= SV_MAX_INFLIGHT) {
            c->stalled = true; /* sv_reap resumes */
            break;
        }
        if (vsp_send_reserve(ch, SV_COMP_RESERVE) < 0)
            break; /* -EAGAIN: writable resumes; -EPIPE: closing */
        int n = vsp_recv(ch, &pkt);
        if (n <= 0) {
            vsp_send_unreserve(ch, SV_COMP_RESERVE);
            break;
        }
        took++;
        handle_packet(c, &pkt);
        if (c->failed)
            break;
    }
    if (idle && c->inflight)
        c->last_reap_ns = mono_ns(); /* the gap to the first reap starts now */
    return took;
}

_Atomic(void (*)(void)) sv_test_poll_hook;

/* This turn's polling window (SV_POLL_STEP_NS above), 0 for none. */
static uint64_t poll_window(struct sv_chan *c)
{
    uint64_t max = c->ctrl->vm->pl->poll_ns;
    if (!max || c->quiet || c->stalled || c->failed)
        return 0;
    if (atomic_load(&sv_test_poll_hook))
        return max;
    if (c->poll_ns)
        return c->poll_ns;
    if (++c->poll_probe % SV_POLL_PROBE_EVERY)
        return 0;
    return max < SV_POLL_STEP_NS ? max : SV_POLL_STEP_NS;
}

/* Inside the turn's send batch: the ring masked, take and submit what the
 * guest adds until the window ends, then unmask and look once more.  The
 * worker spins meanwhile (a sleep would cost a timer and a wake-up, more
 * than the window); the guest's own ring lock is not held. */
static void poll_requests(struct sv_chan *c, uint64_t window)
{
    uint64_t max = c->ctrl->vm->pl->poll_ns;
    bool caught = false;
    vsp_recv_quiet(c->ch, true);
    void (*hook)(void) = atomic_load(&sv_test_poll_hook);
    if (hook)
        hook();
    uint64_t end = mono_ns() + window;
    do {
        if (take_requests(c)) {
            caught = true;
            kick_queues(c);
        } else {
#if defined(__x86_64__) || defined(__i386__)
            __builtin_ia32_pause();
#endif
        }
    } while (!c->failed && !c->stalled && mono_ns() < end);
    if (vsp_recv_quiet(c->ch, false) && take_requests(c)) {
        caught = true;
        kick_queues(c);
    }
    c->polls++;
    if (caught) {
        c->polls_caught++;
        c->poll_ns = c->poll_ns ? 2 * c->poll_ns : SV_POLL_STEP_NS;
        if (c->poll_ns > max)
            c->poll_ns = max;
    } else {
        c->poll_ns /= 2;
        if (c->poll_ns < SV_POLL_STEP_NS)
            c->poll_ns = 0;
    }
}

/* Take what the guest queued and submit it. */
static void receive_turn(struct sv_chan *c)
{
    struct vsp_channel *ch = c->ch;
    struct vsp_packet pkt;
    if (c->failed) {
        while (vsp_recv(ch, &pkt) > 0)
            ;
        return;
    }
    if (!c->index)
        send_rescan(c);
    unsigned took = take_requests(c);
    vsp_send_batch_begin(ch); /* what the submit completes at once: one interrupt */
    kick_queues(c);
    uint64_t window = took ? poll_window(c) : 0;
    if (window)
        poll_requests(c, window);
    vsp_send_batch_end(ch);
}

static void sv_receive(struct vsp_channel *ch)
{
    struct sv_chan *c = vsp_channel_opaque(ch);
    do
        receive_turn(c);
    while (settle_quiet(c));
}

static void sv_writable(struct vsp_channel *ch)
{
    sv_receive(ch);
}

/* ------------------------------------------------------------------ */
/* Rescan (hot add / remove)                                           */

/* ENUMERATE_BUS, unsolicited (transaction id 0), if one is owed and the
 * guest finished its init; retried from writable when the ring is full. */
static void send_rescan(struct sv_chan *c)
{
    struct sv_ctrl *ctrl = c->ctrl;
    if (!atomic_load(&ctrl->ready) || !atomic_load(&ctrl->rescan) || c->failed)
        return;
    if (ctrl->version < VSTOR_VERSION_WIN7) {
        atomic_store(&ctrl->rescan, false); /* WIN6 guests do not know it */
        return;
    }
    struct vstor_packet m = {.operation = VSTOR_OP_ENUMERATE_BUS};
    int ret = vsp_send_inband(c->ch, &m, ctrl->pkt_size, 0, false);
    if (ret == 0 || ret == -EPIPE || ret == -EMSGSIZE)
        atomic_store(&ctrl->rescan, false);
}

static void rescan_work(void *arg)
{
    struct sv_ctrl *ctrl = arg;
    if (vsp_channel_is_open(ctrl->primary.ch))
        send_rescan(&ctrl->primary);
}

void sv_ctrl_rescan(struct sv_ctrl *ctrl)
{
    atomic_store(&ctrl->rescan, true);
    if (ctrl->primary.ch)
        vsp_queue_work(ctrl->primary.ch, rescan_work, ctrl);
}

struct forget {
    struct sv_chan *c;
    struct sv_disk *disk;
};

static void forget_work(void *arg)
{
    struct forget *f = arg;
    for (int i = 0; i < f->c->nqueues; i++)
        if (f->c->queues[i].disk == f->disk)
            queue_drop(&f->c->queues[i]);
    /* Its requests completed here, not in a reap: no reap comes back for
     * what the guest queued quietly meanwhile. */
    while (settle_quiet(f->c))
        receive_turn(f->c);
    sv_disk_unref(f->disk);
    free(f);
}

void sv_ctrl_forget_disk(struct sv_ctrl *ctrl, struct sv_disk *disk)
{
    pthread_mutex_lock(&ctrl->lock);
    for (int i = 0; i <= VSP_MAX_SUBCHANNELS; i++) {
        struct sv_chan *c = i ? ctrl->subs[i] : &ctrl->primary;
        if (!c || !c->ch)
            continue;
        struct forget *f = malloc(sizeof(*f));
        if (!f)
            continue; /* the queue then goes when the channel closes */
        atomic_fetch_add(&disk->refs, 1);
        *f = (struct forget){.c = c, .disk = disk};
        if (vsp_queue_work(c->ch, forget_work, f) < 0) {
            sv_disk_unref(disk);
            free(f);
        }
    }
    pthread_mutex_unlock(&ctrl->lock);
}

/* ------------------------------------------------------------------ */
/* Open / close                                                        */

static int sv_open(struct vsp_channel *ch, const uint8_t *ud, size_t len)
{
    struct sv_chan *c = vsp_channel_opaque(ch);
    pthread_mutex_lock(&c->ctrl->lock);
    c->ch = ch;
    pthread_mutex_unlock(&c->ctrl->lock);
    c->failed = false;
    c->stalled = false;
    c->quiet = false; /* every open starts unmasked */
    c->last_reap_ns = c->reap_gap_ns = 0;
    if (!c->index) {
        struct sv_ctrl *ctrl = c->ctrl;
        /* A new guest driver: the init sequence starts over. */
        atomic_store(&ctrl->ready, false);
        ctrl->state = SV_INIT_WAIT_BEGIN;
        ctrl->version = 0;
        ctrl->pkt_size = VSTOR_PACKET_SIZE;
    }
    return 0;
}

static void sv_close(struct vsp_channel *ch)
{
    struct sv_chan *c = vsp_channel_opaque(ch);
    struct sv_ctrl *ctrl = c->ctrl;
    vsp_timer_cancel(c->quiet_watch);
    c->quiet_watch = NULL;
    /* Requests in flight complete into the closed channel (the sends
     * fail): the guest memory they use is the guest's until we return. */
    for (int i = 0; i < c->nqueues; i++)
        queue_drop(&c->queues[i]);
    c->nqueues = 0;
    while (c->free) {
        struct sv_req *r = c->free;
        c->free = r->next;
        free(r);
        c->nreqs--;
    }
    if (c->inflight)
        vsp_log(ch, VSP_LOG_ERROR, "%u requests still in flight at close", c->inflight);
    if (c->srbs)
        vsp_log(ch, VSP_LOG_DEBUG,
                "closed after %llu SRBs (%llu failed), %llu polls (%llu caught a request)",
                (unsigned long long)c->srbs, (unsigned long long)c->errors,
                (unsigned long long)c->polls, (unsigned long long)c->polls_caught);
    c->srbs = c->errors = 0;
    c->polls = c->polls_caught = 0;
    c->poll_ns = 0;
    if (!c->index) {
        atomic_store(&ctrl->ready, false);
        ctrl->state = SV_INIT_WAIT_BEGIN;
    } else {
        /* vmbusd rescinds a subchannel with its primary: a later
         * CREATE_SUB_CHANNELS offers it anew (and the object may go). */
        pthread_mutex_lock(&ctrl->lock);
        c->ch = NULL;
        pthread_mutex_unlock(&ctrl->lock);
    }
}

const struct vsp_channel_ops sv_chan_ops = {
    .open = sv_open,
    .close = sv_close,
    .receive = sv_receive,
    .writable = sv_writable,
};
