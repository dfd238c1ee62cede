#!/usr/bin/env python3
"""Backups of a disk while its guest writes: blockdev-backup and
drive-backup, full and incremental (QEMU 7.2's answers and events are replayed by
test-jobs-golden.py from tests/jobs/golden/*backup*.json); here, whether
the copy is the disk of its moment.

The blk-writer guest rewrites 16 clusters of its disk in passes and checks
what it reads. A transaction takes an internal snapshot of the disk and
starts a backup of it in the same instant; the backup's speed keeps it
from copying anything for seconds, while the guest rewrites every cluster
it writes several times, so each of those writes must wait for the copy of
what it overwrites. The finished backup must equal the snapshot. The same
with sync none (the target, backed by the disk's image, holds only what
the guest overwrote), and with `vmctl disk backup`, whose copy must hold
the guest's requests each from one pass (no snapshot to compare with)."""

import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vmmdtest import Vmmd, main, require_tool  # noqa: E402
from daemon_helpers import console_log, guest  # noqa: E402

live = __import__("test-jobs-live")
snap = __import__("test-blockdev-snapshot-internal")


def job_end(q, job):
    """The job's BLOCK_JOB_COMPLETED or _CANCELLED data."""
    return q.event(("BLOCK_JOB_COMPLETED", "BLOCK_JOB_CANCELLED"), timeout=120,
                   pred=lambda e: e["data"]["device"] == job)


def snapshot_raw(tmp, image, name):
    raw = os.path.join(tmp, name + ".raw")
    subprocess.run(["qemu-img", "convert", "-U", "-l", "snapshot.name=" + name, "-O", "raw",
                    image, raw], check=True)
    return raw


def same(a, fa, b, fb):
    r = subprocess.run(["qemu-img", "compare", "-U", "-f", fa, "-F", fb, a, b],
                       capture_output=True, text=True)
    return r.returncode == 0, r.stdout + r.stderr


def writer_and_target(d, seed):
    """VM w writes its disk (a qcow2 image of random data from @seed); an
    empty image of its size is node tgt. Returns (data, image, QMP, target)."""
    orig, base = live.make_base(d.tmp, seed)
    q = live.start_writer(d, "w", guest("blk-writer"), base)
    tgt = os.path.join(d.tmp, "tgt.qcow2")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", tgt, "4M"], check=True)
    q.ok("blockdev-add", {"vm": "w", "driver": "qcow2", "node-name": "tgt",
                          "file": {"driver": "file", "filename": tgt}})
    return orig, base, q, tgt


def test_backup_under_writes():
    require_tool("qemu-img")
    with Vmmd() as d:
        orig, base, q, tgt = writer_and_target(d, 31)

        # full: 128 KiB/s holds the first 512 KiB copy back for 4 s
        q.ok("transaction", {"vm": "w", "actions": [
            {"type": "blockdev-snapshot-internal-sync", "data": {"device": "vda", "name": "s1"}},
            {"type": "blockdev-backup", "data": {"device": "vda", "target": "tgt",
                                                 "sync": "full", "job-id": "b1",
                                                 "speed": 128 << 10}}]})
        live.wait_passes(d, "w", 3)
        job = q.ok("query-block-jobs", vm="w")[0]
        assert job["device"] == "b1" and job["len"] == 4 << 20, job
        # what the guest's writes waited for is copied: its 16 clusters, no more
        assert 0 < job["offset"] <= 16 * 64 << 10, job
        q.ok("block-job-set-speed", {"vm": "w", "device": "b1", "speed": 0})
        ev = job_end(q, "b1")
        assert ev["event"] == "BLOCK_JOB_COMPLETED" and "error" not in ev["data"], ev
        assert ev["data"]["offset"] == ev["data"]["len"] == 4 << 20, ev
        q.ok("blockdev-del", {"vm": "w", "node-name": "tgt"})
        ok, out = same(tgt, "qcow2", snapshot_raw(d.tmp, base, "s1"), "raw")
        assert ok, "the backup is not the disk of its moment: " + out

        # none: the target keeps only what the guest overwrote since
        none = os.path.join(d.tmp, "none.qcow2")
        q.ok("transaction", {"vm": "w", "actions": [
            {"type": "blockdev-snapshot-internal-sync", "data": {"device": "vda", "name": "s2"}},
            {"type": "drive-backup", "data": {"device": "vda", "target": none,
                                              "sync": "none", "job-id": "n1"}}]})
        live.wait_passes(d, "w", 3)
        q.ok("stop", vm="w")
        q.ok("block-job-cancel", {"vm": "w", "device": "n1"})
        ev = job_end(q, "n1")
        assert ev["event"] == "BLOCK_JOB_CANCELLED", ev
        assert 0 < ev["data"]["offset"] <= 16 * 64 << 10, ev
        q.ok("cont", vm="w")

        # vmctl: drive-backup sync full, followed to its end
        out = d.vmctl("disk", "backup", "w", "vda", os.path.join(d.tmp, "v.qcow2"),
                      "--job-id", "v1").stdout
        assert out.endswith("w: disk vda: backup written to %s\n" % os.path.join(d.tmp, "v.qcow2")), out
        live.wait_passes(d, "w", 1)
        q.ok("stop", vm="w")
        q.ok("vm-destroy", vm="w")
        assert "MISMATCH" not in console_log(d, "w")
        assert "Seccomp" not in d.read_log()

        for img in (base, tgt, none, os.path.join(d.tmp, "v.qcow2")):
            chk = subprocess.run(["qemu-img", "check", img], capture_output=True, text=True)
            assert chk.returncode == 0, (img, chk.stdout, chk.stderr)
        # the target over the disk's image (its backing file) reads as the disk did at s2
        ok, out = same(none, "qcow2", snapshot_raw(d.tmp, base, "s2"), "raw")
        assert ok, "sync none: " + out
        r1 = snap.snapshot_rounds(live, d.tmp, base, "s1", orig)
        r2 = snap.snapshot_rounds(live, d.tmp, base, "s2", orig)
        assert max(r1) < min(r2), (r1, r2)
        subprocess.run(["qemu-img", "snapshot", "-c", "v", os.path.join(d.tmp, "v.qcow2")],
                       check=True)
        rv = snap.snapshot_rounds(live, d.tmp, os.path.join(d.tmp, "v.qcow2"), "v", orig)
        assert max(r2) < min(rv), (r2, rv)


