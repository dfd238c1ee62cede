#!/bin/sh
# Block benchmark (figure 5 of tests/bench/README; not part of make check):
# `vmm-img bench` against `qemu-img bench` on the same raw and qcow2 images,
# 4 KiB random and 64 KiB sequential, read and write, cache=none and
# writeback. Rounds alternate the two tools (which one goes first alternates
# too); each row prints the median MiB/s of both and their ratio.
#
# Engines, compared like with like (issue 16): every case runs once per
# engine, both tools with the same -i:
#   native    cache=none only (Linux AIO needs O_DIRECT): both tools on
#             Linux AIO (-i native). THE HEADLINE ROW for cache=none: QEMU's
#             fastest setting for O_DIRECT images, the same engine both sides.
#   cross     cache=none only: qemu-img -i native against vmm-img on
#             io_uring, vmmd's default engine (what a disk without "aio"
#             gets), against QEMU's best.
#   io_uring  both tools on io_uring; the headline for cache=writeback.
#   threads   both tools on their thread pool (qemu-img's default engine).
# BENCH_ENGINES="native cross io_uring threads" (the default) picks them, and
# BENCH_CASES (shell patterns, e.g. "qcow2-rand4k-write-none-*") the rows.
# Each round runs a case on raw and qcow2 back to back; rows "qcow2/raw"
# (headline engines) give each tool's qcow2 rate over its raw rate per round.
#
# "Random" with qemu-img bench's sequential engine: the step is a prime
# number of 4 KiB blocks, so successive requests land far apart and visit
# every block of the image before repeating.
#
# Environment (the harness contract): top_builddir, BENCH_ROUNDS (default 3),
# BENCH_QUICK (1: a few seconds), BENCH_TMP (scratch directory). Output: one
# "BENCH {json}" line per row (sample i of each side is round i; "load" is the
# 1-minute load average at the start of each round), then a human-readable
# table with the ratio of the medians and the median of the per-round ratios.
set -euf # no globbing: BENCH_CASES holds patterns

: "${top_srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
: "${top_builddir:=$top_srcdir/build}"
: "${BENCH_ROUNDS:=3}"
: "${BENCH_QUICK:=0}"
: "${BENCH_ENGINES:=native cross io_uring threads}"
: "${BENCH_CASES:=*}"
VMM_IMG="$top_builddir/vmm-img"
own_tmp=""
if [ -z "${BENCH_TMP:-}" ]; then
	BENCH_TMP=$(mktemp -d "${TMPDIR:-/var/tmp}/bench-block.XXXXXX")
	own_tmp=$BENCH_TMP
fi
trap '[ -n "$own_tmp" ] && rm -rf "$own_tmp"' EXIT

if ! command -v qemu-img >/dev/null 2>&1 || [ ! -x "$VMM_IMG" ]; then
	echo 'BENCH {"figure": "block", "vmmd": [], "qemu": [], "unit": "MiB/s", "skipped": "qemu-img or vmm-img missing"}'
	exit 77
fi

if [ "$BENCH_QUICK" = 1 ]; then
	SIZE_MIB=32 RAND_COUNT=2000 SEQ_COUNT=300
else
	SIZE_MIB=256 RAND_COUNT=40000 SEQ_COUNT=8000
fi
# Writeback runs come from the page cache, several times faster than the
# disk: 4x the requests, so that none lasts only 40-80 ms (where a few ms
# of anything else moved a row by tens of percent).
WB_FACTOR=4
DEPTH=32
RAND_STEP=$((7919 * 4096))
RESULTS="$BENCH_TMP/results"
: >"$RESULTS"

# Every run starts from the same page cache: the image's dirty pages written
# back (untimed), then for cache=none none of it cached, for writeback all of
# it. Without this a run inherited what the run before it left: the first
# run of a cache=none row after a writeback row paid for dropping 256 MiB of
# cached pages, and that first run is always vmm-img's (round 0).
settle_cache() { # image cache
	sync "$1"
	if [ "$2" = none ]; then
		dd if="$1" iflag=nocache count=0 status=none
	else
		cat "$1" >/dev/null
	fi
}

# One run: prints MiB/s, or nothing if the tool failed.
run_one() { # tool fmt image count size step rw cache engine
	tool=$1 fmt=$2 img=$3 count=$4 bs=$5 step=$6 rw=$7 cache=$8 engine=$9
	settle_cache "$img" "$cache"
	w=""
	[ "$rw" = write ] && w="-w"
	out=$("$tool" bench -f "$fmt" -c "$count" -d "$DEPTH" -s "$bs" -S "$step" -t "$cache" \
		-i "$engine" $w "$img" 2>&1) || { echo "$tool failed: $out" >&2; return 0; }
	echo "$out" | sed -n 's/^Run completed in \([0-9.]*\) seconds\./\1/p' |
		awk -v c="$count" -v b="$bs" '$1 > 0 { printf "%.1f\n", c * b / 1048576 / $1 }'
}

