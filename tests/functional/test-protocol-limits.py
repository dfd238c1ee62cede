#!/usr/bin/env python3
"""The malformed-input corpus and the protocol limits (vmmd-protocol(7)):
broken JSON, a 64 MiB line, 100 000-deep nesting, binary garbage, slow,
silent and non-reading clients, 500 connections at once. Throughout, another
client must be answered within a second, and afterwards vmmd's RSS must be
back near its baseline."""

import json
import os
import random
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vmmdtest import Vmmd, main, wait_for  # noqa: E402
from daemon_helpers import raw_connect, read_line, rss_kib, rss_slack, timed_ok  # noqa: E402

# Well above the defaults' needs, small enough to hit in a test.
SETTINGS = """
max-clients = 600
max-message-size = 1M
max-nesting-depth = 64
output-queue-size = 256K
negotiation-timeout = 2
"""


def daemon():
    d = Vmmd()
    conf = os.path.join(d.tmp, "vmmd.conf")
    with open(conf, "w") as f:
        f.write(SETTINGS)
    d.args += ["--config", conf]
    return d


class Watcher(threading.Thread):
    """Keeps asking query-vms on its own connection; records the slowest answer."""

    def __init__(self, d):
        super().__init__(daemon=True)
        self.q = d.qmp()
        self.stop = threading.Event()
        self.worst = 0.0
        self.count = 0
        self.error = None

    def run(self):
        try:
            while not self.stop.is_set():
                self.worst = max(self.worst, timed_ok(self.q, limit=1.0))
                self.count += 1
                time.sleep(0.02)
        except Exception as e:  # reported by finish()
            self.error = e

    def finish(self):
        self.stop.set()
        self.join(10)
        if self.error:
            raise self.error
        assert self.count > 0
        return self.worst


def negotiated(d):
    s = raw_connect(d.socket, timeout=30)
    read_line(s)
    s.sendall(b'{"execute":"qmp_capabilities"}')
    assert json.loads(read_line(s)) == {"return": {}}
    return s


def expect_error(s, fragment):
    r = json.loads(read_line(s, timeout=30))
    assert "error" in r and fragment in r["error"]["desc"], r


def still_works(s):
    s.sendall(b'{"execute":"query-vms","id":"ok"}')
    r = json.loads(read_line(s, timeout=30))
    while r.get("id") != "ok":
        assert "error" in r, r
        r = json.loads(read_line(s, timeout=30))
    assert r == {"return": [], "id": "ok"}, r


def test_corpus():
    with daemon() as d:
        pid = d.proc.pid
        q = d.qmp()
        for _ in range(50):
            q.ok("query-qmp-schema")
        baseline = rss_kib(pid)
        w = Watcher(d)
        w.start()

        # A 64 MiB line: one "too big" error, nothing buffered beyond the limit.
        s = negotiated(d)
        chunk = b"a" * (1 << 20)
        s.sendall(b'{"execute": "query-vms", "arguments": {"vm": "')
        for _ in range(64):
            s.sendall(chunk)
        s.sendall(b'"}}')
        expect_error(s, "exceeds the maximum size")
        still_works(s)
        assert rss_kib(pid) < baseline + 2 * rss_slack(pid), (rss_kib(pid), baseline)

        # 100 000-deep nesting: one "too deep" error, the rest skipped.
        s.sendall(b"[" * 100000 + b"]" * 100000)
        expect_error(s, "exceeds the maximum depth")
        s.sendall(b'{"a":' * 100000 + b"1" + b"}" * 100000)
        expect_error(s, "exceeds the maximum depth")
        still_works(s)

        # Broken JSON of several kinds.
        for bad in (b'{"execute": }', b'{"execute" "x"}', b'{,}', b'{"a": tru}', b'}', b']'):
            s.sendall(bad)
            expect_error(s, "")
            still_works(s)

        # Binary garbage, on a connection of its own that is then closed.
        # It does not read its error replies, so vmmd may drop it: either is fine.
        # vmmd stops reading it once its error replies pile up and drops it when
        # they have not moved for 10 s (vmmd-protocol(7)): allow for that.
        g = negotiated(d)
        g.settimeout(60)
        rnd = random.Random(1)
        try:
            g.sendall(bytes(rnd.getrandbits(8) for _ in range(1 << 20)))
        except (BrokenPipeError, ConnectionResetError):
            pass
        g.close()
        still_works(s)
        s.close()

        # A slow client: one byte every 20 ms.
        slow = negotiated(d)
        for ch in b'{"execute": "query-vms", "id": 1}':
            slow.sendall(bytes([ch]))
            time.sleep(0.02)
        assert json.loads(read_line(slow)) == {"return": [], "id": 1}
        slow.close()

        worst = w.finish()
        print("slowest answer to the other client during the corpus: %.3fs" % worst)
        q.ok("query-vms")
        after = rss_kib(pid)
        print("RSS baseline %d KiB, after %d KiB" % (baseline, after))
        assert after < baseline + rss_slack(pid), (baseline, after)


