#!/usr/bin/env python3
"""Self-announcement of a VM's NICs (hw/announce.c, docs/migration.md),
replayed from QEMU 7.2's golden trace (golden/announce.json,
make-golden-announce.py): the announce-* migration parameters (defaults,
bounds, words), announce-self's answers and the RARP frames each call makes
on each NIC (count, spacing, bytes), its interfaces filter and named
timers, a paused VM holding its frames until cont; and a migration
destination announcing with its own parameters once it runs the VM.

The VM's two NICs (virtio-net and e1000) are taps in a network namespace
of the test's own; the frames are read from the taps' host side."""

import importlib.util
import json
import os
import socket
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from vmmdtest import Vmmd, main, wait_for  # noqa: E402
from daemon_helpers import TEST_CPU, guest  # noqa: E402

_spec = importlib.util.spec_from_file_location("upgrade", os.path.join(HERE, "test-upgrade.py"))
upgrade = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(upgrade)
_spec = importlib.util.spec_from_file_location("recorder",
                                               os.path.join(HERE, "make-golden-announce.py"))
recorder = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(recorder)

TOP_SRCDIR = os.environ.get("top_srcdir", os.path.join(HERE, "..", ".."))
GOLDEN = os.path.join(TOP_SRCDIR, "tests", "functional", "golden", "announce.json")
ETH_P_RARP = 0x8035
TAPS = {"nic0": "va0", "nic1": "va1"}
DRIVERS = {"nic0": "virtio-net", "nic1": "e1000"}
SLACK_MS = 15  # a timer never fires early; the capture's clock may be this late


def golden():
    with open(GOLDEN) as f:
        return json.load(f)


def vm_def(g, name="a1"):
    return {"name": name, "vcpus": 1, "memory": "32M", "cpu": TEST_CPU, "mem_backend": "memfd",
            "boot": {"kernel": guest("idle")},
            "nics": [{"id": nic, "driver": DRIVERS[nic], "backend": "tap", "ifname": TAPS[nic],
                      "mac": g["macs"][nic]} for nic in sorted(TAPS)]}


def tap_capture():
    """The RARP frames the VM sends on each tap, with arrival times."""
    socks = {}
    for nic, tap in TAPS.items():
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_RARP))
        s.setsockopt(socket.SOL_SOCKET, 33, 16 << 20)  # SO_RCVBUFFORCE: bursts of 1000
        s.bind((tap, ETH_P_RARP))
        socks[nic] = s
    return recorder.Capture(socks)


def counts(frames):
    return {nic: len(f) for nic, f in frames.items()}


def gaps_ms(f):
    return [(b[0] - a[0]) * 1000 for a, b in zip(f, f[1:])]


def check_spacing(got, want, what):
    """No gap shorter than QEMU's (timers do not fire early); none absurdly
    longer (a loaded machine may delay a round, not lose it)."""
    assert len(got) == len(want), (what, got, want)
    for g, w in zip(got, want):
        assert w - SLACK_MS <= g <= w + 2000, (what, got, want)


def same_reply(r, want, name):
    r.pop("id", None)
    desc = want.get("error", {}).get("desc", "")
    if "Invalid parameter type" in desc or "expects uint64" in desc:
        # a wrong type: vmmd's schema words it its own way (vmmd-protocol(7))
        assert r.get("error", {}).get("class") == want["error"]["class"], (r, want)
        assert name in r["error"]["desc"], (r, want)
        return
    assert r == want, (r, want)


def test_parameters_as_qemu():
    """announce-* in query-migrate-parameters, and QEMU's answer to each value."""
    g = golden()
    with Vmmd() as d:
        q = d.qmp()
        q.ok("vm-create", {"name": "p1", "vcpus": 1, "memory": "32M", "cpu": TEST_CPU,
                           "boot": {"kernel": guest("idle")}, "start": False})
        params = q.ok("query-migrate-parameters", vm="p1")
        assert {k: params[k] for k in g["default-parameters"]} == g["default-parameters"]
        for step in g["set-parameters"]:
            r = q.cmd("migrate-set-parameters", dict(step["arguments"], vm="p1"))
            same_reply(r, step["reply"], sorted(step["arguments"])[0])
        params = q.ok("query-migrate-parameters", vm="p1")
        assert {k: params[k] for k in g["parameters-after-set"]} == \
            g["parameters-after-set"], params


