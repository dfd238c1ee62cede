#!/usr/bin/env python3
"""Record QEMU's answers to the vCPU hotplug sequences (golden traces).

Two parts, written to tests/functional/hotplug/qemu-7.2-cpu.json and
compared by test-hotplug-cpu.py:

- "commands": QEMU stopped (-S, no guest code runs: the CPU hotplug block
  stays in its legacy mode, so device_del is refused), the command answers
  of COMMANDS.
- "guest": QEMU running tests/guests/cpuhp-noap.elf, the OS side of the
  CPU hotplug register protocol (the AP code left out: QEMU cannot run the
  real-mode AP trampoline on this kind of host), and the events of each
  step of GUEST up to the console line that ends it.

Both with -smp 1,sockets=1,cores=4,threads=1,maxcpus=4 (vmmd's topology
for vcpus 1, maxcpus 4) and -cpu qemu64; the type name is recorded as
@TYPE@, thread ids are dropped.

    tests/functional/hotplug/record-qemu-cpu.py BUILDDIR [OUT.json]
"""

import json
import os
import subprocess
import sys
import tempfile
import time
from importlib.machinery import SourceFileLoader

HERE = os.path.dirname(os.path.abspath(__file__))
rq = SourceFileLoader("record_qemu", os.path.join(HERE, "record-qemu.py")).load_module()

TYPE = "qemu64-x86_64-cpu"
SMP = "1,sockets=1,cores=4,threads=1,maxcpus=4"


def cpu(id_, core, **extra):
    a = {"driver": "@TYPE@", "socket-id": 0, "core-id": core, "thread-id": 0}
    if id_:
        a["id"] = id_
    a.update(extra)
    return a


# [name, command, arguments]
COMMANDS = [
    ["query-hotpluggable-cpus", "query-hotpluggable-cpus", {}],
    ["query-cpus-fast", "query-cpus-fast", {}],
    ["device_add cpu", "device_add", cpu("cpu1", 1)],
    ["device_add duplicate id", "device_add", cpu("cpu1", 2)],
    ["device_add present core", "device_add", cpu("cpu1b", 1)],
    ["device_add core out of range", "device_add", cpu("cpu9", 9)],
    ["device_add socket out of range", "device_add", cpu("cpus", 2, **{"socket-id": 1})],
    ["device_add thread out of range", "device_add", cpu("cput", 2, **{"thread-id": 1})],
    ["device_add no core-id", "device_add",
     {"driver": "@TYPE@", "id": "cpux", "socket-id": 0, "thread-id": 0}],
    ["device_add no socket-id", "device_add",
     {"driver": "@TYPE@", "id": "cpux", "core-id": 2, "thread-id": 0}],
    ["device_add wrong type", "device_add",
     dict(cpu("cpuy", 2), driver="Skylake-Client-x86_64-cpu")],
    ["query-hotpluggable-cpus after", "query-hotpluggable-cpus", {}],
    ["query-cpus-fast after", "query-cpus-fast", {}],
    ["device_del in legacy mode", "device_del", {"id": "cpu1"}],
    ["device_add pending id", "device_add", cpu("cpu1", 3)],
    ["device_del unknown", "device_del", {"id": "nosuch"}],
    ["system_reset", "system_reset", {}],
    ["query-hotpluggable-cpus after reset", "query-hotpluggable-cpus", {}],
]

# [name, command, arguments, console line that ends the step (count), or None]
GUEST = [
    ["device_add cpu1", "device_add", cpu("cpu1", 1), ["cpu 1 running", 1]],
    ["query-cpus-fast", "query-cpus-fast", {}, None],
    ["device_del cpu1", "device_del", {"id": "cpu1"}, ["cpu 1 ejected", 1]],
    ["query-hotpluggable-cpus", "query-hotpluggable-cpus", {}, None],
    ["device_add cpu1 again", "device_add", cpu("cpu1", 1), ["cpu 1 running", 2]],
    ["device_add cpu3", "device_add", cpu("cpu3", 3), ["cpu 3 running", 1]],
    ["device_del cpu3 refused", "device_del", {"id": "cpu3"}, ["cpu 3 eject refused", 1]],
    ["device_add pending id", "device_add", cpu("cpu3", 2), None],
    ["device_add present core", "device_add", cpu("cpu3b", 3), None],
    ["device_del cpu3 again", "device_del", {"id": "cpu3"}, ["cpu 3 ejected", 1]],
    ["device_del cpu1 again", "device_del", {"id": "cpu1"}, ["cpu 1 ejected", 2]],
    ["device_del gone", "device_del", {"id": "cpu1"}, None],
    ["query-cpus-fast at the end", "query-cpus-fast", {}, None],
]


