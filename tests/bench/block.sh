#!/bin/sh
# Block benchmark (figure 5 of tests/bench/README; not part of make check):
# `vmm-img bench` against `qemu-img bench` on the same raw and qcow2 images,
# 4 KiB random and 64 KiB sequential, read and write, cache=none and
# writeback. Rounds alternate the two tools (which one goes first alternates
# too); each row prints the median MiB/s of both and their ratio.
#
# "Random" with qemu-img bench's sequential engine: the step is a prime
# number of 4 KiB blocks, so successive requests land far apart and visit
# every block of the image before repeating.
#
# Environment (the harness contract): top_builddir, BENCH_ROUNDS (default 3),
# BENCH_QUICK (1: a few seconds), BENCH_TMP (scratch directory). Output: one
# "BENCH {json}" line per row, then a human-readable table.
set -eu

: "${top_srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
: "${top_builddir:=$top_srcdir/build}"
: "${BENCH_ROUNDS:=3}"
: "${BENCH_QUICK:=0}"
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
DEPTH=32
RAND_STEP=$((7919 * 4096))
RESULTS="$BENCH_TMP/results"
: >"$RESULTS"

# One run: prints MiB/s, or nothing if the tool failed.
run_one() { # tool fmt image count size step rw cache
	tool=$1 fmt=$2 img=$3 count=$4 bs=$5 step=$6 rw=$7 cache=$8
	w=""
	[ "$rw" = write ] && w="-w"
	out=$("$tool" bench -f "$fmt" -c "$count" -d "$DEPTH" -s "$bs" -S "$step" -t "$cache" \
		$w "$img" 2>&1) || { echo "$tool failed: $out" >&2; return 0; }
	echo "$out" | sed -n 's/^Run completed in \([0-9.]*\) seconds\./\1/p' |
		awk -v c="$count" -v b="$bs" '$1 > 0 { printf "%.1f\n", c * b / 1048576 / $1 }'
}

for fmt in raw qcow2; do
	img="$BENCH_TMP/bench.$fmt"
	qemu-img create -q -f "$fmt" "$img" "${SIZE_MIB}M"
	# fill it so reads hit allocated data in both formats
	qemu-img bench -q -f "$fmt" -w -c $((SIZE_MIB * 16)) -s 64k -d 8 "$img" >/dev/null
	vmm_ok=1
	if ! "$VMM_IMG" info -f "$fmt" "$img" >/dev/null 2>&1; then
		vmm_ok=0
	fi
	for pattern in rand4k seq64k; do
		if [ $pattern = rand4k ]; then
			count=$RAND_COUNT bs=4096 step=$RAND_STEP
		else
			count=$SEQ_COUNT bs=65536 step=65536
		fi
		for rw in read write; do
			for cache in none writeback; do
				row="$fmt-$pattern-$rw-$cache"
				i=0
				while [ $i -lt "$BENCH_ROUNDS" ]; do
					if [ $((i % 2)) = 0 ]; then order="vmmd qemu"; else order="qemu vmmd"; fi
					for side in $order; do
						if [ $side = vmmd ]; then
							[ $vmm_ok = 1 ] || continue
							tool=$VMM_IMG
						else
							tool=qemu-img
						fi
						v=$(run_one "$tool" "$fmt" "$img" "$count" "$bs" "$step" "$rw" "$cache")
						[ -n "$v" ] && echo "$row $side $v" >>"$RESULTS"
					done
					i=$((i + 1))
				done
				[ $vmm_ok = 1 ] || echo "$row vmmd_skipped vmm-img cannot open $fmt images" >>"$RESULTS"
			done
		done
	done
done

python3 - "$RESULTS" <<'EOF'
import json, statistics, sys
rows, order, skipped = {}, [], {}
for line in open(sys.argv[1]):
    parts = line.split()
    row, side = parts[0], parts[1]
    if row not in rows:
        rows[row] = {"vmmd": [], "qemu": []}
        order.append(row)
    if side == "vmmd_skipped":
        skipped[row] = " ".join(parts[2:])
    else:
        rows[row][side].append(float(parts[2]))
for row in order:
    fmt, pattern, rw, cache = row.split("-")
    rec = {"figure": "block-" + row, "vmmd": rows[row]["vmmd"], "qemu": rows[row]["qemu"],
           "unit": "MiB/s", "better": "higher",
           "title": "%s %s %s, cache=%s, depth 32" % (fmt, pattern.replace("rand", "random ").replace("seq", "sequential "), rw + "s", cache)}
    if row in skipped:
        rec["vmmd_skipped"] = skipped[row]
    print("BENCH " + json.dumps(rec))
print()
print("%-34s %12s %12s %8s" % ("case (median of rounds)", "vmm-img", "qemu-img", "ratio"))
for row in order:
    v, q = rows[row]["vmmd"], rows[row]["qemu"]
    mv = statistics.median(v) if v else None
    mq = statistics.median(q) if q else None
    ratio = "%.2f" % (mv / mq) if mv and mq else "-"
    print("%-34s %12s %12s %8s" % (row, "%.1f" % mv if mv else "-", "%.1f" % mq if mq else "-", ratio))
print("(MiB/s, higher is better; ratio = vmm-img / qemu-img)")
EOF
