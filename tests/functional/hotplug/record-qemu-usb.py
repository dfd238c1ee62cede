#!/usr/bin/env python3
"""Record QEMU's answers to the USB hotplug sequence (golden traces).

Runs qemu-system-x86_64 -machine pc,accel=kvm -device qemu-xhci,id=xhci
stopped (-S) and sends the steps of SEQUENCE over QMP; then, in a second
QEMU without a USB controller, the steps of NO_USB. Writes per step the
command, QEMU's answer and the events that arrived before the answer
("events-before") and up to the next step ("events") to
tests/functional/hotplug/qemu-7.2-usb.json; test-usb-hotplug.py sends the
same steps to vmmd and compares.

    tests/functional/hotplug/record-qemu-usb.py [OUT.json]
"""

import importlib.util
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("record_qemu",
                                               os.path.join(HERE, "record-qemu.py"))
_rq = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_rq)

BD = {"driver": "raw", "file": {"driver": "file", "filename": "@IMG@"}}
BD2 = {"driver": "raw", "file": {"driver": "file", "filename": "@IMG2@"}}

# Each step: [name, command, arguments]. @IMG@ and @IMG2@ are 1 MiB raw images.
SEQUENCE = [
    ["blockdev-add", "blockdev-add", dict(BD, **{"node-name": "d1"})],
    ["blockdev-add second", "blockdev-add", dict(BD2, **{"node-name": "d2"})],
    ["device_add usb-storage", "device_add",
     {"driver": "usb-storage", "id": "u1", "bus": "xhci.0", "port": "2", "drive": "d1"}],
    ["device_add duplicate id", "device_add",
     {"driver": "usb-storage", "id": "u1", "bus": "xhci.0", "drive": "d2"}],
    ["device_add port in use", "device_add",
     {"driver": "usb-storage", "id": "u9", "bus": "xhci.0", "port": "2", "drive": "d2"}],
    ["device_add port out of range", "device_add",
     {"driver": "usb-storage", "id": "u9", "bus": "xhci.0", "port": "9", "drive": "d2"}],
    ["device_add port not a number", "device_add",
     {"driver": "usb-storage", "id": "u9", "bus": "xhci.0", "port": "x", "drive": "d2"}],
    ["device_add unknown bus", "device_add",
     {"driver": "usb-storage", "id": "u9", "bus": "nosuch.0", "drive": "d2"}],
    ["device_add PCI bus", "device_add",
     {"driver": "usb-storage", "id": "u9", "bus": "pci.0", "drive": "d2"}],
    ["device_add drive in use", "device_add",
     {"driver": "usb-storage", "id": "u9", "bus": "xhci.0", "drive": "d1"}],
    ["device_add unknown drive", "device_add",
     {"driver": "usb-storage", "id": "u9", "bus": "xhci.0", "drive": "nosuch"}],
    ["device_add no drive", "device_add",
     {"driver": "usb-storage", "id": "u9", "bus": "xhci.0"}],
    ["device_add unknown property", "device_add",
     {"driver": "usb-storage", "id": "u9", "drive": "d2", "nosuch": "1"}],
    ["device_add usb-kbd", "device_add",
     {"driver": "usb-kbd", "id": "k1", "bus": "xhci.0", "port": "3"}],
    ["device_add usb-tablet no port", "device_add",
     {"driver": "usb-tablet", "id": "t1", "bus": "xhci.0"}],
    ["device_add port as an integer", "device_add",
     {"driver": "usb-storage", "id": "u2", "bus": "xhci.0", "port": 4, "drive": "d2"}],
    ["x-query-usb", "x-query-usb", {}],
    ["blockdev-del in use", "blockdev-del", {"node-name": "d1"}],
    ["device_del usb-storage", "device_del", {"id": "u1"}],
    ["device_del again", "device_del", {"id": "u1"}],
    ["blockdev-del after device_del", "blockdev-del", {"node-name": "d1"}],
    ["device_del usb-kbd", "device_del", {"id": "k1"}],
    ["device_del usb-tablet", "device_del", {"id": "t1"}],
    ["device_del usb-storage 2", "device_del", {"id": "u2"}],
    ["device_add id reused", "device_add",
     {"driver": "usb-kbd", "id": "u1", "bus": "xhci.0", "port": "2"}],
    ["x-query-usb 2", "x-query-usb", {}],
    ["device_del reused id", "device_del", {"id": "u1"}],
    ["x-query-usb empty", "x-query-usb", {}],
    ["blockdev-del d2", "blockdev-del", {"node-name": "d2"}],
]

NO_USB = [
    ["device_add usb-kbd without a controller", "device_add",
     {"driver": "usb-kbd", "id": "k1"}],
    ["device_add usb-storage without a controller", "device_add",
     {"driver": "usb-storage", "id": "u1", "drive": "nosuch"}],
]


def run(extra, sequence, table):
    with tempfile.TemporaryDirectory() as tmp:
        sock = os.path.join(tmp, "qmp.sock")
        qemu = subprocess.Popen(
            ["qemu-system-x86_64", "-machine", "pc,accel=kvm", "-cpu", "qemu64,-cx16",
             "-m", "128", "-nodefaults", "-display", "none", "-S",
             "-qmp", "unix:%s,server=on,wait=off" % sock] + extra,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        steps = []
        try:
            q = _rq.QMP(sock)
            version = q.cmd("query-version")["return"]["qemu"]
            for name, cmd, args in sequence:
                r = q.cmd(cmd, _rq.subst(args, table))
                before, q.events = q.events, []
                step = {"step": name, "execute": cmd, "arguments": args}
                if "error" in r:
                    step["error"] = {"class": r["error"]["class"], "desc": r["error"]["desc"]}
                else:
                    step["return"] = r["return"]
                step["events-before"] = [{"event": e["event"], "data": e.get("data", {})}
                                         for e in before]
                step["events"] = [{"event": e["event"], "data": e.get("data", {})}
                                  for e in q.drain()]
                steps.append(step)
            q.cmd("quit")
        finally:
            try:
                qemu.wait(timeout=10)
            except subprocess.TimeoutExpired:
                qemu.kill()
    return version, steps


def record(out_path):
    with tempfile.TemporaryDirectory() as tmp:
        table = {"@IMG@": os.path.join(tmp, "a.img"), "@IMG2@": os.path.join(tmp, "b.img")}
        for p in table.values():
            with open(p, "wb") as f:
                f.truncate(1 << 20)
        version, steps = run(["-device", "qemu-xhci,id=xhci"], SEQUENCE, table)
        _, no_usb = run([], NO_USB, table)
    doc = {"about": "QEMU's answers to USB hotplug; written by record-qemu-usb.py",
           "qemu": "%d.%d.%d" % (version["major"], version["minor"], version["micro"]),
           "machine": "pc,accel=kvm -device qemu-xhci,id=xhci (stopped with -S)",
           "steps": steps, "no-usb": no_usb}
    with open(out_path, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    record(sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "qemu-7.2-usb.json"))
