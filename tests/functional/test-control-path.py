#!/usr/bin/env python3
"""The control path of issue 16: stop runs on a worker (answered once the
vCPUs are parked, a destroy from another client meanwhile goes after it),
the per-phase setup log at --log-level debug, the worker threads left
idle after a burst, and threads that take their own faults. No timing is
asserted."""

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time

SCHED_DEADLINE = 6  # not in Python's os module

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vmmdtest  # noqa: E402
from vmmdtest import Skip, Vmmd, main, require_tool, wait_for  # noqa: E402
from daemon_helpers import console_log, guest, vm_def, wait_console  # noqa: E402


def test_stop_answers_when_paused():
    idle = guest("idle")
    with Vmmd() as d:
        q = d.qmp()
        q.ok("vm-create", dict(vm_def("s", idle), start=True))
        wait_console(d, "s", "idle: up")
        for _ in range(5):
            q.ok("stop", vm="s")
            # the answer comes after the pause: the state is final
            assert q.ok("query-status", vm="s")["status"] == "paused"
            q.event("STOP", timeout=10)
            q.ok("stop", vm="s")  # stopping a stopped VM is no error
            q.ok("cont", vm="s")
            assert q.ok("query-status", vm="s")["status"] == "running"
        # HMP's stop waits too
        q.ok("human-monitor-command", {"vm": "s", "command-line": "stop"})
        assert q.ok("query-status", vm="s")["status"] == "paused"
        q.ok("vm-delete", vm="s", force=True)


def test_destroy_during_stop_goes_after_it():
    idle = guest("idle")
    with Vmmd() as d:
        q = d.qmp()
        other = d.qmp()
        for i in range(8):
            name = "r%d" % i
            q.ok("vm-create", dict(vm_def(name, idle), start=True))
            wait_console(d, name, "idle: up")
            # both in flight at once: stop from one client, vm-destroy from another
            q.send_raw(json.dumps({"execute": "stop", "arguments": {"vm": name}}) + "\n")
            other.send_raw(json.dumps({"execute": "vm-destroy", "arguments": {"vm": name}}) +
                           "\n")
            a, b = q.reply(), other.reply()
            assert "return" in a, a
            # the destroy either waited for the pause or found the VM busy
            assert "return" in b or "being paused" in b["error"]["desc"], b
            if "error" in b:
                other.ok("vm-destroy", vm=name)
            assert q.ok("query-status", vm=name)["status"] == "shutdown"
            q.ok("vm-delete", vm=name)
        # the daemon is still whole
        assert q.ok("query-vms") == []


def test_setup_phases_in_debug_log():
    idle = guest("idle")
    with Vmmd(args=["--log-level", "debug"]) as d:
        q = d.qmp()
        q.ok("vm-create", dict(vm_def("p", idle), start=True))
        wait_console(d, "p", "idle: up")
        log = d.read_log()
        lines = [x for x in log.splitlines() if "[p] setup ms:" in x]
        assert len(lines) == 1, log[-3000:]
        line = lines[0]
        for phase in ("define", "worker", "build", "kvm-vm", "control", "socket", "start",
                      "total"):
            assert re.search(r"\b%s [0-9]+\.[0-9]{2}\b" % re.escape(phase), line), line
        assert ("control thread at SCHED_FIFO 1" in log or
                "control thread at SCHED_DEADLINE, 8 of every 10 ms" in log or
                "control thread not real-time" in log), log[-3000:]
    with Vmmd() as d:  # default level: no setup lines
        q = d.qmp()
        q.ok("vm-create", dict(vm_def("p", idle), start=True))
        wait_console(d, "p", "idle: up")
        log = d.read_log()
        assert "setup ms:" not in log
        # a control thread (the main thread) that is not real-time says so by default
        rt = os.sched_getscheduler(d.proc.pid) & ~0x40000000 in (os.SCHED_FIFO, SCHED_DEADLINE)
        assert rt != ("control thread not real-time" in log), (rt, log[-2000:])


def test_control_thread_steps_down_under_a_flood():
    """A real-time control thread that uses most of a CPU (16 clients
    sending query-status back to back) steps down to nice -5, and back up
    once it is light again (daemon/control-sched.h)."""
    loader = os.path.join(vmmdtest.TOP_BUILDDIR, "tests", "bench", "qmp-load")
    if not os.access(loader, os.X_OK):
        raise Skip("tests/bench/qmp-load is not built (make check builds it)")
    idle = guest("idle")
    with Vmmd(args=["--log-level", "debug"]) as d:
        q = d.qmp()
        log = d.read_log()
        if "control thread not real-time" in log:
            raise Skip("the control thread got no real-time policy here")
        rt = os.sched_getscheduler(d.proc.pid) & ~0x40000000
        assert rt in (os.SCHED_FIFO, SCHED_DEADLINE), rt
        q.ok("vm-create", vm_def("vm0", idle))
        down = "nice -5 until it is light again"
        for _ in range(5):  # on a loaded host the clients may be too slow to flood it
            p = subprocess.run([loader, "--duration", "1", "--clients", "16", "--vms", "1",
                                "--vm-prefix", "vm", d.socket], capture_output=True,
                               text=True, timeout=60)
            assert p.returncode == 0, p.stderr
            if down in d.read_log():
                break
        log = d.read_log()
        assert down in log, log[-2000:]
        # light again: one command after a quiet window
        time.sleep(0.1)
        q.ok("query-status", vm="vm0")
        wait_for(lambda: os.sched_getscheduler(d.proc.pid) & ~0x40000000 == rt,
                 what="the control thread back at its real-time policy")
        assert re.search(r"control thread used [0-9]+% of a CPU: back at SCHED_",
                         d.read_log()), d.read_log()[-2000:]


