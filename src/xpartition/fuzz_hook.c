/* SPDX-License-Identifier: MIT */
/*
 * vmbusd-guestfuzz's hook sites in the partition code (fuzz_hook.h): turn
 * each host->guest action into a key for the engine (src/guestfuzz), apply
 * the mutation it decides, and record what reached the guest.  Built only
 * into the fuzzing binary.
 *
 * The host's own state is updated before the hook runs (the offer is
 * marked sent, the channel open...), so whatever the guest is told, vmbusd
 * keeps a consistent view and deals with the guest's reaction as with any
 * other guest input.
 */
#ifndef VMBUSD_GUESTFUZZ
#error "fuzz_hook.c belongs to vmbusd-guestfuzz only"
#endif

#include "xpartition/fuzz_hook.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "guestfuzz/engine.h"
#include "xpartition/internal.h"

_Static_assert(RING_FIELD_WRITE_INDEX == GF_RF_WRITE_INDEX &&
                   RING_FIELD_READ_INDEX == GF_RF_READ_INDEX &&
                   RING_FIELD_INTERRUPT_MASK == GF_RF_INTERRUPT_MASK &&
                   RING_FIELD_PENDING_SEND_SZ == GF_RF_PENDING_SEND_SZ,
               "ring.h and mutate.h name the ring fields alike");

#define MAX_HELD 16
#define REORDER_MS 1000 /* a reordered message nobody overtakes goes out after this */

struct held_msg {
    uint64_t due_ns;
    bool reorder;      /* released right after the next message, or at due_ns */
    struct gf_key key;
    uint8_t op;
    uint8_t len;
    uint8_t body[HV_MESSAGE_PAYLOAD_SIZE];
};

