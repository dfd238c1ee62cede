"""The benchmark harness runs end to end (--quick, one round) and writes a
well-formed results.json in which every figure 1-7 is present and each side
of each row is either measured or skipped with a reason. No speed is
asserted: the harness reports, people judge."""

import json
import math
import os
import subprocess
import sys
import tempfile

from vmmdtest import TOP_BUILDDIR, TOP_SRCDIR, main

BENCH = os.path.join(TOP_SRCDIR, "tests", "bench")
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(BENCH, "lib"))


def check_side(row, side):
    s = row[side]
    assert isinstance(s, dict), row
    if "skipped" in s:
        assert isinstance(s["skipped"], str) and s["skipped"].strip(), row
        return False
    samples = s["samples"]
    assert samples and all(isinstance(x, (int, float)) and math.isfinite(x) for x in samples), row
    assert s["n"] == len(samples), row
    assert s["min"] == min(samples) and s["max"] == max(samples), row
    assert s["min"] <= s["median"] <= s["max"], row
    return True


def test_quick_run_writes_well_formed_results():
    out = tempfile.mkdtemp(prefix="bench-smoke.")
    env = dict(os.environ, top_builddir=TOP_BUILDDIR)
    # --no-scripts: the helpers' scripts take a minute; their BENCH lines are
    # checked by test_bench_line_contract.
    p = subprocess.run([os.path.join(BENCH, "run"), "--quick", "--rounds", "1", "--out", out,
                        "--build", TOP_BUILDDIR, "--no-scripts"], capture_output=True, text=True, env=env,
                       timeout=900)
    assert p.returncode == 0, "run exited %d:\n%s\n%s" % (p.returncode, p.stdout, p.stderr)
    with open(os.path.join(out, "results.json")) as f:
        doc = json.load(f)
    assert doc["version"] == 1 and doc["quick"] is True and doc["rounds"] == 1
    for k in ("nproc", "cpu", "kernel", "qemu", "kvm_caveat"):
        assert k in doc["machine"], doc["machine"]
    figures = set()
    keys = set()
    for row in doc["rows"]:
        assert row["key"] not in keys, "duplicate row %s" % row["key"]
        keys.add(row["key"])
        figures.add(row["figure"])
        assert row["better"] in ("lower", "higher"), row
        measured = [check_side(row, s) for s in ("vmmd", "qemu")]
        want = "measured" if all(measured) else "partial" if any(measured) else "skipped"
        assert row["status"] == want, row
        if all(measured) and row["qemu"]["median"] != 0:
            assert abs(row["ratio"] - row["vmmd"]["median"] / row["qemu"]["median"]) < 1e-3 * max(
                1.0, abs(row["ratio"])), row
        else:
            assert row["ratio"] is None or all(measured), row
        if "target" in row:
            assert row["target_met"] in (True, False, None), row
    assert set(range(1, 8)) <= figures, "figures missing: %s" % (set(range(1, 8)) - figures)
    # the control plane while clients cycle VMs, on both sides
    by_key = {row["key"]: row for row in doc["rows"]}
    for key in ("control.cycling.p50", "control.cycling.p99", "control.cycling.rate"):
        assert by_key[key]["status"] == "measured", by_key.get(key)
    chart = doc["chart"]
    assert chart.startswith("skipped") or os.path.getsize(os.path.join(out, chart)) > 0, chart
    with open(os.path.join(out, "results.txt")) as f:
        text = f.read()
    assert "vmmd/QEMU" in text and text == p.stdout.split("\n\nresults:")[0] + "\n", text
    subprocess.run(["rm", "-rf", out])


def test_bench_line_contract():
    from external import parse_line
    assert parse_line("hello") is None
    row = parse_line('BENCH {"figure": "raw-read", "vmmd": [1, 2.5], "qemu": [3], "unit": "MB/s",'
                     ' "better": "higher"}')
    assert row["vmmd"] == [1, 2.5] and row["qemu"] == [3] and row["better"] == "higher"
    assert parse_line('BENCH {"figure": "x", "skipped": "no qcow2"}')["vmmd"] == []
    for bad in ('BENCH {"vmmd": [1]}', 'BENCH {"figure": "x", "vmmd": ["1"]}',
                'BENCH {"figure": "x", "qemu": 3}', 'BENCH {"figure": "x", "better": "up"}',
                'BENCH [1]', 'BENCH {"figure": "x", "vmmd": [true]}'):
        try:
            parse_line(bad)
        except ValueError:
            continue
        raise AssertionError("accepted %s" % bad)


def test_statistics():
    from common import median, percentile
    assert median([3, 1, 2]) == 2 and median([4, 1, 2, 3]) == 2.5
    v = list(range(1, 101))
    assert percentile(v, 50) == 50 and percentile(v, 99) == 99 and percentile(v, 100) == 100
    assert percentile([7], 99) == 7


if __name__ == "__main__":
    main(globals())
