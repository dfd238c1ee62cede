"""Figure 7: the Debian kernel booted towards /init under vmmd and QEMU.

On this host a stock kernel dies about a minute into boot under any VMM
(the host's instruction emulator lacks int3 at CPL 0, see DESIGN.md), so
the figure compares the two VMMs up to the last console line both reached:
the time from the start request to that line, and the number of exits to
user space (kvm:kvm_userspace_exit counted with `perf stat -I`) until then.
It runs once per harness run (round 1 only): a boot takes minutes here.
"""

import glob
import os
import re
import signal
import subprocess
import threading
import time

from common import SRCDIR, SkipFigure, have, register, reap
from figures import Figure
from qmp import QMP
from vmm import QemuVM, Vmmd

QUIET = 25.0  # stop watching after this long without a new console line
LIMIT = 150.0  # and after this long in all
PERF_INTERVAL_MS = 100
DEFAULT_CMDLINE = "console=ttyS0 noxsave panic=-1"

_TS = re.compile(r"^\[\s*\d+\.\d+\]\s?")


def normalize(line):
    """A console line without its printk timestamp and trailing blanks."""
    return _TS.sub("", line.replace("\r", "")).rstrip()


def find_kit(builddir):
    """(kernel, initrd or None, cmdline) of the Linux kit, or raise SkipFigure."""
    env_k = os.environ.get("BENCH_LINUX_KERNEL")
    if env_k:
        return env_k, os.environ.get("BENCH_LINUX_INITRD"), \
            os.environ.get("BENCH_LINUX_CMDLINE", DEFAULT_CMDLINE)
    dirs = [os.environ.get("BENCH_LINUX_KIT"),
            os.path.join(builddir, "tests", "guests", "linux"),
            os.path.join(SRCDIR, "tests", "guests", "linux")]
    for d in dirs:
        if not d or not os.path.isdir(d):
            continue
        kernels = sorted(glob.glob(os.path.join(d, "**", "vmlinuz*"), recursive=True) +
                         glob.glob(os.path.join(d, "**", "bzImage"), recursive=True))
        if not kernels:
            continue
        initrds = sorted(glob.glob(os.path.join(d, "**", "initr*"), recursive=True) +
                         glob.glob(os.path.join(d, "**", "*.cpio*"), recursive=True))
        cmdline = DEFAULT_CMDLINE
        for name in ("cmdline", "cmdline.txt"):
            p = os.path.join(os.path.dirname(kernels[0]), name)
            if os.path.exists(p):
                with open(p) as f:
                    cmdline = f.read().strip()
        return kernels[0], (initrds[0] if initrds else None), cmdline
    raise SkipFigure("no Linux kit: build it with tests/guests/linux/build-kit.sh (or set "
                     "BENCH_LINUX_KERNEL/BENCH_LINUX_INITRD)")


class Perf:
    """perf stat -I counting kvm:kvm_userspace_exit of one process."""

    def __init__(self, path, pid):
        self.path = path
        cmd = ["perf", "stat", "-x,", "-I", str(PERF_INTERVAL_MS), "-e", "kvm:kvm_userspace_exit",
               "-o", path, "-p", str(pid)]
        self.t0 = time.monotonic()
        self.proc = register(subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                              stdout=subprocess.DEVNULL,
                                              stderr=subprocess.DEVNULL))

    def stop(self):
        reap(self.proc, sig=signal.SIGINT, timeout=10)

    def samples(self):
        """[(monotonic time at interval end, exits in the interval)]."""
        out = []
        try:
            with open(self.path) as f:
                for line in f:
                    parts = line.strip().split(",")
                    if len(parts) < 4 or not parts[0] or parts[0].startswith("#"):
                        continue
                    try:
                        out.append((self.t0 + float(parts[0]), int(parts[1])))
                    except ValueError:
                        continue
        except OSError:
            pass
        return out


def exits_until(samples, t):
    """Exits counted in the intervals ending by @t, plus a pro-rated share of
    the interval that contains it."""
    total = 0
    prev = None
    for end, n in samples:
        start = end - PERF_INTERVAL_MS / 1000.0 if prev is None else prev
        if end <= t:
            total += n
        elif start < t:
            total += n * (t - start) / (end - start)
            break
        else:
            break
        prev = end
    return total


def perf_works():
    if not have("perf"):
        return "perf is not installed"
    p = subprocess.run(["perf", "stat", "-x,", "-e", "kvm:kvm_userspace_exit", "--", "true"],
                       capture_output=True, text=True)
    if p.returncode != 0:
        return "perf cannot count kvm:kvm_userspace_exit here: %s" % p.stderr.strip()[-200:]
    return None


