#!/usr/bin/env python3
"""Migration capabilities and auto-converge (docs/migration.md), QEMU 7.2's
way: migrate-set-capabilities / query-migrate-capabilities, the throttling
parameters of migrate-set-parameters, and the source's vCPUs throttled when
the guest dirties RAM faster than the link carries. Shapes, defaults and
errors are replayed from QEMU 7.2's golden trace
(tests/functional/golden/migration-caps.json, make-golden-migration-caps.py).

The guest is tests/guests/migrate.c: it rewrites 8 MiB of RAM without pause
(about 75 sweeps a second here, 600 MB/s) and checks every page; it makes
no exits between its progress lines, so a throttle that only acted on exits
would not slow it. Two daemons on one host over a unix: socket."""

import importlib.util
import json
import os
import re
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from vmmdtest import TOP_SRCDIR, Vmmd, main, wait_for  # noqa: E402
from daemon_helpers import TEST_CPU, console_log, wait_console  # noqa: E402

_spec = importlib.util.spec_from_file_location("tmig", os.path.join(HERE, "test-migration.py"))
tmig = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tmig)
vm_def = tmig.vm_def

GOLDEN = os.path.join(TOP_SRCDIR, "tests", "functional", "golden", "migration-caps.json")
IMPLEMENTED = ("auto-converge", "events", "xbzrle")
# A cap the guest's 8 MiB outruns without throttling (8 MiB take 500 ms > the
# 300 ms downtime-limit) but not at 99 % throttle (a sweep every ~1.3 s).
CAP = 16 << 20


def golden():
    with open(GOLDEN) as f:
        return json.load(f)


def passes(d, name="m1"):
    return tmig.passes(console_log(d, name))


def last_pass(d, name="m1"):
    p = passes(d, name)
    return p[-1][0] if p else 0


def rate(d, seconds=3.0):
    """The guest's sweeps per second on @d over @seconds (its 16-pass lines)."""
    a, t = last_pass(d), time.monotonic()
    time.sleep(seconds)
    return (last_pass(d) - a) / (time.monotonic() - t)


def boot(d, name="m1", **extra):
    q = d.qmp()
    q.ok("vm-create", dict(vm_def(name, **extra), start=True))
    wait_console(d, name, "migrate: pass 32 ", timeout=90)
    return q


def incoming(d, name="m1", **extra):
    q = d.qmp()
    q.ok("vm-create", dict(vm_def(name, **extra), incoming=True, start=True))
    sock = os.path.join(d.tmp, "%s-%d.sock" % (name, time.monotonic_ns()))
    q.ok("migrate-incoming", vm=name, uri="unix:" + sock)
    return q, "unix:" + sock


def wait_end(q, name="m1", timeout=60):
    wait_for(lambda: q.ok("query-migrate", vm=name).get("status")
             in ("completed", "failed", "cancelled"), timeout, interval=0.1,
             what="the migration to end")
    return q.ok("query-migrate", vm=name)


def with_events(caps, on):
    return [dict(c, state=on) if c["capability"] == "events" else c for c in caps]


def mig_events(q, name="m1"):
    """MIGRATION / MIGRATION_PASS events of @name received so far on @q."""
    q.ok("query-status", vm=name)  # flush what is queued
    return [e for e in q.events if e["event"] in ("MIGRATION", "MIGRATION_PASS")
            and e["data"].get("vm") == name]


