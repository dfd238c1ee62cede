#!/usr/bin/env python3
"""Replay the job and snapshot scenarios of tests/jobs/scenarios.json
against vmmd (a VM running the idle test guest with the scenario's qcow2
disks, driven on its own QMP socket as one QEMU) and compare the replies and
the job events with the traces recorded from QEMU 7.2 (tests/jobs/golden/).
Timestamps are not compared, nor the progress of a cancelled job; the
differences vmmd makes on purpose are listed in DIFFERENCES. After each
scenario every image left passes `qemu-img check`."""

import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vmmdtest import TOP_SRCDIR, Vmmd, main, require_tool  # noqa: E402
from daemon_helpers import guest, vm_def  # noqa: E402

sys.path.insert(0, os.path.join(TOP_SRCDIR, "tests", "jobs"))
import qmptrace  # noqa: E402

# vmmd's answers that differ from QEMU's on purpose (docs/jobs.md):
#  - an existing file is never overwritten (QEMU recreates it; here the
#    file is the disk's own base, which QEMU then fails to lock);
#  - a transaction that fails leaves no overlay file behind (QEMU leaves
#    the ones its earlier actions created), nor does a drive-mirror.
DIFFERENCES = {
    ("snapshot-sync", 1): {"error": {"class": "GenericError",
                                     "desc": "Could not create '$DIR/vda-base.qcow2': File exists"}},
}
# While a backup runs on a disk, QEMU 7.2 finds no dirty bitmap of it by
# the disk's name (the name leads to the backup's filter node); vmmd finds
# it, busy if the backup uses it (also as a merge's source, as QEMU 7.2
# refuses a busy one).
BUSY = {"error": {"class": "GenericError", "desc": "Bitmap 'c0' is currently in use by "
                  "another operation and cannot be used"}}
DIFFERENCES.update({("backup-bitmaps", i): BUSY for i in (35, 36, 37, 38, 39)})
# The same in a transaction, once an earlier action has started a backup
# of the disk; and a backup with bitmap-mode always that a later action of
# its transaction aborts (before it ran) leaves QEMU's bitmap with all of
# the disk marked, where vmmd's failed transaction changes no bitmap.
DIFFERENCES[("bitmap-transaction", 27)] = {
    "error": {"class": "GenericError", "desc": "Bitmap 'b2' is currently in use by another "
              "operation and cannot be used"}}


def b2_unmarked(reply):
    return {disk: [dict(b, count=0) if b["name"] == "b2" else b for b in bms]
            for disk, bms in reply.items()}


DIFFERENCES.update({("bitmap-transaction", i): b2_unmarked for i in (29, 32)})
FILES_DIFFER = {"transaction": ["u-vda.qcow2", "v-vda.qcow2"],
                # QEMU creates the target, then finds its node-name taken
                "drive-mirror": ["d4.qcow2"],
                # QEMU creates the target, then finds no bitmap for sync incremental
                "drive-backup": ["d0.qcow2"]}

JOB_EVENTS = ("JOB_STATUS_CHANGE", "BLOCK_JOB_COMPLETED", "BLOCK_JOB_CANCELLED",
              "BLOCK_JOB_READY", "BLOCK_JOB_ERROR", "BLOCK_JOB_PENDING")


def normalize_events(events):
    out = []
    for e in events:
        if e["event"] not in JOB_EVENTS:
            continue
        data = dict(e["data"])
        if e["event"] == "BLOCK_JOB_CANCELLED":
            data.pop("offset", None)  # how far it got depends on timing
        out.append({"event": e["event"], "data": data})
    return out


def per_job(events):
    """Each job's events in order, without QEMU's drain pauses.

    QEMU 7.2 reports each drain of a backup's source (at its start, and
    at each blockdev-add or other command that drains every node) as the
    job going paused, then running; vmmd's backup does not pause for
    them, and in these scenarios no client pauses a job. Jobs of one
    transaction run side by side, so only each job's own order counts."""
    jobs = {}
    for e in events:
        key = e["data"].get("id", e["data"].get("device"))
        seq = jobs.setdefault(key, [])
        if e["event"] == "JOB_STATUS_CHANGE" and e["data"]["status"] == "paused":
            continue
        if (e["event"] == "JOB_STATUS_CHANGE" and e["data"]["status"] == "running" and
                any(x["data"].get("status") == "running" for x in seq)):
            continue
        seq.append(e)
    return jobs


def run_scenario(d, q, name, sc):
    with open(os.path.join(TOP_SRCDIR, "tests", "jobs", "golden", name + ".json")) as f:
        golden = json.load(f)
    procs = []
    try:
        with tempfile.TemporaryDirectory(prefix="vmmd-jobs.") as tmp:
            tops = qmptrace.make_chains(tmp, sc["disks"], procs)
            disks = [{"id": k, "file": v, "format": qmptrace.image_format(v)}
                     for k, v in tops.items()]
            vm = "g-" + name
            q.ok("vm-create", dict(vm_def(vm, guest("idle"), disks=disks), start=True))
            conn = qmptrace.Conn(os.path.join(d.run_dir, "vms", vm + ".qmp"))
            trace = qmptrace.run(conn, sc["steps"], tmp)
            q.ok("vm-destroy", vm=vm)
            files = qmptrace.files(tmp)
            for f in files:
                if qmptrace.image_format(f) != "qcow2":
                    continue
                r = subprocess.run(["qemu-img", "check", "-q", os.path.join(tmp, f)],
                                   capture_output=True, text=True)
                assert r.returncode == 0, "%s: qemu-img check %s: %s" % (name, f, r.stdout + r.stderr)
            q.ok("vm-delete", vm=vm)
            trace = json.loads(json.dumps(trace).replace(tmp, "$DIR"))
    finally:
        qmptrace.stop_procs(procs)
    want_replies = [dict(r) for r in golden["replies"]]
    for i, r in enumerate(want_replies):
        if (name, i) in DIFFERENCES:
            diff = DIFFERENCES[(name, i)]
            r["reply"] = diff(r["reply"]) if callable(diff) else diff
    assert len(trace["replies"]) == len(want_replies), name
    for i, (got, want) in enumerate(zip(trace["replies"], want_replies)):
        assert got == want, "%s step %d (%s):\n  vmmd: %s\n  qemu: %s" % (
            name, i, want["cmd"], json.dumps(got["reply"]), json.dumps(want["reply"]))
    got_ev = normalize_events(trace["events"])
    want_ev = normalize_events(golden["events"])
    if "backup" in name or "bitmap" in name:
        got_ev, want_ev = per_job(got_ev), per_job(want_ev)
    assert got_ev == want_ev, "%s events:\n  vmmd: %s\n  qemu: %s" % (
        name, json.dumps(got_ev), json.dumps(want_ev))
    want_files = sorted(set(golden["files"]) - set(FILES_DIFFER.get(name, [])))
    assert files == want_files, "%s files: vmmd %s, qemu %s" % (name, files, want_files)


def test_scenarios_match_qemu():
    require_tool("qemu-img", "qemu-io", "nbdkit")
    guest("idle")
    scs = qmptrace.load_scenarios()
    only = os.environ.get("JOBS_SCENARIOS")
    with Vmmd() as d:
        q = d.qmp()
        for name, sc in scs.items():
            if only and name not in only.split(","):
                continue
            run_scenario(d, q, name, sc)


if __name__ == "__main__":
    main(globals())
