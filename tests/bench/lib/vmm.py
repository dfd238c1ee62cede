"""The two VMMs under test, driven the same way: one guest, same memory,
same vCPUs, same CPU features, serial output captured.

QEMU is Debian's qemu-system-x86_64 with -accel kvm -M microvm, one process
per VM, the serial port on a pipe (stdout) and QMP on UNIX sockets.
vmmd is one private daemon (own socket, state and run directories) hosting
every VM, driven over its QMP socket and with vmctl; each VM's console goes
to a log file in one directory that the harness watches.
"""

import json
import os
import subprocess
import time

from common import SkipFigure, register, reap, rss_kib
from qmp import QMP, QMPError

QEMU = "qemu-system-x86_64"


class Config:
    """What every VM of a run looks like, and where the programs are."""

    def __init__(self, builddir, guest, tmp, memory_mib=48, vcpus=1,
                 qemu_cpu="host,-cx16,-xsave,-arch-capabilities", vmmd_cpu="host,-cx16,-xsave"):
        self.builddir = builddir
        self.guest = guest
        self.tmp = tmp
        self.memory_mib = memory_mib
        self.vcpus = vcpus
        self.qemu_cpu = qemu_cpu
        self.vmmd_cpu = vmmd_cpu
        self.vmmd = os.path.join(builddir, "vmmd")
        self.vmctl = os.path.join(builddir, "vmctl")
        self.vmm_img = os.path.join(builddir, "vmm-img")

    @property
    def memory_bytes(self):
        return self.memory_mib << 20


# ---------------------------------------------------------------------------
# QEMU

def qemu_cmd(cfg, kernel=None, qmp_sockets=(), extra=(), memory_mib=None):
    cmd = [QEMU, "-accel", "kvm", "-M", "microvm", "-cpu", cfg.qemu_cpu,
           "-m", "%dM" % (memory_mib or cfg.memory_mib), "-smp", str(cfg.vcpus),
           "-nodefaults", "-no-user-config", "-nographic", "-serial", "stdio",
           "-kernel", kernel or cfg.guest]
    for s in qmp_sockets:
        cmd += ["-qmp", "unix:%s,server=on,wait=off" % s]
    return cmd + list(extra)


class QemuVM:
    """One QEMU process. t_exec is the monotonic time just before exec."""

    def __init__(self, cfg, qmp_sockets=(), kernel=None, extra=(), stderr=None, memory_mib=None):
        self.cmd = qemu_cmd(cfg, kernel, qmp_sockets, extra, memory_mib)
        self.qmp_sockets = list(qmp_sockets)
        self.t_exec = time.monotonic()
        self.proc = register(subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL,
                                              stdout=subprocess.PIPE,
                                              stderr=stderr or subprocess.DEVNULL))

    @property
    def pid(self):
        return self.proc.pid

    @property
    def serial_fd(self):
        return self.proc.stdout.fileno()

    def wait_qmp(self, timeout=30.0):
        deadline = time.monotonic() + timeout
        while not all(os.path.exists(s) for s in self.qmp_sockets):
            if self.proc.poll() is not None:
                raise SkipFigure("QEMU exited with %d before its QMP socket appeared" %
                                 self.proc.returncode)
            if time.monotonic() > deadline:
                raise SkipFigure("QEMU's QMP socket did not appear within %.0f s" % timeout)
            time.sleep(0.005)

    def rss_kib(self):
        return rss_kib(self.pid)

    def stop(self):
        reap(self.proc, timeout=5.0)
        self.proc.stdout.close()
        for s in self.qmp_sockets:
            try:
                os.unlink(s)
            except OSError:
                pass


# ---------------------------------------------------------------------------
# vmmd

