/* SPDX-License-Identifier: MIT */
/*
 * A copy of a partition's state for the control socket (vmbusctl list), so
 * the daemon reads neither the model's structs nor the guest's ring headers.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "xpartition/internal.h"

uint32_t xp_id(const struct xpartition *xp) { return xp->id; }

static bool listed(const struct xp_channel *ch)
{
    /* rescinded before it ever reached the guest: gone */
    return !(ch->removed && !atomic_load(&ch->relid));
}

int xp_snapshot(struct xpartition *xp, struct xp_snapshot *out)
{
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&xp->lock);
    unsigned n = 0;
    struct xp_channel *ch;
    STAILQ_FOREACH(ch, &xp->offers, link)
        n += listed(ch);
    out->id = xp->id;
    out->nvcpus = xp->nvcpus;
    out->connected = xp->connected;
    out->version = xp->version;
    out->stats = xp->stats;
    out->channels = n ? calloc(n, sizeof(*out->channels)) : NULL;
    if (n && !out->channels) {
        pthread_mutex_unlock(&xp->lock);
        return -ENOMEM;
    }
    STAILQ_FOREACH(ch, &xp->offers, link) {
        if (!listed(ch))
            continue;
        struct xp_chan_snapshot *c = &out->channels[out->nchannels++];
        c->relid = atomic_load(&ch->relid);
        c->class_id = ch->offer.if_type;
        c->instance_id = ch->offer.if_instance;
        c->sub_channel_index = ch->offer.sub_channel_index;
        c->state = atomic_load(&ch->state);
        c->target_vp = atomic_load(&ch->target_vp);
        /* The rings stay mapped while xp->lock is held (unmap_rings runs
         * under it); their headers are read once each. */
        if (c->state == XP_CHAN_OPEN) {
            c->in_fill_pct = ring_fill_pct(&ch->in.r);
            c->out_fill_pct = ring_fill_pct(&ch->out.r);
            struct ring_state gh, hg;
            ring_peek(&ch->in.r, &gh);
            ring_peek(&ch->out.r, &hg);
            c->in_write = gh.write_index;
            c->in_read = gh.read_index;
            c->in_mask = gh.interrupt_mask;
            c->in_pending = gh.pending_send_sz;
            c->out_write = hg.write_index;
            c->out_read = hg.read_index;
            c->out_mask = hg.interrupt_mask;
            c->out_pending = hg.pending_send_sz;
        }
    }
    pthread_mutex_unlock(&xp->lock);
    return 0;
}

void xp_snapshot_free(struct xp_snapshot *s)
{
    free(s->channels);
    s->channels = NULL;
    s->nchannels = 0;
}
