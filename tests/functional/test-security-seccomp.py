#!/usr/bin/env python3
"""seccomp filters per thread kind (issue 14, item 5): every thread of vmmd
runs filtered (Seccomp: 2), vCPU threads under their own narrower list; a
forbidden call in one VM's thread ends that VM, logged with the syscall, and
not the daemon or another VM; "seccomp = off" turns the filters off."""

import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vmmdtest import Vmmd, main, require_tool, wait_for  # noqa: E402
from daemon_helpers import guest, vm_def, wait_console  # noqa: E402


def threads(pid):
    out = {}
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/status" % (pid, tid)) as f:
                st = dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
        except FileNotFoundError:
            continue
        out[tid] = st
    return out


def test_every_thread_filtered_and_vcpu_narrower():
    idle = guest("idle")
    with Vmmd() as d:
        q = d.qmp()
        q.ok("vm-create", dict(vm_def("one", idle), start=True))
        wait_console(d, "one", "idle: up")
        ts = threads(d.proc.pid)
        names = sorted(st["Name"] for st in ts.values())
        assert "vcpu0" in names and "vm-io" in names, names
        for tid, st in ts.items():
            assert st["Seccomp"].strip() == "2", (st["Name"], st["Seccomp"])
            assert st["NoNewPrivs"].strip() == "1", (st["Name"], st["NoNewPrivs"])
            if st["Name"] in ("vcpu0", "vm-io"):
                # The control thread's list plus the kind's own.
                assert int(st["Seccomp_filters"]) >= 2, (st["Name"], st["Seccomp_filters"])
        assert "seccomp filters on" in d.read_log()
        # io_uring requests pass no filter: the block layer's rings are restricted
        assert "block I/O: io_uring rings restricted to readv, writev and fsync" \
            in d.read_log(), d.read_log()
        q.ok("vm-destroy", vm="one")


def test_forbidden_call_ends_only_that_vm():
    idle = guest("idle")
    with Vmmd(env={"VMMD_SECCOMP_SELFTEST": "bad"}) as d:
        q = d.qmp()
        q.ok("vm-create", dict(vm_def("good", idle), start=True))
        wait_console(d, "good", "idle: up")
        q.ok("vm-create", dict(vm_def("bad", idle), start=True))
        ev = q.event("SHUTDOWN", timeout=30, pred=lambda e: e["data"]["vm"] == "bad")
        assert ev["data"]["reason"] == "host-error", ev
        log = d.read_log()
        assert "forbidden system call 41 in a vcpu thread" in log, log
        assert "[bad] seccomp: a thread of this VM made the forbidden system call 41 " \
               "(socket)" in log, log
        assert q.ok("query-status", vm="good")["status"] == "running"
        assert q.ok("query-status", vm="bad")["status"] == "shutdown"
        assert d.proc.poll() is None


def test_forbidden_call_in_io_thread_ends_only_that_vm():
    """The I/O thread's own list: no directory changes (mkdir)."""
    idle = guest("idle")
    with Vmmd(env={"VMMD_SECCOMP_SELFTEST": "io:bad"}) as d:
        q = d.qmp()
        q.ok("vm-create", dict(vm_def("good", idle), start=True))
        wait_console(d, "good", "idle: up")
        q.ok("vm-create", dict(vm_def("bad", idle), start=True))
        ev = q.event("SHUTDOWN", timeout=30, pred=lambda e: e["data"]["vm"] == "bad")
        assert ev["data"]["reason"] == "host-error", ev
        log = d.read_log()
        assert "forbidden system call 83 in a io thread" in log, log
        assert "(mkdir)" in log, log
        assert not os.path.exists("/vmmd-seccomp-selftest")
        assert q.ok("query-status", vm="good")["status"] == "running"
        assert d.proc.poll() is None


