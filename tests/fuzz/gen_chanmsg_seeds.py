#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Write seed inputs for fuzz_chanmsg into corpus/chanmsg/ (input layout at
the top of fuzz_chanmsg.c): well-formed VMBus sessions the fuzzer mutates."""
import os
import struct

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'corpus', 'chanmsg')


def post(payload, conn4=False, vp=0):
    sel = 220 if conn4 else 10
    return struct.pack('<BBBB', 0, vp, sel, len(payload)) + payload


def eom():
    return b'\x01'


def hdr(t):
    return struct.pack('<II', t, 0)


def initiate(ver):
    conn4 = ver >= 0x50000
    intpage = 2 if conn4 else 3 * 4096  # msg_sint 2, or an interrupt page
    return post(hdr(14) + struct.pack('<IIQQQ', ver, 0, intpage, 4 * 4096, 5 * 4096), conn4)


def gpadl(relid, handle, first_pfn, npages, split=False):
    pfns = [first_pfn + i for i in range(npages)]
    head = pfns if not split else pfns[:2]
    msg = hdr(8) + struct.pack('<IIHHII', relid, handle, 8 + 8 * npages, 1, npages * 4096, 0)
    out = post(msg + b''.join(struct.pack('<Q', p) for p in head))
    if split:
        out += post(hdr(9) + struct.pack('<II', 0, handle) +
                    b''.join(struct.pack('<Q', p) for p in pfns[2:]))
    return out


def open_chan(relid, handle, down=4, vp=0):
    return post(hdr(5) + struct.pack('<IIIII', relid, relid, handle, vp, down) + bytes(120))


def ring_packet(page, payload=b'abcdefgh'):
    # guest->host ring header at `page`; one inband packet at data offset 0
    desc = struct.pack('<HHHHQ', 6, 2, (16 + len(payload)) // 8, 0, 7) + payload
    w = len(desc) + 8
    return (struct.pack('<BHHB', 2, page + 1, 0, len(desc)) + desc +
            struct.pack('<BHII', 7, page, w, 0))


def session(ver, split=False):
    s = initiate(ver) + eom() + post(hdr(3)) + eom() * 4
    s += gpadl(1, 0xE1E10, 16, 8, split) + eom()
    s += open_chan(1, 0xE1E10) + eom()
    s += ring_packet(16) + struct.pack('<BHB', 3, 1, 1) + eom()
    s += post(hdr(7) + struct.pack('<I', 1)) + eom()
    s += post(hdr(11) + struct.pack('<II', 1, 0xE1E10)) + eom()
    if ver >= 0x30000:
        s += post(hdr(16)) + eom()
    return s


def subchannels():
    # channel 0 (relid 1) open; the VSP offers its subchannels 1 and 2
    # (relids 3, 4); the guest opens subchannel 1 and writes to it, closes
    # the primary (the subchannels are closed and rescinded), releases them
    # and unloads
    s = initiate(0x50003) + eom() + post(hdr(3)) + eom() * 4
    s += gpadl(1, 0xE1E10, 16, 8) + eom() + open_chan(1, 0xE1E10) + eom()
    s += b'\x05' + bytes([0x80 | (1 << 1)]) + eom() + b'\x05' + bytes([0x80 | (2 << 1)]) + eom()
    s += gpadl(3, 0xE1E11, 32, 8) + eom() + open_chan(3, 0xE1E11) + eom()
    s += ring_packet(32) + struct.pack('<BHB', 3, 3, 1) + eom()
    s += post(hdr(7) + struct.pack('<I', 1)) + eom() * 3
    s += post(hdr(7) + struct.pack('<I', 3)) + eom()
    s += post(hdr(13) + struct.pack('<I', 3)) + post(hdr(13) + struct.pack('<I', 4)) + eom()
    s += post(hdr(16)) + eom()
    return s


def main():
    os.makedirs(OUT, exist_ok=True)
    for ver in (0x50003, 0x50000, 0x40001, 0x30000, 0x20004, 0x10001, 0x0000D):
        with open(os.path.join(OUT, 'session-%x' % ver), 'wb') as f:
            f.write(session(ver))
    with open(os.path.join(OUT, 'session-split-gpadl'), 'wb') as f:
        f.write(session(0x50003, split=True))
    with open(os.path.join(OUT, 'subchannels'), 'wb') as f:
        f.write(subchannels())
    with open(os.path.join(OUT, 'modify-rescind'), 'wb') as f:
        f.write(session(0x50003)[:-2] + post(hdr(22) + struct.pack('<II', 1, 1)) + eom() +
                b'\x05\x01' + eom() + post(hdr(13) + struct.pack('<I', 2)) + eom())


if __name__ == '__main__':
    main()
