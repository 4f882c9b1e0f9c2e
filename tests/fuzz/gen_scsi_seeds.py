#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Write the seed inputs for fuzz_scsi into corpus/scsi/ (see the input
layout at the top of fuzz_scsi.c).  Re-run after changing that layout."""
import os
import struct

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'corpus', 'scsi')
NONE, OUT_, IN_ = 0, 1, 2


def seed(cdb, direction, xfer, iovs=(), threads=False, ro=False, hostile=0, data=b''):
    cfg = (1 if threads else 0) | (2 if ro else 0) | (direction << 2)
    b = struct.pack('<BB', cfg, len(cdb)) + cdb.ljust(16, b'\0')
    b += struct.pack('<IB', xfer, len(iovs))
    for length, mis in iovs:
        b += struct.pack('<HB', length, mis)
    return b + struct.pack('<B', hostile) + data


def be(fmt, *v):
    return struct.pack('>' + fmt, *v)


SEEDS = {
    'inquiry': seed(b'\x12\0\0\0\x24\0', IN_, 36, [(36, 0)]),
    'inquiry-vpd-b0': seed(b'\x12\x01\xb0\0\xff\0', IN_, 255, [(255, 3)]),
    'inquiry-vpd-83': seed(b'\x12\x01\x83\0\xff\0', IN_, 255, [(100, 0), (155, 1)], threads=True),
    'report-luns': seed(b'\xa0\0\0\0\0\0' + be('I', 4096) + b'\0\0', IN_, 4096, [(4096, 0)]),
    'read-capacity16': seed(b'\x9e\x10' + b'\0' * 8 + be('I', 32) + b'\0\0', IN_, 32, [(32, 0)]),
    'mode-sense6': seed(b'\x1a\0\x3f\0\xff\0', IN_, 255, [(255, 0)], ro=True),
    'mode-sense10': seed(b'\x5a\x10\x08\0\0\0\0' + be('H', 512) + b'\0', IN_, 512, [(512, 0)]),
    'read10': seed(b'\x28\0' + be('I', 8) + b'\0' + be('H', 8) + b'\0', IN_, 4096,
                   [(1000, 1), (3096, 7)]),
    'write16': seed(b'\x8a\x08' + be('Q', 16) + be('I', 2) + b'\0\0', OUT_, 1024,
                    [(512, 0), (512, 5)], threads=True, hostile=0x55, data=b'\xab\xcd'),
    'write6-ro': seed(b'\x0a\0\0\x04\x01\0', OUT_, 512, [(512, 0)], ro=True),
    'sync-cache': seed(b'\x35' + b'\0' * 9, NONE, 0),
    'unmap': seed(b'\x42\0\0\0\0\0\0' + be('H', 40) + b'\0', OUT_, 40, [(40, 0)], hostile=0xff,
                  data=be('HH', 38, 32) + b'\0' * 4 + be('QI', 8, 8) + b'\0' * 4
                  + be('QI', 64, 16) + b'\0' * 4),
    'write-same16-unmap': seed(b'\x93\x08' + be('Q', 0) + be('I', 32) + b'\0\0', OUT_, 512,
                               [(512, 0)]),
    'write-same10': seed(b'\x41\0' + be('I', 32) + b'\0' + be('H', 16) + b'\0', OUT_, 512,
                         [(512, 0)], data=b'\x01'),
    'unknown': seed(b'\x4d' + b'\0' * 9, IN_, 64, [(64, 0)]),
}

os.makedirs(OUT, exist_ok=True)
for name, blob in SEEDS.items():
    with open(os.path.join(OUT, name), 'wb') as f:
        f.write(blob)
