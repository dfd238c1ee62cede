#!/usr/bin/env python3
"""SeaBIOS boots boot sectors written by this test, under vmmd (issue #8).

Debian's SeaBIOS (/usr/share/seabios/bios.bin) is the firmware; the boot
sector (tests/functional/fwimages.py) prints "VMMD-BOOT: hello" on COM1, reads
4 KiB behind it through INT 13h and prints "VMMD-BOOT: checksum ok" if their
byte sum matches. Each boot path is one test:

  virtio-blk qcow2, IDE disk raw, IDE disk qcow2, IDE CD-ROM (El Torito ISO
  made with xorriso), usb-storage on the xHCI controller picked by boot.order
  (with bios-256k.bin), and SeaBIOS' own banner on the serial console.

A VM runs with `vmmd --run-vm DEF.json` (foreground, console to a file). The
test waits for the markers, then stops vmmd. Skips without /dev/kvm, without
the seabios package, or while vmmd cannot run a VM in the foreground.

VMMD_FIRMWARE=/path/to/bios.bin picks another image (bios-256k.bin).
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fwimages  # noqa: E402
from vmmdtest import VMMD, Skip, main, require_kvm, require_tool, skip  # noqa: E402

FIRMWARE = os.environ.get("VMMD_FIRMWARE", "/usr/share/seabios/bios.bin")
USB_FIRMWARE = os.environ.get("VMMD_FIRMWARE", "/usr/share/seabios/bios-256k.bin")
CPU = "host,-cx16,-xsave"
BOOT_TIMEOUT = 60


def prerequisites():
    require_kvm()
    if not os.path.exists(FIRMWARE):
        skip("%s is missing (Debian package seabios)" % FIRMWARE)
    p = subprocess.run([VMMD, "--run-vm", "/nonexistent/vm.json"], capture_output=True,
                       text=True)
    if "unrecognized option" in p.stderr or "not implemented" in p.stderr:
        skip("this vmmd has no --run-vm foreground mode yet")


def skip_if_unsupported(vm):
    """vmmd without its firmware device refuses boot.firmware: skip, not fail."""
    if vm.proc.poll() is not None and "firmware boot (boot.firmware) is not supported" in \
            vm.vmmd_log():
        skip("this vmmd cannot boot firmware yet")


class FirmwareVM:
    """One `vmmd --run-vm` booting SeaBIOS with the given disks and NICs."""

    def __init__(self, disks=(), nics=(), name="fw", memory="128M", firmware=None, order=None):
        self.tmp = tempfile.mkdtemp(prefix="vmmd-fw.")
        self.console = os.path.join(self.tmp, "console.log")
        self.log_path = os.path.join(self.tmp, "vmmd.log")
        self.disks = list(disks)
        self.nics = list(nics)
        self.vm = {
            "name": name,
            "vcpus": 1,
            "memory": memory,
            "cpu": CPU,
            "boot": {"firmware": firmware or FIRMWARE},
            "disks": self.disks,
            "nics": self.nics,
            "serial": {"log": self.console},
        }
        if order:
            self.vm["boot"]["order"] = order
        self.proc = None

    def path(self, name):
        return os.path.join(self.tmp, name)

    def start(self):
        defp = self.path("vm.json")
        with open(defp, "w") as f:
            json.dump(self.vm, f)
        self.log = open(self.log_path, "wb")
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen([VMMD, "--run-vm", defp, "--run-dir", self.path("run")],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        return self

    def text(self):
        try:
            with open(self.console, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def vmmd_log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def wait_for(self, *markers, timeout=BOOT_TIMEOUT):
        """Wait until every marker is on the console; fail with the console if not."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            t = self.text()
            if all(m in t for m in markers):
                return time.monotonic() - self.t0
            if self.proc.poll() is not None:
                skip_if_unsupported(self)
                break
            time.sleep(0.2)
        raise AssertionError("markers %r not seen within %ds (vmmd %s)" %
                             (markers, timeout, "exited %d" % self.proc.returncode
                              if self.proc.poll() is not None else "still running"))

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self.log.close()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.stop()
        if exc_type is not None and exc_type is not Skip:
            sys.stdout.write("--- console ---\n%s\n--- vmmd ---\n%s\n" %
                             (self.text()[-3000:], self.vmmd_log()[-3000:]))
        subprocess.run(["rm", "-rf", self.tmp])


