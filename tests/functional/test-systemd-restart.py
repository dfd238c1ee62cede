#!/usr/bin/env python3
"""`systemctl restart vmmd` keeps the VMs running (daemon/keep.c,
docs/upgrade.md), under a real systemd: Debian's systemd runs as a user
manager in a private mount namespace (a tmpfs with /run/systemd/system makes
it believe the machine booted with systemd), and vmmd is one of its services
with FileDescriptorStoreMax=, as dist/vmmd.service has it. On SIGTERM vmmd
hands each VM's RAM, taps and state to the fd store; systemd passes them to
the next vmmd, which resumes the VMs where they were: the counter guest with
its nonce and consecutive ticks (anonymous RAM, copied into a memfd), the
migrate guest with its RAM pattern intact (memfd RAM, handed over as is), a
paused VM still paused. A stop and a start is not a restart: systemd drops
the store and the VMs are off. With keep-vms-on-restart = off a restart
stops them too."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vmmdtest  # noqa: E402
from vmmdtest import QMP, Vmmd, main, require_tool, skip, wait_for  # noqa: E402
from daemon_helpers import console_log, wait_console  # noqa: E402

import importlib.util  # noqa: E402

_spec = importlib.util.spec_from_file_location(
    "upgrade_helpers", os.path.join(os.path.dirname(os.path.abspath(__file__)), "test-upgrade.py"))
up = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(up)

SYSTEMD = "/lib/systemd/systemd"
UNIT = "vmmd-test.service"


class UserManager:
    """systemd --user in its own mount namespace, driven with systemctl --user."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.xdg = os.path.join(tmp, "xdg")
        self.config = os.path.join(tmp, "config")
        os.makedirs(self.xdg, mode=0o700)
        os.makedirs(os.path.join(self.config, "systemd", "user"))
        self.env = dict(os.environ, XDG_RUNTIME_DIR=self.xdg, XDG_CONFIG_HOME=self.config)
        self.env.pop("NOTIFY_SOCKET", None)
        self.env.pop("LISTEN_FDS", None)
        script = ("mkdir -p /run/systemd && mount -t tmpfs tmpfs /run/systemd && "
                  "mkdir /run/systemd/system && exec %s --user" % SYSTEMD)
        self.log = open(os.path.join(tmp, "systemd.log"), "wb")
        self.proc = subprocess.Popen(["unshare", "--mount", "--propagation", "private",
                                      "sh", "-c", script], env=self.env,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(lambda: self.proc.poll() is None and
                 os.path.exists(os.path.join(self.xdg, "systemd", "private")), 20,
                 what="systemd --user to listen")

    def systemctl(self, *args, check=True, timeout=120):
        p = subprocess.run(["nsenter", "-t", str(self.proc.pid), "-m",
                            "systemctl", "--user"] + list(args),
                           env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError("systemctl --user %s: %d\n%s%s" % (
                " ".join(args), p.returncode, p.stdout, p.stderr))
        return p.stdout

    def main_pid(self):
        return int(self.systemctl("show", "-p", "MainPID", "--value", UNIT).strip() or 0)

    def close(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


class SystemdVmmd(Vmmd):
    """vmmd as a service of a user manager, with the fd store enabled."""

    def __init__(self, conf=""):
        super().__init__()
        self.conf = os.path.join(self.tmp, "vmmd.conf")
        with open(self.conf, "w") as f:
            f.write(conf)
        self.mgr = None

    def start(self, timeout=30.0):
        self.mgr = UserManager(self.tmp)
        env = "".join("Environment=%s=%s\n" % (k, v) for k, v in os.environ.items()
                      if k.startswith(("ASAN_", "UBSAN_", "LSAN_", "VMMD_")))
        cmd = [vmmdtest.VMMD, "--config", self.conf, "--socket", self.socket,
               "--state-dir", self.state_dir, "--run-dir", self.run_dir] + self.args
        with open(os.path.join(self.mgr.config, "systemd", "user", UNIT), "w") as f:
            f.write("[Service]\nType=notify\nNotifyAccess=main\nFileDescriptorStoreMax=64\n"
                    "KillMode=mixed\nTimeoutStopSec=90\nExecStart=%s\n"
                    "StandardOutput=append:%s\nStandardError=inherit\n%s" % (
                        " ".join(cmd), self.log_path, env))
        self.mgr.systemctl("daemon-reload")
        self.mgr.systemctl("start", UNIT)
        wait_for(lambda: os.path.exists(self.socket), timeout, what="vmmd socket")
        return self

    def stop(self, sig=signal.SIGTERM, timeout=20.0):
        if self.mgr:
            self.mgr.systemctl("stop", UNIT, check=False)
            self.mgr.close()
            self.mgr = None
        return 0


def require_systemd():
    require_tool("unshare", "nsenter", "systemctl")
    if not os.path.exists(SYSTEMD):
        skip("%s is missing" % SYSTEMD)
    if os.geteuid() != 0:
        skip("needs root (a mount namespace)")


def restart(d):
    old = d.mgr.main_pid()
    t0 = time.monotonic()
    d.mgr.systemctl("restart", UNIT)
    secs = time.monotonic() - t0
    new = d.mgr.main_pid()
    assert new and new != old, (old, new)
    wait_for(lambda: os.path.exists(d.socket), 30, what="vmmd socket after the restart")
    return secs


def statuses(d):
    with QMP(d.socket, timeout=60) as q:
        return {v["name"]: v["status"] for v in q.ok("query-vms")}


def test_restart_keeps_vms():
    require_systemd()
    with SystemdVmmd() as d:
        q = d.qmp()
        q.ok("vm-create", dict(up.counter_def(d, "c1"), start=True))
        q.ok("vm-create", dict(up.migrate_def("m1"), mem_backend="memfd", start=True))
        q.ok("vm-create", dict(up.counter_def(d, "idle")))
        q.ok("vm-create", dict(up.counter_def(d, "p1"), start=True))
        q.close()
        wait_console(d, "p1", "counter: tick 2 ", timeout=180)
        QMP(os.path.join(d.run_dir, "vms", "p1.qmp")).ok("stop")
        wait_console(d, "c1", "counter: tick 3 ", timeout=180)
        wait_console(d, "m1", "migrate: pass 32 ", timeout=180)
        before, before_m, before_p = up.ticks(d, "c1"), up.passes(d, "m1"), up.ticks(d, "p1")

        secs = restart(d)
        print("systemctl restart with 3 VMs: %.0f ms; %s" % (secs * 1000, "; ".join(
            l.split("] ", 1)[-1] for l in d.read_log().splitlines() if "back after" in l)))
        wait_for(lambda: statuses(d) == {"c1": "running", "m1": "running", "idle": "shutdown",
                                         "p1": "paused"}, 60,
                 what="the VMs back as they were (%r)" % statuses(d))
        log = d.read_log()
        assert "VM kept for the next vmmd (running, RAM copied" in log, log[-3000:]
        assert "VM kept for the next vmmd (running, RAM by fd" in log, log[-3000:]
        up.check_counter(d, "c1", before)
        up.check_migrate_guest(d, "m1", before_m)
        # The paused VM is still itself: it goes on counting where it stopped.
        assert up.ticks(d, "p1") == before_p
        with QMP(os.path.join(d.run_dir, "vms", "p1.qmp")) as v:
            assert v.ok("query-status")["status"] == "paused"
            v.ok("cont")
        up.check_counter(d, "p1", before_p)

        # Again: the fds the first restart passed left the store, none is found twice.
        before, before_m = up.ticks(d, "c1"), up.passes(d, "m1")
        restart(d)
        wait_for(lambda: statuses(d) == {"c1": "running", "m1": "running", "idle": "shutdown",
                                         "p1": "running"}, 60,
                 what="the VMs back again (%r)" % statuses(d))
        up.check_counter(d, "c1", before)
        up.check_migrate_guest(d, "m1", before_m)
        assert "belongs to no kept VM" not in d.read_log(), d.read_log()[-3000:]
        store = d.mgr.systemctl("show", "-p", "NFileDescriptorStore", "--value", UNIT).strip()
        assert store == "0", store  # the new daemon took them out once it had them

        # A stop then a start is not a restart: systemd drops the store.
        d.mgr.systemctl("stop", UNIT)
        d.mgr.systemctl("start", UNIT)
        wait_for(lambda: os.path.exists(d.socket), 30, what="vmmd socket after the start")
        assert statuses(d) == {"c1": "shutdown", "m1": "shutdown", "idle": "shutdown",
                               "p1": "shutdown"}, statuses(d)
        assert "kept by the previous vmmd" not in d.read_log().split("stopping")[-1]


def test_restart_keeps_a_vm_with_usb_devices():
    """A VM with an xHCI controller, a usb-kbd and a usb-storage disk from its
    definition is kept across the restart like any other (its USB state goes
    with the rest)."""
    require_systemd()
    with SystemdVmmd() as d:
        q = d.qmp()
        vm = dict(up.counter_def(d, "u1"), usb=True,
                  input=[{"id": "kbd0", "driver": "usb-kbd"}])
        stick = os.path.join(d.tmp, "stick.raw")
        with open(stick, "wb") as f:
            f.truncate(1 << 20)
        vm["disks"].append({"id": "ud", "driver": "usb-storage", "file": stick,
                            "format": "raw"})
        q.ok("vm-create", dict(vm, start=True))
        q.close()
        wait_console(d, "u1", "counter: tick 3 ", timeout=180)
        before = up.ticks(d, "u1")
        restart(d)
        wait_for(lambda: statuses(d) == {"u1": "running"}, 60,
                 what="the VM back as it was (%r)" % statuses(d))
        assert "VM kept for the next vmmd (running" in d.read_log(), d.read_log()[-3000:]
        up.check_counter(d, "u1", before)


def test_restart_carries_taps():
    """A VM on a tap by ifname answers frames sent all through the restart
    (the tap stayed open in the store: none is lost); a tap passed with
    getfd, which the new daemon could not open itself, is the very file
    description it holds afterwards (kcmp)."""
    require_systemd()
    with up.OwnNetns() as ns, SystemdVmmd() as d:
        ns.tap("vt0")
        ns.tap("vt1")
        mine = up.attach_tap("vt1")
        try:
            q = QMP(d.socket, timeout=120)
            msg = json.dumps({"execute": "getfd", "arguments": {"fdname": "tap1"}}).encode()
            socket.send_fds(q.sock, [msg], [mine])
            assert "return" in q.reply()
            q.ok("vm-create", dict(up.echo_def("n1", "vt0"), start=True))
            c1 = up.counter_def(d, "c1")
            c1["nics"] = [{"id": "net0", "driver": "e1000", "backend": "tap", "fd": "tap1"}]
            q.ok("vm-create", dict(c1, start=True))
            q.close()
            e = up.Echo("vt0")
            first = e.exchange()
            wait_console(d, "c1", "counter: tick 2 ", timeout=180)
            before_c1 = up.ticks(d, "c1")
            stop = threading.Event()
            # every 5 ms: more than the guest's 16 receive buffers arrive
            # while it is paused, so frames also wait in the tap's queue
            th = threading.Thread(target=e.pump, args=(stop, 0.005))
            since = e.seq + 1
            th.start()
            try:
                time.sleep(0.5)
                restart(d)
                wait_for(lambda: statuses(d) == {"n1": "running", "c1": "running"}, 60,
                         what="both VMs back")
                time.sleep(1.0)
            finally:
                stop.set()
                th.join()
            pid = d.mgr.main_pid()
            taps = up.tap_fds(pid)
            assert sorted(taps.values()) == ["vt0", "vt1"], taps
            vt1 = [fd for fd, n in taps.items() if n == "vt1"][0]
            assert up.same_file(os.getpid(), mine, pid, vt1), "vt1 is not the kept tap"
            for _ in range(5):
                e.exchange(timeout=30)
            got = up.check_answers(e, since)
            assert got[0][1][1] > first[1], (first, got[0])
            arrivals = [a[0] for _, a in got]
            gap = max(b - a for a, b in zip(arrivals, arrivals[1:]))
            lost = sum(1 for s in range(since, e.seq + 1) if s not in e.answers)
            print("restart with taps: longest gap between answers %.0f ms, %d of %d frames "
                  "lost" % (gap * 1000, lost, e.seq - since + 1))
            assert lost == 0, "%d frames lost" % lost
            assert console_log(d, "n1").count("echo: boot") == 1
            up.check_counter(d, "c1", before_c1)
            e.close()
        finally:
            os.close(mine)


def test_restart_with_keeping_off():
    require_systemd()
    with SystemdVmmd(conf="keep-vms-on-restart = off\n") as d:
        with d.qmp() as q:
            q.ok("vm-create", dict(up.counter_def(d, "c1"), start=True))
        wait_console(d, "c1", "counter: tick 1 ", timeout=180)
        restart(d)
        assert statuses(d) == {"c1": "shutdown"}, statuses(d)
        assert "VM kept" not in d.read_log()


if __name__ == "__main__":
    main(globals())
