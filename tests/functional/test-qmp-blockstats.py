#!/usr/bin/env python3
"""query-block and query-blockstats give QEMU 7.2's answers for the same disk
(a new 16 MiB qcow2 image as virtio-blk "vda", no guest I/O yet): every
field, every value, compared with the golden trace golden/qmp-blockstats.json
recorded from QEMU by make-golden-qmp-blockstats.py. Only what cannot be
equal is normalised: QEMU's automatic node names and QOM path (vmmd has
neither), the image path and the host's allocation figure. The counters'
arithmetic under I/O (merged, invalid, write-zeroes, highest offset) is
checked in tests/unit/test-virtio.c."""

import copy
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from daemon_helpers import guest, vm_def, wait_console  # noqa: E402
from vmmdtest import Vmmd, main  # noqa: E402


def normalise(answer, img):
    a = json.loads(json.dumps(answer).replace(img, "IMAGE"))
    for dev in a:
        dev["qdev"] = "QDEV"
        # QEMU names every node (#blockN); vmmd names only those a client named
        for part in (dev.get("inserted"), dev, dev.get("parent")):
            if isinstance(part, dict):
                part.pop("node-name", None)
        image = dev.get("inserted", {}).get("image")
        if image:
            image["actual-size"] = "N"
    return a


def diff(a, b, path=""):
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += diff(a.get(k, "<absent>"), b.get(k, "<absent>"), path + "." + k)
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [p for x, y in zip(a, b) for p in diff(x, y, path)]
    return [] if a == b else ["%s: QEMU %r, vmmd %r" % (path, a, b)]


def test_block_queries_match_qemu():
    with open(os.path.join(HERE, "golden", "qmp-blockstats.json")) as f:
        golden = json.load(f)
    idle = guest("idle")
    with tempfile.TemporaryDirectory() as tmp:
        img = os.path.join(tmp, "disk.qcow2")
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", img, golden["disk-size"]],
                       check=True)
        with Vmmd() as d:
            q = d.qmp()
            info = q.ok("vm-create", dict(vm_def("bs", idle), start=True, disks=[
                {"id": "vda", "file": img, "format": "qcow2"}]))
            wait_console(d, "bs", "idle: up")
            v = d.qmp(path=info["qmp-socket"])
            problems = []
            for cmd in ("query-block", "query-blockstats"):
                got = normalise(v.ok(cmd), img)
                want = normalise(copy.deepcopy(golden[cmd]), "IMAGE")
                problems += ["%s%s" % (cmd, p) for p in diff(want, got)]
            assert not problems, "\n".join(problems)


if __name__ == "__main__":
    main(globals())
