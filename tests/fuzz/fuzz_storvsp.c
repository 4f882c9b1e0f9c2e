/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for the storage VSP's packet handling (src/vsp/storvsp:
 * chan.c, storvsp.c, over the real SCSI target and backend): arbitrary
 * sequences of VMBus packets (inband, GPA-direct with arbitrary ranges, any
 * other type, any size) on the primary channel and the subchannels the
 * input asks for, with a host->guest ring of arbitrary room, against a
 * 64 KiB memfd disk at LUN 0.  vmbusd itself is replaced by a fake of the
 * vsp.h functions storvsp uses (this file), which checks the plugin's side
 * of the contract:
 *
 *   - every request taken with room reserved gets exactly one completion
 *     (or its room given back), and every completion fits its room;
 *   - completions are COMP packets of 48 or 64 bytes, operation COMPLETE_IO;
 *   - nothing is pulled while the reservation failed; writable resumes;
 *   - every request in flight completes before close returns.
 *
 * Input layout (short input reads as zeros):
 *   u8  room       host->guest ring room, in 64-byte completions (0 = 1)
 *   then packets until the input ends:
 *   u8  chan       channel (mod the channels open)
 *   u8  kind       0-3 inband, 4-5 GPA-direct, 6 another packet type
 *   u8  flags      bit 0: completion requested
 *   u8  len        payload bytes (padded to 8 like the ring does)
 *   len bytes      the payload (a vstor packet, or not)
 *   GPA-direct only: u8 npfn (mod 5), u32 range len, u16 offset, npfn x u8 pfn
 */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/guid.h"
#include "fuzz_input.h"
#include "vmbusd/vsp.h"

extern const struct vsp_plugin storvsp_plugin;

#define GUEST_PAGES 16
#define MAX_CH 8
#define MAX_PKTS 64
#define MAX_WATCH 32
#define MAX_WORK 256

struct fake_pkt {
    uint16_t type, flags;
    uint8_t buf[16 + 8 + 8 + 8 * 4 + 264]; /* descriptor, GPA header, payload */
    uint32_t header_len, len;
};

struct vsp_channel {
    const struct vsp_channel_ops *ops;
    void *opaque;
    bool open, offered;
    uint16_t index;
    struct fake_pkt pkts[MAX_PKTS];
    int npkts, next;
    size_t reserved;  /* room taken, not yet used */
    bool want_writable;
};

struct vsp_partition {
    int unused;
};

struct vsp_fd_watch {
    bool used;
    int fd;
    struct vsp_channel *ch;
    vsp_work_fn fn;
    void *arg;
};

static struct vsp_partition part;
static struct vsp_channel chans[MAX_CH];
static struct vsp_fd_watch watches[MAX_WATCH];
static struct {
    vsp_work_fn fn;
    void *arg;
} work[MAX_WORK];
static int nwork;
static size_t room;     /* host->guest ring: bytes free for reservations */
static uint8_t *guest;  /* guest RAM */
static struct vsp_param params[1];
static bool in_callback;

/* ---- the fake vmbusd ------------------------------------------------ */

void vsp_log(const struct vsp_channel *ch, enum vsp_log_level lvl, const char *fmt, ...) {}
void vsp_plog(const struct vsp_partition *p, enum vsp_log_level lvl, const char *fmt, ...) {}
void vsp_guest_error(const struct vsp_channel *ch, const char *fmt, ...) {}
void vsp_partition_refuse(struct vsp_partition *p, const char *fmt, ...) {}
void *vsp_channel_opaque(const struct vsp_channel *ch) { return ch->opaque; }
struct vsp_partition *vsp_channel_partition(const struct vsp_channel *ch) { return &part; }
bool vsp_channel_is_open(const struct vsp_channel *ch) { return ch->open; }
int vsp_guid_parse(const char *s, struct hv_guid *g) { return guid_parse(s, g); }

int vsp_partition_params(struct vsp_partition *p, const struct vsp_param **out)
{
    *out = params;
    return 1;
}

struct vsp_channel *vsp_channel_offer(struct vsp_partition *p, const struct vsp_offer *o)
{
    FUZZ_CHECK(!chans[0].offered && o->sub_channel_index == 0);
    chans[0] = (struct vsp_channel){.ops = o->ops, .opaque = o->opaque, .offered = true};
    return &chans[0];
}

