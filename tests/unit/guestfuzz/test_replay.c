/* SPDX-License-Identifier: MIT */
/*
 * src/guestfuzz/engine.c: a replay applies the recorded mutations at the
 * same guest-keyed points, whatever the timing: channels interleaved
 * differently, host actions of one channel late relative to another's
 * guest packets, guest packets merged into one batch.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/log.h"
#include "guestfuzz/engine.h"
#include "guestfuzz/transcript.h"

static char dir[] = "/tmp/gf-replay-XXXXXX";

static int setup(void **state)
{
    (void)state;
    log_set_level(LOG_ERR);
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    gf_run_reset();
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

#define MAXREC 512
struct seen {
    struct gf_mutation m[MAXREC];
    unsigned n;
};

static const struct hv_guid cls_a = {{0xa}}, cls_b = {{0xb}};

static void guest_msg(struct gf_vm *vm, uint32_t type)
{
    uint8_t m[16] = {0};
    memcpy(m, &type, 4);
    gf_vm_guest_msg(vm, m, sizeof(m));
}

static void guest_pkt(struct gf_vm *vm, const struct hv_guid *cls)
{
    uint8_t p[24] = {VM_PKT_DATA_INBAND, 0, 2, 0, 3, 0};
    gf_vm_guest_pkt(vm, cls, cls == &cls_a ? 1 : 2, p, sizeof(p));
}

static void host(struct gf_vm *vm, struct seen *s, uint8_t kind, uint16_t subtype,
                 const struct hv_guid *cls)
{
    struct gf_key key = {.kind = kind, .subtype = subtype};
    if (cls)
        key.class_id = *cls;
    uint8_t buf[64] = {0};
    size_t len = 0;
    if (kind == GF_K_MSG) {
        uint32_t t = subtype;
        memcpy(buf, &t, 4);
        buf[8] = cls == &cls_b ? 2 : 1;
        len = subtype == CHANNELMSG_OFFERCHANNEL ? 64 : 20;
    } else if (kind == GF_K_PKT) {
        struct vmpacket_descriptor d = {.type = subtype, .offset8 = 2, .len8 = 8};
        memcpy(buf, &d, sizeof(d));
        len = 64;
    }
    struct gf_ctx ctx = {.relids = {1, 2}, .nrelids = 2, .ring_size = 8192, .cur_value = 64};
    struct gf_mutation m;
    enum gf_op op = gf_vm_decide(vm, &key, &ctx, len ? buf : NULL, len, 240, &m);
    if (op != GF_OP_NONE && s->n < MAXREC)
        s->m[s->n++] = m;
}

/* The boot of two channels; `swap` changes the timing: channel B's traffic
 * runs before channel A's, and A's host replies come after B's guest
 * packets instead of before them. */
