/* SPDX-License-Identifier: MIT */
/*
 * A simulated hv_netvsc (Linux 6.1) on top of the guest simulator: NVSP
 * INIT with one version, NDIS config and version, the receive and send
 * buffers (GPADLs), RNDIS INITIALIZE and the init-time OIDs in Linux's
 * order, the packet filter, frames sent through a send section or as
 * GPA-direct ranges, and frames / RNDIS replies / indications received as
 * transfer-page packets, checked the way Linux checks them.  Anything the
 * host sends that Linux would reject is counted in host_bad (a vmbusd bug).
 */
#ifndef VMBUSD_TESTS_SIM_NETVSC_H
#define VMBUSD_TESTS_SIM_NETVSC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "simvm.h"

#define SNV_RXQ 512
#define SNV_MAX_CHANNELS 64

struct sim_netvsc {
    struct sim_vm *vm;
    struct sim_chan *ch;          /* the primary, = chans[0] */
    struct sim_chan *chans[SNV_MAX_CHANNELS]; /* primary and open subchannels */
    int nch;
    int tx_chan;                  /* channel the frames are sent on (default 0) */
    bool defer_release;           /* snv_free waits for the subchannels' rescinds
                                     but leaves them unreleased (a guest slow to
                                     release them) */
    uint32_t version;
    /* receive buffer */
    uint32_t recv_gpadl, recv_pages;
    uint64_t recv_off;
    uint32_t sub_size, sub_count;
    /* send buffer */
    uint32_t send_gpadl, send_pages;
    uint64_t send_off;
    uint32_t section_size, nsections;
    uint64_t scratch_off;         /* page(s) for GPA-direct requests */
    uint8_t mac[6];
    uint32_t mtu;                 /* the MTU the guest ends up with */
    uint32_t ndis_mtu;            /* MTU sent in NDIS config (0: 1500) */
    uint32_t link_status;         /* media connect status: 0 connected */
    uint32_t rss_queues;          /* RSS capabilities: receive queues (0: query failed) */
    uint16_t rss_table_entries;   /* and indirection table size */
    uint32_t send_table[16];      /* the host's send indirection table */
    int send_tables;              /* how many came */
    uint8_t offload_caps[156];    /* the host's answer to the offload caps query */
    bool lro_off;                 /* set before bring-up: the guest's LRO is off
                                     (RSC disabled in the offload parameters) */
    bool rsc_offered;             /* the caps offered RSC for IPv4 and IPv6, so the
                                     guest enabled it (unless lro_off) */
    uint32_t req_id;
    uint64_t tid;
    /* received frames, oldest first */
    struct {
        uint8_t *data;
        uint32_t len;
        bool has_csum;        /* a checksum info record came with it */
        uint32_t csum;
        int chan;             /* channel it arrived on */
    } rxq[SNV_RXQ];
    bool last_has_csum;           /* of the frame snv_recv_frame took last */
    uint32_t last_csum;
    int last_chan;
    uint64_t rx_frames_on[SNV_MAX_CHANNELS];
    int rxq_n;
    uint64_t rx_frames, rx_packets;
    uint64_t rx_bytes;            /* of the frames delivered */
    uint64_t rx_coalesced;        /* frames joined from 2+ fragments (RSC) */
    uint32_t rx_max_ranges;       /* most ranges one transfer-page packet had */
    /* the coalesced frame being joined (per packet, as Linux's per-channel
     * state, which a packet never leaves half-full) */
    uint32_t rsc_cnt;
    const uint8_t *rsc_data[562];
    uint32_t rsc_len[562];
    bool rsc_has_csum;
    uint32_t rsc_csum;
    /* last RNDIS completion taken by the poller */
    uint8_t ctl[4096];
    uint32_t ctl_len;
    bool ctl_valid;
    uint32_t indications[16];
    int nind;
    /* NVSP completions of the guest's requests (trans_id -> status) */
    uint64_t comp_tid;
    uint8_t comp[64];
    uint32_t comp_len;
    bool comp_valid;
    uint64_t tx_done;             /* SEND_RNDIS_PKT completions taken */
    uint64_t tx_tids[256];        /* the trans_ids of the first 256 of them, in order */
    /* transfer-page packets whose completion is withheld (tests) */
    bool hold_completions;
    uint64_t held_tids[4096];
    int held_chan[4096];
    int nheld;
    uint64_t host_bad;            /* malformed host packets (a vmbusd bug) */
};

