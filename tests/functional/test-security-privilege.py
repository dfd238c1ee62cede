#!/usr/bin/env python3
"""Privilege after set-up (issue 14): a root-started vmmd keeps only the
capabilities vmmd.conf lists (by default those of the systemd unit's
bounding set) in every thread, with empty inheritable and ambient sets;
RLIMIT_NOFILE up to the hard limit, RLIMIT_CORE 0 (guest RAM in a dump)
unless configured; and vmmd runs as an unprivileged user whose only
privilege is a group that may open /dev/kvm.

The unprivileged run leaves the host's /dev/kvm (0600 root here) alone: a
copy of the device node, group 4712 mode 0660, is bind-mounted over
/dev/kvm in a private mount namespace (unshare -m), and vmmd runs there
as uid 4711 with 4712 as its only group (setpriv), holding no capability."""

import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vmmdtest import VMMD, Vmmd, main, require_tool, skip, wait_for  # noqa: E402
from daemon_helpers import guest, vm_def, wait_console  # noqa: E402

# CAP_CHOWN, DAC_OVERRIDE, FOWNER, NET_ADMIN, IPC_LOCK, SYS_NICE, SYS_RESOURCE
DEFAULT_KEEP = (1 << 0) | (1 << 1) | (1 << 3) | (1 << 12) | (1 << 14) | (1 << 23) | (1 << 24)
UID, KVM_GID = 4711, 4712


def status(pid, tid=None):
    path = "/proc/%d/task/%s/status" % (pid, tid) if tid else "/proc/%d/status" % pid
    with open(path) as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def limits(pid):
    out = {}
    with open("/proc/%d/limits" % pid) as f:
        for line in f.readlines()[1:]:
            name, soft, hard = line[:26].strip(), line[26:47].strip(), line[47:68].strip()
            out[name] = (soft, hard)
    return out


def caps(st, name):
    return int(st[name], 16)


def my_permitted():
    return caps(status(os.getpid()), "CapPrm")


def test_root_keeps_only_the_listed_capabilities():
    if os.geteuid() != 0:
        skip("needs root (the capability drop of a root-started daemon)")
    idle = guest("idle")
    with Vmmd() as d:
        q = d.qmp()
        q.ok("vm-create", dict(vm_def("one", idle), start=True))
        wait_console(d, "one", "idle: up")
        want = my_permitted() & DEFAULT_KEEP
        tids = os.listdir("/proc/%d/task" % d.proc.pid)
        assert len(tids) >= 3, tids
        for tid in tids:
            st = status(d.proc.pid, tid)
            assert caps(st, "CapEff") == want, (st["Name"], st["CapEff"], hex(want))
            assert caps(st, "CapPrm") == want, (st["Name"], st["CapPrm"])
            assert caps(st, "CapBnd") & ~DEFAULT_KEEP == 0, (st["Name"], st["CapBnd"])
            assert caps(st, "CapInh") == 0 and caps(st, "CapAmb") == 0, st["Name"]
        lim = limits(d.proc.pid)
        assert lim["Max core file size"][0] == "0", lim["Max core file size"]
        assert lim["Max open files"][0] == lim["Max open files"][1], lim["Max open files"]
        assert "capabilities: " in d.read_log() and "core dumps off" in d.read_log()
        q.ok("vm-destroy", vm="one")


def test_configured_capabilities_and_limits():
    if os.geteuid() != 0:
        skip("needs root")
    idle = guest("idle")
    d = Vmmd()
    conf = os.path.join(d.tmp, "vmmd.conf")
    with open(conf, "w") as f:
        f.write("capabilities = none\nlimit-nofile = 1024\nlimit-core = unlimited\n"
                "limit-memlock = 4M\n")
    d.args += ["--config", conf]
    with d:
        q = d.qmp()
        st = status(d.proc.pid)
        assert caps(st, "CapEff") == 0 and caps(st, "CapPrm") == 0, st["CapEff"]
        assert caps(st, "CapBnd") == 0, st["CapBnd"]
        lim = limits(d.proc.pid)
        assert lim["Max open files"][0] == "1024", lim["Max open files"]
        assert lim["Max core file size"][0] == "unlimited", lim["Max core file size"]
        assert lim["Max locked memory"][0] == str(4 << 20), lim["Max locked memory"]
        # root without capabilities still owns /dev/kvm, its files and the images
        q.ok("vm-create", dict(vm_def("one", idle), start=True))
        wait_console(d, "one", "idle: up")
        q.ok("vm-destroy", vm="one")
    bad = Vmmd()
    conf = os.path.join(bad.tmp, "vmmd.conf")
    with open(conf, "w") as f:
        f.write("capabilities = net_admin,warp_drive\n")
    p = subprocess.run([VMMD, "--config", conf, "--socket", bad.socket, "--state-dir",
                        bad.state_dir, "--run-dir", bad.run_dir], capture_output=True,
                       text=True, timeout=30)
    assert p.returncode != 0 and "'warp_drive' is not a capability name" in p.stderr, p.stderr
    shutil.rmtree(bad.tmp, ignore_errors=True)


