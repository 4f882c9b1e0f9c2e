/* SPDX-License-Identifier: MIT */
/*
 * A storvsc-like simulated guest driver (what Linux's hv_storvsc does on
 * the wire) over the guest simulator: the init sequence, subchannels,
 * SRBs with their data in GPA-direct packets, completions matched by
 * transaction id, unsolicited ENUMERATE_BUS counted.  Also the building
 * blocks bad-input tests need (raw packets of any size and type).
 */
#ifndef VMBUSD_TESTS_SIM_STORVSC_H
#define VMBUSD_TESTS_SIM_STORVSC_H

#include <stdbool.h>
#include <stdint.h>

#include "simvm.h"
#include "vsp/storvsp/vstor.h"

#define SIM_STOR_MAX_CHANNELS 17
#define SIM_STOR_PENDING 1024
#define SIM_STOR_RING_PAGES 33 /* 128 KiB of data each way, like Linux */

struct sim_stor_comp {
    bool used;
    uint64_t trans_id;
    uint32_t len;
    struct vstor_packet pkt;
};

struct sim_stor {
    struct sim_vm *vm;
    uint32_t relid;                /* primary */
    struct sim_chan *ch[SIM_STOR_MAX_CHANNELS]; /* [0] primary, then subchannels */
    int nch;
    uint16_t version;              /* accepted, 0 before */
    uint32_t pkt_size;             /* what this guest sends: 48 or 64 */
    struct vstor_properties props;
    uint64_t next_trans;
    unsigned enumerate_bus;        /* unsolicited ENUMERATE_BUS seen */
    unsigned bad_packets;          /* host packets Linux would drop */
    uint32_t last_len;             /* payload length of the last completion taken */
    struct sim_stor_comp pending[SIM_STOR_PENDING]; /* completions not yet asked for */
};

/* Open the n-th storvsp offer (a controller) of vm: NULL on failure. */
struct sim_stor *sim_stor_open(struct sim_vm *vm, int n);
/* The same with rings of send_pages / recv_pages (header page included). */
struct sim_stor *sim_stor_open_rings(struct sim_vm *vm, int n, uint32_t send_pages,
                                     uint32_t recv_pages);
void sim_stor_free(struct sim_stor *s); /* closes the channels it opened */

/* Send one vstor packet of len bytes (DATA_INBAND, completion requested)
 * on channel i; 0 or -errno. */
int sim_stor_send(struct sim_stor *s, int i, const void *pkt, uint32_t len, uint64_t trans_id);
/* Wait for the completion of trans_id on channel i (others are kept for
 * later, ENUMERATE_BUS counted): 1 got it, 0 timeout. */
int sim_stor_wait(struct sim_stor *s, int i, uint64_t trans_id, struct vstor_packet *rep,
                  uint32_t *len, int timeout_ms);
/* The next completion on channel i, whatever its transaction id, as Linux
 * takes them in its channel callback (batched: interrupts masked while
 * there are packets): 1 (*trans_id, *rep filled), 0 when the ring is
 * empty (interrupts unmasked again).  Unsolicited packets are counted and
 * skipped; completions sim_stor_wait kept for later are not looked at. */
int sim_stor_take_any(struct sim_stor *s, int i, uint64_t *trans_id, struct vstor_packet *rep);
/* Send a packet and wait for its completion: 0 (*rep filled), or -errno. */
int sim_stor_call(struct sim_stor *s, int i, const struct vstor_packet *req, uint32_t len,
                  struct vstor_packet *rep, uint32_t *replen);

/* The init sequence like Linux: BEGIN_INITIALIZATION, QUERY_PROTOCOL_VERSION
 * for each of versions[0..n) until one is accepted, QUERY_PROPERTIES,
 * END_INITIALIZATION; init packets have init_size bytes (48: Linux < 6.0,
 * 64: 6.0+), later ones the accepted version's size.  0, or -1 with the
 * step that failed printed. */
int sim_stor_init(struct sim_stor *s, const uint16_t *versions, int n, uint32_t init_size);
/* CREATE_SUB_CHANNELS n, then open every subchannel offered: 0 / -1. */
int sim_stor_subchannels(struct sim_stor *s, uint16_t n);

/* The EXECUTE_SRB packet this guest sends (its SRB and sense sizes) for
 * cdb, len bytes in direction data_in. */
struct vstor_packet sim_stor_srb_packet(const struct sim_stor *s, uint8_t lun, const uint8_t *cdb,
                                        uint8_t cdb_len, uint8_t data_in, uint32_t len);
/* One SRB, data in guest pages at memfd offset buf_off (+ page offset
 * buf_pgoff) of len bytes (0: DATA_INBAND without ranges).  data_in:
 * VSTOR_DATA_IN / OUT / NONE.  Returns the trans id used (sent), or 0. */
uint64_t sim_stor_srb_send(struct sim_stor *s, int i, uint8_t lun, const uint8_t *cdb,
                           uint8_t cdb_len, uint8_t data_in, uint64_t buf_off, uint32_t buf_pgoff,
                           uint32_t len);
/* Send and wait: 0 with *srb (the completion's SRB) and *status (the
 * packet's NTSTATUS), or -1. */
int sim_stor_srb(struct sim_stor *s, int i, uint8_t lun, const uint8_t *cdb, uint8_t cdb_len,
                 uint8_t data_in, uint64_t buf_off, uint32_t len, struct vstor_srb *srb,
                 uint32_t *status);
/* The READ(10)/WRITE(10) CDB of nblocks 512-byte blocks at lba. */
void sim_stor_rw10_cdb(uint8_t cdb[10], bool write, uint32_t lba, uint16_t nblocks);
/* READ(10)/WRITE(10) through buf_off, sent: the trans id, or 0. */
uint64_t sim_stor_rw_send(struct sim_stor *s, int i, uint8_t lun, bool write, uint32_t lba,
                          uint16_t nblocks, uint64_t buf_off);
/* READ(10)/WRITE(10) of nblocks 512-byte blocks at lba through buf_off. */
int sim_stor_rw(struct sim_stor *s, int i, uint8_t lun, bool write, uint32_t lba,
                uint16_t nblocks, uint64_t buf_off, struct vstor_srb *srb);

/* A GPA-direct packet with one range {len, pgoff, pfns[0..npfn)} and the
 * vstor payload: 0 / -errno. */
int sim_stor_send_gpa(struct sim_stor *s, int i, uint64_t trans_id, uint32_t range_len,
                      uint32_t pgoff, const uint64_t *pfns, uint32_t npfn, const void *pkt,
                      uint32_t len);

#endif