/* Open the NIC channel (first offer of the netvsp class) with rings of
 * ring_pages each.  NULL on failure. */
struct sim_netvsc *snv_open(struct sim_vm *vm, uint32_t ring_pages);
void snv_free(struct sim_netvsc *nv); /* closes the channel if open */
/* NVSP INIT {v, v}: 1 accepted, 0 refused, -errno. */
int snv_nvsp_init(struct sim_netvsc *nv, uint32_t version);
/* NDIS config + version, receive buffer (recv_pages), send buffer
 * (send_pages): 0, or -errno / -EPROTO with the reason printed. */
int snv_buffers(struct sim_netvsc *nv, uint32_t recv_pages, uint32_t send_pages);
/* RNDIS INITIALIZE and the OIDs Linux asks at probe: 0 or -1 (printed).
 * The RSS capabilities are recorded (rss_queues), not acted on. */
int snv_rndis_up(struct sim_netvsc *nv);
/* vRSS as rndis_set_subchannel does it for a guest of `cpus` vCPUs:
 * channels = min(cpus, RSS queues, 64); if 2 or more, SUBCHANNEL
 * {allocate, channels - 1}, the allocated count checked, each offered
 * subchannel opened (chans[1..]), then RSS parameters set twice (disable,
 * enable: indirection table i % channels, a 40-byte key).  Returns the
 * number of channels (1: no vRSS), or -errno / -EPROTO (printed). */
int snv_vrss(struct sim_netvsc *nv, uint32_t cpus);
/* SUBCHANNEL request for n subchannels: NVSP status and *allocated, or
 * -errno (no subchannel opened). */
int snv_subchannel_request(struct sim_netvsc *nv, uint32_t n, uint32_t *allocated);
/* Open the offered subchannels 1..n of the NIC (waits for the offers): 0
 * or -errno. */
int snv_open_subchannels(struct sim_netvsc *nv, uint32_t n);
/* RSS parameters as Linux builds them (flags, table of entries u32 queue
 * numbers i % channels, 40-byte key), with overrides for bad input:
 * key_size (40 normally), table_bytes (4 * entries normally).  The SET's
 * RNDIS status, or -errno. */
int64_t snv_set_rss(struct sim_netvsc *nv, uint16_t flags, uint32_t entries,
                    uint32_t channels, uint16_t key_size, uint32_t table_bytes);
/* Whole bring-up: INIT(version), buffers (16 MiB would be Linux's default;
 * the tests use 2 MiB and 1 MiB), RNDIS, packet filter 0x0d. */
int snv_bringup(struct sim_netvsc *nv, uint32_t version);
/* One RNDIS control request (GPA-direct, channel type 1): waits for the
 * NVSP completion and the RNDIS reply (copied to nv->ctl).  0 / -errno. */
int snv_rndis_request(struct sim_netvsc *nv, const void *msg, uint32_t len);
/* QUERY oid with in[0..inlen) as info; reply data into out (cap), *outlen;
 * returns the RNDIS status or -errno. */
int64_t snv_query(struct sim_netvsc *nv, uint32_t oid, const void *in, uint32_t inlen,
                  void *out, uint32_t cap, uint32_t *outlen);
int64_t snv_set(struct sim_netvsc *nv, uint32_t oid, const void *in, uint32_t inlen);
/* Transmit one frame: through send section `section` (or, section < 0, as
 * a GPA-direct range).  Waits for the completion: its NVSP status, or
 * -errno. */
int snv_send_frame(struct sim_netvsc *nv, const void *frame, uint32_t len, int section);
/* hv_netvsc's partial copy: frame a as a whole PACKET and frame b's RNDIS
 * header in send section `section`, b's bytes as GPA-direct ranges of the
 * same request.  Waits: the NVSP status, or -errno. */
int snv_send_partial(struct sim_netvsc *nv, const void *a, uint32_t alen, const void *b,
                     uint32_t blen, uint32_t section);
/* snv_send_frame_async with per-packet info ppi[0..ppi_len) (records as
 * hv_netvsc builds them) before the frame. */
