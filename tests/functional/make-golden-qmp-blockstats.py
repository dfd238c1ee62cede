#!/usr/bin/env python3
"""Record QEMU's query-block and query-blockstats answers for one disk as a
golden trace (tests/functional/golden/qmp-blockstats.json) for
test-qmp-blockstats.py: a new 16 MiB qcow2 image as virtio-blk "vda", the
guest not started (no I/O: every counter zero, no idle_time_ns).

Usage: tests/functional/make-golden-qmp-blockstats.py [QEMU]   (default qemu-system-x86_64)"""

import json
import os
import socket
import subprocess
import sys
import tempfile
import time

DISK_SIZE = "16M"


def qmp(sock_path, commands):
    s = socket.socket(socket.AF_UNIX)
    s.connect(sock_path)
    s.settimeout(10)
    f = s.makefile("rwb")
    json.loads(f.readline())
    out = []
    for cmd in ["qmp_capabilities"] + commands:
        f.write(json.dumps({"execute": cmd}).encode() + b"\n")
        f.flush()
        while True:
            r = json.loads(f.readline())
            if "event" not in r:
                break
        out.append(r)
    s.close()
    return out[1:]


def main():
    qemu = sys.argv[1] if len(sys.argv) > 1 else "qemu-system-x86_64"
    with tempfile.TemporaryDirectory() as tmp:
        img = os.path.join(tmp, "disk.qcow2")
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", img, DISK_SIZE], check=True)
        sock = os.path.join(tmp, "qmp.sock")
        p = subprocess.Popen([qemu, "-S", "-nodefaults", "-display", "none", "-m", "64",
                              "-drive", "file=%s,format=qcow2,if=none,id=vda" % img,
                              "-device", "virtio-blk-pci,drive=vda,id=vda",
                              "-qmp", "unix:%s,server=on,wait=off" % sock],
                             stderr=subprocess.DEVNULL)
        try:
            for _ in range(200):
                if os.path.exists(sock):
                    break
                time.sleep(0.05)
            block, stats = qmp(sock, ["query-block", "query-blockstats"])
        finally:
            p.kill()
            p.wait()
        text = json.dumps({"query-block": block["return"],
                           "query-blockstats": stats["return"]}).replace(img, "IMAGE")
    ver = subprocess.run([qemu, "--version"], capture_output=True, text=True).stdout
    trace = {"recorded-with": ver.splitlines()[0], "disk-size": DISK_SIZE}
    trace.update(json.loads(text))
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden", "qmp-blockstats.json")
    with open(out, "w") as f:
        json.dump(trace, f, indent=1, sort_keys=True)
        f.write("\n")
    print("wrote", out)


if __name__ == "__main__":
    main()
