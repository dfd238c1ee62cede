#!/usr/bin/env python3
"""Internal snapshots of a running VM (snapshot-save, snapshot-load,
snapshot-delete; daemon/snapshot.c, docs/vmstate.md) with the counter guest
(tests/guests/counter.c: a counter and a nonce only in RAM, the counter
mirrored on sector 0 of its qcow2 disk and checked against RAM before every
write). Saved while it runs, left to count on, then loaded: it goes on
from the snapshot's count with the same nonce (no reboot) and finds on the
disk what its RAM says (no MISMATCH). qemu-img lists the snapshot with its
VM size on the vmstate disk, 0 on the other, and checks both clean. Bad
input (unknown tag, duplicate tag, a raw disk, an unknown node, a full
disk) fails through the job with QEMU 7.2's message and leaves the images
as they were."""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vmmdtest import Vmmd, main, require_tool, skip, wait_for  # noqa: E402
from daemon_helpers import TEST_CPU, console_log, guest, wait_console  # noqa: E402

TICK = re.compile(r"counter: tick (\d+) nonce (0x[0-9a-f]+) disk ok")


def ticks(text):
    return [(int(m.group(1)), m.group(2)) for m in TICK.finditer(text)]


def qcow2(path, size="4M"):
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", path, size], check=True)
    return path


def counter_vm(tmp, name="c1", extra_disks=()):
    disks = [{"id": "vda", "file": qcow2(os.path.join(tmp, name + "-a.qcow2")),
              "format": "qcow2"},
             {"id": "vdb", "file": qcow2(os.path.join(tmp, name + "-b.qcow2")),
              "format": "qcow2"}]
    disks += list(extra_disks)
    return {"name": name, "vcpus": 1, "memory": "32M", "cpu": TEST_CPU,
            "boot": {"kernel": guest("counter")}, "disks": disks}


def run_job(q, vm, cmd, job_id, timeout=120.0, **args):
    """Run a snapshot job to its end; returns (query-jobs entry, events)."""
    q.ok(cmd, vm=vm, **{"job-id": job_id}, **args)
    q.event("JOB_STATUS_CHANGE", timeout=timeout,
            pred=lambda e: e["data"]["id"] == job_id and e["data"]["status"] == "concluded")
    info = [j for j in q.ok("query-jobs", vm=vm) if j["id"] == job_id][0]
    q.ok("job-dismiss", {"vm": vm, "id": job_id})
    return info


def snapshot_list(path):
    out = subprocess.run(["qemu-img", "info", "-U", "--output=json", path], check=True,
                         capture_output=True, text=True).stdout
    return {s["name"]: s for s in json.loads(out).get("snapshots", [])}


def qemu_check(path):
    r = subprocess.run(["qemu-img", "check", "-U", path], capture_output=True, text=True)
    assert r.returncode == 0, "qemu-img check %s: %s" % (path, r.stdout + r.stderr)


def test_save_run_load_delete():
    require_tool("qemu-img")
    with tempfile.TemporaryDirectory(prefix="vmmd-isnap.") as tmp, Vmmd() as d:
        q = d.qmp()
        vmdef = counter_vm(tmp)
        a, b = vmdef["disks"][0]["file"], vmdef["disks"][1]["file"]
        q.ok("vm-create", dict(vmdef, start=True))
        wait_console(d, "c1", "counter: tick 3 ", timeout=90)
        info = run_job(q, "c1", "snapshot-save", "s1", tag="t1", vmstate="vda",
                       devices=["vda", "vdb"])
        assert "error" not in info and info["type"] == "snapshot-save", info
        assert info["current-progress"] == 1 and info["total-progress"] == 1, info
        at_save = ticks(console_log(d, "c1"))
        assert q.ok("query-status", vm="c1")["status"] == "running"
        # the snapshot is listed as QEMU lists its own
        sa, sb = snapshot_list(a)["t1"], snapshot_list(b)["t1"]
        assert sa["vm-state-size"] > 0 and sb["vm-state-size"] == 0, (sa, sb)
        assert sa["date-sec"] == sb["date-sec"] and sa["id"] == "1", (sa, sb)
        out = subprocess.run(["qemu-img", "snapshot", "-U", "-l", a], check=True,
                             capture_output=True, text=True).stdout
        assert re.search(r"^1\s+t1\s+\d+(\.\d+)? [KM]iB ", out, re.M), out
        # the guest counts on and writes its disk
        last = at_save[-1][0]
        wait_console(d, "c1", "counter: tick %d " % (last + 4), timeout=90)
        mark = len(console_log(d, "c1"))
        info = run_job(q, "c1", "snapshot-load", "l1", tag="t1", vmstate="vda",
                       devices=["vda", "vdb"])
        assert "error" not in info, info
        assert q.ok("query-status", vm="c1")["status"] == "running"
        wait_for(lambda: len(ticks(console_log(d, "c1")[mark:])) >= 3, 90,
                 what="ticks after load")
        # the line being printed at the load may finish after it: skip to a new line
        after_text = console_log(d, "c1")[mark:]
        after_text = after_text[after_text.index("\n") + 1:]
        after = ticks(after_text)
        assert "counter: boot" not in after_text, after_text[-2000:]
        assert "MISMATCH" not in after_text, after_text[-2000:]
        assert all(n == at_save[-1][1] for _, n in after), (at_save[-1], after[:3])
        # it continues from the snapshot, not from where it was before the load
        assert last + 1 <= after[0][0] <= last + 3, (last, after[:3])

        # bad input: each fails through the job with QEMU's message, nothing changes
        info = run_job(q, "c1", "snapshot-save", "s2", tag="t1", vmstate="vda",
                       devices=["vda", "vdb"])
        assert info["error"] == "Snapshot 't1' already exists in one or more devices", info
        info = run_job(q, "c1", "snapshot-save", "s3", tag="t3", vmstate="vdx",
                       devices=["vda"])
        assert info["error"] == "vmstate block device 'vdx' does not exist", info
        info = run_job(q, "c1", "snapshot-save", "s4", tag="t4", vmstate="vda",
                       devices=["vda", "nodev"])
        assert info["error"] == "No block device node 'nodev'", info
        assert q.ok("query-status", vm="c1")["status"] == "running"
        info = run_job(q, "c1", "snapshot-load", "l2", tag="nope", vmstate="vda",
                       devices=["vda", "vdb"])
        assert info["error"] == "Snapshot 'nope' does not exist in one or more devices", info
        # as QEMU: a failed load leaves the VM paused; cont goes on
        assert q.ok("query-status", vm="c1")["status"] == "restore-vm"
        q.ok("cont", vm="c1")
        assert sorted(snapshot_list(a)) == ["t1"] and sorted(snapshot_list(b)) == ["t1"]

        info = run_job(q, "c1", "snapshot-delete", "d1", tag="t1", devices=["vda", "vdb"])
        assert "error" not in info, info
        assert snapshot_list(a) == {} and snapshot_list(b) == {}
        # deleting a tag no disk has succeeds, as in QEMU
        info = run_job(q, "c1", "snapshot-delete", "d2", tag="t1", devices=["vda", "vdb"])
        assert "error" not in info, info
        n = len(ticks(console_log(d, "c1")))
        wait_for(lambda: len(ticks(console_log(d, "c1"))) > n + 1, 60, what="ticks")
        assert "MISMATCH" not in console_log(d, "c1")
        q.ok("vm-destroy", vm="c1")
        qemu_check(a)
        qemu_check(b)


