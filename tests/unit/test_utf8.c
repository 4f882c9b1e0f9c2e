/* SPDX-License-Identifier: MIT */
/* Unit tests for src/common/utf8.c: what counts as one valid UTF-8 sequence. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common/utf8.h"

static size_t dec(const char *s, uint32_t *cp) { return utf8_decode(s, strlen(s), cp); }

static void test_valid_sequences(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        size_t len;
        uint32_t cp;
    } ok[] = {
        {"A", 1, 0x41},
        {"\x7f", 1, 0x7f},
        {"\xc2\x80", 2, 0x80},           /* smallest 2-byte */
        {"\xc3\xa9", 2, 0xe9},           /* e acute */
        {"\xdf\xbf", 2, 0x7ff},
        {"\xe0\xa0\x80", 3, 0x800},      /* smallest 3-byte */
        {"\xe2\x82\xac", 3, 0x20ac},     /* euro sign */
        {"\xed\x9f\xbf", 3, 0xd7ff},     /* just below the surrogates */
        {"\xee\x80\x80", 3, 0xe000},     /* just above them */
        {"\xef\xbf\xbf", 3, 0xffff},
        {"\xf0\x90\x80\x80", 4, 0x10000},
        {"\xf0\x9f\x98\x80", 4, 0x1f600},
        {"\xf4\x8f\xbf\xbf", 4, 0x10ffff}, /* the last code point */
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        uint32_t cp = 0;
        assert_int_equal(dec(ok[i].s, &cp), ok[i].len);
        assert_int_equal(cp, ok[i].cp);
    }
    /* only the first sequence counts; cp may be NULL */
    assert_int_equal(utf8_decode("\xc3\xa9xyz", 5, NULL), 2);
    /* NUL is an ASCII byte like any other */
    uint32_t cp = 7;
    assert_int_equal(utf8_decode("", 1, &cp), 1);
    assert_int_equal(cp, 0);
}

static void test_invalid_sequences(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "\x80",             /* lone continuation byte */
        "\xbf",
        "\xc0\x80",         /* overlong NUL */
        "\xc1\xbf",         /* overlong 0x7f */
        "\xe0\x9f\xbf",     /* overlong 0x7ff */
        "\xf0\x8f\xbf\xbf", /* overlong 0xffff */
        "\xed\xa0\x80",     /* U+D800, a surrogate */
        "\xed\xbf\xbf",     /* U+DFFF */
        "\xf4\x90\x80\x80", /* U+110000 */
        "\xf5\x80\x80\x80", /* lead byte beyond U+10FFFF */
        "\xf8\x88\x80\x80\x80",
        "\xfe",
        "\xff",
        "\xc3",             /* truncated by the NUL */
        "\xe2\x82",
        "\xf0\x9f\x98",
        "\xc3\x28",         /* second byte not a continuation */
        "\xe2\x28\xac",
        "\xf0\x9f\x28\x80",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint32_t cp = 0x12345;
        assert_int_equal(dec(bad[i], &cp), 0);
        assert_int_equal(cp, 0x12345); /* untouched */
    }
}

/* n bounds the read: a sequence cut by the buffer end is invalid. */
static void test_length_bound(void **state)
{
    (void)state;
    const char euro[] = "\xe2\x82\xac";
    assert_int_equal(utf8_decode(euro, 0, NULL), 0);
    assert_int_equal(utf8_decode(euro, 1, NULL), 0);
    assert_int_equal(utf8_decode(euro, 2, NULL), 0);
    assert_int_equal(utf8_decode(euro, 3, NULL), 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_sequences),
        cmocka_unit_test(test_invalid_sequences),
        cmocka_unit_test(test_length_bound),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
