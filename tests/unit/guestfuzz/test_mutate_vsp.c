/* SPDX-License-Identifier: MIT */
/*
 * src/guestfuzz/mutate_vsp.c: the storvsp and netvsp mutators edit the
 * packets those VSPs send inside the bounds they promise (patches inside
 * the result, a cut packet still starting with its payload's first byte
 * and saying its new length in len8, growth only by a send indirection
 * table and never past cap), and reach each field they name.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common/guid.h"
#include "guestfuzz/mutate.h"
#include "vmbusd/hv_guids.h"
#include "vsp/netvsp/protocol.h"
#include "vsp/storvsp/vstor.h"

#define SEEDS 4000
#define DESC 16u

static void assert_patches_inside(const struct gf_mutation *m)
{
    unsigned used = 0;
    assert_true(m->npatch <= GF_MAX_PATCHES);
    for (unsigned i = 0; i < m->npatch; i++) {
        assert_true(m->patch[i].len > 0);
        assert_true((uint32_t)m->patch[i].off + m->patch[i].len <= m->new_len);
        used += m->patch[i].len;
    }
    assert_true(used <= GF_MAX_PATCH_BYTES);
}

static size_t put_desc(uint8_t *p, uint16_t type, uint16_t offset8, size_t len)
{
    struct vmpacket_descriptor d = {.type = type, .offset8 = offset8,
                                    .len8 = (uint16_t)((len + 7) / 8), .trans_id = 42};
    memcpy(p, &d, sizeof(d));
    return len;
}

/* A READ's completion as storvsp sends it (WIN8 and later, or the shorter
 * pre-WIN8 packet). */
static size_t vstor_completion(uint8_t *p, size_t vstor_len)
{
    memset(p, 0, DESC + VSTOR_PACKET_SIZE);
    struct vstor_packet v = {.operation = VSTOR_OP_COMPLETE_IO, .status = 0};
    v.u.srb.length = VSTOR_SRB_SIZE;
    v.u.srb.srb_status = SRB_STATUS_SUCCESS;
    v.u.srb.cdb_length = 10;
    v.u.srb.sense_info_length = VSTOR_SENSE_SIZE;
    v.u.srb.data_in = VSTOR_DATA_IN;
    v.u.srb.data_transfer_length = 4096;
    memcpy(p + DESC, &v, vstor_len);
    return put_desc(p, VM_PKT_COMP, DESC / 8, DESC + vstor_len);
}

static void check_edit(const struct gf_mutation *m, const uint8_t *in, size_t len, size_t cap,
                       uint8_t *out, uint32_t payload_at)
{
    assert_int_equal(m->op, GF_OP_PATCH);
    assert_true(m->new_len <= cap);
    assert_patches_inside(m);
    assert_int_equal(gf_edit_apply(m, in, len, out, cap), m->new_len);
    if (m->new_len != len) {
        /* The guest believes the new length... */
        struct vmpacket_descriptor d;
        memcpy(&d, out, sizeof(d));
        assert_int_equal(d.len8, (m->new_len + 7) / 8);
        /* ...which still holds the payload's start when cut. */
        if (m->new_len < len)
            assert_true(m->new_len >= payload_at && m->mutator == GF_M_LENGTH);
    }
}

static void test_vstor_mutator(void **state)
{
    (void)state;
    uint8_t pkt[DESC + VSTOR_PACKET_SIZE], out[DESC + VSTOR_PACKET_SIZE];
    bool status = false, op = false, srb = false, scsi = false, longer = false, shorter = false,
         sense = false, autosense = false, props = false, cut = false;
    for (uint64_t seed = 0; seed < SEEDS; seed++) {
        size_t sizes[] = {VSTOR_PACKET_SIZE, VSTOR_PACKET_SIZE_PRE_WIN8, 12};
        for (size_t s = 0; s < 3; s++) {
            size_t len = vstor_completion(pkt, sizes[s]);
            struct gf_rng r;
            gf_rng_seed(&r, seed);
            struct gf_mutation m = {0};
            gf_mut_vstor(&r, pkt, len, &m);
            if (s == 0)
                assert_true(m.mutator == GF_M_VSTOR || m.mutator == GF_M_LENGTH);
            /* Never longer than the completion. */
            assert_true(m.new_len <= len);
            check_edit(&m, pkt, len, sizeof(out), out, DESC);
            cut |= m.new_len < len;
            if (m.new_len < DESC + VSTOR_PACKET_SIZE_PRE_WIN8 || s != 0)
                continue;
            struct vstor_packet v;
            memcpy(&v, out + DESC, sizeof(v));
            status |= v.status != 0;
            op |= v.operation == VSTOR_OP_REMOVE_DEVICE || v.operation == VSTOR_OP_ENUMERATE_BUS;
            srb |= v.u.srb.srb_status == SRB_STATUS_DATA_OVERRUN;
            scsi |= v.u.srb.scsi_status == 0x02;
            longer |= v.u.srb.data_transfer_length > 4096;
            shorter |= v.u.srb.data_transfer_length < 4096;
            sense |= v.u.srb.sense_info_length > VSTOR_SENSE_SIZE;
            autosense |= (v.u.srb.srb_status & SRB_STATUS_AUTOSENSE_VALID) &&
                         v.u.srb.cdb_sense[0] == 0x70;
            props |= v.u.props.max_channel_cnt == 65; /* srb.port/path_id as a QUERY answer */
        }
    }
    assert_true(status && op && srb && scsi && longer && shorter && sense && autosense && props &&
                cut);
    struct hv_guid g;
    guid_parse(HV_CLASS_SCSI, &g);
    assert_true(gf_class_is_storvsc(&g));
    assert_false(gf_class_is_netvsc(&g));
}

