#!/usr/bin/env python3
"""Record QEMU 7.2's removable media as a golden trace (tests/functional/
golden/cdrom.json) for test-cdrom.py.

Two parts, both with an ide-hd disk (primary master) and an ide-cd drive
(primary slave) whose drive ids are their device ids (hd0, cd0), as vmmd
names a disk once:

- "qmp": qemu-system-x86_64 -S (no guest): eject, blockdev-open-tray,
  blockdev-close-tray, blockdev-remove-medium, blockdev-insert-medium
  (a blockdev-add node), blockdev-change-medium and query-block, with the
  errors for a missing or doubled name, an unknown device, a disk that is
  not removable, a closed tray, a full tray, an unknown or used node, a
  missing file; each step's answer and the DEVICE_TRAY_MOVED events
  before it.
- "hmp": HMP's eject and change (human-monitor-command): the text of
  each answer, and info block.
- "guest": tests/guests/cdrom.elf (booted through its PVH note) locks the
  tray; the host's eject is refused and the guest is asked to open, which
  it does; the host changes the medium, the guest reads the new one and
  locks again; the host forces the tray open, the guest closes it. The
  console of the guest, each answer, the events and query-block.

Paths inside the temporary directory are written as $DIR.

Usage: tests/functional/make-golden-cdrom.py GUEST.elf [QEMU]"""

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("golden_migration",
                                               os.path.join(HERE, "make-golden-migration.py"))
golden_migration = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(golden_migration)

OUT = os.path.join(HERE, "golden", "cdrom.json")
# (command, arguments); $DIR is the directory of the images
QMP_STEPS = [
    ("query-block", {}),
    ("eject", {"device": "cd0"}),
    ("eject", {"id": "cd0"}),
    ("eject", {"device": "cd0", "id": "cd0"}),
    ("eject", {}),
    ("eject", {"device": "nope"}),
    ("eject", {"id": "nope"}),
    ("eject", {"id": "hd0"}),
    ("eject", {"device": "hd0"}),
    ("query-block", {}),
    ("blockdev-close-tray", {"id": "cd0"}),
    ("blockdev-close-tray", {"id": "cd0"}),
    ("blockdev-close-tray", {"device": "hd0"}),
    ("query-block", {}),
    ("blockdev-change-medium", {"id": "cd0", "filename": "$DIR/missing.iso", "format": "raw"}),
    ("blockdev-change-medium", {"id": "nope", "filename": "$DIR/a.iso", "format": "raw"}),
    ("blockdev-change-medium", {"id": "cd0", "filename": "$DIR/a.iso", "format": "raw"}),
    ("query-block", {}),
    ("blockdev-change-medium", {"device": "cd0", "filename": "$DIR/b.iso", "format": "raw",
                                "read-only-mode": "read-only"}),
    ("blockdev-change-medium", {"id": "hd0", "filename": "$DIR/b.iso", "format": "raw"}),
    ("blockdev-remove-medium", {"id": "cd0"}),
    ("blockdev-remove-medium", {"device": "cd0"}),
    ("blockdev-open-tray", {"id": "cd0"}),
    ("blockdev-open-tray", {"id": "cd0", "force": True}),
    ("query-block", {}),
    ("blockdev-insert-medium", {"id": "cd0", "node-name": "n1"}),
    ("blockdev-remove-medium", {"id": "cd0"}),
    ("blockdev-remove-medium", {"id": "cd0"}),
    ("blockdev-insert-medium", {"id": "cd0", "node-name": "nope"}),
    ("blockdev-add", {"node-name": "n1", "driver": "raw", "read-only": True,
                      "file": {"driver": "file", "filename": "$DIR/a.iso"}}),
    ("blockdev-insert-medium", {"id": "nope", "node-name": "n1"}),
    ("blockdev-insert-medium", {"id": "cd0", "node-name": "n1"}),
    ("blockdev-insert-medium", {"id": "cd0", "node-name": "n1"}),
    ("query-block", {}),
    ("blockdev-close-tray", {"id": "cd0"}),
    ("blockdev-insert-medium", {"id": "cd0", "node-name": "n1"}),
    ("blockdev-del", {"node-name": "n1"}),
    ("blockdev-open-tray", {"id": "hd0"}),
    ("blockdev-remove-medium", {"id": "hd0"}),
    ("blockdev-insert-medium", {"id": "hd0", "node-name": "n1"}),
    ("eject", {"id": "cd0"}),
    ("blockdev-del", {"node-name": "n1"}),
    ("blockdev-close-tray", {"id": "cd0"}),
    ("query-block", {}),
]

# human-monitor-command lines, on a QEMU of their own
HMP_STEPS = ["eject cd0", "eject -f cd0", "eject nope", "eject hd0", "eject", "eject -f",
             "eject cd0 x", "change cd0 $DIR/b.iso raw", "change cd0 $DIR/missing.iso raw",
             "change -f cd0 $DIR/a.iso raw read-only", "change cd0 -f $DIR/a.iso raw read-only",
             "change cd0 $DIR/a.iso raw bogus", "change cd0", "change", "change cd0 -f",
             "info block"]