def test_announce_self_as_qemu():
    g = golden()
    with upgrade.OwnNetns() as ns, Vmmd() as d:
        for tap in TAPS.values():
            ns.tap(tap)
        cap = tap_capture()
        try:
            q = d.qmp()
            q.ok("vm-create", dict(vm_def(g), start=True))
            wait_for(lambda: q.ok("query-status", vm="a1")["status"] == "running", 30)
            assert counts(cap.take(settle=0.5)) == {"nic0": 0, "nic1": 0}, "frames unasked"
            for i, call in enumerate(g["announce-self"]):
                r = q.cmd("announce-self", dict(call["arguments"], vm="a1"))
                same_reply(r, call["reply"], "rounds")
                want = {nic: f["count"] for nic, f in call["frames"].items()}
                frames = cap.take(want)
                assert counts(frames) == want, (call["arguments"], counts(frames), want)
                if i == 0:
                    for nic in TAPS:
                        assert frames[nic][0][1].hex() == g["rarp-" + nic], frames[nic][0][1]
                        assert all(f[1] == frames[nic][0][1] for f in frames[nic])
                        check_spacing(gaps_ms(frames[nic]), call["frames"][nic]["gaps-ms"], nic)
            for pair in g["timer-pairs"]:
                base = g["announce-self"][0]["arguments"]
                r1 = q.cmd("announce-self", dict(base, vm="a1", **pair["first"]))
                r2 = q.cmd("announce-self", dict(base, vm="a1", **pair["second"]))
                for r, want in zip((r1, r2), pair["replies"]):
                    same_reply(r, want, "")
                want = {nic: f["count"] for nic, f in pair["frames"].items()}
                assert counts(cap.take(want)) == want, (pair, want)
            # Paused: nothing goes out; cont sends what came due meanwhile.
            p = g["paused"]
            q.ok("stop", vm="a1")
            r = q.cmd("announce-self", dict(p["announce"]["arguments"], vm="a1"))
            same_reply(r, p["announce"]["reply"], "")
            assert counts(cap.take()) == {n: f["count"] for n, f in
                                          p["announce"]["frames"].items()}
            q.ok("cont", vm="a1")
            want = {n: f["count"] for n, f in p["after-cont"].items()}
            assert counts(cap.take(want)) == want
            # vmmd's bounds where QEMU has none (its rounds -1 never ends).
            base = g["announce-self"][0]["arguments"]
            for bad, word in [({"rounds": -1}, "'rounds' expects a value between 0 and 1000"),
                              ({"rounds": 1001}, "'rounds'"), ({"initial": -5}, "'initial'"),
                              ({"max": 100001}, "'max'"), ({"step": 10001}, "'step'"),
                              ({"interfaces": ["n%d" % i for i in range(65)]}, "64 NICs"),
                              ({"id": "x" * 64}, "'id'")]:
                r = q.cmd("announce-self", dict(base, vm="a1", **bad))
                assert word in r.get("error", {}).get("desc", ""), (bad, r)
            # 16 ids besides "" (those of the timer pairs above count)
            used = {a["id"] for p in g["timer-pairs"] for a in (p["first"], p["second"])
                    if a.get("id")}
            for i in range(16 - len(used)):
                q.ok("announce-self", dict(base, vm="a1", rounds=0, id="t%d" % i))
            r = q.cmd("announce-self", dict(base, vm="a1", rounds=0, id="one-too-many"))
            assert "16 announce-self ids" in r.get("error", {}).get("desc", ""), r
            q.ok("announce-self", dict(base, vm="a1", rounds=0, id=""))
            q.ok("announce-self", dict(base, vm="a1", rounds=1, id="t3"))  # used: allowed
            assert counts(cap.take({"nic0": 1, "nic1": 1})) == {"nic0": 1, "nic1": 1}
            # A paused VM holds at most one schedule's worth (1000 rounds) however
            # often it is asked; they go at cont.
            q.ok("stop", vm="a1")
            for _ in range(3):
                q.ok("announce-self", dict(vm="a1", initial=0, max=0, step=0, rounds=1000))
                time.sleep(0.5)
            assert counts(cap.take(settle=0.2)) == {"nic0": 0, "nic1": 0}
            q.ok("cont", vm="a1")
            got = counts(cap.take({"nic0": 1000, "nic1": 1000}))
            assert got == {"nic0": 1000, "nic1": 1000}, got
        finally:
            cap.close()