struct xp_fuzz {
    struct gf_vm *vm;
    struct held_msg held[MAX_HELD];
    unsigned nheld;
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void xp_fuzz_attach(struct xpartition *xp)
{
    struct xp_fuzz *f = calloc(1, sizeof(*f));
    if (!f) {
        log_err("partition %s: no memory for the fuzzing state; this VM is not fuzzed", xp->name);
        return;
    }
    f->vm = gf_vm_new(xp->id, xp->name);
    xp->fuzz = f;
}

void xp_fuzz_detach(struct xpartition *xp)
{
    if (!xp->fuzz)
        return;
    gf_vm_free(xp->fuzz->vm);
    free(xp->fuzz);
    xp->fuzz = NULL;
}

static struct gf_vm *vm_of(struct xpartition *xp) { return xp->fuzz ? xp->fuzz->vm : NULL; }

/* ------------------------------------------------------------------ */
/* Channel messages                                                    */

static void fill_relids(struct xpartition *xp, struct gf_ctx *ctx)
{
    struct xp_channel *ch;
    STAILQ_FOREACH(ch, &xp->offers, link)
    {
        uint32_t r = atomic_load(&ch->relid);
        if (r && ctx->nrelids < sizeof(ctx->relids) / sizeof(ctx->relids[0]))
            ctx->relids[ctx->nrelids++] = r;
    }
}

static int push(struct xpartition *xp, const struct gf_key *key, enum gf_op op, const void *b,
                size_t len)
{
    int ret = xp_queue_msg_unfuzzed(xp, b, len);
    gf_vm_host_sent(vm_of(xp), key, ret == 0 ? op : op | GF_HOST_NOT_SENT, b, ret == 0 ? len : 0);
    return ret;
}

static void hold(struct xp_fuzz *f, const struct gf_mutation *m, const void *b, size_t len,
                 bool reorder, uint32_t ms)
{
    struct held_msg *h = &f->held[f->nheld++];
    h->due_ns = now_ns() + (uint64_t)ms * 1000000ull;
    h->reorder = reorder;
    h->key = m->key;
    h->op = m->op;
    h->len = (uint8_t)len;
    memcpy(h->body, b, len);
}

/* Send held messages: the due ones, and (after) the reordered ones. */
static void release(struct xpartition *xp, bool after_message)
{
    struct xp_fuzz *f = xp->fuzz;
    uint64_t now = now_ns();
    unsigned keep = 0;
    for (unsigned i = 0; i < f->nheld; i++) {
        struct held_msg *h = &f->held[i];
        if ((after_message && h->reorder) || now >= h->due_ns) {
            if (xp_queue_msg_unfuzzed(xp, h->body, h->len) == 0) {
                gf_vm_host_sent(vm_of(xp), &h->key, h->op, h->body, h->len);
                continue;
            }
            /* Queue full: keep it, it goes with a later flush. */
        }
        if (keep != i)
            f->held[keep] = *h;
        keep++;
    }
    f->nheld = keep;
}

int xp_fuzz_queue_msg(struct xpartition *xp, const void *body, size_t len)
{
    struct xp_fuzz *f = xp->fuzz;
    if (!f || !f->vm || len > HV_MESSAGE_PAYLOAD_SIZE || len < 4)
        return xp_queue_msg_unfuzzed(xp, body, len);
    uint32_t type;
    memcpy(&type, body, 4);
    struct gf_key key = {.kind = GF_K_MSG, .subtype = (uint16_t)type};
    if (type == CHANNELMSG_OFFERCHANNEL && len >= sizeof(struct vmbus_channel_offer_channel))
        key.class_id = ((const struct vmbus_channel_offer_channel *)body)->offer.if_type;
    struct gf_ctx ctx = {0};
    fill_relids(xp, &ctx);
    struct gf_mutation m;
    enum gf_op op = gf_vm_decide(f->vm, &key, &ctx, body, len, HV_MESSAGE_PAYLOAD_SIZE, &m);

    uint8_t out[HV_MESSAGE_PAYLOAD_SIZE];
    size_t olen = len;
    memcpy(out, body, len);
    int ret = 0;
    switch (op) {
    case GF_OP_PATCH:
        olen = gf_edit_apply(&m, body, len, out, sizeof(out));
        break;
    case GF_OP_DROP:
        /* The caller believes it was queued: the host's state moves on
         * as if the guest had been told. */
        gf_vm_host_sent(f->vm, &key, op, NULL, 0);
        return 0;
    case GF_OP_DELAY:
    case GF_OP_REORDER:
        if (f->nheld < MAX_HELD) {
            hold(f, &m, body, len, op == GF_OP_REORDER, op == GF_OP_DELAY ? m.param : REORDER_MS);
            if (xp->transport->msgs_waiting)
                xp->transport->msgs_waiting(xp->transport_ctx);
            return 0;
        }
        op = GF_OP_NONE;
        break;
    default:
        break;
    }
    ret = push(xp, &key, op, out, olen);
    if (ret < 0)
        return ret;
    if (op == GF_OP_DUP)
        push(xp, &key, op, out, olen);
    if (op == GF_OP_RESCIND) {
        struct vmbus_channel_rescind_offer r = {.header.msgtype = CHANNELMSG_RESCIND_CHANNELOFFER,
                                                .child_relid = m.param};
        push(xp, &key, op, &r, sizeof(r));
    }
    if (f->nheld)
        release(xp, true);
    return 0;
}

bool xp_fuzz_release_held(struct xpartition *xp)
{
    if (!xp->fuzz || !xp->fuzz->nheld)
        return false;
    release(xp, false);
    return xp->fuzz->nheld > 0;
}

bool xp_fuzz_holding(const struct xpartition *xp)
{
    return xp->fuzz && xp->fuzz->nheld > 0;
}

void xp_fuzz_drop_held(struct xpartition *xp)
{
    if (xp->fuzz)
        xp->fuzz->nheld = 0;
}

/* ------------------------------------------------------------------ */
/* Interrupts                                                          */

unsigned xp_fuzz_signals(struct xpartition *xp, struct xp_channel *ch)
{
    struct gf_vm *vm = vm_of(xp);
    if (!vm)
        return 1;
    struct gf_key key = {.kind = GF_K_SIGNAL, .subtype = ch ? 0 : 1};
    if (ch)
        key.class_id = ch->offer.if_type;
    struct gf_ctx ctx = {0};
    struct gf_mutation m;
    enum gf_op op = gf_vm_decide(vm, &key, &ctx, NULL, 0, 0, &m);
    if (op == GF_OP_NONE)
        return 1; /* not recorded: interrupts follow timing, only their mutations matter */
    gf_vm_host_sent(vm, &key, op, NULL, 0);
    if (op == GF_OP_DROP)
        return 0;
    if (op == GF_OP_STORM)
        return 1 + m.param;
    return 1;
}

/* ------------------------------------------------------------------ */
/* Guest input                                                         */

void xp_fuzz_guest_msg(struct xpartition *xp, const void *payload, size_t len)
{
    gf_vm_guest_msg(vm_of(xp), payload, len);
}

void xp_fuzz_guest_pkt(struct xp_channel *ch, const void *pkt, size_t len)
{
    gf_vm_guest_pkt(vm_of(ch->xp), &ch->offer.if_type, atomic_load(&ch->relid), pkt, len);
}

/* ------------------------------------------------------------------ */
/* Packets                                                             */

void xp_fuzz_pkt_begin(struct xp_channel *ch, const struct iovec *v, int n,
                       struct xp_fuzz_pkt *fp)
{
    *fp = (struct xp_fuzz_pkt){0};
    struct gf_vm *vm = vm_of(ch->xp);
    if (!vm || n <= 0)
        return;
    size_t total = 0;
    for (int i = 0; i < n; i++)
        total += v[i].iov_len;
    /* Room for growth past the guest's limits, never more than the ring
     * could take (the write refuses that anyway). */
    uint32_t limit = ch->out.max_pkt ? ch->out.max_pkt : 4096;
    size_t cap = total > 2 * (size_t)limit ? total : 2 * (size_t)limit;
    cap += 64;
    if (cap > RING_MAX_PKT_LEN)
        cap = RING_MAX_PKT_LEN;
    if (total > cap)
        return;
    uint8_t *buf = malloc(cap);
    if (!buf)
        return;
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        memcpy(buf + off, v[i].iov_base, v[i].iov_len);
        off += v[i].iov_len;
    }
    fp->key = (struct gf_key){.kind = GF_K_PKT, .class_id = ch->offer.if_type};
    memcpy(&fp->key.subtype, buf, 2); /* descriptor type */
    struct gf_ctx ctx = {.max_pkt = ch->out.max_pkt, .ring_size = ch->out.r.size};
    struct gf_mutation m;
    enum gf_op op = gf_vm_decide(vm, &fp->key, &ctx, buf, total, cap, &m);
    if (op == GF_OP_PATCH) {
        fp->out = malloc(cap);
        if (fp->out)
            fp->olen = gf_edit_apply(&m, buf, total, fp->out, cap);
        else
            op = GF_OP_NONE;
    } else if (op == GF_OP_DELAY) {
        /* The sender waits (a slow host) before it takes the ring's lock;
         * the fuzzing binary accepts that its loop or worker is blocked
         * meanwhile. */
        usleep(m.param * 1000u);
    }
    fp->vm = vm;
    fp->op = (uint8_t)op;
    fp->buf = buf;
    fp->total = total;
}

