/* SPDX-License-Identifier: MIT */
#include "common/utf8.h"

size_t utf8_decode(const void *s, size_t n, uint32_t *cp)
{
    const unsigned char *u = s;
    size_t need;
    uint32_t c, min;

    if (n == 0)
        return 0;
    c = u[0];
    if (c < 0x80) {
        need = 1, min = 0;
    } else if (c >= 0xc2 && c <= 0xdf) { /* 0xc0, 0xc1 only start overlong forms */
        need = 2, c &= 0x1f, min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
        need = 3, c &= 0x0f, min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) { /* 0xf5 and above start > U+10FFFF */
        need = 4, c &= 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (n < need)
        return 0;
    for (size_t i = 1; i < need; i++) {
        if ((u[i] & 0xc0) != 0x80)
            return 0;
        c = c << 6 | (u[i] & 0x3f);
    }
    if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
        return 0;
    if (cp)
        *cp = c;
    return need;
}
