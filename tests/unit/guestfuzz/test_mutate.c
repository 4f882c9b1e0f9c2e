/* SPDX-License-Identifier: MIT */
/*
 * src/guestfuzz/mutate.c: each mutator's output stays inside the bounds it
 * promises (lengths around the layout or limit, patches inside the result,
 * ring values that differ from the real one), edits apply as recorded, and
 * knobs parse.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "common/guid.h"
#include "guestfuzz/mutate.h"
#include "vmbusd/hv_guids.h"
#include "vsp/ic/ic.h"

#define SEEDS 3000

static const uint32_t host_types[] = {
    CHANNELMSG_OFFERCHANNEL,       CHANNELMSG_RESCIND_CHANNELOFFER,
    CHANNELMSG_ALLOFFERS_DELIVERED, CHANNELMSG_OPENCHANNEL_RESULT,
    CHANNELMSG_GPADL_CREATED,      CHANNELMSG_GPADL_TORNDOWN,
    CHANNELMSG_VERSION_RESPONSE,   CHANNELMSG_UNLOAD_RESPONSE,
    CHANNELMSG_TL_CONNECT_RESULT,  CHANNELMSG_MODIFYCHANNEL_RESPONSE,
};

static size_t host_size(uint32_t t)
{
    switch (t) {
    case CHANNELMSG_OFFERCHANNEL: return sizeof(struct vmbus_channel_offer_channel);
    case CHANNELMSG_RESCIND_CHANNELOFFER: return sizeof(struct vmbus_channel_rescind_offer);
    case CHANNELMSG_OPENCHANNEL_RESULT: return sizeof(struct vmbus_channel_open_result);
    case CHANNELMSG_GPADL_CREATED: return sizeof(struct vmbus_channel_gpadl_created);
    case CHANNELMSG_GPADL_TORNDOWN: return sizeof(struct vmbus_channel_gpadl_torndown);
    case CHANNELMSG_VERSION_RESPONSE: return sizeof(struct vmbus_channel_version_response);
    case CHANNELMSG_TL_CONNECT_RESULT: return sizeof(struct vmbus_channel_tl_connect_result);
    case CHANNELMSG_MODIFYCHANNEL_RESPONSE:
        return sizeof(struct vmbus_channel_modifychannel_response);
    default: return 8;
    }
}

/* Every patch of m lies inside [0, m->new_len) and the patch bytes add up. */
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

static void test_msg_mutator_bounds(void **state)
{
    (void)state;
    struct gf_ctx ctx = {.relids = {1, 2, 3, 4}, .nrelids = 4};
    unsigned by_mutator[16] = {0};
    for (size_t t = 0; t < sizeof(host_types) / sizeof(host_types[0]); t++) {
        uint8_t msg[HV_MESSAGE_PAYLOAD_SIZE] = {0};
        size_t len = host_size(host_types[t]);
        memcpy(msg, &host_types[t], 4);
        if (len >= 12)
            msg[8] = 2; /* relid 2 */
        bool saw_under = false, saw_over = false, saw_zero = false, saw_max = false;
        for (uint64_t seed = 0; seed < SEEDS; seed++) {
            struct gf_rng r;
            gf_rng_seed(&r, seed);
            struct gf_mutation m = {0};
            gf_mut_msg(&r, &ctx, host_types[t], msg, len, &m);
            assert_int_equal(m.op, GF_OP_PATCH);
            /* A SynIC message never exceeds 240 bytes, whatever the edit. */
            assert_true(m.new_len <= HV_MESSAGE_PAYLOAD_SIZE);
            by_mutator[m.mutator]++;
            if (m.mutator == GF_M_LENGTH) {
                /* Length edits land on the intended edges: below a header,
                 * the layout size +-1/4/-8, or the SynIC maximum. */
                bool edge = m.new_len < 8 || m.new_len == HV_MESSAGE_PAYLOAD_SIZE ||
                            m.new_len + 1 == len || m.new_len == len + 1 ||
                            m.new_len + 4 == len || m.new_len == len + 4 ||
                            m.new_len + 8 == len;
                assert_true(edge);
                saw_under |= m.new_len + 1 == len;
                saw_over |= m.new_len == len + 1;
                saw_zero |= m.new_len == 0;
                saw_max |= m.new_len == HV_MESSAGE_PAYLOAD_SIZE;
            } else {
                /* Field edits keep the message's length and stay inside it. */
                assert_int_equal(m.new_len, len);
                assert_true(m.npatch >= 1);
                for (unsigned i = 0; i < m.npatch; i++)
                    assert_true((size_t)m.patch[i].off + m.patch[i].len <= len);
            }
            if (m.new_len >= len)
                assert_patches_inside(&m);
        }
        assert_true(saw_under && saw_over && saw_zero && saw_max);
    }
    assert_true(by_mutator[GF_M_FIELD] > 0);
    assert_true(by_mutator[GF_M_RELID] > 0);
    assert_true(by_mutator[GF_M_LENGTH] > 0);
}

