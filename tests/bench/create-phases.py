#!/usr/bin/env python3
"""Where VM creation spends its time (issue 16): tests/bench/create-phases.py
[--vms N] [--rounds R] [--build DIR] [--guest ELF].

Starts a private vmmd with --log-level debug, has N clients (default 50)
send vm-create with "start": true at once (after a common barrier), waits
until every guest has written its first serial byte, and reads the
daemon's per-VM "setup ms:" debug lines (daemon/registry.c log_setup: the
definition file, the wait for a worker, vm_new with its phases, the wait
for the control thread, the per-VM socket, vm_start). Prints, per phase,
the median and the mean over all VMs and rounds, and the wall time of each
round. No timing is asserted anywhere: this is a measurement tool.
Results: tests/bench/README, "Where VM creation spends its time"."""

import argparse
import os
import re
import statistics
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
sys.path.insert(0, os.path.join(HERE, "..", "functional"))

LINE = re.compile(r"\[(\S+)\] setup ms: (.*)$")
ITEM = re.compile(r"([A-Za-z][\w -]*?) ([0-9.]+)(?: \([^)]*\))?$")


def parse(text):
    """{phase: ms} of one setup line's body."""
    out = {}
    m = re.match(r"(.*)build ([0-9.]+) \[(.*)\], (.*)$", text)
    if not m:
        return out
    head, build, inner, tail = m.groups()
    out["build (vm_new)"] = float(build)
    for part in (head.rstrip(", ").split(", ") if head.strip() else []):
        im = ITEM.match(part.strip())
        if im:
            out[im.group(1)] = float(im.group(2))
    for part in inner.replace(";", ",").split(", "):
        im = ITEM.match(part.strip())
        if im and im.group(1) != "total":
            out["  " + im.group(1)] = float(im.group(2))
    for part in tail.replace(";", ",").split(", "):
        im = ITEM.match(part.strip())
        if im:
            out[im.group(1)] = float(im.group(2))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vms", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--build", default=os.environ.get("top_builddir", "build"))
    ap.add_argument("--guest", help="guest ELF (default: the bench guest, else idle)")
    a = ap.parse_args()
    os.environ["top_builddir"] = os.path.abspath(a.build)
    from vmmdtest import QMP, Vmmd
    from daemon_helpers import guest, vm_def

    kernel = a.guest
    if not kernel:
        bench = os.path.join(a.build, "tests", "bench", "guest", "bench-guest.elf")
        kernel = os.path.abspath(bench) if os.path.exists(bench) else guest("idle")
    samples = {}
    order = []
    parsed = []
    walls = []
    for rnd in range(a.rounds):
        load = os.getloadavg()[0]
        with Vmmd(args=["--log-level", "debug"]) as d:
            barrier = threading.Barrier(a.vms + 1)
            errors = []

            def client(k):
                try:
                    c = QMP(d.socket, timeout=120)
                    barrier.wait()
                    c.ok("vm-create", dict(vm_def("c%d" % k, kernel), start=True))
                    c.close()
                except Exception as e:
                    errors.append(repr(e))

            ts = [threading.Thread(target=client, args=(k,)) for k in range(a.vms)]
            for t in ts:
                t.start()
            barrier.wait()
            t0 = time.monotonic()
            for t in ts:
                t.join()
            if errors:
                raise SystemExit("client error: %s" % errors[0])
            logs = os.path.join(d.run_dir, "vms")
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                up = sum(1 for k in range(a.vms)
                         if os.path.exists(os.path.join(logs, "c%d.console" % k)) and
                         os.path.getsize(os.path.join(logs, "c%d.console" % k)) > 0)
                if up == a.vms:
                    break
                time.sleep(0.002)
            wall = time.monotonic() - t0
            walls.append((wall, up, load))
            lines = [LINE.search(x) for x in d.read_log().splitlines()]
        for m in lines:
            if m:
                parsed.append(parse(m.group(2)))
    for p in parsed:
        for k in p:
            if k not in samples:
                samples[k] = []
                order.append(k)
    for p in parsed:
        # a phase under 0.05 ms is not named in its line (it is in "other"): 0 here
        for k in order:
            samples[k].append(p.get(k, 0.0))
    n = len(parsed)
    print("%d VMs at once, %d round(s), %d setup lines; ms per VM (phases of vm_new indented)" %
          (a.vms, a.rounds, n))
    print("%-28s %9s %9s %9s" % ("phase", "median", "mean", "max"))
    top = [k for k in order if not k.startswith("  ")]
    inner = [k for k in order if k.startswith("  ")]
    if "build (vm_new)" in top:
        i = top.index("build (vm_new)") + 1
        order = top[:i] + inner + top[i:]
    for k in order:
        v = samples[k]
        mean = sum(v) / len(v)
        print("%-28s %9.2f %9.2f %9.2f" % (k, statistics.median(v), mean, max(v)))
    for i, (wall, up, load) in enumerate(walls):
        print("round %d: %d/%d guests wrote their first byte %.2f s after the requests "
              "(%.1f VMs/s), load average %.1f at the start" %
              (i + 1, up, a.vms, wall, up / wall if wall else 0, load))


if __name__ == "__main__":
    main()
