#!/usr/bin/env python3
"""The job commands over QMP without a job: empty lists, and the errors of
unknown jobs match QEMU 7.2's (tests/jobs/golden/job-errors.json); job
commands are VM-scoped like QEMU's, on the main socket with "vm". What
vmmd's blockdev-mirror and drive-mirror refuse where QEMU 7.2 answers
otherwise, and what a mirror's target is kept from while the job runs."""

import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vmmdtest import TOP_SRCDIR, Vmmd, main, require_tool  # noqa: E402
from daemon_helpers import NOBOOT, guest, vm_def  # noqa: E402

GOLDEN = os.path.join(TOP_SRCDIR, "tests", "jobs", "golden", "job-errors.json")


def test_job_errors_match_qemu():
    with open(GOLDEN) as f:
        golden = json.load(f)
    want = {}
    for r in golden["replies"]:
        want.setdefault(r["cmd"], []).append(r["reply"])
    with Vmmd() as d:
        q = d.qmp()
        q.ok("vm-create", {"name": "j", "boot": NOBOOT})
        assert q.ok("query-jobs", vm="j") == want["query-jobs"][0]["return"] == []
        assert q.ok("query-block-jobs", vm="j") == []
        for cmd, args, expect in (
                ("job-pause", {"id": "nojob"}, want["job-pause"][0]),
                ("job-cancel", {"id": "nojob"}, want["job-cancel"][0]),
                ("block-job-set-speed", {"device": "nojob", "speed": 0},
                 want["block-job-set-speed"][0]),
                ("block-job-cancel", {"device": "nojob"}, want["block-job-cancel"][0])):
            r = q.cmd(cmd, dict(args, vm="j"))
            assert r == expect, (cmd, r, expect)
        for cmd in ("job-resume", "job-complete", "job-finalize", "job-dismiss"):
            r = q.cmd(cmd, {"vm": "j", "id": "x"})
            assert r["error"] == {"class": "GenericError", "desc": "Job not found"}, r
        for cmd in ("block-job-pause", "block-job-resume", "block-job-complete"):
            r = q.cmd(cmd, {"vm": "j", "device": "x"})
            assert r["error"]["class"] == "DeviceNotActive", r
        # strict arguments, and the VM selector
        r = q.cmd("job-pause", {"vm": "j"})
        assert "error" in r and "id" in r["error"]["desc"], r
        r = q.cmd("query-jobs", {"vm": "nosuch"})
        assert r["error"]["class"] == "DeviceNotFound", r
        names = [c["name"] for c in q.ok("query-commands")]
        for c in ("query-jobs", "job-pause", "job-resume", "job-cancel", "job-complete",
                  "job-finalize", "job-dismiss", "query-block-jobs", "block-job-set-speed",
                  "block-job-cancel"):
            assert c in names, c