struct vsp_channel *vsp_subchannel_offer(struct vsp_channel *primary, uint16_t index,
                                         const struct vsp_channel_ops *ops, void *opaque)
{
    FUZZ_CHECK(primary == &chans[0] && primary->open);
    if (index == 0 || index >= MAX_CH || chans[index].offered)
        return NULL;
    chans[index] = (struct vsp_channel){.ops = ops, .opaque = opaque, .offered = true,
                                        .index = index};
    return &chans[index];
}

int vsp_queue_work(struct vsp_channel *ch, vsp_work_fn fn, void *arg)
{
    if (nwork == MAX_WORK)
        return -ENOMEM;
    work[nwork].fn = fn;
    work[nwork].arg = arg;
    nwork++;
    return 0;
}

int vsp_recv(struct vsp_channel *ch, struct vsp_packet *pkt)
{
    FUZZ_CHECK(in_callback);
    if (ch->next == ch->npkts)
        return 0;
    struct fake_pkt *f = &ch->pkts[ch->next++];
    pkt->type = f->type;
    pkt->flags = f->flags;
    memcpy(&pkt->trans_id, f->buf + 8, 8);
    pkt->header = f->buf;
    pkt->header_len = f->header_len;
    pkt->data = f->buf + f->header_len;
    pkt->len = f->len;
    return 1;
}

/* Quiet or not, the harness calls receive for every packet it queues:
 * storvsp must cope with being called when nothing was signalled. */
bool vsp_recv_quiet(struct vsp_channel *ch, bool quiet)
{
    FUZZ_CHECK(in_callback);
    (void)quiet;
    return ch->next < ch->npkts;
}

int vsp_send_reserve(struct vsp_channel *ch, size_t len)
{
    if (!ch->open)
        return -EPIPE;
    if (len > room) {
        ch->want_writable = true;
        return -EAGAIN;
    }
    room -= len;
    ch->reserved += len;
    return 0;
}

void vsp_send_unreserve(struct vsp_channel *ch, size_t len)
{
    FUZZ_CHECK(ch->reserved >= len);
    ch->reserved -= len;
    room += len;
}

/* Batches only defer when the guest sees the sends; here it reads each at
 * once.  What matters is that storvsp closes every batch it opens. */
static int batch_depth;

void vsp_send_batch_begin(struct vsp_channel *ch)
{
    (void)ch;
    batch_depth++;
}

void vsp_send_batch_end(struct vsp_channel *ch)
{
    (void)ch;
    FUZZ_CHECK(batch_depth > 0);
    batch_depth--;
}

int vsp_send_reserved(struct vsp_channel *ch, size_t reserved, uint16_t type, uint16_t flags,
                      uint64_t trans_id, const void *hdr, size_t hdr_len,
                      const struct iovec *iov, int iovcnt)
{
    vsp_send_unreserve(ch, reserved); /* the guest reads it at once */
    size_t len = hdr_len;
    for (int i = 0; i < iovcnt; i++)
        len += iov[i].iov_len;
    FUZZ_CHECK(len <= reserved);
    FUZZ_CHECK(type == VM_PKT_COMP && hdr_len == 0 && iovcnt == 1);
    FUZZ_CHECK(len == 48 || len == 64);
    uint32_t op;
    memcpy(&op, iov[0].iov_base, 4);
    FUZZ_CHECK(op == 1);
    return ch->open ? 0 : -EPIPE;
}

int vsp_send_inband(struct vsp_channel *ch, const void *data, size_t len, uint64_t trans_id,
                    bool completion_requested)
{
    FUZZ_CHECK(trans_id == 0 && (len == 48 || len == 64));
    return ch->open ? 0 : -EPIPE;
}