static void scenario(struct gf_vm *vm, struct seen *s, bool swap)
{
    guest_msg(vm, CHANNELMSG_INITIATE_CONTACT);
    host(vm, s, GF_K_MSG, CHANNELMSG_VERSION_RESPONSE, NULL);
    guest_msg(vm, CHANNELMSG_REQUESTOFFERS);
    host(vm, s, GF_K_MSG, CHANNELMSG_OFFERCHANNEL, &cls_a);
    host(vm, s, GF_K_MSG, CHANNELMSG_OFFERCHANNEL, &cls_b);
    host(vm, s, GF_K_MSG, CHANNELMSG_ALLOFFERS_DELIVERED, NULL);
    guest_msg(vm, CHANNELMSG_OPENCHANNEL);
    host(vm, s, GF_K_MSG, CHANNELMSG_OPENCHANNEL_RESULT, NULL);
    guest_msg(vm, CHANNELMSG_OPENCHANNEL);
    host(vm, s, GF_K_MSG, CHANNELMSG_OPENCHANNEL_RESULT, NULL);
    for (int round = 0; round < 6; round++) {
        const struct hv_guid *first = swap ? &cls_b : &cls_a;
        const struct hv_guid *second = swap ? &cls_a : &cls_b;
        if (!swap) {
            guest_pkt(vm, first);
            host(vm, s, GF_K_PKT, VM_PKT_COMP, first);
            host(vm, s, GF_K_RING, GF_RF_WRITE_INDEX, first);
            host(vm, s, GF_K_SIGNAL, 0, first);
            guest_pkt(vm, second);
            host(vm, s, GF_K_PKT, VM_PKT_COMP, second);
            host(vm, s, GF_K_RING, GF_RF_WRITE_INDEX, second);
            host(vm, s, GF_K_SIGNAL, 0, second);
        } else {
            guest_pkt(vm, first);
            guest_pkt(vm, second);
            host(vm, s, GF_K_PKT, VM_PKT_COMP, first);
            host(vm, s, GF_K_RING, GF_RF_WRITE_INDEX, first);
            host(vm, s, GF_K_SIGNAL, 0, first);
            host(vm, s, GF_K_PKT, VM_PKT_COMP, second);
            host(vm, s, GF_K_RING, GF_RF_WRITE_INDEX, second);
            host(vm, s, GF_K_SIGNAL, 0, second);
        }
    }
    guest_msg(vm, CHANNELMSG_CLOSECHANNEL);
    host(vm, s, GF_K_MSG, CHANNELMSG_RESCIND_CHANNELOFFER, &cls_a);
}

static struct gf_vm *start(enum gf_mode mode, uint64_t seed, struct gf_mutation *replay,
                           size_t n)
{
    struct gf_run run = {.mode = mode, .seed = seed, .replay = replay, .nreplay = n};
    gf_knobs_default(&run.knobs);
    run.knobs.prob[0] = 0; /* (slot 0 = invalid type: never used) */
    for (unsigned i = 0; i < GF_S_COUNT; i++)
        run.knobs.prob[i] = 0.3;
    snprintf(run.transcript_dir, sizeof(run.transcript_dir), "%s", dir);
    gf_run_init(&run);
    struct gf_vm *vm = gf_vm_new(mode == GF_MODE_FUZZ ? 1 : 2, "vm-replay");
    assert_non_null(vm);
    return vm;
}

static const struct gf_mutation *find(const struct seen *s, const struct gf_key *k)
{
    for (unsigned i = 0; i < s->n; i++)
        if (!memcmp(&s->m[i].key, k, sizeof(*k)))
            return &s->m[i];
    return NULL;
}

/* Mutations equal apart from the key each was recorded at. */
static void assert_same_edit(const struct gf_mutation *a, const struct gf_mutation *b)
{
    struct gf_mutation x = *a, y = *b;
    memset(&x.key, 0, sizeof(x.key));
    memset(&y.key, 0, sizeof(y.key));
    assert_memory_equal(&x, &y, sizeof(x));
}

static void test_replay_other_timing(void **state)
{
    (void)state;
    static struct seen fuzz, rep;
    memset(&fuzz, 0, sizeof(fuzz));
    memset(&rep, 0, sizeof(rep));
    struct gf_vm *vm = start(GF_MODE_FUZZ, 0xfeedbeef, NULL, 0);
    scenario(vm, &fuzz, false);
    char path[700];
    snprintf(path, sizeof(path), "%s", gf_vm_transcript_path(vm));
    gf_vm_free(vm);
    assert_true(fuzz.n >= 8); /* the seed mutates a fair share of 60 actions */

    struct gf_mutation *m;
    struct gf_tr_header h;
    int n = gf_tr_load_mutations(path, &h, &m);
    assert_int_equal(n, (int)fuzz.n);
    assert_int_equal(h.seed, 0xfeedbeef);

    vm = start(GF_MODE_REPLAY, 0, m, (size_t)n);
    scenario(vm, &rep, true);
    gf_vm_free(vm);
    /* Every recorded mutation fired once, at the same key, with the same
     * edit, although the channels' traffic interleaved the other way. */
    assert_int_equal(rep.n, fuzz.n);
    for (unsigned i = 0; i < fuzz.n; i++) {
        const struct gf_mutation *r = find(&rep, &fuzz.m[i].key);
        assert_non_null(r);
        assert_same_edit(r, &fuzz.m[i]);
    }
}