class LinuxBoot(Figure):
    number = 7
    name = "Linux boot"
    slow = "a Linux boot takes minutes here"

    def __init__(self, ctx):
        super().__init__(ctx)
        self.traces = {}
        self.perf_err = perf_works()
        self.r_time = self.row("linux.time", "Linux: start request -> last console line both "
                               "VMMs reach", "s", "lower")
        self.r_exits = self.row("linux.exits", "Linux: exits to user space up to that line",
                                "exits", "lower")
        self.r_lines = self.row("linux.lines", "Linux: console lines printed before it stopped",
                                "lines", "higher")

    def unavailable(self):
        try:
            self.kit = find_kit(self.ctx.cfg.builddir)
        except SkipFigure as e:
            return {"vmmd": str(e), "qemu": str(e)}
        return {}

    def measure(self, side, rnd):
        if rnd != 0:
            return
        super().measure(side, rnd)

    def measure_qemu(self, rnd):
        # QEMU starts paused (-S) so perf can attach to all its threads
        # before the guest runs; the clock starts at "cont", as it starts at
        # vm-create for vmmd.
        kernel, initrd, cmdline = self.kit
        sock = os.path.join(self.ctx.cfg.tmp, "linux-qmp.sock")
        extra = ["-S", "-append", cmdline] + (["-initrd", initrd] if initrd else [])
        vm = QemuVM(self.ctx.cfg, qmp_sockets=[sock], kernel=kernel, extra=extra)
        perf = None
        lines = []
        try:
            vm.wait_qmp()
            q = QMP(sock)
            if not self.perf_err:
                perf = Perf(os.path.join(self.ctx.cfg.tmp, "perf-qemu.csv"), pid=vm.pid)
                time.sleep(0.3)
            fd = vm.serial_fd
            done = threading.Event()
            t0 = time.monotonic()

            def reader():
                buf = b""
                while True:
                    data = os.read(fd, 65536)
                    if not data:
                        break
                    now = time.monotonic()
                    buf += data
                    while b"\n" in buf:
                        line, buf = buf.split(b"\n", 1)
                        lines.append((now - t0, line.decode(errors="replace")))
                done.set()

            th = threading.Thread(target=reader, daemon=True)
            th.start()
            q.ok("cont")
            self.watch(done.is_set, lines, t0)
            if perf:
                perf.stop()
            self.traces["qemu"] = (list(lines), perf.samples() if perf else None, t0)
            q.close()
        finally:
            if perf:
                perf.stop()
            vm.stop()

    def measure_vmmd(self, rnd):
        kernel, initrd, cmdline = self.kit
        d = Vmmd(self.ctx.cfg, "linux")
        perf = None
        try:
            if not self.perf_err:
                perf = Perf(os.path.join(self.ctx.cfg.tmp, "perf-vmmd.csv"), pid=d.pid)
                time.sleep(0.3)  # let perf attach before the VM exists
            t0 = time.monotonic()
            d.create("linux", start=True, kernel=kernel, initrd=initrd, cmdline=cmdline)
            path = d.console("linux")
            lines = []
            state = {"pos": 0, "buf": b""}

            def poll():
                try:
                    with open(path, "rb") as f:
                        f.seek(state["pos"])
                        data = f.read()
                except OSError:
                    data = b""
                now = time.monotonic()
                state["pos"] += len(data)
                state["buf"] += data
                while b"\n" in state["buf"]:
                    line, state["buf"] = state["buf"].split(b"\n", 1)
                    lines.append((now - t0, line.decode(errors="replace")))
                return False

            def stopped():
                poll()
                st = d.qmp.cmd("query-status", {"vm": "linux"}).get("return", {})
                return st.get("status") not in (None, "running")

            self.watch(stopped, lines, t0, interval=0.02)
            if perf:
                perf.stop()
            self.traces["vmmd"] = (lines, perf.samples() if perf else None, t0)
        finally:
            if perf:
                perf.stop()
            d.stop()

    def watch(self, finished, lines, t0, interval=0.1):
        """Until the guest stops, goes quiet for QUIET s, or LIMIT s pass."""
        while True:
            time.sleep(interval)
            if finished():
                return
            now = time.monotonic() - t0
            last = lines[-1][0] if lines else 0.0
            if now > LIMIT or now - last > QUIET:
                return

    def finalize(self):
        if "vmmd" not in self.traces or "qemu" not in self.traces:
            return
        (vl, vperf, vt0), (ql, qperf, qt0) = self.traces["vmmd"], self.traces["qemu"]
        for side, ls in (("vmmd", vl), ("qemu", ql)):
            self.r_lines.add(side, len(ls))
        qtimes = {}
        for t, line in ql:
            qtimes.setdefault(normalize(line), t)
        common = None
        for t, line in vl:
            n = normalize(line)
            if n and n in qtimes:
                common = (t, qtimes[n], n)
        if common is None:
            reason = "vmmd and QEMU printed no console line in common (vmmd %d lines, QEMU %d)" % (
                len(vl), len(ql))
            for side in ("vmmd", "qemu"):
                self.r_time.skip(side, reason)
                self.r_exits.skip(side, reason)
            return
        vt, qt, text = common
        self.r_time.add("vmmd", vt)
        self.r_time.add("qemu", qt)
        self.r_time.notes.append("last common line: %s" % text[:120])
        self.r_exits.notes.append("last common line: %s" % text[:120])
        if self.perf_err:
            self.r_exits.skip("vmmd", self.perf_err)
            self.r_exits.skip("qemu", self.perf_err)
            return
        for side, samples, t0, t in (("vmmd", vperf, vt0, vt), ("qemu", qperf, qt0, qt)):
            if samples:
                self.r_exits.add(side, exits_until(samples, t0 + t))
            else:
                self.r_exits.skip(side, "perf produced no interval counts")