class UnprivilegedVmmd(Vmmd):
    """vmmd as uid UID with only group @group, seeing a copy of /dev/kvm
    that group KVM_GID may open."""

    def __init__(self, group=KVM_GID):
        super().__init__()
        self.group = group
        self.socket = os.path.join(self.run_dir, "vmmd.sock")  # in a directory of the user

    def start(self, timeout=10.0):
        os.chmod(self.tmp, 0o755)
        for p in (self.state_dir, self.run_dir):
            os.makedirs(p, exist_ok=True)
            os.chown(p, UID, UID)
        node = os.path.join(self.tmp, "kvm")
        rdev = os.stat("/dev/kvm").st_rdev
        os.mknod(node, 0o600 | 0o020000, rdev)
        os.chown(node, 0, KVM_GID)
        os.chmod(node, 0o660)
        self.log = open(self.log_path, "ab")
        inner = ("mount --bind %s /dev/kvm && exec setpriv --reuid=%d --regid=%d --groups=%d "
                 "--inh-caps=-all --bounding-set=-all -- %s --socket %s --state-dir %s "
                 "--run-dir %s" % (node, UID, UID, self.group, VMMD, self.socket, self.state_dir,
                                   self.run_dir))
        self.proc = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c",
                                      inner], stdout=self.log, stderr=subprocess.STDOUT,
                                     env=self.env)

        def ready():
            if self.proc.poll() is not None:
                raise AssertionError("vmmd exited with %d at start:\n%s" %
                                     (self.proc.returncode, self.read_log()))
            return os.path.exists(self.socket)
        wait_for(ready, timeout, what="vmmd socket")
        return self


def test_unprivileged_user_in_the_kvm_group():
    if os.geteuid() != 0:
        skip("needs root to set up the user's view of /dev/kvm")
    require_tool("unshare")
    require_tool("setpriv")
    idle = guest("idle")
    # the guest image must be readable by the user: copy it into the VM's own directory
    with UnprivilegedVmmd() as d:
        kernel = os.path.join(d.tmp, "idle.elf")
        shutil.copy(idle, kernel)
        os.chmod(kernel, 0o644)
        q = d.qmp()
        st = status(d.proc.pid)
        assert st["Uid"].split()[:2] == [str(UID)] * 2, st["Uid"]
        assert st["Groups"].split() == [str(KVM_GID)], st["Groups"]
        for name in ("CapEff", "CapPrm", "CapInh", "CapAmb"):
            assert caps(st, name) == 0, (name, st[name])
        assert st["Seccomp"] == "2" and st["NoNewPrivs"] == "1", st
        q.ok("vm-create", dict(vm_def("u", kernel), start=True))
        wait_console(d, "u", "idle: up")
        assert q.ok("query-status", vm="u")["status"] == "running"
        # the files it made are the user's
        assert os.stat(os.path.join(d.state_dir, "vms")).st_uid == UID
        q.ok("vm-destroy", vm="u")
    # without the group the same user gets a clear error, not a crash
    with UnprivilegedVmmd(group=KVM_GID + 1) as d:
        kernel = os.path.join(d.tmp, "idle.elf")
        shutil.copy(idle, kernel)
        os.chmod(kernel, 0o644)
        q = d.qmp()
        r = q.cmd("vm-create", dict(vm_def("u", kernel), start=True))
        assert "error" in r and "/dev/kvm" in r["error"]["desc"], r
        assert d.proc.poll() is None
    # the host's /dev/kvm was never touched
    st = os.stat("/dev/kvm")
    assert st.st_mode & 0o777 == 0o600 and st.st_gid == 0, oct(st.st_mode)


if __name__ == "__main__":
    main(globals())
