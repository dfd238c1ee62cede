#!/usr/bin/env python3
"""External snapshots, block-stream, block-commit and blockdev-mirror while
a guest writes.

The test guest (tests/guests/blk-writer.c) rewrites 4 KiB in each of 16
clusters of its virtio-blk disk in passes, reads every pass back, and checks
a sum of 64 KiB it never writes. Meanwhile the host takes a snapshot, streams the base into
it, takes two more, commits the middle one (intermediate commit) and then
the active layer (ready, job-complete, pivot). The guest must see its own
data all along; afterwards every image passes `qemu-img check`, the
remaining image holds exactly the guest's last writes over the original
data (`qemu-img compare` against a flat image built from the guest's
pattern), the backing-file strings say what the chain is, and the VM's
persisted definition names the image the disk ended on.

A second VM has its disk mirrored three times while it writes: whole
(vmctl disk mirror, into a new qcow2 image); then, under a new overlay,
only that overlay (blockdev-mirror sync=top into an image added without
its backing node: vmmd puts the disk's backing chain under it at the
switch, where QEMU would leave the guest reading zeroes there); then only
the writes from then on (drive-mirror sync=none: the new image goes on
top of the disk's)."""

import json
import os
import random
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vmmdtest import Vmmd, main, require_tool, wait_for  # noqa: E402
from daemon_helpers import console_log, guest, vm_def  # noqa: E402

SIZE = 4 << 20
NREQ, STRIDE, PER_REQ = 16, 128, 8  # as tests/guests/blk-writer.c
M64 = (1 << 64) - 1


def passes(d, name):
    return console_log(d, name).count(" ok crc ")


def wait_passes(d, name, n, timeout=120):
    start = passes(d, name)
    wait_for(lambda: passes(d, name) >= start + n or "MISMATCH" in console_log(d, name),
             timeout=timeout, what="%d more writer passes" % n)
    assert "MISMATCH" not in console_log(d, name), console_log(d, name)[-2000:]


def sector(p, s):
    words = [p, s] + [((p * 0x9E3779B97F4A7C15) & M64) ^ (s << 8 | w) for w in range(2, 64)]
    return struct.pack("<64Q", *words)


def backing(path):
    info = json.loads(subprocess.run(["qemu-img", "info", "-U", "--output=json", path],
                                     check=True, capture_output=True, text=True).stdout)
    return info.get("backing-filename")


def wait_job_end(q, job):
    while True:
        ev = q.event("JOB_STATUS_CHANGE", timeout=120, pred=lambda e: e["data"]["id"] == job)
        if ev["data"]["status"] == "null":
            return


def make_base(tmp, seed):
    """Random data from @seed, and a qcow2 image of it: (data, image)."""
    orig = bytes(random.Random(seed).getrandbits(8) for _ in range(SIZE))
    raw = os.path.join(tmp, "orig.raw")
    with open(raw, "wb") as f:
        f.write(orig)
    base = os.path.join(tmp, "base.qcow2")
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, base], check=True)
    return orig, base


def start_writer(d, name, writer, image):
    """VM @name runs the writer guest on @image; returns a QMP client once
    the guest has made two passes."""
    q = d.qmp()
    q.ok("vm-create", dict(vm_def(name, writer,
                                  disks=[{"id": "vda", "file": image, "format": "qcow2"}]),
                           start=True))
    wait_for(lambda: "writer: up" in console_log(d, name), timeout=60, what="writer up")
    wait_passes(d, name, 2)
    return q


def stop_writer(d, q, name, image):
    """The definition of VM @name names @image; the VM stops and goes.
    Returns its console text and the passes counted at the stop."""
    with open(os.path.join(d.state_dir, "vms", name + ".json")) as f:
        assert json.load(f)["disks"][0]["file"] == image
    q.ok("stop", vm=name)
    last = passes(d, name)
    q.ok("vm-destroy", vm=name)
    return console_log(d, name), last


def mirror_and_switch(d, q, cmd, args, image, backing_file):
    """Mirror VM m's disk (@cmd, @args) while the guest writes, switch it;
    it must then be on @image over @backing_file."""
    q.ok(cmd, dict(args, vm="m", device="vda", **{"job-id": "mj"}))
    q.event("BLOCK_JOB_READY", timeout=120, pred=lambda e: e["data"]["device"] == "mj")
    wait_passes(d, "m", 2)
    q.ok("job-complete", {"vm": "m", "id": "mj"})
    wait_job_end(q, "mj")
    wait_passes(d, "m", 3)
    blk = q.ok("query-block", vm="m")[0]["inserted"]
    assert blk["file"] == image and blk["backing_file"] == backing_file, blk


