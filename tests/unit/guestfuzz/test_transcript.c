/* SPDX-License-Identifier: MIT */
/* src/guestfuzz/transcript.c: write / read round trip, a truncated tail,
 * files that are not transcripts. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "guestfuzz/transcript.h"

static char dir[] = "/tmp/gf-transcript-XXXXXX";

static int setup(void **state)
{
    (void)state;
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void path_of(char *out, size_t n, const char *name)
{
    snprintf(out, n, "%s/%s", dir, name);
}

static struct gf_mutation sample_mut(uint32_t i)
{
    struct gf_mutation m = {0};
    m.key = (struct gf_key){.kind = GF_K_MSG, .subtype = CHANNELMSG_GPADL_CREATED,
                            .trig_type = CHANNELMSG_GPADL_HEADER, .trig_k = i, .n = 1};
    m.key.class_id.b[0] = (uint8_t)i;
    m.op = GF_OP_PATCH;
    m.mutator = GF_M_FIELD;
    m.new_len = 20 + i;
    m.param = 0xabc0 + i;
    gf_mut_add_patch(&m, 8, "\x01\x02\x03\x04", 4);
    gf_mut_add_patch(&m, 16, "\xff", 1);
    return m;
}

static void test_round_trip(void **state)
{
    (void)state;
    char p[256];
    path_of(p, sizeof(p), "rt.vfz");
    struct gf_tr_header h = {.seed = 0x1122334455667788ull, .flags = 0, .partition_id = 9};
    struct gf_tr_writer *w = gf_tr_create(p, &h);
    assert_non_null(w);
    uint8_t guest_msg[24] = {CHANNELMSG_OPENCHANNEL, 0, 0, 0, 0, 0, 0, 0, 7};
    struct gf_mutation m0 = sample_mut(1), m1 = sample_mut(2);
    uint8_t pkt[40];
    for (unsigned i = 0; i < sizeof(pkt); i++)
        pkt[i] = (uint8_t)i;
    struct hv_guid cls = {{1, 2, 3}};
    uint32_t relid = 5, op = GF_OP_PATCH;
    assert_int_equal(gf_tr_write(w, GF_REC_VM, "vm-a", 4, NULL, 0, NULL, 0), 0);
    assert_int_equal(gf_tr_write(w, GF_REC_GUEST_MSG, guest_msg, sizeof(guest_msg), NULL, 0,
                                 NULL, 0), 0);
    assert_int_equal(gf_tr_write_mut(w, &m0), 0);
    assert_int_equal(gf_tr_write(w, GF_REC_HOST, &m0.key, sizeof(m0.key), &op, 4, "hostbytes",
                                 9), 0);
    assert_int_equal(gf_tr_write(w, GF_REC_GUEST_PKT, &cls, sizeof(cls), &relid, 4, pkt,
                                 sizeof(pkt)), 0);
    assert_int_equal(gf_tr_write_mut(w, &m1), 0);
    assert_int_equal(gf_tr_close(w), 0);

    struct gf_tr_header rh;
    struct gf_tr_reader *r = gf_tr_open(p, &rh);
    assert_non_null(r);
    assert_int_equal(rh.seed, h.seed);
    assert_int_equal(rh.partition_id, 9);
    assert_int_equal(rh.flags, 0);
    struct gf_tr_record rec;
    static const enum gf_rec_type want[] = {GF_REC_VM, GF_REC_GUEST_MSG, GF_REC_MUT,
                                            GF_REC_HOST, GF_REC_GUEST_PKT, GF_REC_MUT};
    for (unsigned i = 0; i < 6; i++) {
        assert_int_equal(gf_tr_next(r, &rec), 1);
        assert_int_equal(rec.type, want[i]);
        struct gf_mutation d;
        switch (i) {
        case 0: assert_memory_equal(rec.data, "vm-a", 4); break;
        case 1:
            assert_int_equal(rec.len, sizeof(guest_msg));
            assert_memory_equal(rec.data, guest_msg, sizeof(guest_msg));
            break;
        case 2:
        case 5:
            assert_true(gf_tr_decode_mut(rec.data, rec.len, &d));
            assert_memory_equal(&d, i == 2 ? &m0 : &m1, sizeof(d));
            break;
        case 3:
            assert_int_equal(rec.len, 32 + 4 + 9);
            assert_memory_equal(rec.data + 36, "hostbytes", 9);
            break;
        case 4:
            assert_int_equal(rec.len, 16 + 4 + sizeof(pkt));
            assert_memory_equal(rec.data, &cls, 16);
            assert_memory_equal(rec.data + 20, pkt, sizeof(pkt));
            break;
        }
    }
    assert_int_equal(gf_tr_next(r, &rec), 0);
    gf_tr_close_reader(r);

    /* The mutations alone, in file order. */
    struct gf_mutation *all;
    assert_int_equal(gf_tr_load_mutations(p, &rh, &all), 2);
    assert_memory_equal(&all[0], &m0, sizeof(m0));
    assert_memory_equal(&all[1], &m1, sizeof(m1));
    free(all);
}

