#!/usr/bin/env python3
"""Removable media, replayed from QEMU 7.2's golden trace (golden/cdrom.json,
make-golden-cdrom.py): eject, blockdev-open-tray, blockdev-close-tray,
blockdev-remove-medium, blockdev-insert-medium, blockdev-change-medium and
query-block with QEMU's answers and DEVICE_TRAY_MOVED events; then
tests/guests/cdrom.c as the guest: its locked tray refused to the host and
opened by the guest when asked, a new medium read after NOT READY and UNIT
ATTENTION, a forced eject, the tray closed by the guest, every console
line as under QEMU; HMP's eject and change. Also: the definition follows the medium (a restarted
VM has it), a VM saved with its tray open restores so, vmctl cd."""

import json
import os
import re
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from vmmdtest import Vmmd, main  # noqa: E402
from daemon_helpers import TEST_CPU, console_log, guest, wait_console  # noqa: E402

TOP_SRCDIR = os.environ.get("top_srcdir", os.path.join(HERE, "..", ".."))
GOLDEN = os.path.join(TOP_SRCDIR, "tests", "functional", "golden", "cdrom.json")
# the recorder's images, $DIR substitution and query-block shape
rec = __import__("make-golden-cdrom")


def golden():
    with open(GOLDEN) as f:
        return json.load(f)


def vm_def(d, name, kernel):
    return {"name": name, "vcpus": 1, "memory": "32M", "cpu": TEST_CPU,
            "boot": {"kernel": kernel},
            "disks": [{"id": "hd0", "driver": "ide-hd", "file": d + "/hd.img", "format": "raw"},
                      {"id": "cd0", "driver": "ide-cd", "file": d + "/a.iso", "format": "raw"}]}


def tray_events(q, n, timeout=5.0):
    """The next @n DEVICE_TRAY_MOVED events' data (vmmd's "vm" key dropped)."""
    got = []
    for _ in range(n):
        e = q.event("DEVICE_TRAY_MOVED", timeout=timeout)
        data = dict(e["data"])
        data.pop("vm", None)
        got.append(data)
    return got


def replay(q, vm, steps, d):
    """Each golden step: the same answer, then the same tray events."""
    for s in steps:
        r = q.cmd(s["execute"], dict(rec.subst(s["arguments"], d), vm=vm))
        r.pop("id", None)
        if s["execute"] == "query-block" and "return" in r:
            r = {"return": rec.block_shape(r["return"], d)}
        r = json.loads(json.dumps(r).replace(d, "$DIR"))
        assert r == s["reply"], (s["execute"], s["arguments"], r, s["reply"])
        assert tray_events(q, len(s["events"])) == s["events"], s


def no_more_tray_events(q):
    q.cmd("query-status", vm=q.vm_name)  # events sent before this answer are read
    time.sleep(0.3)
    q.cmd("query-status", vm=q.vm_name)
    assert not [e for e in q.events if e["event"] == "DEVICE_TRAY_MOVED"], q.events


def test_qmp_as_qemu():
    g = golden()
    with Vmmd() as d:
        rec.make_images(d.tmp)
        q = d.qmp()
        q.ok("vm-create", dict(vm_def(d.tmp, "c1", guest("idle")), start=True))
        replay(q, "c1", g["qmp"], d.tmp)
        q.vm_name = "c1"
        no_more_tray_events(q)


def test_guest_as_qemu():
    g = golden()
    steps = g["guest"]["steps"]
    with Vmmd() as d:
        rec.make_images(d.tmp)
        q = d.qmp()
        q.ok("vm-create", dict(vm_def(d.tmp, "c2", guest("cdrom")), start=True))
        wait_console(d, "c2", "\nlocked\r", timeout=60)
        replay(q, "c2", steps[:1], d.tmp)
        wait_console(d, "c2", "event ", count=3, timeout=30)
        replay(q, "c2", steps[1:3], d.tmp)
        wait_console(d, "c2", "\nlocked\r", count=2, timeout=30)
        replay(q, "c2", steps[3:4], d.tmp)
        wait_console(d, "c2", "cdrom: done", timeout=30)
        replay(q, "c2", steps[4:], d.tmp)
        q.vm_name = "c2"
        no_more_tray_events(q)
        lines = console_log(d, "c2").splitlines()
        want = g["guest"]["console"]
        assert lines[:want.index("cdrom: done") + 1] == want[:want.index("cdrom: done") + 1], \
            console_log(d, "c2")



