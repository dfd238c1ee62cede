#!/usr/bin/env python3
"""Write the seed corpora of the operation-stream fuzz targets (ide, e1000,
uart, rtc, fwcfg, image-write, image-formats, xhci, i8042, acpi,
virtio-blk, virtio-mem, virtio-net, virtio-balloon, virtio-rng, x86-emul,
vm-config, qmp, xbzrle, nbd-server) into tests/fuzz/corpus/<target>/: each seed
is a short, meaningful guest (or host) session in the encoding the target's
switch reads (see tests/fuzz/fuzz-<target>.c), so fuzzing starts from inputs
that reach deep into the device; and qmp's dictionary (tests/fuzz/qmp.dict,
from monitor/schema.json). Run it again after changing an encoding:
    tests/fuzz/make-seeds.py"""

import os
import struct
import subprocess
import tempfile

TOP = os.path.dirname(os.path.abspath(__file__))


def u8(*v):
    return bytes(x & 0xff for x in v)


def u16(v):
    return struct.pack("<H", v & 0xffff)


def u32(v):
    return struct.pack("<I", v & 0xffffffff)


def write(target, seeds, prefix="seed-"):
    d = os.path.join(TOP, "corpus", target)
    os.makedirs(d, exist_ok=True)
    for name, data in seeds.items():
        with open(os.path.join(d, prefix + name), "wb") as f:
            f.write(data)


# ---- IDE: port index 0..7 primary, 8..15 secondary, 16/17 control ----
PRI, SEC = 0, 8


def ata(ch, dev, cmd, feat=0, count=0, lba=0):
    return u8(4, ch, dev, cmd, feat, count, lba, lba >> 8, lba >> 16)