# Both formats' images first: each round runs a case on raw and on qcow2
# back to back, so "qcow2 against raw" compares runs seconds apart, not the
# disk of one minute with the disk of the next (its speed drifts).
for fmt in raw qcow2; do
	img="$BENCH_TMP/bench.$fmt"
	qemu-img create -q -f "$fmt" "$img" "${SIZE_MIB}M"
	# fill it so reads hit allocated data in both formats
	qemu-img bench -q -f "$fmt" -w -c $((SIZE_MIB * 16)) -s 64k -d 8 "$img" >/dev/null
	ok=1
	"$VMM_IMG" info -f "$fmt" "$img" >/dev/null 2>&1 || ok=0
	eval "vmm_ok_$fmt=$ok"
done

for pattern in rand4k seq64k; do
	if [ $pattern = rand4k ]; then
		count=$RAND_COUNT bs=4096 step=$RAND_STEP
	else
		count=$SEQ_COUNT bs=65536 step=65536
	fi
	for rw in read write; do
		for cache in none writeback; do
			n=$count
			[ "$cache" = writeback ] && n=$((count * WB_FACTOR))
			for engine in $BENCH_ENGINES; do
				# Linux AIO needs O_DIRECT
				case $engine in native | cross) [ "$cache" = none ] || continue ;; esac
				fmts=""
				for fmt in raw qcow2; do
					row="$fmt-$pattern-$rw-$cache-$engine"
					for pat in $BENCH_CASES; do
						case $row in $pat)
							fmts="$fmts $fmt"
							break
							;;
						esac
					done
				done
				[ -n "$fmts" ] || continue
				i=0
				while [ $i -lt "$BENCH_ROUNDS" ]; do
					load=$(cut -d' ' -f1 /proc/loadavg)
					# which tool and which format go first alternate
					if [ $((i % 2)) = 0 ]; then
						order="vmmd qemu" round_fmts=$fmts
					else
						order="qemu vmmd" round_fmts=""
						for fmt in $fmts; do round_fmts="$fmt $round_fmts"; done
					fi
					for fmt in $round_fmts; do
						row="$fmt-$pattern-$rw-$cache-$engine"
						img="$BENCH_TMP/bench.$fmt"
						eval "vmm_ok=\$vmm_ok_$fmt"
						for side in $order; do
							e=$engine
							if [ $side = vmmd ]; then
								[ "$vmm_ok" = 1 ] || continue
								tool=$VMM_IMG
								[ "$e" = cross ] && e=io_uring
							else
								tool=qemu-img
								[ "$e" = cross ] && e=native
							fi
							v=$(run_one "$tool" "$fmt" "$img" "$n" "$bs" "$step" "$rw" \
								"$cache" "$e")
							# a failed run keeps its place: the rounds stay paired
							echo "$row $side $i ${v:-nan} $load" >>"$RESULTS"
						done
					done
					i=$((i + 1))
				done
				for fmt in $fmts; do
					eval "vmm_ok=\$vmm_ok_$fmt"
					[ "$vmm_ok" = 1 ] ||
						echo "$fmt-$pattern-$rw-$cache-$engine vmmd_skipped - vmm-img cannot open $fmt images" >>"$RESULTS"
				done
			done
		done
	done
done

python3 - "$RESULTS" <<'EOF'
import json, math, statistics, sys
rows, order, skipped = {}, [], {}
for line in open(sys.argv[1]):
    parts = line.split()
    row, side = parts[0], parts[1]
    if row not in rows:
        rows[row] = {"vmmd": {}, "qemu": {}, "load": {}}
        order.append(row)
    if side == "vmmd_skipped":
        skipped[row] = " ".join(parts[3:])
        continue
    rnd, v, load = int(parts[2]), float(parts[3]), float(parts[4])
    rows[row]["load"][rnd] = load
    if not math.isnan(v):
        rows[row][side][rnd] = v
order.sort(key=lambda row: not row.startswith("raw-"))  # raw rows, then qcow2 (stable)
ENGINE = {"native": "both Linux AIO (headline)",
          "cross": "qemu -i native vs vmm io_uring (vmmd's default)",
          "io_uring": "both io_uring", "threads": "both thread pools"}
