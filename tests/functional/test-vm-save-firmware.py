#!/usr/bin/env python3
"""SeaBIOS paused mid-boot, saved, destroyed and restored finishes its boot
(docs/vmstate.md). The VM boots Debian's SeaBIOS from a virtio-blk disk
whose boot sector (tests/functional/fwimages.py) prints markers on COM1
after reading sectors through INT 13h. The save is taken as soon as
SeaBIOS' banner is on the console, before the boot sector ran; the
restored VM must print the boot sector's markers without SeaBIOS starting
over (no second banner), in the same daemon and in a second one."""

import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fwimages  # noqa: E402
from vmmdtest import Vmmd, main, require_kvm, skip  # noqa: E402
from daemon_helpers import TEST_CPU, console_log, wait_console  # noqa: E402

FIRMWARE = os.environ.get("VMMD_FIRMWARE", "/usr/share/seabios/bios.bin")
BANNER = "SeaBIOS (version"


def prerequisites():
    require_kvm()
    if not os.path.exists(FIRMWARE):
        skip("%s is missing (Debian package seabios)" % FIRMWARE)


def fw_vm(tmp, ide=False):
    disk = fwimages.make_raw_disk(os.path.join(tmp, "boot.raw"))
    vm = {"name": "fw", "vcpus": 1, "memory": "128M", "cpu": TEST_CPU,
          "boot": {"firmware": FIRMWARE},
          "disks": [{"id": "vda", "file": disk, "format": "raw"}]}
    if ide:
        # The IDE controller and an e1000 (no option ROM) carry state too.
        vm["disks"][0].update(id="hda", driver="ide-hd")
        vm["nics"] = [{"id": "net0", "driver": "e1000", "backend": "user", "rom": ""}]
    return vm


def save_mid_boot(d, q, tmp, ide=False):
    q.ok("vm-create", dict(fw_vm(tmp, ide), start=True))
    wait_console(d, "fw", BANNER, timeout=60)
    snap = os.path.join(tmp, "snap")
    q.ok("vm-save", vm="fw", path=snap, stop=True)
    ev = q.event("VM_SAVE_COMPLETED", timeout=120)["data"]
    assert ev["status"] == "completed", ev
    q.event("SHUTDOWN", timeout=30)
    before = console_log(d, "fw")
    if fwimages.HELLO in before:
        skip("SeaBIOS reached the boot sector before the save (host too fast to catch "
             "it mid-boot)")
    return snap


def check_finishes(d, name):
    wait_console(d, name, fwimages.OK, timeout=120)
    text = console_log(d, name)
    # SeaBIOS' serial console flushes its output lazily (from its timer), so
    # the tail of "Booting from Hard Disk..." may land inside the boot
    # sector's first line, which writes the UART directly: look at the last.
    assert fwimages.BAD not in text and fwimages.READ_ERROR not in text, text
    assert BANNER not in text, "SeaBIOS started over:\n" + text[-3000:]


def test_seabios_mid_boot_same_daemon():
    prerequisites()
    with tempfile.TemporaryDirectory(prefix="vmmd-fwsave.") as tmp, Vmmd() as d:
        q = d.qmp()
        snap = save_mid_boot(d, q, tmp)
        os.unlink(os.path.join(d.run_dir, "vms", "fw.console"))
        assert q.ok("vm-restore", path=snap)["status"] == "running"
        check_finishes(d, "fw")


def test_seabios_mid_boot_second_daemon():
    prerequisites()
    with tempfile.TemporaryDirectory(prefix="vmmd-fwsave.") as tmp:
        with Vmmd() as d:
            snap = save_mid_boot(d, d.qmp(), tmp)
        with Vmmd() as d2:
            q = d2.qmp()
            assert q.ok("vm-restore", {"path": snap, "name": "fw2"})["status"] == "running"
            check_finishes(d2, "fw2")


def test_seabios_mid_boot_ide_and_e1000():
    prerequisites()
    with tempfile.TemporaryDirectory(prefix="vmmd-fwsave.") as tmp, Vmmd() as d:
        q = d.qmp()
        snap = save_mid_boot(d, q, tmp, ide=True)
        names = [s["name"] for s in json.load(open(os.path.join(snap, "manifest.json")))[
            "sections"]]
        assert "ide" in names and "e1000" in names, names
        os.unlink(os.path.join(d.run_dir, "vms", "fw.console"))
        assert q.ok("vm-restore", path=snap)["status"] == "running"
        check_finishes(d, "fw")


if __name__ == "__main__":
    main(globals())
