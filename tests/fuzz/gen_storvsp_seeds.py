#!/usr/bin/env python3
# Seeds for fuzz_storvsp (layout at the top of fuzz_storvsp.c): Linux's init
# sequence, then INQUIRY, a 4 KiB READ(10) and WRITE(10) through GPA ranges,
# CREATE_SUB_CHANNELS and a read on the subchannel.
#   tests/fuzz/gen_storvsp_seeds.py tests/fuzz/corpus/storvsp
import os
import struct
import sys


def vstor(op, body=b''):
    return (struct.pack('<III', op, 1, 0) + body).ljust(64, b'\0')


def inband(chan, pkt, flags=1):
    return bytes([chan, 0, flags, len(pkt)]) + pkt


def gpa(chan, pkt, rlen, off, pfns):
    return (bytes([chan, 4, 1, len(pkt)]) + pkt + bytes([len(pfns)]) +
            struct.pack('<IH', rlen, off) + bytes(pfns))


def srb(cdb, data_in, dtl, lun=0):
    body = struct.pack('<HBBBBBBBBBBI', 52, 0, 0, 0, 0, 0, lun, len(cdb), 20, data_in, 0, dtl)
    body += cdb.ljust(20, b'\0') + struct.pack('<HBBIII', 0, 0xff, 0x20, 0x48, 60, 0)
    return vstor(3, body)


def init():
    return (inband(0, vstor(7)) + inband(0, vstor(9, struct.pack('<HH', 0x0602, 0))) +
            inband(0, vstor(10)) + inband(0, vstor(8)))


read10 = bytes([0x28, 0, 0, 0, 0, 0, 0, 0, 8, 0])
write10 = bytes([0x2A, 0, 0, 0, 0, 8, 0, 0, 8, 0])
seeds = {
    'init': b'\x10' + init(),
    'inquiry': b'\x10' + init() + gpa(0, srb(bytes([0x12, 0, 0, 0, 96, 0]), 1, 96), 96, 0, [1]),
    'readwrite': b'\x10' + init() + gpa(0, srb(read10, 1, 4096), 4096, 0, [2]) +
                 gpa(0, srb(write10, 0, 4096), 4096, 512, [3, 4]),
    'subchannels': b'\x20' + init() + inband(0, vstor(13, struct.pack('<H', 2))) +
                   gpa(1, srb(read10, 1, 4096), 4096, 0, [5]),
    'tight-ring': b'\x01' + init() + b''.join(gpa(0, srb(read10, 1, 4096), 4096, 0, [6])
                                           for _ in range(8)),
}
out = sys.argv[1]
os.makedirs(out, exist_ok=True)
for name, data in seeds.items():
    with open(os.path.join(out, name), 'wb') as f:
        f.write(data)
