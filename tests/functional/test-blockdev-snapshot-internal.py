#!/usr/bin/env python3
"""Internal snapshots of single disks: blockdev-snapshot-internal-sync,
blockdev-snapshot-delete-internal-sync, the same as transaction actions
(all or nothing), and HMP's snapshot_blkdev_internal and
snapshot_delete_blkdev_internal, replayed from QEMU 7.2's answers
(golden/blockdev-snapshot-internal.json, make-golden-blockdev-snapshot-internal.py) on a
running VM's own socket, with the snapshots each disk holds after every
step; then a guest that writes its disk while snapshots are taken and
deleted, and each snapshot's image holds the data of its moment."""

import json
import os
import re
import struct
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from vmmdtest import QMP, Vmmd, main  # noqa: E402
from daemon_helpers import guest, vm_def  # noqa: E402

TOP_SRCDIR = os.environ.get("top_srcdir", os.path.join(HERE, "..", ".."))
GOLDEN = os.path.join(TOP_SRCDIR, "tests", "functional", "golden", "blockdev-snapshot-internal.json")
VOLATILE = ("date-sec", "date-nsec", "vm-clock-sec", "vm-clock-nsec")

# vmmd's answers where they differ on purpose (vmmd-protocol(7)): a failed
# delete on a read-only disk leaves QEMU 7.2 without the snapshot in memory
# (the image still holds it); vmmd changes nothing, so a second try gets
# the same refusal.
DIFFERENCES = {
    "snapshot_delete_blkdev_internal vdc ro1":
        "Error: Failed to remove snapshot from snapshot list: Operation not permitted\r\n",
}


def golden():
    with open(GOLDEN) as f:
        return json.load(f)


def subst(v, tmp):
    return json.loads(json.dumps(v).replace("@DIR@", tmp).replace("@NAME200@", "n" * 200)
                      .replace("@NODE@", "vda"))


def images(tmp):
    vda, vdb, vdc = (os.path.join(tmp, n) for n in ("vda.qcow2", "vdb.raw", "vdc.qcow2"))
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", vda, "16M"], check=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "raw", vdb, "1M"], check=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", vdc, "1M"], check=True)
    for img, cmd in ((vda, "write -P 0xa5 0 64k"), (vda, "write -P 0x5a 1M 128k"),
                     (vda, "write -z 4M 64k"), (vdc, "write -P 0x11 0 4k")):
        subprocess.run(["qemu-io", "-f", "qcow2", "-c", cmd, img], check=True,
                       capture_output=True)
    subprocess.run(["qemu-img", "snapshot", "-c", "ro1", vdc], check=True)
    return [{"id": "vda", "file": vda, "format": "qcow2"},
            {"id": "vdb", "file": vdb, "format": "raw"},
            {"id": "vdc", "file": vdc, "format": "qcow2", "readonly": True}]


def snapshots(q, disk):
    for b in q.ok("query-block"):
        if b["device"] == disk:
            return [[s["id"], s["name"]] for s in
                    b["inserted"]["image"].get("snapshots", [])]
    raise AssertionError("no disk " + disk)


def hide_volatile(r):
    """A SnapshotInfo's dates and clocks as the golden file's placeholders."""
    ret = r.get("return")
    if isinstance(ret, dict):
        for k in VOLATILE:
            if isinstance(ret.get(k), int):
                ret[k] = "@%s@" % k.upper()
    return r


def info_snapshots(text):
    """HMP info snapshots without its dates and clocks."""
    text = re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", "@DATE@", text)
    return re.sub(r"\d\d\d?:\d\d:\d\d\.\d\d\d", "@VM-CLOCK@", text)


def test_as_qemu():
    g = golden()
    with Vmmd() as d:
        ctl = d.qmp()
        ctl.ok("vm-create", dict(vm_def("s1", guest("idle"), disks=images(d.tmp)), start=True))
        q = QMP(os.path.join(d.run_dir, "vms", "s1.qmp"))
        for i, step in enumerate(g["steps"]):
            cmd = subst(step["cmd"], d.tmp)
            r = q.cmd(cmd["execute"], cmd.get("arguments"))
            r.pop("id", None)
            want = subst(step["reply"], d.tmp)
            line = cmd.get("arguments", {}).get("command-line", "")
            if cmd["execute"] == "query-block":
                continue  # the snapshot lists are compared below at every step
            if line == "info snapshots":
                assert info_snapshots(r["return"]) == want["return"], (i, r, want)
                continue
            if line in DIFFERENCES:
                want = {"return": DIFFERENCES[line]}
            assert hide_volatile(r) == want, (i, cmd, r, want)
            assert not q.events, (i, q.events)
            if "vda-snapshots" in step:
                assert snapshots(q, "vda") == subst(step["vda-snapshots"], d.tmp), i
        # the image holds what query-block said (and vdc its ro1, as with QEMU)
        out = subprocess.run(["qemu-img", "snapshot", "-U", "-l", os.path.join(d.tmp,
                              "vda.qcow2")], capture_output=True, text=True, check=True).stdout
        assert [ln.split()[:2] for ln in out.splitlines()[2:]] == [["2", "t5"], ["3", "t6"]], out
        assert snapshots(q, "vdc") == [["1", "ro1"]]
        assert "Seccomp" not in d.read_log()


