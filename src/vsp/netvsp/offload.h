/* SPDX-License-Identifier: MIT */
/*
 * Offloads.  Transmit: the checksum and LSOv2 requests a guest attaches to a
 * frame (RNDIS per-packet info) turned into the virtio-net header a TAP
 * with IFF_VNET_HDR takes, after fixing what hv_netvsc leaves to the
 * "hardware" in LSO frames: the IPv4 total length and header checksum, the
 * IPv6 payload length, and the length in the TCP pseudo-header checksum.
 * Receive: the TAP's checksum state turned into the guest's checksum
 * info.  Pure (the fuzzers and the simulator drive it).
 */
#ifndef VMBUSD_VSP_NETVSP_OFFLOAD_H
#define VMBUSD_VSP_NETVSP_OFFLOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/* The offload requests of one frame (raw PPI values). */
struct tx_offload {
    bool has_csum, has_lso;
    uint32_t csum; /* NDIS TCP/IP checksum info, transmit form */
    uint32_t lso;  /* NDIS LSO info, v2 transmit form */
};

/* struct virtio_net_hdr (little endian, as the TAP is set up) */
struct vnet_hdr {
    uint8_t flags;
    uint8_t gso_type;
    uint16_t hdr_len;
    uint16_t gso_size;
    uint16_t csum_start;
    uint16_t csum_offset;
} __attribute__((packed));

#define VNET_HDR_F_NEEDS_CSUM 1
#define VNET_HDR_GSO_NONE 0
#define VNET_HDR_GSO_TCPV4 1
#define VNET_HDR_GSO_TCPV6 4

/* Largest LSO frame the host announces (the IPv4 total length must fit
 * its 16 bits whatever the headers). */
#define OFFLOAD_LSO_MAX 62780u

/* Fill *vh for frame[0..len) with the requests o, fixing the frame's
 * length fields and checksums for LSO.  0, or -EPROTO with *why when a
 * request does not match the frame (offsets past it, not TCP/UDP over IP,
 * zero MSS...). */
int offload_tx_prepare(uint8_t *frame, size_t len, const struct tx_offload *o,
                       struct vnet_hdr *vh, const char **why);

#define VNET_HDR_F_DATA_VALID 2

/* Receive: a frame read from the TAP with its virtio-net header vh.  A
 * partial checksum (NEEDS_CSUM: the host's own traffic) is completed here;
 * then, for a frame whose TCP/UDP checksum is known good (completed, or
 * DATA_VALID: checked by the host), *ppi gets the NDIS checksum info to
 * tell the guest so, and the result is 1.  0: nothing to tell (the guest
 * checks the frame itself); -1: the header does not fit the frame (drop
 * it). */
int offload_rx_complete(uint8_t *frame, size_t len, const struct vnet_hdr *vh, uint32_t *ppi);

/* Receive coalescing: a TCP frame the TAP handed over whole (a GSO frame,
 * vh->gso_type TCPV4 / TCPV6: the host's stack coalesced the segments or
 * never cut them), read into pieces piece[0..n) (all of even length but
 * the last; the Ethernet, IP and TCP headers in the first).  Makes it one
 * valid TCP segment of its whole length: the IPv4 total length and header
 * checksum or the IPv6 payload length, and the TCP checksum computed over
 * all pieces.  0 with *ppi the NDIS checksum info telling the guest so;
 * -1 for a frame that is not TCP over IPv4 / IPv6 (no extension headers)
 * as vh says, or too long for its length fields (drop it). */
int offload_rx_gso(const struct iovec *piece, unsigned n, const struct vnet_hdr *vh,
                   uint32_t *ppi);

/* The longest coalesced frame the guest gets whole.  Linux's hv_netvsc
 * copies every received frame into a new linear skb: a frame of more than
 * about 65150 bytes needs 128 KiB there (an order-5 allocation), which
 * the guest's TCP then counts against its receive buffer as twice the
 * frame, and allocates at a cost; 63 KiB leaves room for the skb's own
 * overhead in 64 KiB on kernels with larger shared info. */
#define OFFLOAD_RSC_FRAME_MAX 64512u

/* Split a coalesced TCP frame (pieces as for offload_rx_gso) longer than
 * max Ethernet bytes at a segment boundary (vh->gso_size): the first part
 * keeps as many whole segments as fit in max (the pieces are cut short,
 * *n lowered), the rest goes to tail (room bytes) after a copy of the
 * headers, with the TCP sequence number, flags and IPv4 ID the segments
 * would have had.  Both parts then want offload_rx_gso.  Returns the
 * tail's length; 0 when the frame is not split (short enough, no MSS,
 * urgent data, or a rest longer than room); -1 when the frame is not TCP
 * over IP as offload_rx_gso takes it. */
long offload_rx_gso_split(struct iovec *piece, unsigned *n, const struct vnet_hdr *vh,
                          size_t max, uint8_t *tail, size_t room);

/* The offload capabilities the host reports (OID_TCP_OFFLOAD_HARDWARE_CAPS
 * body after its 4-byte header) into caps[4..size). */
void offload_caps(uint8_t *caps, size_t size);

#endif
