/* SPDX-License-Identifier: MIT */
/*
 * The receive buffer's sub-allocations: which ones the host may fill, and
 * which ones the guest holds until it completes the transfer-page packet
 * that named them.  A packet's sub-allocations are chained; the packet's
 * transaction id is the index of the first, so the guest's completion
 * names the chain to free.  A completion for a chain the guest does not
 * hold (never sent, or completed already) is refused, not trusted.
 * With vRSS every channel of the NIC shares the one receive buffer: a
 * packet belongs to the queue (channel) that sent it, only that queue's
 * completion frees it, and a queue that closes gives back what it sent.
 * Not thread-safe: the NIC serialises calls (nvsp.c's pool lock).
 */
#ifndef VMBUSD_VSP_NETVSP_RXPOOL_H
#define VMBUSD_VSP_NETVSP_RXPOOL_H

#include <stdbool.h>
#include <stdint.h>

/* Sub-allocations only control messages (RNDIS completions, status
 * indications) may take, so a flood of frames never starves them. */
#define RX_POOL_CONTROL_RESERVE 16u

struct rx_pool {
    uint32_t count;     /* sub-allocations */
    uint32_t nfree;
    uint32_t *free;     /* stack of free indexes */
    uint32_t *next;     /* chain link of an in-flight packet, UINT32_MAX ends it */
    uint8_t *state;     /* RXS_* */
    uint8_t *owner;     /* queue of an in-flight packet's head */
};

/* 0, or -ENOMEM / -EINVAL (count 0 or not above the control reserve). */
int rx_pool_init(struct rx_pool *pl, uint32_t count);
void rx_pool_fini(struct rx_pool *pl);
/* Take a free sub-allocation: true with *idx.  Data (control == false)
 * leaves RX_POOL_CONTROL_RESERVE of them untouched. */
bool rx_pool_get(struct rx_pool *pl, bool control, uint32_t *idx);
/* Give back taken sub-allocations that were not sent after all. */
void rx_pool_put(struct rx_pool *pl, const uint32_t *idx, uint32_t n);
/* The taken sub-allocations idx[0..n) (n >= 1) went to the guest in one
 * packet on queue `queue`; returns its transaction id. */
uint64_t rx_pool_send(struct rx_pool *pl, const uint32_t *idx, uint32_t n, uint8_t queue);
/* The guest completed transaction id on queue `queue`: its
 * sub-allocations are free again.  Returns how many, or -EINVAL if the
 * guest holds no packet of that id sent on that queue. */
int rx_pool_complete(struct rx_pool *pl, uint64_t trans_id, uint8_t queue);
/* Queue `queue` closed: every packet it sent is free again; returns how
 * many sub-allocations. */
uint32_t rx_pool_release_queue(struct rx_pool *pl, uint8_t queue);
/* Sub-allocations the guest holds. */
uint32_t rx_pool_in_flight(const struct rx_pool *pl);

#endif
