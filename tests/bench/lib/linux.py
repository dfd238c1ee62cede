"""Figure 7: the Debian kernel booted towards /init under vmmd and QEMU.

On this host a stock kernel dies about a minute into boot under any VMM
(the host's instruction emulator lacks int3 at CPL 0, see DESIGN.md), so
the figure compares the two VMMs up to the last console line both reached:
the time from the start request to that line, and the number of exits to
user space (kvm:kvm_userspace_exit counted with `perf stat -I`) until then.
It runs once per harness run (round 1 only): a boot takes minutes here.
"""

import os
import re
import signal
import subprocess
import threading
import time

from common import SRCDIR, SkipFigure, have, register, reap
from figures import Figure
from qmp import QMP
from vmm import QemuVM, Vmmd, VmmdRunVm, vmmd_run_vm_supported

QUIET = 90.0  # stop watching after this long without a new console line
LIMIT = 300.0  # and after this long in all
PERF_INTERVAL_MS = 100
DEFAULT_CMDLINE = "console=ttyS0 earlyprintk=serial noxsave panic=-1"
MEMORY_MIB = 512

_TS = re.compile(r"^\[\s*\d+\.\d+\]\s?")


def normalize(line):
    """A console line without its printk timestamp and trailing blanks."""
    return _TS.sub("", line.replace("\r", "")).rstrip()


def find_kit(builddir):
    """(kernel, initrd or None, cmdline) of the Linux kit, or raise SkipFigure.

    BENCH_LINUX_KERNEL (with BENCH_LINUX_INITRD, BENCH_LINUX_CMDLINE) wins;
    else tests/guests/linux/build-kit.sh is run (it reuses its cache, by
    default ~/.cache/vmmd/linux-kit) and its vmlinux and initramfs.gz used."""
    env_k = os.environ.get("BENCH_LINUX_KERNEL")
    if env_k:
        return env_k, os.environ.get("BENCH_LINUX_INITRD"), \
            os.environ.get("BENCH_LINUX_CMDLINE", DEFAULT_CMDLINE)
    script = os.path.join(SRCDIR, "tests", "guests", "linux", "build-kit.sh")
    if not os.path.exists(script):
        raise SkipFigure("no Linux kit: tests/guests/linux/build-kit.sh is missing")
    try:
        p = subprocess.run(["sh", script], capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired:
        raise SkipFigure("build-kit.sh did not finish within 900 s")
    m = re.search(r"^KIT=(.*)$", p.stdout, re.M)
    if p.returncode != 0 or not m:
        last = (p.stderr.strip().splitlines() or ["?"])[-1]
        raise SkipFigure("the Linux kit cannot be built (build-kit.sh exited %d: %s)" %
                         (p.returncode, last))
    kit = m.group(1).strip()
    # The ELF vmlinux, entered through its PVH note by both VMMs: bzImage's
    # decompressor alone takes minutes when every instruction is emulated.
    kernel = os.path.join(kit, "vmlinux")
    initrd = os.path.join(kit, "initramfs.gz")
    if not os.path.exists(kernel):
        raise SkipFigure("no vmlinux in the Linux kit %s" % kit)
    return (kernel, initrd if os.path.exists(initrd) else None,
            os.environ.get("BENCH_LINUX_CMDLINE", DEFAULT_CMDLINE))


class Perf:
    """perf stat -I counting kvm:kvm_userspace_exit of one process."""

    @staticmethod
    def argv(path):
        return ["perf", "stat", "-x,", "-I", str(PERF_INTERVAL_MS), "-e",
                "kvm:kvm_userspace_exit", "-o", path]

    def __init__(self, path, pid):
        self.path = path
        cmd = Perf.argv(path) + ["-p", str(pid)]
        self.t0 = time.monotonic()
        self.proc = register(subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                              stdout=subprocess.DEVNULL,
                                              stderr=subprocess.DEVNULL))

    def stop(self):
        reap(self.proc, sig=signal.SIGINT, timeout=10)

    def samples(self):
        return Perf.read(self.path, self.t0)

    @staticmethod
    def read(path, t0):
        """[(monotonic time at interval end, exits in the interval)], perf's
        clock starting at @t0."""
        out = []
        try:
            with open(path) as f:
                for line in f:
                    parts = line.strip().split(",")
                    if len(parts) < 4 or not parts[0] or parts[0].startswith("#"):
                        continue
                    try:
                        out.append((t0 + float(parts[0]), int(parts[1])))
                    except ValueError:
                        continue
        except OSError:
            pass
        return out


