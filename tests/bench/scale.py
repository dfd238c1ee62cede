#!/usr/bin/env python3
"""How the daemon's costs grow with the number of idle VMs (issue 16):
tests/bench/scale.py [--counts 1,10,50,200] [--memory 16M] [--build DIR]
                     [--no-thp] [--plot FILE.png].

One private vmmd; VMs running the bench guest (it writes one byte to COM1
and halts with interrupts off: an idle guest) are added until each count
is reached. At each count, once every guest has written its byte and one
second has passed:
  rss_mib       the daemon's VmRSS (guest RAM the guests touched included:
                the bench guest touches a few pages)
  rss_per_vm    (RSS - RSS with no VM) / N, KiB
  threads, fds  of the daemon
  idle_cpu_ms   daemon CPU time (user+system) over 5 s with nothing to do
  wakeups       context switches of all daemon threads in those 5 s (an
                idle VM should cause none: no timers, no polling)
  next_start_ms vm-create+start of one more VM until its first serial byte
  qs_p99_us     query-status round trip, 200 in a row from one client
--no-thp defines the VMs with "mem_thp": false (vmmd-vm(5)): guest RAM in
4 KiB pages, so a guest's first touch makes 4 KiB resident, not 2 MiB.
--plot draws the table with gnuplot (four panels against N, log scale).
No timing is asserted: a measurement tool. Results: tests/bench/README,
"Scale"."""

import argparse
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
sys.path.insert(0, os.path.join(HERE, "..", "functional"))


def proc_stat(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime, clock ticks


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def switches(pid):
    n = 0
    for t in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/status" % (pid, t)) as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        n += int(line.split()[1])
        except OSError:
            pass
    return n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--counts", default="1,10,50,200")
    ap.add_argument("--memory", default="16M")
    ap.add_argument("--build", default=os.environ.get("top_builddir", "build"))
    ap.add_argument("--no-thp", action="store_true",
                    help='VMs with "mem_thp": false (guest RAM in 4 KiB pages)')
    ap.add_argument("--plot", help="also draw the table into this PNG (gnuplot)")
    a = ap.parse_args()
    os.environ["top_builddir"] = os.path.abspath(a.build)
    from vmmdtest import Vmmd
    from daemon_helpers import vm_def

    counts = [int(x) for x in a.counts.split(",")]
    extra = {"memory": a.memory}
    if a.no_thp:
        extra["mem_thp"] = False
    kernel = os.path.abspath(os.path.join(a.build, "tests", "bench", "guest",
                                          "bench-guest.elf"))
    if not os.path.exists(kernel):
        raise SystemExit("build the bench guest first (make check builds it): %s" % kernel)
    hz = os.sysconf("SC_CLK_TCK")
    rows = []
    import tempfile
    conf = tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False)
    conf.write("max-vms = %d\n" % (max(counts) + 1))
    conf.close()
    with Vmmd(args=["--config", conf.name]) as d:
        pid = d.proc.pid
        q = d.qmp()
        time.sleep(1)
        rss0 = rss_kib(pid)
        logs = os.path.join(d.run_dir, "vms")

        def booted(name):
            p = os.path.join(logs, name + ".console")
            return os.path.exists(p) and os.path.getsize(p) > 0

        def wait_all(names, timeout=300):
            end = time.monotonic() + timeout
            left = list(names)
            while left and time.monotonic() < end:
                left = [n for n in left if not booted(n)]
                time.sleep(0.01)
            if left:
                raise SystemExit("%d VMs did not boot" % len(left))

        n = 0
        for target in counts:
            names = []
            while n < target:
                name = "s%d" % n
                q.ok("vm-create", dict(vm_def(name, kernel, **extra), start=True))
                names.append(name)
                n += 1
            wait_all(names)
            time.sleep(1)
            load = os.getloadavg()[0]
            c0, w0, t0 = proc_stat(pid), switches(pid), time.monotonic()
            time.sleep(5)
            c1, w1, t1 = proc_stat(pid), switches(pid), time.monotonic()
            rss = rss_kib(pid)
            threads = len(os.listdir("/proc/%d/task" % pid))
            fds = len(os.listdir("/proc/%d/fd" % pid))
            lat = []
            for _ in range(200):
                s = time.monotonic()
                q.ok("query-status", vm="s0")
                lat.append(time.monotonic() - s)
            lat.sort()
            name = "next%d" % target
            s = time.monotonic()
            q.ok("vm-create", dict(vm_def(name, kernel, **extra), start=True))
            while not booted(name):
                time.sleep(0.0005)
            start_ms = (time.monotonic() - s) * 1000
            q.ok("vm-delete", vm=name, force=True)
            rows.append((target, rss / 1024.0, (rss - rss0) / target, threads, fds,
                         (c1 - c0) * 1000.0 / hz, (w1 - w0) / (t1 - t0) * 5, start_ms,
                         lat[int(len(lat) * 0.99)] * 1e6, statistics.median(lat) * 1e6, load))
            print("N=%d done" % target, file=sys.stderr, flush=True)
    os.unlink(conf.name)
    print("%6s %8s %10s %8s %6s %12s %8s %13s %10s %10s %6s" % (
        "N", "rss_mib", "rss_per_vm", "threads", "fds", "idle_cpu_ms", "wakeups",
        "next_start_ms", "qs_p50_us", "qs_p99_us", "load"))
    for (nn, rss, per, th, fd, cpu, wk, st, p99, p50, load) in rows:
        print("%6d %8.1f %8.0f K %8d %6d %12.0f %8.0f %13.1f %10.0f %10.0f %6.1f" % (
            nn, rss, per, th, fd, cpu, wk, st, p50, p99, load))
    print("(idle_cpu_ms and wakeups: over 5 s with every VM idle; rss_per_vm: growth over "
          "the empty daemon / N; load: 1-minute load average before the idle window)")
    if a.plot:
        plot(rows, a.plot, a.memory)


