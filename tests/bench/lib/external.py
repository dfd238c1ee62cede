"""Figures measured by other helpers' scripts under tests/bench/.

Contract (also in tests/bench/README): the harness runs `sh SCRIPT` from the
source tree with these environment variables
    top_srcdir, top_builddir   the trees (vmmd, vmctl, vmm-img are in top_builddir)
    BENCH_ROUNDS               how many samples to take per side
    BENCH_QUICK                1 for a quick run (small sizes, short runs), else 0
    BENCH_TMP                  a scratch directory the script may fill (removed afterwards)
and reads its standard output. Each line of the form
    BENCH {"figure": "...", "vmmd": [samples], "qemu": [samples], "unit": "..."}
is one row; sample i of each side belongs to round i (the script alternates
the VMMs within a round). Optional keys: "better" ("lower" default, or "higher"),
"title" (defaults to figure), "skipped" (a reason; or "vmmd_skipped"/"qemu_skipped"
for one side), "note", "load" (the 1-minute load average of each round). Other lines are kept in the harness log. An exit status other than 0
(or 77 = everything skipped) is reported with the last lines of output.
"""

import json
import os
import re
import shutil
import subprocess

from common import SRCDIR

# script name -> figure number in the table
SCRIPTS = (("block.sh", 5), ("convert.sh", 5), ("virtio-blk.sh", 6), ("firmware.sh", 8),
           ("vmstate.sh", 9), ("migration.sh", 10), ("upgrade.sh", 10))

# virtio-blk.sh predates the contract: one run per invocation, no BENCH lines,
# a table "phase  vmmd req/s  MiB/s  qemu req/s  MiB/s  ratio". The harness
# runs it once per round and reads that table.
TABLE_SCRIPTS = {"virtio-blk.sh"}
_TABLE_ROW = re.compile(r"^(\S+)\s+([0-9.]+|-)\s+([0-9.]+|-)\s+([0-9.]+|-)\s+([0-9.]+|-)\s+\S+\s*$")


def parse_table(text):
    """[(phase, vmmd MiB/s or None, qemu MiB/s or None)] from virtio-blk.sh's table."""
    rows = []
    for line in text.splitlines():
        m = _TABLE_ROW.match(line)
        if not m or m.group(1) == "phase":
            continue
        num = (lambda x: None if x == "-" else float(x))
        rows.append((m.group(1), num(m.group(3)), num(m.group(5))))
    return rows


def run_table_script(ctx, script, number, log):
    """Run a TABLE_SCRIPTS script ctx.rounds times; one sample per side per run."""
    path = os.path.join(SRCDIR, "tests", "bench", script)
    tmp = os.path.join(ctx.cfg.tmp, "ext-" + script)
    got = 0
    last_err = ""
    for rnd in range(ctx.rounds):
        os.makedirs(tmp, exist_ok=True)
        env = dict(os.environ, top_srcdir=SRCDIR, top_builddir=ctx.cfg.builddir,
                   BENCH_ROUNDS="1", BENCH_QUICK="1" if ctx.quick else "0", BENCH_TMP=tmp)
        try:
            p = subprocess.run(["sh", path], cwd=SRCDIR, env=env, capture_output=True,
                               text=True, timeout=ctx.script_timeout)
        except subprocess.TimeoutExpired:
            return [(number, "%s did not finish within %d s" % (script, ctx.script_timeout))]
        log.write("==== %s round %d (exit %d)\n%s\n%s\n" % (script, rnd + 1, p.returncode,
                                                         p.stdout, p.stderr))
        if p.returncode == 77:
            return [(number, "%s skipped: %s" % (script, (p.stderr.strip().splitlines() or
                                                           ["exit 77"])[-1]))]
        rows = parse_table(p.stdout)
        if p.returncode != 0 or not rows:
            last_err = "%s exited %d: %s" % (script, p.returncode, " | ".join(
                (p.stderr or p.stdout).strip().splitlines()[-2:]))
            continue
        for phase, v, q in rows:
            row = ctx.results.row(number, "%s.%s" % (script[:-3], phase),
                                  "guest %s on virtio-blk (test guest, raw image, cache=none)" %
                                  phase, "MiB/s", "higher",
                                  note="from %s: a polling test guest, not Linux dd" % script)
            for side, x in (("vmmd", v), ("qemu", q)):
                if x is None:
                    row.skip(side, "%s: %s did not finish the phase (see harness.log)" %
                             (script, side))
                else:
                    row.add(side, x, rnd=rnd)
            got += 1
        shutil.rmtree(tmp, ignore_errors=True)
    if got == 0:
        return [(number, last_err or "%s printed no results" % script)]
    if last_err:
        ctx.notes.append(last_err)
    return []


