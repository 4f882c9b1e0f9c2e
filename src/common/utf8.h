/* SPDX-License-Identifier: MIT */
/*
 * UTF-8 validation, one definition for every place that passes text on:
 * strings a guest wrote (KVP, shutdown messages) and what the control socket
 * and vmbusctl print.  Valid means RFC 3629: no overlong forms, no UTF-16
 * surrogates, nothing above U+10FFFF, no truncated sequence.
 */
#ifndef VMBUSD_UTF8_H
#define VMBUSD_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* Length (1 to 4) of the valid UTF-8 sequence that starts s[0..n), 0 if it is
 * not one (or n is 0).  An ASCII byte, NUL included, is a sequence of 1.
 * The code point goes to *cp unless cp is NULL. */
size_t utf8_decode(const void *s, size_t n, uint32_t *cp);

#endif
