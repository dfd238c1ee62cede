#!/usr/bin/env python3
"""Live migration benchmark: vmmd against QEMU 7.2 migrating the same guest
over the same link: two network namespaces joined by a veth pair
(tests/lib/two-hosts.sh), tcp on the private /30, optionally shaped with
--rate (tc tbf on the source side).

The guest is tests/guests/migrate.elf (QEMU boots it through its PVH note):
it rewrites one byte of each page from 4 to 12 MiB pass after pass and
checks them, printing "migrate: pass N ... ok" every 16 passes. Each round,
per VMM: boot a source and an incoming destination (vmmd: a VM with
"incoming": true; QEMU: -incoming defer, capability events), wait for pass
32, set max-bandwidth and downtime-limit (the same for both), migrate, poll
query-migrate until completed, then check the destination prints a later
pass and no "BAD page".

Reported, median over rounds: total_ms and downtime_ms (query-migrate's
total-time and downtime), setup_ms, transferred_mib, passes (dirty-sync-
count). Nothing here asserts a speed. Needs root, iproute2, KVM, QEMU.

--xbzrle turns the xbzrle capability on at both sources (each with its
default 64 MiB cache). A migration not completed after --timeout seconds
is cancelled and counted as not converged: that VMM's figures are then
left out with the reason ("did not converge ...").

Usage: tests/bench/migration.py [--build DIR] [--rounds N]
           [--max-bandwidth BYTES] [--downtime-limit MS] [--rate 1gbit]
           [--xbzrle] [--timeout S]
Output: "BENCH {json}" lines in the harness's contract (tests/bench/README:
downtime, total time, RAM transferred; samples per round for both VMMs),
then a table. tests/bench/run runs it as figure 10 (tests/bench/migration.sh).
"""

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

TOP = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
sys.path.insert(0, os.path.join(TOP, "tests", "lib"))
from vmmdtest import QMP, wait_for  # noqa: E402

HOSTS = os.path.join(TOP, "tests", "lib", "two-hosts.sh")
QEMU = "qemu-system-x86_64"
CPU_VMMD = "host,-cx16,-xsave"
CPU_QEMU = "host,-cx16,-xsave,-arch-capabilities"
PASS = re.compile(r"migrate: pass (\d+) nonce (0x[0-9a-f]+) ok")


