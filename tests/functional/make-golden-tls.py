#!/usr/bin/env python3
"""Record QEMU 7.2's shapes for TLS migration as a golden trace
(tests/functional/golden/migration-tls.json) for test-migration-tls.py:
object-add tls-creds-x509 (good, duplicate id, missing dir, bad endpoint),
object-del, migrate-set-parameters tls-creds/tls-hostname and
query-migrate-parameters' TLS keys, a migration whose source trusts
another CA (the error-desc), one with credentials that do not exist, and a
good one (events). Certificates come from tests/lib/tlscerts.py (certtool).

Usage: tests/functional/make-golden-tls.py [QEMU]"""

import json
import os
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
import tlscerts  # noqa: E402

QEMU = sys.argv[1] if len(sys.argv) > 1 else "qemu-system-x86_64"
OUT = os.path.join(HERE, "golden", "migration-tls.json")


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
        self.cmd("migrate-set-capabilities",
                 capabilities=[{"capability": "events", "state": True}])

    def cmd(self, name, **args):
        self.s.sendall(json.dumps({"execute": name, "arguments": args}).encode() + b"\n")
        while True:
            m = json.loads(self.f.readline())
            if "event" in m:
                self.events.append(m)
            elif "return" in m or "error" in m:
                return m


class mig:
    @staticmethod
    def start(tmp, name, extra):
        path = os.path.join(tmp, name + ".qmp")
        p = subprocess.Popen([QEMU, "-machine", "pc,accel=kvm", "-cpu", "qemu64,-cx16", "-m",
                              "64", "-nodefaults", "-display", "none", "-qmp",
                              "unix:%s,server=on,wait=off" % path] + extra,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return p, Qmp(path)

    @staticmethod
    def shape(e):
        return {"event": e["event"], "data": e.get("data", {})}


def strip(r):
    """A reply without QEMU's id; errors keep class and desc."""
    return {k: v for k, v in r.items() if k != "id"}


def creds(q, ident, d, endpoint):
    return q.cmd("object-add", **{"qom-type": "tls-creds-x509", "id": ident, "dir": d,
                                   "endpoint": endpoint})


def migrate(src, dst, port, tmp):
    dst.cmd("migrate-incoming", uri="tcp:127.0.0.1:%d" % port)
    src.events.clear()
    src.cmd("migrate", uri="tcp:127.0.0.1:%d" % port)
    for _ in range(600):
        info = src.cmd("query-migrate")["return"]
        if info.get("status") in ("completed", "failed"):
            return info["status"], info.get("error-desc")
        time.sleep(0.1)
    raise TimeoutError


def main():
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        good, wrong = tlscerts.make_all(tmp, "localhost", "127.0.0.1")
        src_p, src = mig.start(tmp, "src", [])
        dst_p, dst = mig.start(tmp, "dst", ["-incoming", "defer"])
        try:
            out["qemu"] = src.cmd("query-version")["return"]["qemu"]
            out["object-add"] = strip(creds(dst, "tls0", good, "server"))
            out["object-add-duplicate"] = strip(creds(dst, "tls0", good, "server"))
            r = strip(creds(dst, "tlsx", os.path.join(tmp, "nonexistent"), "server"))
            r["error"]["desc"] = r["error"]["desc"].replace(tmp, "TMP")
            out["object-add-missing-dir"] = r
            out["object-add-bad-endpoint"] = strip(creds(dst, "tlsy", good, "middle"))
            out["object-del-unknown"] = strip(dst.cmd("object-del", id="nosuch"))
            params = src.cmd("query-migrate-parameters")["return"]
            out["default-parameters"] = {k: params.get(k) for k in ("tls-creds", "tls-hostname")}
            out["set-tls-creds"] = strip(dst.cmd("migrate-set-parameters", **{"tls-creds": "tls0"}))
            # The source trusts another CA: the handshake fails on the source.
            creds(src, "bad", wrong, "client")
            out["set-tls-hostname"] = strip(src.cmd("migrate-set-parameters", **{
                "tls-creds": "bad", "tls-hostname": "localhost"}))
            params = src.cmd("query-migrate-parameters")["return"]
            out["parameters-after"] = {k: params.get(k) for k in ("tls-creds", "tls-hostname")}
            status, desc = migrate(src, dst, 4461, tmp)
            out["wrong-ca"] = {"status": status, "error-desc": desc,
                               "src-status": src.cmd("query-status")["return"]["status"]}
        finally:
            for p in (src_p, dst_p):
                p.kill()
                p.wait()
        # Credentials that do not exist (a fresh pair: the destination above has failed).
        src_p, src = mig.start(tmp, "src2", [])
        dst_p, dst = mig.start(tmp, "dst2", ["-incoming", "defer"])
        try:
            creds(dst, "tls0", good, "server")
            dst.cmd("migrate-set-parameters", **{"tls-creds": "tls0"})
            src.cmd("migrate-set-parameters", **{"tls-creds": "nosuch"})
            status, desc = migrate(src, dst, 4462, tmp)
            out["unknown-creds"] = {"status": status, "error-desc": desc}
        finally:
            for p in (src_p, dst_p):
                p.kill()
                p.wait()
        src_p, src = mig.start(tmp, "src3", [])
        dst_p, dst = mig.start(tmp, "dst3", ["-incoming", "defer"])
        try:
            creds(dst, "tls0", good, "server")
            creds(src, "tls0", good, "client")
            dst.cmd("migrate-set-parameters", **{"tls-creds": "tls0"})
            src.cmd("migrate-set-parameters", **{"tls-creds": "tls0", "tls-hostname": "localhost"})
            status, desc = migrate(src, dst, 4463, tmp)
            out["good"] = {"status": status,
                           "events": [mig.shape(e) for e in src.events
                                      if e["event"] == "MIGRATION"]}
            out["object-del-in-use"] = strip(src.cmd("object-del", id="tls0"))
        finally:
            for p in (src_p, dst_p):
                p.kill()
                p.wait()
    with open(OUT, "w") as f:
        json.dump(out, f, indent=1, sort_keys=True)
        f.write("\n")
    print("wrote", OUT)


if __name__ == "__main__":
    main()
