#!/usr/bin/env python3
"""Record QEMU 7.2's xbzrle answers as a golden trace
(tests/functional/golden/migration-xbzrle.json) for
test-migration-xbzrle.py.

Two qemu-system-x86_64 -machine pc,accel=kvm run the migration test guest
(tests/guests/migrate.elf, booted through its PVH note; it rewrites one
byte of each page of 8 MiB without pause), the destination with -incoming
defer, on the loopback. Recorded: xbzrle-cache-size's default and the
answers to values at and beyond its bounds and of the wrong type;
query-migrate with the capability on before a migration; a migration with
xbzrle on and a bandwidth cap the guest outruns: query-migrate's keys and
its "xbzrle-cache" keys while active, a cache size set
during the migration, the capability's change refused; then, with the cap
lifted, the completed migration's keys and "xbzrle-cache".

Usage: tests/functional/make-golden-migration-xbzrle.py GUEST.elf [QEMU]"""

import importlib.util
import json
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location(
    "golden_caps", os.path.join(HERE, "make-golden-migration-caps.py"))

SIZES = [1000, 2048, 4095, 4096, -1, 1048577, 0, "x", 1099511627776, 8192, 1 << 20]


def main():
    caps = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(caps)
    out_path = os.path.join(HERE, "golden", "migration-xbzrle.json")
    with tempfile.TemporaryDirectory() as tmp:
        src_p, src = caps.start(tmp, "src", [])
        dst_p, dst = caps.start(tmp, "dst", ["-incoming", "defer"])
        try:
            out = {"qemu": src.cmd("query-version")["return"]["qemu"]}
            out["default-xbzrle-cache-size"] = \
                src.cmd("query-migrate-parameters")["return"]["xbzrle-cache-size"]
            out["set-xbzrle-cache-size"] = [
                {"arguments": {"xbzrle-cache-size": v},
                 "reply": src.cmd("migrate-set-parameters", **{"xbzrle-cache-size": v})}
                for v in SIZES]
            out["xbzrle-cache-size-after-set"] = \
                src.cmd("query-migrate-parameters")["return"]["xbzrle-cache-size"]
            out["set-xbzrle"] = src.cmd(
                "migrate-set-capabilities",
                capabilities=[{"capability": "xbzrle", "state": True}])
            out["query-migrate-before"] = src.cmd("query-migrate")
            src.cmd("migrate-set-parameters", **{"max-bandwidth": 4 << 20,
                                                 "downtime-limit": 300})
            out["migrate"] = caps.migrate_when_running(tmp, src, dst)
            active = None
            end = time.time() + 60
            while time.time() < end:
                info = src.cmd("query-migrate")["return"]
                if info.get("xbzrle-cache", {}).get("pages"):
                    active = info
                    break
                time.sleep(0.2)
            assert active, "QEMU sent no xbzrle page"
            out["query-migrate-active-keys"] = sorted(active)
            out["query-migrate-active-status"] = active["status"]
            out["xbzrle-cache-active-keys"] = sorted(active["xbzrle-cache"])
            out["set-capability-active"] = src.cmd(
                "migrate-set-capabilities",
                capabilities=[{"capability": "xbzrle", "state": False}])
            out["set-cache-size-active"] = src.cmd(
                "migrate-set-parameters", **{"xbzrle-cache-size": 2 << 20})
            out["cache-size-active-after-set"] = \
                src.cmd("query-migrate")["return"]["xbzrle-cache"]["cache-size"]
            src.cmd("migrate-set-parameters", **{"max-bandwidth": 8 << 30,
                                                 "downtime-limit": 2000})
            end = time.time() + 120
            while True:
                info = src.cmd("query-migrate")["return"]
                if info["status"] in ("completed", "failed"):
                    break
                assert time.time() < end, info
                time.sleep(0.2)
            out["query-migrate-completed-keys"] = sorted(info)
            out["query-migrate-completed-status"] = info["status"]
            out["xbzrle-cache-completed-keys"] = sorted(info["xbzrle-cache"])
            out["xbzrle-cache-completed-cache-size"] = info["xbzrle-cache"]["cache-size"]
            x = info["xbzrle-cache"]
            print("xbzrle-cache at the end:", x, "ram:", info["ram"], file=sys.stderr)
            out["dst-query-migrate-keys"] = sorted(dst.cmd("query-migrate")["return"])
        finally:
            for p in (src_p, dst_p):
                p.kill()
                p.wait()
    with open(out_path, "w") as f:
        json.dump(out, f, indent=1, sort_keys=True)
        f.write("\n")
    print("wrote", out_path)


if __name__ == "__main__":
    main()
