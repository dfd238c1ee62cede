#!/usr/bin/env python3
"""Record QEMU 7.2's set_link as a golden trace (tests/functional/golden/
set-link.json) for test-set-link.py.

qemu-system-x86_64 -machine pc,accel=kvm runs tests/guests/net-echo.elf
(booted through its PVH note), whose virtio-net NIC answers every frame of
EtherType 0x88b5 with the number of frames it answered since boot; the NIC
is on a UDP socket netdev whose far end is this script. Recorded: the
answers to set_link (the NIC's id, its netdev's id, an unknown name, a
missing or mistyped argument), and what the guest answers before, while
and after the link is down: whether frames sent while down were answered,
and whether they ever reached the guest (its count after the link is up).

Usage: tests/functional/make-golden-set-link.py GUEST.elf [QEMU]"""

import importlib.util
import os
import socket
import struct
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
OUT = os.path.join(HERE, "golden", "set-link.json")
GUEST_MAC = bytes.fromhex("525400000002")
HOST_MAC = bytes.fromhex("525400000099")
ETH_ECHO, ETH_ANSWER = 0x88B5, 0x88B6
SET_LINK = [{"name": "nic0", "up": False}, {"name": "nic0", "up": True},
            {"name": "n0", "up": False}, {"name": "n0", "up": True},
            {"name": "nope", "up": False}, {"name": "nic0"}, {"name": "nic0", "up": "no"},
            {"up": True}]


class Echo:
    def __init__(self):
        self.s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.s.bind(("127.0.0.1", 0))
        free = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        free.bind(("127.0.0.1", 0))
        self.qemu_port = free.getsockname()[1]
        free.close()
        self.seq = 0

    def netdev(self):
        return "socket,id=n0,udp=127.0.0.1:%d,localaddr=127.0.0.1:%d" % (
            self.s.getsockname()[1], self.qemu_port)

    def ask(self, wait=1.0):
        """Send one frame; the guest's answered count, or None."""
        self.seq += 1
        self.s.sendto(GUEST_MAC + HOST_MAC + struct.pack("!H", ETH_ECHO) +
                      struct.pack("<Q", self.seq) + bytes(38), ("127.0.0.1", self.qemu_port))
        end = time.time() + wait
        while time.time() < end:
            self.s.settimeout(max(0.01, end - time.time()))
            try:
                data = self.s.recv(2048)
            except socket.timeout:
                break
            if data[12:14] == struct.pack("!H", ETH_ANSWER):
                seq, n, _ = struct.unpack_from("<QQQ", data, 14)
                if seq == self.seq:
                    return n
        return None

    def first(self, timeout=120):
        end = time.time() + timeout
        while time.time() < end:
            n = self.ask()
            if n is not None:
                return n
        raise AssertionError("the guest does not answer")


def set_link(q, args):
    """set_link with @args (Qmp.cmd's own first parameter is called name)."""
    return q.call("set_link", args)


def main():
    echo = Echo()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "qmp")
        p = subprocess.Popen([QEMU, "-machine", "pc,accel=kvm",
                              "-cpu", "host,-cx16,-xsave,-arch-capabilities", "-m", "32",
                              "-nodefaults", "-display", "none", "-kernel", GUEST,
                              "-serial", "file:" + os.path.join(tmp, "console.log"),
                              "-netdev", echo.netdev(),
                              "-device", "virtio-net-pci,disable-legacy=on,netdev=n0,id=nic0,romfile=,"
                              "mac=52:54:00:00:00:02",
                              "-qmp", "unix:%s,server=on,wait=off" % path],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            q = golden_migration.Qmp(path)
            out = {"qemu": q.cmd("query-version")["return"]["qemu"]}
            echo.first()
            out["set_link"] = [{"arguments": a, "reply": set_link(q, a)}
                               for a in SET_LINK]
            before = echo.first()
            set_link(q, {"name": "nic0", "up": False})
            out["answered-while-down"] = [echo.ask() for _ in range(3)]
            set_link(q, {"name": "nic0", "up": True})
            after = echo.first(timeout=10)
            out["count-after-up-minus-before-down"] = after - before
            out["events"] = sorted({e["event"] for e in q.events})
        finally:
            p.kill()
            p.wait()
    golden_migration.write_golden(OUT, out)


if __name__ == "__main__":
    main()
