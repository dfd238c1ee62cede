#!/usr/bin/env python3
"""system_reset and the run state, against QEMU 7.2's answers: the golden
trace golden/runstate-reset.json was recorded from QEMU by
make-golden-runstate-reset.py. A reset of a paused VM (QMP system_reset or
HMP system_reset) leaves it in prelaunch with one RESET event and no STOP or
RESUME; stop there changes nothing; cont runs it (RESUME) and the guest boots
again. The replayed cases go through the VM's own socket, as to one QEMU;
vmctl shows the same state. Also: a reset from io-error ends in prelaunch
the same way, and a reset while a migration writes the state is refused."""

import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vmmdtest import QMP, VMCTL, Vmmd, main, require_tool, wait_for  # noqa: E402
from daemon_helpers import TEST_CPU, console_log, drain_events, guest, vm_def, wait_console  # noqa: E402,E501

HERE = os.path.dirname(os.path.abspath(__file__))
WATCHED = ("RESET", "STOP", "RESUME", "SHUTDOWN", "GUEST_PANICKED")


def golden():
    with open(os.path.join(HERE, "golden", "runstate-reset.json")) as f:
        return {c["name"]: c for c in json.load(f)["cases"]}


def drain(q, seconds):
    """The watched events within @seconds (and those already queued)."""
    return drain_events(q, seconds, WATCHED)


def start_idle(d, name):
    q = d.qmp()
    info = q.ok("vm-create", dict(vm_def(name, guest("idle")), start=True))
    q.event("RESUME", timeout=60)  # the start's
    wait_console(d, name, "idle: up", timeout=60)
    return q, info["qmp-socket"]


def replay(case):
    with Vmmd() as d:
        main_q, path = start_idle(d, "r")
        q = QMP(path)
        drain(q, 0.2)
        for step in case["steps"]:
            c = {k: step[k] for k in ("execute", "arguments") if k in step}
            got = q.cmd(c["execute"], c.get("arguments"))
            assert got == step["reply"], (case["name"], c, got, step["reply"])
            want = [e for e in step["events"] if e["event"] in WATCHED]
            for w in want:
                e = q.event(w["event"], timeout=30)
                e.pop("timestamp", None)
                assert e == w, (case["name"], c, e, w)
            extra = drain(q, 0.3)
            assert extra == [], (case["name"], c, "events QEMU did not send", extra)
        q.close()
        main_q.close()
        return d


def test_reset_paused_qmp_matches_qemu():
    replay(golden()["paused-qmp"])


def test_reset_paused_hmp_matches_qemu():
    replay(golden()["paused-hmp"])


def test_reset_running_matches_qemu():
    replay(golden()["running"])