/* netvsp's packets: a completion of type t (28 or 40 bytes), and a
 * transfer-page packet of two ranges carrying an RNDIS packet message. */
static size_t nvsp_completion(uint8_t *p, uint32_t t, size_t msg_len)
{
    memset(p, 0, DESC + NVSP_MSG_MAX);
    struct nvsp_msg m = {.type = t};
    if (t == NVSP_MSG1_SEND_RECV_BUF_COMPLETE) {
        m.u.recv_buf_complete.status = NVSP_STAT_SUCCESS;
        m.u.recv_buf_complete.num_sections = 1;
        m.u.recv_buf_complete.section =
            (struct nvsp_recv_section){.offset = 0, .sub_alloc_size = 1728,
                                       .num_sub_allocs = 9000, .end_offset = 1728 * 9000};
    } else {
        m.u.rndis_pkt_complete.status = NVSP_STAT_SUCCESS;
    }
    memcpy(p + DESC, &m, msg_len);
    return put_desc(p, VM_PKT_COMP, DESC / 8, DESC + msg_len);
}

#define XFER_AT (DESC + 8 + 2 * 8) /* the NVSP message after two ranges */

static size_t nvsp_xfer(uint8_t *p)
{
    memset(p, 0, XFER_AT + NVSP_MSG_MAX);
    struct vmtransfer_page_packet_header h = {.xfer_pageset_id = NVSP_RECV_BUF_ID,
                                              .range_cnt = 2};
    memcpy(p + DESC, (uint8_t *)&h + DESC, sizeof(h) - DESC);
    struct vmtransfer_page_range r[2] = {{.byte_count = 100, .byte_offset = 0},
                                         {.byte_count = 60, .byte_offset = 1728}};
    memcpy(p + sizeof(h), r, sizeof(r));
    struct nvsp_msg m = {.type = NVSP_MSG1_SEND_RNDIS_PKT};
    m.u.rndis_pkt.section_index = NVSP_INVALID_SECTION;
    memcpy(p + XFER_AT, &m, NVSP_MSG_SIZE_V1);
    return put_desc(p, VM_PKT_DATA_USING_XFER_PAGES, XFER_AT / 8, XFER_AT + NVSP_MSG_SIZE_V1);
}

