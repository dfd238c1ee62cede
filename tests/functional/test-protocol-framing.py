#!/usr/bin/env python3
"""The QMP wire protocol on vmmd's main socket (DESIGN.md §5, vmmd-protocol(7)):
greeting, negotiation, ids, error classes, input without newlines, strict
arguments, recovery after bad input."""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vmmdtest import Vmmd, main  # noqa: E402
from daemon_helpers import raw_connect, read_line  # noqa: E402


def lines(s, n):
    return [json.loads(read_line(s)) for _ in range(n)]


def test_greeting_and_negotiation():
    with Vmmd() as d:
        s = raw_connect(d.socket)
        g = json.loads(read_line(s))
        assert set(g) == {"QMP"}, g
        assert set(g["QMP"]["version"]["qemu"]) == {"major", "minor", "micro"}
        assert g["QMP"]["capabilities"] == []
        s.sendall(b'{"execute": "query-vms", "id": 1}')
        r = json.loads(read_line(s))
        assert r["error"]["class"] == "CommandNotFound" and r["id"] == 1, r
        s.sendall(b'{"execute": "qmp_capabilities", "id": "neg"}')
        assert json.loads(read_line(s)) == {"return": {}, "id": "neg"}
        s.sendall(b'{"execute": "qmp_capabilities"}')
        assert json.loads(read_line(s))["error"]["class"] == "CommandNotFound"
        s.close()


def test_stream_without_newlines_and_ids():
    with Vmmd() as d:
        s = raw_connect(d.socket)
        read_line(s)
        # Three objects in one write, no separators; ids of any JSON type echoed.
        s.sendall(b'{"execute":"qmp_capabilities","id":[1,{"a":null}]}'
                  b'{"execute":"query-version","id":2.5}{"execute":"query-vms","id":"x"}')
        r = lines(s, 3)
        assert r[0] == {"return": {}, "id": [1, {"a": None}]}, r
        assert r[1]["id"] == 2.5 and r[1]["return"]["package"].startswith("vmmd-"), r
        assert r[2] == {"return": [], "id": "x"}, r
        # One object split over many writes.
        for ch in b'{"execute": "query-vms", "id": 7}':
            s.sendall(bytes([ch]))
        assert lines(s, 1)[0] == {"return": [], "id": 7}


def test_errors_keep_the_connection():
    with Vmmd() as d:
        q = d.qmp()
        cases = [
            (b'{"execute": "no-such-command", "id": 1}', "CommandNotFound", 1),
            (b'{"execute": "query-vms", "arguments": {"bogus": 1}, "id": 2}', "GenericError", 2),
            (b'{"execute": "query-vms", "arguments": {"vm": 5}, "id": 3}', "GenericError", 3),
            (b'{"execute": "query-status", "arguments": {"vm": "nope"}, "id": 4}',
             "DeviceNotFound", 4),
            (b'{"execute": "stop", "id": 5}', "GenericError", 5),
            (b'{"arguments": {}, "id": 6}', "GenericError", 6),
            (b'{"execute": 42}', "GenericError", None),
            (b'{"execute": "query-vms", "extra": true}', "GenericError", None),
            (b'{"exec-oob": "query-vms", "id": 8}', "GenericError", 8),
            (b'{"execute": "query-vms",}', "GenericError", None),  # broken JSON
            (b'{"execute": "query-vms", "execute": "stop"}', "GenericError", None),  # duplicate
            (b'[1, 2, 3]', "GenericError", None),  # not an object
            (b'"a string"', "GenericError", None),
            (b'12345 ', "GenericError", None),
            (b'{"execute": "a\x80b"}', "GenericError", None),  # bad UTF-8: lone continuation
            (b'{"execute": "\xed\xa0\x80"}', "GenericError", None),  # bad UTF-8: surrogate
            (b'{"execute": "\xc3\x28"}', "GenericError", None),  # bad UTF-8
        ]
        for raw, cls, id_ in cases:
            q.send_raw(raw)
            r = q.reply()
            assert "error" in r, (raw, r)
            assert r["error"]["class"] == cls, (raw, r)
            assert r.get("id") == id_, (raw, r)
            assert isinstance(r["error"]["desc"], str) and r["error"]["desc"], r
            assert q.ok("query-vms") == [], raw


def test_resync_with_control_character():
    with Vmmd() as d:
        q = d.qmp()
        # A half-sent command abandoned with an ASCII control character (QEMU's resync).
        q.send_raw(b'{"execute": "query-vms", "arguments": {"vm": \x1b')
        r = q.reply()
        assert r["error"]["class"] == "GenericError", r
        assert q.ok("query-vms") == []
        # Binary garbage, then the resync bytes 0xFF and 0x1B outside any string.
        q.send_raw(bytes(range(0x20, 0x7f)) + b"\xff\x1b")
        while True:
            r = q.reply()
            assert "error" in r, r
            q.send_raw(b'{"execute": "query-vms", "id": "sync"}')
            r = q.reply()
            while r.get("id") != "sync":
                assert "error" in r, r
                r = q.reply()
            assert r == {"return": [], "id": "sync"}, r
            break


def test_strict_arguments_before_side_effects():
    with Vmmd() as d:
        q = d.qmp()
        r = q.cmd("vm-create", {"name": "a", "vcpus": "two"})
        assert r["error"]["class"] == "GenericError" and "vcpus" in r["error"]["desc"], r
        r = q.cmd("vm-create", {"name": "a", "unknown-key": 1})
        assert r["error"]["class"] == "GenericError" and "unknown-key" in r["error"]["desc"], r
        assert q.ok("query-vms") == []
        assert not os.listdir(os.path.join(d.state_dir, "vms"))


def test_introspection():
    with Vmmd() as d:
        q = d.qmp()
        names = {c["name"] for c in q.ok("query-commands")}
        for c in ("qmp_capabilities", "query-status", "stop", "cont", "system_reset",
                  "system_powerdown", "quit", "query-version", "query-commands",
                  "query-qmp-schema", "getfd", "closefd", "vm-create", "vm-start",
                  "vm-destroy", "vm-delete", "query-vms", "query-block", "query-blockstats"):
            assert c in names, c
        schema = q.ok("query-qmp-schema")
        by_name = {e["name"]: e for e in schema}
        assert by_name["query-status"]["meta-type"] == "command"
        for e in schema:
            for k in ("arg-type", "ret-type", "element-type"):
                if k in e:
                    assert e[k] in by_name, (e, k)
        assert by_name["SHUTDOWN"]["meta-type"] == "event"


if __name__ == "__main__":
    main(globals())
