#!/usr/bin/env python3
"""Record QEMU's replies to stray input between QMP messages as a golden trace
(tests/functional/golden/qmp-stray.json) for test-protocol-stray.py.

Usage: tests/functional/make-golden-qmp-stray.py [QEMU]   (default qemu-system-x86_64)
Each case is sent on a fresh negotiated connection, followed by a marker
command; every reply before the marker's is the answer to the case."""

import json
import os
import socket
import subprocess
import sys
import tempfile
import time

CASES = [b"hello\n", b"garbage ] }\n", b"123\n", b"\x01\n", b'"str"\n', b"}\n", b",\n",
         b":\n", b"\xff\n", b"@\n", b"hello123\n", b"12abc\n", b"true\n", b"null\n",
         b"\x1b\n", b"\xc3\xa9\n", b"\t\r\n", b'{"execute": "qmp_capabilities"} junk\n',
         b"[1, 2]\n", b"False\n",
         # ids are echoed as sent, whatever they hold (vmmd once turned these two)
         b'{"execute": "nosuch", "id": "\\u0001u64:5"}\n',
         b'{"execute": "nosuch", "id": {"\\u0001u64:5": [1, "a", null, true, 1.5]}}\n',
         b'{"execute": "nosuch", "id": 1, "id": 2}\n',
         b'{"execute": "nosuch", "arguments": {"a": {"b": 1, "b": 2}}}\n']


def lines(s):
    buf = b""
    while True:
        while b"\r\n" not in buf:
            c = s.recv(65536)
            if not c:
                return
            buf += c
        line, buf = buf.split(b"\r\n", 1)
        yield json.loads(line)


def run_case(sock_path, data):
    s = socket.socket(socket.AF_UNIX)
    s.connect(sock_path)
    s.settimeout(5)
    it = lines(s)
    next(it)
    s.sendall(b'{"execute": "qmp_capabilities"}')
    assert next(it) == {"return": {}}
    s.sendall(data + b'{"execute": "query-version", "id": "marker"}')
    out = []
    for r in it:
        if r.get("id") == "marker":
            break
        out.append(r)
    s.close()
    return out


def main():
    qemu = sys.argv[1] if len(sys.argv) > 1 else "qemu-system-x86_64"
    with tempfile.TemporaryDirectory() as tmp:
        sock = os.path.join(tmp, "qmp.sock")
        p = subprocess.Popen([qemu, "-machine", "none", "-nodefaults", "-display", "none",
                              "-qmp", "unix:%s,server=on,wait=off" % sock])
        try:
            for _ in range(100):
                if os.path.exists(sock):
                    break
                time.sleep(0.05)
            ver = subprocess.run([qemu, "--version"], capture_output=True, text=True).stdout
            trace = {"recorded-with": ver.splitlines()[0], "cases": []}
            for c in CASES:
                trace["cases"].append({"input-hex": c.hex(), "replies": run_case(sock, c)})
        finally:
            p.kill()
            p.wait()
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden", "qmp-stray.json")
    with open(out, "w") as f:
        json.dump(trace, f, indent=1, ensure_ascii=True)
        f.write("\n")
    print("wrote", out)


if __name__ == "__main__":
    main()