def make_images(d):
    """a.iso (64 sectors of "CDA1"), b.iso (32 of "CDB2"), hd.img (1 MiB)."""
    with open(os.path.join(d, "a.iso"), "wb") as f:
        f.write(b"CDA1" * (64 * 512))
    with open(os.path.join(d, "b.iso"), "wb") as f:
        f.write(b"CDB2" * (32 * 512))
    with open(os.path.join(d, "hd.img"), "wb") as f:
        f.truncate(1 << 20)


def subst(v, d):
    """$DIR -> @d in every string of @v."""
    if isinstance(v, str):
        return v.replace("$DIR", d)
    if isinstance(v, dict):
        return {k: subst(x, d) for k, x in v.items()}
    if isinstance(v, list):
        return [subst(x, d) for x in v]
    return v


def block_shape(entries, d):
    """What both VMMs must agree on in query-block: the drive, its tray, its medium."""
    out = []
    for e in entries:
        s = {k: e[k] for k in ("device", "qdev", "removable", "locked", "tray_open") if k in e}
        if "inserted" in e:
            i = e["inserted"]
            s["inserted"] = {"file": i["file"].replace(d, "$DIR"), "ro": i["ro"],
                             "drv": i["drv"]}
        out.append(s)
    return out


def events(q):
    """DEVICE_TRAY_MOVED events received so far (data only), taken off the queue."""
    got = [e["data"] for e in q.events if e["event"] == "DEVICE_TRAY_MOVED"]
    q.events.clear()
    return got


def step(q, name, args, d):
    """One command: its answer (query-block's shape) and the tray events before it."""
    m = q.call(name, subst(args, d))
    if name == "query-block" and "return" in m:
        m = {"return": block_shape(m["return"], d)}
    m = json.loads(json.dumps(m).replace(d, "$DIR"))
    return {"execute": name, "arguments": args, "reply": m, "events": events(q)}


def drives(d):
    """The disk the primary master, the CD-ROM its slave (vmmd's slots in definition order)."""
    return ["-drive", "if=none,id=hd0,file=%s/hd.img,format=raw" % d,
            "-device", "ide-hd,drive=hd0,id=hd0,bus=ide.0,unit=0",
            "-drive", "if=none,id=cd0,file=%s/a.iso,format=raw,media=cdrom" % d,
            "-device", "ide-cd,drive=cd0,id=cd0,bus=ide.0,unit=1"]


def qemu(qemu_bin, d, name, extra):
    path = os.path.join(d, name + ".qmp")
    p = subprocess.Popen([qemu_bin, "-machine", "pc,accel=kvm",
                          "-cpu", "host,-cx16,-xsave,-arch-capabilities", "-m", "32",
                          "-nodefaults", "-display", "none",
                          "-qmp", "unix:%s,server=on,wait=off" % path] + drives(d) + extra,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return p, golden_migration.Qmp(path)


def console_lines(path):
    with open(path, errors="replace") as f:
        return [line.rstrip("\r\n") for line in f if line.strip()]


def wait_console(path, pred, timeout=60):
    end = time.time() + timeout
    while time.time() < end:
        lines = console_lines(path)
        if pred(lines):
            return lines
        time.sleep(0.05)
    raise AssertionError("the guest did not get there: %r" % console_lines(path))


def count(lines, prefix):
    return sum(1 for line in lines if line.startswith(prefix))


def record_guest(qemu_bin, guest, d):
    log = os.path.join(d, "console.log")
    p, q = qemu(qemu_bin, d, "guest", ["-kernel", guest, "-serial", "file:" + log])
    steps = []
    try:
        wait_console(log, lambda ls: "locked" in ls)
        steps.append(step(q, "eject", {"id": "cd0"}, d))
        wait_console(log, lambda ls: count(ls, "event") >= 3)
        steps.append(step(q, "query-block", {}, d))
        steps.append(step(q, "blockdev-change-medium",
                          {"id": "cd0", "filename": "$DIR/b.iso", "format": "raw"}, d))
        wait_console(log, lambda ls: ls.count("locked") >= 2)
        steps.append(step(q, "eject", {"id": "cd0", "force": True}, d))
        wait_console(log, lambda ls: "cdrom: done" in ls)
        steps.append(step(q, "query-block", {}, d))
        console = console_lines(log)
    finally:
        p.kill()
        p.wait()
    return {"steps": steps, "console": console}


def main():
    guest = sys.argv[1]
    qemu_bin = sys.argv[2] if len(sys.argv) > 2 else "qemu-system-x86_64"
    with tempfile.TemporaryDirectory() as d:
        make_images(d)
        p, q = qemu(qemu_bin, d, "qmp", ["-S"])
        try:
            out = {"qemu": q.cmd("query-version")["return"]["qemu"]}
            out["qmp"] = [step(q, name, args, d) for name, args in QMP_STEPS]
        finally:
            p.kill()
            p.wait()
        make_images(d)
        p, q = qemu(qemu_bin, d, "hmp", ["-S"])
        try:
            out["hmp"] = [step(q, "human-monitor-command", {"command-line": line}, d)
                          for line in HMP_STEPS]
        finally:
            p.kill()
            p.wait()
        make_images(d)
        out["guest"] = record_guest(qemu_bin, guest, d)
    golden_migration.write_golden(OUT, out)


if __name__ == "__main__":
    main()
