#!/usr/bin/env python3
"""The xHCI controller and usb-storage under a real VM, driven by a test
guest written from the xHCI spec (tests/guests/xhci.c): enumeration, bulk
BOT reads and writes (checked here against the image), and hostile rings
(a Link TRB loop, DMA outside RAM, malformed and oversized control
transfers, stray doorbells, an event ring flooded while unread, a command
ring outside RAM and a command-ring Link loop), each answered with the error the spec
gives and followed by a working command, while the VM and vmmd stay up."""

import os
import random
import subprocess
import tempfile
import zlib

from guestrun import check_ending, run_guest
from vmmdtest import main, require_tool

SECTOR = 512
SIZE = 4 << 20


def pattern(sector):
    return bytes(((sector * 31 + i * 7 + 0x5A) & 0xFF) for i in range(SECTOR))


def make_base(path):
    rnd = random.Random(1717)
    data = bytes(rnd.getrandbits(8) for _ in range(SIZE))
    with open(path, "wb") as f:
        f.write(data)
    return data


def check_run(run, base):
    c = run.console
    expect = [
        " class 0xc0330 rev 1\n",
        "xhci: msix vectors 16 table bar0+0x3000 pba bar0+0x3800",
        "xhci: hciversion 0x100 slots 64 intrs 16 ports 8",
        "xhci: protocol usb 0x2 ports 1-4",
        "xhci: protocol usb 0x3 ports 5-8",
        "xhci: port 1 connected speed 3",
        "xhci: port reset done ped 1 prc 1",
        "xhci: enable slot cc 1 slot 1",
        "xhci: msix vector delivered",
        "xhci: address device cc 1 state 2 address 1 ep0 state 1",
        "xhci: device 0x46f4:0x1 usb 0x200 mps0 64",
        "xhci: interface class 8 subclass 6 protocol 0x50",
        'xhci: product "QEMU USB HARDDRIVE"',
        "xhci: configure endpoint cc 1 slot state 3 bulk states 11",
        "xhci: set configuration cc 1",
        'xhci: inquiry status 0 "QEMU    QEMU HARDDISK   "',
        "xhci: test unit ready 0",
        "xhci: capacity %d blocks of 512 status 0" % (SIZE // SECTOR),
        "xhci: capacity16 last lba %d status 0" % (SIZE // SECTOR - 1),
        "xhci: mode sense status 0 wp 0",
        "xhci: read 0-7 status 0 crc 0x%x" % zlib.crc32(base[:8 * SECTOR]),
        "xhci: readback ok",
        "xhci: synchronize cache ok",
        "xhci: past-end read status 1 sense 0x5/0x21",
        # Link TRB loop: TRB Error (5), endpoint Halted (2)
        "xhci: link loop completion 5 ep state 2",
        "xhci: after link loop: storage ok",
        # buffer outside RAM: USB Transaction Error (4), Halted
        "xhci: out-of-range dma completion 4 ep state 2",
        "xhci: after bad dma: storage ok",
        # EP0: not a control TD -> TRB Error, halted; 8 KiB data stage -> STALL (6)
        "xhci: malformed control td completion 5 ep0 state 2",
        "xhci: 8 KiB control read completion 6",
        "xhci: after ep0 errors: descriptor ok",
        "xhci: no-op after stray doorbells cc 1",
        "xhci: evaluate context cc 1",
        # 70 completions into 64 slots unread: 63 land, then Event Ring Full (21)
        "xhci: flood: completions 63 ring-full events 1 others 0",
        "xhci: after event ring full no-op cc 1",
        "xhci: command ring stopped cc 24",
        "xhci: bad command ring: HCE set",
        "xhci: after reset no-op cc 1",
        "xhci: command link loop: HCE set",
        "xhci: after controller reset: storage ok",
        "xhci: done\n",
    ]
    for line in expect:
        assert line in c, "missing %r\n%s" % (line, run.describe())
    assert "FAIL" not in c and "BAD" not in c and "BROKEN" not in c, run.describe()
    # the guest powered off by itself: the VM ran to the end and vmmd shut down cleanly
    check_ending(run)
    assert "guest error: Link TRB loop on a transfer ring" in run.stderr, run.describe()


def check_image(flat, base):
    assert len(flat) == len(base)
    for s in range(8, 72):
        assert flat[s * SECTOR:(s + 1) * SECTOR] == pattern(s), "sector %d differs" % s
    assert flat[:8 * SECTOR] == base[:8 * SECTOR]
    assert flat[72 * SECTOR:] == base[72 * SECTOR:]


def test_raw():
    with tempfile.TemporaryDirectory(prefix="vmmd-usb.") as tmp:
        disk = os.path.join(tmp, "disk.raw")
        base = make_base(disk)
        run = run_guest("xhci", timeout=120,
                        disks=[{"id": "usb0", "driver": "usb-storage", "file": disk,
                                "format": "raw"}])
        check_run(run, base)
        with open(disk, "rb") as f:
            check_image(f.read(), base)


def test_qcow2_overlay():
    require_tool("qemu-img")
    with tempfile.TemporaryDirectory(prefix="vmmd-usb.") as tmp:
        basep = os.path.join(tmp, "base.raw")
        overlay = os.path.join(tmp, "overlay.qcow2")
        base = make_base(basep)
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", basep, "-F", "raw",
                        overlay], check=True)
        run = run_guest("xhci", timeout=120,
                        disks=[{"id": "usb0", "driver": "usb-storage", "file": overlay,
                                "format": "qcow2", "removable": True}])
        check_run(run, base)
        r = subprocess.run(["qemu-img", "check", "-f", "qcow2", overlay], capture_output=True,
                           text=True)
        assert r.returncode == 0, r.stdout + r.stderr
        flat = os.path.join(tmp, "flat.raw")
        subprocess.run(["qemu-img", "convert", "-f", "qcow2", "-O", "raw", overlay, flat],
                       check=True)
        with open(flat, "rb") as f:
            check_image(f.read(), base)


if __name__ == "__main__":
    main(globals())
