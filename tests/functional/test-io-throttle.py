#!/usr/bin/env python3
"""I/O limits of a virtio-blk disk: block_set_io_throttle replayed from QEMU
7.2's golden trace (golden/io-throttle.json, make-golden-io-throttle.py),
answers and the limits query-block shows; then tests/guests/virtio-bench.c
reading a disk whose definition limits its reads to 3000 operations a
second, lowered to 2000 while it runs: each phase takes at least the time
its limit allows (a lower bound only: a slow host takes longer, never
less); the definition follows block_set_io_throttle; definitions with bad
limits and disks that take none are refused; a save does not wait for
the limits; vmctl disk throttle."""

import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from vmmdtest import Vmmd, main  # noqa: E402
from daemon_helpers import TEST_CPU, console_log, guest  # noqa: E402

TOP_SRCDIR = os.environ.get("top_srcdir", os.path.join(HERE, "..", ".."))
GOLDEN = os.path.join(TOP_SRCDIR, "tests", "functional", "golden", "io-throttle.json")
rec = __import__("make-golden-io-throttle")


def golden():
    with open(GOLDEN) as f:
        return json.load(f)


def vm_def(d, name, kernel, size=1 << 20, **disk):
    img = os.path.join(d.tmp, name + ".img")
    with open(img, "wb") as f:
        f.truncate(size)
    return {"name": name, "vcpus": 1, "memory": "64M", "cpu": TEST_CPU,
            "boot": {"kernel": kernel},
            "disks": [dict({"id": "vd0", "driver": "virtio-blk", "file": img, "format": "raw"},
                           **disk)]}


def saved_disk(d, name):
    with open(os.path.join(d.state_dir, "vms", name + ".json")) as f:
        return json.load(f)["disks"][0]


def test_qmp_as_qemu():
    g = golden()
    with Vmmd() as d:
        q = d.qmp()
        q.ok("vm-create", dict(vm_def(d, "t1", guest("idle")), start=True))
        for step in g["calls"]:
            r = q.cmd("block_set_io_throttle", dict(step["arguments"], vm="t1"))
            r.pop("id", None)
            assert r == step["reply"], (step["arguments"], r, step["reply"])
            if "query-block" in step:
                got = rec.limits(q.ok("query-block", vm="t1")[0])
                assert got == step["query-block"], (step["arguments"], got)
        # the last call lifted every limit: the definition has none again
        assert "throttle" not in saved_disk(d, "t1")


