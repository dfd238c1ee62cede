#!/usr/bin/env python3
"""Record QEMU's run states and events around a migration's ends as a golden
trace (tests/functional/golden/migration-runstate.json) for
test-migration-runstate.py: what the destination is in after the stream
arrived, for a source that ran, was paused or never ran, and for a
destination told stop or cont while it waited (-incoming defer); and what
the source is in after migrate_cancel.

Usage: tests/functional/make-golden-migration-runstate.py [QEMU]

Each case runs two fresh QEMUs of make-golden-runstate-reset.py's kind (pc,
KVM, a BIOS that halts), "src" and "dst" (-incoming defer), migrating over a
UNIX socket; the destination starts without -S (it runs once the stream
arrived if the source ran), as a vmmd VM created with "incoming": true. Steps
name the side; "wait" polls the source's query-migrate
until the status given. Each step records the reply and the events that
arrived before it or within SETTLE seconds after it, timestamps removed."""

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location(
    "golden_reset", os.path.join(HERE, "make-golden-runstate-reset.py"))
reset = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(reset)
cmd = reset.cmd
STATUS = cmd("query-status")
EVENTS_ON = cmd("migrate-set-capabilities",
                {"capabilities": [{"capability": "events", "state": True}]})
# Slow enough to cancel: 64 MiB of RAM that is not zero (a private mapping
# of a file of random bytes) at 1 MiB/s.
SLOW = cmd("migrate-set-parameters", {"max-bandwidth": 1 << 20})


def ram_args(path):
    return ["-object", "memory-backend-file,id=ram,size=64M,share=off,mem-path=" + path,
            "-machine", "memory-backend=ram"]

def incoming(uri):
    return ("dst", cmd("migrate-incoming", {"uri": uri}))


CASES = [
    {"name": "running-source",
     "doc": "the source ran: the destination runs once the stream arrived (RESUME)",
     "src": ["cont"], "dst": [],
     "steps": [("dst", STATUS), incoming("URI"), ("src", cmd("migrate", {"uri": "URI"})),
               ("wait", "completed"), ("src", STATUS), ("dst", STATUS)]},
    {"name": "paused-source",
     "doc": "the source was stopped: the destination arrives paused",
     "src": ["cont", "stop"], "dst": [],
     "steps": [incoming("URI"), ("src", cmd("migrate", {"uri": "URI"})),
               ("wait", "completed"), ("src", STATUS), ("dst", STATUS)]},
    {"name": "prelaunch-source",
     "doc": "the source never ran (-S): the destination arrives in prelaunch",
     "src": [], "dst": [],
     "steps": [incoming("URI"), ("src", cmd("migrate", {"uri": "URI"})),
               ("wait", "completed"), ("src", STATUS), ("dst", STATUS),
               ("dst", cmd("cont")), ("dst", STATUS)]},
    {"name": "stop-while-inmigrate",
     "doc": "stop on the waiting destination: {} and no event; the running "
            "source's VM arrives paused",
     "src": ["cont"], "dst": [],
     "steps": [("dst", cmd("stop")), ("dst", STATUS), incoming("URI"),
               ("src", cmd("migrate", {"uri": "URI"})), ("wait", "completed"),
               ("dst", STATUS), ("dst", cmd("cont")), ("dst", STATUS)]},
    {"name": "stop-then-cont-while-inmigrate",
     "doc": "stop then cont on the waiting destination: it runs once arrived",
     "src": ["cont"], "dst": [],
     "steps": [("dst", cmd("stop")), ("dst", cmd("cont")), ("dst", STATUS),
               incoming("URI"), ("src", cmd("migrate", {"uri": "URI"})),
               ("wait", "completed"), ("dst", STATUS)]},
    {"name": "cancel-running-source",
     "doc": "migrate_cancel of a running source: it runs on",
     "src": ["cont"], "dst": [],
     "steps": [incoming("URI"), ("src", SLOW), ("src", cmd("migrate", {"uri": "URI"})),
               ("wait", "active"), ("src", cmd("migrate_cancel")), ("wait", "cancelled"),
               ("src", STATUS)]},
    {"name": "cancel-paused-source",
     "doc": "migrate_cancel of a stopped source: it stays paused",
     "src": ["cont", "stop"], "dst": [],
     "steps": [incoming("URI"), ("src", SLOW), ("src", cmd("migrate", {"uri": "URI"})),
               ("wait", "active"), ("src", cmd("migrate_cancel")), ("wait", "cancelled"),
               ("src", STATUS)]},
    {"name": "cancel-prelaunch-source",
     "doc": "migrate_cancel of a source that never ran: its state after the cancel",
     "src": [], "dst": [],
     "steps": [incoming("URI"), ("src", SLOW), ("src", cmd("migrate", {"uri": "URI"})),
               ("wait", "active"), ("src", cmd("migrate_cancel")), ("wait", "cancelled"),
               ("src", STATUS)]},
]


