#!/usr/bin/env python3
"""Save/restore benchmark: vmmd's vm-save/vm-restore against QEMU's
migrate-to-file and -incoming, for guests of each --sizes (default 64M;
the issue's set is 64M,512M,4G, which needs minutes and GiBs of disk).

The guest is tests/guests/memtouch.elf: it writes every page of its RAM
below the PCI hole once, then reads one word per page in a loop, printing
"memtouch: pass N" after each pass. Per size and VMM, each round:

  boot, wait for pass 2, save (vmmd: vm-save with stop; QEMU: stop, migrate
  to "exec:cat > FILE", since QEMU 7.2 has no file: URI), destroy;
  restore (vmmd: vm-restore; QEMU: a new process with -incoming defer, then
  migrate-incoming "exec:cat FILE", running when query-status says so);
  then wait for the first pass line and the next one.

Reported, median over rounds:
  restore_ms     the restore request until its vCPUs run (vmmd: the reply to
                 vm-restore, sent with the vCPUs started; QEMU: migrate-incoming
                 until query-status is "running", polled every millisecond, with
                 the cont its paused source state needs)
  first_pass_ms  from then until the guest finished its first full pass that
                 began after the restore: every page it has is touched once,
                 so lazily mapped RAM is faulted in from the file here
  warm_pass_ms   a full pass of the original VM before the save (reference)
  save_ms        the save request until it completed; save_mib_s its rate
                 over the guest's RAM size

Nothing here asserts a speed. Usage:
  tests/bench/vmstate.py [--build DIR] [--sizes 64M,512M,4G] [--rounds N]
                         [--only vmmd|qemu] [--tmp DIR]
Output: for each size, "BENCH {json}" lines in the harness's contract
(tests/bench/README: restore, first pass and save, samples per round for
both VMMs; rounds alternate the VMMs and which goes first), then a table.
tests/bench/run runs it as figure 9 through tests/bench/vmstate.sh.
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
QEMU = "qemu-system-x86_64"
QEMU_CPU = "host,-cx16,-xsave,-arch-capabilities"
VMMD_CPU = "host,-cx16,-xsave"
PASS = re.compile(rb"memtouch: pass (\d+)\r?\n")


class QMP:
    def __init__(self, path, timeout=60.0):
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.settimeout(timeout)
                self.sock.connect(path)
                break
            except OSError:
                self.sock.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        self.buf = b""
        self.events = []
        self.recv()
        self.ok("qmp_capabilities")

    def recv(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise RuntimeError("QMP connection closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def ok(self, name, args=None):
        msg = {"execute": name}
        if args is not None:
            msg["arguments"] = args
        self.sock.sendall(json.dumps(msg).encode() + b"\n")
        while True:
            r = self.recv()
            if "event" in r:
                self.events.append(r)
                continue
            if "return" not in r:
                raise RuntimeError("%s: %r" % (name, r.get("error", r)))
            return r["return"]

    def event(self, name, timeout):
        deadline = time.monotonic() + timeout
        while True:
            for i, e in enumerate(self.events):
                if e["event"] == name:
                    return self.events.pop(i)
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            if time.monotonic() > deadline:
                raise RuntimeError("no %s event" % name)
            try:
                self.events.append(self.recv())
            except socket.timeout:
                pass

    def close(self):
        self.sock.close()


def read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return b""


def wait_passes(console, n, timeout, since=0):
    """Monotonic times at which pass lines number since+1..since+n appeared."""
    times = []
    deadline = time.monotonic() + timeout
    seen = since
    while len(times) < n:
        k = len(PASS.findall(read(console)))
        while k > seen and len(times) < n:
            seen += 1
            times.append(time.monotonic())
        if time.monotonic() > deadline:
            raise RuntimeError("guest passes stalled at %d (%s)" % (seen, console))
        time.sleep(0.0005)
    return times, seen


def parse_size(s):
    m = re.fullmatch(r"(\d+)([MG])", s)
    if not m:
        raise SystemExit("bad size %r (use 64M, 4G)" % s)
    return int(m.group(1)) << (20 if m.group(2) == "M" else 30)


def median(v):
    v = sorted(v)
    return v[len(v) // 2] if v else None


# --- vmmd --------------------------------------------------------------------

def vmmd_round(build, guest, size, tmp):
    sock = os.path.join(tmp, "vmmd.sock")
    log = open(os.path.join(tmp, "vmmd.log"), "ab")
    d = subprocess.Popen([os.path.join(build, "vmmd"), "--socket", sock, "--state-dir",
                          os.path.join(tmp, "state"), "--run-dir", os.path.join(tmp, "run")],
                         stdout=log, stderr=subprocess.STDOUT)
    try:
        q = QMP(sock)
        console = os.path.join(tmp, "run", "vms", "b.console")
        q.ok("vm-create", {"name": "b", "vcpus": 1, "memory": size, "cpu": VMMD_CPU,
                           "boot": {"kernel": guest}, "start": True})
        t, _ = wait_passes(console, 3, 600)
        warm = (t[2] - t[1]) * 1000
        snap = os.path.join(tmp, "snap")
        t0 = time.monotonic()
        q.ok("vm-save", {"vm": "b", "path": snap, "stop": True})
        ev = q.event("VM_SAVE_COMPLETED", 3600)["data"]
        save = (time.monotonic() - t0) * 1000
        if ev["status"] != "completed":
            raise RuntimeError("vm-save failed: %s" % ev.get("error"))
        q.event("SHUTDOWN", 60)
        os.unlink(console)
        t0 = time.monotonic()
        q.ok("vm-restore", {"path": snap})
        t1 = time.monotonic()
        # the pass in progress at the save ends first; the next one is whole
        t, _ = wait_passes(console, 2, 600)
        q.ok("vm-destroy", {"vm": "b"})
        q.close()
        return {"restore_ms": (t1 - t0) * 1000, "first_pass_ms": (t[1] - t1) * 1000,
                "warm_pass_ms": warm, "save_ms": save}
    finally:
        d.send_signal(signal.SIGTERM)
        d.wait(60)
        log.close()


# --- QEMU --------------------------------------------------------------------

def qemu_cmd(guest, size, qmp, console, extra=()):
    return [QEMU, "-accel", "kvm", "-M", "pc", "-cpu", QEMU_CPU, "-m", str(size >> 20),
            "-nodefaults", "-no-user-config", "-display", "none", "-kernel", guest,
            "-serial", "file:" + console, "-qmp", "unix:%s,server=on,wait=off" % qmp] + \
        list(extra)


def qemu_round(guest, size, tmp):
    console = os.path.join(tmp, "q1.console")
    qmp = os.path.join(tmp, "q1.qmp")
    snap = os.path.join(tmp, "qemu.mig")
    p = subprocess.Popen(qemu_cmd(guest, size, qmp, console), stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    try:
        q = QMP(qmp)
        t, _ = wait_passes(console, 3, 600)
        warm = (t[2] - t[1]) * 1000
        t0 = time.monotonic()
        q.ok("stop")
        q.ok("migrate", {"uri": "exec:cat > " + snap})
        while q.ok("query-migrate").get("status") not in ("completed", "failed"):
            time.sleep(0.001)
        save = (time.monotonic() - t0) * 1000
        q.close()
    finally:
        p.kill()
        p.wait()
    console2 = os.path.join(tmp, "q2.console")
    qmp2 = os.path.join(tmp, "q2.qmp")
    p = subprocess.Popen(qemu_cmd(guest, size, qmp2, console2, ["-incoming", "defer"]),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        q = QMP(qmp2)
        t0 = time.monotonic()
        q.ok("migrate-incoming", {"uri": "exec:cat " + snap})
        # The source was stopped for the save, so the destination comes up
        # paused once the stream is read: cont is part of the restore.
        while True:
            st = q.ok("query-status")["status"]
            if st == "running":
                break
            if st in ("paused", "postmigrate"):
                q.ok("cont")
                continue
            if st not in ("inmigrate", "prelaunch"):
                raise RuntimeError("incoming QEMU in state %s" % st)
            time.sleep(0.001)
        t1 = time.monotonic()
        t, _ = wait_passes(console2, 2, 600)
        q.close()
        return {"restore_ms": (t1 - t0) * 1000, "first_pass_ms": (t[1] - t1) * 1000,
                "warm_pass_ms": warm, "save_ms": save}
    finally:
        p.kill()
        p.wait()


def loadavg():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


TITLES = {"restore_ms": "restore until the vCPUs run: vm-restore / migrate-incoming (file)",
          "first_pass_ms": "first pass over all RAM after a restore (lazy RAM faulted in)",
          "save_ms": "save: vm-save / QEMU stop + migrate to a file"}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default=os.environ.get("top_builddir") or
                    os.path.join(HERE, "..", "..", "build"))
    ap.add_argument("--sizes", default="64M")
    ap.add_argument("--rounds", type=int, default=int(os.environ.get("BENCH_ROUNDS") or 3))
    ap.add_argument("--only", choices=("vmmd", "qemu"))
    ap.add_argument("--tmp", default=os.environ.get("BENCH_TMP"),
                    help="scratch directory (default under /var/tmp)")
    args = ap.parse_args()
    guest = os.path.abspath(os.path.join(args.build, "tests", "guests", "memtouch.elf"))
    if not os.path.exists(guest) or not os.access("/dev/kvm", os.W_OK):
        print('BENCH {"figure": "vmstate", "skipped": "no /dev/kvm or memtouch.elf"}')
        return 77
    vmms = [args.only] if args.only else ["vmmd", "qemu"]
    skipped = {}
    if "qemu" in vmms and not shutil.which(QEMU):
        vmms.remove("qemu")
        skipped["qemu_skipped"] = "%s is not installed" % QEMU
    rows = []
    for size_s in args.sizes.split(","):
        size = parse_size(size_s)
        # Rounds alternate the VMMs, and which goes first (the harness contract).
        samples = {v: [] for v in vmms}
        loads = []
        for rnd in range(args.rounds):
            loads.append(loadavg())
            for vmm in (vmms if rnd % 2 == 0 else vmms[::-1]):
                tmp = tempfile.mkdtemp(prefix="bench-vmstate.", dir=args.tmp or "/var/tmp")
                try:
                    if vmm == "vmmd":
                        samples[vmm].append(vmmd_round(args.build, guest, size_s, tmp))
                    else:
                        samples[vmm].append(qemu_round(guest, size, tmp))
                finally:
                    shutil.rmtree(tmp, ignore_errors=True)
        for k in ("restore_ms", "first_pass_ms", "save_ms"):
            line = {"figure": "%s-%s" % (k[:-3].replace("_", "-"), size_s),
                    "title": "%s, %s guest" % (TITLES[k], size_s), "unit": "ms",
                    "load": loads, **skipped}
            for vmm in vmms:
                line[vmm] = [round(x[k], 2) for x in samples[vmm]]
            print("BENCH " + json.dumps(line), flush=True)
        for vmm in vmms:
            row = {"vmm": vmm, "size": size_s, "rounds": len(samples[vmm])}
            for k in ("restore_ms", "first_pass_ms", "warm_pass_ms", "save_ms"):
                row[k] = round(median([s[k] for s in samples[vmm]]), 2)
            row["save_mib_s"] = round((size >> 20) / (row["save_ms"] / 1000), 1)
            rows.append(row)
    print("\n%-6s %-5s %12s %14s %13s %9s %11s" % ("size", "vmm", "restore ms", "first pass ms",
                                                  "warm pass ms", "save ms", "save MiB/s"))
    for r in rows:
        print("%-6s %-5s %12.2f %14.1f %13.1f %9.1f %11.1f" % (
            r["size"], r["vmm"], r["restore_ms"], r["first_pass_ms"], r["warm_pass_ms"],
            r["save_ms"], r["save_mib_s"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
