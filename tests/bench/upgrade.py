#!/usr/bin/env python3
"""Live-upgrade benchmark: vmmd's daemon-upgrade against what a QEMU 7.2 user
does to move running guests onto a new binary, a local migration of each
QEMU process into a new one over a UNIX socket.

The guest is tests/guests/migrate.elf (32 MiB; QEMU boots it through its PVH
note): it rewrites one byte of each page from 4 to 12 MiB pass after pass and
checks them, printing "migrate: pass N ... ok" every 16 passes. Two kinds of
guest RAM, each with the best setting either VMM has for it:

  anon    anonymous RAM: copied. vmmd: the default; QEMU: -m 32.
  shared  RAM that outlives the process: not copied. vmmd: "mem_backend":
          "memfd" (the memfd goes to the new daemon by fd); QEMU: a shared
          memory-backend-file in /dev/shm on both sides and the
          x-ignore-shared capability (QEMU's own recipe for local upgrades).

Each round, per VMM and kind: boot --vms guests, wait for pass 32 on all,
then upgrade. vmmd: one daemon-upgrade of the daemon (the same executable
started again). QEMU: per guest, in turn, a new process with -incoming defer,
migrate-incoming and migrate over a UNIX socket, max-bandwidth 1 TiB/s as
vmmd's upgrade sets it, downtime-limit the same on both (QEMU's default,
300 ms, unless --downtime-limit). Then every guest must print a later pass
and no "BAD page" from its new process.

Reported, median over rounds: downtime_ms and total_ms per guest (vmmd: the
daemon-upgrade answer, which its migration measures; QEMU: query-migrate),
and wall_ms for all guests (vmmd: the daemon-upgrade command; QEMU: from
starting the first new process to the last completed migration). Nothing
here asserts a speed. Needs root, KVM and QEMU.

Usage: tests/bench/upgrade.py [--build DIR] [--rounds N] [--vms N]
           [--kinds anon,shared] [--downtime-limit MS]
Output: "BENCH {json}" lines in the harness's contract (tests/bench/README:
downtime and wall time per kind, samples per round for both VMMs), then a
table with ratios. tests/bench/run runs it in figure 10 (upgrade.sh).
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

TOP = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
sys.path.insert(0, os.path.join(TOP, "tests", "lib"))
from vmmdtest import QMP, wait_for  # noqa: E402

QEMU = "qemu-system-x86_64"
CPU_VMMD = "host,-cx16,-xsave"
CPU_QEMU = "host,-cx16,-xsave,-arch-capabilities"
PASS = re.compile(r"migrate: pass (\d+) nonce (0x[0-9a-f]+) ok")
BANDWIDTH = 1 << 40  # what daemon/upgrade.c sets for its memory-to-memory moves


def read(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def last_pass(path):
    p = [int(m.group(1)) for m in PASS.finditer(read(path))]
    return p[-1] if p else 0


def moved_on(path, before):
    """The guest went on in its new process: a later pass, no bad page."""
    ok = wait_for(lambda: last_pass(path) > before, 120, what="a pass after the upgrade")
    return bool(ok) and "BAD" not in read(path)


def vmmd_round(build, guest, kind, n, params, tmp):
    sock = os.path.join(tmp, "sock")
    run = os.path.join(tmp, "run")
    proc = subprocess.Popen([os.path.join(build, "vmmd"), "--socket", sock,
                             "--state-dir", os.path.join(tmp, "state"), "--run-dir", run],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    new_pid = None
    try:
        wait_for(lambda: os.path.exists(sock), 30, what=sock)
        q = QMP(sock, timeout=300)
        names = ["g%d" % i for i in range(n)]
        for name in names:
            vm = {"name": name, "vcpus": 1, "memory": "32M", "cpu": CPU_VMMD,
                  "boot": {"kernel": guest}, "start": True}
            if kind == "shared":
                vm["mem_backend"] = "memfd"
            q.ok("vm-create", vm)
        logs = {nm: os.path.join(run, "vms", nm + ".console") for nm in names}
        for nm in names:
            wait_for(lambda nm=nm: last_pass(logs[nm]) >= 32, 180, what="pass 32 of " + nm)
        before = {nm: last_pass(logs[nm]) for nm in names}
        t0 = time.monotonic()
        ans = q.ok("daemon-upgrade")
        wall = (time.monotonic() - t0) * 1000
        new_pid = ans["pid"]
        q.close()
        rows = {v["vm"]: v for v in ans["vms"]}
        ok = all(moved_on(logs[nm], before[nm]) for nm in names)
        return {"downtime_ms": median([rows[nm]["downtime"] for nm in names]),
                "total_ms": median([rows[nm]["total-time"] for nm in names]),
                "wall_ms": round(wall, 1), "guest_ok": ok}
    finally:
        for pid in (proc.pid, new_pid):
            if pid:
                try:
                    os.kill(pid, 15)
                except OSError:
                    pass
        proc.wait()
        if new_pid:
            wait_for(lambda: not os.path.exists("/proc/%d" % new_pid), 30,
                     what="the new daemon to stop")


def qemu_cmd(guest, tmp, name, side, kind, mem):
    log = os.path.join(tmp, "%s-%s.log" % (name, side))
    sock = os.path.join(tmp, "%s-%s.qmp" % (name, side))
    cmd = [QEMU, "-accel", "kvm", "-M", "pc", "-cpu", CPU_QEMU, "-smp", "1", "-nodefaults",
           "-no-user-config", "-display", "none", "-serial", "file:" + log, "-kernel", guest,
           "-qmp", "unix:%s,server=on,wait=off" % sock]
    if kind == "shared":
        cmd += ["-m", "32", "-object",
                "memory-backend-file,id=ram,size=32M,mem-path=%s,share=on" % mem,
                "-machine", "memory-backend=ram"]
    else:
        cmd += ["-m", "32"]
    if side == "b":
        cmd += ["-incoming", "defer"]
    return cmd, log, sock


def qemu_caps(q, kind):
    caps = [{"capability": "events", "state": True}]
    if kind == "shared":
        caps.append({"capability": "x-ignore-shared", "state": True})
    q.ok("migrate-set-capabilities", {"capabilities": caps})


def qemu_round(guest, kind, n, params, tmp):
    procs = []
    try:
        src = {}
        for i in range(n):
            name = "g%d" % i
            mem = "/dev/shm/vmmd-bench-upgrade-%d-%d" % (os.getpid(), i)
            cmd, log, sock = qemu_cmd(guest, tmp, name, "a", kind, mem)
            procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL))
            wait_for(lambda: os.path.exists(sock), 30, what=sock)
            src[name] = (QMP(sock), log, mem)
        for name, (q, log, _) in src.items():
            wait_for(lambda log=log: last_pass(log) >= 32, 180, what="QEMU pass 32 of " + name)
        before = {name: last_pass(log) for name, (_, log, _) in src.items()}
        down, total, new_logs = [], [], {}
        t0 = time.monotonic()
        for name, (qa, _, mem) in src.items():
            cmd, log, sock = qemu_cmd(guest, tmp, name, "b", kind, mem)
            procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL))
            wait_for(lambda sock=sock: os.path.exists(sock), 30, what=sock)
            qb = QMP(sock)
            qemu_caps(qa, kind)
            qemu_caps(qb, kind)
            uri = "unix:" + os.path.join(tmp, name + ".mig")
            qb.ok("migrate-incoming", {"uri": uri})
            qa.ok("migrate-set-parameters", params)
            qa.ok("migrate", {"uri": uri})
            deadline = time.monotonic() + 300
            while True:
                info = qa.ok("query-migrate")
                if info.get("status") in ("completed", "failed", "cancelled"):
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError("QEMU migration did not end in 300 s")
                time.sleep(0.005)
            if info["status"] != "completed":
                raise RuntimeError("QEMU migration %s: %s" % (info["status"],
                                                              info.get("error-desc")))
            wait_for(lambda: qb.ok("query-status")["status"] == "running", 30,
                     what="the new QEMU to run")
            down.append(info["downtime"])
            total.append(info["total-time"])
            new_logs[name] = log
        wall = (time.monotonic() - t0) * 1000
        ok = all(moved_on(new_logs[nm], before[nm]) for nm in src)
        return {"downtime_ms": median(down), "total_ms": median(total),
                "wall_ms": round(wall, 1), "guest_ok": ok}
    finally:
        for p in procs:
            p.kill()
            p.wait()
        for i in range(n):
            try:
                os.unlink("/dev/shm/vmmd-bench-upgrade-%d-%d" % (os.getpid(), i))
            except OSError:
                pass


def median(v):
    v = sorted(v)
    return v[len(v) // 2] if len(v) % 2 else (v[len(v) // 2 - 1] + v[len(v) // 2]) / 2


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default=os.environ.get("top_builddir") or
                    os.path.join(TOP, "build"))
    ap.add_argument("--rounds", type=int, default=int(os.environ.get("BENCH_ROUNDS") or 3))
    ap.add_argument("--vms", type=int, default=2)
    ap.add_argument("--kinds", default="anon,shared")
    ap.add_argument("--downtime-limit", type=int, default=300)
    a = ap.parse_args()
    guest = os.path.join(a.build, "tests", "guests", "migrate.elf")
    if os.geteuid() != 0 or not shutil.which(QEMU) or not os.path.exists(guest):
        why = "needs root, %s and %s (make)" % (QEMU, guest)
        print("BENCH " + json.dumps({"figure": "upgrade", "skipped": why}))
        sys.exit(77)
    params = {"max-bandwidth": BANDWIDTH, "downtime-limit": a.downtime_limit}
    kinds = a.kinds.split(",")
    results = {(vmm, k): [] for vmm in ("vmmd", "qemu") for k in kinds}
    loads = []
    for r in range(a.rounds):
        loads.append(os.getloadavg()[0])
        for kind in kinds:
            # Alternate which VMM goes first, so a noisy moment flatters neither.
            for vmm in (("vmmd", "qemu") if r % 2 == 0 else ("qemu", "vmmd")):
                with tempfile.TemporaryDirectory(prefix="vmmd-bench-upg.") as tmp:
                    row = (vmmd_round(a.build, guest, kind, a.vms, params, tmp)
                           if vmm == "vmmd" else qemu_round(guest, kind, a.vms, params, tmp))
                results[(vmm, kind)].append(row)
                print("round %d %-6s %-4s %s" % (r + 1, kind, vmm, json.dumps(row)),
                      flush=True)
    keys = ("downtime_ms", "total_ms", "wall_ms")
    what = {"downtime_ms": "downtime per guest", "wall_ms": "wall time for all guests"}
    for kind in kinds:
        for k, title in what.items():
            line = {"figure": "upgrade-%s-%s" % (kind, k[:-3]), "unit": "ms", "load": loads,
                    "title": "live upgrade, %d guests, %s RAM: %s (daemon-upgrade / "
                             "QEMU local migration per process)" % (a.vms, kind, title)}
            for vmm in ("vmmd", "qemu"):
                rows = results[(vmm, kind)]
                line[vmm] = [x[k] for x in rows]
                if not all(x["guest_ok"] for x in rows):
                    line[vmm] = []
                    line[vmm + "_skipped"] = "a guest did not run on after the upgrade"
            print("BENCH " + json.dumps(line), flush=True)
    summary = {}
    for (vmm, kind), rows in results.items():
        s = {k: median([x[k] for x in rows]) for k in keys}
        s["guest_ok"] = all(x["guest_ok"] for x in rows)
        summary[(vmm, kind)] = s
        print("median " + json.dumps({"vmm": vmm, "kind": kind, "vms": a.vms,
                                      "rounds": len(rows), **s}))
    print("%-8s %-12s %10s %10s %8s" % ("kind", "median", "vmmd", "qemu", "ratio"))
    for kind in kinds:
        v, q = summary[("vmmd", kind)], summary[("qemu", kind)]
        for k in keys:
            print("%-8s %-12s %10s %10s %8s" % (kind, k, v[k], q[k],
                                               "%.2f" % (v[k] / q[k]) if q[k] else "-"))
        print("%-8s %-12s %10s %10s" % (kind, "guest_ok", v["guest_ok"], q["guest_ok"]))


main()