for row in order:
    fmt, pattern, rw, cache, engine = row.split("-")
    r = rows[row]
    eng = ENGINE[engine]
    if engine == "io_uring" and cache == "writeback":
        eng += " (headline)"
    # Sample i of each list is round i (the harness pairs them): a round in
    # which one side failed is left out of both.
    keep = sorted(r["qemu"]) if row in skipped else sorted(set(r["vmmd"]) & set(r["qemu"]))
    rec = {"figure": "block-" + row,
           "vmmd": [r["vmmd"][k] for k in keep if k in r["vmmd"]],
           "qemu": [r["qemu"][k] for k in keep],
           "load": [r["load"][k] for k in keep],
           "unit": "MiB/s", "better": "higher",
           "title": "%s %s %s, cache=%s, depth 32, %s" % (
               fmt, pattern.replace("rand", "random ").replace("seq", "sequential "), rw + "s",
               cache, eng)}
    if row in skipped:
        rec["vmmd_skipped"] = skipped[row]
    print("BENCH " + json.dumps(rec))


def per_round(q, r, side):
    """Each round's qcow2 rate over the raw rate of the same round (one tool)."""
    both = sorted(set(q[side]) & set(r[side]))
    return {k: q[side][k] / r[side][k] for k in both if r[side][k] > 0}


# qcow2 against raw (issue 16: at least 0.9x), each tool against itself in
# the same round, for the headline engines.
pairs = []
for row in order:
    fmt, pattern, rw, cache, engine = row.split("-")
    raw = "raw-" + row[len("qcow2-"):]
    if fmt == "qcow2" and raw in rows:
        pairs.append((row, raw))
        if engine != ("native" if cache == "none" else "io_uring") or row in skipped:
            continue
        v, q = per_round(rows[row], rows[raw], "vmmd"), per_round(rows[row], rows[raw], "qemu")
        keep = sorted(set(v) & set(q))
        print("BENCH " + json.dumps({
            "figure": "block-qcow2-vs-raw-" + row[len("qcow2-"):],
            "vmmd": [v[k] for k in keep], "qemu": [q[k] for k in keep],
            "load": [rows[row]["load"][k] for k in keep],
            "unit": "x raw", "better": "higher",
            "title": "qcow2/raw, %s %s, cache=%s, %s, %s" % (
                pattern.replace("rand", "random ").replace("seq", "sequential "), rw + "s",
                cache, "Linux AIO" if engine == "native" else "io_uring", "same round"),
            "note": "each tool's qcow2 rate over its own raw rate in the same round"}))
print()
print("%-36s %9s %9s %6s  %-28s %s" % ("case (median of rounds)", "vmm-img", "qemu-img", "ratio",
                                       "per round: median [each]", "load"))
for row in order:
    r = rows[row]
    v, q = list(r["vmmd"].values()), list(r["qemu"].values())
    mv = statistics.median(v) if v else None
    mq = statistics.median(q) if q else None
    ratio = "%.2f" % (mv / mq) if mv and mq else "-"
    both = sorted(set(r["vmmd"]) & set(r["qemu"]))
    rr = [r["vmmd"][k] / r["qemu"][k] for k in both if r["qemu"][k] > 0]
    per = ("%.2f [%s]" % (statistics.median(rr), " ".join("%.2f" % x for x in rr))) if rr else "-"
    loads = list(r["load"].values())
    print("%-36s %9s %9s %6s  %-28s %s" % (row, "%.1f" % mv if mv else "-",
                                          "%.1f" % mq if mq else "-", ratio, per,
                                          "%.1f-%.1f" % (min(loads), max(loads)) if loads else "-"))
print("(MiB/s, higher is better; ratio = vmm-img / qemu-img of the medians; per round:")
print(" vmm-img / qemu-img of each round and their median; load: 1-minute load average")
print(" at the start of the rounds; rows ending in -native are the headline for cache=none,")
print(" -io_uring for cache=writeback)")
print()
print("%-36s %9s %9s" % ("qcow2 / raw, same round (median)", "vmm-img", "qemu-img"))
for row, raw in pairs:
    cells = []
    for side in ("vmmd", "qemu"):
        pr = list(per_round(rows[row], rows[raw], side).values())
        cells.append("%.2f" % statistics.median(pr) if pr else "-")
    print("%-36s %9s %9s" % (row[len("qcow2-"):], cells[0], cells[1]))
print("(each tool's qcow2 rate over its own raw rate in the same round)")
EOF
