"""The figures of issue #6 measured by the harness itself (1-4 and 7; 5 and
6 come from the block and virtio helpers' scripts, see external.py).

A figure declares its rows up front, then is measured once per round for
each VMM; the harness alternates which VMM goes first. measure() raises
SkipFigure when that VMM cannot do what the figure needs, which marks the
figure's rows for that side skipped with the reason.
"""

import json
import multiprocessing
import os
import subprocess
import time

from common import (LogWatcher, SkipFigure, guest_ram_rss_kib, percentile, rss_kib,
                    wait_first_byte_fds)
from qmp import roundtrip_loop
from results import Target
from vmm import QemuVM, Vmmd, VmmdRunVm, vmmd_run_vm_supported

BOOT_TIMEOUT = 30.0


class Figure:
    number = 0
    name = ""
    slow = False  # skipped in --quick runs
    needs_kvm = True

    def __init__(self, ctx):
        self.ctx = ctx
        self.rows = []

    def row(self, key, title, unit, better="lower", target=None, note=None):
        r = self.ctx.results.row(self.number, key, title, unit, better, target, note)
        self.rows.append(r)
        return r

    def unavailable(self):
        """{side: reason} for a VMM this figure cannot run on at all."""
        return {}

    def measure(self, side, rnd):
        getattr(self, "measure_" + side)(rnd)

    def finalize(self):
        """Called once after all rounds (figures that compare whole traces)."""


# ---------------------------------------------------------------------------
# 1. Start latency

class StartLatency(Figure):
    number = 1
    name = "start latency"

    def __init__(self, ctx):
        super().__init__(ctx)
        self.per_round = 1 if ctx.quick else 3
        self.r_vmctl = self.row("start.vmctl", "start latency: vmctl start / QEMU exec -> first "
                                "serial byte", "ms", "lower",
                                Target("ratio_max", 1 / 3.0, "<= 1/3 of QEMU"))
        self.r_qmp = self.row("start.qmp", "start latency: QMP vm-start / QEMU exec -> first "
                              "serial byte", "ms", "lower",
                              note="QEMU column is the same exec-to-first-byte samples")

    def measure_qemu(self, rnd):
        for _ in range(self.per_round):
            vm = QemuVM(self.ctx.cfg)
            try:
                t = wait_first_byte_fds([vm.serial_fd], BOOT_TIMEOUT)[vm.serial_fd]
                ms = (t - vm.t_exec) * 1e3
                self.r_vmctl.add("qemu", ms)
                self.r_qmp.add("qemu", ms)
            finally:
                vm.stop()

    def measure_vmmd(self, rnd):
        d = Vmmd(self.ctx.cfg, "start%d" % rnd)
        try:
            w = LogWatcher(d.console_dir)
            for i in range(self.per_round):
                for how, row in (("vmctl", self.r_vmctl), ("qmp", self.r_qmp)):
                    name = "s%d-%s" % (i, how)
                    d.create(name)
                    if how == "vmctl":
                        t0 = time.monotonic()
                        p = subprocess.Popen(d.vmctl_argv("start", name), stdout=subprocess.PIPE,
                                             stderr=subprocess.STDOUT)
                        try:
                            t = w.wait([name], BOOT_TIMEOUT)[name]
                        finally:
                            out = p.communicate(timeout=60)[0]
                        if p.returncode != 0:
                            raise SkipFigure("vmctl start exited %d: %s" %
                                             (p.returncode, out.decode(errors="replace")[-300:]))
                    else:
                        t0 = time.monotonic()
                        d.start_qmp(name)
                        t = w.wait([name], BOOT_TIMEOUT)[name]
                    row.add("vmmd", (t - t0) * 1e3)
            w.close()
        finally:
            d.stop()