def test_capabilities_and_parameters_as_qemu():
    """QEMU 7.2's capability list, the throttling parameters' defaults, and
    its answers to each set (range errors in QEMU's order and words)."""
    g = golden()
    with Vmmd() as d:
        q = d.qmp()
        q.ok("vm-create", dict(vm_def(), start=False))
        caps = q.ok("query-migrate-capabilities", vm="m1")
        # QEMU's names in QEMU's order; events is on by default in vmmd
        # (docs/migration.md: it always sent MIGRATION events).
        assert caps == with_events(g["query-migrate-capabilities"], True), caps
        params = q.ok("query-migrate-parameters", vm="m1")
        assert {k: params[k] for k in g["default-parameters"]} == g["default-parameters"], params
        for step in g["set-parameters"]:
            r = q.cmd("migrate-set-parameters", dict(step["arguments"], vm="m1"))
            r.pop("id", None)
            assert r == step["reply"], (step, r)
        params = q.ok("query-migrate-parameters", vm="m1")
        assert {k: params[k] for k in g["parameters-after-set"]} == \
            g["parameters-after-set"], params
        r = q.cmd("migrate-set-capabilities", vm="m1",
                  capabilities=[{"capability": "no-such-thing", "state": True}])
        assert r["error"] == g["set-unknown-capability"]["error"], r
        r = q.cmd("migrate-set-capabilities", vm="m1",
                  capabilities=[{"capability": "auto-converge", "state": True}])
        assert r == g["set-auto-converge"], r
        caps = q.ok("query-migrate-capabilities", vm="m1")
        assert caps == with_events(g["query-after-set"], True), caps
        # What vmmd does not implement is listed off and cannot be turned on.
        for c in g["query-migrate-capabilities"]:
            name = c["capability"]
            if name in IMPLEMENTED:
                continue
            r = q.cmd("migrate-set-capabilities", vm="m1",
                      capabilities=[{"capability": name, "state": True}])
            assert r.get("error") == {
                "class": "GenericError",
                "desc": "vmmd does not support migration capability '%s'" % name}, r
            q.ok("migrate-set-capabilities", vm="m1",
                 capabilities=[{"capability": name, "state": False}])
        # Checked before anything applies: auto-converge stays on.
        r = q.cmd("migrate-set-capabilities", vm="m1",
                  capabilities=[{"capability": "auto-converge", "state": False},
                                {"capability": "multifd", "state": True}])
        assert "multifd" in r["error"]["desc"], r
        assert q.ok("query-migrate-capabilities", vm="m1") == \
            with_events(g["query-after-set"], True)
        # Strict arguments: a capability entry without state is refused.
        r = q.cmd("migrate-set-capabilities", vm="m1",
                  capabilities=[{"capability": "auto-converge"}])
        assert r["error"]["class"] == "GenericError" and "state" in r["error"]["desc"], r


def test_events_capability_and_set_while_active():
    """As QEMU: with the events capability off a migration sends no
    MIGRATION or MIGRATION_PASS; while it runs, capabilities cannot change
    (QEMU's error) but parameters can; turned back on, events come again."""
    g = golden()
    with Vmmd() as src, Vmmd() as dst:
        qs = boot(src)
        qd, uri = incoming(dst)
        qs.ok("migrate-set-capabilities", vm="m1",
              capabilities=[{"capability": "events", "state": False}])
        qs.ok("migrate-set-parameters", vm="m1", **{"max-bandwidth": 4 << 20})
        qs.ok("migrate", vm="m1", uri=uri)
        wait_for(lambda: qs.ok("query-migrate", vm="m1").get("status") == "active", 30,
                 what="an active migration")
        r = qs.cmd("migrate-set-capabilities", vm="m1",
                   capabilities=[{"capability": "auto-converge", "state": False}])
        assert r["error"] == g["set-capability-active"]["error"], r
        r = qs.cmd("migrate-set-parameters", vm="m1", **{"cpu-throttle-increment": 11})
        assert r.get("return") == g["set-parameters-active"]["return"], r
        assert qs.ok("query-migrate-parameters", vm="m1")["cpu-throttle-increment"] == 11
        wait_for(lambda: qs.ok("query-migrate", vm="m1")["ram"]["dirty-sync-count"] >= 3,
                 30, what="three dirty syncs")
        qs.ok("migrate_cancel", vm="m1")
        assert wait_end(qs)["status"] == "cancelled"
        assert mig_events(qs) == g["src-migration-events-without-capability"], mig_events(qs)
        # The destination's own capability was on: it reports its side.
        wait_for(lambda: qd.ok("query-migrate", vm="m1").get("status") == "failed", 30,
                 what="the destination to fail")
        assert [e["data"]["status"] for e in mig_events(qd)] == ["setup", "active", "failed"]
        # Back on: the next attempt (nobody listens) has its events.
        qs.ok("migrate-set-capabilities", vm="m1",
              capabilities=[{"capability": "events", "state": True}])
        qs.ok("migrate", vm="m1", uri="unix:" + os.path.join(src.tmp, "nobody.sock"))
        end = wait_end(qs)
        assert end["status"] == "failed", end
        # On failure, what the client got and the daemon's capabilities (the
        # events once came after later answers: test_events_come_before_later_answers).
        assert [e["data"]["status"] for e in mig_events(qs)] == ["setup", "failed"], \
            (end, qs.events, qs.ok("query-migrate-capabilities", vm="m1"))