int xp_fuzz_pkt_write(struct xp_channel *ch, struct xp_fuzz_pkt *fp, const struct iovec *v,
                      int n, uint32_t keep, bool *signal)
{
    if (!fp->vm)
        return ring_write_keep(&ch->out, v, n, keep, signal);
    if (fp->op == GF_OP_DROP) {
        /* The sender believes it went (a completion written into its
         * reservation gives that reservation back all the same). */
        *signal = false;
        return RING_OK;
    }
    int ret;
    if (fp->op == GF_OP_PATCH) {
        struct iovec one = {.iov_base = fp->out, .iov_len = fp->olen};
        ret = ring_write_raw_keep(&ch->out, &one, 1, keep, signal);
        if (ret == -EAGAIN || ret == -EMSGSIZE || ret == -EINVAL) {
            /* The mutated packet cannot go now (bigger than the ring, or
             * than the room left beside what is reserved, its own
             * reservation included when it grew past it): the sender's
             * own packet goes instead, so it sees no error it could not
             * have had without the fuzzer, and a completion never takes
             * room reserved for another. */
            fp->fell_back = true;
            ret = ring_write_keep(&ch->out, v, n, keep, signal);
        }
    } else {
        ret = ring_write_keep(&ch->out, v, n, keep, signal);
    }
    if (ret != RING_OK)
        return ret;
    fp->copies = 1;
    if (fp->op == GF_OP_DUP) {
        /* The copy takes only room nobody reserved (keep still counts
         * every other reservation); without that room it is not sent. */
        bool again = false;
        int dup = ring_write_keep(&ch->out, v, n, keep, &again);
        if (dup == RING_OK) {
            fp->copies = 2;
            *signal |= again;
        } else if (dup == -EAGAIN) {
            /* Nobody waits for the copy's room; the caller asks again for
             * a sender that is blocked. */
            ring_writer_clear_pending(&ch->out);
        }
    }
    return RING_OK;
}

