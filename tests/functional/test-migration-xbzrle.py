#!/usr/bin/env python3
"""The migration's xbzrle capability (docs/migration.md), QEMU 7.2's way:
migrate-set-capabilities xbzrle, the xbzrle-cache-size parameter and
query-migrate's "xbzrle-cache", replayed from QEMU 7.2's golden trace
(tests/functional/golden/migration-xbzrle.json,
make-golden-migration-xbzrle.py).

The guest is tests/guests/migrate.c: it rewrites one byte of each page of
8 MiB without pause and checks that byte and the page's last 8 bytes on
every pass, so a page whose changes were applied wrong, or not at all,
stops it with "BAD page". Under a bandwidth cap it outruns, the
migration converges only once the source's cache holds the pages it
rewrites: not with a cache too small for them, at once after the cache
grows. Two daemons on one host over a unix: socket."""

import importlib.util
import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from vmmdtest import TOP_SRCDIR, Vmmd, main, wait_for  # noqa: E402
from daemon_helpers import console_log  # noqa: E402

_spec = importlib.util.spec_from_file_location(
    "tcaps", os.path.join(HERE, "test-migration-caps.py"))
tcaps = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tcaps)
tmig = tcaps.tmig

GOLDEN = os.path.join(TOP_SRCDIR, "tests", "functional", "golden", "migration-xbzrle.json")
# What the guest's 8 MiB outrun (8 MiB take 500 ms > the 300 ms downtime-limit).
CAP = 16 << 20


def golden():
    with open(GOLDEN) as f:
        return json.load(f)


def test_parameters_as_qemu():
    """xbzrle-cache-size's default and QEMU's answers to each value; the
    capability turned on; query-migrate before any migration."""
    g = golden()
    with Vmmd() as d:
        q = d.qmp()
        q.ok("vm-create", dict(tmig.vm_def(), start=False))
        params = q.ok("query-migrate-parameters", vm="m1")
        assert params["xbzrle-cache-size"] == g["default-xbzrle-cache-size"], params
        for step in g["set-xbzrle-cache-size"]:
            r = q.cmd("migrate-set-parameters", dict(step["arguments"], vm="m1"))
            r.pop("id", None)
            if isinstance(step["arguments"]["xbzrle-cache-size"], str):
                # the wrong type: vmmd's schema words it its own way (vmmd-protocol(7))
                assert r["error"]["class"] == step["reply"]["error"]["class"] and \
                    "xbzrle-cache-size" in r["error"]["desc"], r
                continue
            assert r == step["reply"], (step, r)
        params = q.ok("query-migrate-parameters", vm="m1")
        assert params["xbzrle-cache-size"] == g["xbzrle-cache-size-after-set"], params
        r = q.cmd("migrate-set-capabilities", vm="m1",
                  capabilities=[{"capability": "xbzrle", "state": True}])
        r.pop("id", None)
        assert r == g["set-xbzrle"], r
        caps = {c["capability"]: c["state"]
                for c in q.ok("query-migrate-capabilities", vm="m1")}
        assert caps["xbzrle"] is True, caps
        assert q.cmd("query-migrate", vm="m1")["return"] == g["query-migrate-before"]["return"]


