#!/usr/bin/env python3
"""The protocol server under hostile or clumsy clients (issue 14, failures 5
and 6): a client that pipelines and reads slowly is throttled, not cut off;
one that sends commands and closes its write side gets every answer; idle
connections at max-clients do not lock a new client out; a client that never
reads is still dropped."""

import json
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vmmdtest import Vmmd, main, wait_for  # noqa: E402
from daemon_helpers import raw_connect, read_line  # noqa: E402


def daemon(settings):
    d = Vmmd()
    conf = os.path.join(d.tmp, "vmmd.conf")
    with open(conf, "w") as f:
        f.write(settings)
    d.args += ["--config", conf]
    return d


def negotiated(d):
    s = raw_connect(d.socket, timeout=30)
    read_line(s)
    s.sendall(b'{"execute": "qmp_capabilities"}')
    assert json.loads(read_line(s)) == {"return": {}}
    return s


def read_replies(s, n, pause=0.0, chunk=65536, timeout=60):
    """Read @n CRLF-terminated replies, pausing @pause seconds between reads."""
    s.settimeout(timeout)
    buf = b""
    out = []
    while len(out) < n:
        data = s.recv(chunk)
        if not data:
            raise EOFError("closed after %d of %d replies" % (len(out), n))
        buf += data
        while b"\r\n" in buf:
            line, buf = buf.split(b"\r\n", 1)
            out.append(json.loads(line))
        if pause:
            time.sleep(pause)
    return out


def test_slow_pipelining_reader_is_throttled_not_dropped():
    # 64 KiB of output queue: the old server dropped this client at once.
    with daemon("output-queue-size = 64K\n") as d:
        s = negotiated(d)
        n = 300
        reqs = b"".join(b'{"execute": "query-qmp-schema", "id": %d}' % i for i in range(n))
        s.sendall(reqs)
        # Read slowly: 16 KiB every 5 ms, well below the rate vmmd produces.
        replies = read_replies(s, n, pause=0.005, chunk=16384)
        assert [r.get("id") for r in replies] == list(range(n))
        assert all("return" in r for r in replies)
        s.sendall(b'{"execute": "query-vms", "id": "end"}')
        assert read_replies(s, 1) == [{"return": [], "id": "end"}]
        assert "does not read" not in d.read_log()


def test_half_closed_client_gets_every_answer():
    with daemon("") as d:
        for n in (1, 50, 2000):
            s = raw_connect(d.socket, timeout=30)
            msgs = [b'{"execute": "qmp_capabilities"}'] + \
                [b'{"execute": "query-vms", "id": %d}' % i for i in range(n)]
            s.sendall(b"\n".join(msgs) + b"\n")
            s.shutdown(socket.SHUT_WR)
            data = b""
            while True:
                c = s.recv(65536)
                if not c:
                    break
                data += c
            lines = [json.loads(x) for x in data.split(b"\r\n") if x]
            assert "QMP" in lines[0] and lines[1] == {"return": {}}, lines[:2]
            assert [r.get("id") for r in lines[2:]] == list(range(n)), (n, len(lines))
            s.close()


def test_idle_clients_at_max_clients_do_not_lock_out():
    with daemon("max-clients = 3\n") as d:
        held = [negotiated(d) for _ in range(3)]
        time.sleep(3)   # all three idle longer than the eviction threshold (2 s)
        new = negotiated(d)
        new.sendall(b'{"execute": "query-vms"}')
        assert json.loads(read_line(new)) == {"return": []}
        # The longest-idle one (the first) was told and closed.
        r = json.loads(read_line(held[0]))
        assert "longest-idle" in r["error"]["desc"], r
        assert held[0].recv(1) == b""
        for h in held[1:]:
            h.sendall(b'{"execute": "query-vms"}')
            assert json.loads(read_line(h)) == {"return": []}
        # All busy (just active): a further client is refused, as before.
        s = raw_connect(d.socket)
        r = json.loads(read_line(s))
        assert "Too many clients (limit 3)" in r["error"]["desc"], r
        wait_for(lambda: "closing client" in d.read_log(), 5, what="the eviction in the log")


def test_client_that_never_reads_is_still_dropped():
    with daemon("output-queue-size = 64K\n") as d:
        s = negotiated(d)
        s.setblocking(False)
        req = b'{"execute": "query-qmp-schema"}' * 64
        t0 = time.monotonic()
        dropped = False
        while time.monotonic() - t0 < 40:
            try:
                s.send(req)
            except BlockingIOError:
                time.sleep(0.05)
            except (BrokenPipeError, ConnectionResetError):
                dropped = True
                break
        assert dropped, "vmmd kept a client that never reads"
        wait_for(lambda: "does not read" in d.read_log(), 5, what="the drop in the log")
        dt = time.monotonic() - t0
        print("dropped after %.1fs" % dt)


if __name__ == "__main__":
    main(globals())