int snv_send_frame_ppi(struct sim_netvsc *nv, const void *frame, uint32_t len, int section,
                       const void *ppi, uint32_t ppi_len, uint64_t *tid);
/* Where snv_send_frame_ppi puts a GPA-direct frame (section -1) of len
 * bytes with ppi_len bytes of per-packet info, NULL if it cannot send
 * one: a frame built there is not copied again by each send (hv_netvsc
 * hands a large frame's pages over as they are; the benchmarks count the
 * guest's CPU time). */
uint8_t *snv_gpa_frame(struct sim_netvsc *nv, uint32_t len, uint32_t ppi_len);
/* The same without waiting: *tid is the request's transaction id; its
 * completion counts in tx_done when snv_poll takes it.  0 / -errno. */
int snv_send_frame_async(struct sim_netvsc *nv, const void *frame, uint32_t len, int section,
                         uint64_t *tid);
/* Send an NVSP message (inband, completion requested) and wait for its
 * completion (nv->comp): status word, or -errno (-ETIMEDOUT). */
int snv_nvsp_request(struct sim_netvsc *nv, const void *msg, uint32_t len);
/* Service the channel for up to timeout_ms (or until a frame is queued
 * when want_frame): completes transfer-page packets unless held. */
void snv_poll(struct sim_netvsc *nv, int timeout_ms, bool want_frame);
/* Take the oldest received frame into buf: its length, or -1 if none came
 * within timeout_ms. */
int snv_recv_frame(struct sim_netvsc *nv, void *buf, uint32_t cap, int timeout_ms);
/* Send the completions withheld while hold_completions was set. */
void snv_release_held(struct sim_netvsc *nv);
/* Raw: send a packet on the NIC channel (bad-input tests). */
int snv_send_raw(struct sim_netvsc *nv, uint16_t type, uint16_t flags, uint64_t tid,
                 const void *hdr, uint32_t hdr_len, const void *payload, uint32_t len);
/* A TCP segment of `payload` bytes to dst as hv_netvsc hands an LSO frame
 * over (192.0.2.1 -> .2 or 2001:db8::1 -> ::2, ports 80 -> 99): IPv4
 * total length and header checksum 0, IPv6 payload length 0, the TCP
 * checksum the pseudo-header sum without the length.  Returns its length
 * (54 or 74 + payload bytes at f). */
uint32_t snv_lso_frame(uint8_t *f, bool v6, uint32_t payload, const uint8_t dst[6]);
/* The same segment as the host's stack hands a GSO frame to a TAP, at
 * b + 10 after its virtio-net header (TCPV4 / TCPV6, MSS 1448): IP length
 * fields of the whole frame, the IPv4 header checksum, and the TCP
 * checksum partial (NEEDS_CSUM: the pseudo-header sum with the length), or
 * with data_valid a DATA_VALID header and a TCP checksum field that does
 * not match (the host checked the segments it joined).  Returns 10 + the
 * frame's length. */
uint32_t snv_gso_frame(uint8_t *b, bool v6, uint32_t payload, const uint8_t dst[6],
                       bool data_valid);
/* A received TCP frame f[0..len) from snv_lso_frame / snv_gso_frame is one
 * valid segment: its IP length fields say len, the IPv4 header checksum
 * and the TCP checksum are right. */
bool snv_tcp_frame_ok(const uint8_t *f, uint32_t len);
/* One's-complement sum of big-endian 16-bit words added to s, and its fold. */
uint32_t snv_csum_add(const uint8_t *p, size_t n, uint32_t s);
uint16_t snv_csum_fold(uint32_t s);
/* 192.0.2.1/24 on IFNAME and a permanent neighbour 192.0.2.2 at mac (the
 * guest: no ARP needed): 0, or -1 with errno. */
int snv_ipv4_setup(const char *ifname, const uint8_t mac[6]);
/* IFNAME's own MAC address: 0, or -1 with errno. */
int snv_if_mac(const char *ifname, uint8_t mac[6]);
/* ip link set IFNAME up: 0, or -1 with errno. */
int snv_link_up(const char *ifname);
/* The class GUID of the synthetic NIC. */
const struct hv_guid *snv_class(void);

#endif
