#!/usr/bin/env python3
"""The run states at a migration's ends, against QEMU 7.2's answers: the
golden trace golden/migration-runstate.json was recorded from two QEMUs by
make-golden-migration-runstate.py. On the destination: a VM whose source ran
runs on arrival (RESUME), one whose source was paused arrives paused, one
whose source never ran (prelaunch) arrives in prelaunch and cont runs it;
stop while it waits for the stream answers {} with no event and makes a
running source's VM arrive paused, cont sets it back. On the source:
migrate_cancel leaves a running VM running, a paused one paused and one in
prelaunch in prelaunch. Two daemons on this host, a unix: socket, the
migrate guest (its RAM is not zero, so a migration capped at 1 MiB/s is
still active when cancelled). QEMU's -S VM that never ran is a vmmd VM
stopped and reset (prelaunch): vmmd has no -S."""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vmmdtest import QMP, Vmmd, main, wait_for  # noqa: E402
from daemon_helpers import TEST_CPU, drain_events, guest, wait_console  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
WATCHED = ("RESET", "STOP", "RESUME", "SHUTDOWN")


def golden():
    with open(os.path.join(HERE, "golden", "migration-runstate.json")) as f:
        return {c["name"]: c for c in json.load(f)["cases"]}


def vm_def(**extra):
    d = {"name": "m", "vcpus": 1, "memory": "32M", "cpu": TEST_CPU,
         "boot": {"kernel": guest("migrate")}}
    d.update(extra)
    return d


class MainSocket:
    """The daemon's main socket as one VM's QMP: "vm" added to commands and
    dropped from events (the incoming VM has no socket of its own yet)."""

    def __init__(self, q, vm):
        self.q, self.vm = q, vm
        self.sock, self.events = q.sock, q.events

    def cmd(self, name, args=None):
        return self.q.cmd(name, dict(args or {}, vm=self.vm))

    def ok(self, name, args=None):
        return self.q.ok(name, **dict(args or {}, vm=self.vm))

    def recv(self):
        return unvm(self.q.recv())

    def event(self, name, timeout=10.0):
        return unvm(self.q.event(name, timeout=timeout))


def unvm(m):
    if "data" in m and isinstance(m["data"], dict):
        m["data"].pop("vm", None)
        if not m["data"]:
            del m["data"]
    return m


def watched(q, seconds):
    """The run-state events within @seconds (and those queued), without "vm"."""
    return drain_events(q, seconds, WATCHED, unvm)


def source(d, setup):
    """A source VM in the state QEMU's was after @setup (from -S)."""
    q = d.qmp()
    q.ok("vm-create", dict(vm_def(), start=True))
    wait_console(d, "m", "migrate: pass 16 ", timeout=90)
    if setup != ["cont"]:
        q.ok("stop", vm="m")
    if setup == []:  # never ran: vmmd's way there is stop + system_reset
        q.ok("system_reset", vm="m")
        assert q.ok("query-status", vm="m")["status"] == "prelaunch"
    return QMP(q.ok("query-vms", vm="m")[0]["qmp-socket"])


def replay(case):
    with Vmmd() as src, Vmmd() as dst:
        qs = source(src, case["src-setup"])
        qd_main = dst.qmp()
        qd_main.ok("vm-create", dict(vm_def(), incoming=True, start=True))
        qd = MainSocket(qd_main, "m")
        q = {"src": qs, "dst": qd}
        for side in q:
            watched(q[side], 0.2)
        uri = "unix:" + os.path.join(dst.tmp, "mig.sock")
        for step in case["steps"]:
            if "wait" in step:
                want = step["wait"]
                wait_for(lambda: qs.ok("query-migrate").get("status") == want, 120,
                         what="query-migrate %s" % want)
                continue
            c = json.loads(json.dumps({k: step[k] for k in ("execute", "arguments")
                                       if k in step}).replace('"URI"', json.dumps(uri)))
            if c["execute"] == "migrate-set-parameters":
                c["arguments"]["max-bandwidth"] = 1 << 20
            got = q[step["side"]].cmd(c["execute"], c.get("arguments"))
            if c["execute"] == "query-status":
                assert got == step["reply"], (case["name"], step["side"], got, step["reply"])
            else:
                assert ("error" in got) == ("error" in step["reply"]), (case["name"], c, got)
            for side, evs in ((step["side"], step["events"]),
                              ("dst" if step["side"] == "src" else "src",
                               step["other-events"])):
                if evs == "exited":
                    continue
                want = [e for e in evs if e["event"] in WATCHED]
                for w in want:
                    e = q[side].event(w["event"], timeout=120)
                    e.pop("timestamp", None)
                    assert e == w, (case["name"], side, c, e, w)
                extra = watched(q[side], 0.3)
                assert extra == [], (case["name"], side, c, "events QEMU did not send", extra)


def case_test(name):
    def t():
        replay(golden()[name])
    t.__doc__ = golden()[name]["doc"]
    return t


for _n in ("running-source", "paused-source", "prelaunch-source", "stop-while-inmigrate",
           "stop-then-cont-while-inmigrate", "cancel-running-source", "cancel-paused-source",
           "cancel-prelaunch-source"):
    globals()["test_" + _n.replace("-", "_") + "_matches_qemu"] = case_test(_n)


if __name__ == "__main__":
    main(globals())
