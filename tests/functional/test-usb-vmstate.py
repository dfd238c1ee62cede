#!/usr/bin/env python3
"""vm-save / vm-restore of a VM with USB devices (the xHCI save/load hooks,
docs/vmstate.md section "xhci"): the xHCI test guest drives a usb-storage
disk in a loop of Bulk-Only WRITE (10) / READ (10) commands (TDs of one to
three TRBs); the VM is saved with "stop" in the middle of it, restored, and
the guest goes on with its rings, slots, event ring and the disk's
Bulk-Only state where they were: every round reads back what it wrote and
the image holds each sector's last write. A usb-kbd on the same controller
is saved and restored too."""

import os
import re
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vmmdtest import Vmmd, main  # noqa: E402
from daemon_helpers import TEST_CPU, console_log, guest, wait_console  # noqa: E402

ROUNDS = 800
PROGRESS = re.compile(r"xhci: saveloop (\d+) ok")


def expected_image(size):
    img = bytearray(size)
    img[:8] = b"USBSAVE!"
    for n in range(ROUNDS):
        s = 1 + n % 64
        img[s * 512:(s + 1) * 512] = bytes(((n * 13 + i * 3 + 0x21) & 0xFF)
                                           for i in range(512))
    return bytes(img)


def test_save_mid_io_restore():
    with tempfile.TemporaryDirectory(prefix="vmmd-usbsave.") as tmp:
        disk = os.path.join(tmp, "usb.raw")
        with open(disk, "wb") as f:
            f.write(b"USBSAVE!")
            f.truncate(1 << 20)
        vm = {"name": "us", "vcpus": 1, "memory": "64M", "cpu": TEST_CPU,
              "boot": {"kernel": guest("xhci")},
              "disks": [{"id": "usb0", "driver": "usb-storage", "file": disk,
                         "format": "raw"}],
              "input": [{"id": "kbd0", "driver": "usb-kbd"}]}
        with Vmmd() as d:
            q = d.qmp()
            q.ok("vm-create", dict(vm, start=True))
            wait_console(d, "us", "xhci: saveloop 200 ok", timeout=120)
            snap = os.path.join(tmp, "snap")
            q.ok("vm-save", vm="us", path=snap, stop=True)
            ev = q.event("VM_SAVE_COMPLETED", timeout=120,
                         pred=lambda e: e["data"]["path"] == snap)
            assert ev["data"]["status"] == "completed", ev
            q.event("SHUTDOWN", timeout=30)
            old = console_log(d, "us")
            before = [int(m) for m in PROGRESS.findall(old)]
            assert before and "saveloop done" not in old, "saved too early or too late"
            with open(os.path.join(snap, "manifest.json")) as f:
                assert '"xhci"' in f.read()
            info = q.ok("vm-restore", path=snap)
            assert info["status"] == "running", info
            usb = q.ok("x-query-usb", vm="us")["human-readable-text"]
            assert "Port 1, Speed 480 Mb/s, Product QEMU USB MSD, ID: usb0" in usb, usb
            assert "ID: kbd0" in usb, usb
            wait_console(d, "us", "xhci: saveloop done", timeout=180)
            c = console_log(d, "us")
            assert "saveloop done ok" in c and "BAD" not in c, c[-2000:]
            # It went on from where it was: no reboot, no restart of the loop,
            # each progress line once. The restored VM's console log starts
            # afresh, so the whole console is the old log and the new one (a
            # save may fall in the middle of a line).
            whole = c if c.startswith(old) else old + c
            progress = [int(m) for m in PROGRESS.findall(whole)]
            assert progress == list(range(100, ROUNDS + 1, 100)), (before, progress)
            assert whole.count("xhci: hciversion") == 1, whole[-3000:]
            assert whole.count("xhci: enable slot") == old.count("xhci: enable slot"), c[-3000:]
            q.event("SHUTDOWN", timeout=60)
        with open(disk, "rb") as f:
            got = f.read()
        assert got == expected_image(1 << 20), "image differs from the last writes"


if __name__ == "__main__":
    main(globals())