void xp_fuzz_pkt_end(struct xp_channel *ch, struct xp_fuzz_pkt *fp, int ret)
{
    (void)ch;
    if (!fp->vm)
        return;
    enum gf_op op = (enum gf_op)fp->op;
    if (op == GF_OP_DROP) {
        gf_vm_host_sent(fp->vm, &fp->key, op, NULL, 0);
    } else if (ret == RING_OK) {
        bool patched = op == GF_OP_PATCH && !fp->fell_back;
        const uint8_t *sent = patched ? fp->out : fp->buf;
        size_t len = patched ? fp->olen : fp->total;
        if (fp->fell_back)
            op = GF_OP_NONE;
        for (unsigned i = 0; i < fp->copies; i++)
            gf_vm_host_sent(fp->vm, &fp->key, op, sent, len);
    } else {
        /* A packet the ring cannot take now (or a channel gone) is
         * recorded as not sent: the VSP retries it later, as a new
         * action. */
        gf_vm_host_sent(fp->vm, &fp->key, (fp->fell_back ? GF_OP_NONE : op) | GF_HOST_NOT_SENT,
                        NULL, 0);
    }
    free(fp->buf);
    free(fp->out);
    fp->buf = fp->out = NULL;
}

/* ------------------------------------------------------------------ */
/* Ring header fields                                                  */

static bool ring_field(void *arg, unsigned field, uint32_t ring_size, uint32_t *value)
{
    struct xp_channel *ch = arg;
    struct gf_vm *vm = vm_of(ch->xp);
    if (!vm)
        return true;
    struct gf_key key = {.kind = GF_K_RING, .subtype = (uint16_t)field,
                         .class_id = ch->offer.if_type};
    struct gf_ctx ctx = {.ring_size = ring_size, .cur_value = *value};
    struct gf_mutation m;
    enum gf_op op = gf_vm_decide(vm, &key, &ctx, NULL, 0, 0, &m);
    if (op == GF_OP_NONE)
        return true; /* not recorded: one per packet and batch, timing-bound */
    if (op == GF_OP_DROP) {
        gf_vm_host_sent(vm, &key, op, NULL, 0);
        return false;
    }
    if (op == GF_OP_VALUE)
        *value = m.param;
    gf_vm_host_sent(vm, &key, op, value, sizeof(*value));
    return true;
}

void xp_fuzz_rings_attach(struct xp_channel *ch)
{
    ch->in.r.fuzz = ring_field;
    ch->in.r.fuzz_ctx = ch;
    ch->out.r.fuzz = ring_field;
    ch->out.r.fuzz_ctx = ch;
}
