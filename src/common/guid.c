/* SPDX-License-Identifier: MIT */
#include "common/guid.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* Text groups 1-3 are little-endian integers in memory; groups 4-5 are bytes. */
static const int text_to_mem[16] = {3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15};

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int guid_parse(const char *s, struct hv_guid *g)
{
    if (!s || strlen(s) != 36)
        return -EINVAL;
    int bi = 0;
    for (int i = 0; i < 36;) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-')
                return -EINVAL;
            i++;
            continue;
        }
        int hi = hexval(s[i]), lo = hexval(s[i + 1]);
        if (hi < 0 || lo < 0)
            return -EINVAL;
        g->b[text_to_mem[bi++]] = (uint8_t)(hi << 4 | lo);
        i += 2;
    }
    return 0;
}

void guid_format(const struct hv_guid *g, char out[GUID_STR_LEN])
{
    uint8_t t[16];
    for (int i = 0; i < 16; i++)
        t[i] = g->b[text_to_mem[i]];
    snprintf(out, GUID_STR_LEN,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", t[0], t[1],
             t[2], t[3], t[4], t[5], t[6], t[7], t[8], t[9], t[10], t[11], t[12], t[13], t[14],
             t[15]);
}

bool guid_equal(const struct hv_guid *a, const struct hv_guid *b)
{
    return memcmp(a, b, sizeof(*a)) == 0;
}
