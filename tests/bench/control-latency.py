#!/usr/bin/env python3
"""query-status latency of an unrelated client while 16 clients run VM
lifecycles (issue 14): tests/bench/control-latency.py [--clients N]
[--cycles N] [--build DIR] [--probe-rt]. Each client loops vm-create (start) / stop /
vm-destroy / vm-delete on its own VM; a 17th client asks query-status of a
steady VM every 5 ms and reports p50/p99/max, with the same figures on an
idle daemon first. Results: tests/bench/README, "Control thread latency"."""

import argparse
import os
import statistics
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
sys.path.insert(0, os.path.join(HERE, "..", "functional"))


def pct(lat, p):
    lat = sorted(lat)
    return lat[min(len(lat) - 1, int(len(lat) * p))] * 1000


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--cycles", type=int, default=200)
    ap.add_argument("--build", default=os.environ.get("top_builddir", "build"))
    ap.add_argument("--probe-rt", action="store_true",
                    help="run the probe client at SCHED_FIFO 1: measure the daemon, not "
                    "the probe's own wait for a CPU")
    a = ap.parse_args()
    os.environ["top_builddir"] = os.path.abspath(a.build)
    from vmmdtest import QMP, Vmmd
    from daemon_helpers import guest, vm_def, wait_console

    idle = guest("idle")
    with Vmmd() as d:
        q = d.qmp()
        q.ok("vm-create", dict(vm_def("steady", idle), start=True))
        wait_console(d, "steady", "idle: up")
        m = QMP(d.socket, timeout=30)
        if a.probe_rt:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))

        def sample(n=None, until=None):
            lat = []
            while (n is not None and len(lat) < n) or (until is not None and until()):
                t0 = time.monotonic()
                m.ok("query-status", vm="steady")
                lat.append(time.monotonic() - t0)
                time.sleep(0.005)
            return lat

        base = sample(n=400)
        # The load runs in a child process: its 16 client threads must not
        # compete with the sampler for Python's GIL.
        import multiprocessing

        def load_main(errq):
            errors = []
            if a.probe_rt:  # not inherited by the load
                os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))

            def client(k):
                try:
                    c = QMP(d.socket, timeout=300)
                    name = "b%d" % k
                    for _ in range(a.cycles):
                        c.ok("vm-create", dict(vm_def(name, idle), start=True))
                        c.ok("stop", vm=name)
                        c.ok("vm-destroy", vm=name)
                        c.ok("vm-delete", vm=name)
                    c.close()
                except Exception as e:
                    errors.append(repr(e))

            ts = [threading.Thread(target=client, args=(k,)) for k in range(a.clients)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            errq.put(errors)

        errq = multiprocessing.Queue()
        proc = multiprocessing.Process(target=load_main, args=(errq,))
        t0 = time.monotonic()
        proc.start()
        load = sample(until=proc.is_alive)
        dt = time.monotonic() - t0
        errors = errq.get()
        proc.join()
        if errors:
            raise SystemExit("client error: %r" % errors[0])
        print("idle:   %5d samples  p50 %.2f ms  p99 %.2f ms  max %.2f ms" %
              (len(base), statistics.median(base) * 1000, pct(base, 0.99), max(base) * 1000))
        print("load:   %5d samples  p50 %.2f ms  p99 %.2f ms  max %.2f ms  "
              "(%d clients x %d cycles, %d lifecycles in %.1f s)" %
              (len(load), statistics.median(load) * 1000, pct(load, 0.99), max(load) * 1000,
               a.clients, a.cycles, a.clients * a.cycles, dt))


if __name__ == "__main__":
    main()