def parse_line(line):
    """The row dict of one BENCH line, or None if the line is not one.

    Raises ValueError when the line claims to be a BENCH line but is not
    well-formed (not an object, no figure, samples not lists of numbers).
    """
    if not line.startswith("BENCH "):
        return None
    obj = json.loads(line[6:])
    if not isinstance(obj, dict) or not isinstance(obj.get("figure"), str):
        raise ValueError("BENCH line without a \"figure\" string")
    for side in ("vmmd", "qemu"):
        v = obj.get(side, [])
        if not isinstance(v, list) or not all(isinstance(x, (int, float)) and
                                              not isinstance(x, bool) for x in v):
            raise ValueError("BENCH %s: \"%s\" must be a list of numbers" % (obj["figure"], side))
        obj[side] = v
    load = obj.get("load", [])
    if not isinstance(load, list) or not all(isinstance(x, (int, float)) and
                                             not isinstance(x, bool) for x in load):
        raise ValueError("BENCH %s: \"load\" must be a list of numbers" % obj["figure"])
    if obj.get("better", "lower") not in ("lower", "higher"):
        raise ValueError("BENCH %s: \"better\" must be lower or higher" % obj["figure"])
    return obj


def run_script(ctx, script, number, log):
    """Run one script and add its rows; returns a list of (number, reason) if
    the script produced nothing usable."""
    path = os.path.join(SRCDIR, "tests", "bench", script)
    if not os.path.exists(path):
        return [(number, "%s has not landed (no tests/bench/%s)" % (script, script))]
    if script in TABLE_SCRIPTS:
        return run_table_script(ctx, script, number, log)
    tmp = os.path.join(ctx.cfg.tmp, "ext-" + script)
    os.makedirs(tmp, exist_ok=True)
    env = dict(os.environ, top_srcdir=SRCDIR, top_builddir=ctx.cfg.builddir,
               BENCH_ROUNDS=str(ctx.rounds), BENCH_QUICK="1" if ctx.quick else "0",
               BENCH_TMP=tmp)
    try:
        p = subprocess.run(["sh", path], cwd=SRCDIR, env=env, capture_output=True, text=True,
                           timeout=ctx.script_timeout)
    except subprocess.TimeoutExpired:
        return [(number, "%s did not finish within %d s" % (script, ctx.script_timeout))]
    log.write("==== %s (exit %d)\n%s\n%s\n" % (script, p.returncode, p.stdout, p.stderr))
    rows = 0
    problems = []
    for line in p.stdout.splitlines():
        try:
            obj = parse_line(line)
        except ValueError as e:
            problems.append(str(e))
            continue
        if obj is None:
            continue
        rows += 1
        row = ctx.results.row(number, "%s.%s" % (script[:-3], obj["figure"]),
                              obj.get("title", obj["figure"]), obj.get("unit", ""),
                              obj.get("better", "lower"), note=obj.get("note"))
        loads = obj.get("load") or []
        for side in ("vmmd", "qemu"):
            for i, x in enumerate(obj[side]):
                row.add(side, x, rnd=i, load=loads[i] if i < len(loads) else None)
            reason = obj.get(side + "_skipped") or obj.get("skipped")
            row.skip(side, reason or "%s reported no %s samples" % (script, side))
    if p.returncode not in (0, 77) or problems:
        tail = (p.stderr or p.stdout).strip().splitlines()[-3:]
        msg = "%s exited %d%s: %s" % (script, p.returncode,
                                     " (%s)" % problems[0] if problems else "", " | ".join(tail))
        if rows == 0:
            return [(number, msg)]
        ctx.notes.append(msg)
    if rows == 0:
        tail = p.stdout.strip().splitlines()[-1:] or ["no BENCH lines"]
        return [(number, "%s printed no BENCH line (%s)" % (script, tail[0][-200:]))]
    return []