def test_burst_leaves_few_idle_workers():
    idle = guest("idle")
    with Vmmd() as d:
        errors = []

        def client(k):
            try:
                c = d.qmp()
                c.ok("vm-create", dict(vm_def("b%d" % k, idle), start=True))
                c.ok("vm-delete", vm="b%d" % k, force=True)
                c.close()
            except Exception as e:
                errors.append(e)

        ts = [threading.Thread(target=client, args=(k,)) for k in range(24)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        assert not errors, errors

        def workers():
            n = 0
            for t in os.listdir("/proc/%d/task" % d.proc.pid):
                try:
                    with open("/proc/%d/task/%s/comm" % (d.proc.pid, t)) as f:
                        n += f.read().strip() == "vmmd-job"
                except OSError:
                    pass
            return n

        # worker.c's WORKERS_IDLE_MAX
        wait_for(lambda: workers() <= 16, 30, what="idle workers down to 16")


def nice_by_thread(pid):
    """{comm: set of nice values} of the process's threads (field 19 of stat)."""
    out = {}
    for t in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/stat" % (pid, t)) as f:
                stat = f.read()
        except OSError:
            continue  # exited meanwhile
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        out.setdefault(comm, set()).add(int(stat[stat.rindex(")") + 2:].split()[16]))
    return out


def stopped_writer(d, img):
    """VM "w" on @d, the blk-writer guest on the qcow2 disk @img, stopped
    after its first pass (stop is a job: at least one worker exists now);
    the client that made it."""
    q = d.qmp()
    q.ok("vm-create", dict(vm_def("w", guest("blk-writer"),
                                  disks=[{"id": "vda", "file": img, "format": "qcow2"}]),
                           start=True))
    wait_for(lambda: "ok crc" in console_log(d, "w"), timeout=60,
             what="the writer's first pass")
    q.ok("stop", vm="w")
    return q


def test_setup_runs_below_the_vms_threads():
    """Workers run job-nice (default 10) below the VMs' threads, and the
    threads they create for a VM (vCPU, I/O thread, block helpers of a qcow2
    disk under I/O) start at the VMs' own priority; job-nice = 0 in
    vmmd.conf puts the workers level with them."""
    require_tool("qemu-img")
    with tempfile.TemporaryDirectory(prefix="vmmd-nice.") as tmp:
        img = os.path.join(tmp, "d.qcow2")
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", img, "4M"], check=True)
        conf = os.path.join(tmp, "vmmd.conf")
        for job_nice, args in ((10, []), (0, ["--config", conf])):
            with open(conf, "w") as f:
                f.write("job-nice = 0\n")
            with Vmmd(args=args) as d:
                q = stopped_writer(d, img)
                nice = nice_by_thread(d.proc.pid)
                vm = os.getpriority(os.PRIO_PROCESS, 0)  # the daemon's own, as ours
                for comm in ("vcpu0", "vm-io"):
                    assert nice.get(comm) == {vm}, (comm, nice)
                assert nice.get("vmmd-job") == {vm + job_nice}, nice
                q.ok("vm-delete", vm="w", force=True)


FAULTS = (signal.SIGILL, signal.SIGTRAP, signal.SIGABRT, signal.SIGBUS, signal.SIGFPE,
          signal.SIGSEGV, signal.SIGSYS)


def fault_signals_blocked(pid, tid):
    """(name, the fault signals it blocks) of thread @tid of @pid; None once
    it is gone, or for the kernel's own threads (io_uring workers, KVM's NX
    recovery)."""
    try:
        with open("/proc/%d/task/%s/status" % (pid, tid)) as f:
            st = dict(x.split(":\t", 1) for x in f.read().splitlines() if ":\t" in x)
    except OSError:
        return None  # exited meanwhile
    if st["Name"].startswith(("iou-", "kvm-")):
        return None
    mask = int(st["SigBlk"], 16)
    return st["Name"], {n.name for n in FAULTS if mask >> (n - 1) & 1}


def test_threads_leave_fault_signals_unblocked():
    """No thread of the daemon blocks the signals of a fault: the kernel
    sends one to the faulting thread, and one found blocked kills the whole
    daemon without running a handler (no sanitizer report, no seccomp
    message, no log line). The control thread, workers, a VM's I/O thread,
    vCPU and block helpers of a qcow2 disk under I/O. A thread shows every
    signal blocked for an instant while glibc creates a thread from it or
    ends it, and so does an io_uring worker before it takes its name (it
    starts with its creator's, vm-io): a thread counts only if it still
    does a second later."""
    require_tool("qemu-img")
    with tempfile.TemporaryDirectory(prefix="vmmd-sig.") as tmp:
        img = os.path.join(tmp, "d.qcow2")
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", img, "4M"], check=True)
        with Vmmd() as d:
            q = stopped_writer(d, img)
            blocked = {}
            for t in os.listdir("/proc/%d/task" % d.proc.pid):
                seen = fault_signals_blocked(d.proc.pid, t)
                for _ in range(20):
                    if not seen or not seen[1]:
                        break
                    time.sleep(0.05)
                    seen = fault_signals_blocked(d.proc.pid, t)
                if seen:
                    # several threads share a name (workers): any of them counts
                    blocked.setdefault(seen[0], set()).update(seen[1])
            for comm in ("vmmd", "vmmd-job", "vm-io", "vcpu0"):
                assert comm in blocked, blocked
            assert not any(blocked.values()), blocked
            q.ok("vm-delete", vm="w", force=True)


if __name__ == "__main__":
    main(globals())