def normalize(ret):
    """Drop what changes from run to run (thread ids); the type becomes @TYPE@."""
    s = json.dumps(ret).replace('"%s"' % TYPE, '"@TYPE@"')
    ret = json.loads(s)
    if isinstance(ret, list):
        for e in ret:
            if isinstance(e, dict):
                e.pop("thread-id", None)
    return ret


def step_record(name, cmd, args, r, events):
    step = {"step": name, "execute": cmd, "arguments": args}
    if "error" in r:
        step["error"] = {"class": r["error"]["class"], "desc": r["error"]["desc"]}
    else:
        step["return"] = normalize(r["return"])
    step["events"] = [{"event": e["event"], "data": e.get("data", {})} for e in events]
    return step


def qemu(tmp, extra):
    sock = os.path.join(tmp, "qmp.sock")
    p = subprocess.Popen(
        ["qemu-system-x86_64", "-machine", "pc,accel=kvm", "-cpu", "qemu64", "-smp", SMP,
         "-m", "128", "-nodefaults", "-display", "none",
         "-qmp", "unix:%s,server=on,wait=off" % sock] + extra,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return p, rq.QMP(sock)


def subst(args):
    return json.loads(json.dumps(args).replace("@TYPE@", TYPE))


def record_commands():
    with tempfile.TemporaryDirectory() as tmp:
        p, q = qemu(tmp, ["-S"])
        try:
            version = q.cmd("query-version")["return"]["qemu"]
            steps = []
            for name, cmd, args in COMMANDS:
                r = q.cmd(cmd, subst(args))
                steps.append(step_record(name, cmd, args, r, q.drain()))
            q.cmd("quit")
        finally:
            p.wait(timeout=10)
    return version, steps


def record_guest(builddir):
    elf = os.path.join(builddir, "tests", "guests", "cpuhp-noap.elf")
    with tempfile.TemporaryDirectory() as tmp:
        con = os.path.join(tmp, "console")
        p, q = qemu(tmp, ["-kernel", elf, "-serial", "file:" + con])

        def console():
            try:
                with open(con) as f:
                    return f.read()
            except OSError:
                return ""

        def wait(text, count, timeout=60):
            deadline = time.monotonic() + timeout
            while console().count(text) < count:
                if time.monotonic() > deadline:
                    raise RuntimeError("QEMU's guest lacks %r: %s" % (text, console()))
                time.sleep(0.05)

        try:
            wait("cpuhp: ready", 1)
            steps = []
            for name, cmd, args, until in GUEST:
                r = q.cmd(cmd, subst(args))
                if until:
                    wait(*until)
                steps.append(step_record(name, cmd, args, r, q.drain(0.5)))
                steps[-1]["until"] = until
            log = console()
            q.cmd("quit")
        finally:
            p.wait(timeout=10)
    return steps, log


def main():
    builddir = sys.argv[1] if len(sys.argv) > 1 else "build"
    out = sys.argv[2] if len(sys.argv) > 2 else os.path.join(HERE, "qemu-7.2-cpu.json")
    version, commands = record_commands()
    guest, log = record_guest(builddir)
    doc = {"about": "QEMU's answers to the vCPU hotplug sequences; written by "
                    "record-qemu-cpu.py",
           "qemu": "%d.%d.%d" % (version["major"], version["minor"], version["micro"]),
           "machine": "pc,accel=kvm -cpu qemu64 -smp " + SMP,
           "commands": commands,
           "guest": guest,
           "guest-console": log.splitlines()}
    with open(out, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