class Vmmd:
    """A private vmmd. Console logs of its VMs go to <tmp>/console/<name>."""

    def __init__(self, cfg, tag):
        if not os.access(cfg.vmmd, os.X_OK):
            raise SkipFigure("vmmd is not built (%s)" % cfg.vmmd)
        self.cfg = cfg
        self.dir = os.path.join(cfg.tmp, "vmmd-" + tag)
        self.console_dir = os.path.join(self.dir, "console")
        os.makedirs(self.console_dir, exist_ok=True)
        self.socket = os.path.join(self.dir, "vmmd.sock")
        self.log_path = os.path.join(self.dir, "vmmd.log")
        self.log = open(self.log_path, "ab")
        self.proc = register(subprocess.Popen(
            [cfg.vmmd, "--socket", self.socket, "--state-dir", os.path.join(self.dir, "state"),
             "--run-dir", os.path.join(self.dir, "run")],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT))
        deadline = time.monotonic() + 20
        while not os.path.exists(self.socket):
            if self.proc.poll() is not None:
                raise SkipFigure("vmmd exited with %d at start: %s" %
                                 (self.proc.returncode, self.log_first()))
            if time.monotonic() > deadline:
                raise SkipFigure("vmmd did not create its socket within 20 s")
            time.sleep(0.01)
        self.qmp = QMP(self.socket)

    @property
    def pid(self):
        return self.proc.pid

    def log_first(self):
        """The first non-empty line of vmmd's output (its error, before any usage text)."""
        try:
            with open(self.log_path, "rb") as f:
                text = f.read(4096).decode(errors="replace")
        except OSError:
            return ""
        return next((x.strip() for x in text.splitlines() if x.strip()), "")

    def log_tail(self, n=400):
        """The last non-empty lines of vmmd's output, at most @n characters."""
        try:
            with open(self.log_path, "rb") as f:
                text = f.read().decode(errors="replace")
        except OSError:
            return ""
        lines = [x for x in text.splitlines() if x.strip()]
        out = ""
        for x in reversed(lines):
            if len(out) + len(x) > n:
                break
            out = x + (" | " + out if out else "")
        return out

    def console(self, name):
        return os.path.join(self.console_dir, name)

    def definition(self, name, start=False, kernel=None, cmdline=None, initrd=None, extra=None):
        boot = {"kernel": kernel or self.cfg.guest}
        if cmdline is not None:
            boot["cmdline"] = cmdline
        if initrd is not None:
            boot["initrd"] = initrd
        d = {"name": name, "vcpus": self.cfg.vcpus, "memory": "%dM" % self.cfg.memory_mib,
             "cpu": self.cfg.vmmd_cpu, "boot": boot, "serial": {"log": self.console(name)}}
        if start:
            d["start"] = True
        if extra:
            d.update(extra)
        return d

    def create(self, name, start=False, qmp=None, **kw):
        """vm-create (optionally with "start": true); SkipFigure if vmmd refuses."""
        try:
            (qmp or self.qmp).ok("vm-create", self.definition(name, start, **kw))
        except QMPError as e:
            raise SkipFigure("vmmd: %s" % e)

    def start_qmp(self, name, qmp=None):
        try:
            (qmp or self.qmp).ok("vm-start", {"vm": name})
        except QMPError as e:
            raise SkipFigure("vmmd: %s" % e)

    def vmctl_argv(self, *args):
        return [self.cfg.vmctl, "--socket", self.socket] + list(args)

    def start_vmctl(self, name):
        """Run `vmctl start NAME`; returns the monotonic time just before exec."""
        t0 = time.monotonic()
        p = subprocess.run(self.vmctl_argv("start", name), capture_output=True, text=True,
                           timeout=60)
        if p.returncode != 0:
            raise SkipFigure("vmctl start exited %d: %s" % (p.returncode,
                                                           (p.stderr or p.stdout).strip()[-300:]))
        return t0

    def rss_kib(self):
        return rss_kib(self.pid)

    def stop(self):
        try:
            self.qmp.close()
        except Exception:
            pass
        reap(self.proc, timeout=20.0)
        self.log.close()


# ---------------------------------------------------------------------------
# vmmd --run-vm: one VM in its own vmmd process (no daemon, no control socket)

def vmmd_run_vm_supported(cfg):
    """None if this vmmd has --run-vm, else the reason it cannot be used."""
    if not os.access(cfg.vmmd, os.X_OK):
        return "vmmd is not built (%s)" % cfg.vmmd
    # Not from --help, which need not list it: ask for a definition that does not exist.
    p = subprocess.run([cfg.vmmd, "--run-vm", os.path.join(cfg.tmp, "no-such-vm.json"),
                        "--run-dir", cfg.tmp], capture_output=True, text=True, timeout=30)
    out = p.stdout + p.stderr
    if "unrecognized option" in out or "invalid option" in out or "unknown option" in out:
        return "this vmmd has no --run-vm option"
    return None


class VmmdRunVm:
    """`vmmd --run-vm DEF`: t_exec is the monotonic time just before exec."""

    def __init__(self, cfg, tag, kernel=None, initrd=None, cmdline=None, memory_mib=None,
                 wrapper=None):
        self.dir = os.path.join(cfg.tmp, "runvm-" + tag)
        os.makedirs(self.dir, exist_ok=True)
        self.console_dir = os.path.join(self.dir, "console")
        os.makedirs(self.console_dir, exist_ok=True)
        self.console = os.path.join(self.console_dir, "vm")
        boot = {"kernel": kernel or cfg.guest}
        if initrd:
            boot["initrd"] = initrd
        if cmdline is not None:
            boot["cmdline"] = cmdline
        d = {"name": "vm", "vcpus": cfg.vcpus, "memory": "%dM" % (memory_mib or cfg.memory_mib),
             "cpu": cfg.vmmd_cpu, "boot": boot, "serial": {"log": self.console}}
        self.def_path = os.path.join(self.dir, "vm.json")
        with open(self.def_path, "w") as f:
            json.dump(d, f)
        self.log = open(os.path.join(self.dir, "vmmd.log"), "ab")
        self.t_exec = time.monotonic()
        # With a @wrapper (perf stat), proc is the wrapper and vmmd its child.
        self.proc = register(subprocess.Popen(
            list(wrapper or []) +
            [cfg.vmmd, "--run-vm", self.def_path, "--run-dir", os.path.join(self.dir, "run")],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT))
        self.wrapped = bool(wrapper)

    @property
    def pid(self):
        """vmmd's pid (not meaningful under a wrapper)."""
        return self.proc.pid

    def stop_child(self):
        """Stop vmmd under a wrapper, which then exits by itself."""
        if not self.wrapped or self.proc.poll() is not None:
            return
        try:
            with open("/proc/%d/task/%d/children" % (self.proc.pid, self.proc.pid)) as f:
                kids = [int(x) for x in f.read().split()]
        except OSError:
            kids = []
        for k in kids:
            try:
                os.kill(k, 15)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass

    def log_tail(self, n=400):
        with open(os.path.join(self.dir, "vmmd.log"), "rb") as f:
            return f.read().decode(errors="replace")[-n:].strip()

    def stop(self):
        reap(self.proc, timeout=10.0)
        self.log.close()
