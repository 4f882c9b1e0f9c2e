#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Seed inputs for fuzz_nvsp and fuzz_rndis (tests/fuzz/corpus/{nvsp,rndis}).

fuzz_nvsp input:  u16 length + NVSP message, then pool operations (u8 each,
                  a completion may take a u8 index or a u64 id).
fuzz_rndis input: records of u8 op (bit 0: transmit walk, else control),
                  u16 length, bytes.
Run from the repository root: tests/fuzz/gen_netvsp_seeds.py
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def nvsp(t, body=b""):
    m = struct.pack("<I", t) + body
    return m + b"\0" * (40 - len(m))


def rec(op, data):
    return struct.pack("<BH", op, len(data)) + data


def rndis(t, body):
    return struct.pack("<II", t, 8 + len(body)) + body


def query(req_id, oid, info=b""):
    return rndis(4, struct.pack("<IIIII", req_id, oid, len(info), 20, 0) + info)


def setm(req_id, oid, info):
    return rndis(5, struct.pack("<IIIII", req_id, oid, len(info), 20, 0) + info)


def packet(frame):
    return rndis(1, struct.pack("<9I", 36, len(frame), 0, 0, 0, 0, 0, 0, 0) + frame)


def write(name, files):
    d = os.path.join(HERE, "corpus", name)
    os.makedirs(d, exist_ok=True)
    for fn, data in files.items():
        with open(os.path.join(d, fn), "wb") as f:
            f.write(data)


frame = bytes([2, 0, 0, 0, 0, 1, 0, 0x15, 0x5d, 1, 2, 3, 0x88, 0xb5]) + bytes(range(50))
pool_ops = bytes([0x00, 0x00, 0x10, 0x01, 0x13, 0x00, 0x01, 0x33]) + struct.pack("<Q", 3) + \
    bytes([0x03]) + struct.pack("<Q", 1 << 40) + bytes([0x00, 0x02])
write("nvsp", {
    "init": struct.pack("<H", 40) + nvsp(1, struct.pack("<II", 0x60001, 0x60001)) + pool_ops,
    "recv-buf": struct.pack("<H", 40) + nvsp(101, struct.pack("<IH", 0xe1e10, 0xcafe)) + pool_ops,
    "rndis-pkt": struct.pack("<H", 40) + nvsp(107, struct.pack("<III", 1, 0xffffffff, 0)),
    "revoke": struct.pack("<H", 6) + struct.pack("<IH", 103, 0xcafe),
})
def rss_params(flags, entries=128, queues=4):
    table = b"".join(struct.pack("<I", i % queues) for i in range(entries))
    hdr = struct.pack("<BBHHHIHIHIIII", 0x89, 2, 36, flags, 0, 0x1f01, 4 * entries, 36,
                      40, 36 + 4 * entries, 0, 0, 0)
    return hdr + table + bytes(range(40))


offload_hdr = struct.pack("<BBH", 0xa7, 3, 156) + b"\0" * 152
write("rndis", {
    "probe": b"".join([
        rec(0, rndis(2, struct.pack("<IIII", 1, 1, 0, 0x4000))),
        rec(0, query(2, 0x00010106)),
        rec(0, query(3, 0x01010101)),
        rec(0, query(4, 0x00020216)),
        rec(0, query(5, 0xFC01020D, offload_hdr)),
        rec(0, setm(6, 0xFC01020C, struct.pack("<BBH", 0x80, 3, 28) + b"\0" * 24)),
        rec(0, query(7, 0x00010114)),
        rec(0, query(8, 0x00010107)),
        rec(0, query(9, 0x00010203, struct.pack("<BBH", 0x88, 2, 18) + b"\0" * 14)),
        rec(0, setm(10, 0x0001010E, struct.pack("<I", 0x0d))),
        rec(0, rndis(8, struct.pack("<I", 11))),
        rec(0, rndis(3, struct.pack("<I", 12))),
    ]),
    "rss": b"".join([
        rec(0, rndis(2, struct.pack("<IIII", 1, 1, 0, 0x4000))),
        rec(0, query(2, 0x00010203, struct.pack("<BBH", 0x88, 2, 18) + b"\0" * 14)),
        # disable, then enable: header, 128-entry table, 40-byte key (Linux)
        rec(0, setm(3, 0x00010204, rss_params(0x10))),
        rec(0, setm(4, 0x00010204, rss_params(0))),
    ]),
    "transmit": rec(1, packet(frame) + packet(frame[:20]) + b"\0" * 16),
})
