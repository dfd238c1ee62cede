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
and the old daemon keeps serving. Tap NICs: a VM answering frames on a tap
(tests/guests/net-echo.c) and a counter with a tap passed by getfd keep
their very taps across the upgrade (handed over by fd, checked in
/proc/PID/fdinfo and with kcmp), frames flow before, during and after;
a handed-over tap that is not the one the new daemon's definition names
is refused and the upgrade rolls back with no fd left behind."""

import collections
import ctypes
import fcntl
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vmmdtest  # noqa: E402
from vmmdtest import QMP, Vmmd, main, require_tool, skip, wait_for  # noqa: E402
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
        r = super().stop(sig, timeout)
        # A daemon that took over without the test learning its pid (a case that
        # failed, or one that only checks the old side) must not outlive the test:
        # CI found two of them still running their guests an hour later.
        for _ in range(4):
            pid = find_takeover_pid(self, set())
            if not pid:
                break
            stop_pid(pid, timeout)
        return r


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


# ---- tap NICs ----------------------------------------------------------------

CLONE_NEWNET = 0x40000000
ETH_ECHO, ETH_ANSWER = 0x88B5, 0x88B6
ECHO_MAC = "52:54:00:00:00:02"
TUNSETIFF = 0x400454CA
IFF_TAP, IFF_NO_PI, IFF_VNET_HDR = 0x0002, 0x1000, 0x4000
SYS_KCMP, KCMP_FILE = 312, 0


def sh(*cmd):
    subprocess.run(cmd, check=True, capture_output=True)


class OwnNetns:
    """The test (and the vmmd it starts) in a network namespace of its own,
    where it creates its taps with `ip tuntap add`; removed at the end, and
    the test goes back to its namespace."""

    def __enter__(self):
        require_tool("ip")
        if not os.access("/dev/net/tun", os.R_OK | os.W_OK):
            skip("/dev/net/tun is not accessible")
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.orig = os.open("/proc/self/ns/net", os.O_RDONLY)
        if self.libc.unshare(CLONE_NEWNET) != 0:
            os.close(self.orig)
            skip("cannot create a network namespace: %s" % os.strerror(ctypes.get_errno()))
        self.taps = []
        sh("ip", "link", "set", "lo", "up")
        return self

    def another(self):
        """Move the test into yet another namespace (the one before lives on
        while a daemon started there runs; its taps go with it)."""
        if self.libc.unshare(CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "unshare")
        self.taps = []
        sh("ip", "link", "set", "lo", "up")

    def tap(self, name):
        sh("ip", "tuntap", "add", "dev", name, "mode", "tap", "vnet_hdr")
        self.taps.append(name)
        sh("ip", "link", "set", name, "up")

    def __exit__(self, *exc):
        for t in self.taps:
            subprocess.run(["ip", "link", "del", t], capture_output=True)
        self.libc.setns(self.orig, CLONE_NEWNET)
        os.close(self.orig)


def attach_tap(name):
    """An fd of our own on tap @name (as a client passes with getfd)."""
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TAP | IFF_NO_PI | IFF_VNET_HDR))
    return fd


def tap_fds(pid):
    """{fd: interface} of every tap fd process @pid holds (fdinfo's iff:)."""
    out = {}
    for fd in os.listdir("/proc/%d/fdinfo" % pid):
        try:
            with open("/proc/%d/fdinfo/%s" % (pid, fd)) as f:
                for line in f:
                    if line.startswith("iff:"):
                        out[int(fd)] = line.split()[1]
        except OSError:
            pass
    return out


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def fd_targets(pid):
    out = []
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            out.append(os.readlink("/proc/%d/fd/%s" % (pid, fd)))
        except OSError:
            pass
    return sorted(out)


def same_file(pid1, fd1, pid2, fd2):
    """Whether the two fds are the same open file description (kcmp)."""
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.syscall(SYS_KCMP, pid1, pid2, KCMP_FILE, fd1, fd2) == 0


def echo_def(name, ifname):
    return {"name": name, "vcpus": 1, "memory": "32M", "cpu": TEST_CPU, "mem_backend": "memfd",
            "boot": {"kernel": guest("net-echo")},
            "nics": [{"id": "net0", "backend": "tap", "ifname": ifname, "mac": ECHO_MAC}]}


class Echo:
    """Frames to the net-echo guest through the host side of tap @ifname,
    and its answers: (seq, answered since boot, nonce) with arrival times."""

    def __init__(self, ifname):
        # (not /sys/class/net: sysfs shows the namespace it was mounted in)
        link = json.loads(subprocess.run(["ip", "-j", "link", "show", ifname], check=True,
                                         capture_output=True, text=True).stdout)
        self.src = bytes.fromhex(link[0]["address"].replace(":", ""))
        self.dst = bytes.fromhex(ECHO_MAC.replace(":", ""))
        self.s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_ANSWER))
        self.s.bind((ifname, ETH_ANSWER))
        self.s.settimeout(0.05)
        self.seq = 0
        self.sent = {}
        self.answers = {}  # seq -> (arrival, answered, nonce)

    def send(self):
        self.seq += 1
        self.sent[self.seq] = time.monotonic()
        self.s.send(self.dst + self.src + struct.pack("!H", ETH_ECHO) +
                    struct.pack("<Q", self.seq) + bytes(38))
        return self.seq

    def drain(self, wait=0.05):
        """Take the answers that came, until none comes for @wait s."""
        self.s.settimeout(wait)
        while True:
            try:
                data = self.s.recv(2048)
            except socket.timeout:
                return
            if len(data) >= 38 and data[12:14] == b"\x88\xb6" and data[:6] == self.src:
                seq, n, nonce = struct.unpack_from("<QQQ", data, 14)
                self.answers.setdefault(seq, (time.monotonic(), n, nonce))

    def exchange(self, timeout=60):
        """One frame answered (retrying while the guest starts)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            seq = self.send()
            t = time.monotonic()
            while time.monotonic() - t < 1.0:
                self.drain()
                if seq in self.answers:
                    return self.answers[seq]
        raise AssertionError("no answer through the tap in %d s" % timeout)

    def pump(self, stop, interval=0.02):
        while not stop.is_set():
            self.send()
            t = time.monotonic()
            while (left := interval - (time.monotonic() - t)) > 0:
                self.drain(left)

    def close(self):
        self.s.close()


def check_answers(e, since):
    """One nonce, answered counts increasing, from seq @since on."""
    got = sorted((seq, a) for seq, a in e.answers.items() if seq >= since)
    assert got, "no answers since seq %d" % since
    assert len({a[2] for _, a in e.answers.items()}) == 1, "the guest rebooted"
    counts = [a[1] for _, a in got]
    assert counts == sorted(counts) and len(set(counts)) == len(counts), counts[-20:]
    return got


def test_upgrade_carries_tap_nics():
    """Two VMs with taps (one by ifname, one passed with getfd) are taken over
    with their very taps; frames flow through the upgrade."""
    with OwnNetns() as ns, CopiedVmmd() as d:
        ns.tap("vt0")
        ns.tap("vt1")
        mine = attach_tap("vt1")
        try:
            q = QMP(d.socket, timeout=120)
            msg = json.dumps({"execute": "getfd", "arguments": {"fdname": "tap1"}}).encode()
            socket.send_fds(q.sock, [msg], [mine])
            assert "return" in q.reply()
            q.ok("vm-create", dict(echo_def("n1", "vt0"), start=True))
            c1 = counter_def(d, "c1")
            c1["nics"] = [{"id": "net0", "driver": "e1000", "backend": "tap", "fd": "tap1"}]
            q.ok("vm-create", dict(c1, start=True))
            e = Echo("vt0")
            first = e.exchange()
            wait_console(d, "c1", "counter: tick 2 ", timeout=180)
            old_pid = d.proc.pid
            assert sorted(tap_fds(old_pid).values()).count("vt0") == 1, tap_fds(old_pid)

            stop = threading.Event()
            th = threading.Thread(target=e.pump, args=(stop, 0.005))
            before_c1 = ticks(d, "c1")
            since = e.seq + 1
            th.start()
            try:
                time.sleep(0.5)
                pid, ans, secs = upgrade(d, q, 2)
                time.sleep(1.0)
            finally:
                stop.set()
                th.join()
            q.close()
            # The new daemon holds each tap once: the very ones (kcmp with our copy of vt1).
            taps = tap_fds(pid)
            assert sorted(taps.values()) == ["vt0", "vt1"], taps
            vt1 = [fd for fd, n in taps.items() if n == "vt1"][0]
            assert same_file(os.getpid(), mine, pid, vt1), "vt1 is not the tap handed over"
            with d.qmp() as q2:
                vms = {v["name"]: v["status"] for v in q2.ok("query-vms")}
            assert vms == {"n1": "running", "c1": "running"}, vms
            # Frames flowed all along, answered by the same guest (no reboot).
            for _ in range(5):
                e.exchange(timeout=30)
            got = check_answers(e, since)
            assert got[0][1][1] > first[1], (first, got[0])
            arrivals = [a[0] for _, a in got]
            gap = max(b - a for a, b in zip(arrivals, arrivals[1:]))
            lost = sum(1 for s in range(since, e.seq + 1) if s not in e.answers)
            moved = {v["vm"]: v for v in ans["vms"]}
            print("tap upgrade: %.0f ms for 2 VMs; n1 downtime %s ms (migration), longest "
                  "gap between answers %.0f ms, %d of %d frames lost; c1 downtime %s ms" % (
                      secs * 1000, moved["n1"].get("downtime"), gap * 1000, lost,
                      e.seq - since + 1, moved["c1"].get("downtime")))
            # Frames queued in the tap while the VM moved wait for it, none is dropped.
            assert lost == 0, "%d frames lost" % lost
            assert console_log(d, "n1").count("echo: boot") == 1
            check_counter(d, "c1", before_c1)
            e.close()
        finally:
            os.close(mine)


def test_local_migration_hands_tap_over():
    """The mechanism without the upgrade: a migration over a unix: socket
    between two daemons hands the tap over; the destination holds the
    source's very tap and the source, postmigrate but still alive, has
    closed its copy (it never reads the tap again)."""
    with OwnNetns() as ns, Vmmd() as src, Vmmd() as dst:
        ns.tap("vt0")
        qs = src.qmp()
        qs.ok("vm-create", dict(echo_def("n1", "vt0"), start=True))
        e = Echo("vt0")
        first = e.exchange()
        qd = dst.qmp()
        qd.ok("vm-create", dict(echo_def("n1", "vt0"), incoming=True, start=True))
        sock = os.path.join(dst.tmp, "mig.sock")
        qd.ok("migrate-incoming", vm="n1", uri="unix:" + sock)
        assert list(tap_fds(src.proc.pid).values()) == ["vt0"]
        qs.ok("migrate", vm="n1", uri="unix:" + sock)
        wait_for(lambda: qs.ok("query-migrate", vm="n1").get("status") == "completed", 60,
                 what="the migration to complete")
        wait_for(lambda: qd.ok("query-status", vm="n1")["status"] == "running", 30,
                 what="the VM to run on the destination")
        assert qs.ok("query-status", vm="n1")["status"] == "postmigrate"
        assert tap_fds(src.proc.pid) == {}, tap_fds(src.proc.pid)
        assert list(tap_fds(dst.proc.pid).values()) == ["vt0"], tap_fds(dst.proc.pid)
        since = e.seq + 1
        for _ in range(3):
            e.exchange(timeout=30)
        got = check_answers(e, since)
        assert got[0][1][1] > first[1]
        e.close()


def test_tap_of_another_namespace_refused():
    """A destination in another network namespace, where "vt0" is another
    interface of the same name: it refuses the source's vt0 over a unix:
    socket (a namesake is not the interface its definition names), and the
    VM runs on at the source with its tap."""
    with OwnNetns() as ns, Vmmd() as src:
        ns.tap("vt0")
        qs = src.qmp()
        qs.ok("vm-create", dict(echo_def("n1", "vt0"), start=True))
        e = Echo("vt0")
        first = e.exchange()
        ns.another()
        ns.tap("vt0")
        with Vmmd() as dst:
            qd = dst.qmp()
            qd.ok("vm-create", dict(echo_def("n1", "vt0"), incoming=True, start=True))
            sock = os.path.join(dst.tmp, "mig.sock")
            qd.ok("migrate-incoming", vm="n1", uri="unix:" + sock)
            qs.ok("migrate", vm="n1", uri="unix:" + sock)
            wait_for(lambda: qs.ok("query-migrate", vm="n1").get("status") == "failed", 60,
                     what="the migration to fail")
            # (the source, still sending, sees the connection close; the cause is here)
            wait_for(lambda: qd.ok("query-migrate", vm="n1").get("status") == "failed", 30,
                     what="the destination to refuse")
            desc = qd.ok("query-migrate", vm="n1")["error-desc"]
            assert "'vt0' handed over is in another network namespace" in desc, desc
            assert qs.ok("query-status", vm="n1")["status"] == "running"
            wait_for(lambda: qd.ok("query-status", vm="n1")["status"] == "shutdown", 30,
                     what="nothing to run on the destination")
            assert tap_fds(dst.proc.pid) == {}, tap_fds(dst.proc.pid)
        assert list(tap_fds(src.proc.pid).values()) == ["vt0"]
        # (the Echo socket was bound in the first namespace, to the source's tap)
        since = e.seq + 1
        for _ in range(2):
            e.exchange(timeout=30)
        got = check_answers(e, since)
        assert got[0][1][1] > first[1]
        e.close()


def test_upgrade_refuses_another_tap():
    """The new daemon's definition of b2 names another tap (vt2, which it
    could open) than the one b2 runs on (vt1): it refuses the fd handed over;
    a1, already moved with its tap, comes back with it, and the old daemon
    keeps both, holding exactly the fds it held before."""
    with OwnNetns() as ns, CopiedVmmd() as d:
        for t in ("vt0", "vt1", "vt2"):
            ns.tap(t)
        q = QMP(d.socket, timeout=120)
        q.ok("vm-create", dict(echo_def("a1", "vt0"), start=True))
        q.ok("vm-create", dict(echo_def("b2", "vt1"), start=True))
        ea, eb = Echo("vt0"), Echo("vt1")
        first = ea.exchange()
        eb.exchange()
        path = os.path.join(d.state_dir, "vms", "b2.json")
        with open(path) as f:
            defn = json.load(f)
        defn["nics"][0]["ifname"] = "vt2"
        with open(path, "w") as f:
            json.dump(defn, f)
        old = d.proc.pid
        taps_before, fds_before = sorted(tap_fds(old).values()), fd_count(old)
        targets_before = fd_targets(old)
        assert taps_before == ["vt0", "vt1"], taps_before
        d.replace_binary()
        r = q.cmd("daemon-upgrade")
        assert "error" in r and "b2" in r["error"]["desc"], r
        assert "'vt1', expected 'vt2'" in r["error"]["desc"], r
        assert d.proc.poll() is None
        wait_for(lambda: find_takeover_pid(d, set()) is None, 30, what="the new daemon to exit")
        with d.qmp() as q2:
            vms = {v["name"]: v["status"] for v in q2.ok("query-vms")}
        assert vms == {"a1": "running", "b2": "running"}, vms
        # Same taps, same fd count (the new daemon's copies and the refused one are closed).
        assert sorted(tap_fds(old).values()) == taps_before, tap_fds(old)
        try:
            wait_for(lambda: fd_count(old) == fds_before, 10, what="the fd count back")
        except AssertionError:
            a, b = collections.Counter(targets_before), collections.Counter(fd_targets(old))
            raise AssertionError("fds %d -> %d: gone %s, new %s" % (
                fds_before, sum(b.values()), dict(a - b), dict(b - a)))
        # Nobody holds vt2; both guests answer on, not rebooted.
        for pid in (old,):
            assert "vt2" not in tap_fds(pid).values()
        since = ea.seq + 1
        for _ in range(3):
            ea.exchange(timeout=30)
            eb.exchange(timeout=30)
        got = check_answers(ea, since)
        assert got[0][1][1] > first[1]
        check_answers(eb, 1)
        for n in ("a1", "b2"):
            assert console_log(d, n).count("echo: boot") == 1
        ea.close()
        eb.close()


def test_upgrade_takes_over_a_vm_reset_while_paused():
    """A stopped VM that system_reset left in prelaunch is taken over; it
    arrives in prelaunch (as QEMU's migration of a VM that never ran), and
    cont boots it again from its reset state."""
    with CopiedVmmd() as d:
        q = d.qmp()
        q.ok("vm-create", {"name": "r1", "vcpus": 1, "memory": "32M", "cpu": TEST_CPU,
                           "boot": {"kernel": guest("idle")}, "start": True})
        wait_console(d, "r1", "idle: up", timeout=180)
        q.ok("stop", vm="r1")
        q.ok("system_reset", vm="r1")
        assert q.ok("query-status", vm="r1")["status"] == "prelaunch"
        boots = console_log(d, "r1").count("idle: up")
        q.close()
        q = QMP(d.socket, timeout=120)
        upgrade(d, q, 1)
        q.close()
        q = d.qmp()
        assert q.ok("query-status", vm="r1")["status"] == "prelaunch"
        q.ok("cont", vm="r1")
        wait_for(lambda: console_log(d, "r1").count("idle: up") > boots, 180,
                 what="r1 to boot again after cont")
        q.close()


if __name__ == "__main__":
    main(globals())