PLOT = """set terminal pngcairo size 1000,700 noenhanced font ",9"
set output "%(out)s"
set multiplot layout 2,2 title "vmmd: N idle VMs (%(memory)s, 1 vCPU) in one daemon, %(date)s"
set logscale x
set xlabel "VMs in the daemon (N)"
set key top left
set grid
set title "daemon RSS (MiB, left) and its growth per VM (KiB, right)"
set ytics nomirror
set y2tics
set yrange [0:*]
set y2range [0:*]
plot "%(dat)s" using 1:2 with linespoints title "RSS MiB", "" using 1:3 axes x1y2 with linespoints title "RSS growth / N, KiB"
unset y2tics
set ytics mirror
set autoscale y
set logscale y
set title "threads and open fds"
plot "%(dat)s" using 1:4 with linespoints title "threads", "" using 1:5 with linespoints title "fds"
unset logscale y
set yrange [0:*]
set title "start of one more VM: vm-create to its first serial byte (ms)"
plot "%(dat)s" using 1:8 with linespoints title "next start ms"
set title "query-status round trip, 200 in a row (us); daemon CPU while idle (ms in 5 s)"
plot "%(dat)s" using 1:10 with linespoints title "p50 us", "" using 1:9 with linespoints title "p99 us", "" using 1:6 with linespoints title "idle CPU ms / 5 s"
unset multiplot
"""


def plot(rows, out, memory):
    import subprocess
    out = os.path.abspath(out)
    dat = out + ".dat"
    with open(dat, "w") as f:
        f.write("# N rss_mib rss_per_vm_kib threads fds idle_cpu_ms wakeups next_start_ms "
                "qs_p99_us qs_p50_us load\n")
        for r in rows:
            f.write(" ".join("%g" % x for x in r) + "\n")
    gp = out + ".gp"
    with open(gp, "w") as f:
        f.write(PLOT % {"out": out, "dat": dat, "memory": memory,
                        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())})
    subprocess.run(["gnuplot", gp], check=True)
    print("plot: %s (data %s, script %s)" % (out, dat, gp))


if __name__ == "__main__":
    main()