def check_final(tmp, con, last, orig, images, final):
    """The guest saw its own data throughout; @images pass qemu-img check;
    @final holds exactly the guest's last writes over @orig."""
    assert "MISMATCH" not in con, con[-2000:]
    # Only whole lines: the stop may catch the guest in the middle of one.
    whole = con.splitlines() if con.endswith("\n") else con.splitlines()[:-1]
    crcs = {line.split()[-1] for line in whole if " ok crc " in line}
    assert len(crcs) == 1, crcs

    for img in images:
        r = subprocess.run(["qemu-img", "check", img], capture_output=True, text=True)
        assert r.returncode == 0, "%s: %s%s" % (img, r.stdout, r.stderr)

    flat = os.path.join(tmp, "flat.raw")
    subprocess.run(["qemu-img", "convert", "-f", "qcow2", "-O", "raw", final, flat], check=True)
    with open(flat, "rb") as f:
        got = f.read()
    # each request's pass: P+1 on a prefix of the requests, P after (the VM stopped mid-pass)
    rounds = [struct.unpack_from("<Q", got, k * STRIDE * 512)[0] for k in range(NREQ)]
    top = max(rounds)
    assert top >= last, (top, last)
    cut = next((k for k in range(NREQ) if rounds[k] != top), NREQ)
    assert all(r == top for r in rounds[:cut]) and all(r == top - 1 for r in rounds[cut:]), \
        rounds
    expected = bytearray(orig)
    for k in range(NREQ):
        for j in range(PER_REQ):
            sec = k * STRIDE + j
            expected[sec * 512:(sec + 1) * 512] = sector(rounds[k], sec)
    exp = os.path.join(tmp, "expected.raw")
    with open(exp, "wb") as f:
        f.write(expected)
    r = subprocess.run(["qemu-img", "compare", "-f", "raw", "-F", "qcow2", exp, final],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_snapshot_stream_commit_under_writes():
    require_tool("qemu-img", "qemu-io")
    writer = guest("blk-writer")
    with tempfile.TemporaryDirectory(prefix="vmmd-live.") as tmp:
        orig, base = make_base(tmp, 1212)
        s1, s2, s3 = (os.path.join(tmp, "s%d.qcow2" % i) for i in (1, 2, 3))
        with Vmmd() as d:
            q = start_writer(d, "w", writer, base)

            q.ok("blockdev-snapshot-sync", {"vm": "w", "device": "vda", "snapshot-file": s1})
            assert backing(s1) == base
            wait_passes(d, "w", 2)

            q.ok("block-stream", {"vm": "w", "device": "vda"})
            wait_job_end(q, "vda")
            assert backing(s1) is None, backing(s1)
            wait_passes(d, "w", 2)

            q.ok("blockdev-snapshot-sync", {"vm": "w", "device": "vda", "snapshot-file": s2})
            wait_passes(d, "w", 1)
            q.ok("blockdev-snapshot-sync", {"vm": "w", "device": "vda", "snapshot-file": s3})
            wait_passes(d, "w", 2)

            q.ok("block-commit", {"vm": "w", "device": "vda", "top": s2, "job-id": "c1"})
            wait_job_end(q, "c1")
            assert backing(s3) == s1, backing(s3)
            wait_passes(d, "w", 2)

            q.ok("block-commit", {"vm": "w", "device": "vda", "job-id": "c2"})
            q.event("BLOCK_JOB_READY", timeout=120)
            wait_passes(d, "w", 2)
            q.ok("job-complete", {"vm": "w", "id": "c2"})
            wait_job_end(q, "c2")
            wait_passes(d, "w", 2)
            blk = q.ok("query-block", vm="w")[0]["inserted"]
            assert blk["file"] == s1, blk

            con, last = stop_writer(d, q, "w", s1)
        check_final(tmp, con, last, orig, [base, s1, s2, s3], s1)


def test_mirror_under_writes():
    require_tool("qemu-img")
    writer = guest("blk-writer")
    with tempfile.TemporaryDirectory(prefix="vmmd-live.") as tmp:
        orig, base = make_base(tmp, 1313)
        t1, s1, t2, t3 = (os.path.join(tmp, n + ".qcow2") for n in ("t1", "s1", "t2", "t3"))
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", t1, str(SIZE)], check=True)
        with Vmmd() as d:
            q = start_writer(d, "m", writer, base)

            # the whole disk into t1, with the guest writing all along
            p = d.vmctl("disk", "mirror", "m", "vda", t1, timeout=120)
            assert "m: job vda completed" in p.stdout, p.stdout + p.stderr
            blk = q.ok("query-block", vm="m")[0]["inserted"]
            assert blk["file"] == t1 and blk["node-name"] == "mirror-vda", blk
            assert backing(t1) is None
            wait_passes(d, "m", 2)

            # a new overlay, then only it into t2, added without its backing node
            q.ok("blockdev-snapshot-sync", {"vm": "m", "device": "vda", "snapshot-file": s1})
            wait_passes(d, "m", 1)
            subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", t1, "-F", "qcow2",
                            t2], check=True)
            q.ok("blockdev-add", {"vm": "m", "driver": "qcow2", "node-name": "t2",
                                  "file": {"driver": "file", "filename": t2}, "backing": None})
            mirror_and_switch(d, q, "blockdev-mirror", {"target": "t2", "sync": "top"}, t2, t1)
            err = q.cmd("blockdev-del", {"vm": "m", "node-name": "t2"})["error"]
            assert err["desc"] == "Node t2 is in use", err

            # only the writes from now on, into a new image that goes on top
            mirror_and_switch(d, q, "drive-mirror", {"target": t3, "sync": "none"}, t3, t2)
            con, last = stop_writer(d, q, "m", t3)
        assert backing(t2) == t1 and backing(t3) == t2, (backing(t2), backing(t3))
        check_final(tmp, con, last, orig, [base, t1, s1, t2, t3], t3)


if __name__ == "__main__":
    main(globals())