def read(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def last_pass(path):
    p = [int(m.group(1)) for m in PASS.finditer(read(path))]
    return p[-1] if p else 0


def wait_qmp(path):
    """A QMP connection to @path once it listens (the socket file appears before listen)."""
    wait_for(lambda: os.path.exists(path), 30, what=path)
    deadline = time.monotonic() + 30
    while True:
        try:
            return QMP(path)
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def finish(q, vm, timeout):
    """Poll query-migrate (source) until it ends; its final answer. After
    @timeout seconds cancel it: None (it did not converge)."""
    args = {"vm": vm} if vm else {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = q.ok("query-migrate", args)
        if info.get("status") in ("completed", "failed", "cancelled"):
            return info
        time.sleep(0.02)
    q.ok("migrate_cancel", args)
    wait_for(lambda: q.ok("query-migrate", args).get("status") in ("cancelled", "completed"),
             60, what="the migration to be cancelled")
    return None


def row(info, after_ok):
    if info is None:
        return {"converged": False, "guest_ok": True}
    if info.get("status") != "completed":
        raise RuntimeError("migration %s: %s" % (info.get("status"), info.get("error-desc")))
    ram = info["ram"]
    return {"total_ms": info["total-time"], "downtime_ms": info["downtime"],
            "setup_ms": info.get("setup-time", 0),
            "transferred_mib": round(ram["transferred"] / 1048576.0, 2),
            "passes": ram["dirty-sync-count"], "guest_ok": after_ok, "converged": True}


def vmmd_round(build, guest, ns, addr, port, params, xbzrle, timeout, tmp):
    procs = []
    try:
        qs = []
        for side, n in (("a", ns[0]), ("b", ns[1])):
            d = os.path.join(tmp, "vmmd-" + side)
            os.makedirs(d)
            procs.append(subprocess.Popen(
                ["ip", "netns", "exec", n, os.path.join(build, "vmmd"), "--socket",
                 os.path.join(d, "sock"), "--state-dir", os.path.join(d, "state"),
                 "--run-dir", os.path.join(d, "run")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            qs.append(wait_qmp(os.path.join(d, "sock")))
        vm = {"name": "m", "vcpus": 1, "memory": "32M", "cpu": CPU_VMMD,
              "boot": {"kernel": guest}}
        qs[0].ok("vm-create", dict(vm, start=True))
        src_log = os.path.join(tmp, "vmmd-a", "run", "vms", "m.console")
        dst_log = os.path.join(tmp, "vmmd-b", "run", "vms", "m.console")
        wait_for(lambda: last_pass(src_log) >= 32, 120, what="vmmd guest pass 32")
        qs[1].ok("vm-create", dict(vm, incoming=True, start=True))
        uri = "tcp:%s:%d" % (addr, port)
        qs[1].ok("migrate-incoming", {"vm": "m", "uri": uri})
        qs[0].ok("migrate-set-parameters", dict(params, vm="m"))
        qs[0].ok("migrate-set-capabilities", {"vm": "m", "capabilities": [
            {"capability": "xbzrle", "state": xbzrle}]})
        qs[0].ok("migrate", {"vm": "m", "uri": uri})
        info = finish(qs[0], "m", timeout)
        before = last_pass(src_log)
        ok = info and info.get("status") == "completed" and wait_for(
            lambda: last_pass(dst_log) > before, 60, what="vmmd guest on the destination")
        return row(info, bool(ok) and "BAD" not in read(dst_log))
    finally:
        for p in procs:
            p.terminate()
            p.wait()


def qemu_round(guest, ns, addr, port, params, xbzrle, timeout, tmp):
    procs = []
    try:
        qs = []
        for side, n in (("a", ns[0]), ("b", ns[1])):
            sock = os.path.join(tmp, "qemu-%s.qmp" % side)
            extra = ["-incoming", "defer"] if side == "b" else []
            procs.append(subprocess.Popen(
                ["ip", "netns", "exec", n, QEMU, "-accel", "kvm", "-M", "pc", "-cpu", CPU_QEMU,
                 "-m", "32", "-smp", "1", "-nodefaults", "-no-user-config", "-display", "none",
                 "-serial", "file:" + os.path.join(tmp, "qemu-%s.log" % side),
                 "-kernel", guest, "-qmp", "unix:%s,server=on,wait=off" % sock] + extra,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            qs.append(wait_qmp(sock))
        for q in qs:
            q.ok("migrate-set-capabilities",
                 {"capabilities": [{"capability": "events", "state": True},
                                   {"capability": "xbzrle", "state": xbzrle}]})
        src_log, dst_log = (os.path.join(tmp, "qemu-a.log"), os.path.join(tmp, "qemu-b.log"))
        wait_for(lambda: last_pass(src_log) >= 32, 120, what="QEMU guest pass 32")
        uri = "tcp:%s:%d" % (addr, port)
        qs[1].ok("migrate-incoming", {"uri": uri})
        qs[0].ok("migrate-set-parameters", params)
        qs[0].ok("migrate", {"uri": uri})
        info = finish(qs[0], None, timeout)
        before = last_pass(src_log)
        ok = info and info.get("status") == "completed" and wait_for(
            lambda: last_pass(dst_log) > before, 60, what="QEMU guest on the destination")
        return row(info, bool(ok) and "BAD" not in read(dst_log))
    finally:
        for p in procs:
            p.kill()
            p.wait()


def median(v):
    v = sorted(v)
    return v[len(v) // 2] if len(v) % 2 else (v[len(v) // 2 - 1] + v[len(v) // 2]) / 2


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default=os.environ.get("top_builddir") or
                    os.path.join(TOP, "build"))
    ap.add_argument("--rounds", type=int, default=int(os.environ.get("BENCH_ROUNDS") or 3))
    ap.add_argument("--max-bandwidth", type=int, default=8 << 30)
    ap.add_argument("--downtime-limit", type=int, default=2000)
    ap.add_argument("--rate", help="shape the link (tc tbf rate, e.g. 1gbit)")
    ap.add_argument("--xbzrle", action="store_true", help="both sources use xbzrle")
    ap.add_argument("--timeout", type=int, default=600,
                    help="cancel a migration not completed after this many seconds")
    a = ap.parse_args()
    guest = os.path.join(a.build, "tests", "guests", "migrate.elf")
    if os.geteuid() != 0 or not shutil.which(QEMU) or not os.path.exists(guest):
        why = "needs root, %s and %s (make)" % (QEMU, guest)
        print("BENCH " + json.dumps({"figure": "downtime", "skipped": why}))
        sys.exit(77)
    params = {"max-bandwidth": a.max_bandwidth, "downtime-limit": a.downtime_limit}
    name = "vmmdbench%d" % (os.getpid() % 10000)
    net = "10.233.%d" % (os.getpid() % 250)
    subprocess.run(["sh", HOSTS, "up", name, net], check=True)
    results = {"vmmd": [], "qemu": []}
    loads = []
    try:
        if a.rate:
            subprocess.run(["sh", HOSTS, "shape", name, a.rate], check=True)
        ns = (name + "-a", name + "-b")
        for r in range(a.rounds):
            with open("/proc/loadavg") as f:
                loads.append(float(f.read().split()[0]))
            order = ("vmmd", "qemu") if r % 2 == 0 else ("qemu", "vmmd")
            for vmm in order:
                with tempfile.TemporaryDirectory(prefix="vmmd-bench-mig.") as tmp:
                    port = 5000 + r * 2 + (vmm == "qemu")
                    if vmm == "vmmd":
                        results[vmm].append(vmmd_round(a.build, guest, ns, net + ".2", port,
                                                       params, a.xbzrle, a.timeout, tmp))
                    else:
                        results[vmm].append(qemu_round(guest, ns, net + ".2", port, params,
                                                       a.xbzrle, a.timeout, tmp))
    finally:
        subprocess.run(["sh", HOSTS, "down", name], check=False)
    keys = ("total_ms", "downtime_ms", "setup_ms", "transferred_mib", "passes")
    link = "a veth pair between two network namespaces%s" % (
        ", shaped to %s" % a.rate if a.rate else "")
    titles = {"downtime_ms": "live migration downtime (query-migrate downtime)",
              "total_ms": "live migration total time (query-migrate total-time)",
              "transferred_mib": "live migration: RAM transferred"}
    for k, title in titles.items():
        line = {"figure": k.rsplit("_", 1)[0], "title": title,
                "unit": "MiB" if k.endswith("mib") else "ms", "load": loads,
                "note": "migrate.elf (rewrites 8 MiB), %s, max-bandwidth %d, downtime-limit %d%s"
                        % (link, a.max_bandwidth, a.downtime_limit,
                           ", xbzrle on both" if a.xbzrle else "")}
        for vmm, rows in results.items():
            line[vmm] = [x[k] for x in rows if x["converged"]]
            stuck = sum(not x["converged"] for x in rows)
            if not all(x["guest_ok"] for x in rows):
                line[vmm + "_skipped"] = "the guest's RAM check failed after a migration"
                line[vmm] = []
            elif stuck:
                line[vmm + "_skipped"] = "did not converge within %d s in %d of %d rounds" % (
                    a.timeout, stuck, len(rows))
                line[vmm] = []
        print("BENCH " + json.dumps(line), flush=True)
    summary = {}
    for vmm, rows in results.items():
        done = [x for x in rows if x["converged"]]
        summary[vmm] = {k: median([x[k] for x in done]) if len(done) == len(rows) else None
                        for k in keys}
        summary[vmm]["guest_ok"] = all(x["guest_ok"] for x in rows)
        summary[vmm]["rounds"] = len(rows)
    print("%-16s %10s %10s %8s" % ("median", "vmmd", "qemu", "ratio"))
    for k in keys:
        v, q = summary["vmmd"][k], summary["qemu"][k]
        print("%-16s %10s %10s %8s" % (k, "-" if v is None else v, "-" if q is None else q,
                                        "%.2f" % (v / q) if v is not None and q else "-"))
    print("%-16s %10s %10s" % ("guest_ok", summary["vmmd"]["guest_ok"],
                               summary["qemu"]["guest_ok"]))


main()
