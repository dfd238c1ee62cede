#!/usr/bin/env python3
"""Record QEMU 7.2's migration capabilities and auto-converge answers as a
golden trace (tests/functional/golden/migration-caps.json) for
test-migration-caps.py.

Two qemu-system-x86_64 -machine pc,accel=kvm run the migration test guest
(tests/guests/migrate.elf, booted through its PVH note; it rewrites 8 MiB of
RAM without pause), the destination with -incoming defer, on the loopback.
Recorded: query-migrate-capabilities (names, order, default states), the
defaults of the throttling parameters, the errors of out-of-range
parameters and of an unknown capability name; then a migration too slow to
converge with auto-converge on and the events capability off: the source's
MIGRATION events (none), query-migrate's keys and cpu-throttle-percentage
while throttled, migrate-set-capabilities during the migration (refused),
and query-migrate after migrate_cancel.

Usage: tests/functional/make-golden-migration-caps.py GUEST.elf [QEMU]"""

import importlib.util
import os
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("golden_migration",
                                               os.path.join(HERE, "make-golden-migration.py"))
golden_migration = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(golden_migration)

GUEST = sys.argv[1]
QEMU = sys.argv[2] if len(sys.argv) > 2 else "qemu-system-x86_64"
OUT = os.path.join(HERE, "golden", "migration-caps.json")
THROTTLE = ("throttle-trigger-threshold", "cpu-throttle-initial", "cpu-throttle-increment",
            "cpu-throttle-tailslow", "max-cpu-throttle")

# In order (each applies on what the ones before left): every throttling
# parameter at and beyond its bounds, max-cpu-throttle against
# cpu-throttle-initial, wrong types, and which check comes first.
SET_PARAMETERS = [
    {"throttle-trigger-threshold": 0}, {"throttle-trigger-threshold": 101},
    {"throttle-trigger-threshold": 100}, {"throttle-trigger-threshold": 1},
    {"cpu-throttle-initial": 0}, {"cpu-throttle-initial": 100}, {"cpu-throttle-initial": 99},
    {"cpu-throttle-increment": 0}, {"cpu-throttle-increment": 100},
    {"max-cpu-throttle": 0}, {"max-cpu-throttle": 100}, {"max-cpu-throttle": 300},
    {"max-cpu-throttle": 50}, {"cpu-throttle-initial": 30}, {"max-cpu-throttle": 50},
    {"cpu-throttle-initial": 60}, {"cpu-throttle-initial": -1},
    {"cpu-throttle-tailslow": 1}, {"cpu-throttle-tailslow": True},
    {"cpu-throttle-initial": 0, "max-cpu-throttle": 300},
    {"max-bandwidth": -1, "cpu-throttle-increment": 0},
    {"downtime-limit": 3000000, "max-cpu-throttle": 0},
    {"max-cpu-throttle": 99, "cpu-throttle-increment": 5},
]


def start(tmp, name, extra):
    path = os.path.join(tmp, name + ".qmp")
    p = subprocess.Popen([QEMU, "-machine", "pc,accel=kvm", "-cpu", "host,-cx16,-xsave,-arch-capabilities",
                          "-m", "32", "-smp", "1", "-nodefaults", "-no-user-config",
                          "-display", "none", "-kernel", GUEST,
                          "-serial", "file:" + os.path.join(tmp, name + ".log"),
                          "-qmp", "unix:%s,server=on,wait=off" % path] + extra,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return p, golden_migration.Qmp(path)


def migrate_when_running(tmp, src, dst):
    """Once the source's guest has counted 16 passes: the destination
    listens on a free loopback port, the source migrates there; the
    source's answer to migrate."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    uri = "tcp:127.0.0.1:%d" % port
    end = time.time() + 60
    log = os.path.join(tmp, "src.log")
    while "migrate: pass 16 " not in open(log).read():
        assert time.time() < end, "the guest does not run"
        time.sleep(0.2)
    dst.cmd("migrate-incoming", uri=uri)
    return src.cmd("migrate", uri=uri)


def main():
    with tempfile.TemporaryDirectory() as tmp:
        src_p, src = start(tmp, "src", [])
        dst_p, dst = start(tmp, "dst", ["-incoming", "defer"])
        try:
            out = {"qemu": src.cmd("query-version")["return"]["qemu"]}
            out["query-migrate-capabilities"] = src.cmd("query-migrate-capabilities")["return"]
            params = src.cmd("query-migrate-parameters")["return"]
            out["default-parameters"] = {k: params[k] for k in THROTTLE}
            out["set-parameters"] = [
                {"arguments": a, "reply": src.cmd("migrate-set-parameters", **a)}
                for a in SET_PARAMETERS]
            out["parameters-after-set"] = {
                k: v for k, v in src.cmd("query-migrate-parameters")["return"].items()
                if k in THROTTLE}
            out["set-unknown-capability"] = src.cmd(
                "migrate-set-capabilities",
                capabilities=[{"capability": "no-such-thing", "state": True}])
            out["set-auto-converge"] = src.cmd(
                "migrate-set-capabilities",
                capabilities=[{"capability": "auto-converge", "state": True}])
            out["query-after-set"] = src.cmd("query-migrate-capabilities")["return"]
            # Throttle at once and hard: the guest dirties RAM far faster than 2 MiB/s.
            src.cmd("migrate-set-parameters", **{
                "throttle-trigger-threshold": 50, "cpu-throttle-initial": 20,
                "cpu-throttle-increment": 10, "cpu-throttle-tailslow": False,
                "max-cpu-throttle": 99, "max-bandwidth": 2 << 20})
            out["migrate"] = migrate_when_running(tmp, src, dst)
            throttled = None
            end = time.time() + 60
            while time.time() < end:
                info = src.cmd("query-migrate")["return"]
                if info.get("cpu-throttle-percentage"):
                    throttled = info
                    break
                time.sleep(0.2)
            assert throttled, "QEMU did not throttle"
            out["query-migrate-throttled-keys"] = sorted(throttled)
            out["query-migrate-throttled-status"] = throttled["status"]
            out["first-cpu-throttle-percentage"] = throttled["cpu-throttle-percentage"]
            out["set-capability-active"] = src.cmd(
                "migrate-set-capabilities",
                capabilities=[{"capability": "auto-converge", "state": False}])
            out["set-parameters-active"] = src.cmd("migrate-set-parameters",
                                                   **{"cpu-throttle-increment": 11})
            src.cmd("migrate_cancel")
            end = time.time() + 30
            while src.cmd("query-migrate")["return"]["status"] != "cancelled":
                assert time.time() < end
                time.sleep(0.1)
            time.sleep(0.5)
            out["query-migrate-cancelled-keys"] = sorted(src.cmd("query-migrate")["return"])
            out["src-status-after-cancel"] = src.cmd("query-status")["return"]["status"]
            # The events capability was off: no MIGRATION or MIGRATION_PASS.
            out["src-migration-events-without-capability"] = [
                e["event"] for e in src.events if e["event"].startswith("MIGRATION")]
        finally:
            for p in (src_p, dst_p):
                p.kill()
                p.wait()
    golden_migration.write_golden(OUT, out)


if __name__ == "__main__":
    main()
