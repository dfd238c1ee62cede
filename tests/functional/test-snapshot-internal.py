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
        wait_console(d, "c1", "counter: tick %d " % (last + 2), timeout=90)
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


def hmp(q, vm, line):
    return q.ok("human-monitor-command", {"vm": vm, "command-line": line})


def check_resumed_at(d, vm, mark, at):
    """After a load at console offset @mark: the guest goes on from tick
    @at (the last tick before the snapshot), same nonce, no mismatch."""
    wait_for(lambda: len(ticks(console_log(d, vm)[mark:])) >= 2, 90, what="ticks after load")
    text = console_log(d, vm)[mark:]
    text = text[text.index("\n") + 1:]
    after = ticks(text)
    assert "counter: boot" not in text and "MISMATCH" not in text, text[-2000:]
    assert all(n == at[1] for _, n in after), (at, after[:3])
    assert at[0] + 1 <= after[0][0] <= at[0] + 3, (at, after[:3])


def test_vmctl_and_hmp():
    """vmctl snapshot save|list|load|delete and HMP savevm/loadvm/delvm/info
    snapshots on the same guest; HMP's jobs are not listed and send no job
    events."""
    require_tool("qemu-img")
    with tempfile.TemporaryDirectory(prefix="vmmd-isnap.") as tmp, Vmmd() as d:
        q = d.qmp()
        q.ok("vm-create", dict(counter_vm(tmp), start=True))
        wait_console(d, "c1", "counter: tick 2 ", timeout=90)
        p = d.vmctl("snapshot", "save", "c1", "v1")
        assert p.stdout.strip() == "c1: snapshot v1 saved", p.stdout
        at_v1 = ticks(console_log(d, "c1"))[-1]
        wait_console(d, "c1", "counter: tick %d " % (at_v1[0] + 2), timeout=90)
        assert hmp(q, "c1", "savevm h1") == ""
        at_h1 = ticks(console_log(d, "c1"))[-1]
        assert not [j for j in q.ok("query-jobs", vm="c1")], "HMP's job is listed"
        text = hmp(q, "c1", "info snapshots")
        lines = text.split("\r\n")
        assert lines[0] == "List of snapshots present on all disks:", text
        assert re.match(r"ID {8}TAG {15}VM SIZE {16}DATE {5}VM CLOCK {5}ICOUNT$", lines[1]), text
        # QEMU's columns: "%-9s %-16s %8s%20s%13s%11s"
        row = lines[2]
        assert len(row) == 79 and row[:27] == "--        v1               ", text
        assert re.match(r" *[\d.]+ [KM]iB$", row[27:35]), text
        assert re.match(r" \d{4}-\d\d-\d\d \d\d:\d\d:\d\d$", row[35:55]), text
        assert re.match(r" \d\d:\d\d:\d\d\.\d{3}$", row[55:68]) and row[68:] == " " * 11, text
        assert lines[3].startswith("--        h1  "), text
        p = d.vmctl("snapshot", "list", "c1")
        assert "List of snapshots present on all disks:" in p.stdout and " h1 " in p.stdout
        p = d.vmctl("--json", "snapshot", "list", "c1")
        disks = json.loads(p.stdout)
        assert [x["device"] for x in disks] == ["vda", "vdb"], disks
        assert [s["name"] for s in disks[0]["snapshots"]] == ["v1", "h1"], disks
        # HMP loadvm: back to h1
        mark = len(console_log(d, "c1"))
        assert hmp(q, "c1", "loadvm h1") == ""
        check_resumed_at(d, "c1", mark, at_h1)
        # vmctl load: back to v1
        mark = len(console_log(d, "c1"))
        p = d.vmctl("snapshot", "restore", "c1", "v1")
        assert p.stdout.strip() == "c1: snapshot v1 loaded", p.stdout
        check_resumed_at(d, "c1", mark, at_v1)
        # errors: QEMU's text; a failed vmctl load exits 1 with the job's error
        assert hmp(q, "c1", "loadvm nope") == \
            "Error: Snapshot 'nope' does not exist in one or more devices\r\n"
        assert hmp(q, "c1", "info status") == "VM status: paused (restore-vm)\r\n"
        assert hmp(q, "c1", "cont") == ""
        p = d.vmctl("snapshot", "load", "c1", "nope", check=False)
        assert p.returncode == 1 and "does not exist in one or more devices" in p.stderr, p
        q.ok("cont", vm="c1")
        assert hmp(q, "c1", "loadvm") == \
            "loadvm: string expected\r\nTry \"help loadvm\" for more information\r\n"
        d.vmctl("snapshot", "delete", "c1", "v1")
        assert hmp(q, "c1", "delvm h1") == ""
        assert hmp(q, "c1", "info snapshots") == "There is no snapshot available.\r\n"
        # savevm without a name: QEMU's vm-DATE
        assert hmp(q, "c1", "savevm") == ""
        assert re.search(r"-- {8}vm-\d{14} ", hmp(q, "c1", "info snapshots"))
        ev = [e for e in q.events if e["event"] == "JOB_STATUS_CHANGE"
              and e["data"]["id"].startswith("#")]
        assert not ev, ev
        q.ok("vm-destroy", vm="c1")
        for disk in ("c1-a.qcow2", "c1-b.qcow2"):
            qemu_check(os.path.join(tmp, disk))