def bitmaps(q, vm):
    return q.ok("query-block", vm=vm)[0]["inserted"].get("dirty-bitmaps", [])


def incremental_writer(d, seed):
    """VM w writes its disk (a qcow2 image of random data from @seed).
    Returns (image, QMP, full, inc): the paths of a full backup and of an
    incremental one on top of it, neither made yet."""
    require_tool("qemu-img")
    base = live.make_base(d.tmp, seed)[1]
    q = live.start_writer(d, "w", guest("blk-writer"), base)
    return (base, q) + tuple(os.path.join(d.tmp, n + ".qcow2") for n in ("full", "inc"))


def check_incremental(d, q, base, inc):
    """The guest writes once more and stops; the incremental backup @inc
    (over the full one) must read as the disk's internal snapshot s2."""
    live.wait_passes(d, "w", 1)
    q.ok("stop", vm="w")
    q.ok("vm-destroy", vm="w")
    assert "MISMATCH" not in console_log(d, "w")
    ok, out = same(inc, "qcow2", snapshot_raw(d.tmp, base, "s2"), "raw")
    assert ok, "full + incremental is not the disk of its moment: " + out


def test_incremental_under_writes():
    """A dirty bitmap added before a full backup, then an incremental
    backup (sync incremental, into an image backed by the full one) in a
    transaction with an internal snapshot, while the guest writes: the
    full image under the incremental one reads as the snapshot, and the
    incremental backup copied only what the guest wrote. A cancelled
    incremental backup gives the bitmap back what it held."""
    with Vmmd() as d:
        base, q, full, inc = incremental_writer(d, 33)
        out = d.vmctl("disk", "bitmap", "add", "w", "vda", "v1", "--granularity", "4k").stdout
        assert out == "w: disk vda: bitmap v1 added\n", out
        lines = d.vmctl("disk", "bitmap", "list", "w", "vda").stdout.splitlines()
        assert lines[1].split()[:4] == ["v1", "yes", "no", "4096"], lines
        out = d.vmctl("disk", "bitmap", "remove", "w", "vda", "v1").stdout
        assert out == "w: disk vda: bitmap v1 removed\n", out
        q.ok("block-dirty-bitmap-add", {"vm": "w", "node": "vda", "name": "b0"})
        r = q.cmd("block-dirty-bitmap-add", {"vm": "w", "node": "vda", "name": "p",
                                             "persistent": True})
        assert "in memory only" in r["error"]["desc"], r
        live.wait_passes(d, "w", 1)
        before = bitmaps(q, "w")[0]["count"]
        # a resize keeps the marks, and the bitmap covers the new size
        q.ok("block_resize", {"vm": "w", "device": "vda", "size": 8 << 20})
        bm = bitmaps(q, "w")[0]
        assert bm["count"] >= before > 0 and bm["granularity"] == 64 << 10, (before, bm)
        q.ok("drive-backup", {"vm": "w", "device": "vda", "target": full, "sync": "full",
                              "job-id": "f"})
        assert "error" not in job_end(q, "f")["data"]
        live.wait_passes(d, "w", 3)
        [bm] = bitmaps(q, "w")
        assert bm["name"] == "b0" and bm["recording"] and not bm["busy"], bm
        assert 0 < bm["count"] <= 16 * 64 << 10 and bm["granularity"] == 64 << 10, bm

        # cancelled: what the bitmap held comes back
        tmp_t = os.path.join(d.tmp, "x.qcow2")
        q.ok("drive-backup", {"vm": "w", "device": "vda", "target": tmp_t,
                              "sync": "incremental", "bitmap": "b0", "job-id": "x",
                              "speed": 1})
        assert bitmaps(q, "w")[0]["busy"], bitmaps(q, "w")
        r = q.cmd("block-dirty-bitmap-clear", {"vm": "w", "node": "vda", "name": "b0"})
        assert "currently in use" in r["error"]["desc"], r
        q.ok("block-job-cancel", {"vm": "w", "device": "x"})
        assert job_end(q, "x")["event"] == "BLOCK_JOB_CANCELLED"
        held = bm["count"]
        bm = bitmaps(q, "w")[0]
        assert not bm["busy"] and bm["count"] >= held, (held, bm)

        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", full, "-F", "qcow2",
                        inc], check=True)
        q.ok("transaction", {"vm": "w", "actions": [
            {"type": "blockdev-snapshot-internal-sync", "data": {"device": "vda", "name": "s2"}},
            {"type": "drive-backup", "data": {"device": "vda", "target": inc, "format": "qcow2",
                                              "mode": "existing", "sync": "incremental",
                                              "bitmap": "b0", "job-id": "i"}}]})
        ev = job_end(q, "i")
        assert ev["event"] == "BLOCK_JOB_COMPLETED" and "error" not in ev["data"], ev
        # only the guest's 16 clusters (and what it wrote during the full backup)
        assert 0 < ev["data"]["len"] <= 16 * 64 << 10, ev
        check_incremental(d, q, base, inc)