def boot_and_check(vm):
    vm.start()
    t = vm.wait_for(fwimages.HELLO, fwimages.OK)
    text = vm.text()
    assert fwimages.BAD not in text and fwimages.READ_ERROR not in text, text
    print("boot sector reported after %.1fs" % t)


def test_seabios_banner():
    prerequisites()
    with FirmwareVM() as vm:
        vm.start()
        vm.wait_for("SeaBIOS (version")


def test_virtio_blk_qcow2():
    prerequisites()
    require_tool("qemu-img")
    with FirmwareVM() as vm:
        img = fwimages.make_qcow2_disk(vm.path("disk.qcow2"), vm.tmp)
        vm.disks.append({"id": "vda", "file": img, "format": "qcow2"})
        boot_and_check(vm)


def test_virtio_blk_maxcpus():
    """SeaBIOS with the vCPU hotplug tables: MADT with absent vCPUs, \\_SB.CPUS, 0xaf00."""
    prerequisites()
    require_tool("qemu-img")
    with FirmwareVM() as vm:
        vm.vm["vcpus"] = 2
        vm.vm["maxcpus"] = 8
        vm.vm["debugcon"] = vm.path("debugcon.log")
        img = fwimages.make_qcow2_disk(vm.path("disk.qcow2"), vm.tmp)
        vm.disks.append({"id": "vda", "file": img, "format": "qcow2"})
        boot_and_check(vm)
        with open(vm.path("debugcon.log"), "rb") as f:
            log = f.read().decode(errors="replace")
        # SeaBIOS counted the present vCPUs and read maxcpus from fw_cfg
        assert "Found 2 cpu(s) max supported 8 cpu(s)" in log, log[-2000:]


def test_ide_raw():
    prerequisites()
    with FirmwareVM() as vm:
        img = fwimages.make_raw_disk(vm.path("disk.raw"))
        vm.disks.append({"id": "hda", "driver": "ide-hd", "file": img, "format": "raw"})
        boot_and_check(vm)


def test_ide_qcow2():
    prerequisites()
    require_tool("qemu-img")
    with FirmwareVM() as vm:
        img = fwimages.make_qcow2_disk(vm.path("disk.qcow2"), vm.tmp)
        vm.disks.append({"id": "hda", "driver": "ide-hd", "file": img, "format": "qcow2"})
        boot_and_check(vm)


def test_ide_cdrom_iso():
    prerequisites()
    require_tool("xorriso")
    with FirmwareVM() as vm:
        iso = fwimages.make_iso(vm.path("boot.iso"), vm.tmp)
        vm.disks.append({"id": "cd0", "driver": "ide-cd", "file": iso, "format": "raw",
                         "readonly": True})
        boot_and_check(vm)


def test_usb_storage_bootindex():
    """A usb-storage disk on the xHCI controller, first in boot.order (bootindex).
    Debian's 128 KiB bios.bin has no xHCI driver; bios-256k.bin (QEMU's default) has."""
    prerequisites()
    if not os.path.exists(USB_FIRMWARE):
        skip("%s is missing (Debian package seabios)" % USB_FIRMWARE)
    with FirmwareVM(order=["usb0"], firmware=USB_FIRMWARE) as vm:
        img = fwimages.make_raw_disk(vm.path("disk.raw"))
        # a virtio disk without a boot sector first in PCI order: only boot.order picks USB
        blank = vm.path("blank.raw")
        with open(blank, "wb") as f:
            f.truncate(1 << 20)
        vm.disks.append({"id": "vda", "file": blank, "format": "raw"})
        vm.disks.append({"id": "usb0", "driver": "usb-storage", "file": img, "format": "raw"})
        boot_and_check(vm)


if __name__ == "__main__":
    main(globals())
