#!/usr/bin/env python3
"""Record QEMU 7.2's inject-nmi as a golden trace (tests/functional/golden/
nmi.json) for test-nmi.py.

qemu-system-x86_64 -machine pc,accel=kvm runs tests/guests/nmi.elf (booted
through its PVH note) on one vCPU, which counts the NMIs it takes and
prints the count after each. (The guest's AP start-up, smp.c's, does not
get an AP running under QEMU's PVH boot here; vmmd's two-vCPU case follows
QEMU's x86_nmi(), which sends an NMI to every CPU.) Recorded: the console after start, after
each of two inject-nmi, after one sent while the VM is stopped (before and
after cont), and the answers (also to an unexpected argument).

Usage: tests/functional/make-golden-nmi.py GUEST.elf [QEMU]"""

import importlib.util
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("golden_migration",
                                               os.path.join(HERE, "make-golden-migration.py"))
golden_migration = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(golden_migration)

GUEST = sys.argv[1]
QEMU = sys.argv[2] if len(sys.argv) > 2 else "qemu-system-x86_64"
OUT = os.path.join(HERE, "golden", "nmi.json")


def console(log):
    with open(log, errors="replace") as f:
        return f.read()


def wait_lines(log, n, timeout=30):
    end = time.time() + timeout
    while console(log).count("\n") < n:
        assert time.time() < end, console(log)
        time.sleep(0.1)
    time.sleep(0.5)  # nothing more should come
    return console(log).splitlines()


def main():
    with tempfile.TemporaryDirectory() as tmp:
        log = os.path.join(tmp, "console.log")
        path = os.path.join(tmp, "qmp")
        p = subprocess.Popen([QEMU, "-machine", "pc,accel=kvm", "-cpu", "host,-cx16,-xsave,-arch-capabilities",
                              "-m", "32", "-smp", "1", "-nodefaults", "-display", "none",
                              "-kernel", GUEST, "-serial", "file:" + log,
                              "-qmp", "unix:%s,server=on,wait=off" % path],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            q = golden_migration.Qmp(path)
            out = {"qemu": q.cmd("query-version")["return"]["qemu"]}
            out["console-ready"] = wait_lines(log, 1)
            out["inject-nmi"] = q.cmd("inject-nmi")
            out["console-after-one"] = wait_lines(log, 2)
            q.cmd("inject-nmi")
            out["console-after-two"] = wait_lines(log, 3)
            out["inject-nmi-argument"] = q.cmd("inject-nmi", cpu=0)
            q.cmd("stop")
            out["inject-nmi-stopped"] = q.cmd("inject-nmi")
            time.sleep(1)
            out["console-while-stopped"] = console(log).splitlines()
            q.cmd("cont")
            out["console-after-cont"] = wait_lines(log, 4)
            out["events"] = sorted({e["event"] for e in q.events})
        finally:
            p.kill()
            p.wait()
    golden_migration.write_golden(OUT, out)


if __name__ == "__main__":
    main()