def snapshot_rounds(live, tmp, image, name, orig):
    """Snapshot @name of @image holds the writer's requests each from one
    pass (a prefix of them one pass ahead: the guest was in the middle of
    a pass) over @orig, nothing else; returns each request's pass."""
    raw = os.path.join(tmp, name + ".raw")
    subprocess.run(["qemu-img", "convert", "-l", "snapshot.name=" + name, "-O", "raw", image,
                    raw], check=True)
    with open(raw, "rb") as f:
        got = f.read()
    rounds = [struct.unpack_from("<Q", got, k * live.STRIDE * 512)[0] for k in range(live.NREQ)]
    top = max(rounds)
    cut = next((k for k in range(live.NREQ) if rounds[k] != top), live.NREQ)
    assert all(r == top for r in rounds[:cut]) and all(r == top - 1 for r in rounds[cut:]), \
        (name, rounds)
    expected = bytearray(orig)
    for k in range(live.NREQ):
        for j in range(live.PER_REQ):
            sec = k * live.STRIDE + j
            expected[sec * 512:(sec + 1) * 512] = live.sector(rounds[k], sec)
    assert got == bytes(expected), name
    return rounds


def test_snapshots_under_writes():
    """The blk-writer guest writes and checks its disk while snapshots are
    taken (QMP, and vmctl disk snapshot-internal; a transaction that would
    also put an overlay on the disk is refused) and one deleted (vmctl disk
    snapshot-delete, by id); each snapshot's image then holds the guest's
    requests each from one pass, in order: the disk of its moment."""
    live = __import__("test-jobs-live")
    writer = guest("blk-writer")
    with Vmmd() as d:
        orig, base = live.make_base(d.tmp, 21)
        q = live.start_writer(d, "w", writer, base)
        for name in ("a", "b"):
            q.ok("blockdev-snapshot-internal-sync", {"vm": "w", "device": "vda", "name": name})
            live.wait_passes(d, "w", 1)
        out = d.vmctl("disk", "snapshot-internal", "w", "vda", "c").stdout
        assert out == "w: disk vda: internal snapshot c taken\n", out
        live.wait_passes(d, "w", 1)
        r = q.cmd("transaction", vm="w", actions=[
            {"type": "blockdev-snapshot-internal-sync", "data": {"device": "vda", "name": "d"}},
            {"type": "blockdev-snapshot-sync",
             "data": {"device": "vda", "snapshot-file": os.path.join(d.tmp, "o.qcow2")}}])
        assert r["error"]["desc"] == "disk 'vda' appears twice in the transaction", r
        # by id (2), as vmctl finds no snapshot of that name
        out = d.vmctl("disk", "snapshot-delete", "w", "vda", "2").stdout
        assert out == "w: disk vda: internal snapshot b deleted\n", out
        r = d.vmctl("disk", "snapshot-delete", "w", "vda", "b", check=False)
        assert r.returncode == 1 and "does not exist" in r.stderr, r
        live.wait_passes(d, "w", 2)
        q.ok("stop", vm="w")
        q.ok("vm-destroy", vm="w")
        assert "MISMATCH" not in live.console_log(d, "w")
        out = subprocess.run(["qemu-img", "snapshot", "-l", base], capture_output=True,
                             text=True, check=True).stdout
        assert [ln.split()[1] for ln in out.splitlines()[2:]] == ["a", "c"], out
        chk = subprocess.run(["qemu-img", "check", base], capture_output=True, text=True)
        assert chk.returncode == 0, chk
        ra, rc = (snapshot_rounds(live, d.tmp, base, n, orig) for n in ("a", "c"))
        assert max(ra) <= min(rc), (ra, rc)


if __name__ == "__main__":
    main(globals())
