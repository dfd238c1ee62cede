#!/usr/bin/env python3
"""Record QEMU's run states and events around system_reset as a golden trace
(tests/functional/golden/runstate-reset.json) for test-runstate-reset.py.

Usage: tests/functional/make-golden-runstate-reset.py [QEMU]   (default qemu-system-x86_64)

QEMU runs a pc machine under KVM with -S and a 64 KiB "BIOS" whose reset
vector halts, so no firmware runs and resets nothing by itself. States a
guest would cause are caused from HMP: "o" writes the I/O ports a guest
would (pvpanic 0x505, the PIIX4 power management registers, 0xcf9).

Each case is a fresh QEMU: "setup" brings it to the state the case starts
from, "steps" are what a vmmd VM replays when the case is marked "replay"
(vmmd has no -S: its VM is running when the steps begin, as QEMU's is after
the setup). Every step records the reply and the events that arrived
before it or within SETTLE seconds after it, timestamps removed."""

import json
import os
import socket
import subprocess
import sys
import tempfile
import time

SETTLE = 0.3


def cmd(name, args=None):
    c = {"execute": name}
    if args is not None:
        c["arguments"] = args
    return c


def hmp(line):
    return cmd("human-monitor-command", {"command-line": line})


STATUS = cmd("query-status")

# Enable the PIIX4 PM I/O space at 0x600 (function 1.3, PMBA 0x40, PMREGMISC
# 0x80), as firmware does, so a write to PM1a_CNT (0x604) can power off.
PIIX4_PM_ON = [hmp("o /w 0xcf8 0x80000b40"), hmp("o /w 0xcfc 0x601"),
               hmp("o /w 0xcf8 0x80000b80"), hmp("o /b 0xcfc 1")]

CASES = [
    {"name": "prelaunch",
     "doc": "system_reset of a VM that never ran (-S): it stays in prelaunch",
     "args": [], "setup": [],
     "steps": [STATUS, cmd("system_reset"), STATUS, cmd("stop"), STATUS,
               cmd("cont"), STATUS]},
    {"name": "paused-qmp", "replay": True,
     "doc": "QMP system_reset of a paused VM: prelaunch, no STOP or RESUME; "
            "stop there changes nothing; cont runs it (RESUME)",
     "args": [], "setup": [cmd("cont")],
     "steps": [STATUS, cmd("system_reset"), STATUS, cmd("stop"), STATUS,
               cmd("system_reset"), STATUS, hmp("info status"), cmd("cont"), STATUS,
               hmp("info status")]},
    {"name": "paused-hmp", "replay": True,
     "doc": "HMP system_reset (human-monitor-command) of a paused VM: the same",
     "args": [], "setup": [cmd("cont")],
     "steps": [cmd("stop"), STATUS, hmp("system_reset"), STATUS, hmp("info status"),
               hmp("stop"), STATUS, hmp("cont"), STATUS]},
    {"name": "running", "replay": True,
     "doc": "system_reset of a running VM: it runs on, RESET only",
     "args": [], "setup": [cmd("cont")],
     "steps": [cmd("system_reset"), STATUS, hmp("system_reset"), STATUS]},
    {"name": "guest-reset-while-paused",
     "doc": "a reset request from the guest side (0xcf9) while paused: prelaunch too",
     "args": [], "setup": [cmd("cont")],
     "steps": [cmd("stop"), hmp("o /b 0xcf9 6"), STATUS, cmd("cont"), STATUS]},
    {"name": "guest-panicked",
     "doc": "pvpanic with -no-shutdown: guest-panicked; cont runs it as it is; "
            "system_reset from guest-panicked: prelaunch",
     "args": ["-no-shutdown", "-device", "pvpanic"], "setup": [cmd("cont")],
     "steps": [hmp("o /b 0x505 1"), STATUS, cmd("cont"), STATUS, hmp("o /b 0x505 1"),
               STATUS, cmd("system_reset"), STATUS, cmd("cont"), STATUS]},
    {"name": "shutdown-no-shutdown",
     "doc": "ACPI power-off with -no-shutdown: shutdown; cont refused; "
            "system_reset: prelaunch",
     "args": ["-no-shutdown"], "setup": [cmd("cont")] + PIIX4_PM_ON,
     "steps": [hmp("o /h 0x604 0x2000"), STATUS, cmd("cont"), cmd("system_reset"), STATUS,
               cmd("cont"), STATUS]},
    {"name": "postmigrate",
     "doc": "after an outgoing migration completed: postmigrate; system_reset: prelaunch",
     "args": [], "setup": [cmd("cont"), cmd("migrate", {"uri": "exec:cat >/dev/null"}),
                           "wait-migration"],
     "steps": [STATUS, cmd("system_reset"), STATUS, cmd("cont"), STATUS]},
    {"name": "inmigrate",
     "doc": "-incoming defer: system_reset leaves inmigrate; cont only sets autostart",
     "args": ["-incoming", "defer"], "setup": [],
     "steps": [STATUS, cmd("system_reset"), STATUS, cmd("cont"), STATUS]},
]