def test_raw_disk_refused():
    require_tool("qemu-img")
    with tempfile.TemporaryDirectory(prefix="vmmd-isnap.") as tmp, Vmmd() as d:
        q = d.qmp()
        raw = os.path.join(tmp, "r.raw")
        with open(raw, "wb") as f:
            f.truncate(1 << 20)
        vmdef = counter_vm(tmp, extra_disks=[{"id": "vdr", "file": raw, "format": "raw"}])
        q.ok("vm-create", dict(vmdef, start=True))
        wait_console(d, "c1", "counter: tick 1 ", timeout=90)
        info = run_job(q, "c1", "snapshot-save", "s1", tag="t1", vmstate="vda",
                       devices=["vda", "vdr"])
        assert info["error"] == "Device 'vdr' is writable but does not support snapshots", info
        assert snapshot_list(vmdef["disks"][0]["file"]) == {}
        assert q.ok("query-status", vm="c1")["status"] == "running"
        q.ok("vm-destroy", vm="c1")


def test_save_out_of_space():
    """A vmstate disk on a full file system: the save fails, no snapshot is
    left on any disk, the VM runs on and its disks check clean."""
    require_tool("qemu-img")
    if os.geteuid() != 0 or not shutil.which("mount"):
        skip("needs root to mount a small tmpfs")
    with tempfile.TemporaryDirectory(prefix="vmmd-isnap.") as tmp, Vmmd() as d:
        small = os.path.join(tmp, "small")
        os.mkdir(small)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=640k", "tmpfs", small],
                           capture_output=True, text=True)
        if r.returncode != 0:
            skip("cannot mount a tmpfs: " + r.stderr.strip())
        try:
            q = d.qmp()
            vmdef = counter_vm(tmp)
            a = qcow2(os.path.join(small, "a.qcow2"))
            vmdef["disks"][0]["file"] = a
            b = vmdef["disks"][1]["file"]
            q.ok("vm-create", dict(vmdef, start=True))
            wait_console(d, "c1", "counter: tick 1 ", timeout=90)
            # vdb first: its snapshot is made... no: the state is written first,
            # and fails; neither disk may keep a snapshot
            info = run_job(q, "c1", "snapshot-save", "s1", tag="t1", vmstate="vda",
                           devices=["vdb", "vda"])
            assert "No space left on device" in info.get("error", ""), info
            assert info["error"].startswith("Error while writing VM state"), info
            assert snapshot_list(a) == {} and snapshot_list(b) == {}
            assert q.ok("query-status", vm="c1")["status"] == "running"
            n = len(ticks(console_log(d, "c1")))
            wait_for(lambda: len(ticks(console_log(d, "c1"))) > n, 60, what="ticks")
            assert "MISMATCH" not in console_log(d, "c1")
            q.ok("vm-destroy", vm="c1")
            qemu_check(b)
            r = subprocess.run(["qemu-img", "check", "-U", a], capture_output=True, text=True)
            # leaked clusters of the failed write are allowed (as QEMU's), no corruption
            assert r.returncode in (0, 3), r.stdout + r.stderr
        finally:
            subprocess.run(["umount", "-l", small])


if __name__ == "__main__":
    main(globals())
