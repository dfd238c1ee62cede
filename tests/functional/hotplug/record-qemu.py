#!/usr/bin/env python3
"""Record QEMU's answers to the hotplug command sequence (golden traces).

Runs qemu-system-x86_64 -machine pc,accel=kvm stopped (-S, no guest code
runs, so no guest ever ejects) and sends the steps of SEQUENCE over QMP.
Writes, per step, the command, QEMU's answer (return value, or the error
class and description) and the events that arrived up to the next step, to
tests/functional/hotplug/qemu-7.2.json. test-hotplug.py sends the same
sequence to vmmd and compares.

    tests/functional/hotplug/record-qemu.py [OUT.json [BALLOON-OUT.json]]

It also records the balloon commands with and without a virtio-balloon
device (qemu-7.2-balloon.json, compared by test-balloon.py).

Paths in the recording are replaced by @IMG@/@IMG2@ and volatile values
(timestamps, BAR addresses) are dropped, so the file only changes when
QEMU's behaviour does.
"""

import json
import os
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))

# Each step: [name, command, arguments]. @IMG@ and @IMG2@ are 1 MiB raw images.
SEQUENCE = [
    ["blockdev-add", "blockdev-add",
     {"driver": "raw", "node-name": "d1",
      "file": {"driver": "file", "filename": "@IMG@"}}],
    ["blockdev-add duplicate node-name", "blockdev-add",
     {"driver": "raw", "node-name": "d1",
      "file": {"driver": "file", "filename": "@IMG2@"}}],
    ["blockdev-add second", "blockdev-add",
     {"driver": "raw", "node-name": "d2", "read-only": True,
      "file": {"driver": "file", "filename": "@IMG2@"}}],
    ["blockdev-add unknown driver", "blockdev-add",
     {"driver": "nosuch", "node-name": "d3"}],
    ["device_add virtio-blk-pci", "device_add",
     {"driver": "virtio-blk-pci", "id": "vdb", "drive": "d1", "addr": "0x6",
      "serial": "HOTPLUG1"}],
    ["device_add duplicate id", "device_add",
     {"driver": "virtio-blk-pci", "id": "vdb", "drive": "d2"}],
    ["device_add busy slot", "device_add",
     {"driver": "virtio-blk-pci", "id": "vdc", "drive": "d2", "addr": "0x6"}],
    ["device_add unknown driver", "device_add", {"driver": "nosuch-dev", "id": "x1"}],
    ["device_add unknown bus", "device_add",
     {"driver": "virtio-blk-pci", "id": "vdc", "drive": "d2", "bus": "pci.7"}],
    ["device_add ide-hd", "device_add", {"driver": "ide-hd", "id": "hd1", "drive": "d2"}],
    ["device_add drive in use", "device_add",
     {"driver": "virtio-blk-pci", "id": "vdc", "drive": "d1"}],
    ["device_add unknown drive", "device_add",
     {"driver": "virtio-blk-pci", "id": "vdc", "drive": "nosuch"}],
    ["blockdev-del in use", "blockdev-del", {"node-name": "d1"}],
    ["blockdev-del unknown", "blockdev-del", {"node-name": "nosuch"}],
    ["block_resize", "block_resize", {"node-name": "d1", "size": 2097152}],
    ["query-pci", "query-pci", {}],
    ["device_del", "device_del", {"id": "vdb"}],
    ["device_del again", "device_del", {"id": "vdb"}],
    ["device_add pending id", "device_add",
     {"driver": "virtio-blk-pci", "id": "vdb", "drive": "d2"}],
    ["device_del unknown", "device_del", {"id": "nosuch"}],
    ["system_reset", "system_reset", {}],
    ["blockdev-del", "blockdev-del", {"node-name": "d1"}],
    ["device_add id reused", "device_add",
     {"driver": "virtio-blk-pci", "id": "vdb", "drive": "d2"}],
    ["netdev_add user", "netdev_add", {"type": "user", "id": "n1"}],
    ["netdev_add duplicate", "netdev_add", {"type": "user", "id": "n1"}],
    ["netdev_add unknown type", "netdev_add", {"type": "nosuch", "id": "n2"}],
    ["device_add virtio-net-pci", "device_add",
     {"driver": "virtio-net-pci", "id": "net1", "netdev": "n1", "mac": "52:54:00:12:34:56"}],
    ["device_add netdev in use", "device_add",
     {"driver": "e1000", "id": "net2", "netdev": "n1"}],
    ["netdev_add second", "netdev_add", {"type": "user", "id": "n2"}],
    ["device_add e1000", "device_add", {"driver": "e1000", "id": "net2", "netdev": "n2"}],
    ["device_del virtio-net-pci", "device_del", {"id": "net1"}],
    ["device_del e1000", "device_del", {"id": "net2"}],
    ["device_del virtio-blk-pci", "device_del", {"id": "vdb"}],
    ["system_reset 2", "system_reset", {}],
    ["netdev_del", "netdev_del", {"id": "n1"}],
    ["netdev_del unknown", "netdev_del", {"id": "nosuch"}],
    ["blockdev-del d2", "blockdev-del", {"node-name": "d2"}],
]


