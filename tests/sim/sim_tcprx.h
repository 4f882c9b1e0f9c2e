/* SPDX-License-Identifier: MIT */
/*
 * The receiving end of one TCP connection in the simulated guest, enough
 * for the host's own TCP to stream data to it through netvsp: the host
 * (192.0.2.1) connects to the guest (192.0.2.2, the test address plan);
 * the guest answers the SYN, takes the data segments in order (checking
 * each one's checksums and lengths as a stack would), and acknowledges
 * them with a large window (window scale 7) the way a receiver that
 * acknowledges every second full segment and at the end of each batch
 * does.  Nothing is retransmitted by the guest: it only sends ACKs.
 */
#ifndef VMBUSD_TESTS_SIM_TCPRX_H
#define VMBUSD_TESTS_SIM_TCPRX_H

#include <stdbool.h>
#include <stdint.h>

#include "sim_netvsc.h"

struct snv_tcprx {
    uint8_t host_mac[6];
    uint16_t port;            /* the guest's port the host connects to */
    uint16_t host_port;
    uint32_t iss;             /* the guest's initial sequence number */
    uint32_t rcv_nxt;         /* next byte expected from the host */
    uint32_t unacked;         /* bytes taken since the last ACK */
    bool established;
    uint64_t bytes;           /* taken in order */
    uint64_t segments;        /* data frames taken in order */
    uint64_t max_segment;     /* longest payload of one frame */
    uint64_t bad;             /* frames of the flow with a bad checksum or length */
    uint64_t out_of_order;    /* frames not starting at rcv_nxt (dropped) */
    uint32_t data_check;      /* running sum of the bytes taken, for the sender's */
    bool fast;                /* set after accept: trust a frame's checksum-good
                                 info as Linux does (RXCSUM), no data_check (benches) */
};

/* Wait up to timeout_ms for the host's SYN to port (from host_mac) and
 * answer it: 0, or -1. */
int snv_tcprx_accept(struct sim_netvsc *nv, struct snv_tcprx *t, const uint8_t host_mac[6],
                     uint16_t port, int timeout_ms);
/* Take the flow's frames for up to timeout_ms or until `until` bytes in
 * all were taken, acknowledging them; returns the bytes taken so far. */
uint64_t snv_tcprx_take(struct sim_netvsc *nv, struct snv_tcprx *t, uint64_t until,
                        int timeout_ms);

#endif
