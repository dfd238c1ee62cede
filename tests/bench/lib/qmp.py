"""A small QMP client used against both vmmd and QEMU, plus the raw
round-trip loop of the control-plane figure (which runs in forked client
processes, one connection each).
"""

import json
import socket
import time


class QMPError(Exception):
    pass


class QMP:
    def __init__(self, path, timeout=30.0, negotiate=True):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b""
        self.events = []
        greeting = self.recv()
        if "QMP" not in greeting:
            raise QMPError("no QMP greeting from %s: %r" % (path, greeting))
        if negotiate:
            self.ok("qmp_capabilities")

    def close(self):
        self.sock.close()

    def recv(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise QMPError("connection closed by the server")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def cmd(self, name, args=None):
        msg = {"execute": name}
        if args is not None:
            msg["arguments"] = args
        self.sock.sendall(json.dumps(msg).encode() + b"\n")
        while True:
            r = self.recv()
            if "event" in r:
                self.events.append(r)
                continue
            return r

    def ok(self, name, args=None):
        r = self.cmd(name, args)
        if "return" not in r:
            err = r.get("error", {})
            raise QMPError("%s: %s: %s" % (name, err.get("class", "?"), err.get("desc", r)))
        return r["return"]


def roundtrip_loop(path, requests, duration, barrier, out):
    """Client process body: send @requests (pre-encoded, cycled) one at a
    time for @duration s after @barrier, and put the latencies (µs) on @out.

    Each reply must be a "return"; an error reply or a closed connection is
    reported as a string instead of the list.
    """
    try:
        q = QMP(path)
        sock = q.sock
        buf = q.buf
        lat = []
        i = 0
        n = len(requests)
        barrier.wait(30)
        end = time.monotonic() + duration
        clock = time.perf_counter
        while True:
            t0 = clock()
            sock.sendall(requests[i % n])
            while b"\n" not in buf:
                chunk = sock.recv(65536)
                if not chunk:
                    raise QMPError("connection closed")
                buf += chunk
            line, buf = buf.split(b"\n", 1)
            t1 = clock()
            if b'"event"' in line[:12]:
                continue
            if not line.startswith(b'{"return"') and b'"return"' not in line:
                raise QMPError("error reply: %s" % line[:200].decode(errors="replace"))
            lat.append((t1 - t0) * 1e6)
            i += 1
            if time.monotonic() >= end:
                break
        q.close()
        out.put(lat)
    except Exception as e:  # reported to the parent, which marks the figure skipped
        try:
            barrier.abort()
        except Exception:
            pass
        out.put("%s: %s" % (type(e).__name__, e))
