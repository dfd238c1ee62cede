#!/usr/bin/env python3
"""vmctl disk snapshot|stream|commit and vmctl jobs on a running VM: the
commands wait for their job and report it, the disk ends on the image they
say (also for an IDE disk), errors are vmmd's (QEMU's) messages with exit
status 1, bad usage 2."""

import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vmmdtest import Vmmd, main, require_tool  # noqa: E402
from daemon_helpers import guest, vm_def  # noqa: E402


def test_vmctl_disk_commands():
    require_tool("qemu-img", "qemu-io")
    idle = guest("idle")
    with tempfile.TemporaryDirectory(prefix="vmmd-vmctl-disk.") as tmp:
        base = os.path.join(tmp, "base.qcow2")
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", base, "4M"], check=True)
        subprocess.run(["qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 0 1M", base], check=True,
                       stdout=subprocess.DEVNULL)
        s1, s2 = os.path.join(tmp, "s1.qcow2"), os.path.join(tmp, "s2.qcow2")
        with Vmmd() as d:
            q = d.qmp()
            q.ok("vm-create", dict(vm_def("w", idle, disks=[{"id": "vda", "file": base,
                                                             "format": "qcow2"}]), start=True))
            p = d.vmctl("disk", "snapshot", "w", "vda", s1)
            assert "disk vda now writes to %s" % s1 in p.stdout, p.stdout
            p = d.vmctl("disk", "snapshot", "w", "vda", s1, check=False)
            assert p.returncode == 1 and "Could not create '%s': File exists" % s1 in p.stderr, p
            p = d.vmctl("disk", "snapshot", "w", "nodisk", s2, check=False)
            assert p.returncode == 1 and "Cannot find device='nodisk'" in p.stderr, p.stderr

            p = d.vmctl("disk", "stream", "w", "vda", "--speed", "64M")
            assert "w: job vda completed" in p.stdout, p.stdout
            assert "backing-filename" not in subprocess.run(
                ["qemu-img", "info", "-U", "--output=json", s1], capture_output=True,
                text=True).stdout

            p = d.vmctl("disk", "commit", "w", "vda", check=False)
            assert p.returncode == 1 and "cannot commit an image into itself" in p.stderr, p

            d.vmctl("disk", "snapshot", "w", "vda", s2)
            p = d.vmctl("disk", "commit", "w", "vda", "--job-id", "c1")
            assert "w: job c1 completed" in p.stdout, p.stdout
            assert q.ok("query-block", vm="w")[0]["inserted"]["file"] == s1

            p = d.vmctl("jobs", "w")
            assert p.stdout.split() == ["ID", "TYPE", "STATUS", "PROGRESS"], p.stdout
            p = d.vmctl("--json", "jobs", "w")
            assert p.stdout.strip() == "[]", p.stdout
            p = d.vmctl("disk", "frobnicate", "w", "vda", check=False)
            assert p.returncode == 2, p
            p = d.vmctl("disk", "snapshot", "w", "vda", check=False)
            assert p.returncode == 2, p
            q.ok("vm-destroy", vm="w")
        for img in (base, s1, s2):
            r = subprocess.run(["qemu-img", "check", img], capture_output=True, text=True)
            assert r.returncode == 0, r.stdout + r.stderr


def test_ide_disk_snapshot_and_commit():
    """IDE hard disks (requests on vCPU threads) take the same path."""
    require_tool("qemu-img")
    idle = guest("idle")
    with tempfile.TemporaryDirectory(prefix="vmmd-vmctl-ide.") as tmp:
        base = os.path.join(tmp, "base.qcow2")
        ov = os.path.join(tmp, "ov.qcow2")
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", base, "4M"], check=True)
        with Vmmd() as d:
            q = d.qmp()
            q.ok("vm-create", dict(vm_def("i", idle, disks=[{
                "id": "hda", "driver": "ide-hd", "file": base, "format": "qcow2"}]),
                start=True))
            d.vmctl("disk", "snapshot", "i", "hda", ov)
            with open(os.path.join(d.state_dir, "vms", "i.json")) as f:
                assert json.load(f)["disks"][0]["file"] == ov
            p = d.vmctl("disk", "commit", "i", "hda")
            assert "i: job hda completed" in p.stdout, p.stdout
            with open(os.path.join(d.state_dir, "vms", "i.json")) as f:
                assert json.load(f)["disks"][0]["file"] == base
            q.ok("vm-destroy", vm="i")
        for img in (base, ov):
            r = subprocess.run(["qemu-img", "check", img], capture_output=True, text=True)
            assert r.returncode == 0, r.stdout + r.stderr


def test_destroy_with_a_running_job():
    """vm-destroy cancels the VM's jobs first; the VM goes once they ended."""
    require_tool("qemu-img", "qemu-io")
    idle = guest("idle")
    with tempfile.TemporaryDirectory(prefix="vmmd-vmctl-jobdestroy.") as tmp:
        base = os.path.join(tmp, "base.qcow2")
        top = os.path.join(tmp, "top.qcow2")
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", base, "4M"], check=True)
        subprocess.run(["qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 0 2M", base], check=True,
                       stdout=subprocess.DEVNULL)
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", base, "-F", "qcow2",
                        top], check=True)
        with Vmmd() as d:
            q = d.qmp()
            q.ok("vm-create", dict(vm_def("x", idle, disks=[{"id": "vda", "file": top,
                                                             "format": "qcow2"}]), start=True))
            q.ok("block-stream", {"vm": "x", "device": "vda", "speed": 4096,
                                  "auto-dismiss": False})
            q.event("JOB_STATUS_CHANGE", pred=lambda e: e["data"]["status"] == "running")
            q.ok("vm-destroy", vm="x")
            q.event("BLOCK_JOB_CANCELLED", timeout=30)
            q.event("JOB_STATUS_CHANGE", timeout=30, pred=lambda e: e["data"]["status"] == "null")
            q.event("SHUTDOWN", timeout=30)
            assert q.ok("query-jobs", vm="x") == []
            assert q.ok("query-status", vm="x")["status"] == "shutdown"
        r = subprocess.run(["qemu-img", "check", top], capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr


if __name__ == "__main__":
    main(globals())
