#!/usr/bin/env python3
"""Record QEMU's answers to send-key and input-send-event as a golden trace
(tests/functional/golden/qmp-input.json) for test-usb-input.py.

Usage: tests/functional/make-golden-qmp-input.py [QEMU]   (default qemu-system-x86_64)
QEMU runs a pc machine with an xHCI controller, a usb-kbd and a usb-tablet
and no display. Only cases whose answer does not depend on display consoles
or the run state are recorded (argument checking and successful sends)."""

import json
import os
import socket
import subprocess
import sys
import tempfile
import time


def q(k):
    return {"type": "qcode", "data": k}


def key(down, k):
    return {"type": "key", "data": {"down": down, "key": k}}


SEND_KEY = [
    {"keys": [q("a")]},
    {"keys": [q("shift"), q("a")], "hold-time": 50},
    {"keys": [{"type": "number", "data": 30}]},
    {"keys": [{"type": "number", "data": 3000}]},
    {"keys": []},
    {"keys": [q("kp_enter"), q("meta_l"), q("ac_bookmarks"), q("lang2"), q("unmapped")]},
    {},
    {"keys": "a"},
    {"keys": ["a"]},
    {"keys": [{"data": "a"}]},
    {"keys": [{"type": "qcode"}]},
    {"keys": [{"type": "foo", "data": "a"}]},
    {"keys": [{"type": "qcode", "data": "nosuch"}]},
    {"keys": [{"type": "qcode", "data": 5}]},
    {"keys": [{"type": "number", "data": "a"}]},
    {"keys": [{"type": "qcode", "data": "a", "extra": 1}]},
    {"keys": [q("a"), q("b"), {"type": "qcode", "data": "B"}]},
    {"keys": [q("a")], "hold-time": "x"},
    {"keys": [q("a")], "extra": True},
]

INPUT_SEND_EVENT = [
    {"events": [key(True, q("a")), key(False, q("a"))]},
    {"events": [{"type": "abs", "data": {"axis": "x", "value": 1000}},
                {"type": "abs", "data": {"axis": "y", "value": 2000}},
                {"type": "btn", "data": {"down": True, "button": "left"}},
                {"type": "btn", "data": {"down": False, "button": "left"}}]},
    {"events": [{"type": "rel", "data": {"axis": "x", "value": 10}}]},
    {"events": [{"type": "btn", "data": {"down": True, "button": "wheel-up"}}], "head": 3},
    {"events": []},
    {},
    {"events": "x"},
    {"events": [1]},
    {"events": [{"type": "key"}]},
    {"events": [{"data": {}}]},
    {"events": [{"type": "nope", "data": {}}]},
    {"events": [{"type": "key", "data": 1}]},
    {"events": [{"type": "key", "data": {"down": True}}]},
    {"events": [{"type": "key", "data": {"key": q("a")}}]},
    {"events": [{"type": "key", "data": {"down": 1, "key": q("a")}}]},
    {"events": [{"type": "key", "data": {"down": True, "key": "a"}}]},
    {"events": [{"type": "key", "data": {"down": True, "key": q("zz")}}]},
    {"events": [{"type": "key", "data": {"down": True, "key": q("a"), "x": 1}}]},
    {"events": [{"type": "key", "data": {"down": True, "key": q("a")}, "x": 1}]},
    {"events": [{"type": "btn", "data": {"button": "left"}}]},
    {"events": [{"type": "btn", "data": {"down": True, "button": "nosuch"}}]},
    {"events": [{"type": "abs", "data": {"axis": "x"}}]},
    {"events": [{"type": "abs", "data": {"axis": "z", "value": 1}}]},
    {"events": [{"type": "abs", "data": {"axis": "x", "value": "1"}}]},
    {"events": [], "device": 5},
    {"events": [], "head": "0"},
]


def lines(f):
    while True:
        yield json.loads(f.readline())


def main():
    qemu = sys.argv[1] if len(sys.argv) > 1 else "qemu-system-x86_64"
    with tempfile.TemporaryDirectory() as tmp:
        sock = os.path.join(tmp, "qmp.sock")
        p = subprocess.Popen([qemu, "-machine", "pc", "-accel", "tcg", "-nodefaults",
                              "-display", "none", "-device", "qemu-xhci,id=xhci",
                              "-device", "usb-kbd,id=kbd0", "-device", "usb-tablet,id=tab0",
                              "-qmp", "unix:%s,server=on,wait=off" % sock])
        try:
            for _ in range(100):
                if os.path.exists(sock):
                    break
                time.sleep(0.05)
            s = socket.socket(socket.AF_UNIX)
            s.connect(sock)
            f = s.makefile("rwb")
            it = lines(f)
            next(it)

            def cmd(name, args):
                f.write(json.dumps({"execute": name, "arguments": args}).encode())
                f.flush()
                for r in it:
                    if "event" not in r:
                        return r

            assert cmd("qmp_capabilities", {}) == {"return": {}}
            ver = subprocess.run([qemu, "--version"], capture_output=True, text=True).stdout
            trace = {"recorded-with": ver.splitlines()[0], "cases": []}
            for name, cases in (("send-key", SEND_KEY), ("input-send-event", INPUT_SEND_EVENT)):
                for args in cases:
                    trace["cases"].append({"execute": name, "arguments": args,
                                           "reply": cmd(name, args)})
        finally:
            p.kill()
            p.wait()
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden", "qmp-input.json")
    with open(out, "w") as f:
        json.dump(trace, f, indent=1, ensure_ascii=True)
        f.write("\n")
    print("wrote", out)


if __name__ == "__main__":
    main()
