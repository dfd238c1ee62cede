#!/usr/bin/env python3
"""An unmodified QMP client library written for QEMU talks to vmmd.

Debian has no QMP client package and QEMU's python 'qemu.qmp' is not
installable here, so this uses the npm package node-qemu (its QMPClient:
greeting, qmp_capabilities, execute, typed errors, events), installed into
the build tree on first use. Skips when node/npm or the registry is missing.
On the main socket: negotiation, commands, errors with their QMP class. On a
per-VM socket (needs KVM and a test guest): the lifecycle commands as on
QEMU and the STOP/RESUME/SHUTDOWN events."""

import json
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vmmdtest import TOP_BUILDDIR, Skip, Vmmd, main, skip  # noqa: E402
from daemon_helpers import guest, vm_def  # noqa: E402

PACKAGE = "node-qemu@1.3.0"
PREFIX = os.path.abspath(os.path.join(TOP_BUILDDIR, "tests", "npm"))


def library():
    if not shutil.which("node") or not shutil.which("npm"):
        skip("node and npm are needed for the QMP client library test")
    mod = os.path.join(PREFIX, "node_modules", "node-qemu")
    if not os.path.exists(os.path.join(mod, "package.json")):
        os.makedirs(PREFIX, exist_ok=True)
        p = subprocess.run(["npm", "install", "--prefix", PREFIX, "--no-audit", "--no-fund",
                            "--no-save", PACKAGE], capture_output=True, text=True, timeout=300)
        if p.returncode != 0:
            skip("cannot install %s from npm: %s" % (PACKAGE, p.stderr.strip()[-300:]))
    return mod


SCRIPT = r"""
const { QMPClient } = await import(process.argv[2]);
const socketPath = process.argv[3];
const steps = JSON.parse(process.argv[4]);
const out = { events: [] };
const c = new QMPClient({ socketPath });
c.on("rawEvent", (e) => out.events.push(e));
await c.connect();
out.results = [];
for (const [cmd, args] of steps) {
  try {
    out.results.push({ ok: await c.execute(cmd, args ?? undefined) });
  } catch (e) {
    out.results.push({ err: { name: e.name, qmpClass: e.qmpClass, desc: e.description } });
  }
}
await new Promise((r) => setTimeout(r, 300));
await c.close();
console.log(JSON.stringify(out));
"""


def run(mod, sock, steps):
    script = os.path.join(PREFIX, "steps.mjs")
    with open(script, "w") as f:
        f.write(SCRIPT)
    entry = os.path.join(mod, "dist", "index.mjs")
    p = subprocess.run(["node", script, entry, sock, json.dumps(steps)], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_main_socket():
    mod = library()
    with Vmmd() as d:
        out = run(mod, d.socket, [
            ["query-version", None],
            ["query-vms", None],
            ["vm-create", {"name": "lib1", "memory": "32M",
                           "boot": {"kernel": "/nonexistent/vmlinuz"}}],
            ["query-status", {"vm": "lib1"}],
            ["query-status", {"vm": "nope"}],
            ["no-such-command", None],
            ["vm-create", {"name": "lib1"}],
            ["vm-delete", {"vm": "lib1"}],
        ])
        r = out["results"]
        assert r[0]["ok"]["package"].startswith("vmmd-"), r[0]
        assert r[1] == {"ok": []}, r[1]
        assert r[2]["ok"]["name"] == "lib1", r[2]
        assert r[3] == {"ok": {"running": False, "singlestep": False, "status": "shutdown"}}
        assert r[4]["err"]["qmpClass"] == "DeviceNotFound", r[4]
        assert r[5]["err"]["qmpClass"] == "CommandNotFound", r[5]
        assert r[6]["err"]["qmpClass"] == "GenericError", r[6]
        assert r[7] == {"ok": {}}, r[7]


def test_per_vm_socket_like_qemu():
    mod = library()
    try:
        kernel = guest("idle")
    except Skip:
        kernel = guest("hello")
    with Vmmd() as d:
        q = d.qmp()
        info = q.ok("vm-create", dict(vm_def("libvm", kernel), start=True))
        sock = info["qmp-socket"]
        out = run(mod, sock, [
            ["query-status", None],
            ["stop", None],
            ["query-status", None],
            ["cont", None],
            ["query-vms", None],
            ["quit", None],
        ])
        r = out["results"]
        assert r[0]["ok"]["status"] in ("running", "shutdown"), r[0]
        if r[0]["ok"]["status"] == "running":
            assert r[1] == {"ok": {}} and r[2]["ok"]["status"] == "paused", r
            names = [e["event"] for e in out["events"]]
            assert "STOP" in names and "RESUME" in names, names
            # QEMU's shape on a VM's own socket: no "vm" (and no empty "data")
            assert all("vm" not in e.get("data", {}) for e in out["events"]), out
        # Daemon commands do not exist here: vmmd looks like one QEMU.
        assert r[4]["err"]["qmpClass"] == "CommandNotFound", r[4]
        assert q.ok("query-status", vm="libvm")["status"] == "shutdown"
        assert not os.path.exists(sock)


if __name__ == "__main__":
    main(globals())