static void test_save_and_truncate(void **state)
{
    (void)state;
    char p[256];
    path_of(p, sizeof(p), "saved.vfz");
    struct gf_mutation v[3] = {sample_mut(1), sample_mut(2), sample_mut(3)};
    struct gf_tr_header h = {.seed = 5};
    assert_int_equal(gf_tr_save_mutations(p, &h, v, 3), 0);
    struct gf_mutation *all;
    struct gf_tr_header rh;
    assert_int_equal(gf_tr_load_mutations(p, &rh, &all), 3);
    assert_memory_equal(all, v, sizeof(v));
    free(all);

    /* A run killed mid-record leaves a readable prefix. */
    FILE *f = fopen(p, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fclose(f);
    assert_int_equal(truncate(p, size - 3), 0);
    assert_int_equal(gf_tr_load_mutations(p, &rh, &all), 2);
    free(all);
}

static void test_not_a_transcript(void **state)
{
    (void)state;
    char p[256];
    path_of(p, sizeof(p), "junk");
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    fputs("this is not a transcript at all, no magic here....", f);
    fclose(f);
    struct gf_mutation *all;
    assert_int_equal(gf_tr_load_mutations(p, NULL, &all), -EINVAL);
    path_of(p, sizeof(p), "missing");
    assert_int_equal(gf_tr_load_mutations(p, NULL, &all), -ENOENT);

    /* A record header with an impossible length or type. */
    path_of(p, sizeof(p), "badrec.vfz");
    struct gf_tr_header h = {0};
    struct gf_tr_writer *w = gf_tr_create(p, &h);
    assert_non_null(w);
    assert_int_equal(gf_tr_close(w), 0);
    f = fopen(p, "ab");
    struct gf_rec_hdr bad = {.type = 99, .len = 4};
    fwrite(&bad, sizeof(bad), 1, f);
    fwrite("abcd", 4, 1, f);
    fclose(f);
    assert_int_equal(gf_tr_load_mutations(p, NULL, &all), -EINVAL);
    /* A mutation record whose patches overrun it. */
    path_of(p, sizeof(p), "badmut.vfz");
    w = gf_tr_create(p, &h);
    uint8_t payload[32 + 12 + 4] = {0};
    payload[32] = GF_OP_PATCH;
    payload[34] = 1;                   /* one patch */
    payload[44 + 2] = 50;              /* of 50 bytes, none present */
    assert_int_equal(gf_tr_write(w, GF_REC_MUT, payload, sizeof(payload), NULL, 0, NULL, 0), 0);
    assert_int_equal(gf_tr_close(w), 0);
    assert_int_equal(gf_tr_load_mutations(p, NULL, &all), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_save_and_truncate),
        cmocka_unit_test(test_not_a_transcript),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
