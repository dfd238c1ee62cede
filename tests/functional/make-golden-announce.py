#!/usr/bin/env python3
"""Record QEMU 7.2's self-announcement as a golden trace
(tests/functional/golden/announce.json) for test-announce.py.

qemu-system-x86_64 -machine pc,accel=kvm (SeaBIOS finds nothing to boot)
with two NICs (virtio-net-pci and e1000, no option ROM), each on a UDP
socket netdev whose far end is a socket of this script, so every frame a
NIC sends is seen with its arrival time. Recorded: the announce-* migration
parameters (defaults, the answers to values at and beyond their bounds,
what they are after), announce-self's answers, the frames each call makes
on each NIC (count, gaps between them, the bytes of one), its interfaces
filter and named timers; what a stopped VM's announce-self sends, then
after cont; then a migration to a second QEMU whose NICs are captured the
same way: what the destination sends once the migration completes (with
its own announce-* values), and that the source sends nothing.

Usage: tests/functional/make-golden-announce.py [QEMU]"""

import importlib.util
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("golden_migration",
                                               os.path.join(HERE, "make-golden-migration.py"))
golden_migration = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(golden_migration)

QEMU = sys.argv[1] if len(sys.argv) > 1 else "qemu-system-x86_64"
OUT = os.path.join(HERE, "golden", "announce.json")
MACS = {"nic0": "52:54:00:12:34:01", "nic1": "52:54:00:12:34:02"}
DRIVERS = {"nic0": "virtio-net-pci", "nic1": "e1000"}
PARAMS = ("announce-initial", "announce-max", "announce-rounds", "announce-step")
DEFAULT = {"initial": 50, "max": 550, "rounds": 5, "step": 100}

# In order, each on what the ones before left: every parameter at and
# beyond its bounds, wrong types, then QEMU's defaults again.
SET_PARAMETERS = [
    {"announce-initial": -1}, {"announce-initial": 100001}, {"announce-initial": 100000},
    {"announce-initial": 0}, {"announce-max": 100001}, {"announce-max": 100000},
    {"announce-max": 0}, {"announce-rounds": 1001}, {"announce-rounds": -1},
    {"announce-rounds": 1000}, {"announce-rounds": 0}, {"announce-step": 0},
    {"announce-step": 10001}, {"announce-step": 10000}, {"announce-step": 1},
    {"announce-initial": 1.5}, {"announce-rounds": "5"},
    {"announce-rounds": 1001, "announce-step": 0},
    {"announce-initial": 50, "announce-max": 550, "announce-rounds": 5, "announce-step": 100},
]


class Capture:
    """A socket per NIC (@socks; by default a UDP socket on the loopback, the
    far end of the NIC's netdev), read by a thread: (time, bytes) per frame.
    test-announce.py reads taps with it."""

    def __init__(self, socks=None):
        if socks is None:
            socks = {}
            for nic in MACS:
                socks[nic] = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks[nic].bind(("127.0.0.1", 0))
        self.socks, self.lock = socks, threading.Lock()
        self.frames = {nic: [] for nic in socks}
        for s in socks.values():
            s.settimeout(0.02)
        self.stop = False
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        while not self.stop:
            for nic, s in self.socks.items():
                try:
                    data = s.recv(65536)
                except socket.timeout:
                    continue
                with self.lock:
                    self.frames[nic].append((time.monotonic(), data))

    def netdevs(self):
        args = []
        for nic, s in self.socks.items():
            port = s.getsockname()[1]
            free = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            free.bind(("127.0.0.1", 0))
            local = free.getsockname()[1]
            free.close()
            args += ["-netdev", "socket,id=n%s,udp=127.0.0.1:%d,localaddr=127.0.0.1:%d"
                     % (nic, port, local),
                     "-device", "%s,netdev=n%s,id=%s,mac=%s,romfile=" % (
                         DRIVERS[nic], nic, nic, MACS[nic])]
        return args

    def take(self, want=None, settle=1.5):
        """The frames since the last take: once @want ({nic: count}) have
        come (a loaded machine may be late) and 0.3 s more went by for any
        extra; or, expecting none, after @settle seconds."""
        if want and any(want.values()):
            end = time.monotonic() + 10
            while time.monotonic() < end:
                with self.lock:
                    if all(len(self.frames[n]) >= c for n, c in want.items()):
                        break
                time.sleep(0.05)
            time.sleep(0.3)
        else:
            time.sleep(settle)
        with self.lock:
            out = {nic: list(f) for nic, f in self.frames.items()}
            for f in self.frames.values():
                f.clear()
        return out

    def close(self):
        self.stop = True
        self.t.join()
        for s in self.socks.values():
            s.close()