class StartLatencyRunVm(Figure):
    """Like for like with QEMU's process start: exec of `vmmd --run-vm DEF`
    (one VM in its own process) to the guest's first serial byte."""
    number = 1
    name = "start latency (--run-vm)"

    def __init__(self, ctx):
        super().__init__(ctx)
        self.per_round = 1 if ctx.quick else 3
        self.r = self.row("start.runvm", "start latency: exec of vmmd --run-vm / QEMU -> first "
                          "serial byte", "ms", "lower",
                          note="QEMU column: its own exec-to-first-byte samples")

    def unavailable(self):
        reason = vmmd_run_vm_supported(self.ctx.cfg)
        return {"vmmd": reason} if reason else {}

    def measure_qemu(self, rnd):
        for _ in range(self.per_round):
            vm = QemuVM(self.ctx.cfg)
            try:
                t = wait_first_byte_fds([vm.serial_fd], BOOT_TIMEOUT)[vm.serial_fd]
                self.r.add("qemu", (t - vm.t_exec) * 1e3)
            finally:
                vm.stop()

    def measure_vmmd(self, rnd):
        for i in range(self.per_round):
            tag = "r%d-%d" % (rnd, i)
            console_dir = os.path.join(self.ctx.cfg.tmp, "runvm-" + tag, "console")
            os.makedirs(console_dir, exist_ok=True)
            w = LogWatcher(console_dir)
            vm = VmmdRunVm(self.ctx.cfg, tag)
            try:
                try:
                    t = w.wait(["vm"], BOOT_TIMEOUT)["vm"]
                except SkipFigure as e:
                    raise SkipFigure("%s; vmmd --run-vm said: %s" % (e, vm.log_tail(300)))
                self.r.add("vmmd", (t - vm.t_exec) * 1e3)
            finally:
                vm.stop()
                w.close()


# ---------------------------------------------------------------------------
# 2. Memory overhead per VM

class MemoryPerVM(Figure):
    number = 2
    name = "memory per VM"
    SETTLE = 0.5

    def __init__(self, ctx):
        super().__init__(ctx)
        self.counts = (1, 10) if ctx.quick else (1, 10, 50)
        self.r = {}
        for n in (1, 10, 50):
            self.r[n] = self.row("memory.n%d" % n,
                                 "memory per idle VM, guest RAM excluded: vmmd RSS growth / N "
                                 "(N=%d) vs one QEMU process" % n, "MiB", "lower",
                                 Target("vmmd_max", 2.0, "< 2 MiB"))
        if ctx.quick:
            self.r[50].skip("vmmd", "--quick runs N=1 and N=10 only")
            self.r[50].skip("qemu", "--quick runs N=1 and N=10 only")

    def measure_qemu(self, rnd):
        cfg = self.ctx.cfg
        vm = QemuVM(cfg)
        try:
            wait_first_byte_fds([vm.serial_fd], BOOT_TIMEOUT)
            time.sleep(self.SETTLE)
            guest, nmaps = guest_ram_rss_kib(vm.pid, cfg.memory_bytes)
            if nmaps == 0:
                raise SkipFigure("no %d MiB guest RAM mapping found in QEMU's smaps" %
                                 cfg.memory_mib)
            mib = (vm.rss_kib() - guest) / 1024.0
            for n in self.counts:
                self.r[n].add("qemu", mib)
        finally:
            vm.stop()

    def measure_vmmd(self, rnd):
        cfg = self.ctx.cfg
        d = Vmmd(cfg, "mem%d" % rnd)
        try:
            w = LogWatcher(d.console_dir)
            time.sleep(self.SETTLE)
            base = d.rss_kib()
            made = 0
            for n in self.counts:
                names = []
                while made < n:
                    name = "m%d" % made
                    d.create(name, start=True)
                    names.append(name)
                    made += 1
                w.wait(names, BOOT_TIMEOUT)
                time.sleep(self.SETTLE)
                guest, nmaps = guest_ram_rss_kib(d.pid, cfg.memory_bytes)
                if nmaps < n:
                    raise SkipFigure("found %d guest RAM mappings of %d MiB in vmmd's smaps for "
                                     "%d VMs: cannot subtract guest RAM" %
                                     (nmaps, cfg.memory_mib, n))
                self.r[n].add("vmmd", (d.rss_kib() - guest - base) / 1024.0 / n)
            w.close()
        finally:
            d.stop()


