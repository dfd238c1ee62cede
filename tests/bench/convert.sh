#!/bin/sh
# Convert benchmark (rows of figure 5 in tests/bench/README; not part of make
# check): `vmm-img convert` against `qemu-img convert` on the same images,
# for each of qed, vhdx, vmdk (monolithicSparse and streamOptimized) and
# vpc: reading the format (FMT -> raw) and writing it (raw -> FMT). The
# source is filled with data (qemu-img bench writes) so every cluster is
# copied. Rounds alternate which tool goes first; each row prints the median
# seconds of both and their ratio (vmm-img / qemu-img: below 1 is faster).
#
# Environment (the harness contract, tests/bench/lib/external.py):
# top_builddir, BENCH_ROUNDS (default 3), BENCH_QUICK (1: a tiny image),
# BENCH_TMP. Output: one "BENCH {json}" line per row, then a table.
set -eu

: "${top_srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
: "${top_builddir:=$top_srcdir/build}"
: "${BENCH_ROUNDS:=3}"
: "${BENCH_QUICK:=0}"
VMM_IMG="$top_builddir/vmm-img"
own_tmp=""
if [ -z "${BENCH_TMP:-}" ]; then
	BENCH_TMP=$(mktemp -d "${TMPDIR:-/var/tmp}/bench-convert.XXXXXX")
	own_tmp=$BENCH_TMP
fi
trap '[ -n "$own_tmp" ] && rm -rf "$own_tmp"' EXIT

if ! command -v qemu-img >/dev/null 2>&1 || [ ! -x "$VMM_IMG" ]; then
	echo 'BENCH {"figure": "convert", "vmmd": [], "qemu": [], "unit": "s", "skipped": "qemu-img or vmm-img missing"}'
	exit 77
fi
if [ "$BENCH_QUICK" = 1 ]; then SIZE_MIB=8; else SIZE_MIB=512; fi
RESULTS="$BENCH_TMP/results"
: >"$RESULTS"

# seconds TOOL ARGS...: wall-clock seconds of one run, nothing if it failed
seconds() {
	t0=$(date +%s.%N)
	"$@" >/dev/null 2>"$BENCH_TMP/err" || { echo "$1 failed: $(cat "$BENCH_TMP/err")" >&2; return 0; }
	t1=$(date +%s.%N)
	echo "$t0 $t1" | awk '{ printf "%.3f\n", $2 - $1 }'
}

src="$BENCH_TMP/src.raw"
qemu-img create -q -f raw "$src" "${SIZE_MIB}M"
qemu-img bench -q -f raw -w -c $((SIZE_MIB * 16)) -s 64k -d 8 --pattern=0x5a "$src" >/dev/null

for case in qed vhdx vmdk vmdk-stream vpc; do
	fmt=${case%-stream}
	opts=""
	[ "$case" = vmdk-stream ] && opts="-o subformat=streamOptimized"
	[ "$fmt" = vpc ] && opts="-o force_size=on"
	img="$BENCH_TMP/img.$case"
	# shellcheck disable=SC2086
	qemu-img convert -f raw -O "$fmt" $opts "$src" "$img"
	i=0
	while [ $i -lt "$BENCH_ROUNDS" ]; do
		if [ $((i % 2)) = 0 ]; then order="vmmd qemu"; else order="qemu vmmd"; fi
		for side in $order; do
			if [ $side = vmmd ]; then tool=$VMM_IMG; else tool=qemu-img; fi
			rm -f "$BENCH_TMP/out.raw" "$BENCH_TMP/out.$case"
			v=$(seconds "$tool" convert -f "$fmt" -O raw "$img" "$BENCH_TMP/out.raw")
			[ -n "$v" ] && echo "convert-$case-read $side $v" >>"$RESULTS"
			# shellcheck disable=SC2086
			v=$(seconds "$tool" convert -f raw -O "$fmt" $opts "$src" "$BENCH_TMP/out.$case")
			[ -n "$v" ] && echo "convert-$case-write $side $v" >>"$RESULTS"
		done
		i=$((i + 1))
	done
done

python3 - "$RESULTS" "$SIZE_MIB" <<'PY'
import json, statistics, sys
rows, order = {}, []
for line in open(sys.argv[1]):
    row, side, v = line.split()
    if row not in rows:
        rows[row] = {"vmmd": [], "qemu": []}
        order.append(row)
    rows[row][side].append(float(v))
for row in order:
    case, rw = row[len("convert-"):].rsplit("-", 1)
    what = ("%s -> raw" % case) if rw == "read" else ("raw -> %s" % case)
    print("BENCH " + json.dumps({"figure": "block-" + row, "vmmd": rows[row]["vmmd"],
                                 "qemu": rows[row]["qemu"], "unit": "s", "better": "lower",
                                 "title": "convert %s, %s MiB of data" % (what, sys.argv[2])}))
print()
print("%-30s %10s %10s %8s" % ("case (median of rounds)", "vmm-img", "qemu-img", "ratio"))
for row in order:
    v, q = rows[row]["vmmd"], rows[row]["qemu"]
    mv = statistics.median(v) if v else None
    mq = statistics.median(q) if q else None
    ratio = "%.2f" % (mv / mq) if mv and mq else "-"
    print("%-30s %10s %10s %8s" % (row, "%.3f" % mv if mv else "-", "%.3f" % mq if mq else "-", ratio))
print("(seconds, lower is better; ratio = vmm-img / qemu-img)")
PY
