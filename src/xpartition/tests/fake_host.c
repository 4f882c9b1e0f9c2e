/* SPDX-License-Identifier: MIT */
#include "xpartition/tests/fake_host.h"

#include <string.h>

static const struct fake_call *record(struct fake_host *fh, enum fake_op op, uint32_t arg,
                                      struct xp_channel *ch)
{
    static struct fake_call overflow; /* what the hook sees once the log is full */
    struct fake_call *c = &overflow;
    if (fh->ncalls < FAKE_HOST_MAX_CALLS)
        c = &fh->calls[fh->ncalls++];
    else
        fh->lost++;
    *c = (struct fake_call){.op = op, .arg = arg, .ch = ch};
    if (fh->hook)
        fh->hook(fh, c);
    return c;
}

static void fake_signal_vp(void *ctx, uint32_t vp)
{
    struct fake_host *fh = ctx;
    if (vp < XP_MAX_VCPUS)
        fh->signals[vp]++;
    else
        fh->signals_bad_vp++;
    record(fh, FAKE_SIGNAL_VP, vp, NULL);
}

static int fake_eventfd_add(void *ctx, uint32_t conn_id)
{
    struct fake_host *fh = ctx;
    record(fh, FAKE_EVENTFD_ADD, conn_id, NULL);
    return fh->eventfd_add_ret;
}

static void fake_eventfd_del(void *ctx, uint32_t conn_id)
{
    record(ctx, FAKE_EVENTFD_DEL, conn_id, NULL);
}

static void fake_channel_open(void *ctx, struct xp_channel *ch, const uint8_t *user_data,
                              size_t len)
{
    struct fake_host *fh = ctx;
    memset(fh->open_userdata, 0, sizeof(fh->open_userdata));
    memcpy(fh->open_userdata, user_data,
           len < sizeof(fh->open_userdata) ? len : sizeof(fh->open_userdata));
    record(fh, FAKE_CHANNEL_OPEN, (uint32_t)len, ch);
    if (!fh->hold_open)
        xp_channel_open_done(ch, fh->open_status);
}

static void fake_channel_close(void *ctx, struct xp_channel *ch)
{
    struct fake_host *fh = ctx;
    record(fh, FAKE_CHANNEL_CLOSE, 0, ch);
    if (!fh->hold_close)
        xp_channel_close_done(ch);
}

static void fake_channel_kick(void *ctx, struct xp_channel *ch)
{
    record(ctx, FAKE_CHANNEL_KICK, 0, ch);
}

static void fake_msgs_waiting(void *ctx)
{
    struct fake_host *fh = ctx;
    fh->msgs_waiting++;
}

const struct xp_transport_ops fake_transport_ops = {
    .signal_vp = fake_signal_vp,
    .eventfd_add = fake_eventfd_add,
    .eventfd_del = fake_eventfd_del,
    .msgs_waiting = fake_msgs_waiting,
};

const struct xp_channel_ops fake_channel_ops = {
    .channel_open = fake_channel_open,
    .channel_close = fake_channel_close,
    .channel_kick = fake_channel_kick,
};

struct xpartition *fake_host_partition(struct fake_host *fh, uint32_t id, const char *name,
                                       uint32_t nvcpus)
{
    struct xpartition *xp = xp_create(id, name, nvcpus, &fake_transport_ops, fh);
    if (xp)
        xp_set_channel_ops(xp, &fake_channel_ops, fh);
    return xp;
}

void fake_host_init(struct fake_host *fh)
{
    memset(fh, 0, sizeof(*fh));
}

void fake_host_clear(struct fake_host *fh)
{
    fh->ncalls = 0;
    fh->lost = 0;
}

unsigned fake_host_count(const struct fake_host *fh, enum fake_op op, uint32_t arg)
{
    unsigned n = 0;
    for (unsigned i = 0; i < fh->ncalls; i++)
        if (fh->calls[i].op == op && (arg == FAKE_ANY_ARG || fh->calls[i].arg == arg))
            n++;
    return n;
}

const char *fake_op_name(enum fake_op op)
{
    switch (op) {
    case FAKE_SIGNAL_VP: return "signal_vp";
    case FAKE_EVENTFD_ADD: return "eventfd_add";
    case FAKE_EVENTFD_DEL: return "eventfd_del";
    case FAKE_CHANNEL_OPEN: return "channel_open";
    case FAKE_CHANNEL_CLOSE: return "channel_close";
    case FAKE_CHANNEL_KICK: return "channel_kick";
    }
    return "?";
}
