#!/usr/bin/env python3
"""virtio-balloon with QEMU's commands: balloon / query-balloon /
BALLOON_CHANGE, driven against tests/guests/balloon.c (a spec-written
driver that gives back pages of a 4 MiB pool it has dirtied). The host
sees the pages go (vmmd's RSS drops) and come back; without the device the
commands fail as in QEMU 7.2 (recorded answers below)."""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vmmdtest import Vmmd, main  # noqa: E402
from daemon_helpers import console_log, guest, vm_def  # noqa: E402

MiB = 1 << 20
# QEMU 7.2's answers (tests/functional/hotplug/record-qemu.py), with and without a balloon.
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "hotplug",
                       "qemu-7.2-balloon.json")) as _f:
    GOLDEN = json.load(_f)
QEMU_BAD_VALUE = [s for s in GOLDEN["device"] if s["step"] == "balloon zero"][0]["error"]


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def wait_console(d, vm, text, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in console_log(d, vm).replace("\r\n", "\n"):
            return
        time.sleep(0.05)
    raise AssertionError("console lacks %r: %r" % (text, console_log(d, vm)[-2000:]))


def test_balloon_inflate_deflate():
    with Vmmd() as d:
        q = d.qmp()
        q.ok("vm-create", dict(vm_def("b", guest("balloon"), memory="64M", balloon=True),
                               start=True))
        wait_console(d, "b", "balloon: ready\n")
        assert q.ok("query-balloon", {"vm": "b"}) == {"actual": 64 * MiB}
        r = q.cmd("balloon", {"vm": "b", "value": 0})
        assert r["error"] == QEMU_BAD_VALUE, r
        time.sleep(0.5)
        before = rss_kib(d.proc.pid)
        q.ok("balloon", {"vm": "b", "value": 60 * MiB})
        ev = q.event("BALLOON_CHANGE", timeout=60)
        assert ev["data"]["actual"] == 60 * MiB and ev["data"]["vm"] == "b", ev
        wait_console(d, "b", "balloon: actual 1024\n")
        assert q.ok("query-balloon", {"vm": "b"}) == {"actual": 60 * MiB}
        after = rss_kib(d.proc.pid)
        print("vmmd RSS %d KiB -> %d KiB after inflating 4 MiB" % (before, after))
        assert before - after >= 3 * 1024, (before, after)
        # more than the guest's pool: it gives what it can (still 1024 pages)
        q.ok("balloon", {"vm": "b", "value": 100 * MiB})  # above RAM: deflate all
        ev = q.event("BALLOON_CHANGE", timeout=60)
        assert ev["data"]["actual"] == 64 * MiB, ev
        wait_console(d, "b", "balloon: actual 0\n")
        assert q.ok("query-balloon", {"vm": "b"}) == {"actual": 64 * MiB}


def test_answers_as_qemu():
    """The recorded sequence on a 128 MiB VM whose guest has no balloon driver
    (as QEMU stopped with -S), with and without the device."""
    with Vmmd() as d:
        q = d.qmp()
        q.ok("vm-create", dict(vm_def("n", guest("idle")), start=True))
        q.ok("vm-create", dict(vm_def("y", guest("idle"), memory="128M", balloon=True),
                               start=True))
        for vm, key in (("n", "no-device"), ("y", "device")):
            for st in GOLDEN[key]:
                r = q.cmd(st["execute"], dict(st["arguments"], vm=vm))
                want = {"error": st["error"]} if "error" in st else {"return": st["return"]}
                assert r == want, (vm, st["step"], r, want)


def test_vmctl_memory_set():
    """vmctl memory set below the RAM inflates the balloon, at the RAM deflates
    it; above the RAM a VM without a memory device is refused, as is a VM
    without a balloon below its RAM."""
    with Vmmd() as d:
        q = d.qmp()
        q.ok("vm-create", dict(vm_def("b", guest("balloon"), memory="64M", balloon=True),
                               start=True))
        wait_console(d, "b", "balloon: ready\n")
        p = d.vmctl("memory", "set", "b", "60M", "--wait", "--timeout", "120")
        assert "b: memory is 60M (RAM 64M)" in p.stdout, p.stdout
        assert q.ok("query-balloon", {"vm": "b"}) == {"actual": 60 * MiB}
        p = d.vmctl("memory", "set", "b", "64M", "--wait", "--timeout", "120")
        assert q.ok("query-balloon", {"vm": "b"}) == {"actual": 64 * MiB}
        p = d.vmctl("memory", "set", "b", "128M", check=False)
        assert p.returncode == 1 and "cannot grow above its RAM (64M)" in p.stderr, p
        q.ok("vm-create", dict(vm_def("n", guest("idle"), memory="64M"), start=True))
        p = d.vmctl("memory", "set", "n", "32M", check=False)
        assert p.returncode == 1 and "without a balloon" in p.stderr, p
        p = d.vmctl("memory", "set", "n", "64M")
        assert p.returncode == 0, p
        p = d.vmctl("memory", "set", "nosuch", "64M", check=False)
        assert p.returncode == 3, p


if __name__ == "__main__":
    main(globals())
