#!/bin/sh
# Crash consistency: a writer doing random allocating writes, discards, zero
# writes, compressed writes and flushes is killed with SIGKILL at a random moment; `qemu-img check` must
# then report a clean image or leaked clusters only, never corruption.
# 20 rounds by default, 100 with VMMD_SLOW_TESTS=1.
. "$top_srcdir/tests/lib/harness.sh"
require_tool qemu-img
IO="$top_builddir/tests/block/qcow2-io"
cd "$TEST_TMP"

rounds=20
[ "${VMMD_SLOW_TESTS:-0}" = 1 ] && rounds=100
leaky=0
for i in $(seq "$rounds"); do
	case $((i % 4)) in
	0) opts="cluster_size=4096" ;;
	1) opts="cluster_size=512 refcount_bits=4" ;;
	2) opts="cluster_size=65536 compat=0.10" ;;
	3) opts="cluster_size=4096 refcount_bits=64" ;;
	esac
	rm -f w.qcow2 w.out
	# shellcheck disable=SC2086
	"$IO" create w.qcow2 64M $opts
	"$IO" writer w.qcow2 "$i" >w.out 2>&1 &
	pid=$!
	for _ in $(seq 200); do grep -q running w.out 2>/dev/null && break; sleep 0.02; done
	grep -q running w.out || fail "writer did not start: $(cat w.out)"
	# kill at a random moment 0..400 ms into the writing
	sleep "0.$(awk -v s="$i" 'BEGIN { srand(s); printf "%03d", int(rand() * 400) }')"
	kill -KILL "$pid"
	wait "$pid" 2>/dev/null || true
	rc=0
	out=$(qemu-img check w.qcow2 2>&1) || rc=$?
	case $rc in
	0) ;;
	3) leaky=$((leaky + 1)) ;;
	*) fail "round $i ($opts): qemu-img check exited $rc: $out" ;;
	esac
	# and our own check agrees there is no corruption
	rc=0
	"$IO" check w.qcow2 >c.txt || rc=$?
	[ $rc -eq 0 ] || [ $rc -eq 3 ] || fail "round $i: our check: $(cat c.txt)"
done
echo "ok: $rounds kills, $leaky left leaked clusters, none corrupt"