def test_events_come_before_later_answers():
    """An event queued before a command runs goes out before that command's
    answer, as in QEMU, however fast the client sends: twenty migrations
    that fail at once, each polled with query-migrate at full speed until
    it says "failed", then query-status; both MIGRATION events come before
    that answer. (The monitor read a fast client's next commands before the
    loop turned to the queued events: about one round in three failed.)"""
    with Vmmd() as src:
        qs = boot(src)
        for i in range(20):
            n0 = len(qs.events)
            qs.ok("migrate", vm="m1", uri="unix:" + os.path.join(src.tmp, "nobody.sock"))
            deadline = time.monotonic() + 30
            while qs.ok("query-migrate", vm="m1")["status"] != "failed":
                assert time.monotonic() < deadline, "the migration did not fail"
            qs.ok("query-status", vm="m1")
            got = [e["data"]["status"] for e in qs.events[n0:] if e["event"] == "MIGRATION"]
            assert got == ["setup", "failed"], (i, got)


def throttle_seen(q, seen, name="m1"):
    info = q.ok("query-migrate", vm=name)
    if "cpu-throttle-percentage" in info:
        seen.append(info["cpu-throttle-percentage"])
    return info


def test_auto_converge_completes():
    """At CAP the guest never converges without throttling (QEMU's
    behaviour, as test-migration.py's bandwidth case); with auto-converge
    the source throttles its vCPU (90 %, then + 9 = 99 %) until it does.
    The guest's own check holds on the destination and its count goes on."""
    g = golden()
    with Vmmd() as src, Vmmd() as dst:
        qs = boot(src)
        qd, uri = incoming(dst)
        qs.ok("migrate-set-parameters", vm="m1", **{"max-bandwidth": CAP})
        qs.ok("migrate", vm="m1", uri=uri)
        wait_for(lambda: qs.ok("query-migrate", vm="m1").get("ram", {})
                 .get("dirty-sync-count", 0) >= 6, 60, interval=0.1, what="six dirty syncs")
        info = qs.ok("query-migrate", vm="m1")
        assert info["status"] == "active" and info["expected-downtime"] > 300, info
        assert "cpu-throttle-percentage" not in info, info
        qs.ok("migrate_cancel", vm="m1")
        assert wait_end(qs)["status"] == "cancelled"
        wait_end(qd)
        qd.ok("vm-delete", vm="m1")

        # At a quarter of CAP not even 99 % converges (8 MiB take 2 s), so
        # the throttle steps to 99 % however slowly a loaded host runs the
        # guest; at 90 % and CAP a guest slowed down enough converged.
        # Then CAP again, and it converges at 99 %.
        qd, uri = incoming(dst)
        qs.ok("migrate-set-capabilities", vm="m1",
              capabilities=[{"capability": "auto-converge", "state": True}])
        qs.ok("migrate-set-parameters", vm="m1", **{"cpu-throttle-initial": 90,
                                                  "cpu-throttle-increment": 9,
                                                  "max-bandwidth": CAP // 4})
        nonce = passes(src)[-1][1]
        qs.ok("migrate", vm="m1", uri=uri)
        seen = []
        wait_for(lambda: 99 in seen or throttle_seen(qs, seen).get("status") in
                 ("completed", "failed", "cancelled"), 60, interval=0.1,
                 what="the throttle to reach 99 %")
        qs.ok("migrate-set-parameters", vm="m1", **{"max-bandwidth": CAP})
        wait_for(lambda: throttle_seen(qs, seen)["status"] in ("completed", "failed"), 60,
                 interval=0.1, what="the migration to end")
        info = qs.ok("query-migrate", vm="m1")
        assert info["status"] == "completed", info
        assert "cpu-throttle-percentage" not in info, info
        # QEMU's steps: the initial percentage, then by the increment, up to 99.
        print("throttle seen:", seen, "total-time", info["total-time"])
        assert seen and seen[0] == 90 and max(seen) == 99, seen
        assert seen == sorted(seen) and set(seen) <= {90, 99}, seen
        keys = sorted(set(g["query-migrate-throttled-keys"]))
        assert keys == ["cpu-throttle-percentage", "expected-downtime", "ram", "setup-time",
                        "status", "total-time"], keys
        assert wait_end(qd)["status"] == "completed"
        last_src = last_pass(src)
        wait_for(lambda: last_pass(dst) > last_src + 32, 30, what="the guest to count on")
        text = console_log(dst, "m1")
        assert "BAD page" not in text and "migrate: boot" not in text, text[-1500:]
        assert all(n == nonce for _, n in passes(dst)), (nonce, text[-500:])


def throttled_at_90(qs, uri, name="m1"):
    """Migrate @name to @uri over a link too slow to converge even at 99 %,
    auto-converge capped at 90 %: it stays throttled at 90 % until
    cancelled."""
    qs.ok("migrate-set-capabilities", vm=name,
          capabilities=[{"capability": "auto-converge", "state": True}])
    qs.ok("migrate-set-parameters", vm=name, **{"max-bandwidth": 8 << 20,
                                              "cpu-throttle-initial": 90,
                                              "max-cpu-throttle": 90})
    qs.ok("migrate", vm=name, uri=uri)
    wait_for(lambda: qs.ok("query-migrate", vm=name).get("cpu-throttle-percentage") == 90,
             60, interval=0.1, what="the throttle")


def test_throttled_then_cancelled_runs_full_speed():
    """A throttled source whose migration is cancelled runs its guest at
    full speed again at once: the guest's own progress rate, before, while
    throttled and after, and query-migrate no longer reports a throttle."""
    with Vmmd() as src, Vmmd() as dst:
        qs = boot(src)
        qd, uri = incoming(dst)
        before = rate(src)
        assert before > 10, before
        throttled_at_90(qs, uri)
        during = rate(src, 6.0)
        # 90 %: a tenth of the speed. A throttle acting only on the guest's
        # exits (its progress lines) leaves it at about 30 %.
        assert during < before * 0.2, (before, during)
        assert qs.ok("query-migrate", vm="m1")["status"] == "active"
        assert qs.ok("query-status", vm="m1")["status"] == "running"
        qs.ok("migrate_cancel", vm="m1")
        info = wait_end(qs)
        assert info["status"] == "cancelled" and "cpu-throttle-percentage" not in info, info
        after = rate(src)
        print("sweeps/s before %.1f, throttled %.1f, after %.1f" % (before, during, after))
        # Against the throttled rate as well as the first: under a heavy
        # machine load the guest's own speed swings by half between samples.
        assert after > during * 3 and after > before * 0.4, (before, during, after)
        assert "BAD page" not in console_log(src, "m1")
        assert wait_end(qd)["status"] == "failed"


def throttle_timer_tids(pid):
    """The threads of process @pid that a POSIX timer signals (/proc/PID/timers)."""
    with open("/proc/%d/timers" % pid) as f:
        return {int(m.group(1)) for m in re.finditer(r"notify: signal/tid\.(\d+)", f.read())}


def test_plugged_vcpu_throttled():
    """A vCPU plugged while the source is throttled gets the throttle's tick
    as the others do (a timer signals its thread; on exits alone a vCPU
    that makes none would run at full speed), and no tick is left once the
    migration is cancelled."""
    with Vmmd() as src, Vmmd() as dst:
        qs = boot(src, maxcpus=2)
        qd, uri = incoming(dst, maxcpus=2)
        throttled_at_90(qs, uri)
        qs.ok("device_add", {"vm": "m1", "driver": TEST_CPU.split(",")[0] + "-x86_64-cpu",
                             "id": "c1", "socket-id": 0, "core-id": 1, "thread-id": 0})
        # the new vCPU's thread-id is 0 until its thread runs
        wait_for(lambda: all(c["thread-id"] for c in qs.ok("query-cpus-fast", vm="m1")), 10,
                 interval=0.05, what="the plugged vCPU's thread")
        tids = {c["cpu-index"]: c["thread-id"] for c in qs.ok("query-cpus-fast", vm="m1")}
        assert sorted(tids) == [0, 1], tids
        wait_for(lambda: set(tids.values()) <= throttle_timer_tids(src.proc.pid), 10,
                 interval=0.1, what="a throttle timer for each vCPU")
        assert qs.ok("query-migrate", vm="m1")["status"] == "active"
        qs.ok("migrate_cancel", vm="m1")
        assert wait_end(qs)["status"] == "cancelled"
        assert not set(tids.values()) & throttle_timer_tids(src.proc.pid)
        assert wait_end(qd)["status"] == "failed"


def test_vmctl_migrate_auto_converge():
    """vmctl migrate --auto-converge turns the capability on (it stays on)
    and shows the throttle in its progress lines until the VM has moved."""
    with Vmmd() as src, Vmmd() as dst:
        qs = boot(src)
        qd, uri = incoming(dst)
        qs.ok("migrate-set-parameters", vm="m1", **{"cpu-throttle-initial": 99})
        # a quarter of CAP, where even 99 % does not converge (however slowly a
        # loaded host runs the guest), until vmctl has shown a pass throttled
        out = []
        t = threading.Thread(target=lambda: out.append(src.vmctl(
            "migrate", "m1", uri, "--max-bandwidth", str(CAP // 4), "--auto-converge",
            timeout=120)))
        t.start()
        seen = []
        wait_for(lambda: 99 in seen or throttle_seen(qs, seen).get("status") in
                 ("completed", "failed", "cancelled"), 60, interval=0.1, what="the throttle")
        sync = qs.ok("query-migrate", vm="m1").get("ram", {}).get("dirty-sync-count", 0)
        wait_for(lambda: qs.ok("query-migrate", vm="m1").get("ram", {})
                 .get("dirty-sync-count", 0) >= sync + 2, 60, interval=0.1,
                 what="two passes throttled")
        qs.ok("migrate-set-parameters", vm="m1", **{"max-bandwidth": CAP})
        t.join(120)
        lines = out[0].stdout.splitlines()
        assert any(re.match(r"m1: active +pass \d+ .* vCPUs throttled 99%$", x)
                   for x in lines), lines
        assert re.match(r"m1: migrated in \d+ ms", lines[-1]), lines
        caps = {c["capability"]: c["state"]
                for c in qs.ok("query-migrate-capabilities", vm="m1")}
        assert caps["auto-converge"] is True, caps
        assert wait_end(qd)["status"] == "completed"
        p = src.vmctl("migrate", "m1", uri, "--auto-converge", "extra", check=False)
        assert p.returncode == 2, p.returncode


if __name__ == "__main__":
    main(globals())