def subst(c, uri):
    return json.loads(json.dumps(c).replace('"URI"', json.dumps(uri)))


def record(qemu, case):
    with tempfile.TemporaryDirectory() as tmp:
        os.makedirs(os.path.join(tmp, "s"))
        os.makedirs(os.path.join(tmp, "d"))
        uri = "unix:" + os.path.join(tmp, "mig.sock")
        extra = [[], []]
        if SLOW in [c for _, c in case["steps"][1:] if _ != "wait"]:
            ram = os.path.join(tmp, "ram")
            with open(ram, "wb") as f:
                f.write(os.urandom(64 << 20))
            extra = [ram_args(ram), ram_args(os.path.join(tmp, "ram-dst"))]
            with open(extra[1][1].split("mem-path=")[1], "wb") as f:
                f.truncate(64 << 20)
        src = reset.Qemu(qemu, os.path.join(tmp, "s"), extra[0])
        # the destination without -S, as a vmmd VM created with "incoming": true
        dst = reset.Qemu(qemu, os.path.join(tmp, "d"), ["no-S", "-incoming", "defer"] + extra[1])
        q = {"src": src, "dst": dst}
        try:
            for side in ("src", "dst"):
                assert "return" in q[side].execute(EVENTS_ON)[0]
                for c in case[side]:
                    assert "return" in q[side].execute(cmd(c))[0], c
            steps = []
            for step in case["steps"]:
                if step[0] == "wait":
                    for _ in range(400):
                        st = src.execute(cmd("query-migrate"))[0]["return"].get("status")
                        if st == step[1]:
                            break
                        time.sleep(0.05)
                    assert st == step[1], (case["name"], st, step)
                    steps.append({"wait": step[1]})
                    continue
                side, c = step
                reply, events = q[side].execute(subst(c, uri))
                # the other side's events meanwhile (a destination whose
                # incoming migration failed has exited, as QEMU does)
                o = q["dst" if side == "src" else "src"]
                other = o.execute(cmd("query-name"))[1] if o.p.poll() is None else "exited"
                steps.append(dict(c, side=side, reply=reply, events=events,
                                  **{"other-events": other}))
        finally:
            src.close()
            dst.close()
    return {"name": case["name"], "doc": case["doc"], "src-setup": case["src"],
            "dst-setup": case["dst"], "steps": steps}


def main():
    qemu = sys.argv[1] if len(sys.argv) > 1 else "qemu-system-x86_64"
    ver = subprocess.run([qemu, "--version"], capture_output=True, text=True).stdout
    trace = {"recorded-with": ver.splitlines()[0],
             "qemu-args": "-machine pc -accel kvm -m 64 -nodefaults -display none "
                          "-bios HALT -S (dst: -incoming defer, no -S)",
             "cases": [record(qemu, c) for c in CASES]}
    out = os.path.join(HERE, "golden", "migration-runstate.json")
    with open(out, "w") as f:
        json.dump(trace, f, indent=1, ensure_ascii=True)
        f.write("\n")
    print("wrote", out)


if __name__ == "__main__":
    main()