/* Relid edits pick another channel's relid or an impossible one. */
static void test_msg_relids(void **state)
{
    (void)state;
    struct gf_ctx ctx = {.relids = {1, 2, 3}, .nrelids = 3};
    struct vmbus_channel_rescind_offer msg = {.header.msgtype = CHANNELMSG_RESCIND_CHANNELOFFER,
                                              .child_relid = 2};
    bool other = false, zero = false, big = false;
    for (uint64_t seed = 0; seed < SEEDS; seed++) {
        struct gf_rng r;
        gf_rng_seed(&r, seed);
        struct gf_mutation m = {0};
        gf_mut_msg(&r, &ctx, CHANNELMSG_RESCIND_CHANNELOFFER, &msg, sizeof(msg), &m);
        if (m.mutator != GF_M_RELID)
            continue;
        struct vmbus_channel_rescind_offer out;
        assert_int_equal(gf_edit_apply(&m, &msg, sizeof(msg), &out, sizeof(out)), sizeof(out));
        assert_int_not_equal(out.child_relid, 2);
        other |= out.child_relid == 1 || out.child_relid == 3;
        zero |= out.child_relid == 0;
        big |= out.child_relid > VMBUS_MAX_RELID;
    }
    assert_true(other && zero && big);
}

static void test_pkt_mutator_bounds(void **state)
{
    (void)state;
    uint8_t pkt[64] = {0};
    struct vmpacket_descriptor d = {.type = VM_PKT_DATA_INBAND, .offset8 = 2, .len8 = 8,
                                    .trans_id = 7};
    memcpy(pkt, &d, sizeof(d));
    const uint32_t limit = 4096;
    struct gf_ctx ctx = {.max_pkt = limit, .ring_size = 65536};
    const size_t cap = 2 * limit + 64;
    bool under = false, over = false, at = false, desc = false;
    for (uint64_t seed = 0; seed < SEEDS; seed++) {
        struct gf_rng r;
        gf_rng_seed(&r, seed);
        struct gf_mutation m = {0};
        gf_mut_pkt(&r, &ctx, pkt, sizeof(pkt), cap, &m);
        assert_int_equal(m.op, GF_OP_PATCH);
        assert_true(m.new_len >= 16 && m.new_len <= cap);
        static uint8_t out[2 * 4096 + 64];
        size_t n = gf_edit_apply(&m, pkt, sizeof(pkt), out, sizeof(out));
        assert_int_equal(n, m.new_len);
        if (m.mutator == GF_M_LENGTH) {
            /* The descriptor is kept consistent: the guest believes the
             * new length, which sits just under / at / over its limit or
             * next to the natural size. */
            struct vmpacket_descriptor o;
            memcpy(&o, out, sizeof(o));
            assert_int_equal((uint32_t)o.len8 * 8, (m.new_len + 7) & ~7u);
            assert_true((uint32_t)o.offset8 * 8 <= m.new_len);
            bool edge = m.new_len == 16 || m.new_len == 56 || m.new_len == 72 ||
                        m.new_len == limit - 8 || m.new_len == limit || m.new_len == limit + 8 ||
                        m.new_len == 2 * limit;
            assert_true(edge);
            under |= m.new_len == limit - 8;
            at |= m.new_len == limit;
            over |= m.new_len == limit + 8;
        } else {
            assert_int_equal(m.new_len, sizeof(pkt));
            assert_patches_inside(&m);
            desc |= m.mutator == GF_M_DESC;
        }
    }
    assert_true(under && at && over && desc);
}

