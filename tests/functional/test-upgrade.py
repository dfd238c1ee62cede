#!/usr/bin/env python3
"""Live upgrade (docs/upgrade.md): the daemon's executable is replaced on
disk (a new inode at the same path, as a package upgrade does) and
`daemon-upgrade` (or SIGUSR2) makes the new binary take over every running
VM without stopping it. The guests must go on where they were: the counter
guest (tests/guests/counter.c) with the same nonce, consecutive ticks and
its disk check (disk == RAM) intact; the migrate guest (tests/guests/
migrate.c) with its RAM pattern check intact. A client connecting during
the swap is served (queued, never refused); per-VM sockets and the console
log go on. Then the failures: a new binary that dies at once leaves every VM
with the old daemon, and a VM the new daemon cannot take (another RAM size
in its definition) rolls the upgrade back: the VM already moved comes back
and the old daemon keeps serving."""

import json
import os
import re
import shutil
import signal
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vmmdtest  # noqa: E402
from vmmdtest import QMP, Vmmd, main, wait_for  # noqa: E402
from daemon_helpers import TEST_CPU, console_log, guest, wait_console  # noqa: E402

TICK = re.compile(r"counter: tick (\d+) nonce (0x[0-9a-f]+) disk ok")
PASS = re.compile(r"migrate: pass (\d+) nonce (0x[0-9a-f]+) ok")


