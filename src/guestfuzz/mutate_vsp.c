/* SPDX-License-Identifier: MIT */
/*
 * Structure-aware mutators of the data-path VSPs' packets, over the layouts
 * those VSPs send: storvsp's VSTOR completions (src/vsp/storvsp/vstor.h,
 * read by hv_storvsc) and netvsp's NVSP messages and transfer-page packets
 * (src/vsp/netvsp/protocol.h, read by hv_netvsc).  Each edit sets one or
 * two of the fields the guest driver has to validate (the list of checks
 * in ../shared/reference/linux-guest-contract.md, "what the drivers
 * validate") to a value just inside, at or past what the driver can take.
 *
 * Every patch lies inside the edit's new length; only the NVSP
 * send-indirection table grows a packet (by the table the guest then
 * reads), and a length edit keeps len8 consistent so the guest believes
 * it.
 */
#include <stddef.h>
#include <string.h>

#include "common/guid.h"
#include "guestfuzz/mutate.h"
#include "guestfuzz/mutate_priv.h"
#include "vmbusd/hv_guids.h"
#include "vsp/netvsp/protocol.h"
#include "vsp/storvsp/vstor.h"

#define DESC_SIZE sizeof(struct vmpacket_descriptor)

static bool class_is(const struct hv_guid *cls, const char *s)
{
    struct hv_guid g;
    return cls && guid_parse(s, &g) == 0 && guid_equal(&g, cls);
}

bool gf_class_is_storvsc(const struct hv_guid *cls) { return class_is(cls, HV_CLASS_SCSI); }
bool gf_class_is_netvsc(const struct hv_guid *cls) { return class_is(cls, HV_CLASS_NETVSC); }

/* Where the descriptor says the payload starts, if that lies inside the
 * packet; else right after the descriptor. */
static uint32_t payload_at(const uint8_t *b, size_t len)
{
    uint32_t off = gf_load_le(b + offsetof(struct vmpacket_descriptor, offset8), 2) * 8u;
    return off >= DESC_SIZE && off < len ? off : (uint32_t)DESC_SIZE;
}

/* The packet cut to new_len bytes (never longer than it was), with len8
 * saying so. */
static void cut_to(struct gf_mutation *m, uint32_t new_len)
{
    m->new_len = new_len;
    m->mutator = GF_M_LENGTH;
    gf_patch_le(m, offsetof(struct vmpacket_descriptor, len8), (new_len + 7) / 8, 2);
}

static uint32_t pick(struct gf_rng *rng, const uint32_t *v, size_t n)
{
    return v[gf_rng_below(rng, n)];
}
#define PICK(rng, arr) pick(rng, arr, ARRAY_LEN(arr))

/* ------------------------------------------------------------------ */
/* VSTOR (hv_storvsc)                                                  */

#define VS(at, f) ((at) + (uint32_t)offsetof(struct vstor_packet, f))
#define SRB(at, f) (VS(at, u.srb) + (uint32_t)offsetof(struct vstor_srb, f))

