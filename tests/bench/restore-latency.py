#!/usr/bin/env python3
"""vm-restore latency alone, by RAM size: the idle test guest (it touches
almost no RAM, so the saved memory file is sparse and quick to write) is
saved once per size, then restored --rounds times (restore, destroy); the
time from sending vm-restore to its reply (sent once the vCPUs run) is
reported as min, median and max. Complements tests/bench/vmstate.py, whose
memtouch guest makes every page dirty (minutes at 4G) and which runs one
round per size. Nothing is asserted.

--mem-backend memfd|hugepages restores shared RAM (populated through
userfaultfd, or copied where the daemon has none); --guest memtouch saves
a guest that wrote every page from 16 MiB up, so the memory file is all
data (what a copy would have to read).

    tests/bench/restore-latency.py [--build DIR] [--sizes 64M,512M,4G] [--rounds N]
                                   [--mem-backend anonymous|memfd|hugepages]
                                   [--guest idle|memtouch]
"""

import argparse
import json
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(HERE, "..", "..", "build"))
    ap.add_argument("--sizes", default="64M,512M,4G")
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--tmp", default="/var/tmp")
    ap.add_argument("--mem-backend", default="anonymous",
                    choices=["anonymous", "memfd", "hugepages"])
    ap.add_argument("--guest", default="idle", choices=["idle", "memtouch"])
    a = ap.parse_args()
    os.environ["top_builddir"] = os.path.abspath(a.build)
    os.environ["top_srcdir"] = os.path.abspath(os.path.join(HERE, "..", ".."))
    sys.path.insert(0, os.path.join(HERE, "..", "lib"))
    sys.path.insert(0, os.path.join(HERE, "..", "functional"))
    from vmmdtest import Vmmd  # noqa: E402
    from daemon_helpers import TEST_CPU, guest, wait_console  # noqa: E402

    rows = []
    with tempfile.TemporaryDirectory(prefix="restore-lat.", dir=a.tmp) as tmp, Vmmd() as d:
        q = d.qmp()
        for size in a.sizes.split(","):
            name = "r" + size
            q.ok("vm-create", {"name": name, "vcpus": 1, "memory": size, "cpu": TEST_CPU,
                               "mem_backend": a.mem_backend, "start": True,
                               "boot": {"kernel": guest(a.guest)}})
            wait_console(d, name, "idle: up" if a.guest == "idle" else "memtouch: pass 2",
                         timeout=600)
            snap = os.path.join(tmp, name)
            q.ok("vm-save", vm=name, path=snap, stop=True)
            q.event("VM_SAVE_COMPLETED", timeout=600)
            q.event("SHUTDOWN", timeout=60)
            ts = []
            for _ in range(a.rounds):
                t0 = time.monotonic()
                q.ok("vm-restore", path=snap)
                ts.append((time.monotonic() - t0) * 1000)
                q.ok("vm-destroy", vm=name)
            q.ok("vm-delete", vm=name)
            ts.sort()
            row = {"figure": "restore-latency", "size": size, "rounds": a.rounds,
                   "mem_backend": a.mem_backend, "guest": a.guest,
                   "min_ms": round(ts[0], 2), "median_ms": round(ts[len(ts) // 2], 2),
                   "max_ms": round(ts[-1], 2), "load": os.getloadavg()[0]}
            print("BENCH " + json.dumps(row), flush=True)
            rows.append(row)
    print("\nsize   rounds   min ms  median ms   max ms   load")
    for r in rows:
        print("%-6s %6d %8.2f %10.2f %8.2f %6.1f" % (r["size"], r["rounds"], r["min_ms"],
                                                    r["median_ms"], r["max_ms"], r["load"]))


if __name__ == "__main__":
    main()