def test_silent_client_times_out():
    with daemon() as d:
        s = raw_connect(d.socket)
        read_line(s)
        t0 = time.monotonic()
        r = json.loads(read_line(s, timeout=10))
        assert "negotiation timed out" in r["error"]["desc"], r
        assert s.recv(1) == b""
        assert 1.5 < time.monotonic() - t0 < 5
        # A negotiated client is not subject to it.
        q = d.qmp()
        time.sleep(2.5)
        q.ok("query-vms")


def test_client_that_never_reads_is_dropped():
    with daemon() as d:
        w = Watcher(d)
        w.start()
        s = negotiated(d)
        s.setblocking(False)
        req = b'{"execute": "query-qmp-schema"}' * 64
        sent = 0
        t0 = time.monotonic()
        dropped = False
        while time.monotonic() - t0 < 20:
            try:
                sent += s.send(req)
            except BlockingIOError:
                time.sleep(0.01)
            except (BrokenPipeError, ConnectionResetError):
                dropped = True
                break
        s.close()
        w.finish()
        assert dropped, "vmmd kept a client that never reads (%d bytes sent)" % sent
        wait_for(lambda: "does not read" in d.read_log(), 5, what="the drop in the log")


def test_500_connections_at_once():
    with daemon() as d:
        pid = d.proc.pid
        q = d.qmp()
        q.ok("query-vms")
        baseline = rss_kib(pid)
        w = Watcher(d)
        w.start()
        socks = []
        for _ in range(500):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(d.socket)
            socks.append(s)
        for s in socks:
            assert "QMP" in json.loads(read_line(s, timeout=30))
        for s in socks:
            s.sendall(b'{"execute":"qmp_capabilities"}{"execute":"query-vms"}')
        for s in socks:
            assert json.loads(read_line(s, timeout=30)) == {"return": {}}
            assert json.loads(read_line(s, timeout=30)) == {"return": []}
        for s in socks:
            s.close()
        worst = w.finish()
        print("slowest answer during 500 connections: %.3fs" % worst)
        q.ok("query-vms")
        after = rss_kib(pid)
        print("RSS baseline %d KiB, after %d KiB" % (baseline, after))
        assert after < baseline + rss_slack(pid), (baseline, after)


def test_max_clients():
    d = Vmmd()
    conf = os.path.join(d.tmp, "limit.conf")
    with open(conf, "w") as f:
        f.write("max-clients = 3\n")
    d.args += ["--config", conf]
    with d:
        held = [d.qmp() for _ in range(3)]
        # All three active just now: none is idle enough to be evicted (see
        # test-security-protocol.py for the eviction of idle clients).
        for h in held:
            h.ok("query-vms")
        s = raw_connect(d.socket)
        r = json.loads(read_line(s))
        assert "Too many clients (limit 3)" in r["error"]["desc"], r
        assert s.recv(1) == b""
        held.pop().close()

        def slot():
            try:
                return d.qmp()
            except AssertionError:  # the closed one is not reaped yet
                return None
        held.append(wait_for(slot, 5, what="a free slot"))
        for h in held:
            h.ok("query-vms")


if __name__ == "__main__":
    main(globals())
