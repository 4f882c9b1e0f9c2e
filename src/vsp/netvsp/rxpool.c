/* SPDX-License-Identifier: MIT */
#include "vsp/netvsp/rxpool.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

enum { RXS_FREE = 0, RXS_TAKEN, RXS_HEAD, RXS_LINK };

int rx_pool_init(struct rx_pool *pl, uint32_t count)
{
    memset(pl, 0, sizeof(*pl));
    if (count <= RX_POOL_CONTROL_RESERVE)
        return -EINVAL;
    pl->free = calloc(count, sizeof(*pl->free));
    pl->next = calloc(count, sizeof(*pl->next));
    pl->state = calloc(count, 1);
    pl->owner = calloc(count, 1);
    if (!pl->free || !pl->next || !pl->state || !pl->owner) {
        rx_pool_fini(pl);
        return -ENOMEM;
    }
    pl->count = count;
    /* Lowest index on top: the first frames use the start of the buffer. */
    for (uint32_t i = 0; i < count; i++)
        pl->free[i] = count - 1 - i;
    pl->nfree = count;
    return 0;
}

void rx_pool_fini(struct rx_pool *pl)
{
    free(pl->free);
    free(pl->next);
    free(pl->state);
    free(pl->owner);
    memset(pl, 0, sizeof(*pl));
}

bool rx_pool_get(struct rx_pool *pl, bool control, uint32_t *idx)
{
    if (pl->nfree == 0 || (!control && pl->nfree <= RX_POOL_CONTROL_RESERVE))
        return false;
    *idx = pl->free[--pl->nfree];
    pl->state[*idx] = RXS_TAKEN;
    return true;
}

void rx_pool_put(struct rx_pool *pl, const uint32_t *idx, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        pl->state[idx[i]] = RXS_FREE;
        pl->free[pl->nfree++] = idx[i];
    }
}

uint64_t rx_pool_send(struct rx_pool *pl, const uint32_t *idx, uint32_t n, uint8_t queue)
{
    pl->owner[idx[0]] = queue;
    for (uint32_t i = 0; i < n; i++) {
        pl->state[idx[i]] = i == 0 ? RXS_HEAD : RXS_LINK;
        pl->next[idx[i]] = i + 1 < n ? idx[i + 1] : UINT32_MAX;
    }
    return idx[0];
}

static int free_chain(struct rx_pool *pl, uint32_t head)
{
    int n = 0;
    for (uint32_t i = head; i != UINT32_MAX;) {
        uint32_t nx = pl->next[i];
        pl->state[i] = RXS_FREE;
        pl->free[pl->nfree++] = i;
        n++;
        i = nx;
    }
    return n;
}

int rx_pool_complete(struct rx_pool *pl, uint64_t trans_id, uint8_t queue)
{
    if (trans_id >= pl->count || pl->state[trans_id] != RXS_HEAD ||
        pl->owner[trans_id] != queue)
        return -EINVAL;
    return free_chain(pl, (uint32_t)trans_id);
}

uint32_t rx_pool_release_queue(struct rx_pool *pl, uint8_t queue)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < pl->count; i++)
        if (pl->state[i] == RXS_HEAD && pl->owner[i] == queue)
            n += (uint32_t)free_chain(pl, i);
    return n;
}

uint32_t rx_pool_in_flight(const struct rx_pool *pl)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < pl->count; i++)
        n += pl->state[i] == RXS_HEAD || pl->state[i] == RXS_LINK;
    return n;
}
