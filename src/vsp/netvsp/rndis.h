/* SPDX-License-Identifier: MIT */
/*
 * RNDIS, host side: the control messages (INITIALIZE, QUERY, SET, HALT,
 * RESET, KEEPALIVE) answered from a description of the device, the
 * PACKET messages of a guest transmit walked frame by frame, and the
 * messages the host builds (received frames, status indications).
 * Pure functions over byte buffers: no VMBus, no backend, so that the
 * fuzzers and unit tests can drive them directly.
 */
#ifndef VMBUSD_VSP_NETVSP_RNDIS_H
#define VMBUSD_VSP_NETVSP_RNDIS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What the host tells the guest about the NIC. */
struct rndis_dev_info {
    uint8_t mac[6];
    uint32_t mtu;             /* largest IP MTU the guest may use (maximum frame size) */
    bool link_up;
    uint32_t link_speed;      /* units of 100 bit/s */
    uint64_t tx_ok, rx_ok, tx_err, rx_err, rx_no_buffer; /* statistics OIDs */
    bool offload;             /* transmit checksum and LSOv2 offered */
    bool rsc;                 /* receive coalescing offered (offload on, a guest
                                 of NVSP 6.1 that said it takes coalesced frames) */
    uint32_t queues;          /* receive queues (channels) offered: 2+ answers the
                                 RSS capabilities, fewer refuses them */
};

/* The guest-set state of one RNDIS device. */
struct rndis_state {
    bool initialized;
    uint32_t packet_filter;   /* 0: no frame is received */
    uint32_t max_xfer;        /* guest's max transfer size from INITIALIZE */
    /* RSS parameters last set (validated): the host steers flows with the
     * backend's own hash (docs/netvsp.md), these are kept for status */
    bool rss_enabled;
    uint32_t rss_hash_info;
    uint16_t rss_table_len;   /* entries */
    uint8_t rss_table[256];   /* queue numbers, < dev->queues */
    uint8_t rss_key[40];
    /* receive coalescing the guest turned on (offload parameters), per IP
     * version; only when dev->rsc */
    bool rsc_ip4, rsc_ip6;
};

/* Longest completion rndis_control() writes (QUERY_C of the largest OID
 * answer plus its header). */
#define RNDIS_REPLY_MAX 256u
/* Most frames per transmit message the host accepts (INIT_C) and the
 * alignment (log2) of messages packed in one send section. */
#define RNDIS_MAX_PKT_PER_MSG 8u
#define RNDIS_PKT_ALIGN_LOG2 3u

/* One control message msg[0..len) (a copy the guest cannot change).
 * Returns the completion's length written to out (cap >= RNDIS_REPLY_MAX),
 * 0 if the message gets none (HALT), or -EPROTO for a malformed message,
 * with *why saying what was wrong (static text).  A well-formed message
 * with a value the host refuses (RSS parameters out of range) gets its
 * failure completion and *why set too: the caller warns about it.  st
 * changes as the message says (INITIALIZE, SET packet filter, RSS, HALT). */
int rndis_control(struct rndis_state *st, const struct rndis_dev_info *dev, const uint8_t *msg,
                  size_t len, uint8_t *out, size_t cap, const char **why);

struct tx_offload;
/* Called for each frame of a transmit with its offload requests (the
 * checksum and LSO per-packet info, if any): 0 to go on, <0 to stop. */
typedef int (*rndis_frame_fn)(void *arg, uint8_t *frame, size_t len,
                              const struct tx_offload *o);

/* Walk the RNDIS PACKET messages packed back to back in buf[0..len) (each
 * msg_len long; what follows the last one is padding if shorter than a
 * header, or zeros), and the per-packet info of each.  Calls fn for every
 * frame.  Returns the number of frames, or -EPROTO (with *why) at the
 * first malformed message: frames before it were delivered. */
int rndis_tx_walk(uint8_t *buf, size_t len, rndis_frame_fn fn, void *arg, const char **why);
/* Whether buf[0..have), the first bytes of a transfer of len bytes, holds
 * all rndis_tx_walk reads of it and the first frame_hdr bytes of its frame:
 * one PACKET message of exactly len bytes whose per-packet info and frame
 * start lie that early.  (Then the rest of the frame need not be copied.) */
bool rndis_tx_prefix_ok(const uint8_t *buf, size_t have, size_t len, size_t frame_hdr);

/* Size of the RNDIS PACKET header the host puts before a received frame,
 * with room for one per-packet info record of 4 bytes (checksum), and
 * for that and a packet-id record (a fragment of a coalesced frame). */
#define RNDIS_RX_HDR_LEN 44u
#define RNDIS_RX_HDR_PPI_LEN 60u
#define RNDIS_RX_HDR_RSC_LEN 76u
/* Write the PACKET header for a frame (or fragment) of frame_len bytes
 * that follows it at out + hdr_len (RNDIS_RX_HDR_LEN; RNDIS_RX_HDR_PPI_LEN:
 * then, if has_csum, with a checksum info record of csum;
 * RNDIS_RX_HDR_RSC_LEN: then also, if frag (NDIS_PKTINFO_* flags) is not
 * 0, a packet-id record of frag and pkt_id). */
void rndis_rx_header(uint8_t *out, uint32_t hdr_len, uint32_t frame_len, bool has_csum,
                     uint32_t csum, uint8_t frag, uint16_t pkt_id);

/* INDICATE_STATUS with status (media connect / disconnect) into out
 * (>= 20 bytes); returns its length. */
size_t rndis_indicate(uint8_t *out, uint32_t status);

#endif
