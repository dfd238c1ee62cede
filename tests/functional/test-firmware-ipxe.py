#!/usr/bin/env python3
"""iPXE from Debian's ipxe-qemu runs from the option ROM of a NIC (issue #8).

SeaBIOS finds the ROM vmmd hands it for a virtio-net and for an e1000 NIC
(/usr/lib/ipxe/qemu/pxe-virtio.rom, pxe-e1000.rom by default), runs it, and
iPXE prints its banner with the device's PCI address and "starting
execution": that is the default test (ROM found and started). On this host
the guest instructions are emulated, so iPXE then needs 70 s alone (and more
than 120 s while the rest of the suite runs) to decompress itself and print
"iPXE initialising devices...ok"; with VMMD_SLOW_TESTS=1 the test waits for
that, then through iPXE's banner wait for a DHCP lease from libslirp
(10.0.2.15). On this host iPXE then dies with a KVM emulation failure under
vmmd and under QEMU alike; the slow test reports that as a skip.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vmmdtest import main, skip  # noqa: E402

import importlib.util  # noqa: E402

_spec = importlib.util.spec_from_file_location(
    "fwboot", os.path.join(os.path.dirname(os.path.abspath(__file__)), "test-firmware-boot.py"))
fwboot = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fwboot)

SLOW = os.environ.get("VMMD_SLOW_TESTS") == "1"
ROMS = {"virtio-net": "/usr/lib/ipxe/qemu/pxe-virtio.rom",
        "e1000": "/usr/lib/ipxe/qemu/pxe-e1000.rom"}


def run(driver):
    fwboot.prerequisites()
    if not os.path.exists(ROMS[driver]):
        skip("%s is missing (Debian package ipxe-qemu)" % ROMS[driver])
    with fwboot.FirmwareVM(nics=[{"id": "net0", "driver": driver, "backend": "user"}],
                           order=["net0"]) as vm:
        vm.start()
        t = vm.wait_for("iPXE (PCI ", "starting execution", timeout=180)
        print("%s: the ROM started after %.1fs" % (driver, t))
        if SLOW:
            t = vm.wait_for("iPXE initialising devices...ok", timeout=600)
            print("%s: iPXE initialised its devices after %.1fs" % (driver, t))
            try:
                t = vm.wait_for("10.0.2.15", timeout=900)
            except AssertionError:
                # This host's instruction emulator stops iPXE after its banner (QEMU 7.2
                # with -cpu qemu64,-cx16 dies at the same point): a host limit, not vmmd's.
                if "emulation failure" in vm.vmmd_log():
                    skip("%s: iPXE initialised, then the host's KVM failed to emulate an "
                         "instruction before DHCP (QEMU fails the same way here)" % driver)
                raise
            print("%s: DHCP lease after %.1fs" % (driver, t))


def test_ipxe_virtio_net():
    run("virtio-net")


def test_ipxe_e1000():
    run("e1000")


if __name__ == "__main__":
    main(globals())