static void test_nvsp_mutator(void **state)
{
    (void)state;
    enum { CAP = 256 };
    uint8_t pkt[CAP], out[CAP];
    bool status = false, table = false, count17 = false, past = false, grown = false,
         cut = false, sub = false, nsub = false, ranges = false, pageset = false, off = false,
         bcount = false;
    for (uint64_t seed = 0; seed < SEEDS; seed++) {
        for (int kind = 0; kind < 4; kind++) {
            size_t len;
            uint32_t at = DESC;
            if (kind == 0)
                len = nvsp_completion(pkt, NVSP_MSG1_SEND_RNDIS_PKT_COMPLETE, NVSP_MSG_SIZE_V6);
            else if (kind == 1)
                len = nvsp_completion(pkt, NVSP_MSG1_SEND_RECV_BUF_COMPLETE, NVSP_MSG_SIZE_V1);
            else if (kind == 2)
                len = nvsp_completion(pkt, NVSP_MSG1_SEND_RNDIS_PKT_COMPLETE, 8);
            else
                len = nvsp_xfer(pkt), at = XFER_AT;
            /* cap as vmbusd-guestfuzz gives it, or just the packet. */
            size_t cap = seed & 1 ? CAP : len;
            struct gf_rng r;
            gf_rng_seed(&r, seed);
            struct gf_mutation m = {0};
            gf_mut_nvsp(&r, pkt, len, cap, &m);
            if (kind != 2)
                assert_true(m.mutator == GF_M_NVSP || m.mutator == GF_M_LENGTH);
            check_edit(&m, pkt, len, cap, out, at);
            cut |= m.new_len < len;
            struct nvsp_msg o;
            memset(&o, 0, sizeof(o));
            size_t have = m.new_len > at ? m.new_len - at : 0;
            memcpy(&o, out + at, have < sizeof(o) ? have : sizeof(o));
            if (m.new_len > len) {
                /* Only a send indirection table grows a packet. */
                assert_int_equal(o.type, NVSP_MSG5_SEND_INDIRECTION_TABLE);
                grown = true;
            }
            if (o.type == NVSP_MSG5_SEND_INDIRECTION_TABLE && have >= 12) {
                uint32_t cnt, toff;
                memcpy(&cnt, out + at + 4, 4);
                memcpy(&toff, out + at + 8, 4);
                table = true;
                count17 |= cnt == 17;
                past |= toff >= have;
            }
            if (kind == 0 && o.type == NVSP_MSG1_SEND_RNDIS_PKT_COMPLETE)
                status |= o.u.rndis_pkt_complete.status != NVSP_STAT_SUCCESS;
            if (kind == 1 && m.new_len == len && o.type == NVSP_MSG1_SEND_RECV_BUF_COMPLETE) {
                sub |= o.u.recv_buf_complete.section.sub_alloc_size == 67;
                nsub |= o.u.recv_buf_complete.section.num_sub_allocs == 0xffffffff;
            }
            if (kind == 3) {
                struct vmtransfer_page_packet_header h;
                struct vmtransfer_page_range rg[2];
                memcpy(&h, out, sizeof(h));
                memcpy(rg, out + sizeof(h), sizeof(rg));
                ranges |= h.range_cnt == 0xffffffff;
                pageset |= h.xfer_pageset_id != NVSP_RECV_BUF_ID;
                off |= rg[1].byte_offset == 0xfffff000 || rg[0].byte_offset == 0xfffff000;
                bcount |= rg[0].byte_count == 0xffffffff || rg[1].byte_count == 0xffffffff;
            }
        }
    }
    assert_true(status && table && count17 && past && grown && cut && sub && nsub && ranges &&
                pageset && off && bcount);
    struct hv_guid g;
    guid_parse(HV_CLASS_NETVSC, &g);
    assert_true(gf_class_is_netvsc(&g));
    assert_false(gf_class_is_storvsc(&g));
}

/* gf_mutate gives a netvsc packet's structure-aware edits to the NVSP
 * mutator (only it writes a send indirection table) and a storvsc one's to
 * the VSTOR mutator (only it turns a completion into ENUMERATE_BUS); other
 * classes never get either. */
static void test_dispatch(void **state)
{
    (void)state;
    struct gf_knobs k;
    gf_knobs_default(&k);
    memset(k.weight, 0, sizeof(k.weight));
    k.weight[GF_F_STRUCT] = 1;
    struct gf_ctx ctx = {.max_pkt = 4096, .ring_size = 65536};
    uint8_t nv[DESC + NVSP_MSG_MAX], vs[DESC + VSTOR_PACKET_SIZE], out[8192];
    size_t nlen = nvsp_completion(nv, NVSP_MSG1_SEND_RNDIS_PKT_COMPLETE, NVSP_MSG_SIZE_V6);
    size_t vlen = vstor_completion(vs, VSTOR_PACKET_SIZE);
    const char *classes[] = {HV_CLASS_NETVSC, HV_CLASS_SCSI, HV_CLASS_ECHO};
    unsigned table[3] = {0}, enumerate[3] = {0};
    for (uint64_t seed = 0; seed < SEEDS; seed++) {
        for (int c = 0; c < 3; c++) {
            struct gf_key key = {.kind = GF_K_PKT, .subtype = VM_PKT_COMP};
            guid_parse(classes[c], &key.class_id);
            struct gf_rng r;
            gf_rng_seed(&r, seed);
            struct gf_mutation m;
            assert_true(gf_mutate(&r, &k, &ctx, &key, nv, nlen, sizeof(out), &m));
            size_t n = gf_edit_apply(&m, nv, nlen, out, sizeof(out));
            uint32_t t = 0;
            if (n >= DESC + 4)
                memcpy(&t, out + DESC, 4);
            table[c] += t == NVSP_MSG5_SEND_INDIRECTION_TABLE;
            gf_rng_seed(&r, seed);
            assert_true(gf_mutate(&r, &k, &ctx, &key, vs, vlen, sizeof(out), &m));
            n = gf_edit_apply(&m, vs, vlen, out, sizeof(out));
            if (n >= DESC + 4)
                memcpy(&t, out + DESC, 4);
            enumerate[c] += n >= DESC + 4 && t == VSTOR_OP_ENUMERATE_BUS;
        }
    }
    assert_true(table[0] > 0 && table[1] == 0 && table[2] == 0);
    assert_true(enumerate[1] > 0 && enumerate[0] == 0 && enumerate[2] == 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vstor_mutator),
        cmocka_unit_test(test_nvsp_mutator),
        cmocka_unit_test(test_dispatch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