def test_raw_disk_and_busy_disk_refused():
    require_tool("qemu-img", "qemu-io")
    with tempfile.TemporaryDirectory(prefix="vmmd-isnap.") as tmp, Vmmd() as d:
        q = d.qmp()
        raw = os.path.join(tmp, "r.raw")
        with open(raw, "wb") as f:
            f.truncate(1 << 20)
        base = qcow2(os.path.join(tmp, "base.qcow2"))
        subprocess.run(["qemu-io", "-f", "qcow2", "-c", "write -P 0x55 0 2M", base],
                       check=True, stdout=subprocess.DEVNULL)
        top = os.path.join(tmp, "top.qcow2")
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", base, "-F", "qcow2",
                        top], check=True)
        vmdef = counter_vm(tmp, extra_disks=[{"id": "vdr", "file": raw, "format": "raw"},
                                             {"id": "vdc", "file": top, "format": "qcow2"}])
        q.ok("vm-create", dict(vmdef, start=True))
        wait_console(d, "c1", "counter: tick 1 ", timeout=90)
        info = run_job(q, "c1", "snapshot-save", "s1", tag="t1", vmstate="vda",
                       devices=["vda", "vdr"])
        assert info["error"] == "Device 'vdr' is writable but does not support snapshots", info
        assert snapshot_list(vmdef["disks"][0]["file"]) == {}
        # a disk with a block job: QEMU's blocker message, through the job
        q.ok("block-stream", vm="c1", device="vdc", speed=1)
        info = run_job(q, "c1", "snapshot-save", "s2", tag="t2", vmstate="vda",
                       devices=["vda", "vdc"])
        assert info["error"] == \
            "Node 'vdc' is busy: block device is in use by block job: stream", info
        q.ok("job-cancel", {"vm": "c1", "id": "vdc"})
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


def test_second_disk_out_of_space():
    """The state is written and the first disk's snapshot made, then the
    second disk (on a full file system) fails: the first disk's snapshot
    goes again, and the VM runs on."""
    require_tool("qemu-img")
    if os.geteuid() != 0 or not shutil.which("mount"):
        skip("needs root to mount a small tmpfs")
    with tempfile.TemporaryDirectory(prefix="vmmd-isnap.") as tmp, Vmmd() as d:
        small = os.path.join(tmp, "small")
        os.mkdir(small)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", small],
                           capture_output=True, text=True)
        if r.returncode != 0:
            skip("cannot mount a tmpfs: " + r.stderr.strip())
        try:
            q = d.qmp()
            vmdef = counter_vm(tmp)
            a = vmdef["disks"][0]["file"]
            b = qcow2(os.path.join(small, "b.qcow2"))
            vmdef["disks"][1]["file"] = b
            q.ok("vm-create", dict(vmdef, start=True))
            wait_console(d, "c1", "counter: tick 1 ", timeout=90)
            fd = os.open(os.path.join(small, "fill"), os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                while os.write(fd, b"\x01" * 4096) > 0:
                    pass
            except OSError:
                pass  # full
            os.close(fd)
            info = run_job(q, "c1", "snapshot-save", "s1", tag="t1", vmstate="vda",
                           devices=["vda", "vdb"])
            assert info.get("error", "").startswith("Could not create snapshot 't1' on 'vdb'"), \
                info
            assert "No space left on device" in info["error"], info
            assert snapshot_list(a) == {} and snapshot_list(b) == {}
            assert q.ok("query-status", vm="c1")["status"] == "running"
            n = len(ticks(console_log(d, "c1")))
            wait_for(lambda: len(ticks(console_log(d, "c1"))) > n, 60, what="ticks")
            q.ok("vm-destroy", vm="c1")
            qemu_check(a)
            r = subprocess.run(["qemu-img", "check", "-U", b], capture_output=True, text=True)
            assert r.returncode in (0, 3), r.stdout + r.stderr
        finally:
            subprocess.run(["umount", "-l", small])


if __name__ == "__main__":
    main(globals())