/* An IC negotiate packet as the IC VSPs send it: descriptor, pipe header,
 * IC header, negotiate body with one framework and one message version. */
static size_t ic_negotiate_pkt(uint8_t *p)
{
    const size_t len = 16 + IC_HDRS_SIZE + sizeof(struct ic_negotiate) + 2 * 4;
    memset(p, 0, len);
    struct vmpacket_descriptor d = {.type = VM_PKT_DATA_INBAND, .offset8 = 2,
                                    .len8 = (uint16_t)((len + 7) / 8)};
    memcpy(p, &d, sizeof(d));
    struct ic_pipe_hdr pipe = {.flags = IC_PIPE_FLAG_DATA, .msgsize = (uint32_t)len - 24};
    memcpy(p + 16, &pipe, sizeof(pipe));
    struct ic_hdr h = {.msg_type = IC_MSG_NEGOTIATE, .msg_size = 16,
                       .flags = IC_FLAG_TRANSACTION | IC_FLAG_REQUEST};
    memcpy(p + 24, &h, sizeof(h));
    struct ic_negotiate n = {.fw_count = 1, .msg_count = 1};
    memcpy(p + 16 + IC_HDRS_SIZE, &n, sizeof(n));
    return len;
}

static void test_ic_mutator(void **state)
{
    (void)state;
    uint8_t pkt[128];
    size_t len = ic_negotiate_pkt(pkt);
    const size_t body_at = 16 + IC_HDRS_SIZE;
    bool c0 = false, c100 = false, c101 = false, cut = false, hdr = false;
    for (uint64_t seed = 0; seed < SEEDS; seed++) {
        struct gf_rng r;
        gf_rng_seed(&r, seed);
        struct gf_mutation m = {0};
        gf_mut_ic(&r, pkt, len, &m);
        assert_int_equal(m.op, GF_OP_PATCH);
        /* Never longer than the packet, never cut into the headers. */
        assert_true(m.new_len <= len && m.new_len >= body_at);
        uint8_t out[128];
        assert_int_equal(gf_edit_apply(&m, pkt, len, out, sizeof(out)), m.new_len);
        struct vmpacket_descriptor d;
        memcpy(&d, out, sizeof(d));
        if (m.mutator == GF_M_LENGTH) {
            assert_int_equal(d.len8, (m.new_len + 7) / 8); /* the guest believes it */
            cut |= m.new_len < len;
        } else {
            assert_int_equal(m.new_len, len);
            assert_patches_inside(&m);
        }
        struct ic_negotiate n;
        if (m.new_len >= body_at + sizeof(n)) {
            memcpy(&n, out + body_at, sizeof(n));
            uint16_t v[2] = {n.fw_count, n.msg_count};
            for (int i = 0; i < 2; i++) {
                c0 |= v[i] == 0;
                c100 |= v[i] == IC_NEGOTIATE_MAX_VERSIONS;
                c101 |= v[i] == IC_NEGOTIATE_MAX_VERSIONS + 1;
            }
        }
        hdr |= memcmp(out + 24, pkt + 24, sizeof(struct ic_hdr)) != 0;
    }
    assert_true(c0 && c100 && c101 && cut && hdr);
    /* The IC classes, and only they. */
    struct hv_guid g;
    guid_parse(HV_CLASS_HEARTBEAT, &g);
    assert_true(gf_class_is_ic(&g));
    guid_parse(HV_CLASS_KVP, &g);
    assert_true(gf_class_is_ic(&g));
    guid_parse(HV_CLASS_ECHO, &g);
    assert_false(gf_class_is_ic(&g));
}

