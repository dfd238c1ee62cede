#!/usr/bin/env python3
"""Many VM lifecycles from many clients at once (issue 14, failure 8): after
16 clients x 16 create/start/stop/destroy/delete cycles, vmmd's threads, fds
and RSS are back at their baseline (RSS within 2 MiB: it rose ~3.5 MiB and
stayed before the freed heap was given back with malloc_trim). Up to 8 idle
worker threads may stay, waiting for the next VM operation (daemon/worker.c).
test-rbd runs the same after librbd was loaded (its initialisers change
glibc's trim threshold: block/rbd.c)."""

import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vmmdtest import Vmmd, main  # noqa: E402
from daemon_helpers import guest, vm_def, rss_kib, wait_console  # noqa: E402

CLIENTS = 16
CYCLES = 16


# Idle worker threads the daemon keeps for the next VM operation (worker.c).
WORKERS_IDLE_MAX = 16


def counts(pid):
    """(fds, threads other than idle-able workers, worker threads)."""
    names = []
    for t in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/comm" % (pid, t)) as f:
                names.append(f.read().strip())
        except OSError:
            pass  # exited meanwhile
    workers = names.count("vmmd-job")
    return (len(os.listdir("/proc/%d/fd" % pid)), len(names) - workers, workers)


def settled(now, base):
    """Back to baseline: the same fds and threads, except at most
    WORKERS_IDLE_MAX worker threads left waiting for work."""
    return now[:2] == base[:2] and now[2] <= WORKERS_IDLE_MAX


def asan(pid):
    with open("/proc/%d/maps" % pid) as f:
        return "libasan" in f.read()


def lifecycles_return_to_baseline(d):
    """CLIENTS x CYCLES lifecycles on daemon @d (warmed up by the caller):
    its fds and threads come back and RSS stays within 2 MiB."""
    idle = guest("idle")
    pid = d.proc.pid
    errors = []

    def client(k, cycles=CYCLES):
        try:
            c = d.qmp()
            name = "lc%d" % k
            for _ in range(cycles):
                c.ok("vm-create", dict(vm_def(name, idle), start=True))
                wait_console(d, name, "idle: up", timeout=120)
                c.ok("stop", vm=name)
                c.ok("vm-destroy", vm=name)
                c.ok("vm-delete", vm=name)
            c.close()
        except Exception as e:  # reported by the main thread
            errors.append(e)

    def burst(cycles):
        ts = [threading.Thread(target=client, args=(k, cycles)) for k in range(CLIENTS)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        assert not errors, errors

    # One lifecycle per client first: the idle workers a burst leaves (and
    # their malloc arenas, about 200 KiB each) are the baseline, not growth.
    burst(1)
    time.sleep(0.5)
    base_rss, base = rss_kib(pid), counts(pid)
    burst(CYCLES)
    # Worker threads are detached: give the last ones time to exit (loaded CI).
    deadline = time.monotonic() + 20
    while not settled(counts(pid), base) and time.monotonic() < deadline:
        time.sleep(0.2)
    rss, now = rss_kib(pid), counts(pid)
    print("baseline RSS %d KiB fds/threads/workers %s; after %d lifecycles %d KiB %s" %
          (base_rss, base, CLIENTS * CYCLES, rss, now))
    assert settled(now, base), (base, now)
    if not asan(pid):
        assert rss < base_rss + 2048, (base_rss, rss)


def test_lifecycles_return_to_baseline():
    with Vmmd() as d:
        q = d.qmp()
        # One lifecycle first: code pages and lazily built tables are not growth.
        q.ok("vm-create", dict(vm_def("warm", guest("idle")), start=True))
        wait_console(d, "warm", "idle: up")
        q.ok("vm-delete", vm="warm", force=True)
        lifecycles_return_to_baseline(d)


if __name__ == "__main__":
    main(globals())