void gf_mut_vstor(struct gf_rng *rng, const void *buf, size_t len, struct gf_mutation *m)
{
    const uint8_t *b = buf;
    gf_begin_patch(m, len, GF_M_VSTOR);
    uint32_t at = len >= DESC_SIZE ? payload_at(b, len) : 0;
    if (len < DESC_SIZE || VS(at, u) > len) {
        gf_mut_flip(rng, buf, len, m);
        return;
    }
    uint32_t body = (uint32_t)len - at;
    bool srb = body >= VS(0, u) + VSTOR_SRB_SIZE_PRE_WIN8;
    bool props = body >= VS(0, u) + sizeof(struct vstor_properties);
    switch (gf_rng_below(rng, srb ? 9 : props ? 4 : 3)) {
    case 0: {
        static const uint32_t st[] = {
            VSTOR_STATUS_SUCCESS,           VSTOR_STATUS_DATA_OVERRUN,
            VSTOR_STATUS_DEVICE_BUSY,       VSTOR_STATUS_INVALID_PARAMETER,
            VSTOR_STATUS_INVALID_DEVICE_REQUEST, VSTOR_STATUS_REVISION_MISMATCH,
            VSTOR_STATUS_DEVICE_DOES_NOT_EXIST, VSTOR_STATUS_IO_DEVICE_ERROR,
            1,                              0xffffffff};
        gf_patch_le(m, VS(at, status), PICK(rng, st), 4);
        break;
    }
    case 1: {
        /* A completion turned into what the host may send unasked
         * (REMOVE_DEVICE, ENUMERATE_BUS), or into nothing known. */
        static const uint32_t ops[] = {VSTOR_OP_COMPLETE_IO,        VSTOR_OP_REMOVE_DEVICE,
                                       VSTOR_OP_ENUMERATE_BUS,      VSTOR_OP_FCHBA_DATA,
                                       VSTOR_OP_CREATE_SUB_CHANNELS, 0, 0xffffffff};
        gf_patch_le(m, VS(at, operation), PICK(rng, ops), 4);
        break;
    }
    case 2: {
        /* Shorter than the packet the negotiated protocol promises: no
         * SRB, part of one, the pre-WIN8 size. */
        uint32_t keep[] = {0, 4, 8, VS(0, u) - 1, VS(0, u), VS(0, u) + 8,
                           VSTOR_PACKET_SIZE_PRE_WIN8, body - 1};
        uint32_t k = PICK(rng, keep);
        cut_to(m, at + (k < body ? k : body - 1));
        break;
    }
    case 3: {
        /* A QUERY_PROPERTIES answer: channel count and transfer size. */
        uint32_t p = VS(at, u.props);
        switch (gf_rng_below(rng, 3)) {
        case 0: {
            static const uint32_t cnt[] = {0, 1, 2, 63, 64, 65, 0xffff};
            gf_patch_le(m, p + offsetof(struct vstor_properties, max_channel_cnt),
                        PICK(rng, cnt), 2);
            break;
        }
        case 1: {
            static const uint32_t fl[] = {0, VSTOR_PROP_MULTI_CHANNEL, 0xffffffff};
            gf_patch_le(m, p + offsetof(struct vstor_properties, flags), PICK(rng, fl), 4);
            break;
        }
        default: {
            static const uint32_t mx[] = {0, 1, 511, 512, 4096, 0x7fffffff, 0xffffffff};
            gf_patch_le(m, p + offsetof(struct vstor_properties, max_transfer_bytes),
                        PICK(rng, mx), 4);
            break;
        }
        }
        break;
    }
    case 4: {
        static const uint32_t st[] = {0,
                                      SRB_STATUS_SUCCESS,
                                      SRB_STATUS_ABORTED,
                                      SRB_STATUS_ERROR,
                                      SRB_STATUS_INVALID_REQUEST,
                                      SRB_STATUS_DATA_OVERRUN,
                                      SRB_STATUS_INVALID_LUN,
                                      SRB_STATUS_ERROR | SRB_STATUS_AUTOSENSE_VALID,
                                      SRB_STATUS_SUCCESS | SRB_STATUS_AUTOSENSE_VALID,
                                      0x3f,
                                      0xff};
        gf_patch_le(m, SRB(at, srb_status), PICK(rng, st), 1);
        break;
    }
    case 5: {
        /* GOOD, CHECK CONDITION, BUSY, RESERVATION CONFLICT, TASK SET
         * FULL, TASK ABORTED, and bytes no SCSI target sends. */
        static const uint32_t st[] = {0x00, 0x02, 0x08, 0x18, 0x28, 0x40, 0x01, 0xff};
        gf_patch_le(m, SRB(at, scsi_status), PICK(rng, st), 1);
        break;
    }
    case 6: {
        /* More (or much less) transferred than the request asked for:
         * the guest's residual count must not go negative. */
        uint32_t cur = gf_load_le(b + SRB(at, data_transfer_length), 4);
        uint32_t v[] = {0, cur - 1, cur + 1, cur + 512, cur * 2, 0x7fffffff, 0x80000000,
                        0xffffffff};
        uint32_t x = PICK(rng, v);
        gf_patch_le(m, SRB(at, data_transfer_length), x == cur ? cur ^ 0x80000000u : x, 4);
        break;
    }
    default: {
        /* Sense data announced (autosense valid) with a length around
         * the sense area's size, its first bytes a plausible sense
         * header whose additional length claims more than is there. */
        static const uint32_t sl[] = {0,
                                      1,
                                      VSTOR_SENSE_SIZE_PRE_WIN8,
                                      VSTOR_SENSE_SIZE,
                                      VSTOR_SENSE_SIZE + 1,
                                      VSTOR_CDB_AREA + 12,
                                      0x80,
                                      0xff};
        gf_patch_le(m, SRB(at, sense_info_length), PICK(rng, sl), 1);
        if (gf_rng_below(rng, 2)) {
            gf_patch_le(m, SRB(at, srb_status), SRB_STATUS_ERROR | SRB_STATUS_AUTOSENSE_VALID, 1);
            gf_patch_le(m, SRB(at, scsi_status), 0x02, 1);
            static const uint32_t fmt[] = {0x70, 0x72, 0x7f, 0x00};
            uint8_t sense[8] = {(uint8_t)PICK(rng, fmt), 0, (uint8_t)gf_rng_below(rng, 16), 0,
                                0, 0, 0, (uint8_t)(gf_rng_below(rng, 2) ? 0xff : 10)};
            gf_mut_add_patch(m, SRB(at, cdb_sense), sense, sizeof(sense));
        }
        break;
    }
    }
}

