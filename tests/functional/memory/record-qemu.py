#!/usr/bin/env python3
"""Record QEMU 7.2's answers for virtio-mem and the memory queries (golden
traces compared by test-virtio-mem.py).

Two parts, written to tests/functional/memory/qemu-7.2-virtio-mem.json:

- "qmp": qemu-system-x86_64 -machine pc,accel=kvm -m 128M,maxmem=1G
  stopped with -S (no driver runs) with a cold-plugged virtio-mem-pci
  (memory-backend-ram mem0, 256 MiB, requested-size 64 MiB), then the
  steps of QMP_SEQUENCE: the answer (return, or error class and
  description) of each. "no-maxmem" is the same machine without maxmem.
- "guest": the same machine running tests/guests/virtio-mem.elf (PVH entry,
  -kernel): the guest's "vmem: " transcript and the MEMORY_DEVICE_SIZE_CHANGE
  events after each requested-size change of GUEST_STEPS.

and to qemu-7.2-balloon-stats.json: "qmp", BALLOON_SEQUENCE on -m 128 -S
with virtio-balloon-pci (id balloon0); "guest", guest-stats after
tests/guests/balloon-stats.elf has refilled its statistics buffer twice.

    tests/functional/memory/record-qemu.py BUILDDIR [OUT.json]
"""

import json
import os
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
MiB = 1 << 20

MACHINE = ["qemu-system-x86_64", "-machine", "pc,accel=kvm", "-cpu", "qemu64,-cx16",
           "-nodefaults", "-display", "none"]
MEMDEV = ["-object", "memory-backend-ram,id=mem0,size=256M",
          "-device", "virtio-mem-pci,id=vmem0,memdev=mem0,requested-size=64M"]

P = "/machine/peripheral/vmem0"
QMP_SEQUENCE = [
    ["query-memory-devices", "query-memory-devices", {}],
    ["query-memory-size-summary", "query-memory-size-summary", {}],
    ["qom-get requested-size", "qom-get", {"path": P, "property": "requested-size"}],
    ["qom-get size", "qom-get", {"path": P, "property": "size"}],
    ["qom-get block-size (short path)", "qom-get", {"path": "vmem0", "property": "block-size"}],
    ["qom-set requested-size", "qom-set",
     {"path": P, "property": "requested-size", "value": 128 * MiB}],
    ["qom-set misaligned", "qom-set", {"path": P, "property": "requested-size", "value": 1234}],
    ["qom-set above the backend", "qom-set",
     {"path": P, "property": "requested-size", "value": 512 * MiB}],
    ["qom-set string", "qom-set", {"path": P, "property": "requested-size", "value": "64M"}],
    ["qom-set negative", "qom-set", {"path": P, "property": "requested-size", "value": -2}],
    ["qom-set size", "qom-set", {"path": P, "property": "size", "value": 0}],
    ["qom-set unknown property", "qom-set", {"path": P, "property": "nosuch", "value": 0}],
    ["qom-set unknown device", "qom-set",
     {"path": "nosuch", "property": "requested-size", "value": 0}],
    ["qom-get unknown absolute path", "qom-get",
     {"path": "/machine/peripheral/nosuch", "property": "size"}],
    ["qom-get after", "qom-get", {"path": "vmem0", "property": "requested-size"}],
    ["query-memory-devices after", "query-memory-devices", {}],
    ["device_del", "device_del", {"id": "vmem0"}],
]

NO_MAXMEM_SEQUENCE = [
    ["query-memory-devices", "query-memory-devices", {}],
    ["query-memory-size-summary", "query-memory-size-summary", {}],
]

# [requested-size, the transcript line the guest prints once it has converged]
GUEST_STEPS = [
    [None, "vmem: plugged 67108864 "],
    [16 * MiB, "vmem: plugged 16777216 "],
    [128 * MiB, "vmem: plugged 134217728 "],
    [0, "vmem: plugged 0 "],
]


class QMP:
    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(30)
        for _ in range(400):
            try:
                self.sock.connect(path)
                break
            except OSError:
                time.sleep(0.05)
        self.buf = b""
        self.events = []
        self.recv()
        self.cmd("qmp_capabilities")

    def recv(self):
        while b"\n" not in self.buf:
            d = self.sock.recv(65536)
            if not d:
                raise EOFError
            self.buf += d
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def cmd(self, name, args=None):
        msg = {"execute": name}
        if args is not None:
            msg["arguments"] = args
        self.sock.sendall(json.dumps(msg).encode() + b"\r\n")
        while True:
            m = self.recv()
            if "event" in m:
                self.events.append(m)
            else:
                return m

    def drain(self, wait):
        self.sock.settimeout(wait)
        try:
            while True:
                m = self.recv()
                if "event" in m:
                    self.events.append(m)
        except (socket.timeout, TimeoutError):
            pass
        finally:
            self.sock.settimeout(30)
        ev, self.events = self.events, []
        return ev


def run_steps(q, seq):
    steps = []
    for name, cmd, args in seq:
        r = q.cmd(cmd, args)
        step = {"step": name, "execute": cmd, "arguments": args}
        if "error" in r:
            step["error"] = {"class": r["error"]["class"], "desc": r["error"]["desc"]}
        else:
            step["return"] = r["return"]
        steps.append(step)
    return steps