static void test_ring_mutator(void **state)
{
    (void)state;
    const uint32_t size = 16384;
    for (unsigned field = 0; field < GF_RF_COUNT; field++) {
        bool past_end = false, unaligned = false;
        for (uint64_t seed = 0; seed < SEEDS; seed++) {
            struct gf_rng r;
            gf_rng_seed(&r, seed);
            struct gf_ctx ctx = {.ring_size = size, .cur_value = 256};
            struct gf_mutation m = {0};
            gf_mut_ring(&r, &ctx, field, &m);
            assert_int_equal(m.op, GF_OP_VALUE);
            assert_int_not_equal(m.param, 256); /* never the real value */
            past_end |= m.param >= size;
            unaligned |= (m.param & 7) != 0;
        }
        if (field == GF_RF_WRITE_INDEX || field == GF_RF_READ_INDEX)
            assert_true(past_end && unaligned); /* the CVE-2026-99544 class */
    }
}

static void test_flip(void **state)
{
    (void)state;
    uint8_t buf[100];
    memset(buf, 0x5a, sizeof(buf));
    for (uint64_t seed = 0; seed < SEEDS; seed++) {
        struct gf_rng r;
        gf_rng_seed(&r, seed);
        struct gf_mutation m = {0};
        gf_mut_flip(&r, buf, sizeof(buf), &m);
        assert_int_equal(m.new_len, sizeof(buf));
        assert_true(m.npatch >= 1 && m.npatch <= 8);
        for (unsigned i = 0; i < m.npatch; i++) {
            assert_int_equal(m.patch[i].len, 1);
            assert_true(m.patch[i].off < sizeof(buf));
            assert_int_not_equal(m.bytes[i], 0x5a); /* a flip changes the byte */
        }
    }
}

static void test_edit_apply(void **state)
{
    (void)state;
    struct gf_mutation m = {.op = GF_OP_PATCH, .new_len = 12};
    assert_true(gf_mut_add_patch(&m, 2, "AB", 2));
    assert_true(gf_mut_add_patch(&m, 11, "XYZ", 3)); /* cut at the new length */
    uint8_t out[16];
    memset(out, 0xee, sizeof(out));
    assert_int_equal(gf_edit_apply(&m, "0123456789", 10, out, sizeof(out)), 12);
    assert_memory_equal(out, "01AB456789\0X", 12);
    /* Shrinking, and a cap below new_len. */
    m.new_len = 4;
    assert_int_equal(gf_edit_apply(&m, "0123456789", 10, out, sizeof(out)), 4);
    assert_memory_equal(out, "01AB", 4);
    m.new_len = 100;
    assert_int_equal(gf_edit_apply(&m, "0123456789", 10, out, 8), 8);
    /* Patch room is bounded. */
    struct gf_mutation full = {0};
    uint8_t big[GF_MAX_PATCH_BYTES + 1] = {0};
    assert_false(gf_mut_add_patch(&full, 0, big, sizeof(big)));
    for (int i = 0; i < GF_MAX_PATCHES; i++)
        assert_true(gf_mut_add_patch(&full, (uint32_t)i, big, 1));
    assert_false(gf_mut_add_patch(&full, 0, big, 1));
}

static void test_knobs(void **state)
{
    (void)state;
    struct gf_knobs k;
    char err[256];
    gf_knobs_default(&k);
    assert_int_equal(gf_knob_set(&k, "p=0.5", err, sizeof(err)), 0);
    assert_true(k.prob[GF_S_PKT] == 0.5);
    assert_int_equal(gf_knob_set(&k, "p.openchannel_result=1", err, sizeof(err)), 0);
    assert_true(k.prob[GF_S_MSG0 + CHANNELMSG_OPENCHANNEL_RESULT] == 1.0);
    assert_int_equal(gf_knob_set(&k, "p.ring_read_index=0", err, sizeof(err)), 0);
    assert_true(k.prob[GF_S_RING0 + GF_RF_READ_INDEX] == 0.0);
    assert_int_equal(gf_knob_set(&k, "w.delay=3", err, sizeof(err)), 0);
    assert_int_equal(k.weight[GF_F_DELAY], 3);
    assert_int_equal(gf_knob_set(&k, "after=10", err, sizeof(err)), 0);
    assert_int_equal(k.after, 10);
    assert_int_equal(gf_knob_set(&k, "class=heartbeat", err, sizeof(err)), 0);
    assert_int_equal(gf_knob_set(&k, "class=" HV_CLASS_KVP, err, sizeof(err)), 0);
    assert_int_equal(k.nclasses, 2);
    struct hv_guid hb;
    guid_parse(HV_CLASS_HEARTBEAT, &hb);
    assert_true(guid_equal(&k.classes[0], &hb));
    assert_int_equal(gf_knob_set(&k, "p=2", err, sizeof(err)), -EINVAL);
    assert_int_equal(gf_knob_set(&k, "p.nosuch=0.1", err, sizeof(err)), -EINVAL);
    assert_int_equal(gf_knob_set(&k, "bogus=1", err, sizeof(err)), -EINVAL);
    assert_int_equal(gf_knob_set(&k, "after=-1", err, sizeof(err)), -EINVAL);
    assert_int_equal(gf_knob_set(&k, "class=notaguid", err, sizeof(err)), -EINVAL);
    assert_int_equal(gf_knob_set(&k, "noequals", err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "noequals"));
}