/* ------------------------------------------------------------------ */
/* NVSP (hv_netvsc)                                                    */

#define NV(at, f) ((at) + (uint32_t)offsetof(struct nvsp_msg, f))
/* A field of the transfer-page header (it follows the descriptor), from
 * the packet's start. */
#define XF(f) ((uint32_t)offsetof(struct vmtransfer_page_packet_header, f))
#define SEND_TABLE_ENTRIES 16 /* the guest's send indirection table */

/* Fields of a completion, by its NVSP type. */
static void nvsp_completion(struct gf_rng *rng, const uint8_t *b, uint32_t at, uint32_t type,
                            struct gf_mutation *m)
{
    static const uint32_t st[] = {NVSP_STAT_NONE, NVSP_STAT_SUCCESS, NVSP_STAT_FAIL, 3,
                                  0xffffffff};
    switch (type) {
    case NVSP_MSG_INIT_COMPLETE:
        if (gf_rng_below(rng, 2)) {
            gf_patch_le(m, NV(at, u.init_complete.status), PICK(rng, st), 4);
        } else {
            static const uint32_t ver[] = {0,
                                           NVSP_VERSION_1,
                                           NVSP_VERSION_5,
                                           NVSP_VERSION_61,
                                           NVSP_VERSION_61 + 1,
                                           0xffffffff};
            uint32_t f = gf_rng_below(rng, 2) ? NV(at, u.init_complete.version)
                                              : NV(at, u.init_complete.max_mdl_chain_len);
            gf_patch_le(m, f, PICK(rng, ver), 4);
        }
        return;
    case NVSP_MSG1_SEND_RECV_BUF_COMPLETE: {
        /* The section describing the receive buffer: its size, count
         * and ends must fit the buffer the guest gave. */
        uint32_t s = NV(at, u.recv_buf_complete.section);
        uint32_t cur_sub = gf_load_le(b + s + offsetof(struct nvsp_recv_section, sub_alloc_size),
                                      4);
        switch (gf_rng_below(rng, 6)) {
        case 0: gf_patch_le(m, NV(at, u.recv_buf_complete.status), PICK(rng, st), 4); break;
        case 1: {
            static const uint32_t n[] = {0, 2, 0x100, 0xffffffff};
            gf_patch_le(m, NV(at, u.recv_buf_complete.num_sections), PICK(rng, n), 4);
            break;
        }
        case 2: {
            uint32_t v[] = {0, 1, 67, 68, cur_sub - 1, cur_sub + 1, 0x10000, 0xffffffff};
            gf_patch_le(m, s + offsetof(struct nvsp_recv_section, sub_alloc_size), PICK(rng, v),
                        4);
            break;
        }
        case 3: {
            static const uint32_t v[] = {0, 1, 0x10000, 0x80000000, 0xffffffff};
            gf_patch_le(m, s + offsetof(struct nvsp_recv_section, num_sub_allocs), PICK(rng, v),
                        4);
            break;
        }
        case 4: {
            static const uint32_t v[] = {1, 8, 0x1000, 0x7fffffff, 0xfffffff8};
            gf_patch_le(m, s + offsetof(struct nvsp_recv_section, offset), PICK(rng, v), 4);
            break;
        }
        default: {
            static const uint32_t v[] = {0, 1, 0x1000, 0x7fffffff, 0xffffffff};
            gf_patch_le(m, s + offsetof(struct nvsp_recv_section, end_offset), PICK(rng, v), 4);
            break;
        }
        }
        return;
    }
    case NVSP_MSG1_SEND_SEND_BUF_COMPLETE:
        if (gf_rng_below(rng, 2)) {
            gf_patch_le(m, NV(at, u.send_buf_complete.status), PICK(rng, st), 4);
        } else {
            static const uint32_t v[] = {0, 1, 7, 0x7ff, 0x800, 0x10000, 0x80000000, 0xffffffff};
            gf_patch_le(m, NV(at, u.send_buf_complete.section_size), PICK(rng, v), 4);
        }
        return;
    case NVSP_MSG5_SUBCHANNEL: {
        /* Subchannels granted: none, more than the guest asked for,
         * more than it can have. */
        static const uint32_t n[] = {0, 1, 7, 8, 63, 64, 65, 0xffffffff};
        gf_patch_le(m, NV(at, u.subchannel.op), NVSP_STAT_SUCCESS, 4);
        gf_patch_le(m, NV(at, u.subchannel.num_subchannels), PICK(rng, n), 4);
        return;
    }
    default:
        gf_patch_le(m, NV(at, u.rndis_pkt_complete.status), PICK(rng, st), 4);
        return;
    }
}

