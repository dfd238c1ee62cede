#!/usr/bin/env python3
"""vmctl with running guests (needs KVM and the test guests): create --start,
start, status, pause, resume, reset, events (--vm filter, --json), console
(output, input, Ctrl-] detach), stop (ACPI power button obeyed, ignored with
--timeout, --force), delete --force."""

import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vmmdtest import VMCTL, Vmmd, main, wait_for  # noqa: E402
from daemon_helpers import TEST_CPU, guest, wait_console  # noqa: E402


def create(d, name, kernel, *extra):
    return d.vmctl("create", "--name", name, "--memory", "32M", "--vcpus", "1", "--cpu",
                   TEST_CPU, "--kernel", kernel, *extra)


def state(d, name):
    return json.loads(d.vmctl("--json", "status", name).stdout)["status"]


def events_proc(d, *args):
    env = dict(d.env, VMMD_SOCKET=d.socket)
    p = subprocess.Popen([VMCTL] + list(args), stdout=subprocess.PIPE, text=True, env=env)
    time.sleep(1.0)  # connected and negotiated (generous: a loaded CI machine)
    return p


def test_lifecycle_and_events():
    idle = guest("idle")
    with Vmmd() as d:
        create(d, "a", idle)
        create(d, "b", idle)
        ev_all = events_proc(d, "--json", "events")
        ev_a = events_proc(d, "events", "--vm", "a")
        assert "started" in d.vmctl("start", "a").stdout
        d.vmctl("start", "b")
        wait_console(d, "a", "idle: up")
        assert state(d, "a") == "running"
        lines = d.vmctl("list").stdout.splitlines()
        assert any(l.split()[:2] == ["a", "running"] for l in lines), lines
        assert "paused" in d.vmctl("pause", "a").stdout
        assert state(d, "a") == "paused"
        assert json.loads(d.vmctl("--json", "pause", "b").stdout) == {}
        assert "resumed" in d.vmctl("resume", "a").stdout
        assert state(d, "a") == "running"
        d.vmctl("reset", "a")
        wait_console(d, "a", "idle: up", count=2)
        d.vmctl("stop", "--force", "a")
        assert state(d, "a") == "shutdown"
        time.sleep(0.3)
        ev_all.terminate()
        ev_a.terminate()
        got = [json.loads(l) for l in ev_all.communicate(timeout=10)[0].splitlines()]
        names = [(e["event"], e["data"]["vm"]) for e in got]
        for want in (("STOP", "a"), ("STOP", "b"), ("RESUME", "a"), ("RESET", "a"),
                     ("SHUTDOWN", "a")):
            assert want in names, (want, names)
        assert all("timestamp" in e for e in got)
        only_a = ev_a.communicate(timeout=10)[0].splitlines()
        assert only_a and all(" a " in l for l in only_a), only_a
        assert any("RESET" in l and "host-qmp-system-reset" in l for l in only_a), only_a
        assert not any("STOP" in l and " b " in l for l in only_a)


def test_stop_waits_for_the_guest():
    acpi, idle = guest("acpi"), guest("idle")
    with Vmmd() as d:
        create(d, "obeys", acpi, "--start")
        wait_console(d, "obeys", "acpi: up")
        p = d.vmctl("stop", "obeys", "--timeout", "60")
        assert "shut down" in p.stdout, p
        assert state(d, "obeys") == "shutdown"
        wait_console(d, "obeys", "acpi: power button")
        # A guest that ignores the button: exit 5 after the timeout, then --force.
        create(d, "deaf", idle, "--start")
        wait_console(d, "deaf", "idle: up")
        t0 = time.monotonic()
        p = d.vmctl("stop", "--timeout", "2", "deaf", check=False)
        assert p.returncode == 5 and "--force" in p.stderr, p
        assert 1.5 < time.monotonic() - t0 < 10
        assert state(d, "deaf") == "running"
        p = d.vmctl("--json", "stop", "--force", "deaf")
        assert json.loads(p.stdout) == {"stopped": True, "forced": True}
        assert state(d, "deaf") == "shutdown"
        # delete --force of a running VM.
        d.vmctl("start", "deaf")
        assert d.vmctl("delete", "deaf", check=False).returncode == 1
        d.vmctl("delete", "--force", "deaf")
        assert [v["name"] for v in json.loads(d.vmctl("--json", "list").stdout)] == ["obeys"]


def test_console():
    echo = guest("echo")
    with Vmmd() as d:
        create(d, "tty", echo, "--start")
        wait_console(d, "tty", "echo: ready")
        env = dict(d.env, VMMD_SOCKET=d.socket)
        p = subprocess.Popen([VMCTL, "console", "tty"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        p.stdin.write(b"hello vmctl\n")
        p.stdin.flush()
        wait_console(d, "tty", "HELLO VMCTL")
        time.sleep(0.5)
        p.stdin.write(b"\x1d")
        p.stdin.flush()
        out, err = p.communicate(timeout=20)
        assert p.returncode == 0, (out, err)
        assert b"HELLO VMCTL" in out, out
        assert b"detached" in err, err
        d.vmctl("stop", "--force", "tty")


def test_start_wait_as_the_service_unit_runs_it():
    """vmctl start --wait (ExecStart of vmmd-vm@.service): boots, stays while the VM
    runs, adopts a running VM, exits 0 when it shuts down."""
    idle = guest("idle")
    with Vmmd() as d:
        create(d, "svc", idle)
        env = dict(d.env, VMMD_SOCKET=d.socket)
        p = subprocess.Popen([VMCTL, "start", "--wait", "svc"], stdout=subprocess.PIPE,
                             text=True, env=env)
        wait_console(d, "svc", "idle: up")
        time.sleep(0.5)
        assert p.poll() is None, "start --wait returned while the VM runs"
        # a second one adopts the running VM instead of failing
        p2 = subprocess.Popen([VMCTL, "start", "--wait", "svc"], stdout=subprocess.PIPE,
                              text=True, env=env)
        time.sleep(1.0)
        assert p2.poll() is None, "start --wait did not adopt the running VM"
        d.vmctl("stop", "--force", "svc")
        assert p.wait(30) == 0 and p2.wait(30) == 0
        assert "svc: shut down" in p.stdout.read()
        assert state(d, "svc") == "shutdown"


if __name__ == "__main__":
    main(globals())