/* The host publishes its read index after a batch of guest packets; with
 * another timing the batch boundaries move.  A mutation recorded after the
 * guest's 2nd packet fires at the first commit at or after it. */
static void test_replay_merged_batch(void **state)
{
    (void)state;
    static struct seen rep;
    memset(&rep, 0, sizeof(rep));
    struct gf_mutation m = {.op = GF_OP_VALUE, .mutator = GF_M_INDEX, .param = 0xffffffff};
    m.key = (struct gf_key){.kind = GF_K_RING, .subtype = GF_RF_READ_INDEX,
                            .trig_type = GF_TRIG_PKT, .trig_k = 2, .n = 1, .class_id = cls_a};
    struct gf_mutation *list = malloc(sizeof(m));
    *list = m;
    struct gf_vm *vm = start(GF_MODE_REPLAY, 0, list, 1);
    guest_pkt(vm, &cls_a);
    host(vm, &rep, GF_K_RING, GF_RF_READ_INDEX, &cls_a); /* commit after packet 1 */
    assert_int_equal(rep.n, 0);
    guest_pkt(vm, &cls_a);
    guest_pkt(vm, &cls_a); /* 2 and 3 read in one batch */
    host(vm, &rep, GF_K_RING, GF_RF_READ_INDEX, &cls_a);
    assert_int_equal(rep.n, 1);
    assert_int_equal(rep.m[0].param, 0xffffffff);
    assert_int_equal(rep.m[0].key.trig_k, 3); /* recorded where it fired */
    host(vm, &rep, GF_K_RING, GF_RF_READ_INDEX, &cls_a);
    assert_int_equal(rep.n, 1); /* once only */
    /* Another class's commits never take it. */
    gf_vm_free(vm);
}

/* Knobs: nothing before `after` guest exchanges, at most `max`, only the
 * given classes. */
static void test_knob_gates(void **state)
{
    (void)state;
    struct gf_run run = {.mode = GF_MODE_FUZZ, .seed = 3};
    gf_knobs_default(&run.knobs);
    for (unsigned i = 0; i < GF_S_COUNT; i++)
        run.knobs.prob[i] = 1;
    run.knobs.after = 4;
    run.knobs.max_mutations = 5;
    run.knobs.nclasses = 1;
    run.knobs.classes[0] = cls_b;
    gf_run_init(&run);
    struct gf_vm *vm = gf_vm_new(7, "vm-knobs");
    static struct seen s;
    memset(&s, 0, sizeof(s));
    for (int i = 0; i < 3; i++) {
        guest_pkt(vm, &cls_b);
        host(vm, &s, GF_K_PKT, VM_PKT_COMP, &cls_b);
    }
    assert_int_equal(s.n, 0); /* 3 exchanges < after */
    guest_pkt(vm, &cls_b);
    for (int i = 0; i < 10; i++) {
        host(vm, &s, GF_K_PKT, VM_PKT_COMP, &cls_a);        /* other class */
        host(vm, &s, GF_K_MSG, CHANNELMSG_VERSION_RESPONSE, NULL); /* partition-wide */
    }
    assert_int_equal(s.n, 0);
    for (int i = 0; i < 10; i++)
        host(vm, &s, GF_K_PKT, VM_PKT_COMP, &cls_b);
    assert_int_equal(s.n, 5); /* max */
    assert_int_equal(gf_vm_mutations(vm), 5);
    gf_vm_free(vm);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_replay_other_timing),
        cmocka_unit_test(test_replay_merged_batch),
        cmocka_unit_test(test_knob_gates),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
