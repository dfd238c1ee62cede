"""The harness's own QMP client against a scripted fake server."""
import json
import os
import socket
import tempfile
import threading

from vmmdtest import QMP, main, Skip, skip


def fake_server(path, script):
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)

    def run():
        conn, _ = srv.accept()
        f = conn.makefile("rwb")
        for out in script:
            if out is None:
                f.readline()
                continue
            f.write(json.dumps(out).encode() + b"\r\n")
            f.flush()
        conn.close()
        srv.close()
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_greeting_reply_and_events():
    with tempfile.TemporaryDirectory(prefix="vmmd-harness.") as d:
        path = os.path.join(d, "s")
        t = fake_server(path, [
            {"QMP": {"version": {}, "capabilities": []}},
            None, {"return": {}},
            None, {"event": "STOP", "data": {}, "timestamp": {"seconds": 1, "microseconds": 2}},
            {"return": {"status": "paused"}, "id": 7},
        ])
        q = QMP(path, negotiate=False)
        assert q.ok("qmp_capabilities") == {}
        r = q.cmd("query-status", id=7)
        assert r == {"return": {"status": "paused"}, "id": 7}, r
        assert q.event("STOP")["timestamp"]["microseconds"] == 2
        q.close()
        t.join()


def test_skip_is_reported():
    try:
        skip("reason")
    except Skip as e:
        assert str(e) == "reason"
    else:
        raise AssertionError("skip() did not raise")


if __name__ == "__main__":
    main(globals())