def subst(obj, table):
    s = json.dumps(obj)
    for k, v in table.items():
        s = s.replace(k, v)
    return json.loads(s)


class QMP:
    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        for _ in range(200):
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

    def drain(self, wait=0.3):
        self.sock.settimeout(wait)
        try:
            while True:
                m = self.recv()
                if "event" in m:
                    self.events.append(m)
        except (socket.timeout, TimeoutError):
            pass
        finally:
            self.sock.settimeout(10)
        ev, self.events = self.events, []
        return ev


def normalize_pci(ret):
    """Keep query-pci's shape and identities; drop addresses the firmware would assign."""
    out = []
    for bus in ret:
        devs = []
        for d in bus["devices"]:
            devs.append({
                "slot": d["slot"], "function": d["function"],
                "class_info": d["class_info"], "id": d["id"],
                "qdev_id": d["qdev_id"], "keys": sorted(d.keys()),
                "region_keys": sorted({k for r in d["regions"] for k in r}),
            })
        out.append({"bus": bus["bus"], "devices": devs})
    return out


def record(out_path):
    with tempfile.TemporaryDirectory() as tmp:
        table = {"@IMG@": os.path.join(tmp, "a.img"), "@IMG2@": os.path.join(tmp, "b.img")}
        for p in table.values():
            with open(p, "wb") as f:
                f.truncate(1 << 20)
        sock = os.path.join(tmp, "qmp.sock")
        qemu = subprocess.Popen(
            ["qemu-system-x86_64", "-machine", "pc,accel=kvm", "-cpu", "qemu64,-cx16",
             "-m", "128", "-nodefaults", "-display", "none", "-S",
             "-qmp", "unix:%s,server=on,wait=off" % sock],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            q = QMP(sock)
            version = q.cmd("query-version")["return"]["qemu"]
            steps = []
            for name, cmd, args in SEQUENCE:
                r = q.cmd(cmd, subst(args, table))
                step = {"step": name, "execute": cmd, "arguments": args}
                if "error" in r:
                    step["error"] = {"class": r["error"]["class"],
                                     "desc": subst(r["error"]["desc"],
                                                   {v: k for k, v in table.items()})}
                elif cmd == "query-pci":
                    step["return"] = normalize_pci(r["return"])
                else:
                    step["return"] = r["return"]
                step["events"] = [{"event": e["event"], "data": e.get("data", {})}
                                  for e in q.drain()]
                steps.append(step)
            q.cmd("quit")
        finally:
            try:
                qemu.wait(timeout=10)
            except subprocess.TimeoutExpired:
                qemu.kill()
    doc = {"about": "QEMU's answers to the hotplug sequence; written by record-qemu.py",
           "qemu": "%d.%d.%d" % (version["major"], version["minor"], version["micro"]),
           "machine": "pc,accel=kvm (stopped with -S: the guest never ejects)",
           "steps": steps}
    with open(out_path, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")


# balloon: [name, command, arguments], sent without and with a balloon device.
BALLOON_SEQUENCE = [
    ["query-balloon", "query-balloon", {}],
    ["balloon", "balloon", {"value": 100 << 20}],
    ["balloon zero", "balloon", {"value": 0}],
    ["balloon negative", "balloon", {"value": -5}],
    ["balloon above RAM", "balloon", {"value": 1 << 40}],
]


def record_balloon(out_path):
    doc = {"about": "QEMU's answers to balloon commands; written by record-qemu.py",
           "machine": "pc,accel=kvm -m 128 (stopped with -S: no driver answers)"}
    for key, extra in (("no-device", []),
                       ("device", ["-device", "virtio-balloon-pci,id=balloon0"])):
        with tempfile.TemporaryDirectory() as tmp:
            sock = os.path.join(tmp, "qmp.sock")
            qemu = subprocess.Popen(
                ["qemu-system-x86_64", "-machine", "pc,accel=kvm", "-cpu", "qemu64,-cx16",
                 "-m", "128", "-nodefaults", "-display", "none", "-S",
                 "-qmp", "unix:%s,server=on,wait=off" % sock] + extra,
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            try:
                q = QMP(sock)
                steps = []
                for name, cmd, args in BALLOON_SEQUENCE:
                    r = q.cmd(cmd, args)
                    step = {"step": name, "execute": cmd, "arguments": args}
                    if "error" in r:
                        step["error"] = r["error"]
                    else:
                        step["return"] = r["return"]
                    steps.append(step)
                q.cmd("quit")
            finally:
                try:
                    qemu.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    qemu.kill()
        doc[key] = steps
    with open(out_path, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    record(sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "qemu-7.2.json"))
    record_balloon(sys.argv[2] if len(sys.argv) > 2 else
                   os.path.join(HERE, "qemu-7.2-balloon.json"))