/* gf_mutate only picks families that make sense for the action, and none
 * whose weight is 0. */
static void test_families(void **state)
{
    (void)state;
    struct gf_knobs k;
    gf_knobs_default(&k);
    struct gf_ctx ctx = {.relids = {1}, .nrelids = 1, .ring_size = 4096};
    uint8_t pkt[32] = {VM_PKT_DATA_INBAND, 0, 2, 0, 4, 0};
    struct vmbus_channel_gpadl_created msg = {.header.msgtype = CHANNELMSG_GPADL_CREATED,
                                              .child_relid = 1};
    for (uint64_t seed = 0; seed < SEEDS; seed++) {
        struct gf_rng r;
        gf_rng_seed(&r, seed);
        struct gf_mutation m;
        struct gf_key sig = {.kind = GF_K_SIGNAL};
        assert_true(gf_mutate(&r, &k, &ctx, &sig, NULL, 0, 0, &m));
        assert_true(m.op == GF_OP_DROP || m.op == GF_OP_STORM);
        if (m.op == GF_OP_STORM)
            assert_true(m.param >= 1 && m.param <= k.storm_max);
        struct gf_key ring = {.kind = GF_K_RING, .subtype = GF_RF_WRITE_INDEX};
        assert_true(gf_mutate(&r, &k, &ctx, &ring, NULL, 0, 0, &m));
        assert_true(m.op == GF_OP_DROP || m.op == GF_OP_VALUE);
        struct gf_key pk = {.kind = GF_K_PKT};
        assert_true(gf_mutate(&r, &k, &ctx, &pk, pkt, sizeof(pkt), 256, &m));
        assert_true(m.op == GF_OP_PATCH || m.op == GF_OP_DROP || m.op == GF_OP_DUP);
        struct gf_key mk = {.kind = GF_K_MSG, .subtype = CHANNELMSG_GPADL_CREATED};
        assert_true(gf_mutate(&r, &k, &ctx, &mk, &msg, sizeof(msg), 240, &m));
        assert_true(m.op != GF_OP_DELAY && m.op != GF_OP_STORM && m.op != GF_OP_VALUE);
        if (m.op == GF_OP_RESCIND)
            assert_int_equal(m.param, 1); /* the channel the message is about */
    }
    /* Every weight 0: nothing is picked. */
    memset(k.weight, 0, sizeof(k.weight));
    struct gf_rng r;
    gf_rng_seed(&r, 1);
    struct gf_mutation m;
    struct gf_key mk = {.kind = GF_K_MSG, .subtype = CHANNELMSG_GPADL_CREATED};
    assert_false(gf_mutate(&r, &k, &ctx, &mk, &msg, sizeof(msg), 240, &m));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_msg_mutator_bounds), cmocka_unit_test(test_msg_relids),
        cmocka_unit_test(test_pkt_mutator_bounds), cmocka_unit_test(test_ic_mutator),
        cmocka_unit_test(test_ring_mutator),
        cmocka_unit_test(test_flip),               cmocka_unit_test(test_edit_apply),
        cmocka_unit_test(test_knobs),              cmocka_unit_test(test_families),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