class Qemu:
    def __init__(self, qemu, tmp, args):
        self.sock_path = os.path.join(tmp, "qmp.sock")
        bios = os.path.join(tmp, "halt.bin")
        img = bytearray(65536)
        img[0xfff0:0xfff3] = b"\xf4\xeb\xfd"  # hlt; jmp $-1
        with open(bios, "wb") as f:
            f.write(img)
        argv = [qemu, "-machine", "pc", "-accel", "kvm", "-m", "64",
                "-nodefaults", "-display", "none", "-bios", bios, "-S",
                "-qmp", "unix:%s,server=on,wait=off" % self.sock_path]
        if "-S" in args:
            args = [a for a in args if a != "-S"]
        if "no-S" in args:  # started right away (a migration destination that autostarts)
            argv.remove("-S")
            args = [a for a in args if a != "no-S"]
        self.p = subprocess.Popen(argv + args, stderr=subprocess.DEVNULL)
        for _ in range(200):
            if os.path.exists(self.sock_path):
                break
            time.sleep(0.05)
        self.s = socket.socket(socket.AF_UNIX)
        self.s.connect(self.sock_path)
        self.s.settimeout(10)
        self.buf = b""
        self.recv()
        assert self.execute(cmd("qmp_capabilities"))[0] == {"return": {}}

    def recv(self, timeout=10):
        self.s.settimeout(timeout)
        while b"\r\n" not in self.buf:
            c = self.s.recv(65536)
            if not c:
                raise EOFError("QEMU closed the connection")
            self.buf += c
        line, self.buf = self.buf.split(b"\r\n", 1)
        return json.loads(line)

    def execute(self, c):
        """Reply and the events before it or within SETTLE s after it."""
        self.s.sendall(json.dumps(c).encode())
        events = []
        while True:
            m = self.recv()
            if "event" in m:
                events.append(m)
                continue
            reply = m
            break
        deadline = time.monotonic() + SETTLE
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                events.append(self.recv(left))
            except socket.timeout:
                break
        for e in events:
            e.pop("timestamp", None)
        return reply, events

    def close(self):
        self.s.close()
        self.p.kill()
        self.p.wait()


def record(qemu, case):
    with tempfile.TemporaryDirectory() as tmp:
        q = Qemu(qemu, tmp, case["args"])
        try:
            for c in case["setup"]:
                if c == "wait-migration":
                    for _ in range(200):
                        st = q.execute(cmd("query-migrate"))[0]["return"].get("status")
                        if st == "completed":
                            break
                        time.sleep(0.05)
                    assert st == "completed", st
                else:
                    reply, _ = q.execute(c)
                    assert "return" in reply, (c, reply)
            steps = []
            for c in case["steps"]:
                reply, events = q.execute(c)
                steps.append(dict(c, reply=reply, events=events))
        finally:
            q.close()
    out = {k: v for k, v in case.items() if k not in ("steps",)}
    out["setup"] = [c for c in case["setup"]]
    out["steps"] = steps
    return out


def main():
    qemu = sys.argv[1] if len(sys.argv) > 1 else "qemu-system-x86_64"
    ver = subprocess.run([qemu, "--version"], capture_output=True, text=True).stdout
    trace = {"recorded-with": ver.splitlines()[0],
             "qemu-args": "-machine pc -accel kvm -m 64 -nodefaults -display none "
                          "-bios HALT -S",
             "cases": [record(qemu, c) for c in CASES]}
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden",
                       "runstate-reset.json")
    with open(out, "w") as f:
        json.dump(trace, f, indent=1, ensure_ascii=True)
        f.write("\n")
    print("wrote", out)


if __name__ == "__main__":
    main()
