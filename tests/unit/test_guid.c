/* SPDX-License-Identifier: MIT */
/* Unit tests for src/common/guid.c: text <-> mixed-endian memory order. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common/guid.h"
#include "vmbusd/hv_guids.h"

/* hv_utils heartbeat class id: the first three groups are little-endian. */
static const char hb_text[] = HV_CLASS_HEARTBEAT;
static const uint8_t hb_mem[16] = {0x39, 0x4f, 0x16, 0x57, 0x15, 0x91, 0x78, 0x4e,
                                   0xab, 0x55, 0x38, 0x2f, 0x3b, 0xd5, 0x42, 0x2d};

static void test_parse_memory_order(void **state)
{
    (void)state;
    struct hv_guid g;
    assert_int_equal(guid_parse(hb_text, &g), 0);
    assert_memory_equal(g.b, hb_mem, 16);
}

static void test_format_roundtrip(void **state)
{
    (void)state;
    struct hv_guid g, g2;
    memcpy(g.b, hb_mem, 16);
    char out[GUID_STR_LEN];
    guid_format(&g, out);
    assert_string_equal(out, hb_text);
    assert_int_equal(guid_parse(out, &g2), 0);
    assert_true(guid_equal(&g, &g2));

    /* Every byte value survives a round trip. */
    for (int k = 0; k < 16; k++) {
        for (int i = 0; i < 16; i++)
            g.b[i] = (uint8_t)(k * 16 + i * 17);
        guid_format(&g, out);
        assert_int_equal(strlen(out), 36);
        assert_int_equal(guid_parse(out, &g2), 0);
        assert_memory_equal(g.b, g2.b, 16);
    }
}

static void test_upper_case(void **state)
{
    (void)state;
    struct hv_guid g;
    assert_int_equal(guid_parse("57164F39-9115-4E78-AB55-382F3BD5422D", &g), 0);
    assert_memory_equal(g.b, hb_mem, 16);
    char out[GUID_STR_LEN];
    guid_format(&g, out);
    assert_string_equal(out, hb_text); /* formatted lower case */
}

static void test_equal(void **state)
{
    (void)state;
    struct hv_guid a, b;
    memcpy(a.b, hb_mem, 16);
    memcpy(b.b, hb_mem, 16);
    assert_true(guid_equal(&a, &b));
    b.b[15] ^= 1;
    assert_false(guid_equal(&a, &b));
}

static void test_bad_strings(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "57164f39-9115-4e78-ab55-382f3bd5422",    /* too short */
        "57164f39-9115-4e78-ab55-382f3bd5422d0",  /* too long */
        "57164f39-9115-4e78-ab55-382f3bd5422d ",  /* trailing space */
        "{57164f39-9115-4e78-ab55-382f3bd5422d}", /* braces */
        "57164f3909115-4e78-ab55-382f3bd5422d",   /* dash replaced */
        "57164f39-91154-e78-ab55-382f3bd5422d",   /* dash moved */
        "57164f39-9115-4e78-ab55382f-3bd5422d",   /* dash moved */
        "57164g39-9115-4e78-ab55-382f3bd5422d",   /* non-hex */
        "57164f39-9115-4e78-ab55-382f3bd5422z",   /* non-hex at the end */
        "57164f39-9115-4e78-ab5 -382f3bd5422d",   /* space */
        "57164f39_9115_4e78_ab55_382f3bd5422d",   /* wrong separator */
        "x57164f39-9115-4e78-ab55-382f3bd5422",   /* shifted */
        "-57164f39-9115-4e78-ab55-382f3bd542d",   /* leading dash */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct hv_guid g;
        assert_int_equal(guid_parse(bad[i], &g), -EINVAL);
    }
    struct hv_guid g;
    assert_int_equal(guid_parse(NULL, &g), -EINVAL);
    /* Embedded NUL: the string is only 8 characters long. */
    const char nul[37] = "57164f39\0-9115-4e78-ab55-382f3bd5422d";
    assert_int_equal(guid_parse(nul, &g), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_memory_order),
        cmocka_unit_test(test_format_roundtrip),
        cmocka_unit_test(test_upper_case),
        cmocka_unit_test(test_equal),
        cmocka_unit_test(test_bad_strings),
    };
    return cmocka_run_group_tests_name("guid", tests, NULL, NULL);
}