class ConsolePoller:
    """Lines appended to a console log, each stamped with its time after @t0."""

    def __init__(self, path, t0):
        self.path = path
        self.t0 = t0
        self.pos = 0
        self.buf = b""
        self.lines = []

    def poll(self):
        try:
            with open(self.path, "rb") as f:
                f.seek(self.pos)
                data = f.read()
        except OSError:
            return
        now = time.monotonic()
        self.pos += len(data)
        self.buf += data
        while b"\n" in self.buf:
            line, self.buf = self.buf.split(b"\n", 1)
            self.lines.append((now - self.t0, line.decode(errors="replace")))


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
        vm = QemuVM(self.ctx.cfg, qmp_sockets=[sock], kernel=kernel, extra=extra,
                    memory_mib=MEMORY_MIB)
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

            def stopped():
                if done.is_set():
                    return True
                return q.ok("query-status").get("status") != "running"

            self.watch(stopped, lines, t0, interval=0.2)
            if perf:
                perf.stop()
            self.traces["qemu"] = (list(lines), perf.samples() if perf else None, t0)
            q.close()
        finally:
            if perf:
                perf.stop()
            vm.stop()

    def measure_vmmd(self, rnd):
        # The daemon when it can host the VM; else vmmd --run-vm (one VM per process).
        try:
            self.measure_vmmd_daemon()
        except SkipFigure as e:
            if vmmd_run_vm_supported(self.ctx.cfg):
                raise
            self.r_time.notes.append("vmmd ran the VM with --run-vm (daemon: %s)" % e)
            self.measure_vmmd_run_vm()

    def measure_vmmd_daemon(self):
        kernel, initrd, cmdline = self.kit
        d = Vmmd(self.ctx.cfg, "linux")
        perf = None
        try:
            if not self.perf_err:
                perf = Perf(os.path.join(self.ctx.cfg.tmp, "perf-vmmd.csv"), pid=d.pid)
                time.sleep(0.3)  # let perf attach before the VM exists
            t0 = time.monotonic()
            d.create("linux", start=True, kernel=kernel, initrd=initrd, cmdline=cmdline,
                     extra={"memory": "%dM" % MEMORY_MIB})
            con = ConsolePoller(d.console("linux"), t0)

            def stopped():
                con.poll()
                st = d.qmp.cmd("query-status", {"vm": "linux"}).get("return", {})
                return st.get("status") not in (None, "running")

            self.watch(stopped, con.lines, t0, interval=0.02)
            if perf:
                perf.stop()
            self.traces["vmmd"] = (con.lines, perf.samples() if perf else None, t0)
        finally:
            if perf:
                perf.stop()
            d.stop()

    def measure_vmmd_run_vm(self):
        # perf is vmmd's parent here (so no exit goes uncounted); the clock
        # starts at perf's exec, which adds perf's start-up to vmmd's time.
        kernel, initrd, cmdline = self.kit
        cfg = self.ctx.cfg
        vm = VmmdRunVm(cfg, "linux", kernel=kernel, initrd=initrd, cmdline=cmdline,
                       memory_mib=MEMORY_MIB, wrapper=None if self.perf_err else Perf.argv(
                           os.path.join(cfg.tmp, "perf-vmmd.csv")))
        t0 = vm.t_exec
        try:
            con = ConsolePoller(vm.console, t0)

            def stopped():
                con.poll()
                return vm.proc.poll() is not None

            self.watch(stopped, con.lines, t0, interval=0.02)
            vm.stop_child()
            vm.stop()
            samples = None
            if not self.perf_err:
                samples = Perf.read(os.path.join(cfg.tmp, "perf-vmmd.csv"), t0)
            self.traces["vmmd"] = (con.lines, samples, t0)
        finally:
            vm.stop()

    def watch(self, finished, lines, t0, interval=0.1):
        """Until the guest stops, goes quiet for QUIET s, or LIMIT s pass."""
        while True:
            time.sleep(interval)
            if finished():
                return
            now = time.monotonic() - t0
            # Before the first line only LIMIT applies: early boot is silent for long here.
            if now > LIMIT or (lines and now - lines[-1][0] > QUIET):
                return

    def finalize(self):
        for side, (ls, _, _) in self.traces.items():
            self.r_lines.add(side, len(ls))
            with open(os.path.join(self.ctx.out, "linux-%s.console" % side), "w") as f:
                f.writelines("%9.3f %s\n" % (t, line) for t, line in ls)
        if "vmmd" not in self.traces or "qemu" not in self.traces:
            return
        (vl, vperf, vt0), (ql, qperf, qt0) = self.traces["vmmd"], self.traces["qemu"]
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