def test_forbidden_call_in_block_helper_ends_only_that_vm():
    """A block-layer worker thread of a VM's disk (qcow2 requests of the
    virtio-blk test guest go to the pool) works for that VM: a forbidden
    call there ends that VM as on its I/O thread; another VM doing the same
    disk I/O finishes, an idle one keeps running."""
    require_tool("qemu-img")
    idle = guest("idle")
    blk = guest("virtio-blk")
    with Vmmd(env={"VMMD_SECCOMP_SELFTEST": "helper:bad"}) as d:
        disks = {}
        for name in ("good", "bad"):
            disks[name] = os.path.join(d.tmp, name + ".qcow2")
            subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", disks[name], "4M"],
                           check=True)
        q = d.qmp()
        q.ok("vm-create", dict(vm_def("idle", idle), start=True))
        wait_console(d, "idle", "idle: up")
        q.ok("vm-create", dict(vm_def("bad", blk, disks=[
            {"id": "vda", "file": disks["bad"], "format": "qcow2"}]), start=True))
        ev = q.event("SHUTDOWN", timeout=60, pred=lambda e: e["data"]["vm"] == "bad")
        assert ev["data"]["reason"] == "host-error", ev
        log = d.read_log()
        assert "forbidden system call 83 in a io-helper thread: failed, its VM is stopped" \
            in log, log
        assert "[bad] seccomp: a thread of this VM made the forbidden system call 83 " \
               "(mkdir)" in log, log
        assert not os.path.exists("/vmmd-seccomp-selftest")
        q.ok("vm-create", dict(vm_def("good", blk, disks=[
            {"id": "vda", "file": disks["good"], "format": "qcow2"}]), start=True))
        wait_console(d, "good", "blk: done", timeout=120)
        assert "[good] seccomp" not in d.read_log()
        assert q.ok("query-status", vm="idle")["status"] == "running"
        assert d.proc.poll() is None


def test_forbidden_call_while_setting_up_a_vm_ends_it():
    """A worker thread running one VM's set-up (vm_new) works for that VM:
    a forbidden call there ends it once built; another VM goes on."""
    idle = guest("idle")
    with Vmmd(env={"VMMD_SECCOMP_SELFTEST": "setup:bad"}) as d:
        q = d.qmp()
        q.ok("vm-create", dict(vm_def("good", idle), start=True))
        wait_console(d, "good", "idle: up")
        q.cmd("vm-create", dict(vm_def("bad", idle), start=True))
        ev = q.event("SHUTDOWN", timeout=60, pred=lambda e: e["data"]["vm"] == "bad")
        assert ev["data"]["reason"] == "host-error", ev
        log = d.read_log()
        assert "forbidden system call 80 in a job thread: failed, its VM is stopped" in log, log
        assert "[bad] seccomp: a thread of this VM made the forbidden system call 80 " \
               "(chdir)" in log, log
        assert "chdir passed" not in log, log
        assert q.ok("query-status", vm="good")["status"] == "running"
        # the same worker threads go on working for the daemon and other VMs
        q.ok("vm-create", dict(vm_def("later", idle), start=True))
        wait_console(d, "later", "idle: up")
        assert "[later] seccomp" not in d.read_log()
        assert d.proc.poll() is None


def test_forbidden_call_in_block_job_ends_that_vm():
    """A block job's thread works for its VM: a forbidden call there ends the
    VM (its jobs are cancelled with it); another VM goes on."""
    require_tool("qemu-img")
    idle = guest("idle")
    with Vmmd(env={"VMMD_SECCOMP_SELFTEST": "job:bad"}) as d:
        base = os.path.join(d.tmp, "base.qcow2")
        top = os.path.join(d.tmp, "top.qcow2")
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", base, "4M"], check=True)
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", base, "-F", "qcow2",
                        top], check=True)
        q = d.qmp()
        q.ok("vm-create", dict(vm_def("good", idle), start=True))
        wait_console(d, "good", "idle: up")
        q.ok("vm-create", dict(vm_def("bad", idle, disks=[
            {"id": "vda", "file": top, "format": "qcow2"}]), start=True))
        wait_console(d, "bad", "idle: up")
        assert "seccomp: forbidden" not in d.read_log()
        q.ok("block-stream", {"vm": "bad", "device": "vda", "speed": 4096})
        ev = q.event("SHUTDOWN", timeout=60, pred=lambda e: e["data"]["vm"] == "bad")
        assert ev["data"]["reason"] == "host-error", ev
        log = d.read_log()
        assert "forbidden system call 80 in a job thread: failed, its VM is stopped" in log, log
        assert "[bad] seccomp: a thread of this VM made the forbidden system call 80 " \
               "(chdir)" in log, log
        assert q.ok("query-status", vm="good")["status"] == "running"
        assert q.ok("query-jobs", vm="bad") == []
        assert d.proc.poll() is None


