#!/usr/bin/env python3
"""Record QEMU 7.2's live migration protocol shapes as a golden trace
(tests/functional/golden/migration.json) for test-migration.py: two
qemu-system-x86_64 -machine pc,accel=kvm (the source idles in SeaBIOS, the
destination waits with -incoming defer), migrated over tcp on the loopback.
It records the run states before and after, the MIGRATION/MIGRATION_PASS
events and STOP/RESUME on each side (event names and data, in order), the
default migration parameters and the key sets of query-migrate while
active and when completed.

Usage: tests/functional/make-golden-migration.py [QEMU]"""

import json
import os
import socket
import subprocess
import sys
import tempfile
import time

QEMU = sys.argv[1] if len(sys.argv) > 1 else "qemu-system-x86_64"
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden", "migration.json")


class Qmp:
    def __init__(self, path):
        for _ in range(200):
            try:
                self.s = socket.socket(socket.AF_UNIX)
                self.s.connect(path)
                break
            except OSError:
                time.sleep(0.05)
        self.f = self.s.makefile("r")
        self.events = []
        json.loads(self.f.readline())
        self.cmd("qmp_capabilities")

    def cmd(self, name, **args):
        return self.call(name, args)

    def call(self, name, args):
        """@name with the argument object @args (any member names, "name"
        included); its answer, the events before it kept in events."""
        self.s.sendall(json.dumps({"execute": name, "arguments": args}).encode() + b"\n")
        while True:
            m = json.loads(self.f.readline())
            if "event" in m:
                self.events.append(m)
            elif "return" in m or "error" in m:
                return m

    def wait_event(self, pred, timeout=60):
        end = time.time() + timeout
        self.s.settimeout(timeout)
        while time.time() < end:
            for e in self.events:
                if pred(e):
                    return e
            m = json.loads(self.f.readline())
            if "event" in m:
                self.events.append(m)
        raise TimeoutError


def start(tmp, name, extra):
    path = os.path.join(tmp, name + ".qmp")
    p = subprocess.Popen([QEMU, "-machine", "pc,accel=kvm", "-cpu", "qemu64,-cx16", "-m", "64",
                          "-nodefaults", "-display", "none", "-qmp", "unix:%s,server=on,wait=off" % path]
                         + extra, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return p, Qmp(path)


def shape(e):
    return {"event": e["event"], "data": e.get("data", {})}



def write_golden(path, out):
    """A golden trace as every recorder writes it: sorted keys, one space
    of indent, a final newline."""
    with open(path, "w") as f:
        json.dump(out, f, indent=1, sort_keys=True)
        f.write("\n")
    print("wrote", path)

def main():
    with tempfile.TemporaryDirectory() as tmp:
        src_p, src = start(tmp, "src", [])
        dst_p, dst = start(tmp, "dst", ["-incoming", "defer"])
        try:
            out = {"qemu": src.cmd("query-version")["return"]["qemu"]}
            out["dst-status-before"] = dst.cmd("query-status")["return"]["status"]
            out["query-migrate-before"] = src.cmd("query-migrate")["return"]
            params = src.cmd("query-migrate-parameters")["return"]
            out["default-parameters"] = {k: params[k] for k in ("max-bandwidth", "downtime-limit")}
            for q in (src, dst):
                q.cmd("migrate-set-capabilities",
                      capabilities=[{"capability": "events", "state": True}])
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
            s.close()
            uri = "tcp:127.0.0.1:%d" % port
            out["migrate-incoming"] = dst.cmd("migrate-incoming", uri=uri)
            # Slow enough to see "active" and a pass or two.
            src.cmd("migrate-set-parameters", **{"max-bandwidth": 32 << 20})
            out["migrate"] = src.cmd("migrate", uri=uri)
            active = src.cmd("query-migrate")["return"]
            out["query-migrate-active-keys"] = sorted(active)
            out["query-migrate-active-ram-keys"] = sorted(active.get("ram", {}))
            src.wait_event(lambda e: e["event"] == "MIGRATION" and
                           e["data"]["status"] in ("completed", "failed"))
            dst.wait_event(lambda e: e["event"] == "MIGRATION" and
                           e["data"]["status"] in ("completed", "failed"))
            time.sleep(0.5)
            done = src.cmd("query-migrate")["return"]
            out["query-migrate-completed-keys"] = sorted(done)
            out["query-migrate-completed-status"] = done["status"]
            out["src-status-after"] = src.cmd("query-status")["return"]["status"]
            out["dst-status-after"] = dst.cmd("query-status")["return"]["status"]
            keep = ("MIGRATION", "MIGRATION_PASS", "STOP", "RESUME")
            out["src-events"] = [shape(e) for e in src.events if e["event"] in keep]
            out["dst-events"] = [shape(e) for e in dst.events if e["event"] in keep]
            out["cancel-idle"] = src.cmd("migrate_cancel")
            out["migrate-incoming-again"] = dst.cmd("migrate-incoming", uri=uri)
        finally:
            for p in (src_p, dst_p):
                p.kill()
                p.wait()
    write_golden(OUT, out)


if __name__ == "__main__":
    main()
