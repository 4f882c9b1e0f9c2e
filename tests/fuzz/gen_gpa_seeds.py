#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Write the seed inputs for fuzz_gpa into corpus/gpa/ (see the input
layout at the top of fuzz_gpa.c).  Re-run after changing that layout."""
import os
import struct

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'corpus', 'gpa')
HIGH = (1 << 20) >> 12  # first PFN of the second region


def rng(count, offset, pfns):
    return struct.pack('<II', count, offset) + b''.join(struct.pack('<Q', p) for p in pfns)


def seed(max_len, max_iov, ranges, count=None):
    hdr = struct.pack('<II', 0, len(ranges) if count is None else count) + b''.join(ranges)
    return struct.pack('<IB', max_len, max_iov) + hdr


SEEDS = {
    # storvsc: one range of consecutive pages, across the RAM hole
    'storvsc-hole': seed(1 << 20, 32, [rng(16000, 100, [62, 63, HIGH, HIGH + 1])]),
    # netvsc page buffers: one page per range, the first two adjacent
    'netvsc-pages': seed(1 << 20, 32, [rng(4000, 96, [5]), rng(1500, 0, [6]), rng(300, 200, [40])]),
    'outside-ram': seed(1 << 20, 32, [rng(8192, 0, [3, 64])]),
    'pfns-short': seed(1 << 20, 32, [rng(9000, 0, [1])]),
    'too-many-iov': seed(1 << 20, 2, [rng(12288, 0, [1, 9, 20])]),
}

os.makedirs(OUT, exist_ok=True)
for name, data in SEEDS.items():
    with open(os.path.join(OUT, name), 'wb') as f:
        f.write(data)