def test_bitmap_transactions():
    """QEMU's way to start a chain of incremental backups: a bitmap added
    in the same instant as a full backup (vmctl disk backup --new-bitmap,
    a transaction); then libvirt's: a temporary bitmap merged from it and
    an incremental backup of that one, in a transaction with an internal
    snapshot. The full image under the incremental one must read as the
    snapshot, while the guest writes throughout. A transaction whose last
    action fails on the worker puts the bitmap it cleared back."""
    with Vmmd() as d:
        base, q, full, inc = incremental_writer(d, 34)
        out = d.vmctl("disk", "backup", "w", "vda", full, "--new-bitmap", "b0").stdout
        assert out.endswith("w: disk vda: backup written to %s\n" % full), out
        [bm] = bitmaps(q, "w")
        assert bm["name"] == "b0" and bm["recording"] and not bm["busy"], bm
        r = d.vmctl("disk", "stream", "w", "vda", "--new-bitmap", "x", check=False)
        assert r.returncode == 2 and "--new-bitmap are for disk backup" in r.stderr, r
        # (QEMU 7.2 dies of this one, so no golden trace has it)
        r = q.cmd("transaction", vm="w", actions=[
            {"type": "block-dirty-bitmap-enable", "data": {"node": "vda", "name": "zz"}}])
        assert r["error"]["desc"] == "Dirty bitmap 'zz' not found", r
        live.wait_passes(d, "w", 2)

        # the check passes; the 65th bitmap of the node fails on the worker
        for k in range(1, 64):
            q.ok("block-dirty-bitmap-add", {"vm": "w", "node": "vda", "name": "x%d" % k})
        q.ok("stop", vm="w")
        before = [b for b in bitmaps(q, "w") if b["name"] == "b0"]
        assert before[0]["count"] > 0, before
        r = q.cmd("transaction", vm="w", actions=[
            {"type": "block-dirty-bitmap-clear", "data": {"node": "vda", "name": "b0"}},
            {"type": "block-dirty-bitmap-disable", "data": {"node": "vda", "name": "b0"}},
            {"type": "block-dirty-bitmap-add", "data": {"node": "vda", "name": "x64"}}])
        assert r["error"]["desc"] == "A node has at most 64 dirty bitmaps", r
        assert [b for b in bitmaps(q, "w") if b["name"] == "b0"] == before
        for k in range(1, 64):
            q.ok("block-dirty-bitmap-remove", {"vm": "w", "node": "vda", "name": "x%d" % k})
        q.ok("cont", vm="w")
        live.wait_passes(d, "w", 1)

        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", full, "-F", "qcow2",
                        inc], check=True)
        q.ok("transaction", {"vm": "w", "actions": [
            {"type": "blockdev-snapshot-internal-sync", "data": {"device": "vda", "name": "s2"}},
            {"type": "block-dirty-bitmap-add",
             "data": {"node": "vda", "name": "tmp", "disabled": True}},
            {"type": "block-dirty-bitmap-merge",
             "data": {"node": "vda", "target": "tmp", "bitmaps": ["b0"]}},
            {"type": "drive-backup", "data": {"device": "vda", "target": inc, "format": "qcow2",
                                              "mode": "existing", "sync": "incremental",
                                              "bitmap": "tmp", "job-id": "i"}}]})
        ev = job_end(q, "i")
        assert ev["event"] == "BLOCK_JOB_COMPLETED" and "error" not in ev["data"], ev
        assert 0 < ev["data"]["len"] <= 16 * 64 << 10, ev
        tmp, b0 = bitmaps(q, "w")
        assert tmp["name"] == "tmp" and not tmp["recording"] and tmp["count"] == 0, tmp
        assert b0["name"] == "b0" and b0["recording"] and b0["count"] > 0, b0
        check_incremental(d, q, base, inc)