int vsp_packet_gpa(struct vsp_channel *ch, const struct vsp_packet *pkt, size_t max_len,
                   struct iovec *iov, int max_iov, size_t *len)
{
    if (pkt->type != VM_PKT_DATA_USING_GPA_DIRECT)
        return -EINVAL;
    const uint8_t *h = (const uint8_t *)pkt->header + 16;
    uint32_t count, rlen, off;
    memcpy(&count, h + 4, 4);
    memcpy(&rlen, h + 8, 4);
    memcpy(&off, h + 12, 4);
    uint32_t npfn = (pkt->header_len - 32) / 8;
    if (count != 1 || off >= 4096 || rlen == 0 || (off + (uint64_t)rlen + 4095) / 4096 != npfn)
        return -EPROTO;
    if (rlen > max_len || (int)npfn > max_iov)
        return -E2BIG;
    size_t left = rlen;
    for (uint32_t i = 0; i < npfn; i++) {
        uint64_t pfn;
        memcpy(&pfn, h + 16 + 8 * i, 8);
        if (pfn >= GUEST_PAGES)
            return -EFAULT;
        size_t o = i ? 0 : off, n = 4096 - o < left ? 4096 - o : left;
        iov[i].iov_base = guest + pfn * 4096 + o;
        iov[i].iov_len = n;
        left -= n;
    }
    *len = rlen;
    return (int)npfn;
}

struct vsp_fd_watch *vsp_fd_watch_add(struct vsp_partition *p, struct vsp_channel *ch, int fd,
                                      vsp_work_fn fn, void *arg)
{
    for (int i = 0; i < MAX_WATCH; i++)
        if (!watches[i].used) {
            watches[i] = (struct vsp_fd_watch){true, fd, ch, fn, arg};
            return &watches[i];
        }
    errno = ENOSPC;
    return NULL;
}

void vsp_fd_watch_remove(struct vsp_fd_watch *w)
{
    if (w)
        w->used = false;
}

/* No clock here: a quiet channel's watch timer is never started (the
 * API's answer while a partition goes), which storvsp must survive. */
struct vsp_timer *vsp_timer_start(struct vsp_partition *p, struct vsp_channel *ch,
                                  unsigned first_ms, unsigned period_ms, vsp_work_fn fn, void *arg)
{
    FUZZ_CHECK(in_callback);
    return NULL;
}

void vsp_timer_cancel(struct vsp_timer *t)
{
    FUZZ_CHECK(t == NULL);
}

/* ---- harness ----------------------------------------------------------- */

static void run(void (*cb)(struct vsp_channel *), struct vsp_channel *ch)
{
    in_callback = true;
    cb(ch);
    in_callback = false;
}

static void run_work(void)
{
    while (nwork) {
        vsp_work_fn fn = work[0].fn;
        void *arg = work[0].arg;
        memmove(work, work + 1, sizeof(work[0]) * (size_t)--nwork);
        in_callback = true;
        fn(arg);
        in_callback = false;
    }
}

static size_t outstanding(void)
{
    size_t n = 0;
    for (int i = 0; i < MAX_CH; i++)
        n += chans[i].reserved;
    return n;
}

/* Reap and resume until every channel took all its packets and every
 * request taken is answered. */
static void settle(void)
{
    for (int rounds = 0; rounds < 100000; rounds++) {
        run_work();
        for (int i = 0; i < MAX_CH; i++) {
            struct vsp_channel *c = &chans[i];
            if (!c->offered)
                continue;
            if (c->offered && !c->open && c->index) {
                /* a subchannel just offered: the guest opens it */
                FUZZ_CHECK(c->ops->open(c, NULL, 0) == 0);
                c->open = true;
            }
            if (c->open && c->want_writable) {
                c->want_writable = false;
                run(c->ops->writable, c);
            } else if (c->open && c->next < c->npkts) {
                run(c->ops->receive, c);
            }
        }
        run_work();
        struct pollfd pfd[MAX_WATCH];
        int map[MAX_WATCH], n = 0;
        for (int i = 0; i < MAX_WATCH; i++)
            if (watches[i].used) {
                pfd[n] = (struct pollfd){.fd = watches[i].fd, .events = POLLIN};
                map[n++] = i;
            }
        bool pending = false;
        for (int i = 0; i < MAX_CH; i++)
            pending |= chans[i].open && (chans[i].next < chans[i].npkts || chans[i].want_writable);
        if (!pending && outstanding() == 0)
            return;
        int r = poll(pfd, (nfds_t)n, pending ? 0 : 2000);
        FUZZ_CHECK(r > 0 || pending); /* a request that never completes */
        for (int k = 0; k < n; k++)
            if (pfd[k].revents & POLLIN) {
                struct vsp_fd_watch *w = &watches[map[k]];
                if (w->used) {
                    in_callback = true;
                    w->fn(w->arg);
                    in_callback = false;
                }
            }
    }
    FUZZ_CHECK(!"storvsp does not settle");
}

