#!/usr/bin/env python3
"""Record QEMU 7.2's block_set_io_throttle as a golden trace (tests/functional/
golden/io-throttle.json) for test-io-throttle.py.

qemu-system-x86_64 -S with a virtio-blk disk whose drive id is its device id
(vd0), as vmmd names a disk once: the answer to each call (valid limits,
bursts, and every check QEMU makes, an unknown disk, both names given), and
after each accepted call the limits query-block shows.

Usage: tests/functional/make-golden-io-throttle.py [QEMU]"""

import importlib.util
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("golden_migration",
                                               os.path.join(HERE, "make-golden-migration.py"))
golden_migration = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(golden_migration)

OUT = os.path.join(HERE, "golden", "io-throttle.json")
ZERO = {"bps": 0, "bps_rd": 0, "bps_wr": 0, "iops": 0, "iops_rd": 0, "iops_wr": 0}
# block_set_io_throttle's arguments, each with "device": "vd0" unless named otherwise
CALLS = [
    dict(ZERO),
    dict(ZERO, bps=1048576, iops=100, bps_max=2097152, bps_max_length=4, iops_size=8192),
    dict(ZERO, bps_rd=1000, iops_wr=50, iops_wr_max=80),
    dict(ZERO, iops_rd=4000),
    dict(ZERO, bps=1000, bps_rd=5),
    dict(ZERO, iops=10, iops_wr=5),
    dict(ZERO, bps=-1),
    dict(ZERO, bps=1000000000000001),
    dict(ZERO, bps=1000, bps_max=500),
    dict(ZERO, bps=1000, bps_max_length=5),
    dict(ZERO, bps=1000, bps_max=5000, bps_max_length=0),
    dict(ZERO, bps_max=5000),
    dict(ZERO, bps=1000, iops_size=512),
    dict(ZERO, bps_rd=1000, iops_max=7),
    dict(ZERO, bps_rd=1000, bps_rd_max=999),
    dict(ZERO, bps=1000, group="vd0"),
    {"bps": 1},
    dict(ZERO, device="nope"),
    dict(ZERO, id="vd0", device="vd0"),
    dict(ZERO),
]
LIMIT_KEYS = ("bps", "bps_rd", "bps_wr", "iops", "iops_rd", "iops_wr", "iops_size", "group")


def limits(entry):
    """query-block's I/O limits of one disk (its *_max and *_max_length too)."""
    ins = entry["inserted"]
    return {k: v for k, v in ins.items() if k in LIMIT_KEYS or k.endswith("_max") or
            k.endswith("_max_length")}


def main():
    qemu = sys.argv[1] if len(sys.argv) > 1 else "qemu-system-x86_64"
    with tempfile.TemporaryDirectory() as d:
        img = os.path.join(d, "vd0.img")
        with open(img, "wb") as f:
            f.truncate(1 << 20)
        path = os.path.join(d, "qmp")
        p = subprocess.Popen([qemu, "-machine", "pc,accel=kvm", "-m", "32", "-nodefaults",
                              "-display", "none", "-S",
                              "-drive", "if=none,id=vd0,file=%s,format=raw" % img,
                              "-device", "virtio-blk-pci,drive=vd0,id=vd0",
                              "-qmp", "unix:%s,server=on,wait=off" % path],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            q = golden_migration.Qmp(path)
            out = {"qemu": q.cmd("query-version")["return"]["qemu"], "calls": []}
            for args in CALLS:
                a = dict(args) if "device" in args or "id" in args else dict(args, device="vd0")
                m = q.call("block_set_io_throttle", a)
                step = {"arguments": a, "reply": m}
                if "return" in m:
                    step["query-block"] = limits(q.cmd("query-block")["return"][0])
                out["calls"].append(step)
        finally:
            p.kill()
            p.wait()
    golden_migration.write_golden(OUT, out)


if __name__ == "__main__":
    main()