def test_guest_panicked_matches_qemu():
    """QEMU 7.2's guest-panicked case, the panic coming from the guest's own
    pvpanic write instead of the monitor's "o /b 0x505 1": GUEST_PANICKED
    {"action": "pause"} then STOP, state guest-panicked, cont runs it on
    (RESUME), a second panic, system_reset leaves it in prelaunch, cont
    boots it again. Replies and events are the recorded ones; the
    crash-loaded write in between gives GUEST_CRASHLOADED {"action": "run"}
    and does not stop the guest."""
    steps = golden()["guest-panicked"]["steps"]
    panic_events = [e for e in steps[0]["events"] if e["event"] in WATCHED]
    assert [e["event"] for e in panic_events] == ["GUEST_PANICKED", "STOP"], panic_events
    with Vmmd() as d:
        # the main socket, there from the start (events carry "vm")
        q = d.qmp()
        q.ok("vm-create", dict(vm_def("p", guest("panic")), pvpanic=True, start=True))

        def expect(events):
            for w in events:
                e = q.event(w["event"], timeout=60)
                e.pop("timestamp", None)
                w = dict(w, data=dict(w.get("data", {}), vm="p"))
                assert e == w, (e, w)

        def replay(step):
            c = {k: step[k] for k in ("execute", "arguments") if k in step}
            got = q.cmd(c["execute"], dict(c.get("arguments", {}), vm="p"))
            assert got == step["reply"], (c, got, step["reply"])
            expect([e for e in step["events"] if e["event"] in WATCHED])

        q.event("RESUME", timeout=60)              # the start's

        expect(panic_events)                       # the guest's first panic
        assert "panic: port reads 0x3" in console_log(d, "p"), console_log(d, "p")
        for step in steps[1:4]:                    # guest-panicked, cont, running
            replay(step)
        e = q.event("GUEST_CRASHLOADED", timeout=60)
        assert e["data"] == {"action": "run", "vm": "p"}, e
        expect([e for e in steps[4]["events"] if e["event"] in WATCHED])  # the second
        for step in steps[5:]:                     # guest-panicked, reset, prelaunch, cont
            replay(step)
        wait_console(d, "p", "panic: boot 2", timeout=60)
        log = console_log(d, "p")
        lines = [ln.strip() for ln in log.splitlines() if ln.startswith("panic: ")]
        assert lines == ["panic: boot 1", "panic: port reads 0x3", "panic: first",
                         "panic: resumed", "panic: crash loaded said", "panic: second",
                         "panic: boot 2"], log     # no "resumed again": reset instead
        extra = drain(q, 0.3)
        assert extra == [], extra
        q.close()


def test_inmigrate_matches_qemu():
    """QEMU 7.2's inmigrate case (-incoming defer): system_reset answers {}
    with a RESET event and the VM stays inmigrate; cont answers {} (QEMU
    sets autostart, which a vmmd incoming VM has) and changes nothing. Then
    the VM still takes a migration: vm-delete ends the wait as before."""
    with Vmmd() as d:
        q = d.qmp()
        q.ok("vm-create", dict(vm_def("i", guest("idle")), incoming=True, start=True))
        for step in golden()["inmigrate"]["steps"]:
            c = {k: step[k] for k in ("execute", "arguments") if k in step}
            got = q.cmd(c["execute"], dict(c.get("arguments", {}), vm="i"))
            assert got == step["reply"], (c, got, step["reply"])
            for w in [e for e in step["events"] if e["event"] in WATCHED]:
                e = q.event(w["event"], timeout=30)
                e.pop("timestamp", None)
                assert e == dict(w, data=dict(w.get("data", {}), vm="i")), (e, w)
            extra = drain(q, 0.3)
            assert extra == [], (c, "events QEMU did not send", extra)
        # still waiting, and still deletable
        assert q.ok("query-vms", vm="i")[0]["status"] == "inmigrate"
        q.ok("vm-delete", vm="i")


def test_golden_records_prelaunch_after_reset():
    """The recorded QEMU facts this change relies on, stated plainly."""
    g = golden()
    for name in ("paused-qmp", "paused-hmp", "guest-panicked", "shutdown-no-shutdown",
                 "postmigrate", "guest-reset-while-paused"):
        states = [s["reply"]["return"]["status"] for s in g[name]["steps"]
                  if s["execute"] == "query-status"]
        assert "prelaunch" in states, (name, states)
    states = [s["reply"]["return"]["status"] for s in g["inmigrate"]["steps"]
              if s["execute"] == "query-status"]
    assert states == ["inmigrate"] * 3, states


