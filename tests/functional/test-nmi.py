#!/usr/bin/env python3
"""inject-nmi, replayed from QEMU 7.2's golden trace (golden/nmi.json,
make-golden-nmi.py) with tests/guests/nmi.c, which counts the NMIs each CPU
takes while it halts with interrupts off: one per call, none while the VM
is stopped until cont, QEMU's answers; on two vCPUs every vCPU takes each
(QEMU's x86_nmi()); a reset drops an NMI still pending, vm-save carries
it; vmctl nmi and the HMP command."""

import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from vmmdtest import Vmmd, main  # noqa: E402
from daemon_helpers import TEST_CPU, console_log, guest, wait_console  # noqa: E402

TOP_SRCDIR = os.environ.get("top_srcdir", os.path.join(HERE, "..", ".."))
GOLDEN = os.path.join(TOP_SRCDIR, "tests", "functional", "golden", "nmi.json")


def golden():
    with open(GOLDEN) as f:
        return json.load(f)


def boot(d, vcpus=1, name="n1"):
    q = d.qmp()
    q.ok("vm-create", {"name": name, "vcpus": vcpus, "memory": "32M", "cpu": TEST_CPU,
                       "boot": {"kernel": guest("nmi")}, "start": True})
    # the whole line: the guest prints it a piece at a time
    wait_console(d, name, " CPUs\r\n", timeout=60)
    return q


def lines(d, name="n1", settle=0.5):
    time.sleep(settle)  # nothing more should come
    return console_log(d, name).splitlines()


def reply(r):
    r.pop("id", None)
    return r


def test_inject_nmi_as_qemu():
    g = golden()
    with Vmmd() as d:
        q = boot(d)
        assert lines(d) == g["console-ready"], console_log(d, "n1")
        assert reply(q.cmd("inject-nmi", vm="n1")) == g["inject-nmi"]
        wait_console(d, "n1", "nmi: wake 1")
        assert lines(d) == g["console-after-one"]
        q.ok("inject-nmi", vm="n1")
        wait_console(d, "n1", "nmi: wake 2")
        assert lines(d) == g["console-after-two"]
        r = reply(q.cmd("inject-nmi", vm="n1", cpu=0))
        assert r["error"]["class"] == g["inject-nmi-argument"]["error"]["class"], r
        assert "'cpu'" in r["error"]["desc"], r
        q.ok("stop", vm="n1")
        assert reply(q.cmd("inject-nmi", vm="n1")) == g["inject-nmi-stopped"]
        assert lines(d, settle=1.0) == g["console-while-stopped"]
        q.ok("cont", vm="n1")
        wait_console(d, "n1", "nmi: wake 3")
        assert lines(d) == g["console-after-cont"]


def test_every_vcpu_takes_it():
    with Vmmd() as d:
        q = boot(d, vcpus=2)
        assert "nmi: ready, 2 CPUs" in console_log(d, "n1"), console_log(d, "n1")
        for i in (1, 2, 3):
            q.ok("inject-nmi", vm="n1")
            wait_console(d, "n1", "nmi: wake %d:" % i)
        assert lines(d)[1:] == ["nmi: wake 1: 1 1", "nmi: wake 2: 2 2", "nmi: wake 3: 3 3"], \
            console_log(d, "n1")


def test_reset_drops_a_pending_nmi():
    """An NMI sent to a stopped VM is pending; system_reset clears it as a
    reset does on hardware, so the rebooted guest (no IDT yet) never sees
    it: it comes up once and counts from zero."""
    with Vmmd() as d:
        q = boot(d)
        q.ok("stop", vm="n1")
        q.ok("inject-nmi", vm="n1")
        q.ok("system_reset", vm="n1")
        q.ok("cont", vm="n1")
        wait_console(d, "n1", "nmi: ready", count=2, timeout=60)
        time.sleep(1)
        log = console_log(d, "n1")
        assert "nmi: wake" not in log and log.count("nmi: ready") == 2, log
        q.ok("inject-nmi", vm="n1")
        wait_console(d, "n1", "nmi: wake 1: 1")


def test_saved_while_pending():
    """An NMI sent to a stopped VM is pending in KVM: vm-save carries it,
    and the restored VM takes it when it runs."""
    with Vmmd() as d:
        q = boot(d)
        q.ok("stop", vm="n1")
        q.ok("inject-nmi", vm="n1")
        snap = os.path.join(d.tmp, "snap")
        q.ok("vm-save", vm="n1", path=snap, stop=True)
        q.event("VM_SAVE_COMPLETED", timeout=60, pred=lambda e: e["data"]["path"] == snap)
        os.unlink(os.path.join(d.run_dir, "vms", "n1.console"))
        q.ok("vm-restore", {"path": snap, "name": "n1", "paused": True})
        time.sleep(0.5)
        assert "nmi: wake" not in console_log(d, "n1"), console_log(d, "n1")
        q.ok("cont", vm="n1")
        wait_console(d, "n1", "nmi: wake 1: 1")


def test_vmctl_and_hmp():
    with Vmmd() as d:
        q = boot(d)
        p = d.vmctl("nmi", "n1")
        assert "NMI injected" in p.stdout, p.stdout
        wait_console(d, "n1", "nmi: wake 1: 1")
        assert q.ok("human-monitor-command", vm="n1", **{"command-line": "nmi"}) == ""
        wait_console(d, "n1", "nmi: wake 2: 2")
        p = d.vmctl("nmi", "nope", check=False)
        assert p.returncode != 0 and "nope" in p.stderr, p.stderr


if __name__ == "__main__":
    main(globals())