class CopiedVmmd(Vmmd):
    """A vmmd started from a copy of the binary in its own directory, so the
    test can replace the file as a package upgrade would."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.bindir = os.path.join(self.tmp, "bin")
        os.makedirs(self.bindir, exist_ok=True)
        self.exe = os.path.join(self.bindir, "vmmd")
        shutil.copy2(vmmdtest.VMMD, self.exe)
        self.extra_pids = []

    def start(self, timeout=10.0):
        real = vmmdtest.VMMD
        vmmdtest.VMMD = self.exe
        try:
            return super().start(timeout)
        finally:
            vmmdtest.VMMD = real

    def replace_binary(self, content=None):
        """A new file (new inode) renamed over the path, as dpkg does."""
        tmp = self.exe + ".dpkg-new"
        if content is None:
            shutil.copy2(vmmdtest.VMMD, tmp)
        else:
            with open(tmp, "w") as f:
                f.write(content)
            os.chmod(tmp, 0o755)
        os.rename(tmp, self.exe)
        return os.stat(self.exe).st_ino

    def stop(self, sig=signal.SIGTERM, timeout=20.0):
        for pid in self.extra_pids:
            stop_pid(pid, timeout)
        self.extra_pids = []
        return super().stop(sig, timeout)


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(") ")[1][0] != "Z"
    except OSError:
        return False


def stop_pid(pid, timeout=20.0):
    if alive(pid):
        os.kill(pid, signal.SIGTERM)
        try:
            wait_for(lambda: not alive(pid), timeout, what="pid %d to exit" % pid)
        except AssertionError:
            os.kill(pid, signal.SIGKILL)


def counter_def(d, name):
    disk = os.path.join(d.tmp, name + ".raw")
    with open(disk, "wb") as f:
        f.truncate(1 << 20)
    return {"name": name, "vcpus": 1, "memory": "32M", "cpu": TEST_CPU,
            "boot": {"kernel": guest("counter")},
            "disks": [{"id": "vda", "file": disk, "format": "raw"}]}


def migrate_def(name):
    return {"name": name, "vcpus": 1, "memory": "32M", "cpu": TEST_CPU,
            "boot": {"kernel": guest("migrate")}}


def ticks(d, name):
    return [(int(m.group(1)), m.group(2)) for m in TICK.finditer(console_log(d, name))]


def passes(d, name):
    return [(int(m.group(1)), m.group(2)) for m in PASS.finditer(console_log(d, name))]


def check_counter(d, name, before):
    """The counter goes on past @before with one nonce, every tick once, the disk check intact."""
    last = before[-1][0]
    wait_console(d, name, "counter: tick %d " % (last + 2), timeout=180)
    text = console_log(d, name)
    t = ticks(d, name)
    assert "MISMATCH" not in text, text[-1500:]
    assert text.count("counter: boot") == 1, text[-1500:]
    assert len({n for _, n in t}) == 1, t[-5:]
    nums = [n for n, _ in t]
    assert nums == list(range(nums[0], nums[0] + len(nums))), nums


def check_migrate_guest(d, name, before):
    last = before[-1][0]
    wait_for(lambda: passes(d, name)[-1][0] >= last + 32, 180, what="%s to go on" % name)
    text = console_log(d, name)
    p = passes(d, name)
    assert "BAD" not in text, text[-1500:]
    assert text.count("migrate: boot") <= 1 and len({n for _, n in p}) == 1, p[-5:]


def find_takeover_pid(d, exclude):
    for e in os.listdir("/proc"):
        if not e.isdigit() or int(e) in exclude:
            continue
        try:
            with open("/proc/%s/cmdline" % e, "rb") as f:
                args = f.read().split(b"\0")
        except OSError:
            continue
        if b"--take-over" in args and d.socket.encode() in args:
            return int(e)
    return None


def upgrade(d, q, nvms):
    """daemon-upgrade on @q; checks the answer and the process swap; returns
    (new pid, answer, seconds)."""
    old_pid = d.proc.pid if d.proc and not d.extra_pids else d.extra_pids[-1]
    ino = d.replace_binary()
    # A client that connects while the daemons swap is queued, then served.
    late = {}

    def connect_late():
        time.sleep(0.05)
        try:
            with QMP(d.socket, timeout=60) as c:
                late["vms"] = c.ok("query-vms")
        except Exception as e:  # noqa: BLE001
            late["error"] = repr(e)
    th = threading.Thread(target=connect_late)
    th.start()
    t0 = time.monotonic()
    r = q.cmd("daemon-upgrade")
    secs = time.monotonic() - t0
    assert "return" in r, r
    ans = r["return"]
    new_pid = ans["pid"]
    assert new_pid != old_pid
    d.extra_pids.append(new_pid)
    assert [v["vm"] for v in ans["vms"]] and len(ans["vms"]) == nvms, ans
    wait_for(lambda: not alive(old_pid), 30, what="the old daemon to exit")
    assert alive(new_pid)
    exe = os.readlink("/proc/%d/exe" % new_pid)
    assert exe == d.exe and os.stat("/proc/%d/exe" % new_pid).st_ino == ino, exe
    th.join(90)
    assert "vms" in late, late
    return new_pid, ans, secs


def test_upgrade_keeps_vms_running():
    with CopiedVmmd() as d:
        q = d.qmp()
        q.ok("vm-create", dict(counter_def(d, "c1"), start=True))
        # Its RAM is a memfd: handed over by fd, not copied.
        q.ok("vm-create", dict(migrate_def("m1"), mem_backend="memfd", start=True))
        q.ok("vm-create", dict(counter_def(d, "idle")))
        q.ok("vm-create", dict(counter_def(d, "p1"), start=True))
        wait_console(d, "p1", "counter: tick 2 ", timeout=180)
        QMP(os.path.join(d.run_dir, "vms", "p1.qmp")).ok("stop")
        wait_console(d, "c1", "counter: tick 3 ", timeout=180)
        wait_console(d, "m1", "migrate: pass 32 ", timeout=180)

        for round in (1,):
            before = {"c1": ticks(d, "c1")}
            before_m = passes(d, "m1")
            q = QMP(d.socket, timeout=120)
            pid, ans, secs = upgrade(d, q, 3)
            q.close()
            print("upgrade %d: %.0f ms for 3 VMs; %s" % (
                round, secs * 1000,
                ", ".join("%s downtime %s ms total %s ms sent %s bytes" % (
                    v["vm"], v.get("downtime"), v.get("total-time"), v.get("transferred"))
                          for v in ans["vms"])))
            moved = {v["vm"]: v for v in ans["vms"]}
            # m1 rewrites 8 MiB of RAM: copied it would be megabytes; its memfd went by fd.
            assert moved["m1"]["transferred"] < (1 << 20), moved["m1"]
            assert moved["c1"]["transferred"] > 0, moved["c1"]
            q = d.qmp()
            vms = {v["name"]: v["status"] for v in q.ok("query-vms")}
            assert vms == {"c1": "running", "m1": "running", "idle": "shutdown",
                           "p1": "paused"}, vms
            check_counter(d, "c1", before["c1"])
            check_migrate_guest(d, "m1", before_m)
            # The per-VM socket is the new daemon's.
            with QMP(os.path.join(d.run_dir, "vms", "c1.qmp")) as v:
                assert v.ok("query-status")["status"] == "running"
            q.close()
        # The paused VM is still itself: it goes on counting where it stopped.
        p_before = ticks(d, "p1")
        with QMP(os.path.join(d.run_dir, "vms", "p1.qmp")) as v:
            v.ok("cont")
        check_counter(d, "p1", p_before)
        # SIGUSR2 does the same as daemon-upgrade.
        before = ticks(d, "c1")
        old = d.extra_pids[-1]
        d.replace_binary()
        os.kill(old, signal.SIGUSR2)
        wait_for(lambda: not alive(old), 60, what="the old daemon to exit after SIGUSR2")
        new = find_takeover_pid(d, {old})
        assert new and alive(new)
        d.extra_pids.append(new)
        check_counter(d, "c1", before)
        with d.qmp() as q:
            assert q.ok("query-vms", vm="c1")[0]["status"] == "running"


def test_upgrade_new_binary_fails():
    """The new binary cannot run: the old daemon keeps everything and serves again."""
    with CopiedVmmd() as d:
        q = QMP(d.socket, timeout=120)
        q.ok("vm-create", dict(counter_def(d, "c1"), start=True))
        wait_console(d, "c1", "counter: tick 3 ", timeout=180)
        before = ticks(d, "c1")
        d.replace_binary("#!/bin/sh\necho broken new vmmd >&2\nexit 1\n")
        r = q.cmd("daemon-upgrade")
        assert "error" in r and "went away before it took over" in r["error"]["desc"], r
        assert d.proc.poll() is None
        with d.qmp() as q2:
            assert q2.ok("query-vms", vm="c1")[0]["status"] == "running"
        check_counter(d, "c1", before)
        # Not the channel: x-daemon-upgrade-finish is refused.
        r = q.cmd("x-daemon-upgrade-finish")
        assert "error" in r and "only the new vmmd" in r["error"]["desc"], r


def test_upgrade_rolls_back():
    """The new daemon cannot take the second VM (its definition on disk now
    says another RAM size): the first, already moved, comes back; both run
    on in the old daemon, which answers the error and serves on."""
    with CopiedVmmd() as d:
        q = QMP(d.socket, timeout=120)
        q.ok("vm-create", dict(counter_def(d, "a1"), start=True))
        q.ok("vm-create", dict(counter_def(d, "b2"), start=True))
        for n in ("a1", "b2"):
            wait_console(d, n, "counter: tick 3 ", timeout=180)
        order = [v["name"] for v in q.ok("query-vms")]
        assert order.index("a1") < order.index("b2"), order
        path = os.path.join(d.state_dir, "vms", "b2.json")
        with open(path) as f:
            defn = json.load(f)
        defn["memory"] = 64 << 20
        with open(path, "w") as f:
            json.dump(defn, f)
        before = {n: ticks(d, n) for n in ("a1", "b2")}
        d.replace_binary()
        r = q.cmd("daemon-upgrade")
        assert "error" in r and "b2" in r["error"]["desc"], r
        assert d.proc.poll() is None
        with d.qmp() as q2:
            vms = {v["name"]: v["status"] for v in q2.ok("query-vms")}
        assert vms == {"a1": "running", "b2": "running"}, vms
        for n in ("a1", "b2"):
            check_counter(d, n, before[n])
        with QMP(os.path.join(d.run_dir, "vms", "a1.qmp")) as v:
            assert v.ok("query-status")["status"] == "running"
        wait_for(lambda: find_takeover_pid(d, set()) is None, 30,
                 what="the new daemon to exit")


if __name__ == "__main__":
    main(globals())