/* The host's send indirection table (NVSP 5): a count the guest must
 * check (16), an offset from the message's start that may point past it,
 * and queue numbers past the channels the guest has.  The packet becomes
 * in-band data (the guest looks for the table only there) and grows by
 * the table when the table lies past its end. */
static void nvsp_send_table(struct gf_rng *rng, uint32_t at, size_t len, size_t cap,
                            struct gf_mutation *m)
{
    const uint32_t table = SEND_TABLE_ENTRIES * 4;
    const uint32_t after_hdr = (uint32_t)sizeof(uint32_t) * 3; /* type, count, offset */
    static const uint32_t cnt[] = {0, 1, SEND_TABLE_ENTRIES - 1, SEND_TABLE_ENTRIES,
                                   SEND_TABLE_ENTRIES + 1, 0xffffffff};
    uint32_t offs[] = {0, 4, after_hdr, NVSP_MSG_SIZE_V6, (uint32_t)len - at,
                       (uint32_t)len - at - 4, 0x7ffffff0, 0xfffffff0};
    uint32_t off = PICK(rng, offs);
    if (gf_rng_below(rng, 4))
        gf_patch_le(m, offsetof(struct vmpacket_descriptor, type), VM_PKT_DATA_INBAND, 2);
    gf_patch_le(m, NV(at, type), NVSP_MSG5_SEND_INDIRECTION_TABLE, 4);
    gf_patch_le(m, NV(at, u) + 0, PICK(rng, cnt), 4);
    gf_patch_le(m, NV(at, u) + 4, off, 4);
    /* The entries where the offset points when that is near, else right
     * after the header. */
    uint32_t tab_at = off >= after_hdr && off <= NVSP_MSG_SIZE_V6 ? at + off : at + after_hdr;
    uint32_t need = tab_at + table;
    if (need > len && need <= cap && need <= UINT16_MAX * 8u) {
        m->new_len = need;
        gf_patch_le(m, offsetof(struct vmpacket_descriptor, len8), (need + 7) / 8, 2);
    }
    if (tab_at + table <= m->new_len) {
        uint8_t q[SEND_TABLE_ENTRIES * 4];
        static const uint32_t qv[] = {0, 1, 7, 8, 63, 64, 0x10000, 0xffffffff};
        for (unsigned i = 0; i < SEND_TABLE_ENTRIES; i++) {
            uint32_t v = PICK(rng, qv);
            memcpy(q + 4 * i, &v, 4);
        }
        gf_mut_add_patch(m, tab_at, q, sizeof(q));
    }
}

/* The transfer-page header of a receive packet: its page set, its range
 * count and the ranges, each of which must lie inside the receive buffer
 * and its section. */