class MemoryRunVm(Figure):
    """Per process, like for like: one idle VM in its own `vmmd --run-vm`
    process against one QEMU process, guest RAM excluded from both."""
    number = 2
    name = "memory (--run-vm)"
    SETTLE = 0.5

    def __init__(self, ctx):
        super().__init__(ctx)
        self.r = self.row("memory.runvm", "memory of one idle VM in its own process (vmmd "
                          "--run-vm vs QEMU), RSS minus guest RAM", "MiB", "lower")

    def unavailable(self):
        reason = vmmd_run_vm_supported(self.ctx.cfg)
        return {"vmmd": reason} if reason else {}

    def measure_qemu(self, rnd):
        cfg = self.ctx.cfg
        vm = QemuVM(cfg)
        try:
            wait_first_byte_fds([vm.serial_fd], BOOT_TIMEOUT)
            time.sleep(self.SETTLE)
            guest, nmaps = guest_ram_rss_kib(vm.pid, cfg.memory_bytes)
            if nmaps == 0:
                raise SkipFigure("no %d MiB guest RAM mapping found in QEMU's smaps" %
                                 cfg.memory_mib)
            self.r.add("qemu", (vm.rss_kib() - guest) / 1024.0)
        finally:
            vm.stop()

    def measure_vmmd(self, rnd):
        cfg = self.ctx.cfg
        tag = "mem%d" % rnd
        console_dir = os.path.join(cfg.tmp, "runvm-" + tag, "console")
        os.makedirs(console_dir, exist_ok=True)
        w = LogWatcher(console_dir)
        vm = VmmdRunVm(cfg, tag)
        try:
            w.wait(["vm"], BOOT_TIMEOUT)
            time.sleep(self.SETTLE)
            guest, nmaps = guest_ram_rss_kib(vm.pid, cfg.memory_bytes)
            if nmaps == 0:
                raise SkipFigure("no %d MiB guest RAM mapping found in vmmd's smaps" %
                                 cfg.memory_mib)
            self.r.add("vmmd", (rss_kib(vm.pid) - guest) / 1024.0)
        finally:
            vm.stop()
            w.close()


# ---------------------------------------------------------------------------
# 3. Density and creation rate

class Density(Figure):
    number = 3
    name = "density"

    def __init__(self, ctx):
        super().__init__(ctx)
        self.n = 10 if ctx.quick else 50
        self.r = self.row("density.rate", "creation rate: %d VMs at once from %d parallel "
                          "clients, booted to first serial byte" % (self.n, self.n), "VMs/s",
                          "higher", Target("ratio_min", 3.0, ">= 3x QEMU"))
        self.r_total = self.row("density.total", "time until all %d VMs wrote their first "
                                "serial byte" % self.n, "s", "lower")

    def record(self, side, seconds):
        self.r.add(side, self.n / seconds)
        self.r_total.add(side, seconds)

    def measure_qemu(self, rnd):
        vms = []
        try:
            t0 = time.monotonic()
            for _ in range(self.n):
                vms.append(QemuVM(self.ctx.cfg))
            seen = wait_first_byte_fds([v.serial_fd for v in vms], BOOT_TIMEOUT * 4)
            self.record("qemu", max(seen.values()) - t0)
        finally:
            for v in vms:
                v.stop()

    def measure_vmmd(self, rnd):
        import threading
        from qmp import QMP

        d = Vmmd(self.ctx.cfg, "density%d" % rnd)
        try:
            w = LogWatcher(d.console_dir)
            names = ["d%d" % i for i in range(self.n)]
            barrier = threading.Barrier(self.n + 1)
            errors = []

            def client(name):
                try:
                    barrier.wait(30)
                    q = QMP(d.socket)
                    d.create(name, start=True, qmp=q)
                    q.close()
                except Exception as e:
                    errors.append(str(e))

            threads = [threading.Thread(target=client, args=(n,)) for n in names]
            for t in threads:
                t.start()
            barrier.wait(30)
            t0 = time.monotonic()
            try:
                seen = w.wait(names, BOOT_TIMEOUT * 4)
            except SkipFigure:
                if errors:
                    raise SkipFigure(errors[0])
                raise
            finally:
                for t in threads:
                    t.join(60)
            if errors:
                raise SkipFigure(errors[0])
            self.record("vmmd", max(seen.values()) - t0)
            w.close()
        finally:
            d.stop()


# ---------------------------------------------------------------------------
# 4. Control plane