def test_refusals():
    """A disk under a backup refuses what would change it under the copy;
    the backup's target is busy; a failed transaction starts no backup and
    leaves the guest's writes free."""
    with Vmmd() as d:
        q = writer_and_target(d, 32)[2]
        r = q.cmd("transaction", vm="w", actions=[
            {"type": "blockdev-backup", "data": {"device": "vda", "target": "tgt",
                                                 "sync": "full", "job-id": "x"}},
            {"type": "blockdev-snapshot-sync",
             "data": {"device": "vda", "snapshot-file": os.path.join(d.tmp, "o.qcow2")}}])
        assert r["error"]["desc"] == "disk 'vda' appears twice in the transaction", r
        assert q.ok("query-jobs", vm="w") == []
        # a client's bitmaps are bounded: 64 per node, 256 MiB in all
        big = os.path.join(d.tmp, "big.raw")
        with open(big, "wb") as f:
            f.truncate(2 << 40)
        q.ok("blockdev-add", {"vm": "w", "driver": "raw", "node-name": "big",
                              "file": {"driver": "file", "filename": big}})
        r = q.cmd("block-dirty-bitmap-add", {"vm": "w", "node": "big", "name": "g",
                                             "granularity": 512})
        assert r["error"]["desc"] == ("Bitmap 'g' would take 512 MiB (a node's bitmaps at "
                                      "most 256 MiB): choose a larger granularity"), r
        for k in range(32):  # 8 MiB each
            q.ok("block-dirty-bitmap-add", {"vm": "w", "node": "big", "name": "b%d" % k,
                                            "granularity": 32768})
        r = q.cmd("block-dirty-bitmap-add", {"vm": "w", "node": "big", "name": "b32",
                                             "granularity": 32768})
        assert r["error"]["desc"] == ("Bitmap 'b32' would bring the node's bitmaps to 264 MiB "
                                      "(at most 256 MiB): choose a larger granularity"), r
        q.ok("blockdev-del", {"vm": "w", "node-name": "big"})
        for k in range(64):
            q.ok("block-dirty-bitmap-add", {"vm": "w", "node": "vda", "name": "b%d" % k})
        r = q.cmd("block-dirty-bitmap-add", {"vm": "w", "node": "vda", "name": "b64"})
        assert r["error"]["desc"] == "A node has at most 64 dirty bitmaps", r
        for k in range(64):
            q.ok("block-dirty-bitmap-remove", {"vm": "w", "node": "vda", "name": "b%d" % k})
        live.wait_passes(d, "w", 1)
        r = q.cmd("blockdev-backup", vm="w", device="vda", target="vda", sync="full")
        assert r["error"]["desc"] == "Source and target cannot be the same", r
        r = q.cmd("blockdev-backup", vm="w", device="vda", target="tgt", sync="full",
                  compress=True)
        assert "'compress' is not supported" in r["error"]["desc"], r
        q.ok("blockdev-backup", {"vm": "w", "device": "vda", "target": "tgt", "sync": "none",
                                 "job-id": "n"})
        for cmd, args, want in (
                ("blockdev-snapshot-sync", {"snapshot-file": os.path.join(d.tmp, "o.qcow2")},
                 "block job: backup"),
                ("blockdev-snapshot-internal-sync", {"name": "z"}, "block job: backup"),
                ("block-stream", {}, "block job: backup"),
                ("blockdev-del", {"node-name": "tgt"}, "block job: backup")):
            a = dict(args, vm="w")
            if cmd != "blockdev-del":
                a["device"] = "vda"
            r = q.cmd(cmd, a)
            assert "error" in r and want in r["error"]["desc"], (cmd, r)
        live.wait_passes(d, "w", 1)
        q.ok("block-job-cancel", {"vm": "w", "device": "n"})
        assert job_end(q, "n")["event"] == "BLOCK_JOB_CANCELLED"
        live.wait_passes(d, "w", 1)
        q.ok("vm-destroy", vm="w")


if __name__ == "__main__":
    main(globals())