def test_reset_paused_main_socket_vmctl_and_reboot():
    """On the main socket (events carry "vm"), through vmctl, and the guest
    really starts over after cont from prelaunch."""
    with Vmmd() as d:
        q, _ = start_idle(d, "v")
        q.ok("stop", vm="v")
        q.event("STOP", timeout=30)
        p = d.vmctl("reset", "v")
        assert p.stdout == "v: reset\n", p.stdout
        ev = q.event("RESET", timeout=30)
        assert ev["data"] == {"vm": "v", "guest": False, "reason": "host-qmp-system-reset"}, ev
        st = q.ok("query-status", vm="v")
        assert st == {"status": "prelaunch", "running": False, "singlestep": False}, st
        vms = q.ok("query-vms", vm="v")
        assert vms[0]["status"] == "prelaunch" and vms[0]["running"] is False, vms
        p = d.vmctl("status", "v")
        assert "status          prelaunch\n" in p.stdout, p.stdout
        p = d.vmctl("list")
        assert [ln.split()[1] for ln in p.stdout.splitlines()[1:]] == ["prelaunch"], p.stdout
        # vmctl pause is QEMU's stop: a no-op in prelaunch
        d.vmctl("pause", "v")
        assert q.ok("query-status", vm="v")["status"] == "prelaunch"
        before = console_log(d, "v").count("idle: up")
        p = d.vmctl("resume", "v")
        assert p.stdout == "v: resumed\n", p.stdout
        q.event("RESUME", timeout=30)
        assert q.ok("query-status", vm="v")["status"] == "running"
        wait_console(d, "v", "idle: up", timeout=60, count=before + 1)
        extra = drain(q, 0.3)
        assert extra == [], extra


def test_reset_paused_then_stop_and_reset_again():
    """prelaunch after a reset behaves as paused for the next commands: a
    second reset stays in prelaunch, vm-start is refused (it is live)."""
    with Vmmd() as d:
        q, _ = start_idle(d, "w")
        q.ok("stop", vm="w")
        q.ok("system_reset", vm="w")
        q.ok("system_reset", vm="w")
        assert q.ok("query-status", vm="w")["status"] == "prelaunch"
        r = q.cmd("vm-start", vm="w")
        assert "error" in r, r
        q.ok("cont", vm="w")
        wait_for(lambda: q.ok("query-status", vm="w")["status"] == "running", 30,
                 what="running")
        q.ok("system_reset", vm="w")
        assert q.ok("query-status", vm="w")["status"] == "running"


