"""Run a job/snapshot scenario (scenarios.json) over QMP and record what
comes back: the replies in order, the events in order (without timestamps
and the "vm" selector), and the files left in the image directory. Used by
record-qemu.py (QEMU 7.2, the golden traces) and by the functional test
that replays the scenarios against vmmd."""

import json
import os
import socket
import subprocess
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SIZE = 4 << 20


def load_scenarios():
    with open(os.path.join(HERE, "scenarios.json")) as f:
        s = json.load(f)
    s.pop("about", None)
    return s


def start_nbd(d, disk):
    """A raw 4 MiB image with data everywhere, exported by nbdkit on a UNIX
    socket through its error filter: reads fail with EIO while $DIR/.err
    exists. Returns (URI, process)."""
    raw = os.path.join(d, "%s-nbd.raw" % disk)
    with open(raw, "wb") as f:
        f.write(bytes(range(256)) * (SIZE // 256))
    sock = os.path.join(d, ".%s-nbd.sock" % disk)
    p = subprocess.Popen(["nbdkit", "-f", "-U", sock, "--filter=error", "file", raw,
                          "error-pread=EIO", "error-pread-rate=100%",
                          "error-pread-file=%s" % os.path.join(d, ".err")])
    for _ in range(200):
        if os.path.exists(sock):
            break
        time.sleep(0.05)
    return "nbd+unix:///?socket=%s" % sock, p


def make_chains(d, disks, procs=None):
    """Create each disk's chain: DIR/<id>-<layer>.qcow2, each layer with its
    own 256 KiB pattern at a layer-specific offset (the base also 2 MiB at
    1 MiB). A layer named "nbd" is an NBD export of a raw image instead (see
    start_nbd; its nbdkit is appended to @procs). A disk whose chain is
    ["raw"] is a raw image of 4 MiB, DIR/<id>-raw.img. Returns {id: top
    path}; image_format() tells the top's format."""
    tops = {}
    for disk, chain in disks.items():
        prev, prev_fmt = None, "qcow2"
        if chain == ["raw"]:
            path = os.path.join(d, "%s-raw.img" % disk)
            with open(path, "wb") as f:
                f.truncate(SIZE)
            tops[disk] = path
            continue
        for i, layer in enumerate(chain):
            if layer == "nbd":
                prev, p = start_nbd(d, disk)
                prev_fmt = "raw"
                procs.append(p)
                continue
            path = os.path.join(d, "%s-%s.qcow2" % (disk, layer))
            cmd = ["qemu-img", "create", "-q", "-f", "qcow2"]
            if prev:
                cmd += ["-b", prev, "-F", prev_fmt]
            subprocess.run(cmd + [path, str(SIZE)], check=True)
            cmds = ["-c", "write -P 0x%02x %d 256k" % (0x11 * (i + 1), i * (512 << 10))]
            if i == 0:
                # a base with 2 MiB more: streaming it takes several chunks
                cmds += ["-c", "write -P 0x77 1M 2M"]
            subprocess.run(["qemu-io", "-f", "qcow2"] + cmds + [path], check=True,
                           stdout=subprocess.DEVNULL)
            prev, prev_fmt = path, "qcow2"
        tops[disk] = prev
    return tops


def image_format(path):
    return "raw" if path.endswith(".img") else "qcow2"


def stop_procs(procs):
    for p in procs:
        p.terminate()
        p.wait(timeout=10)


def subst(v, d):
    if isinstance(v, str):
        return v.replace("$DIR", d)
    if isinstance(v, list):
        return [subst(x, d) for x in v]
    if isinstance(v, dict):
        return {k: subst(x, d) for k, x in v.items()}
    return v


class Conn:
    def __init__(self, path, timeout=30.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.sock.settimeout(timeout)
        self.buf = b""
        self.events = []
        self.recv()
        self.cmd("qmp_capabilities", {})

    def recv(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def cmd(self, name, args):
        self.sock.sendall((json.dumps({"execute": name, "arguments": args}) + "\n").encode())
        while True:
            m = self.recv()
            if "event" in m:
                self.events.append(m)
            else:
                return m

    def wait(self, name, match, seen, timeout=60.0):
        deadline = time.monotonic() + timeout
        while True:
            for i, ev in enumerate(self.events):
                if i < seen[0]:
                    continue
                if ev["event"] == name and all(ev.get("data", {}).get(k) == v
                                               for k, v in match.items()):
                    seen[0] = i + 1
                    return
            if time.monotonic() > deadline:
                raise AssertionError("no %s %r within %ds; events: %r" %
                                     (name, match, timeout, self.events))
            self.sock.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                self.events.append(self.recv())
            except socket.timeout:
                pass

    def settle(self, secs=0.5):
        """Collect events that are still on their way."""
        self.sock.settimeout(secs)
        try:
            while True:
                self.events.append(self.recv())
        except socket.timeout:
            pass


def clean_event(ev):
    data = dict(ev.get("data", {}))
    data.pop("vm", None)
    return {"event": ev["event"], "data": data}


def run(conn, steps, d):
    """Run @steps; returns the trace (replies, events)."""
    replies = []
    seen = [0]
    for step in steps:
        if step[0] == "cmd":
            r = conn.cmd(step[1], subst(step[2], d))
            r.pop("id", None)
            replies.append({"cmd": step[1], "reply": r})
        elif step[0] == "wait":
            conn.wait(step[1], step[2], seen)
        elif step[0] == "wait-all":
            # jobs that run side by side may end in either order
            start, last = seen[0], seen[0]
            for match in step[2]:
                seen[0] = start
                conn.wait(step[1], match, seen)
                last = max(last, seen[0])
            seen[0] = last
        elif step[0] == "bitmaps":
            # each disk's dirty bitmaps, as query-block lists them
            r = conn.cmd("query-block", {})
            replies.append({"cmd": "bitmaps", "reply": {
                b["device"]: sorted(b.get("inserted", {}).get("dirty-bitmaps", []),
                                    key=lambda x: x["name"])
                for b in r.get("return", [])}})
        elif step[0] == "img":
            subprocess.run(["qemu-img"] + subst(step[1:], d), check=True)
        elif step[0] == "sleep":
            time.sleep(step[1])
        elif step[0] == "touch":
            open(os.path.join(d, step[1]), "w").close()
        elif step[0] == "rm":
            os.unlink(os.path.join(d, step[1]))
    conn.settle()
    return {"replies": replies, "events": [clean_event(e) for e in conn.events]}


def files(d):
    return sorted(f for f in os.listdir(d) if not f.startswith(".") and not f.endswith(".raw"))