def test_forbidden_call_in_migration_thread_ends_that_vm():
    """The outgoing migration's thread works for its VM: a forbidden call
    there cancels the migration (a migrating VM cannot be destroyed) and
    then ends the VM; another VM goes on."""
    idle = guest("idle")
    with Vmmd(env={"VMMD_SECCOMP_SELFTEST": "migrate:bad"}) as d:
        q = d.qmp()
        for name in ("good", "bad"):
            q.ok("vm-create", dict(vm_def(name, idle), start=True))
            wait_console(d, name, "idle: up")
        # nobody listens there: the migration fails after the forbidden call anyway
        q.ok("migrate", {"vm": "bad", "uri": "unix:" + os.path.join(d.tmp, "nobody.sock")})
        ev = q.event("SHUTDOWN", timeout=60, pred=lambda e: e["data"]["vm"] == "bad")
        assert ev["data"]["reason"] == "host-error", ev
        log = d.read_log()
        assert "forbidden system call 80 in a job thread: failed, its VM is stopped" in log, log
        assert "[bad] seccomp: a thread of this VM made the forbidden system call 80 " \
               "(chdir)" in log, log
        assert q.ok("query-status", vm="good")["status"] == "running"
        assert d.proc.poll() is None


def test_forbidden_call_in_incoming_migration_thread_ends_that_vm():
    """The incoming migration's thread builds the VM it receives and works
    for it until the control thread adopts it: a forbidden call there ends
    the VM once adopted; another VM on the destination goes on."""
    idle = guest("idle")
    with Vmmd() as src, Vmmd(env={"VMMD_SECCOMP_SELFTEST": "migrate-in:m"}) as dst:
        qs = src.qmp()
        qs.ok("vm-create", dict(vm_def("m", idle), start=True))
        wait_console(src, "m", "idle: up")
        qd = dst.qmp()
        qd.ok("vm-create", dict(vm_def("good", idle), start=True))
        wait_console(dst, "good", "idle: up")
        qd.ok("vm-create", dict(vm_def("m", idle), incoming=True, start=True))
        sock = os.path.join(dst.tmp, "mig.sock")
        qd.ok("migrate-incoming", {"vm": "m", "uri": "unix:" + sock})
        qs.ok("migrate", {"vm": "m", "uri": "unix:" + sock})
        ev = qd.event("SHUTDOWN", timeout=120, pred=lambda e: e["data"]["vm"] == "m")
        assert ev["data"]["reason"] == "host-error", ev
        log = dst.read_log()
        assert "forbidden system call 80 in a job thread: failed, its VM is stopped" in log, log
        assert "[m] seccomp: a thread of this VM made the forbidden system call 80 " \
               "(chdir)" in log, log
        assert qd.ok("query-status", vm="good")["status"] == "running"
        assert dst.proc.poll() is None and src.proc.poll() is None


def test_job_thread_list():
    """Job (worker) threads working for no VM (between VM operations):
    a call outside their list fails with EPERM and is logged; the job and
    the daemon go on."""
    idle = guest("idle")
    with Vmmd(env={"VMMD_SECCOMP_SELFTEST": "job"}) as d:
        q = d.qmp()
        q.ok("vm-create", dict(vm_def("one", idle), start=True))
        wait_console(d, "one", "idle: up")
        log = d.read_log()
        assert "forbidden system call 80 in a job thread: failed with EPERM" in log, log
        assert "chdir passed" not in log, log
        assert q.ok("query-status", vm="one")["status"] == "running"
        q.ok("vm-destroy", vm="one")


def test_seccomp_off():
    d = Vmmd()
    conf = os.path.join(d.tmp, "vmmd.conf")
    with open(conf, "w") as f:
        f.write("seccomp = off\n")
    d.args += ["--config", conf]
    with d:
        d.qmp().ok("query-vms")
        for st in threads(d.proc.pid).values():
            assert st["Seccomp"].strip() == "0", st


if __name__ == "__main__":
    main(globals())