def test_vmctl_announce():
    """vmctl announce: its defaults are QEMU's schedule, --interface and
    --rounds pass through, the daemon's and the usage errors."""
    g = golden()
    with upgrade.OwnNetns() as ns, Vmmd() as d:
        for tap in TAPS.values():
            ns.tap(tap)
        cap = tap_capture()
        try:
            q = d.qmp()
            q.ok("vm-create", dict(vm_def(g), start=True))
            p = d.vmctl("announce", "a1")
            assert p.stdout.strip() == "a1: announcing", p.stdout
            frames = cap.take({"nic0": 5, "nic1": 5})
            assert counts(frames) == {"nic0": 5, "nic1": 5}, counts(frames)
            check_spacing(gaps_ms(frames["nic1"]),
                          g["announce-self"][0]["frames"]["nic1"]["gaps-ms"], "nic1")
            d.vmctl("announce", "a1", "--rounds", "2", "--initial", "10", "--interface", "nic1")
            assert counts(cap.take({"nic1": 2})) == {"nic0": 0, "nic1": 2}
            p = d.vmctl("announce", "a1", "--rounds", "1001", check=False)
            assert p.returncode == 1 and "'rounds' expects a value between 0 and 1000" in \
                p.stderr, (p.returncode, p.stderr)
            p = d.vmctl("announce", "a1", "--step", "soon", check=False)
            assert p.returncode == 2 and "--step" in p.stderr, (p.returncode, p.stderr)
            p = d.vmctl("announce", "nope", check=False)
            assert p.returncode != 0 and "nope" in p.stderr, p.stderr
            assert counts(cap.take(settle=0.2)) == {"nic0": 0, "nic1": 0}
        finally:
            cap.close()


def test_destination_announces_after_migration():
    """As QEMU: once the destination runs the VM its NICs announce, with
    the destination's announce-* parameters; the source sends nothing."""
    g = golden()
    with upgrade.OwnNetns() as ns, Vmmd() as src, Vmmd() as dst:
        for tap in TAPS.values():
            ns.tap(tap)
        cap = tap_capture()
        try:
            qs, qd = src.qmp(), dst.qmp()
            qs.ok("vm-create", dict(vm_def(g), start=True))
            qd.ok("vm-create", dict(vm_def(g), incoming=True, start=True))
            qd.ok("migrate-set-parameters", vm="a1", **{"announce-rounds": 3,
                                                        "announce-initial": 20,
                                                        "announce-step": 30})
            sock = os.path.join(dst.tmp, "mig.sock")
            qd.ok("migrate-incoming", vm="a1", uri="unix:" + sock)
            assert counts(cap.take(settle=0.3)) == {"nic0": 0, "nic1": 0}
            qs.ok("migrate", vm="a1", uri="unix:" + sock)
            wait_for(lambda: qd.ok("query-migrate", vm="a1").get("status") == "completed", 60,
                     what="the migration to complete")
            assert qd.ok("query-status", vm="a1")["status"] == g["dst-status"]
            want = g["dst-frames-after-migration"]
            frames = cap.take({n: f["count"] for n, f in want.items()})
            assert counts(frames) == {n: f["count"] for n, f in want.items()}, counts(frames)
            for nic in TAPS:
                check_spacing(gaps_ms(frames[nic]), want[nic]["gaps-ms"], nic)
                assert frames[nic][0][1].hex() == g["rarp-" + nic]
            assert qs.ok("query-status", vm="a1")["status"] == "postmigrate"
        finally:
            cap.close()


if __name__ == "__main__":
    main(globals())