class ControlPlane(Figure):
    number = 4
    name = "control plane"
    CLIENTS = (1, 16)
    VMS = (1, 50)

    def __init__(self, ctx):
        super().__init__(ctx)
        self.duration = 0.3 if ctx.quick else 2.0
        self.r = {}
        for c in self.CLIENTS:
            for v in self.VMS:
                base = "control.c%d.vms%d" % (c, v)
                what = "query-status, %d client%s, %d VM%s defined" % (
                    c, "s" if c > 1 else "", v, "s" if v > 1 else "")
                note = "QEMU: one instance with %d QMP socket(s)" % c
                self.r[(c, v, "rps")] = self.row(base + ".rps", what + ": round trips/s",
                                                 "1/s", "higher", note=note)
                self.r[(c, v, "p50")] = self.row(base + ".p50", what + ": p50 latency", "us",
                                                 "lower", note=note)
                tgt = Target("vmmd_max", 1000.0, "p99 < 1 ms") if v == 50 else None
                self.r[(c, v, "p99")] = self.row(base + ".p99", what + ": p99 latency", "us",
                                                 "lower", tgt, note=note)

    def run_clients(self, paths, vms=0, prefix="c"):
        """One client per path, each one request in flight; returns (rps, p50, p99)."""
        loader = os.path.join(self.ctx.cfg.builddir, "tests", "bench", "qmp-load")
        if os.access(loader, os.X_OK):
            argv = [loader, "--duration", str(self.duration), "--clients", str(len(paths))]
            if vms:
                argv += ["--vms", str(vms), "--vm-prefix", prefix]
            p = subprocess.run(argv + list(paths), capture_output=True, text=True,
                               timeout=self.duration + 120)
            if p.returncode != 0:
                raise SkipFigure("qmp-load failed: %s" % p.stderr.strip()[-300:])
            j = json.loads(p.stdout)
            return j["rps"], j["p50_us"], j["p99_us"]
        return self.run_clients_python(paths, vms, prefix)

    def run_clients_python(self, paths, vms, prefix):
        """The same in Python processes (when qmp-load is not built)."""
        if vms:
            def requests_for(i):
                return [('{"execute": "query-status", "arguments": {"vm": "%s%d"}}\n' %
                         (prefix, (i + k) % vms)).encode() for k in range(vms)]
        else:
            def requests_for(i):
                return [b'{"execute": "query-status"}\n']
        mp = multiprocessing.get_context("fork")
        barrier = mp.Barrier(len(paths) + 1)
        out = mp.Queue()
        procs = [mp.Process(target=roundtrip_loop,
                            args=(p, requests_for(i), self.duration, barrier, out))
                 for i, p in enumerate(paths)]
        for p in procs:
            p.start()
        try:
            barrier.wait(30)
            t0 = time.monotonic()
            lats = []
            for _ in procs:
                r = out.get(timeout=self.duration + 60)
                if isinstance(r, str):
                    raise SkipFigure("control-plane client failed: %s" % r)
                lats.extend(r)
            wall = time.monotonic() - t0
        finally:
            for p in procs:
                p.join(10)
                if p.is_alive():
                    p.kill()
                    p.join()
        if not lats:
            raise SkipFigure("no round trip completed")
        return len(lats) / wall, percentile(lats, 50), percentile(lats, 99)

    def record(self, side, c, v, result):
        rps, p50, p99 = result
        self.r[(c, v, "rps")].add(side, rps)
        self.r[(c, v, "p50")].add(side, p50)
        self.r[(c, v, "p99")].add(side, p99)

    def measure_qemu(self, rnd):
        socks = [os.path.join(self.ctx.cfg.tmp, "qmp-r%d-%d.sock" % (rnd, i))
                 for i in range(max(self.CLIENTS))]
        vm = QemuVM(self.ctx.cfg, qmp_sockets=socks)
        try:
            vm.wait_qmp()
            for c in self.CLIENTS:
                res = self.run_clients(socks[:c])
                for v in self.VMS:
                    self.record("qemu", c, v, res)
        finally:
            vm.stop()

    def measure_vmmd(self, rnd):
        d = Vmmd(self.ctx.cfg, "control%d" % rnd)
        try:
            made = 0
            for v in self.VMS:
                while made < v:
                    d.create("c%d" % made, start=True)
                    made += 1
                # Each client walks the defined VMs from its own offset.
                for c in self.CLIENTS:
                    self.record("vmmd", c, v, self.run_clients([d.socket] * c, v, "c"))
        finally:
            d.stop()


# ---------------------------------------------------------------------------
# 4 (continued). Control plane while 16 clients cycle VMs