static void nvsp_xfer(struct gf_rng *rng, const uint8_t *b, uint32_t at, struct gf_mutation *m)
{
    uint32_t cnt = gf_load_le(b + XF(range_cnt), 4);
    uint32_t ranges = (at - XF(ranges)) /
                      (uint32_t)sizeof(struct vmtransfer_page_range);
    if (cnt < ranges)
        ranges = cnt;
    unsigned c = (unsigned)gf_rng_below(rng, ranges ? 4 : 2);
    if (c == 0) {
        uint32_t v[] = {0, cnt + 1, cnt * 2 + 1, 0x10000, 0x7fffffff, 0xffffffff};
        uint32_t x = PICK(rng, v);
        gf_patch_le(m, XF(range_cnt), x == cnt ? 0 : x, 4);
    } else if (c == 1) {
        static const uint32_t v[] = {0, NVSP_RECV_BUF_ID + 1, NVSP_RECV_BUF_ID - 1, 0xffff};
        gf_patch_le(m, XF(xfer_pageset_id), PICK(rng, v), 2);
    } else {
        uint32_t r = XF(ranges) +
                     (uint32_t)gf_rng_below(rng, ranges) *
                         (uint32_t)sizeof(struct vmtransfer_page_range);
        uint32_t count = gf_load_le(b + r + offsetof(struct vmtransfer_page_range, byte_count), 4);
        uint32_t off = gf_load_le(b + r + offsetof(struct vmtransfer_page_range, byte_offset), 4);
        if (c == 2) {
            uint32_t v[] = {0, 1, 7, count + 1, count + 4096, 0x10000, 0x80000000, 0xffffffff};
            gf_patch_le(m, r + offsetof(struct vmtransfer_page_range, byte_count), PICK(rng, v),
                        4);
        } else {
            uint32_t v[] = {off + 1, off + count, off - 1, 0x1000000, 0x7fffffff, 0xfffff000,
                            0xffffffff};
            gf_patch_le(m, r + offsetof(struct vmtransfer_page_range, byte_offset),
                        PICK(rng, v), 4);
        }
    }
}

void gf_mut_nvsp(struct gf_rng *rng, const void *buf, size_t len, size_t cap,
                 struct gf_mutation *m)
{
    const uint8_t *b = buf;
    gf_begin_patch(m, len, GF_M_NVSP);
    uint32_t at = len >= DESC_SIZE ? payload_at(b, len) : 0;
    if (len < DESC_SIZE || NV(at, u) > len) {
        gf_mut_flip(rng, buf, len, m);
        return;
    }
    uint32_t body = (uint32_t)len - at;
    uint32_t type = gf_load_le(b + NV(at, type), 4);
    uint16_t dtype = (uint16_t)gf_load_le(b, 2);
    bool xfer = dtype == VM_PKT_DATA_USING_XFER_PAGES &&
                at >= XF(ranges);
    bool full = body >= NVSP_MSG_SIZE_V1;
    switch (gf_rng_below(rng, xfer ? 6 : 4)) {
    case 0: {
        static const uint32_t types[] = {NVSP_MSG_INIT_COMPLETE,
                                         NVSP_MSG1_SEND_RECV_BUF_COMPLETE,
                                         NVSP_MSG1_SEND_SEND_BUF_COMPLETE,
                                         NVSP_MSG1_SEND_RNDIS_PKT,
                                         NVSP_MSG1_SEND_RNDIS_PKT_COMPLETE,
                                         NVSP_MSG5_SUBCHANNEL,
                                         NVSP_MSG5_SEND_INDIRECTION_TABLE,
                                         0,
                                         0xffffffff};
        uint32_t t = PICK(rng, types);
        gf_patch_le(m, NV(at, type), t == type ? type + 1 : t, 4);
        break;
    }
    case 1:
        if (full)
            nvsp_completion(rng, b, at, type, m);
        else
            gf_patch_le(m, NV(at, type), gf_pick_edge(rng, type, 4), 4);
        break;
    case 2:
        if (body >= 12)
            nvsp_send_table(rng, at, len, cap, m);
        else
            gf_patch_le(m, NV(at, type), NVSP_MSG5_SEND_INDIRECTION_TABLE, 4);
        break;
    case 3: {
        /* Shorter than every completion the guest accepts (28 bytes), or
         * than the type alone. */
        uint32_t keep[] = {0, 2, 4, 8, 12, NVSP_MSG_SIZE_V1 - 4, NVSP_MSG_SIZE_V1 - 1};
        uint32_t k = PICK(rng, keep);
        cut_to(m, at + (k < body ? k : body - 1));
        break;
    }
    default:
        nvsp_xfer(rng, b, at, m);
        break;
    }
}