def qemu(tmp, extra):
    sock = os.path.join(tmp, "qmp.sock")
    if os.path.exists(sock):
        os.unlink(sock)
    p = subprocess.Popen(MACHINE + extra + ["-qmp", "unix:%s,server=on,wait=off" % sock],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return p, QMP(sock)


def stop(p, q):
    try:
        q.cmd("quit")
    except (OSError, EOFError):
        pass
    try:
        p.wait(timeout=10)
    except subprocess.TimeoutExpired:
        p.kill()


def transcript(path):
    try:
        with open(path, "rb") as f:
            text = f.read().decode(errors="replace").replace("\r\n", "\n")
    except OSError:
        return []
    return [ln for ln in text.split("\n") if ln.startswith("vmem: ")]


def record_guest(tmp, elf):
    log = os.path.join(tmp, "console.log")
    p, q = qemu(tmp, ["-m", "128M,maxmem=1G"] + MEMDEV +
                ["-kernel", elf, "-serial", "file:" + log])
    out = []
    try:
        for value, line in GUEST_STEPS:
            if value is not None:
                r = q.cmd("qom-set", {"path": P, "property": "requested-size", "value": value})
                assert r == {"return": {}}, r
            deadline = time.monotonic() + 300
            while not any(ln.startswith(line) for ln in transcript(log)[len(sum(
                    (s["transcript"] for s in out), [])):]):
                assert time.monotonic() < deadline, transcript(log)
                time.sleep(0.2)
            # the throttle delivers the latest size within a second
            events = q.drain(2.5)
            seen = sum((s["transcript"] for s in out), [])
            out.append({"requested-size": value, "transcript": transcript(log)[len(seen):],
                        "events": [{"event": e["event"], "data": e["data"]} for e in events]})
    finally:
        stop(p, q)
    return out


B = "/machine/peripheral/balloon0"
BALLOON_SEQUENCE = [
    ["guest-stats before polling", "qom-get", {"path": B, "property": "guest-stats"}],
    ["polling interval", "qom-get", {"path": B, "property": "guest-stats-polling-interval"}],
    ["interval negative", "qom-set",
     {"path": B, "property": "guest-stats-polling-interval", "value": -1}],
    ["interval string", "qom-set",
     {"path": B, "property": "guest-stats-polling-interval", "value": "x"}],
    ["interval too big", "qom-set",
     {"path": B, "property": "guest-stats-polling-interval", "value": 1 << 32}],
    ["interval 2", "qom-set",
     {"path": B, "property": "guest-stats-polling-interval", "value": 2}],
    ["interval after", "qom-get", {"path": B, "property": "guest-stats-polling-interval"}],
    ["interval 0", "qom-set",
     {"path": B, "property": "guest-stats-polling-interval", "value": 0}],
    ["guest-stats short path", "qom-get", {"path": "balloon0", "property": "guest-stats"}],
    ["unknown property", "qom-get", {"path": "balloon0", "property": "actual"}],
    ["unknown device", "qom-get", {"path": "/machine/peripheral/nope", "property": "guest-stats"}],
]


def record_balloon(tmp, elf):
    doc = {"about": "QEMU's answers for balloon statistics; written by record-qemu.py"}
    dev = ["-m", "128", "-device", "virtio-balloon-pci,id=balloon0,disable-legacy=on"]
    p, q = qemu(tmp, dev + ["-S"])
    try:
        doc["qmp"] = run_steps(q, BALLOON_SEQUENCE)
    finally:
        stop(p, q)
    log = os.path.join(tmp, "balloon.log")
    p, q = qemu(tmp, dev + ["-kernel", elf, "-serial", "file:" + log])
    try:
        deadline = time.monotonic() + 300
        while "stats: ready" not in open(log, errors="replace").read() if os.path.exists(
                log) else True:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        t0 = int(time.time())
        r = q.cmd("qom-set", {"path": B, "property": "guest-stats-polling-interval",
                              "value": 1})
        assert r == {"return": {}}, r
        while "stats: round 2" not in open(log, errors="replace").read():
            assert time.monotonic() < deadline
            time.sleep(0.2)
        st = q.cmd("qom-get", {"path": B, "property": "guest-stats"})["return"]
        assert st["last-update"] >= t0, st
        st["last-update"] = "@NONZERO@"
        doc["guest"] = st
    finally:
        stop(p, q)
    return doc


def main():
    builddir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "..", "..")
    out_path = sys.argv[2] if len(sys.argv) > 2 else os.path.join(HERE, "qemu-7.2-virtio-mem.json")
    elf = os.path.join(builddir, "tests", "guests", "virtio-mem.elf")
    doc = {"about": "QEMU's answers for virtio-mem; written by record-qemu.py"}
    with tempfile.TemporaryDirectory() as tmp:
        p, q = qemu(tmp, ["-m", "128M,maxmem=1G", "-S"] + MEMDEV)
        try:
            v = q.cmd("query-version")["return"]["qemu"]
            doc["qemu"] = "%d.%d.%d" % (v["major"], v["minor"], v["micro"])
            doc["qmp"] = run_steps(q, QMP_SEQUENCE)
        finally:
            stop(p, q)
        p, q = qemu(tmp, ["-m", "128M", "-S"])
        try:
            doc["no-maxmem"] = run_steps(q, NO_MAXMEM_SEQUENCE)
        finally:
            stop(p, q)
        doc["guest"] = record_guest(tmp, elf)
        bdoc = record_balloon(tmp, os.path.join(builddir, "tests", "guests", "balloon-stats.elf"))
    with open(out_path, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    with open(os.path.join(os.path.dirname(out_path), "qemu-7.2-balloon-stats.json"), "w") as f:
        json.dump(bdoc, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