def test_converges_once_the_cache_holds_the_pages():
    """A 1 MiB cache (256 pages) cannot hold the guest's 2048: every page
    misses, goes whole, and the capped migration does not converge; QEMU's
    keys while active, the capability fixed meanwhile. Grown to 16 MiB
    live, the cache holds them from the next pass and the one after sends
    each as its one changed byte: the migration completes under the same
    cap, and the guest counts on at the destination with every page right."""
    g = golden()
    with Vmmd() as src, Vmmd() as dst:
        qs = tcaps.boot(src)
        qd, uri = tcaps.incoming(dst)
        nonce = tmig.passes(console_log(src, "m1"))[-1][1]
        qs.ok("migrate-set-capabilities", vm="m1",
              capabilities=[{"capability": "xbzrle", "state": True}])
        qs.ok("migrate-set-parameters", vm="m1",
              **{"xbzrle-cache-size": 1 << 20, "max-bandwidth": CAP})
        qs.ok("migrate", vm="m1", uri=uri)
        wait_for(lambda: qs.ok("query-migrate", vm="m1").get("ram", {})
                 .get("dirty-sync-count", 0) >= 5, 60, interval=0.2, what="five passes")
        info = qs.ok("query-migrate", vm="m1")
        assert info["status"] == "active", info
        assert sorted(info) == g["query-migrate-active-keys"], info
        xb = info["xbzrle-cache"]
        assert sorted(xb) == g["xbzrle-cache-active-keys"], xb
        assert xb["cache-size"] == 1 << 20 and xb["cache-miss"] >= 2048, xb
        assert xb["cache-miss-rate"] > 0.9, xb
        r = qs.cmd("migrate-set-capabilities", vm="m1",
                   capabilities=[{"capability": "xbzrle", "state": False}])
        assert r["error"] == g["set-capability-active"]["error"], r
        r = qs.cmd("migrate-set-parameters", vm="m1", **{"xbzrle-cache-size": 16 << 20})
        r.pop("id", None)
        assert r == g["set-cache-size-active"], r
        assert qs.ok("query-migrate", vm="m1")["xbzrle-cache"]["cache-size"] == 16 << 20
        info = tcaps.wait_end(qs, timeout=60)
        assert info["status"] == "completed", info
        assert sorted(info) == g["query-migrate-completed-keys"], info
        xb = info["xbzrle-cache"]
        assert sorted(xb) == g["xbzrle-cache-completed-keys"], xb
        # the guest's pages went as their changes, a few bytes each (how many
        # of the 2048 the last passes caught depends on where its sweep was)
        assert xb["pages"] >= 1024 and xb["bytes"] < xb["pages"] * 32, xb
        assert xb["encoding-rate"] > 100 and xb["overflow"] == 0, xb
        # the destination has no cache to report (QEMU's: its status only)
        dinfo = tcaps.wait_end(qd)
        assert dinfo["status"] == "completed" and "xbzrle-cache" not in dinfo, dinfo
        assert set(g["dst-query-migrate-keys"]) <= set(dinfo), dinfo
        tmig.counts_on_moved(src, dst, nonce)


def test_vmctl_migrate_xbzrle():
    """vmctl migrate --xbzrle --xbzrle-cache-size: the capability and the
    parameter set (they stay), xbzrle pages in the progress lines and sent, a
    migration the cap alone would not let converge completes."""
    with Vmmd() as src, Vmmd() as dst:
        qs = tcaps.boot(src)
        qd, uri = tcaps.incoming(dst)
        p = src.vmctl("migrate", "m1", uri, "--max-bandwidth", str(CAP), "--xbzrle",
                      "--xbzrle-cache-size", "32M", timeout=120)
        lines = p.stdout.splitlines()
        assert any(re.match(r"m1: active +pass \d+ .* xbzrle \d+ pages$", x)
                   for x in lines), lines
        assert re.match(r"m1: migrated in \d+ ms", lines[-1]), lines
        caps = {c["capability"]: c["state"]
                for c in qs.ok("query-migrate-capabilities", vm="m1")}
        assert caps["xbzrle"] is True, caps
        assert qs.ok("query-migrate-parameters", vm="m1")["xbzrle-cache-size"] == 32 << 20
        assert qs.ok("query-migrate", vm="m1")["xbzrle-cache"]["pages"] > 0
        assert tcaps.wait_end(qd)["status"] == "completed"
        for bad in ("3M", "1K", "x"):
            p = src.vmctl("migrate", "m1", uri, "--xbzrle-cache-size", bad, check=False)
            assert p.returncode == 2 and "--xbzrle-cache-size" in p.stderr, (bad, p.stderr)


if __name__ == "__main__":
    main(globals())
