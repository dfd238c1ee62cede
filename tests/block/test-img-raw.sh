#!/bin/sh
# vmm-img on raw images, checked against qemu-img/qemu-io on the same files:
# create, info, map, convert (sparse, from NBD), compare, resize, check, bench.
. "$top_srcdir/tests/lib/harness.sh"
require_tool qemu-img qemu-io
T=$TEST_TMP

# create: qemu-img's line, the requested size, a sparse file
out=$("$VMM_IMG" create -f raw "$T/a.raw" 4M)
[ "$out" = "Formatting '$T/a.raw', fmt=raw size=4194304" ] || fail "create printed: $out"
qemu-img info --output=json -f raw "$T/a.raw" | grep -q '"virtual-size": 4194304' ||
	fail "qemu-img sees a different size"
"$VMM_IMG" create -f raw "$T/x.raw" >/dev/null 2>&1 && fail "create without a size succeeded"

qemu-io -f raw -c 'write -P 0x11 64k 64k' -c 'write -P 0x22 1M 4k' -c 'write -P 0x33 3M 512' \
	"$T/a.raw" >/dev/null

# info: probed, same size fields as qemu-img
out=$("$VMM_IMG" info "$T/a.raw")
expect_contains "$out" "file format: raw"
expect_contains "$out" "virtual size: 4 MiB (4194304 bytes)"
"$VMM_IMG" info --output=json "$T/a.raw" | python3 -c '
import json, sys
i = json.load(sys.stdin)
assert i["format"] == "raw" and i["virtual-size"] == 4194304, i
assert i["actual-size"] > 0, i'

# map: byte-identical to qemu-img map on raw
"$VMM_IMG" map -f raw --output=json "$T/a.raw" >"$T/map.vmm"
qemu-img map -f raw --output=json "$T/a.raw" >"$T/map.qemu"
cmp -s "$T/map.vmm" "$T/map.qemu" || { diff "$T/map.vmm" "$T/map.qemu"; fail "map differs"; }
"$VMM_IMG" map -f raw "$T/a.raw" >"$T/map.vmm"
qemu-img map -f raw "$T/a.raw" >"$T/map.qemu"
cmp -s "$T/map.vmm" "$T/map.qemu" || { diff "$T/map.vmm" "$T/map.qemu"; fail "human map differs"; }

# every verb probes without -f; opening a probed raw image for writing warns as QEMU does
"$VMM_IMG" convert "$T/a.raw" "$T/p.raw" || fail "convert did not probe the source"
"$VMM_IMG" resize "$T/p.raw" 4M 2>"$T/err" >/dev/null || fail "resize of a probed raw image"
grep -q "^WARNING: Image format was not specified for '$T/p.raw' and probing guessed raw." "$T/err" ||
	fail "no probing warning: $(cat "$T/err")"
"$VMM_IMG" resize -f raw "$T/p.raw" 4M 2>"$T/err" >/dev/null && [ ! -s "$T/err" ] ||
	fail "a warning with -f raw: $(cat "$T/err")"

# convert: same content, still sparse, progress reaches 100%
out=$("$VMM_IMG" convert -p -f raw -O raw "$T/a.raw" "$T/b.raw")
expect_contains "$out" "(100.00/100%)"
qemu-img compare -f raw -F raw "$T/a.raw" "$T/b.raw" >/dev/null || fail "convert changed the data"
used=$(du -k "$T/b.raw" | cut -f1)
[ "$used" -lt 1024 ] || fail "converted image is not sparse ($used KiB used)"

# compare: identical, then a mismatch at the same offset qemu-img reports
out=$("$VMM_IMG" compare -f raw "$T/a.raw" "$T/b.raw")
[ "$out" = "Images are identical." ] || fail "compare: $out"
qemu-io -f raw -c 'write -P 0x44 2052k 512' "$T/b.raw" >/dev/null
set +e
vout=$("$VMM_IMG" compare -f raw "$T/a.raw" "$T/b.raw"); vrc=$?
qout=$(qemu-img compare -f raw -F raw "$T/a.raw" "$T/b.raw"); qrc=$?
set -e
[ "$vrc" = 1 ] && [ "$vrc" = "$qrc" ] || fail "compare exit $vrc, qemu-img $qrc"
[ "$vout" = "$qout" ] || fail "compare said '$vout', qemu-img '$qout'"