def summary(frames):
    """Per NIC: how many frames, the gaps between them in ms (rounded to 10)."""
    out = {}
    for nic, f in frames.items():
        gaps = [round((b[0] - a[0]) * 100) * 10 for a, b in zip(f, f[1:])]
        out[nic] = {"count": len(f), "gaps-ms": gaps}
    return out


def start(tmp, name, cap, extra):
    path = os.path.join(tmp, name + ".qmp")
    p = subprocess.Popen([QEMU, "-machine", "pc,accel=kvm", "-cpu", "qemu64,-cx16", "-m", "64",
                          "-nodefaults", "-display", "none",
                          "-qmp", "unix:%s,server=on,wait=off" % path] + cap.netdevs() + extra,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return p, golden_migration.Qmp(path)


def announce(q, cap, args, settle=1.5):
    reply = q.cmd("announce-self", **args)
    frames = cap.take(settle=settle)
    return {"arguments": args, "reply": reply, "frames": summary(frames)}, frames


def main():
    src_cap, dst_cap = Capture(), Capture()
    with tempfile.TemporaryDirectory() as tmp:
        src_p, src = start(tmp, "src", src_cap, [])
        dst_p, dst = start(tmp, "dst", dst_cap, ["-incoming", "defer"])
        try:
            out = {"qemu": src.cmd("query-version")["return"]["qemu"], "macs": MACS}
            src_cap.take(settle=0.5)
            params = src.cmd("query-migrate-parameters")["return"]
            out["default-parameters"] = {k: params[k] for k in PARAMS}
            out["set-parameters"] = [
                {"arguments": a, "reply": src.cmd("migrate-set-parameters", **a)}
                for a in SET_PARAMETERS]
            params = src.cmd("query-migrate-parameters")["return"]
            out["parameters-after-set"] = {k: params[k] for k in PARAMS}
            calls = []
            call, frames = announce(src, src_cap, DEFAULT)
            calls.append(call)
            out["rarp-nic0"] = frames["nic0"][0][1].hex()
            out["rarp-nic1"] = frames["nic1"][0][1].hex()
            for args in [dict(DEFAULT, rounds=2, interfaces=["nic1"]),
                         dict(DEFAULT, interfaces=["nope"]),
                         dict(DEFAULT, interfaces=[]),
                         dict(DEFAULT, rounds=0),
                         dict(DEFAULT, rounds=1, initial=0, max=0, step=1),
                         {"initial": 50, "max": 550, "rounds": 5},
                         dict(DEFAULT, rounds="5")]:
                calls.append(announce(src, src_cap, args)[0])
            out["announce-self"] = calls
            # Named timers: the same id again replaces its schedule, another
            # id runs beside it. Each pair is sent back to back.
            pairs = []
            for a, b in [({"id": "a", "rounds": 3}, {"id": "a", "rounds": 1}),
                         ({"id": "a", "rounds": 3}, {"id": "b", "rounds": 1}),
                         ({"rounds": 3}, {"rounds": 0})]:
                r1 = src.cmd("announce-self", **dict(DEFAULT, **a))
                r2 = src.cmd("announce-self", **dict(DEFAULT, **b))
                frames = src_cap.take(settle=1.5)
                pairs.append({"first": a, "second": b, "replies": [r1, r2],
                              "frames": summary(frames)})
            out["timer-pairs"] = pairs
            # Paused: QEMU holds a NIC's frames while the VM does not run.
            src.cmd("stop")
            call, _ = announce(src, src_cap, dict(DEFAULT, rounds=2))
            src.cmd("cont")
            out["paused"] = {"announce": call, "after-cont": summary(src_cap.take(settle=1.5))}
            # Migration: the destination announces when it completes.
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            uri = "tcp:127.0.0.1:%d" % s.getsockname()[1]
            s.close()
            dst_cap.take(settle=0.5)
            dst.cmd("migrate-set-parameters", **{"announce-rounds": 3, "announce-initial": 20,
                                                 "announce-step": 30})
            dst.cmd("migrate-incoming", uri=uri)
            out["migrate"] = src.cmd("migrate", uri=uri)
            end = time.time() + 60
            while dst.cmd("query-migrate")["return"].get("status") != "completed":
                assert time.time() < end, "the migration does not complete"
                time.sleep(0.05)
            out["dst-status"] = dst.cmd("query-status")["return"]["status"]
            out["dst-frames-after-migration"] = summary(dst_cap.take(settle=1.5))
            out["src-frames-during-migration"] = summary(src_cap.take(settle=0))
        finally:
            for p in (src_p, dst_p):
                p.kill()
                p.wait()
            src_cap.close()
            dst_cap.close()
    golden_migration.write_golden(OUT, out)


if __name__ == "__main__":
    main()
