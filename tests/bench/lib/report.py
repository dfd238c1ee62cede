"""Output of a run: the text table, results.json and a gnuplot PNG chart."""

import json
import math
import os
import platform
import subprocess

from common import SRCDIR, have

FIGURE_NAMES = {1: "Start latency", 2: "Memory per VM", 3: "Density / creation rate",
                4: "Control plane", 5: "Block (image tool bench)", 6: "Guest I/O (virtio-blk)",
                7: "Linux boot", 8: "Firmware (extra)", 9: "Save/restore",
                10: "Live migration and live upgrade"}

KVM_CAVEAT = ("guest instructions are emulated by the host's KVM (about 1 us per guest "
              "instruction, about 10 us per exit to user space): absolute guest-side times are "
              "far slower than on bare-metal KVM, host-side costs are not")


def _cmd(argv):
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def machine(cfg):
    cpu = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = ""
    with open("/proc/meminfo") as f:
        mem = f.readline().split(":", 1)[1].strip()
    return {"nproc": os.cpu_count(), "cpu": cpu, "kernel": platform.release(),
            "memory": mem, "qemu": _cmd(["qemu-system-x86_64", "--version"]).split("\n")[0],
            "vmmd": _cmd([cfg.vmmd, "--version"]).split("\n")[0],
            "commit": _cmd(["git", "-C", SRCDIR, "describe", "--always", "--dirty"]),
            "kvm_caveat": KVM_CAVEAT}


def fmt(x):
    if x is None:
        return "-"
    a = abs(x)
    if a >= 1000:
        return "%.0f" % x
    if a >= 100:
        return "%.1f" % x
    if a >= 1:
        return "%.2f" % x
    return "%.3f" % x


def cell(j):
    if "skipped" in j:
        return "skipped"
    return "%s [%s-%s]" % (fmt(j["median"]), fmt(j["min"]), fmt(j["max"]))


def load_text(j):
    if not j:
        return "-"
    if j["min"] == j["max"]:
        return "%.1f" % j["median"]
    return "%.1f [%.1f-%.1f]" % (j["median"], j["min"], j["max"])


def header(doc):
    """Where and when: machine, commit, date and the load during the run."""
    m = doc["machine"]
    loads = [x for r in doc["rows"] if r.get("load") for x in (r["load"]["min"], r["load"]["max"])]
    return ["%s (commit %s) vs %s, %s" % (m.get("vmmd", "?"), m.get("commit", "?"),
                                                   m.get("qemu", "?"), doc["date"]),
            "machine: %d CPUs (%s), %s RAM, Linux %s" % (m["nproc"], m["cpu"], m.get("memory", "?"),
                                                        m["kernel"]),
            "load average (1 min) while measuring: %s; %d round(s), vmmd and QEMU alternate "
            "within each round" % ("%.1f-%.1f" % (min(loads), max(loads)) if loads else "-",
                                   doc["rounds"]),
            "vmmd/QEMU: ratio of the medians; per round: median of the per-round ratios "
            "[min-max], the fairer figure on a loaded machine",
            ""]


def table(doc):
    """The results as a fixed-width text table followed by the skip reasons."""
    head = ("#", "figure", "unit", "vmmd median [min-max]", "QEMU median [min-max]",
            "vmmd/QEMU", "per round", "load", "target")
    lines = header(doc)
    reasons = []
    body = []
    for r in doc["rows"]:
        tgt = ""
        if "target" in r:
            met = r.get("target_met")
            tgt = "%s: %s" % (r["target"], {True: "met", False: "MISSED", None: "n/a"}[met])
        rr = r.get("round_ratios") or []
        per_round = "-"
        if rr:
            per_round = fmt(r["round_ratio_median"])
            if len(rr) > 1:
                per_round += " [%s-%s]" % (fmt(min(rr)), fmt(max(rr)))
        body.append((str(r["figure"]), r["title"], r["unit"], cell(r["vmmd"]), cell(r["qemu"]),
                     fmt(r["ratio"]), per_round, load_text(r.get("load")), tgt))
        for side in ("vmmd", "qemu"):
            if "skipped" in r[side]:
                reasons.append("%s %s: %s" % (r["key"], side, r[side]["skipped"]))
    widths = [max(len(x[i]) for x in [head] + body) for i in range(len(head))]
    widths[1] = min(widths[1], 96)
    for row in [head] + body:
        cells = list(row)
        if len(cells[1]) > widths[1]:
            cells[1] = cells[1][:widths[1] - 1] + "~"
        lines.append("  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip())
    if reasons:
        lines.append("")
        lines.append("skipped:")
        lines.extend("  " + x for x in reasons)
    notes = ["%s: %s" % (r["key"], n) for r in doc["rows"] for n in r.get("notes", [])]
    notes += doc.get("notes", [])
    if notes:
        lines.append("")
        lines.append("notes:")
        lines.extend("  " + x for x in notes)
    return "\n".join(lines)


def chart(doc, out_dir):
    """results.png: vmmd's advantage over QEMU per row (log scale, >1 = vmmd better).

    Returns the PNG path, or a reason string (starting with "skipped") when no
    chart could be drawn."""
    if not have("gnuplot"):
        return "skipped: gnuplot is not installed"
    rows = [r for r in doc["rows"] if r.get("advantage")]
    if not rows:
        return "skipped: no row measured on both VMMs"
    dat = os.path.join(out_dir, "results.dat")
    with open(dat, "w") as f:
        for i, r in enumerate(rows):
            label = "%d %s" % (r["figure"], r["key"])
            f.write('%d "%s" %g\n' % (i, label, r["advantage"]))
    png = os.path.join(out_dir, "results.png")
    adv = [r["advantage"] for r in rows]
    lo = 10 ** math.floor(math.log10(min(0.5, min(adv) / 2)))
    hi = 10 ** math.ceil(math.log10(max(2.0, max(adv) * 4)))
    script = """
set terminal pngcairo size 1100,%d noenhanced font ",9"
set output "%s"
set title "vmmd vs QEMU, %s (%s, %d CPUs): times better (>1) or worse (<1), log scale"
set style fill solid 0.6
set boxwidth 0.7
set logscale x 10
set xrange [%g:%g]
set grid xtics
set ytics nomirror
set yrange [%d:-1]
set arrow from 1,graph 0 to 1,graph 1 nohead lw 2 lc rgb "black"
unset key
plot "%s" using (1):1:($3 < 1 ? $3 : 1):($3 < 1 ? 1 : $3):($1 - 0.35):($1 + 0.35):yticlabels(2) \\
     with boxxyerror lc rgb "#3070b0", \\
     "%s" using ($3 < 1 ? 1 : $3):1:(sprintf("%%.2fx", $3)) with labels left offset 1,0
""" % (120 + 24 * len(rows), png, doc["machine"]["cpu"], doc["machine"]["kernel"],
       doc["machine"]["nproc"], lo, hi, len(rows), dat, dat)
    # Each bar spans from 1 to vmmd's advantage on the log axis.
    gp = os.path.join(out_dir, "results.gp")
    with open(gp, "w") as f:
        f.write(script)
    p = subprocess.run(["gnuplot", gp], capture_output=True, text=True)
    if p.returncode != 0 or not os.path.exists(png):
        return "skipped: gnuplot failed: %s" % p.stderr.strip()[-300:]
    return png


def write_json(doc, out_dir):
    path = os.path.join(out_dir, "results.json")
    with open(path, "w") as f:
        json.dump(doc, f, indent=1, sort_keys=False)
        f.write("\n")
    return path