# resize: grow, refuse to shrink without --shrink, shrink with it
"$VMM_IMG" resize -f raw "$T/b.raw" +1M | grep -q "Image resized." || fail "resize"
qemu-img info --output=json -f raw "$T/b.raw" | grep -q '"virtual-size": 5242880' ||
	fail "resize did not grow to 5M"
"$VMM_IMG" resize -f raw "$T/b.raw" 1M 2>/dev/null && fail "shrank without --shrink"
"$VMM_IMG" resize -f raw --shrink "$T/b.raw" -1M >/dev/null || fail "resize --shrink"
[ "$(stat -c %s "$T/b.raw")" = 4194304 ] || fail "shrink gave the wrong size"
# a size-mismatch compare: equal as long as the tail is zero, unless strict
"$VMM_IMG" resize -f raw "$T/b.raw" 6M >/dev/null
qemu-io -f raw -c 'write -P 0x44 2052k 512' "$T/a.raw" >/dev/null
"$VMM_IMG" compare -f raw "$T/a.raw" "$T/b.raw" >/dev/null 2>&1 || fail "zero tail should match"
"$VMM_IMG" compare -s -f raw "$T/a.raw" "$T/b.raw" >/dev/null 2>&1 && fail "strict compare passed"

# check: raw has none (qemu-img's exit code 63)
set +e
"$VMM_IMG" check -f raw "$T/a.raw" 2>/dev/null; rc=$?
set -e
[ "$rc" = 63 ] || fail "check on raw exited $rc"

# bench: qemu-img's output shape; written data really lands
out=$("$VMM_IMG" bench -f raw -w -c 256 -d 8 -s 4k --pattern=0x5a -o 1M "$T/a.raw")
expect_contains "$out" "Sending 256 write requests, 4096 bytes each, 8 in parallel (starting at offset 1048576, step size 4096)"
expect_contains "$out" "Run completed in "
qemu-io -f raw -c 'read -P 0x5a 1M 1M' "$T/a.raw" >/dev/null ||
	fail "bench writes are not in the image"
# 64 KiB writes from the page cache go out on io_uring inline (not io-wq): they land too
"$VMM_IMG" bench -f raw -w -c 32 -d 8 -s 64k --pattern=0x6b -o 2M -t writeback -i io_uring \
	"$T/a.raw" >/dev/null
qemu-io -f raw -c 'read -P 0x6b 2M 2M' "$T/a.raw" >/dev/null ||
	fail "64 KiB page-cache bench writes are not in the image"
for cache in none writeback; do
	for aio in io_uring threads; do
		"$VMM_IMG" bench -f raw -c 500 -t $cache -i $aio -S 12288 "$T/a.raw" |
			grep -q "Run completed" || fail "bench -t $cache -i $aio"
	done
done
"$VMM_IMG" bench -f raw -w -c 300 --flush-interval=50 "$T/a.raw" | grep -q "Sending flush every 50" ||
	fail "bench flush interval"

# convert from an NBD export (qemu-nbd), then the result matches
if command -v qemu-nbd >/dev/null 2>&1; then
	# --fork returns once the server accepts connections
	qemu-nbd --fork --pid-file="$T/nbd.pid" -f raw -r -k "$T/nbd.sock" "$T/a.raw"
	"$VMM_IMG" convert -f raw -O raw "nbd+unix:///?socket=$T/nbd.sock" "$T/c.raw"
	kill "$(cat "$T/nbd.pid")" 2>/dev/null || true
	qemu-img compare -f raw -F raw "$T/a.raw" "$T/c.raw" >/dev/null || fail "NBD convert differs"
fi
echo ok
