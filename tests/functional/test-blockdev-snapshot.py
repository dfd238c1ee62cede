#!/usr/bin/env python3
"""blockdev-snapshot (daemon/blockjob.c) under a running guest: an overlay
made with qemu-img (without a backing file in its header) is added with
blockdev-add, then put on top of the counter guest's disk
(tests/guests/counter.c, which reads back and checks its disk before every
write). The guest goes on without a mismatch, the overlay's header now
names the old image, the persisted definition names the overlay, and
qemu-img checks the chain clean. QEMU's answers and errors for the same
commands are compared by the blockdev-snapshot scenario of tests/jobs/."""

import json
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vmmdtest import Vmmd, main, require_tool, wait_for  # noqa: E402
from daemon_helpers import TEST_CPU, console_log, guest, wait_console  # noqa: E402

TICK = re.compile(r"counter: tick (\d+) nonce (0x[0-9a-f]+) disk ok")


def test_overlay_under_a_running_guest():
    require_tool("qemu-img")
    with tempfile.TemporaryDirectory(prefix="vmmd-bsnap.") as tmp, Vmmd() as d:
        base = os.path.join(tmp, "base.qcow2")
        ov = os.path.join(tmp, "ov.qcow2")
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", base, "4M"], check=True)
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", ov, "4M"], check=True)
        q = d.qmp()
        q.ok("vm-create", {"name": "c1", "vcpus": 1, "memory": "32M", "cpu": TEST_CPU,
                           "boot": {"kernel": guest("counter")}, "start": True,
                           "disks": [{"id": "vda", "file": base, "format": "qcow2"}]})
        wait_console(d, "c1", "counter: tick 2 ", timeout=90)
        q.ok("blockdev-add", {"vm": "c1", "driver": "qcow2", "node-name": "ov",
                              "file": {"driver": "file", "filename": ov}, "backing": None})
        q.ok("blockdev-snapshot", vm="c1", node="vda", overlay="ov")
        n = len(TICK.findall(console_log(d, "c1")))
        wait_for(lambda: len(TICK.findall(console_log(d, "c1"))) >= n + 3, 90,
                 what="ticks on the overlay")
        assert "MISMATCH" not in console_log(d, "c1")
        r = q.cmd("blockdev-del", {"vm": "c1", "node-name": "ov"})
        assert r["error"]["desc"] == "Node ov is in use", r
        blk = q.ok("query-block", vm="c1")[0]["inserted"]
        assert blk["file"] == ov and blk["node-name"] == "ov", blk
        assert blk["image"]["backing-image"]["filename"] == base, blk
        q.ok("vm-destroy", vm="c1")
        info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", ov],
                                         check=True, capture_output=True, text=True).stdout)
        assert info["backing-filename"] == base, info
        assert info["backing-filename-format"] == "qcow2", info
        r = subprocess.run(["qemu-img", "check", ov], capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr
        # the overlay holds the guest's writes since the switch; the base is unchanged since
        alloc = subprocess.run(["qemu-img", "map", "--output=json", ov], check=True,
                               capture_output=True, text=True).stdout
        assert any(e["start"] == 0 and e["data"] and e["depth"] == 0
                   for e in json.loads(alloc)), alloc
        saved = json.load(open(os.path.join(d.state_dir, "vms", "c1.json")))
        assert saved["disks"][0]["file"] == ov, saved


if __name__ == "__main__":
    main(globals())