def wait_line(d, name, text, timeout=120):
    """Wait for @text on the VM's console; the time it was first seen."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if text in console_log(d, name):
            return time.monotonic()
        time.sleep(0.01)
    raise AssertionError("no %r: %r" % (text, console_log(d, name)))


def test_guest_reads_at_the_limit():
    with Vmmd() as d:
        q = d.qmp()
        q.ok("vm-create", dict(vm_def(d, "t2", guest("virtio-bench"), size=64 << 20,
                                      throttle={"iops_rd": 3000}), start=True))
        assert rec.limits(q.ok("query-block", vm="t2")[0])["iops_rd"] == 3000
        t0 = wait_line(d, "t2", "bench: 4k-randread start")
        t1 = wait_line(d, "t2", "bench: 64k-seqread start")
        # 16000 reads at 3000 a second, a tenth of a second's worth at once (this
        # host reads them in 3.0 s unlimited, the 8000 of 64 KiB next in 1.2 s)
        assert t1 - t0 >= (16000 - 300) / 3000 * 0.95, t1 - t0
        q.ok("block_set_io_throttle", dict(rec.ZERO, vm="t2", device="vd0", iops_rd=2000))
        t2 = wait_line(d, "t2", "bench: 64k-seqread end")
        # the guest prints the rest of that line character by character
        end = time.monotonic() + 30
        while "errors" not in console_log(d, "t2").split("64k-seqread end")[1] and \
                time.monotonic() < end:
            time.sleep(0.05)
        assert " 0 errors" in console_log(d, "t2").split("64k-seqread end")[1].split("\n")[0]
        # 8000 reads, a few before the change
        assert t2 - t1 >= (8000 - 200) / 2000 * 0.9, t2 - t1
        assert saved_disk(d, "t2")["throttle"] == {"iops_rd": 2000}


def test_save_does_not_wait_for_the_limits():
    """A guest with 16 reads of 4 KiB in flight on a disk allowed 256 bytes
    a second: the first goes, the next would wait 16 s; the save of the
    stopped VM lets the held reads go at once instead (as it asks whether
    the disk is busy); the restored VM keeps the limits (its definition)
    and reads on once they are lifted."""
    with Vmmd() as d:
        q = d.qmp()
        q.ok("vm-create", dict(vm_def(d, "t5", guest("virtio-bench"), size=64 << 20,
                                      throttle={"bps_rd": 256}), start=True))
        wait_line(d, "t5", "bench: 4k-randread start")
        time.sleep(0.5)
        snap = os.path.join(d.tmp, "snap")
        t0 = time.monotonic()
        q.ok("vm-save", vm="t5", path=snap, stop=True)
        q.event("VM_SAVE_COMPLETED", timeout=60, pred=lambda e: e["data"]["path"] == snap)
        assert time.monotonic() - t0 < 10, time.monotonic() - t0
        q.ok("vm-restore", {"path": snap, "name": "t5"})
        assert rec.limits(q.ok("query-block", vm="t5")[0])["bps_rd"] == 256
        q.ok("block_set_io_throttle", dict(rec.ZERO, vm="t5", device="vd0"))
        wait_line(d, "t5", "bench: 64k-seqread start", timeout=120)
        assert "timeout" not in console_log(d, "t5"), console_log(d, "t5")


def test_definition():
    """A definition's limits are checked as block_set_io_throttle's; only
    virtio-blk disks take them; a restarted VM has what was set last."""
    with Vmmd() as d:
        q = d.qmp()
        r = q.cmd("vm-create", vm_def(d, "t3", guest("idle"), throttle={"bps": 1000,
                                                                       "bps_rd": 5}))
        assert "disks[0].throttle: bps/iops/max total values and read/write values" in \
            r["error"]["desc"], r
        r = q.cmd("vm-create", vm_def(d, "t3", guest("idle"), throttle={"bpss": 1}))
        assert "unknown limit 'bpss'" in r["error"]["desc"], r
        r = q.cmd("vm-create", vm_def(d, "t3", guest("idle"), driver="ide-hd",
                                      throttle={"bps": 1000}))
        assert "\"throttle\" applies to \"virtio-blk\" only" in r["error"]["desc"], r
        q.ok("vm-create", dict(vm_def(d, "t3", guest("idle"), throttle={
            "bps_wr": 1 << 20, "bps_wr_max": 4 << 20, "bps_wr_max_length": 3}), start=True))
        got = rec.limits(q.ok("query-block", vm="t3")[0])
        assert (got["bps_wr"], got["bps_wr_max"], got["bps_wr_max_length"]) == \
            (1 << 20, 4 << 20, 3), got
        out = d.vmctl("disk", "throttle", "t3", "vd0", "--iops", "300").stdout
        assert "t3: disk vd0 limits set" in out, out
        p = d.vmctl("disk", "throttle", "t3", "vd0", "--bps", "1M", "--bps-rd", "5", check=False)
        assert p.returncode != 0 and "cannot be used at the same time" in p.stderr, p.stderr
        p = d.vmctl("disk", "throttle", "t3", "vd0", "--iops", "x", check=False)
        assert p.returncode != 0 and "--iops: 'x' is not a number" in p.stderr, p.stderr
        q.ok("vm-destroy", vm="t3")
        q.ok("vm-start", vm="t3")
        got = rec.limits(q.ok("query-block", vm="t3")[0])
        assert got["iops"] == 300 and got["bps_wr"] == 0, got
        r = q.cmd("block_set_io_throttle", dict(rec.ZERO, vm="t3", device="vd0", bps=5,
                                                group="other"))
        assert "per disk" in r["error"]["desc"], r


def test_ide_disk_takes_none():
    with Vmmd() as d:
        q = d.qmp()
        q.ok("vm-create", dict(vm_def(d, "t4", guest("idle"), driver="ide-hd"), start=True))
        r = q.cmd("block_set_io_throttle", dict(rec.ZERO, vm="t4", device="vd0", bps=5))
        assert r["error"]["desc"] == \
            "Device 'vd0' takes no I/O limits: only virtio-blk disks do", r


if __name__ == "__main__":
    main(globals())
