#!/usr/bin/env python3
"""virtio-balloon statistics as QEMU's: qom-set guest-stats-polling-interval
and qom-get guest-stats on /machine/peripheral/balloon0, driven against
tests/guests/balloon-stats.c (a spec-written driver that refills its stats
buffer each time the device gives it back). Compared with QEMU 7.2's
answers (tests/functional/memory/record-qemu.py): the QMP sequence on a VM
whose guest has no driver, and the statistics the same guest reports under
QEMU."""

import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vmmdtest import Vmmd, main  # noqa: E402
from daemon_helpers import console_log, guest, vm_def  # noqa: E402

with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "memory",
                       "qemu-7.2-balloon-stats.json")) as _f:
    GOLDEN = json.load(_f)
B = "/machine/peripheral/balloon0"


def rounds(d, vm):
    return console_log(d, vm).count("stats: round ")


def wait_rounds(d, vm, n, timeout=120.0):
    deadline = time.monotonic() + timeout
    while rounds(d, vm) < n:
        assert time.monotonic() < deadline, console_log(d, vm)[-2000:]
        time.sleep(0.1)


def test_qmp_as_qemu():
    with Vmmd() as d:
        q = d.qmp()
        q.ok("vm-create", dict(vm_def("b", guest("idle"), memory="128M", balloon=True),
                               start=True))
        for st in GOLDEN["qmp"]:
            r = q.cmd(st["execute"], dict(st["arguments"], vm="b"))
            want = {"error": st["error"]} if "error" in st else {"return": st["return"]}
            assert r == want, (st["step"], r, want)
        # vmctl reads QEMU's 2^64-1 ("never reported") too
        p = d.vmctl("memory", "stats", "b")
        assert "last update: 0 (never" in p.stdout and "stat-swap-in             -" in \
            p.stdout, p.stdout
        p = d.vmctl("--json", "memory", "stats", "b")
        assert '"stat-swap-in":"18446744073709551615"' in p.stdout.replace(" ", "") or \
            '"stat-swap-in":18446744073709551615' in p.stdout.replace(" ", ""), p.stdout
        # without a balloon there is no balloon0
        q.ok("vm-create", dict(vm_def("n", guest("idle")), start=True))
        r = q.cmd("qom-get", {"vm": "n", "path": B, "property": "guest-stats"})
        assert r["error"] == {"class": "DeviceNotFound",
                              "desc": "Device '%s' not found" % B}, r


def test_guest_stats():
    with Vmmd() as d:
        q = d.qmp()
        q.ok("vm-create", dict(vm_def("s", guest("balloon-stats"), memory="64M", balloon=True),
                               start=True))
        deadline = time.monotonic() + 120
        while "stats: ready" not in console_log(d, "s"):
            assert time.monotonic() < deadline, console_log(d, "s")
            time.sleep(0.1)
        # no polling: the device keeps the buffer, the guest never refills
        time.sleep(1.5)
        assert rounds(d, "s") == 0
        t0 = int(time.time())
        q.ok("qom-set", {"vm": "s", "path": B, "property": "guest-stats-polling-interval",
                         "value": 1})
        wait_rounds(d, "s", 2)
        st = q.ok("qom-get", {"vm": "s", "path": "balloon0", "property": "guest-stats"})
        want = dict(GOLDEN["guest"]["stats"])
        got = dict(st["stats"])
        # the minor-fault count is the guest's round number; the rest is fixed
        assert got.pop("stat-minor-faults") >= 1 and want.pop("stat-minor-faults") >= 1
        assert got == want, (got, want)
        assert t0 <= st["last-update"] <= time.time() + 1, st
        p = d.vmctl("memory", "stats", "s")
        assert "stat-free-memory         5000" in p.stdout, p.stdout
        # polling stops at 0: no more rounds
        q.ok("qom-set", {"vm": "s", "path": B, "property": "guest-stats-polling-interval",
                         "value": 0})
        time.sleep(1.5)
        n = rounds(d, "s")
        time.sleep(2.5)
        assert rounds(d, "s") == n, (n, rounds(d, "s"))
        assert q.ok("qom-get", {"vm": "s", "path": B,
                                "property": "guest-stats-polling-interval"}) == 0


def test_saved_and_restored():
    """The balloon's target, actual, polling interval and statistics survive
    vm-save/vm-restore, and the restored device keeps polling the guest's
    buffer (held by the device at the save)."""
    with tempfile.TemporaryDirectory(prefix="vmmd-balloon.") as tmp, Vmmd() as d:
        q = d.qmp()
        q.ok("vm-create", dict(vm_def("s", guest("balloon-stats"), memory="64M", balloon=True),
                               start=True))
        deadline = time.monotonic() + 120
        while "stats: ready" not in console_log(d, "s"):
            assert time.monotonic() < deadline, console_log(d, "s")
            time.sleep(0.1)
        q.ok("qom-set", {"vm": "s", "path": B, "property": "guest-stats-polling-interval",
                         "value": 1})
        wait_rounds(d, "s", 2)
        q.ok("balloon", vm="s", value=48 << 20)
        before = q.ok("qom-get", {"vm": "s", "path": B, "property": "guest-stats"})
        snap = os.path.join(tmp, "snap")
        q.ok("vm-save", vm="s", path=snap, stop=True)
        ev = q.event("VM_SAVE_COMPLETED", timeout=120)
        assert ev["data"]["status"] == "completed", ev
        q.event("SHUTDOWN", timeout=30)
        n = rounds(d, "s")
        os.unlink(os.path.join(d.run_dir, "vms", "s.console"))
        q.ok("vm-restore", path=snap)
        assert q.ok("qom-get", {"vm": "s", "path": B,
                                "property": "guest-stats-polling-interval"}) == 1
        after = q.ok("qom-get", {"vm": "s", "path": B, "property": "guest-stats"})
        # (the restored device reads the held buffer again: same values, a newer time)
        assert after["stats"] == before["stats"], (after, before)
        assert after["last-update"] >= before["last-update"], (after, before)
        # the guest counts on from its round n: the device gave its buffer back again
        deadline = time.monotonic() + 60
        while "stats: round %d" % (n + 2) not in console_log(d, "s"):
            assert time.monotonic() < deadline, (n, console_log(d, "s")[-2000:])
            time.sleep(0.1)
        assert "stats: ready" not in console_log(d, "s"), "the guest rebooted"
        p = d.vmctl("memory", "stats", "s")
        assert p.returncode == 0, p.stderr


if __name__ == "__main__":
    main(globals())