static void setup(void)
{
    guest = aligned_alloc(4096, GUEST_PAGES * 4096);
    FUZZ_CHECK(guest != NULL);
    int fd = memfd_create("fuzz-storvsp", MFD_CLOEXEC);
    FUZZ_CHECK(fd >= 0 && ftruncate(fd, 64 * 1024) == 0);
    static char disk[64];
    snprintf(disk, sizeof(disk), "/proc/self/fd/%d lun=0", fd);
    params[0] = (struct vsp_param){.key = "disk", .value = disk, .where = "fuzz:1"};
    const char *keys[] = {"max_subchannels", NULL}, *values[] = {"4", NULL};
    void *state = NULL, *part_state = NULL;
    FUZZ_CHECK(storvsp_plugin.init(keys, values, &state) == 0);
    char err[256];
    FUZZ_CHECK(storvsp_plugin.check(state, "fuzz", params, 1, err, sizeof(err)) == 0);
    FUZZ_CHECK(storvsp_plugin.attach(state, &part, &part_state) == 0);
    FUZZ_CHECK(chans[0].offered);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!guest)
        setup();
    struct fuzz_in in = {data, size};
    uint8_t r = fuzz_u8(&in);
    room = 64u * (r ? r : 1);
    size_t room0 = room;
    FUZZ_CHECK(chans[0].ops->open(&chans[0], NULL, 0) == 0);
    chans[0].open = true;
    int nch = 1;
    while (in.left) {
        struct vsp_channel *c = &chans[fuzz_u8(&in) % nch];
        uint8_t kind = fuzz_u8(&in) % 7;
        uint16_t flags = fuzz_u8(&in) & 1;
        uint32_t len = fuzz_u8(&in);
        if (c->npkts == MAX_PKTS)
            break;
        struct fake_pkt *p = &c->pkts[c->npkts];
        memset(p, 0, sizeof(*p));
        uint32_t hlen = 16;
        uint8_t payload[256] = {0};
        fuzz_take(&in, payload, len);
        if (kind == 4 || kind == 5) {
            uint32_t npfn = fuzz_u8(&in) % 5, one = 1, rlen = fuzz_u32(&in) & 0x7fff,
                     off = fuzz_u16(&in) & 0x1fff;
            memcpy(p->buf + 20, &one, 4);
            memcpy(p->buf + 24, &rlen, 4);
            memcpy(p->buf + 28, &off, 4);
            for (uint32_t k = 0; k < npfn; k++) {
                uint64_t pfn = fuzz_u8(&in) % (GUEST_PAGES + 4);
                memcpy(p->buf + 32 + 8 * k, &pfn, 8);
            }
            hlen = 32 + 8 * npfn;
        }
        p->type = kind < 4 ? VM_PKT_DATA_INBAND : kind < 6 ? VM_PKT_DATA_USING_GPA_DIRECT
                                                            : (uint16_t)(fuzz_u8(&in) % 12);
        p->flags = flags;
        uint64_t trans = (uint64_t)c->npkts + 1;
        memcpy(p->buf + 8, &trans, 8);
        p->header_len = hlen;
        p->len = (len + 7) & ~7u;
        memcpy(p->buf + hlen, payload, len);
        c->npkts++;
        settle();
        for (int i = 1; i < MAX_CH; i++)
            if (chans[i].open && i >= nch)
                nch = i + 1;
    }
    settle();
    /* The guest closes: subchannels first, as vmbusd does. */
    for (int i = MAX_CH - 1; i >= 0; i--) {
        struct vsp_channel *c = &chans[i];
        if (c->open) {
            c->open = false;
            run(c->ops->close, c);
        }
        run_work();
        if (i) {
            c->offered = false;
        }
        FUZZ_CHECK(c->reserved == 0);
        c->npkts = c->next = 0;
        c->want_writable = false;
    }
    FUZZ_CHECK(room == room0);
    FUZZ_CHECK(batch_depth == 0);
    for (int i = 0; i < MAX_WATCH; i++)
        FUZZ_CHECK(!watches[i].used);
    return 0;
}