def pio_in(ch, words):
    return u8(2, ch, (words + 3) // 4)


def pio_out(ch, words, w):
    return u8(3, ch, (words + 3) // 4) + u16(w)


def prd(i, addr, length, eot):
    return u8(8, 0, i) + u32(addr) + u32((length & 0xffff) | (0x80000000 if eot else 0))


def packet(ch, cdb, limit=0xfffe, dma=0):
    cdb = bytes(cdb) + bytes(12 - len(cdb))
    return u8(5, ch, 0, dma, limit, limit >> 8) + cdb


def ide():
    s = {}
    s["identify"] = ata(PRI, 0xa0, 0xec) + pio_in(PRI, 256) + u8(1, 7)
    s["pio-read"] = ata(PRI, 0xe0, 0x20, count=3, lba=5) + pio_in(PRI, 768) + u8(1, 7)
    s["pio-write"] = (ata(PRI, 0xe0, 0x30, count=2, lba=9) + pio_out(PRI, 512, 0xa55a) +
                      ata(PRI, 0xe0, 0x20, count=2, lba=9) + pio_in(PRI, 512))
    s["lba48"] = (u8(0, 2, 0, 0, 3, 1, 0, 0, 4, 0, 0, 5, 0) + ata(PRI, 0x40, 0x24, count=2, lba=7) +
                  pio_in(PRI, 512) + ata(PRI, 0x40, 0x34, count=1, lba=3) + pio_out(PRI, 256, 7))
    s["dma-read"] = (prd(0, 0x10000, 1000, False) + prd(1, 0x20000, 536, True) +
                     ata(PRI, 0xe0, 0xc8, count=3, lba=20) + u8(9, 0, 0x09) + u8(7, 0, 2, 0) +
                     u8(6, 0, 2, 0) + u32(4) + u8(6, 0, 0, 0) + u32(0))
    s["dma-write"] = (prd(0, 0x30000, 512, True) + u8(9, 0, 0x01) +
                      ata(PRI, 0xe0, 0xca, count=1, lba=30) + u8(1, 7) + u8(6, 0, 0, 0) + u32(0))
    s["dma-short-prd"] = (prd(0, 0x10000, 512, True) + ata(PRI, 0xe0, 0xc8, count=4) +
                          u8(9, 0, 0x09) + u8(7, 0, 2, 0) + u8(1, 7))
    s["features-flush-reset"] = (ata(PRI, 0xa0, 0xef, feat=0x03, count=0x45) +
                                 ata(PRI, 0xa0, 0xe7) + ata(PRI, 0xa0, 0x91, count=63) +
                                 ata(PRI, 0xa0, 0xc6, count=8) + ata(PRI, 0xe0, 0xc4, count=16) +
                                 pio_in(PRI, 16 * 256) + u8(0, 16, 0x04) + u8(0, 16, 0x00) +
                                 u8(1, 7) + u8(10, 0))
    s["atapi-identify"] = (ata(SEC, 0xa0, 0xec) + u8(1, 12, 1, 13) + ata(SEC, 0xa0, 0xa1) +
                           pio_in(SEC, 256) + ata(SEC, 0xa0, 0x08))
    inquiry = packet(SEC, [0x12, 0, 0, 0, 36]) + pio_in(SEC, 18)
    s["atapi-inquiry"] = inquiry + u8(1, 10, 1, 12, 1, 13, 1, 15)
    s["atapi-read"] = (packet(SEC, [0x28, 0, 0, 0, 0, 3, 0, 0, 2], 1000) + pio_in(SEC, 500) +
                       u8(1, 12, 1, 13) + pio_in(SEC, 500) + pio_in(SEC, 100) +
                       packet(SEC, [0xa8, 0, 0, 0, 0, 10, 0, 0, 0, 4]) + pio_in(SEC, 4096))
    s["atapi-dma"] = (prd(0, 0x10000, 4096, True) + packet(SEC, [0x28, 0, 0, 0, 0, 7, 0, 0, 2],
                                                           dma=1) + u8(9, 8, 0x09) + u8(7, 8, 10, 0))
    s["atapi-sense-toc-modes"] = (packet(SEC, [0x00]) + packet(SEC, [0x03, 0, 0, 0, 18]) +
                                  pio_in(SEC, 9) + packet(SEC, [0x43, 0, 0, 0, 0, 0, 0, 0, 0xff]) +
                                  pio_in(SEC, 128) + packet(SEC, [0x43, 2, 1, 0, 0, 0, 0, 0, 0xff]) +
                                  pio_in(SEC, 128) +
                                  packet(SEC, [0x5a, 0, 0x2a, 0, 0, 0, 0, 0, 0xff]) +
                                  pio_in(SEC, 128) + packet(SEC, [0x46, 0, 0, 0, 0, 0, 0, 0, 0xff]) +
                                  pio_in(SEC, 128) + packet(SEC, [0x4a, 1, 0, 0, 0x10, 0, 0, 0, 8]) +
                                  pio_in(SEC, 4) + packet(SEC, [0x25]) + pio_in(SEC, 4) +
                                  packet(SEC, [0xbd, 0, 0, 0, 0, 0, 0, 0, 0, 8]) + pio_in(SEC, 4) +
                                  packet(SEC, [0x51, 0, 0, 0, 0, 0, 0, 0, 0xff]) +
                                  pio_in(SEC, 64))
    s["atapi-lock-eject-change"] = (packet(SEC, [0x1e, 0, 0, 0, 1]) + u8(11, 0, 1) +
                                    packet(SEC, [0x1b, 0, 0, 0, 2]) + packet(SEC, [0x1e]) +
                                    packet(SEC, [0x1b, 0, 0, 0, 2]) + u8(11, 0, 0) +
                                    packet(SEC, [0x00]) + u8(11, 0, 3) + packet(SEC, [0x00]) +
                                    packet(SEC, [0x03, 0, 0, 0, 18]) + pio_in(SEC, 9) +
                                    packet(SEC, [0x4a, 1, 0, 0, 0x10, 0, 0, 0, 8]) +
                                    pio_in(SEC, 4) + packet(SEC, [0x1b, 0, 0, 0, 3]))
    # the host's tray (op 11, bits 4-5: 1 open, 2 close, 3 a medium in the open tray)
    gesn = packet(SEC, [0x4a, 1, 0, 0, 0x10, 0, 0, 0, 8]) + pio_in(SEC, 4)
    s["atapi-tray"] = (packet(SEC, [0x1e, 0, 0, 0, 1]) + u8(11, 0, 0x10) + gesn +
                       u8(11, 0, 0x12) + gesn + packet(SEC, [0x1b, 0, 0, 0, 3]) +
                       u8(11, 0, 0x31) + u8(11, 0, 0x10) + u8(11, 0, 0x30) + u8(11, 0, 0x31) +
                       packet(SEC, [0x00]) + u8(11, 0, 0x20) + gesn + packet(SEC, [0x00]) +
                       packet(SEC, [0x00]) + packet(SEC, [0x00]) +
                       packet(SEC, [0x28, 0, 0, 0, 0, 3, 0, 0, 2], 1000) + u8(11, 0, 0x10) +
                       pio_in(SEC, 500))
    s["slave-absent"] = ata(PRI, 0xb0, 0xec) + u8(1, 7) + ata(SEC, 0xb0, 0xa1) + pio_in(SEC, 256)
    write("ide", s)


# ---- e1000 ----
def mw(off, val):
    return u8(0) + u16(off) + u32(val)


def mr(off):
    return u8(1) + u16(off)


def ram(gpa, data):
    return u8(3) + u16(gpa >> 4) + u8(len(data) - 1) + data


def ring(tx, base, nlen, head, tail):
    return u8(9, 1 if tx else 0) + u16(base >> 4) + u8(nlen) + u16(head) + u16(tail)


def e1000():
    s = {}
    frame = b"\xff" * 6 + b"\x52\x54\x00\x12\x34\x57" + b"\x08\x00" + bytes(range(46))
    legacy = struct.pack("<QHBBBBH", 0x2000, 60, 0, 0x0b, 0, 0, 0)
    s["tx-legacy"] = (mw(0xd0, 0xffffffff) + ram(0x2000, frame) + ram(0x1000, legacy) +
                      ring(True, 0x1000, 0, 0, 0) + mw(0x400, 0x0103f0fa) + mw(0x3818, 1) +
                      u8(4) + mr(0xc0) + mr(0x3810) + mr(0x4074))
    ctx = struct.pack("<BBHBBHIBBH", 14, 14 + 20 - 1 + 11, 0, 14 + 20, 14 + 16, 0,
                      (1 << 29) | (1 << 24) | (1 << 26) | (54 + 100), 0, 54, 100)
    data = struct.pack("<QIBBH", 0x2000, (1 << 20) | (1 << 29) | (1 << 24) | (1 << 26) |
                       (1 << 27) | 64, 0, 2, 0)
    s["tx-tso"] = (ram(0x2000, frame) + ram(0x1000, ctx) + ram(0x1010, data) +
                   ring(True, 0x1000, 0, 0, 0) + mw(0x400, 0x0103f0fa) + mw(0x3818, 2) + u8(4))
    rxd = struct.pack("<QHHBBH", 0x4000, 0, 0, 0, 0, 0)
    s["rx"] = (ram(0x3000, rxd) + ram(0x3010, rxd) + ring(False, 0x3000, 0, 0, 2) +
               mw(0x100, 0x0000800a) + mw(0xd0, 0x9d) + u8(5) + u16(64) + frame[:64] +
               u8(5) + u16(1514) + frame[:64] + mr(0xc0) + mr(0x2810) + mr(0x4000 + 0x10))
    s["rx-no-buffers"] = mw(0x100, 0x2) + u8(5) + u16(60) + frame[:60] + mw(0x2818, 3)
    s["eeprom-phy"] = (mw(0x14, 0x0001) + mr(0x14) + mw(0x14, 0x3f01) + mr(0x14) +
                       mw(0x20, 0x08210000) + mr(0x20) + mw(0x20, 0x04200140) + mr(0x20) +
                       mw(0x10, 0x0b) + mr(0x10) + mw(0x10, 0x09) + mr(0x10))
    s["io-bar"] = (u8(2, 0, 2, 1) + u32(0x8) + u8(2, 4, 2, 0) + u8(2, 0, 2, 1) + u32(0xd0) +
                   u8(2, 4, 2, 1) + u32(0xffffffff) + u8(2, 6, 0, 0))
    s["filters"] = (mw(0x5400, 0x12005452) + mw(0x5404, 0x80005634) + mw(0x5200, 0xffffffff) +
                    mw(0x5600, 0xffffffff) + mw(0x100, 0x0004801a) + mw(0x38, 0x8100) +
                    mw(0x0, 0x1 << 26) + mr(0x8) + u8(6, 0) + u8(6, 1) + u8(7) + u8(8))
    s["irq-throttle"] = (mw(0xc4, 100) + mw(0x2820, 10) + mw(0x282c, 20) + mw(0xc8, 0x4) +
                         mr(0xc0) + mw(0xd8, 0xffffffff) + mr(0xd0) + u8(8))
    write("e1000", s)


# ---- UART and RTC (tests/fuzz/fuzz-pio.h): op, port offset, value ----
def pw(port, val):
    return u8(0, port, val)


def pr(port):
    return u8(3, port)


def uart():
    s = {}
    init = pw(3, 0x80) + pw(0, 1) + pw(1, 0) + pw(3, 0x03) + pw(2, 0xc7) + pw(1, 0x0f)
    s["loopback"] = (init + pw(4, 0x1b) + pw(0, 0x41) + pw(0, 0x42) + pr(5) + pr(2) + pr(0) +
                     pr(0) + pr(6) + pw(4, 0x1f) + pr(6) + pw(7, 0x5a) + pr(7))
    s["output-log"] = init + pw(4, 0x0b) + b"".join(pw(0, c) for c in b"hello\r\n") + u8(5, 0) + pr(5)
    s["host-input"] = (init + pw(4, 0x0b) + u8(9, 0, 7) + b"abcdefgh" + pr(2) + pr(5) + pr(0) +
                       u8(9, 0, 15) + b"0123456789abcdef" + b"".join(pr(0) for _ in range(17)))
    s["fifo-off-thre"] = (pw(2, 0) + pw(1, 0x02) + pr(2) + pw(0, 1) + pr(2) + pw(1, 0) +
                          pw(2, 0x01) + pw(2, 0x07) + pr(2))
    s["save-load"] = init + pw(4, 0x1b) + pw(0, 0x41) + u8(7, 0) + u8(6, 0) + u8(8, 0, 4) + u32(1)
    write("uart", s)


def rtc():
    s = {}
    rd = b"".join(pw(0, i) + pr(1) for i in range(14))
    s["read-time"] = rd
    s["set-time-binary-24h"] = (pw(0, 0x0b) + pw(1, 0x86) + pw(0, 0) + pw(1, 30) + pw(0, 2) +
                                pw(1, 59) + pw(0, 4) + pw(1, 23) + pw(0, 0x0b) + pw(1, 0x06) + rd)
    s["periodic-alarm-update"] = (pw(0, 0x0a) + pw(1, 0x23) + pw(0, 0x0b) + pw(1, 0x72) +
                                  pw(0, 1) + pw(1, 0xff) + pw(0, 3) + pw(1, 0xff) + pw(0, 5) +
                                  pw(1, 0xff) + u8(5, 0) + pw(0, 0x0c) + pr(1) + u8(5, 0) +
                                  pw(0, 0x0c) + pr(1) + pw(0, 0x0d) + pr(1))
    s["cmos-ram-nmi"] = (b"".join(pw(0, 0x80 | i) + pw(1, i * 3) + pr(1) for i in range(0x0e, 0x80, 9))
                         + pw(0, 0x7f) + pr(1) + pw(0, 0xff) + pr(1))
    s["divider-reset-save"] = (pw(0, 0x0a) + pw(1, 0x70) + pw(0, 0x0a) + pw(1, 0x26) + u8(6, 0) +
                               u8(7, 0) + u8(8, 0, 8) + u32(0x26020000) + u32(0))
    write("rtc", s)


# ---- fw_cfg ----
def fwcfg():
    s = {}
    sel = lambda i: u8(0, i)  # noqa: E731  (index into the harness's key table)
    s["signature-id"] = sel(0) + u8(1, 4) + sel(1) + u8(1, 4) + sel(2) + u8(1, 8)
    s["directory"] = sel(3) + u8(1, 64) + u8(1, 64) + u8(1, 64) + sel(4) + u8(1, 16)
    s["dma-read-skip"] = (u8(5, 0x0a, 0x21) + u16(4) + u32(0x2000) + u8(5, 0x04, 0) + u16(2) +
                          u32(0) + u8(5, 0x02, 0) + u16(8) + u32(0x3000) + u8(1, 2))
    s["dma-write-rw"] = (u8(6) + u32(0x3000) + b"W" * 32 + u8(5, 0x18, 0x22) + u16(16) +
                         u32(0x3000) + u8(5, 0x18, 0x21) + u16(4) + u32(0x3000) + u8(5, 0x18, 0x20) +
                         u16(1) + u32(0x3000))
    s["dma-bad"] = (u8(5, 0x0a, 0x21) + u16(0xffff) + u32((1 << 20) - 2) + u8(3) + u32((1 << 20) - 4) +
                    u32(0x0a | 0x20 << 16) + u32(4) + u32(0x2000) + u8(4) + u32((1 << 20) - 4) + u8(1) +
                    u8(4) + u32((1 << 20) + 8) + u8(0))
    s["split-trigger"] = (u8(3) + u32(0x4000) + u32(0x0a | 0x19 << 16) + u32(64) + u32(0x5000) +
                          u8(4) + u32(0x4000) + u8(0) + u8(2, 8, 2, 1) + u32(0x00400000) + u32(0))
    s["arch-keys-save"] = (sel(8) + u8(1, 17) + sel(9) + u8(1, 2) + u8(0, 200) + u16(0x8004) +
                           u8(1, 8) + u8(8) + u8(7) + u8(9, 6) + bytes(6))
    write("fwcfg", s)


# ---- image-write: mode byte, then op byte (bit 7: 512-aligned offset, bit 6: 512-multiple length)
def qop(op, off, length, *rest):
    b = u8(op)
    b += u16(off // 512) if op & 0x80 else u32(off)
    b += u8(length // 512 - 1) if op & 0x40 else u16(length - 1)
    return b + u8(*rest)


def image_write():
    s = {}
    A = 0xc0  # aligned offset and length
    for mode, name in ((0, "c512"), (1, "c4k"), (2, "c64k"), (3, "c2m")):
        s[name] = (u8(mode) + qop(A | 0, 0, 65536, 1) + qop(A | 0, 4096, 512, 2) +
                   qop(1, 70001, 3000, 3) + qop(A | 5, 0, 131072) + qop(A | 4, 0, 512) +
                   qop(A | 2, 0, 65536) + qop(A | 5, 0, 131072) + qop(A | 3, 65536, 8192, 1) +
                   qop(A | 6, 0, 131072) + qop(0, 3 << 20, 65536, 4) + qop(5, 3 << 20, 65536))
    s["snapshots"] = (u8(1) + qop(A | 0, 0, 131072, 9) + qop(A | 7, 0, 512, 0) +
                      qop(A | 0, 4096, 8192, 10) + qop(A | 7, 0, 512, 0) + qop(A | 2, 0, 65536) +
                      qop(A | 3, 65536, 65536, 1) + qop(A | 6, 0, 131072) + qop(A | 4, 0, 512))
    s["grow"] = (u8(1) + qop(A | 0, (4 << 20) - 4096, 4096, 5) + qop(A | 7, 0, 512, 1, 255) +
                 qop(A | 7, 0, 512, 1, 40) + qop(0, (4 << 20) + 1000, 50000, 6) +
                 qop(A | 6, 4 << 20, 65536))
    s["lazy-refcount64"] = (u8(1 | 4 | 8) + qop(A | 0, 0, 65536, 1) + qop(A | 2, 0, 4096) +
                            qop(A | 7, 0, 512, 0) + qop(A | 0, 0, 8192, 3) + qop(A | 6, 0, 8192))
    s["refcount1"] = (u8(1 | 8 | 16) + qop(A | 0, 0, 65536, 1) + qop(A | 7, 0, 512, 0) +
                      qop(A | 2, 0, 65536) + qop(A | 0, 0, 65536, 2) + qop(A | 3, 0, 65536, 0) +
                      qop(A | 6, 0, 65536))
    # the other formats (bits 5-7 of the mode), each with two sets of options
    for fmt, name, opts in ((1, "qed", ((1, "c64k"), (4, "c4k-table2"))),
                            (2, "vhdx", ((0, "dynamic"), (8 | 4, "fixed-zero"))),
                            (3, "vmdk", ((0, "sparse"), (8, "stream"))),
                            (4, "vpc", ((0, "dynamic"), (8 | 4, "fixed-force")))):
        for o, oname in opts:
            s[name + "-" + oname] = (u8(fmt << 5 | o) + qop(A | 0, 0, 65536, 1) +
                                     qop(1, 70001, 3000, 3) + qop(A | 2, 0, 8192) +
                                     qop(A | 3, 65536, 8192, 1) + qop(A | 5, 0, 131072) +
                                     qop(A | 4, 0, 512) + qop(A | 0, 0, 4096, 7) +
                                     qop(A | 6, 0, 131072) + qop(A | 7, 0, 512, 1, 8) +
                                     qop(0, 3 << 20, 65536, 4) + qop(5, 3 << 20, 65536))
    write("image-write", s)


# ---- xHCI: operations of tests/fuzz/fuzz-xhci.c ----
XFER_RING, BUF = 0x30000, 0x40000


def xw(off, val):  # 4-byte register write
    return u8(0, 0) + u16(off) + u32(val)


def xr(off, size=4):
    return u8(1, {1: 0, 2: 1, 4: 2, 8: 3}[size]) + u16(off)


def xtrb(gpa, param, status, ttype, flags, high=0):
    return u8(3) + u16(gpa >> 4) + u32(param) + u32(param >> 32) + u32(status) + \
        u8(ttype, flags) + u16(high)


def xcmd(ttype, slot=0, ctx=0, flags=0, ep=0, ring=0):
    # Set TR Dequeue Pointer takes one more byte: which transfer ring
    extra = u8(ring) if ttype == 16 else b""
    return u8(6, ttype - 1, slot, ctx, flags) + extra + u8(ep)


def xctx(index, dword, val, ctx=0):  # a dword of input context @ctx
    return u8(7, 1, ctx, index, dword) + u32(val)


def xenumerate(port):
    """Reset USB 2.0 @port, Enable Slot, Address Device (slot 1, EP0 ring at XFER_RING)."""
    mps = 64
    return (xw(0x440 + 0x10 * (port - 1), 1 << 9 | 1 << 4) +  # PORTSC: PP, PR
            xcmd(9) +                                          # Enable Slot
            xctx(0, 1, 0x3) +                                  # add slot and EP0
            xctx(1, 0, 1 << 27) + xctx(1, 1, port << 16) +     # one entry, root port
            xctx(2, 1, 3 << 1 | 4 << 3 | mps << 16) +          # EP0: CErr 3, control
            xctx(2, 2, XFER_RING | 1) + xctx(2, 3, 0) + xctx(2, 4, 8) +
            xcmd(11, slot=1))                                  # Address Device


def xget_descriptor(at, dtype, length):
    """GET_DESCRIPTOR on EP0 of slot 1 (Setup, Data IN, Status), doorbell 1."""
    setup = 0x80 | 6 << 8 | (dtype << 8) << 16 | length << 48
    return (xtrb(at, setup, 8, 2, 0x41, 3) + xtrb(at + 16, BUF, length, 3, 1, 1) +
            xtrb(at + 32, 0, 0, 4, 0x21) + u8(4, 1, 1) + u16(0))


def xsetup_trbs(at, request, value, length, data_in=True):
    """A control transfer's TRBs at @at: Setup, Data (if @length), Status."""
    setup = (0x80 if data_in else 0) | request << 8 | value << 16 | length << 48
    trt = (3 if data_in else 2) if length else 0
    trbs = xtrb(at, setup, 8, 2, 0x41, trt)
    if length:
        trbs += xtrb(at + 16, BUF, length, 3, 1, 1 if data_in else 0)
        at += 16
    return trbs + xtrb(at + 16, 0, 0, 4, 0x21, 0 if (data_in and length) else 1)


def xstorage_read():
    """usb-storage on port 2: enumerate, SET_CONFIGURATION, Configure Endpoint
    (bulk IN DCI 3, bulk OUT DCI 4), then a Bulk-Only READ(10) of block 0:
    CBW out, 512 bytes in, CSW in."""
    ring_in, ring_out, cbw_at = XFER_RING + 0x400, XFER_RING + 0x800, BUF + 0x100
    cbw = (struct.pack("<IIIBBB", 0x43425355, 1, 512, 0x80, 0, 10) +
           bytes([0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0]) + bytes(6))
    ep = (lambda dci, ttype, ring: xctx(dci + 1, 1, 3 << 1 | ttype << 3 | 512 << 16, 1) +
          xctx(dci + 1, 2, ring | 1, 1) + xctx(dci + 1, 4, 512, 1))
    return (u8(5, 0, 0) + u8(9, 2, 2) + xenumerate(2) +
            xsetup_trbs(XFER_RING, 9, 1, 0, data_in=False) + u8(4, 1, 1) + u16(0) +
            xctx(0, 1, 0x19, 1) + xctx(1, 0, 4 << 27, 1) + ep(3, 6, ring_in) +
            ep(4, 2, ring_out) + xcmd(12, slot=1, ctx=1) +
            u8(2) + u16(cbw_at >> 4) + u8(len(cbw) - 1) + cbw +
            xtrb(ring_out, cbw_at, 31, 1, 0x21) + u8(4, 1, 4) + u16(0) +
            xtrb(ring_in, BUF + 0x200, 512, 1, 0x21) + xtrb(ring_in + 16, BUF + 0x400, 13, 1, 0x21) +
            u8(4, 1, 3) + u16(0) + u8(8, 1) + u8(12))


def xhci():
    s = {}
    run = u8(5, 0, 0)
    s["registers"] = (b"".join(xr(o) for o in (0, 4, 8, 0x10, 0x14, 0x18, 0x20, 0x40, 0x44,
                                               0x48, 0x440, 0x1000, 0x1020)) +
                      xr(0x58, 8) + xw(0x40, 2) + xr(0x44) + xw(0x44, 0x41c) + u8(11))
    s["keyboard"] = (run + u8(9, 1, 0) + xenumerate(1) + xget_descriptor(XFER_RING, 1, 18) +
                     xget_descriptor(XFER_RING + 48, 2, 34) +
                     u8(10, 0, 4, 1) + u16(0) + u8(0, 1) + u8(8, 1) + u8(12))
    s["storage"] = (run + u8(9, 2, 2) + xenumerate(2) +
                    xget_descriptor(XFER_RING, 1, 18) + xcmd(12, slot=1, ctx=0) +
                    xcmd(14, slot=1, ep=1) + xcmd(15, slot=1, ep=1) + xcmd(16, slot=1, ep=1) +
                    u8(12) + xcmd(17, slot=1) + xcmd(10, slot=1) + u8(9, 2, 3))
    s["tablet-reset"] = (run + u8(9, 0, 1) + xenumerate(1) + u8(10, 2, 0, 0) + u16(1000) +
                         u8(0, 1) + u8(11) + run + xcmd(23) + u8(12) + u8(13) + u16(40) +
                         bytes(range(40)))
    s["storage-read"] = xstorage_read()
    write("xhci", s)
    # The bugs the fuzzer found, rebuilt in this encoding (make check replays them):
    # a doorbell target past the 31 endpoints (UBSan), and a state saved after
    # events were posted and the event ring segment then moved outside RAM, which
    # the load refused (aborts in any build).
    c = {}
    c["doorbell-target-beyond-31"] = (run + u8(9, 1, 0) + xenumerate(1) + u8(4, 1, 33) + u16(0) +
                                      u8(4, 1, 255) + u16(0))
    c["state-after-bad-event-segment"] = (run + xcmd(23) + xcmd(23) + u8(2) + u16(0x3000 >> 4) +
                                          u8(7) + u32(0) + u32(4) + u8(0, 1) + u16(0x1030) +
                                          u32(0x3000) + u32(0) + u8(12))
    write("xhci", c, prefix="crash-")


# ---- i8042: port index 0 is 0x60 (data), 4 is 0x64 (status / command) ----
def i8042():
    s = {}
    s["controller"] = (pw(4, 0xaa) + pr(4) + pr(0) + pw(4, 0xab) + pr(0) + pw(4, 0x20) + pr(0) +
                       pw(4, 0x60) + pw(0, 0x47) + pw(4, 0x20) + pr(0) + pw(4, 0xd0) + pr(0) +
                       pw(4, 0xd1) + pw(0, 0xdf) + pw(4, 0xad) + pw(4, 0xae) + pr(4))
    s["keyboard"] = (pw(0, 0xff) + pr(0) + pr(0) + pw(0, 0xf2) + pr(0) + pr(0) + pr(0) +
                     pw(0, 0xed) + pr(0) + pw(0, 0x07) + pr(0) + pw(0, 0xf3) + pw(0, 0x20) +
                     pr(0) + pw(0, 0xf0) + pw(0, 0x00) + pr(0) + pr(0) + pw(0, 0xf4) + pr(0) +
                     pw(0, 0xee) + pr(0) + pw(0, 0x12) + pr(0))
    s["aux-and-loops"] = (pw(4, 0xa8) + pw(4, 0xa9) + pr(0) + pw(4, 0xd4) + pw(0, 0xff) + pr(0) +
                          pw(4, 0xd2) + pw(0, 0x55) + pr(4) + pr(0) + pw(4, 0xd3) + pw(0, 0xaa) +
                          pr(0) + pw(4, 0xa7) + pr(4))
    s["reset-save-load"] = (pw(0, 0xf2) + u8(7, 0) + pr(0) + u8(6, 0) + pw(4, 0xfe) +
                            pw(4, 0xd1) + pw(0, 0xfe) + u8(8, 0, 12) + bytes(range(12)))
    write("i8042", s)


# ---- ACPI: block 0 PM (0x600), 1 GPE0 (0xafe0), 2 PCI hotplug (0xae00), 3 CPU hotplug (0xaf00) ----
def aw(block, off, size, val):
    return u8(0, block, off, {1: 0, 2: 1, 4: 2}[size]) + u32(val)


def ar(block, off, size):
    return u8(3, block, off, {1: 0, 2: 1, 4: 2}[size])


def acpi():
    s = {}
    gpe = ar(1, 0, 2) + aw(1, 0, 2, 0xffff) + aw(1, 2, 2, 0x000f)
    event = aw(3, 5, 1, 0) + ar(3, 4, 1) + ar(3, 8, 4) + ar(3, 0, 4)  # next event, flags, id
    s["cpu-plug-unplug"] = (ar(3, 0, 1) + aw(3, 0, 4, 0) + gpe + u8(5, 0, 2) + gpe + event +
                            aw(3, 4, 1, 0x02) + u8(6, 0, 2) + event + aw(3, 5, 1, 1) +
                            aw(3, 8, 4, 0x103) + aw(3, 5, 1, 2) + aw(3, 8, 4, 0x80) +
                            aw(3, 4, 1, 0x04) + aw(3, 4, 1, 0x08) + u8(7) + event +
                            aw(3, 5, 1, 3) + ar(3, 8, 4) + u8(10, 2) + u8(9, 2))
    s["pci-plug-eject"] = (aw(2, 0x10, 4, 0) + u8(5, 1, 3) + gpe + ar(2, 0, 4) + ar(2, 0xc, 4) +
                           u8(8, 3, 1) + ar(2, 0xc, 4) + u8(6, 1, 3) + ar(2, 4, 4) +
                           aw(2, 8, 4, 1 << 3) + ar(2, 4, 4) + aw(2, 0x14, 4, 1 << 3) +
                           ar(2, 0x14, 4) + u8(10, 1) + u8(9, 1))
    s["pm"] = (ar(0, 0, 2) + aw(0, 2, 2, 0x0121) + ar(0, 8, 4) + ar(0, 8, 4) + aw(0, 4, 2, 1) +
               ar(0, 4, 2) + aw(0, 0, 2, 0xffff) + u8(10, 0) + aw(0, 4, 2, 0x2001) +
               aw(0, 4, 2, 0x3c01) + u8(9, 0) + u8(11, 0, 16) + bytes(range(16)))
    write("acpi", s)


# ---- virtio-blk: operations of tests/fuzz/fuzz-virtio-blk.c ----
# Descriptors and headers name buffers in 16-byte units from BUF (0x20000); the
# plain guest write (operation 3) takes an absolute address in 16-byte units.
VB_IN, VB_OUT, VB_FLUSH, VB_GET_ID, VB_DISCARD, VB_WZ, VB_BAD = range(7)  # index into types[]


def vinit(want, q=0):
    return u8(0) + u32(want) + u8(q)


def vdesc(i, unit, length, flags, nxt=0):
    return u8(4, i) + u16(unit) + u16(length) + u8(flags, nxt)


def vhdr(unit, tidx, sector, past_end=False):
    return u8(5) + u16(unit) + u8(tidx) + u16(sector) + u8(0x80 if past_end else 0)


def vreq(first, hdr_unit, tidx, sector, data_unit=None, length=0, dev_writes=False,
         past_end=False):
    """Header, optional data, status in descriptors first.., then the kick and the I/O loop."""
    out = vhdr(hdr_unit, tidx, sector, past_end) + vdesc(first, hdr_unit, 16, 1, first + 1)
    st = first + 1
    if data_unit is not None:
        out += vdesc(first + 1, data_unit, length, 3 if dev_writes else 1, first + 2)
        st = first + 2
    return out + vdesc(st, 0xf00 + first, 1, 2) + u8(6, first) + u8(7, 8)


def virtio_blk():
    s = {}
    feats = 1 << 9 | 1 << 13 | 1 << 14  # FLUSH, DISCARD, WRITE_ZEROES
    seg = struct.pack("<QII", 4, 2, 0)  # sector 4, 2 sectors, no flags
    s["read-write-flush"] = (vinit(feats) + u8(3) + u16(0x2010) + u8(15) + bytes(range(1, 17)) +
                             vreq(0, 0, VB_OUT, 2, 0x10, 512) +
                             vreq(3, 0x200, VB_IN, 2, 0x300, 512, dev_writes=True) +
                             vreq(6, 0x400, VB_FLUSH, 0) +
                             vreq(8, 0x500, VB_GET_ID, 0, 0x600, 20, dev_writes=True) +
                             u8(11))
    s["discard-zeroes"] = (vinit(feats) + u8(3) + u16(0x2700) + u8(15) + seg +
                           vreq(0, 0, VB_DISCARD, 0, 0x700, 16) +
                           vreq(3, 0x100, VB_WZ, 0, 0x700, 16) + u8(10) + vinit(feats))
    s["bad-requests"] = (vinit(0) + vreq(0, 0, VB_IN, 0xffff, 0x10, 512, True, past_end=True) +
                         vreq(3, 0x100, VB_BAD, 0) + vdesc(6, 0, 16, 1, 6) + u8(6, 6) + u8(7, 8) +
                         u8(2, 0, 0x14, 0) + u8(10) + vinit(0) +
                         vreq(0, 0, VB_OUT, 0, 0x10, 511))
    # an indirect table of three at BUF + 0x8000: header, data, status
    table = (struct.pack("<QIHH", 0x20000, 16, 1, 1) + struct.pack("<QIHH", 0x20100, 512, 3, 2) +
             struct.pack("<QIHH", 0x2f000, 1, 2, 0))
    s["indirect-event-idx"] = (vinit(1 << 28 | 1 << 29) + vhdr(0, VB_IN, 1) + u8(3) +
                               u16(0x2800) + u8(47) + table + vdesc(0, 0x800, 48, 4) +
                               u8(6, 0) + u8(7, 8) + u8(12, 8) + bytes(8) + u8(9) + u8(8, 4, 1) +
                               u32(0))
    write("virtio-blk", s)


# ---- virtio-mem: the transport operations as for virtio-blk; 5 a request, 13 requested-size ----
def mreq(first, unit, tidx, block, nb, misaligned=False):
    """Request (plug 0, unplug 1, unplug-all 2, state 3, bad 4, 5) in descriptor
    @first, its response in @first + 1, the kick and the I/O loop."""
    return (u8(5) + u16(unit) + u8(tidx, block & 0xff, 1 if misaligned else 0, nb) +
            vdesc(first, unit, 24, 1, first + 1) + vdesc(first + 1, unit + 4, 10, 2) +
            u8(6, first) + u8(7, 8))


def virtio_mem():
    s = {}
    start = vinit(1)  # ACPI_PXM, as the unit test
    s["plug-state-unplug"] = (start + mreq(0, 0, 0, 0, 1) + mreq(2, 0x10, 3, 0, 2) +
                              mreq(4, 0x20, 0, 1, 1) + mreq(6, 0x30, 1, 0, 1) +
                              mreq(8, 0x40, 3, 0, 4) + u8(11) + mreq(10, 0x50, 2, 0, 0))
    s["bad-ranges"] = (start + mreq(0, 0, 0, 3, 2) + mreq(2, 0x10, 0, 0xff, 1) +
                       mreq(4, 0x20, 0, 0, 1, misaligned=True) + mreq(6, 0x30, 4, 0, 1) +
                       mreq(8, 0x40, 0, 0, 0) + mreq(10, 0x50, 3, 0x80, 7))
    s["requested-size"] = (start + u8(13, 4) + mreq(0, 0, 0, 0, 4) + u8(13, 0) +
                           mreq(2, 0x10, 3, 0, 4) + mreq(4, 0x20, 2, 0, 0) + u8(13, 5) +
                           u8(10) + start + mreq(0, 0, 0, 2, 2) + u8(11) + u8(12, 4) + u32(7))
    write("virtio-mem", s)


# ---- virtio-net: the transport operations; 5 transmits on the side queue (RING2) ----
GUEST_MAC = bytes.fromhex("525400123456")


def csum(b):
    if len(b) % 2:
        b += b"\0"
    t = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while t >> 16:
        t = (t & 0xffff) + (t >> 16)
    return ~t & 0xffff


def ipv4(proto, src, dst, payload, frag=0):
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 1, frag, 64, proto, 0,
                    bytes(src), bytes(dst))
    return h[:10] + struct.pack("!H", csum(h)) + h[12:] + payload


def eth(dst, ethertype, payload):
    return bytes(dst) + GUEST_MAC + struct.pack("!H", ethertype) + payload


def ntx(frame, hdr=bytes(12), fix=True):
    """The guest transmits a virtio-net header and @frame, its checksums made
    right by the harness unless @fix is False."""
    b = hdr + frame
    return u8(5, 1 if fix else 0) + u16(len(b)) + b


def nrx(first, count, length, unit=0x100):
    """@count receive buffers of @length from descriptor @first, made available and kicked."""
    out = b""
    for i in range(count):
        out += vdesc(first + i, unit + i * 0x80, length, 2)
    for i in range(count):
        out += u8(6, first + i)
    return out


def virtio_net():
    s = {}
    bcast = b"\xff" * 6
    gw, me, dns = [10, 0, 2, 2], [10, 0, 2, 15], [10, 0, 2, 3]
    bootp = (u8(1, 1, 6, 0) + bytes(24) + GUEST_MAC + bytes(10 + 192) +
             bytes.fromhex("63825363350101ff"))
    udp = struct.pack("!HHHH", 68, 67, 8 + len(bootp), 0) + bootp
    discover = eth(bcast, 0x0800, ipv4(17, [0] * 4, [255] * 4, udp))
    arp = eth(bcast, 0x0806, struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, GUEST_MAC,
                                         bytes(me), bytes(6), bytes(gw)))
    icmp = struct.pack("!BBHHH", 8, 0, 0, 1, 1) + bytes(range(32))
    icmp = icmp[:2] + struct.pack("!H", csum(icmp)) + icmp[4:]
    ping = eth(bytes.fromhex("525500000202"), 0x0800, ipv4(1, me, gw, icmp))
    syn = struct.pack("!HHIIBBHHH", 40000, 22, 1, 0, 5 << 4, 0x02, 65535, 0, 0)
    tcp = eth(bytes.fromhex("525500000202"), 0x0800, ipv4(6, me, gw, syn))
    query = struct.pack("!HHHHHH", 1, 0x100, 1, 0, 0, 0) + b"\x04host\x00\x00\x01\x00\x01"
    dnsq = eth(bytes.fromhex("525500000202"), 0x0800,
               ipv4(17, me, dns, struct.pack("!HHHH", 5353, 53, 8 + len(query), 0) + query))
    mrg = 1 << 5 | 1 << 15 | 1 << 16  # MAC, MRG_RXBUF, STATUS
    s["dhcp-mergeable"] = (vinit(mrg) + nrx(0, 16, 64) + ntx(discover) + u8(7, 8) + u8(11) +
                           u8(2, 3, 0, 1) + u8(2, 3, 8, 1))
    s["arp-ping-whole"] = (vinit(1 << 5 | 1 << 16) + nrx(0, 4, 1526) + ntx(arp) + u8(7, 8) +
                           ntx(ping) + u8(7, 8) + ntx(tcp) + u8(7, 8) + ntx(dnsq) + u8(7, 8))
    s["no-room"] = (vinit(1 << 5) + ntx(arp) + u8(7, 8) + nrx(0, 1, 64) + u8(7, 8) +
                    nrx(1, 2, 8) + ntx(discover) + u8(7, 8) + ntx(arp[:10]) + u8(7, 8) +
                    u8(10, 9) + vinit(mrg, 1) + vdesc(0, 0, 60, 0) + u8(6, 0) + u8(7, 8))
    # a TCP connection to the echo server on the namespace's loopback, after an
    # ARP request that tells slirp the guest's MAC: a fresh slirp's first
    # initial sequence number is 64001, so the guest can acknowledge its SYN-ACK
    def seg(seq, ack, flags, data=b""):
        t = struct.pack("!HHIIBBHHH", 40001, 22, seq, ack, 5 << 4, flags, 65535, 0, 0) + data
        return eth(bytes.fromhex("525500000202"), 0x0800, ipv4(6, me, gw, t))
    hello = b"hello, slirp\n"
    loop = u8(7, 1) * 4
    s["tcp-echo"] = (vinit(1 << 5 | 1 << 16) + nrx(0, 8, 1526) + ntx(arp) +
                     ntx(seg(1000, 0, 0x02)) + loop + ntx(seg(1001, 64002, 0x10)) +
                     ntx(seg(1001, 64002, 0x18, hello)) + loop +
                     ntx(seg(1001 + len(hello), 64002 + len(hello), 0x11)) + loop)
    # the link set down (op 13): an ARP request dropped, the state saved with
    # the link down and loaded (op 11), then up again and the request answered
    s["link-down-up"] = (vinit(1 << 5 | 1 << 16) + nrx(0, 4, 1526) + u8(13, 0) + ntx(arp) +
                         u8(7, 8) + u8(11) + u8(13, 1) + ntx(arp) + u8(7, 8))
    write("virtio-net", s)
    # Reproducers of the bugs the target found, in its final encoding:
    # a last fragment arriving first ended the process inside Debian 12's
    # libslirp (the user backend now drops IPv4 fragments), and a frame
    # needing more mergeable buffers than the ring held recursed without end.
    last = eth(bytes.fromhex("525500000202"), 0x0800, ipv4(1, me, gw, icmp, 1408 // 8))
    r = {}
    r["ipv4-last-fragment-first"] = vinit(1 << 5 | 1 << 16, 2) + ntx(last) + u8(7, 8)
    r["rx-buffers-too-few"] = vinit(mrg) + nrx(0, 2, 64) + ntx(discover) + u8(7, 8)
    write("virtio-net", r, prefix="crash-")


# ---- virtio-balloon: 5 PFNs or statistics records, 13 the host's side ----
def bbuf(unit, data, pfns=False):
    return u8(5) + u16(unit) + u8(1 if pfns else 0, len(data)) + data


def virtio_balloon():
    s = {}
    pfns = bytes(range(0, 64, 4)) * 4  # rewritten into the upper half of RAM and past it
    s["inflate-deflate"] = (u8(13, 0) + u16(8) + vinit(0, 0) + bbuf(0, pfns, True) +
                            vdesc(0, 0, 64, 0) + u8(6, 0) + u8(7, 8) + u8(2, 3, 4, 2) +
                            u8(1, 3, 4, 2) + u32(16) + u8(13, 1) + vinit(0, 1) +
                            bbuf(0, pfns, True) + vdesc(0, 0, 32, 0) + u8(6, 0) + u8(7, 8) +
                            u8(11))
    rec = b"".join(struct.pack("<HQ", t, 1000 + t) for t in (0, 4, 5, 9, 10, 0xffff))
    s["stats"] = (vinit(1 << 1, 2) + bbuf(0, rec) + vdesc(0, 0, len(rec), 0) + u8(6, 0) +
                  u8(7, 8) + u8(13, 2, 1) + u8(7, 8) + u8(13, 3) + bbuf(8, rec[:20]) +
                  vdesc(1, 8, 20, 0) + u8(6, 1) + u8(7, 8) + u8(11) + u8(13, 2, 0) + u8(13, 3))
    write("virtio-balloon", s)


# ---- virtio-rng: the transport operations; 5 waits for the rate limit's timer ----
def virtio_rng():
    s = {}
    s["fill"] = (vinit(0) + vdesc(0, 0, 64, 3, 1) + vdesc(1, 0x10, 16, 3, 2) +
                 vdesc(2, 0x20, 8, 2) + u8(6, 0) + u8(7, 8) + vdesc(3, 0x30, 8, 0) + u8(6, 3) +
                 u8(7, 8))
    # more than the 64 KiB bucket at once: the last buffer waits for the timer
    big = b"".join(vdesc(i, i * 0x220, 0x21f0, 2) for i in range(8)) + vdesc(8, 0xf00, 64, 2)
    s["drain-wait"] = (vinit(0) + big + b"".join(u8(6, i) for i in range(9)) + u8(7, 8) +
                       u8(5) + u8(11))
    write("virtio-rng", s)


# ---- x86-emul: a fake CPU's state, the instruction bytes, then its operand memory ----
def xreg(v):
    """A register of any 64-bit value (kind 3)."""
    return u8(3) + u32(v) + u32(v >> 32)


def xcpu(insn, mode=0x11, regs=None, rip=0x1000, fs=0, gs=0, mxcsr=0x1f80, ram=b"",
         fail=0, evs=0):
    """Long mode at CPL 0 with CR4.OSFXSR (mode 0x11) unless @mode says otherwise;
    @regs maps register numbers (rax 0 .. r15 15) to values."""
    regs = regs or {}
    out = u8(mode, fail, evs) + b"".join(xreg(regs.get(i, 0)) for i in range(16))
    out += xreg(rip) + u32(2) + xreg(fs) + xreg(gs) + u32(mxcsr)
    return out + u8(len(insn)) + bytes(insn) + u8(0) + ram


def x86_emul():
    s = {}
    mx = bytearray(0x1200)
    mx[0x1107:0x110b] = struct.pack("<I", 0x1f80)
    bad = bytearray(mx)
    bad[0x1107:0x110b] = struct.pack("<I", 0x10000)
    s["int3"] = xcpu([0xcc])
    s["popcnt"] = xcpu([0xf3, 0x48, 0x0f, 0xb8, 0xc1], regs={1: 0xff00ff})
    s["clac-stac"] = xcpu([0x0f, 0x01, 0xca])
    s["fwait"] = xcpu([0x9b], mode=0x41)
    s["ldmxcsr-rip"] = xcpu([0x0f, 0xae, 0x15, 0x00, 0x01, 0x00, 0x00], ram=bytes(mx))
    s["ldmxcsr-reserved"] = xcpu([0x0f, 0xae, 0x15, 0x00, 0x01, 0x00, 0x00], ram=bytes(bad))
    s["stmxcsr-fs-sib"] = xcpu([0x64, 0x0f, 0xae, 0x1c, 0x24], regs={4: 0x200}, fs=0x100,
                               ram=bytes(0x400))
    s["ldmxcsr-addr32-rex"] = xcpu([0x67, 0x41, 0x0f, 0xae, 0x50, 0x08],
                                   regs={8: 0xffffffff00001000}, ram=bytes(0x1100))
    # EIP and IP wrap at the code segment's width (32-bit, then 16-bit code)
    s["popcnt-eip-wrap"] = xcpu([0xf3, 0x0f, 0xb8, 0xc1], mode=0x12, regs={1: 0xff},
                                rip=0xfffffffe)
    s["fwait-ip-wrap"] = xcpu([0x9b], mode=0x40, rip=0xffff)
    write("x86-emul", s)


# ---- image-formats: an image made by qemu-img, as sparse patches, then operations ----
def isparse(img):
    """The image's nonzero 512-byte sectors as patches (u16 length, u32 offset, bytes)."""
    out, i = b"", 0
    while i < len(img):
        if not any(img[i:i + 512]):
            i += 512
            continue
        j = i
        while j < len(img) and j - i < 0xfe00 and any(img[j:j + 512]):
            j += 512
        out += u16(len(img[i:j])) + u32(i) + img[i:j]
        i = j
    return out + u16(0)


def iop(op, sector, count, *rest):
    """Operation @op on @count 512-byte sectors at @sector (both bits 0x80 and 0x40 set)."""
    return u8(0xc0 | op, sector, sector >> 8, count - 1, *rest)


def image_formats():
    """Seeds from QEMU's own images: they carry its random GUIDs and
    timestamps, so they differ each time this runs."""
    fmts = {"qed": 0, "vhdx": 1, "vmdk": 2, "vpc": 3}
    ops = (iop(0, 0, 128) + iop(1, 100, 8, 0x5a) + iop(1, 4000, 16, 0x11) + iop(2, 2048, 64, 1) +
           iop(3, 0, 8) + iop(5, 0, 256) + iop(4, 0, 1) + iop(0x20 | 6, 0, 1) +
           iop(7, 0, 1) + iop(0, 96, 16))
    kinds = [("qed", []), ("vhdx", ["-o", "block_size=1M"]), ("vmdk", []),
             ("vmdk", ["-o", "subformat=streamOptimized"]), ("vpc", []),
             ("vpc", ["-o", "subformat=fixed"])]
    s = {}
    with tempfile.TemporaryDirectory() as d:
        raw = os.path.join(d, "raw")
        data = bytearray(4 << 20)
        data[0:4096] = b"\x33" * 4096  # where make-vhdx-log.py finds the first block
        data[(3 << 20) + 4096:(3 << 20) + 12288] = bytes(range(256)) * 32
        with open(raw, "wb") as f:
            f.write(data)

        def convert(fmt, opts, name):
            img = os.path.join(d, name)
            subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", fmt] + opts + [raw, img],
                           check=True)
            return img

        for n, (fmt, opts) in enumerate(kinds):
            name = fmt + ("-" + opts[1].split("=")[1] if opts else "")
            with open(convert(fmt, opts, name), "rb") as f:
                img = f.read()
            fix = 8 if fmt in ("vhdx", "vpc") else 0
            s[name] = u8(fmts[fmt] | 4 | fix) + u32(len(img)) + isparse(img) + ops
            s[name + "-ro"] = u8(fmts[fmt]) + u32(len(img)) + isparse(img) + iop(0, 0, 255)
            empty = os.path.join(d, "empty-" + name)
            subprocess.run(["qemu-img", "create", "-q", "-f", fmt] + opts + [empty, "4M"],
                           check=True)
            with open(empty, "rb") as f:
                img = f.read()
            s["empty-" + name] = u8(fmts[fmt] | 4) + u32(len(img)) + isparse(img) + ops
        for case in ("replay", "wrap"):
            img = convert("vhdx", ["-o", "block_size=1M"], "log-" + case)
            subprocess.run(["python3", os.path.join(TOP, "..", "block", "make-vhdx-log.py"), img,
                            case], check=True, stdout=subprocess.DEVNULL)
            with open(img, "rb") as f:
                img = f.read()
            s["vhdx-log-" + case] = u8(1 | 4 | 8) + u32(len(img)) + isparse(img) + ops
    write("image-formats", s)


# ---- vm-config: VM definitions, JSON text ----
def vm_config():
    import json
    small = {"name": "a", "boot": {"kernel": "/k"}}
    full = {
        "name": "vm-1.x", "vcpus": 2, "maxcpus": 4, "memory": "512M", "cpu": "host,-avx",
        "boot": {"firmware": "/bios.bin", "order": ["vda", "n0"]},
        "disks": [{"id": "vda", "driver": "virtio-blk", "file": "/d.qcow2", "format": "qcow2",
                   "cache": "none", "aio": "native", "serial": "S1", "werror": "stop",
                   "rerror": "report", "queues": 2,
                   "throttle": {"bps_rd": 1048576, "bps_rd_max": 4194304,
                                "bps_rd_max_length": 3, "iops_wr": 100, "iops_size": 8192}},
                  {"id": "cd", "driver": "ide-cd", "file": "/c.iso", "format": "raw",
                   "readonly": True},
                  {"id": "u", "driver": "usb-storage", "file": "/u.vhdx", "format": "vhdx",
                   "removable": True}],
        "nics": [{"id": "n0", "driver": "virtio-net", "backend": "user", "mac": "52:54:00:12:34:56",
                  "hostfwd": ["tcp::2222-:22", "udp:127.0.0.1:53-:53"]},
                 {"id": "n1", "driver": "e1000", "backend": "tap", "ifname": "tap0"}],
        "input": [{"id": "kbd", "driver": "usb-kbd"}, {"id": "tab", "driver": "usb-tablet"}],
        "rng": True, "balloon": True, "usb": True, "serial": {"log": "/s.log"},
        "on_reboot": "shutdown", "autostart": True, "acpi": True, "pvpanic": True,
        "mem_backend": "memfd", "mem_thp": False, "debugcon": "/dbg", "start": False,
        "maxmem": "2G",
        "memory_devices": [{"id": "vmem0", "memdev": "mem0", "size": "256M",
                            "requested_size": "64M", "block_size": "2M"}],
    }
    s = {
        "small": small,
        "full": full,
        "hugepages": dict(small, memory=1 << 30, mem_backend="hugepages", incoming=True,
                          boot={"kernel": "/k", "initrd": "/i", "cmdline": "console=ttyS0"}),
    }
    write("vm-config", {k: json.dumps(v).encode() for k, v in s.items()})
    # accepted, but its default memdev ("<id>-mem", 64 characters) did not parse again
    long_id = dict(small, maxmem="1G", memory_devices=[{"id": "m" + "1" * 59, "size": "256M"}])
    write("vm-config", {"memdev-default-too-long": json.dumps(long_id).encode()}, prefix="crash-")


def qmp():
    import json

    def cmd(execute, i=None, **args):
        m = {"execute": execute}
        if args:
            m["arguments"] = {k.replace("_", "-"): v for k, v in args.items()}
        if i is not None:
            m["id"] = i
        return m

    def vm(execute, i=None, **args):  # a VM-scoped command for VM "a"
        return cmd(execute, i, vm="a", **args)

    create = cmd("vm-create", 1, name="a", vcpus=2, memory="256M", start=True)
    hmp = lambda line: vm("human-monitor-command", command_line=line)  # noqa: E731
    s = {
        "lifecycle": [create, vm("query-status", 2), vm("stop"), vm("cont"),
                      vm("system_reset"), vm("system_powerdown"), vm("inject-nmi"),
                      cmd("query-vms", vm="a"),
                      cmd("vm-destroy", "d", vm="a"), cmd("vm-start", vm="a"),
                      cmd("vm-delete", vm="a", force=True), cmd("query-vms")],
        "define": [cmd("vm-create", name="b", start=False, autostart=True,
                       serial={"log": "$ROOT/b.log"}),
                   cmd("vm-create", name="b"), cmd("vm-start", vm="b"), cmd("quit", vm="b"),
                   cmd("vm-delete", vm="b")],
        "hmp": [create] + [hmp(x) for x in (
            "info status", "info version", "info name", "info kvm", "info block",
            "info blockstats", "info cpus", "info pci", "info network", "info snapshots",
            "stop", "c", "savevm t1", "info snapshots", "loadvm t1", "delvm t1", "info",
            "eject -f cd", "eject", "change cd /c.iso raw read-only", "change cd -f",
            "nosuch x", " ", "q")],
        "input": [create,
                  vm("send-key", keys=[{"type": "qcode", "data": "ctrl"},
                                       {"type": "qcode", "data": "alt"},
                                       {"type": "number", "data": 0x53}], hold_time=10),
                  vm("input-send-event", device="kbd", events=[
                      {"type": "key", "data": {"down": True,
                                               "key": {"type": "qcode", "data": "a"}}},
                      {"type": "btn", "data": {"down": True, "button": "left"}},
                      {"type": "rel", "data": {"axis": "x", "value": -5}},
                      {"type": "abs", "data": {"axis": "y", "value": 32767}}]),
                  vm("x-query-usb"), vm("query-name"), vm("query-uuid"),
                  vm("query-cpus-fast"), vm("query-hotpluggable-cpus"),
                  vm("query-chardev"), vm("query-memdev"), vm("query-iothreads")],
        "ringbuf": [create, vm("ringbuf-write", device="serial0", data="aGk=", format="base64"),
                    vm("ringbuf-write", device="serial0", data="hi\n"),
                    vm("ringbuf-read", device="serial0", size=16, format="utf8"),
                    vm("ringbuf-read", device="serial0", size=-1)],
        "hotplug": [create,
                    vm("blockdev-add", driver="file", node_name="f0", filename="$ROOT/d.img"),
                    vm("blockdev-add", driver="qcow2", node_name="q0",
                       file={"driver": "file", "filename": "$ROOT/d.qcow2"}, read_only=True),
                    vm("device_add", driver="virtio-blk-pci", id="vdb", drive="f0"),
                    vm("device_add", driver="usb-storage", id="u0", drive="q0", bus="xhci.0",
                       port="2"),
                    vm("device_add", driver="host-x86_64-cpu", socket_id=1, core_id=0,
                       thread_id=0),
                    vm("block_resize", node_name="f0", size=1 << 20),
                    vm("netdev_add", type="user", id="n1", hostfwd=["tcp::2222-:22"]),
                    vm("device_add", driver="virtio-net-pci", id="nic1", netdev="n1",
                       mac="52:54:00:00:00:01"),
                    vm("set_link", name="nic1", up=False), vm("set_link", name="n1", up=True),
                    vm("block_set_io_throttle", device="vdb", bps=0, bps_rd=1 << 20, bps_wr=0,
                       iops=100, iops_rd=0, iops_wr=0, iops_max=200, iops_max_length=2,
                       iops_size=4096, group="vdb"),
                    vm("eject", id="cd", force=True), vm("blockdev-open-tray", device="cd"),
                    vm("blockdev-remove-medium", id="cd"),
                    vm("blockdev-insert-medium", id="cd", node_name="f0"),
                    vm("blockdev-close-tray", id="cd"),
                    vm("blockdev-change-medium", id="cd", filename="/c.iso", format="raw",
                       read_only_mode="retain"),
                    vm("device_del", id="vdb"), vm("netdev_del", id="n1"),
                    vm("blockdev-del", node_name="f0"), vm("query-pci"), vm("query-block"),
                    vm("query-blockstats", query_nodes=True)],
        "memory": [create, vm("balloon", value=128 << 20), vm("query-balloon"),
                   vm("pmemsave", val=0x100000, size=4096, filename="$ROOT/mem.bin"),
                   vm("pmemsave", val=-1, size=1 << 62, filename="$ROOT/big.bin"),
                   vm("dump-guest-memory", paging=False, protocol="file:$ROOT/core.elf"),
                   vm("dump-guest-memory", paging=False, protocol="file:$ROOT/c2.elf",
                      detach=True, begin=0x1000, length=0x2000, format="elf"),
                   vm("query-dump"), vm("query-dump-guest-memory-capability"),
                   hmp("dump-guest-memory -d $ROOT/h 0 4+4"), hmp("info dump"),
                   vm("memsave", val=0x100000, size=4096, filename="$ROOT/v.bin", cpu_index=0),
                   hmp("memsave 0x100000 16 /x"), hmp("memsave -0x8000000000000000/-1 (2*~0|1^3&4) y"),
                   hmp('pmemsave 0x100000%7 16 "$ROOT/p"'), hmp("xp /16xb 0x100000"),
                   hmp("x /3c 0xfffffffffffffffe"), hmp("gva2gpa 0x1000"), hmp("info tlb"),
                   hmp("xp /99999999999999999999xg 0"), hmp("info mem"),
                   hmp("info block-jobs"), hmp("block_stream vda 1.5k $ROOT/b"),
                   hmp("block_job_set_speed vda 0x10E"), hmp("block_job_cancel -f vda"),
                   hmp("drive_mirror -n -f vda $ROOT/m qcow2"), hmp("block_job_pause -x"),
                   hmp("drive_backup -f -c vda $ROOT/k"),
                   vm("qom-get", path="/machine/peripheral/vmem0", property="size"),
                   vm("qom-set", path="/machine/peripheral/vmem0", property="requested-size",
                      value=1 << 21),
                   vm("query-memory-devices"), vm("query-memory-size-summary")],
        "jobs": [create, vm("query-jobs"), vm("query-block-jobs"),
                 vm("blockdev-snapshot-sync", device="vda", snapshot_file="$ROOT/o.qcow2",
                    format="qcow2", mode="absolute-paths"),
                 vm("transaction", actions=[
                     {"type": "blockdev-snapshot-sync",
                      "data": {"device": "vda", "snapshot-file": "$ROOT/o2.qcow2"}},
                     {"type": "abort", "data": {}}]),
                 vm("block-stream", job_id="j1", device="vda", speed=1 << 20),
                 vm("block-commit", job_id="j2", device="vda", top_node="o", base_node="b"),
                 vm("blockdev-snapshot", node="vda", overlay="o"),
                 vm("blockdev-mirror", job_id="j3", device="vda", target="o", sync="top",
                    granularity=4096, on_source_error="stop", on_target_error="ignore"),
                 vm("blockdev-mirror", device="vda", target="vda", sync="incremental",
                    granularity=1000, speed=-1),
                 vm("drive-mirror", job_id="j4", device="vda", target="$ROOT/m.qcow2",
                    sync="none", node_name="m", format="qcow2", mode="absolute-paths"),
                 vm("drive-mirror", device="vda", target="$ROOT/m.qcow2", sync="full",
                    mode="existing"),
                 vm("blockdev-backup", job_id="j5", device="vda", target="o", sync="full",
                    speed=1 << 16, on_target_error="stop"),
                 vm("drive-backup", job_id="j6", device="vda", target="$ROOT/k.qcow2",
                    sync="none", format="qcow2", mode="absolute-paths"),
                 vm("drive-backup", device="vda", target="$ROOT/k.qcow2", sync="incremental",
                    bitmap="b0", bitmap_mode="always", compress=True),
                 vm("transaction", actions=[
                     {"type": "blockdev-snapshot-internal-sync",
                      "data": {"device": "vda", "name": "i1"}},
                     {"type": "blockdev-backup",
                      "data": {"device": "vda", "target": "o", "sync": "top"}}],
                    properties={"completion-mode": "grouped"}),
                 vm("block-dirty-bitmap-add", node="vda", name="b0", granularity=4096,
                    disabled=True),
                 vm("block-dirty-bitmap-merge", node="vda", target="b0",
                    bitmaps=["b0", {"node": "o", "name": "b1"}]),
                 vm("block-dirty-bitmap-enable", node="vda", name="b0"),
                 vm("blockdev-backup", device="vda", target="o", sync="bitmap", bitmap="b0",
                    bitmap_mode="always"),
                 vm("block-dirty-bitmap-clear", node="vda", name="b0"),
                 vm("block-dirty-bitmap-remove", node="o", name="b0"),
                 vm("transaction", actions=[
                     {"type": "block-dirty-bitmap-add",
                      "data": {"node": "vda", "name": "t1", "disabled": True}},
                     {"type": "block-dirty-bitmap-merge",
                      "data": {"node": "vda", "target": "t1",
                               "bitmaps": ["b0", {"node": "o", "name": "b1"}]}},
                     {"type": "block-dirty-bitmap-remove", "data": {"node": "o", "name": "b1"}},
                     {"type": "block-dirty-bitmap-clear", "data": {"node": "vda", "name": "b0"}},
                     {"type": "block-dirty-bitmap-disable",
                      "data": {"node": "vda", "name": "b0"}},
                     {"type": "blockdev-backup",
                      "data": {"device": "vda", "target": "o", "sync": "incremental",
                               "bitmap": "t1"}}]),
                 vm("block-job-set-speed", device="j1", speed=0),
                 vm("block-job-pause", device="j1"), vm("block-job-resume", device="j1"),
                 vm("block-job-complete", device="j2"), vm("block-job-cancel", device="j1",
                                                           force=True),
                 vm("job-pause", id="j1"), vm("job-resume", id="j1"), vm("job-cancel", id="j1"),
                 vm("job-complete", id="j1"), vm("job-finalize", id="j1"),
                 vm("job-dismiss", id="j1"), vm("block-job-finalize", id="j1"),
                 vm("block-job-dismiss", id="j1"),
                 vm("snapshot-save", job_id="s1", tag="t", vmstate="vda", devices=["vda"]),
                 vm("snapshot-load", job_id="s2", tag="t", vmstate="vda", devices=["vda"]),
                 vm("snapshot-delete", job_id="s3", tag="t", devices=["vda"])],
        "migration": [create,
                      vm("migrate-set-parameters", max_bandwidth=1 << 30, downtime_limit=300,
                         tls_creds="tls0", tls_hostname="h", tls_authz="az0",
                         xbzrle_cache_size=1 << 20, announce_initial=50, announce_max=550,
                         announce_rounds=5, announce_step=100),
                      vm("announce-self", initial=0, max=0, rounds=1, step=0,
                         interfaces=["n0"], id="x"),
                      vm("migrate-set-capabilities", capabilities=[
                          {"capability": "auto-converge", "state": True},
                          {"capability": "xbzrle", "state": True},
                          {"capability": "zero-blocks", "state": False}]),
                      vm("query-migrate-capabilities"), vm("query-migrate-parameters"),
                      vm("query-migrate"), vm("migrate_cancel"),
                      cmd("object-add", qom_type="tls-creds-psk", id="tls0",
                          dir="$ROOT/tls", endpoint="client", username="u"),
                      cmd("object-add", qom_type="authz-simple", id="az0", identity="CN=a"),
                      cmd("object-del", id="tls0"), cmd("object-del", id="az0")],
        "save": [create, cmd("vm-save", vm="a", path="$ROOT/s", stop=True),
                 cmd("vm-restore", path="$ROOT/s", name="b", paused=True,
                     disks=[{"id": "vda", "file": "$ROOT/d.img", "format": "raw"}],
                     nics=[{"id": "n0", "ifname": "tap0"}]),
                 cmd("query-vms"), cmd("vm-destroy", vm="b"),
                 cmd("x-daemon-upgrade-return", vm="b"), cmd("x-daemon-upgrade-finish")],
        "protocol": [cmd("query-version", "v"), cmd("query-commands", [1, {"a": None}]),
                     cmd("query-qmp-schema"), cmd("query-kvm"), cmd("query-target"),
                     cmd("query-machines"), cmd("add-fd", fdset_id=1, opaque="x"),
                     cmd("remove-fd", fdset_id=1, fd=3), cmd("query-fdsets"),
                     cmd("getfd", fdname="f"), cmd("closefd", fdname="f"),
                     cmd("qmp_capabilities"), {"execute": 1}, {"arguments": {}}, [], 7,
                     {"exec-oob": "query-vms"}, cmd("query-status", vm="nosuch"),
                     cmd("query-status"), cmd("nosuch-command", 3.5)],
    }
    write("qmp", {k: "\n".join(json.dumps(m) for m in v).encode() for k, v in s.items()})
    # ids the daemon once wrote as a bare number, and as invalid JSON (a key)
    forged = [cmd("query-vms", "\x01u64:5"), cmd("query-vms", {"\x01u64:5": [1]})]
    write("qmp", {"id-u64-marker": "\n".join(json.dumps(m) for m in forged).encode()},
          prefix="crash-")

    # The dictionary (libFuzzer -dict, fuzz.sh): every name the schema knows,
    # the strings the handlers compare with, and the path placeholder.
    with open(os.path.join(TOP, "..", "..", "monitor", "schema.json")) as f:
        schema = json.load(f)
    words = {"execute", "arguments", "id", "vm", "$ROOT/", "true", "false", "null"}
    words |= {"info", "status", "version", "name", "kvm", "block", "blockstats", "cpus", "pci",
              "network", "snapshots", "savevm", "loadvm", "delvm", "virtio-blk-pci",
              "virtio-net-pci", "e1000", "usb-storage", "usb-kbd", "usb-tablet", "xhci.0",
              "host-x86_64-cpu", "qcode", "number", "key", "btn", "rel", "abs", "user", "tap",
              "file", "qcow2", "raw", "nbd", "rbd", "tls-creds-psk", "tls-creds-x509",
              "authz-simple", "authz-list", "blockdev-snapshot-sync", "blockdev-snapshot"}

    def members(m):
        for k, v in (m or {}).items():
            words.add(k.lstrip("*"))
    for c in schema["commands"].values():
        if isinstance(c.get("data"), dict):
            members(c["data"])
    words |= set(schema["commands"]) | set(schema["events"])
    for t in schema["types"].values():
        members(t.get("members"))
        words |= set(t.get("enum", []))
    with open(os.path.join(TOP, "qmp.dict"), "w") as f:
        f.write("# Written by make-seeds.py from monitor/schema.json: do not edit.\n")
        for w in sorted(words):
            f.write('"%s"\n' % w)


# ---- xbzrle: a source's encodings to decode, and changes to encode and decode ----
def xbzrle():
    def patch(*changes):
        return b"".join(struct.pack("<HB", off, v) for off, v in changes)
    write("xbzrle", {
        # decode (first byte < 128): one byte changed at 0, at 4095; runs past the page
        "decode-first-byte": u8(0, 0x00, 0x01, 0xaa),
        "decode-last-byte": u8(0, 0xff, 0x1f, 0x01, 0xaa),
        "decode-past-page": u8(0, 0x80, 0x20, 0x01, 0xaa),
        "decode-two-runs": u8(0, 0x10, 0x02, 1, 2, 0x81, 0x01, 0x03, 4, 5, 6),
        # encode and decode back (first byte >= 128): the migration guest's one
        # byte, scattered bytes, every page's end, over a small limit
        "encode-one-byte": u8(0x81) + patch((0, 1)),
        "encode-scattered": u8(0x81) + patch(*[(i * 97, i) for i in range(1, 40)]),
        "encode-ends": u8(0x81) + patch((0, 9), (4095, 9), (127, 1), (128, 2)),
        "encode-over-limit": u8(0x80) + patch(*[(i * 2, 0x55) for i in range(60)]),
    })


# ---- nbd-server: what a client sends after the greeting (big-endian) ----
def nbd_server():
    def opt(o, data=b""):
        return struct.pack(">QII", 0x49484156454F5054, o, len(data)) + data

    def info(o, name, reqs=()):
        n = name.encode()
        return opt(o, struct.pack(">I", len(n)) + n + struct.pack(">H", len(reqs)) +
                   b"".join(struct.pack(">H", r) for r in reqs))

    def req(typ, off, length, data=b"", flags=0, cookie=1):
        return struct.pack(">IHHQQI", 0x25609513, flags, typ, cookie, off, length) + data

    flags = struct.pack(">I", 3)
    go_w = flags + info(7, "w", (3,))
    write("nbd-server", {
        "list-info-abort": flags + opt(3) + info(6, "r", (1, 2, 3)) + info(6, "nosuch") +
        opt(8) + opt(9, b"\0" * 8) + opt(99) + opt(2),
        "export-name": struct.pack(">I", 1) + opt(1, b"w") + req(0, 0, 4096),
        "go-read-write": go_w + req(1, 4096, 512, b"\xab" * 512) + req(0, 4096, 512) +
        req(3, 0, 0) + req(2, 0, 0),
        "go-zero-trim-cache": go_w + req(6, 0, 65536) + req(6, 65536, 4096, flags=2) +
        req(4, 8192, 4096) + req(5, 0, 1 << 20) + req(1, 0, 4, b"fua!", flags=1),
        "go-read-only": flags + info(7, "r") + req(1, 0, 4, b"nope") + req(0, (1 << 20) - 4, 8),
        "go-bad-requests": go_w + req(0, 1 << 20, 1) + req(0, 0, 64 << 20) + req(9, 0, 0) +
        req(0, 0, 512, flags=4) + struct.pack(">I", 0xdeadbeef) + bytes(24),
    })


if __name__ == "__main__":
    ide()
    e1000()
    uart()
    rtc()
    fwcfg()
    image_write()
    image_formats()
    xhci()
    i8042()
    acpi()
    virtio_blk()
    virtio_mem()
    virtio_net()
    virtio_balloon()
    virtio_rng()
    x86_emul()
    vm_config()
    qmp()
    xbzrle()
    nbd_server()