def test_vmctl_start_wait_adopts_prelaunch_after_reset():
    """vmctl start --wait (vmmd-vm@.service) adopts a VM a reset left in
    prelaunch instead of failing on vm-start, and exits 0 at its shutdown."""
    with Vmmd() as d:
        q, _ = start_idle(d, "s")
        q.ok("stop", vm="s")
        q.ok("system_reset", vm="s")
        assert q.ok("query-status", vm="s")["status"] == "prelaunch"
        env = dict(d.env, VMMD_SOCKET=d.socket)
        p = subprocess.Popen([VMCTL, "start", "--wait", "s"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env)
        try:
            time.sleep(1.0)
            assert p.poll() is None, ("start --wait did not adopt the VM", p.communicate())
            assert q.ok("query-status", vm="s")["status"] == "prelaunch"
            d.vmctl("stop", "--force", "s")
            out, err = p.communicate(timeout=30)
            assert p.returncode == 0, (out, err)
            assert "s: shut down" in out, out
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()


def fake_destination(path):
    """A migration destination (docs/migration.md) that answers the wire
    header and then only reads: the source sends everything and waits for
    READY, its VM held in finish-migrate (the state being written)."""
    ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    ls.bind(path)
    ls.listen(1)
    got = {"bytes": 0}

    def serve():
        c, _ = ls.accept()
        try:
            hdr = b""
            while len(hdr) < 64:
                chunk = c.recv(64 - len(hdr))
                if not chunk:
                    return
                hdr += chunk
            c.sendall(hdr[:8] + struct.pack("<II", 1, 0) + hdr[16:64])
            while True:
                chunk = c.recv(1 << 20)
                if not chunk:
                    return
                got["bytes"] += len(chunk)
        finally:
            c.close()
            ls.close()
    th = threading.Thread(target=serve, daemon=True)
    th.start()
    return th, got


def test_reset_refused_while_migrating():
    """A reset of a paused VM whose state is being written (the last phase of
    a migration) is refused as before, and the state stays finish-migrate;
    once the migration is cancelled the reset is taken (prelaunch). The same
    for a VM already in prelaunch after a reset."""
    with Vmmd() as d:
        q, _ = start_idle(d, "m")
        q.ok("stop", vm="m")
        q.event("STOP", timeout=30)
        for first in ("paused", "prelaunch"):
            assert q.ok("query-status", vm="m")["status"] == first
            path = os.path.join(d.tmp, "dest-%s.sock" % first)
            th, got = fake_destination(path)
            q.ok("migrate", vm="m", uri="unix:" + path)
            wait_for(lambda: q.ok("query-status", vm="m")["status"] == "finish-migrate", 60,
                     what="finish-migrate")
            r = q.cmd("system_reset", vm="m")
            assert r == {"error": {"class": "GenericError",
                                   "desc": 'cannot reset VM "m": it is being saved (vm-save)'}}, r
            assert q.ok("query-status", vm="m")["status"] == "finish-migrate"
            q.ok("migrate_cancel", vm="m")
            # over once "cancelled" (the run state changes a moment before: a new
            # migrate in between is refused as in progress, as QEMU's in "cancelling")
            wait_for(lambda: q.ok("query-migrate", vm="m").get("status") == "cancelled", 60,
                     what="the cancel")
            assert q.ok("query-status", vm="m")["status"] != "finish-migrate"
            th.join(30)
            assert got["bytes"] > 0, got
            q.ok("system_reset", vm="m")
            assert q.ok("query-status", vm="m")["status"] == "prelaunch"
        extra = [e for e in drain(q, 0.3) if e["event"] in ("STOP", "RESUME")]
        assert not extra, extra


def test_reset_from_io_error():
    """io-error (werror=stop, a write failed): system_reset leaves the VM in
    prelaunch (RESET only; the held write is dropped with the device reset),
    and cont boots the guest again, which now writes and reads back."""
    require_tool("nbdkit")
    kernel = guest("virtio-blk")
    with Vmmd() as d:
        trigger = os.path.join(d.tmp, "fail-writes")
        sock = os.path.join(d.tmp, "nbd.sock")
        open(trigger, "w").close()
        nbd = subprocess.Popen(["nbdkit", "-f", "-U", sock, "--filter=error", "memory", "4M",
                                "error-pwrite=EIO", "error-pwrite-rate=100%",
                                "error-pwrite-file=" + trigger],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for(lambda: os.path.exists(sock), 10, what="nbdkit's socket")
            q = d.qmp()
            q.ok("vm-create", {"name": "e", "vcpus": 1, "memory": "64M", "cpu": TEST_CPU,
                               "boot": {"kernel": kernel}, "start": True,
                               "disks": [{"id": "vda", "file": "nbd+unix:///?socket=" + sock,
                                          "format": "raw", "werror": "stop"}]})
            q.event("BLOCK_IO_ERROR", timeout=120)
            q.event("STOP", timeout=30)
            assert q.ok("query-status", vm="e")["status"] == "io-error"
            drain(q, 0.3)
            boots = console_log(d, "e").count("blk: capacity")
            q.ok("system_reset", vm="e")
            ev = q.event("RESET", timeout=30)
            assert ev["data"] == {"vm": "e", "guest": False,
                                  "reason": "host-qmp-system-reset"}, ev
            st = q.ok("query-status", vm="e")
            assert st == {"status": "prelaunch", "running": False, "singlestep": False}, st
            extra = drain(q, 0.3)
            assert extra == [], extra
            os.unlink(trigger)
            q.ok("cont", vm="e")
            q.event("RESUME", timeout=30)
            wait_console(d, "e", "blk: done", timeout=120)
            c = console_log(d, "e")
            assert c.count("blk: capacity") == boots + 1, c[-2000:]
            assert "blk: readback ok" in c and "blk: write failed" not in c, c[-2000:]
        finally:
            nbd.kill()
            nbd.wait()


if __name__ == "__main__":
    main(globals())