def _connect(path):
    """A QMP client of path, which may be bound but not yet listening (QEMU)."""
    from qmp import QMP
    deadline = time.monotonic() + 5
    while True:
        try:
            return QMP(path, timeout=120)
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _cycle_clients(kind, target, clients, seconds, errq):
    """The load, in its own process (the probe keeps Python's lock to itself).

    vmmd: each client loops vm-create with start, stop, vm-destroy and
    vm-delete on its own VM. QEMU: each client loops exec of a QEMU with a
    QMP socket, QMP stop, quit. target: the Vmmd, or the Config for QEMU."""
    import threading
    from qmp import QMP

    counts, errors = [0] * clients, []
    deadline = time.monotonic() + seconds

    def vmmd_client(k):
        c = QMP(target.socket, timeout=120)
        name = "cyc%d" % k
        while time.monotonic() < deadline:
            c.ok("vm-create", target.definition(name, start=True))
            c.ok("stop", {"vm": name})
            c.ok("vm-destroy", {"vm": name})
            c.ok("vm-delete", {"vm": name})
            c.events.clear()
            counts[k] += 1
        c.close()

    def qemu_client(k):
        sock = os.path.join(target.tmp, "cyc%d.sock" % k)
        while time.monotonic() < deadline:
            vm = QemuVM(target, qmp_sockets=[sock])
            try:
                vm.wait_qmp()
                c = _connect(sock)
                c.ok("stop")
                c.cmd("quit")
                c.close()
            finally:
                vm.stop()
            counts[k] += 1

    def run(k):
        try:
            (vmmd_client if kind == "vmmd" else qemu_client)(k)
        except Exception as e:  # reported to the harness
            errors.append("%s: %s" % (type(e).__name__, e))

    ts = [threading.Thread(target=run, args=(k,)) for k in range(clients)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    errq.put((sum(counts), errors))


class ControlUnderLifecycles(Figure):
    """query-status of a steady running VM, asked every 5 ms, while 16
    clients create and destroy VMs as fast as they can for a fixed time
    (tests/bench/control-latency.py is the same probe, standalone). On QEMU
    the steady VM is one QEMU and each lifecycle a QEMU process: the same
    question, how fast a running VM's control socket answers while the host
    starts and stops VMs."""
    number = 4
    name = "control plane under VM lifecycles"
    CLIENTS = 16

    def __init__(self, ctx):
        super().__init__(ctx)
        self.seconds = 2.0 if ctx.quick else 8.0
        what = "query-status every 5 ms while %d clients cycle VMs" % self.CLIENTS
        note = ("vmmd: vm-create+start, stop, vm-destroy, vm-delete; QEMU: exec, QMP stop, "
                "quit; the probe at normal priority")
        self.r_p50 = self.row("control.cycling.p50", what + ": p50 latency", "us", "lower",
                              note=note)
        self.r_p99 = self.row("control.cycling.p99", what + ": p99 latency", "us", "lower",
                              Target("vmmd_max", 5000.0, "p99 < 5 ms"), note=note)
        self.r_rate = self.row("control.cycling.rate", what + ": lifecycles/s", "1/s",
                               "higher", note=note)

    def probe(self, path, kind, target, vm_args):
        q = _connect(path)
        mp = multiprocessing.get_context("fork")
        errq = mp.Queue()
        load = mp.Process(target=_cycle_clients,
                          args=(kind, target, self.CLIENTS, self.seconds, errq))
        lat = []
        t0 = time.monotonic()
        load.start()
        try:
            while load.is_alive():
                t = time.monotonic()
                q.ok("query-status", vm_args)
                lat.append((time.monotonic() - t) * 1e6)
                q.events.clear()
                time.sleep(0.005)
            n, errors = errq.get(timeout=60)
        finally:
            load.join(30)
            if load.is_alive():
                load.kill()
            q.close()
        if errors:
            raise SkipFigure("a cycling client failed: %s" % errors[0])
        if not lat:
            raise SkipFigure("no probe sample")
        self.r_p50.add(kind, percentile(lat, 50))
        self.r_p99.add(kind, percentile(lat, 99))
        self.r_rate.add(kind, n / (time.monotonic() - t0))

    def measure_vmmd(self, rnd):
        d = Vmmd(self.ctx.cfg, "cycling%d" % rnd)
        try:
            d.create("steady", start=True)
            self.probe(d.socket, "vmmd", d, {"vm": "steady"})
        finally:
            d.stop()

    def measure_qemu(self, rnd):
        sock = os.path.join(self.ctx.cfg.tmp, "steady-r%d.sock" % rnd)
        vm = QemuVM(self.ctx.cfg, qmp_sockets=[sock])
        try:
            vm.wait_qmp()
            self.probe(sock, "qemu", self.ctx.cfg, None)
        finally:
            vm.stop()