def test_hmp_as_qemu():
    """HMP's eject and change: QEMU's text for each line, the same events;
    info block with QEMU's lines (its automatic node names left out)."""
    g = golden()
    with Vmmd() as d:
        rec.make_images(d.tmp)
        q = d.qmp()
        q.ok("vm-create", dict(vm_def(d.tmp, "c5", guest("idle")), start=True))
        for s in g["hmp"]:
            line = rec.subst(s["arguments"]["command-line"], d.tmp)
            r = q.cmd("human-monitor-command", {"vm": "c5", "command-line": line})
            text = r["return"].replace(d.tmp, "$DIR")
            want = s["reply"]["return"]
            if line == "info block":
                text, want = (re.sub(r" \(#block[0-9]+\)", "", t) for t in (text, want))
            assert text == want, (line, text, want)
            assert tray_events(q, len(s["events"])) == s["events"], s
        q.vm_name = "c5"
        no_more_tray_events(q)
        assert saved_cd(d, "c5")["file"] == d.tmp + "/a.iso"


def saved_cd(d, name):
    """The cd0 entry of the VM's persisted definition."""
    with open(os.path.join(d.state_dir, "vms", name + ".json")) as f:
        return [x for x in json.load(f)["disks"] if x["id"] == "cd0"][0]


def cd_block(q, name):
    return [e for e in q.ok("query-block", vm=name) if e["device"] == "cd0"][0]


def test_definition_follows_and_vmctl():
    """vmctl cd insert/eject; the persisted definition follows each change,
    so a restarted VM has the medium its drive last held; a file that
    cannot be opened changes nothing."""
    with Vmmd() as d:
        rec.make_images(d.tmp)
        q = d.qmp()
        q.ok("vm-create", dict(vm_def(d.tmp, "c3", guest("idle")), start=True))
        b = os.path.join(d.tmp, "b.iso")
        out = d.vmctl("cd", "insert", "c3", "cd0", b).stdout
        assert "c3: cd cd0 holds %s" % b in out, out
        saved = saved_cd(d, "c3")
        assert (saved["file"], saved["format"]) == (b, "raw"), saved
        p = d.vmctl("cd", "insert", "c3", "cd0", d.tmp + "/missing.iso", check=False)
        assert p.returncode != 0 and "Could not open" in p.stderr, p.stderr
        assert cd_block(q, "c3")["inserted"]["file"] == b
        assert saved_cd(d, "c3")["file"] == b
        q.ok("vm-destroy", vm="c3")
        q.ok("vm-start", vm="c3")
        assert cd_block(q, "c3")["inserted"]["file"] == b
        out = d.vmctl("cd", "eject", "c3", "cd0").stdout
        assert "c3: cd cd0 ejected" in out, out
        assert "file" not in saved_cd(d, "c3"), saved_cd(d, "c3")
        q.ok("vm-destroy", vm="c3")
        q.ok("vm-start", vm="c3")
        blk = cd_block(q, "c3")
        assert "inserted" not in blk and blk["tray_open"] is False, blk
        p = d.vmctl("cd", "eject", "c3", "hd0", check=False)
        assert p.returncode != 0 and "Device 'hd0' is not removable" in p.stderr, p.stderr
        p = d.vmctl("cd", "insert", "c3", "cd0", check=False)
        assert p.returncode != 0 and "needs a VM name, a drive id and a file" in p.stderr


def test_saved_with_the_tray_open():
    """The guest opened its tray (the medium in it): vm-save carries the
    open tray, and the restored guest reads the next medium as under QEMU."""
    g = golden()
    with Vmmd() as d:
        rec.make_images(d.tmp)
        q = d.qmp()
        q.ok("vm-create", dict(vm_def(d.tmp, "c4", guest("cdrom")), start=True))
        wait_console(d, "c4", "\nlocked\r", timeout=60)
        replay(q, "c4", g["guest"]["steps"][:1], d.tmp)
        wait_console(d, "c4", "event ", count=3, timeout=30)
        tray_events(q, 1)  # the guest opened it
        snap = os.path.join(d.tmp, "snap")
        q.ok("vm-save", vm="c4", path=snap, stop=True)
        q.event("VM_SAVE_COMPLETED", timeout=60, pred=lambda e: e["data"]["path"] == snap)
        q.ok("vm-restore", {"path": snap, "name": "c4"})
        blk = cd_block(q, "c4")
        assert blk["tray_open"] is True and blk["inserted"]["file"] == d.tmp + "/a.iso", blk
        replay(q, "c4", g["guest"]["steps"][2:3], d.tmp)
        # the restored VM's console starts after the save: the rest as under QEMU
        wait_console(d, "c4", "read 0x43444232\r\nlocked\r", timeout=30)
        want = g["guest"]["console"]
        want = want[want.index("event 0x2 status 0x2"):want.index("locked", 5) + 1]
        assert console_log(d, "c4").splitlines() == want, console_log(d, "c4")


if __name__ == "__main__":
    main(globals())
