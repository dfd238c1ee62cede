#!/usr/bin/env python3
"""The job commands over QMP without a job: empty lists, and the errors of
unknown jobs match QEMU 7.2's (tests/jobs/golden/job-errors.json); job
commands are VM-scoped like QEMU's, on the main socket with "vm"."""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vmmdtest import TOP_SRCDIR, Vmmd, main  # noqa: E402
from daemon_helpers import NOBOOT  # noqa: E402

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


if __name__ == "__main__":
    main(globals())
