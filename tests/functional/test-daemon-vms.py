#!/usr/bin/env python3
"""vmmd with running VMs (needs KVM and the test guests): SIGTERM with VMs
running exits 0 and a restart finds every definition again with the
autostart ones running; a guest that powers off frees only its VM; one VM's
end does not disturb another; the per-VM socket behaves like one QEMU."""

import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vmmdtest import Vmmd, main, wait_for  # noqa: E402
from daemon_helpers import guest, vm_def, wait_console  # noqa: E402


def status(q, name):
    return q.ok("query-status", vm=name)["status"]


def test_sigterm_with_running_vms_then_restart():
    idle = guest("idle")
    d = Vmmd()
    try:
        d.start()
        q = d.qmp()
        q.ok("vm-create", dict(vm_def("auto", idle), autostart=True, start=True))
        q.ok("vm-create", dict(vm_def("manual", idle), start=True))
        q.ok("vm-create", vm_def("later", idle))
        wait_console(d, "auto", "idle: up")
        wait_console(d, "manual", "idle: up")
        assert status(q, "auto") == "running" and status(q, "manual") == "running"
        w = d.qmp()
        assert d.stop() == 0
        log = d.read_log()
        assert "[auto] VM destroyed (host-signal)" in log, log
        assert "[manual] VM destroyed (host-signal)" in log, log
        assert not os.listdir(os.path.join(d.run_dir, "vms")) or \
            not any(f.endswith(".qmp") for f in os.listdir(os.path.join(d.run_dir, "vms")))
        w.close()
        d.start()
        q = d.qmp()
        names = sorted(v["name"] for v in q.ok("query-vms"))
        assert names == ["auto", "later", "manual"], names
        # Autostart builds the VM on a worker thread: prelaunch until it is up.
        wait_for(lambda: status(q, "auto") == "running", 30, what="auto running")
        assert status(q, "manual") == "shutdown" and status(q, "later") == "shutdown"
        wait_console(d, "auto", "idle: up")
    finally:
        d.stop()
        shutil.rmtree(d.tmp, ignore_errors=True)


def test_guest_poweroff_frees_only_that_vm():
    hello, idle = guest("hello"), guest("idle")
    with Vmmd() as d:
        q = d.qmp()
        q.ok("vm-create", dict(vm_def("stay", idle), start=True))
        info = q.ok("vm-create", dict(vm_def("hello", hello), start=True))
        ev = q.event("SHUTDOWN", timeout=60, pred=lambda e: e["data"]["vm"] == "hello")
        assert ev["data"]["guest"] is True and ev["data"]["reason"] == "guest-shutdown", ev
        assert "timestamp" in ev and ev["timestamp"]["seconds"] > 0
        wait_console(d, "hello", "hello from the vmmd test guest")
        wait_for(lambda: status(q, "hello") == "shutdown", 10, what="hello's state")
        wait_for(lambda: not os.path.exists(info["qmp-socket"]), 10, what="the socket gone")
        # The other VM is untouched.
        assert status(q, "stay") == "running"
        # The definition stays and boots again.
        q.ok("vm-start", vm="hello")
        q.event("SHUTDOWN", timeout=60, pred=lambda e: e["data"]["vm"] == "hello")
        wait_console(d, "hello", "poweroff")  # the log restarts with each boot
        assert status(q, "stay") == "running"


def test_guest_reset_policy_shutdown_is_isolated():
    reboot, idle = guest("reboot"), guest("idle")
    with Vmmd() as d:
        q = d.qmp()
        q.ok("vm-create", dict(vm_def("stay", idle), start=True))
        q.ok("vm-create", dict(vm_def("rb", reboot), on_reboot="shutdown", start=True))
        ev = q.event("SHUTDOWN", timeout=60, pred=lambda e: e["data"]["vm"] == "rb")
        assert ev["data"]["guest"] is True, ev
        assert status(q, "rb") == "shutdown" and status(q, "stay") == "running"


def test_per_vm_socket_is_one_qemu():
    idle = guest("idle")
    with Vmmd() as d:
        q = d.qmp()
        info = q.ok("vm-create", dict(vm_def("one", idle), start=True))
        wait_console(d, "one", "idle: up")
        v = d.qmp(path=info["qmp-socket"])
        assert v.ok("query-status") == {"running": True, "singlestep": False,
                                        "status": "running"}
        assert isinstance(v.ok("query-block"), list)
        assert isinstance(v.ok("query-blockstats"), list)
        v.ok("stop")
        # QEMU's exact shape on the VM's socket; the main socket names the VM
        assert "data" not in v.event("STOP")
        assert q.event("STOP")["data"]["vm"] == "one"
        assert q.ok("query-status", vm="one")["status"] == "paused"
        v.ok("cont")
        v.event("RESUME")
        v.ok("system_reset")
        ev = v.event("RESET")
        assert ev["data"] == {"guest": False, "reason": "host-qmp-system-reset"}, ev
        wait_console(d, "one", "idle: up", count=2)
        r = v.cmd("vm-create", {"name": "x"})
        assert r["error"]["class"] == "CommandNotFound", r
        r = v.cmd("quit", id="bye")
        assert r == {"return": {}, "id": "bye"}, r
        assert v.event("SHUTDOWN")["data"]["reason"] == "host-qmp-quit"
        try:
            extra = v.recv()
            raise AssertionError("still open after quit: %r" % extra)
        except EOFError:
            pass
        assert q.ok("query-status", vm="one")["status"] == "shutdown"
        assert [x["name"] for x in q.ok("query-vms")] == ["one"]


def test_vm_destroy_and_delete_while_running():
    idle = guest("idle")
    with Vmmd() as d:
        q = d.qmp()
        q.ok("vm-create", dict(vm_def("gone", idle), start=True))
        r = q.cmd("vm-delete", {"vm": "gone"})
        assert "running" in r["error"]["desc"], r
        r = q.cmd("vm-start", {"vm": "gone"})
        assert "already running" in r["error"]["desc"], r
        q.ok("vm-destroy", vm="gone")
        ev = q.event("SHUTDOWN")
        assert ev["data"] == {"guest": False, "reason": "host-qmp-quit", "vm": "gone"}, ev
        q.ok("vm-start", vm="gone")
        q.ok("vm-delete", vm="gone", force=True)
        assert q.ok("query-vms") == []
        assert not os.path.exists(os.path.join(d.state_dir, "vms", "gone.json"))


if __name__ == "__main__":
    main(globals())
