#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Write the seed inputs for fuzz_ring into corpus/ring/ (see the input
layout at the top of fuzz_ring.c).  Re-run after changing that layout."""
import os
import struct

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'corpus', 'ring')


def head(cfg, sel, w=0, r=0, mask=0, pend=0, feat=1, data=b'', max_pkt=None):
    b = struct.pack('<BH5I', cfg | (4 if max_pkt is not None else 0), sel, w, r, mask, pend, feat)
    if max_pkt is not None:
        b += struct.pack('<H', max_pkt)
    return b + struct.pack('<H', len(data)) + data


def op_read(buflen=4096):
    return struct.pack('<BH', 0, buflen)


def op_write(plen, tid=1, niov=1):
    mode = (niov - 1) << 1
    b = struct.pack('<BBHHBHQ', 5, mode, plen, 6, 0, 0, tid) + bytes((tid + i) & 0xff
                                                                      for i in range(plen))
    if niov > 1:
        b += struct.pack('<H', 7)
    if niov > 2:
        b += struct.pack('<H', 9)
    return b


def guest_pkt(w, plen, tid):
    padded = (16 + plen + 7) & ~7
    return (struct.pack('<HHHHQ', 6, 2, padded // 8, 0, tid) + bytes(plen) +
            bytes(padded - 16 - plen) + struct.pack('<Q', w << 32))


COMMIT, REARM, AVAIL = b'\x02', b'\x03', b'\x07'

seeds = {
    # strict, emulated 8 KiB-ish ring: write, read back, commit
    'strict-emu': head(2, 1000, w=64, r=64) + op_write(40) + op_write(100, 2, 3) + AVAIL +
                  op_read() + op_read() + COMMIT + REARM,
    # strict, real double mapping, packets wrapping the end
    'strict-map': head(3, 1, w=4096 - 32, r=4096 - 32) + op_write(200, 3, 2) + op_read() +
                  COMMIT + op_write(3000) + op_write(3000) + op_read(64) + op_read() +
                  COMMIT,
    # strict, tiny ring filled until -EAGAIN, then drained
    'strict-full': head(2, 20) + op_write(40) + op_write(40) + op_write(40) + op_read() +
                   COMMIT + op_write(40) + op_read() + op_read() + COMMIT,
    # writer limited to 80-byte packets (storvsc): a 64-byte payload fits, 72 does not
    'strict-maxpkt': head(2, 300, max_pkt=64) + op_write(64) + op_write(72) + op_read() +
                     COMMIT,
    # guest-written packets in the initial data, read by the host
    'guest-pkts': head(0, 509, w=88, data=guest_pkt(0, 20, 7) + guest_pkt(48, 16, 8)) +
                  op_read() + op_read() + op_read() + COMMIT,
    # hostile header, then pokes between operations
    'pokes': head(1, 2, w=0x10000, r=12, mask=1, pend=99) + op_read() + op_write(8) +
             b'\x08\x00' + struct.pack('<IB', 24, 0) + b'\x08\x01' + struct.pack('<IB', 0, 0) +
             b'\x09' + struct.pack('<HB', 2, 4) + b'\xff\xff\xff\xff' + op_read() + COMMIT,
}

os.makedirs(OUT, exist_ok=True)
for name, blob in seeds.items():
    with open(os.path.join(OUT, name), 'wb') as f:
        f.write(blob)
print('wrote %d seeds to %s' % (len(seeds), OUT))