def test_mirror_refusals_and_target_claim():
    require_tool("qemu-img")
    with tempfile.TemporaryDirectory(prefix="vmmd-mirror.") as tmp, Vmmd() as d:
        imgs = {}
        for n in ("vda", "vdb", "tgt", "ro", "free"):
            imgs[n] = os.path.join(tmp, n + ".qcow2")
            subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", imgs[n], "4M"], check=True)
        q = d.qmp()
        q.ok("vm-create", dict(vm_def("m", guest("idle"),
                                      disks=[{"id": k, "file": imgs[k], "format": "qcow2"}
                                             for k in ("vda", "vdb")]), start=True))
        for n, ro in (("tgt", False), ("ro", True)):
            q.ok("blockdev-add", {"vm": "m", "driver": "qcow2", "node-name": n, "read-only": ro,
                                  "file": {"driver": "file", "filename": imgs[n]}})

        def err(args):
            r = q.cmd("blockdev-mirror", dict({"vm": "m", "device": "vda", "sync": "full"}, **args))
            return r["error"]["desc"]

        # QEMU 7.2 names its internal nodes in a permission conflict here
        assert err({"target": "vdb"}) == \
            "Node 'vdb' is in use by disk 'vdb'; mirror to a node of its own"
        assert err({"target": "tgt", "replaces": "x"}) == "'replaces' is not supported by vmmd"
        assert err({"target": "tgt", "copy-mode": "write-blocking"}) == \
            "copy-mode 'write-blocking' is not supported by vmmd"
        assert err({"target": "ro"}) == "The target 'ro' is read-only"
        assert err({"target": "tgt", "filter-node-name": "f"}) == \
            "'filter-node-name' is not supported by vmmd"
        assert q.ok("query-jobs", vm="m") == []

        # drive-mirror never overwrites a file (QEMU recreates it, even the
        # disk's own image), never probes a format, and creates nothing when
        # it refuses
        def dm_err(args):
            r = q.cmd("drive-mirror", dict({"vm": "m", "device": "vda", "sync": "full"}, **args))
            return r["error"]["desc"]

        before = open(imgs["vda"], "rb").read()
        assert dm_err({"target": imgs["vda"]}) == "Could not create '%s': File exists" % imgs["vda"]
        assert open(imgs["vda"], "rb").read() == before
        assert dm_err({"target": imgs["tgt"], "mode": "existing"}) == \
            "drive-mirror with mode 'existing' needs 'format' (vmmd never probes an image's format)"
        new = os.path.join(tmp, "new.img")
        assert dm_err({"target": new, "granularity": 1000}) == \
            "Parameter 'granularity' expects a power of 2"
        assert dm_err({"target": new, "job-id": "9x"}) == "Invalid job ID '9x'"
        assert dm_err({"target": new, "format": "raw", "sync": "none"}) == \
            "Backing file not supported for file format 'raw'"
        # node names follow QEMU's id rules (QEMU 7.2 says so after creating the file)
        assert dm_err({"target": new, "node-name": "1x"}) == "Invalid node-name: '1x'"
        r = q.cmd("blockdev-snapshot-sync", {"vm": "m", "device": "vda", "snapshot-file": new,
                                             "snapshot-node-name": "a b"})
        assert r["error"]["desc"] == "Invalid node-name: 'a b'", r
        assert not os.path.exists(new)

        # a drive-mirror's node name is taken while its job runs
        q.ok("drive-mirror", {"vm": "m", "device": "vda", "target": new, "sync": "none",
                              "node-name": "dn", "job-id": "d1"})
        q.event("BLOCK_JOB_READY", timeout=30, pred=lambda e: e["data"]["device"] == "d1")
        r = q.cmd("blockdev-add", {"vm": "m", "driver": "qcow2", "node-name": "dn",
                                   "file": {"driver": "file", "filename": imgs["free"]}})
        assert r["error"]["desc"] == "Duplicate nodes with node-name='dn'", r
        q.ok("job-cancel", {"vm": "m", "id": "d1"})
        q.event("BLOCK_JOB_CANCELLED", timeout=30, pred=lambda e: e["data"]["device"] == "d1")
        q.event("JOB_STATUS_CHANGE", timeout=30,
                pred=lambda e: e["data"]["id"] == "d1" and e["data"]["status"] == "null")

        # a running mirror (sync none: ready at once, mirrors until told)
        q.ok("blockdev-mirror", {"vm": "m", "device": "vda", "target": "tgt", "sync": "none",
                                 "job-id": "m1"})
        q.event("BLOCK_JOB_READY", timeout=30)
        for cmd, args, want in (
                ("blockdev-del", {"node-name": "tgt"}, "Node tgt is in use"),
                ("device_add", {"driver": "virtio-blk-pci", "id": "d2", "drive": "tgt"},
                 "Node 'tgt' is the target of a block job"),
                ("block_resize", {"node-name": "tgt", "size": 8 << 20},
                 "Node 'tgt' is busy: block device is in use by block job: mirror"),
                ("blockdev-snapshot", {"node": "vdb", "overlay": "tgt"},
                 "The overlay is already in use")):
            r = q.cmd(cmd, dict(args, vm="m"))
            assert r.get("error", {}).get("desc") == want, (cmd, r)
        q.ok("job-cancel", {"vm": "m", "id": "m1"})
        q.event("BLOCK_JOB_CANCELLED", timeout=30)
        q.event("JOB_STATUS_CHANGE", timeout=30,
                pred=lambda e: e["data"]["id"] == "m1" and e["data"]["status"] == "null")
        q.ok("blockdev-del", {"vm": "m", "node-name": "tgt"})  # the node is free again

        # vmctl disk mirror --no-pivot: done, the disk stays, the node goes
        for _ in range(2):
            p = d.vmctl("disk", "mirror", "m", "vda", imgs["free"], "--no-pivot")
            assert "m: job vda completed" in p.stdout, p.stdout + p.stderr
        assert q.ok("query-block", vm="m")[0]["inserted"]["file"] == imgs["vda"]
        r = q.cmd("blockdev-del", {"vm": "m", "node-name": "mirror-vda"})
        assert r["error"]["desc"] == "Failed to find node with node-name='mirror-vda'", r

        # a destroy ends a ready mirror with the VM, the target unswitched
        q.ok("blockdev-add", {"vm": "m", "driver": "qcow2", "node-name": "tgt",
                              "file": {"driver": "file", "filename": imgs["tgt"]}})
        q.ok("blockdev-mirror", {"vm": "m", "device": "vda", "target": "tgt", "sync": "full",
                                 "job-id": "m2"})
        q.event("BLOCK_JOB_READY", timeout=30, pred=lambda e: e["data"]["device"] == "m2")
        q.ok("vm-destroy", vm="m")
        assert q.ok("query-jobs", vm="m") == []
        with open(os.path.join(d.state_dir, "vms", "m.json")) as f:
            assert json.load(f)["disks"][0]["file"] == imgs["vda"]
        r = subprocess.run(["qemu-img", "check", "-q", imgs["tgt"]], capture_output=True,
                           text=True)
        assert r.returncode == 0, r.stdout + r.stderr


if __name__ == "__main__":
    main(globals())
