#!/usr/bin/env python3
"""Give a clean VHDX image a log to replay, as a crash would leave it
(VHDX 1.00 section 2.3), for test-vhdx-log.sh.

    make-vhdx-log.py IMAGE CASE

IMAGE must hold 0x33 in guest bytes 0..1 MiB (its first data block starts
with them). The log GUID is set in both headers and entries are written to
the log area. CASE:
  replay     two entries (seq 5 and 6, tail at the first) writing 0x77 to
             the block's first 8 KiB, zeroing 64..72 KiB and writing 0x88
             at 128 KiB, plus a stale entry of an older sequence (seq 2,
             0x99 at 256 KiB) that must not be applied
  badcrc     the same with a wrong checksum in each entry: nothing to replay
  header     a valid entry writing over the second header: refused (ignored)
  inlog      a valid entry writing into the log itself: ignored
  far        LastFileOffset a petabyte away: ignored
  ndesc      a descriptor count of 0xffffffff: ignored
  datasig    a data sector without its "data" signature: ignored
  wrap       one entry (seq 9, 0x5c at the block's first 4 KiB) that wraps
             around the end of the log
Prints the data block's file offset.
"""

import struct
import sys
import uuid

SECTOR = 4096
MiB = 1 << 20


def crc32c(data, crc=0):
    if not hasattr(crc32c, "table"):
        t = []
        for i in range(256):
            c = i
            for _ in range(8):
                c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
            t.append(c)
        crc32c.table = t
    t = crc32c.table
    crc ^= 0xFFFFFFFF
    for b in data:
        crc = t[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def entry(guid, seq, tail, descs, last, bad_crc=False, ndesc=None, datasig=b"data"):
    """descs: ("data", file_off, 4096 bytes) or ("zero", file_off, length)."""
    nd = len(descs) if ndesc is None else ndesc
    hdr_sectors = (64 + len(descs) * 32 + SECTOR - 1) // SECTOR
    data = [d for d in descs if d[0] == "data"]
    length = (hdr_sectors + len(data)) * SECTOR
    head = bytearray(hdr_sectors * SECTOR)
    struct.pack_into("<4sIIIQII16sQQ", head, 0, b"loge", 0, length, tail, seq, nd, 0,
                     guid, last, last)
    sectors = b""
    for i, d in enumerate(descs):
        if d[0] == "data":
            buf = d[2]
            struct.pack_into("<4s4sQQQ", head, 64 + 32 * i, b"desc", buf[4092:4096],
                             struct.unpack("<Q", buf[0:8])[0], d[1], seq)
            sectors += datasig + struct.pack("<I", seq >> 32) + buf[8:4092] + \
                struct.pack("<I", seq & 0xFFFFFFFF)
        else:
            struct.pack_into("<4sIQQQ", head, 64 + 32 * i, b"zero", 0, d[2], d[1], seq)
    e = bytearray(head + sectors)
    crc = crc32c(bytes(e))
    struct.pack_into("<I", e, 4, crc ^ (1 if bad_crc else 0))
    return bytes(e)


def main():
    path, case = sys.argv[1], sys.argv[2]
    with open(path, "r+b") as f:
        img = bytearray(f.read())
        hdrs = [64 * 1024, 128 * 1024]
        cur = max(hdrs, key=lambda o: struct.unpack_from("<Q", img, o + 8)[0])
        log_len, log_off = struct.unpack_from("<IQ", img, cur + 68)
        block = next(o for o in range(log_off + log_len, len(img), MiB)
                     if img[o:o + SECTOR] == b"\x33" * SECTOR)
        guid = uuid.uuid4().bytes_le
        last = len(img)
        log = bytearray(log_len)
        pat = lambda b: bytes([b]) * SECTOR  # noqa: E731
        if case in ("replay", "badcrc"):
            bad = case == "badcrc"
            e1 = entry(guid, 5, 0, [("data", block, pat(0x77)), ("data", block + SECTOR, pat(0x77)),
                                    ("zero", block + 64 * 1024, 2 * SECTOR)], last, bad)
            e2 = entry(guid, 6, 0, [("data", block + 128 * 1024, pat(0x88))], last, bad)
            stale = entry(guid, 2, 256 * 1024, [("data", block + 256 * 1024, pat(0x99))], last,
                          bad)
            log[0:len(e1)] = e1
            log[len(e1):len(e1) + len(e2)] = e2
            log[256 * 1024:256 * 1024 + len(stale)] = stale
        elif case == "wrap":
            e = entry(guid, 9, log_len - SECTOR, [("data", block, pat(0x5C))], last)
            log[log_len - SECTOR:] = e[:SECTOR]
            log[0:len(e) - SECTOR] = e[SECTOR:]
        else:
            target, kw = block, {}
            if case == "header":
                target = 128 * 1024
            elif case == "inlog":
                target = log_off + 512 * 1024
            elif case == "far":
                kw = {}
                last = 1 << 50
            elif case == "ndesc":
                kw = {"ndesc": 0xFFFFFFFF}
            elif case == "datasig":
                kw = {"datasig": b"dat\0"}
            e = entry(guid, 3, 0, [("data", target, pat(0x66))], last, **kw)
            log[0:len(e)] = e
        img[log_off:log_off + log_len] = log
        for o in hdrs:
            h = bytearray(img[o:o + SECTOR])
            h[48:64] = guid
            struct.pack_into("<I", h, 4, 0)
            struct.pack_into("<I", h, 4, crc32c(bytes(h)))
            img[o:o + SECTOR] = h
        f.seek(0)
        f.write(img)
    print(block)


if __name__ == "__main__":
    main()
