#!/bin/sh
# VHDX log replay (VHDX 1.00 section 2.3) against qemu-img's: images made by
# qemu-img are given a log as a crash would leave one (make-vhdx-log.py).
# A read-write open (vmm-img check -r all) replays the active sequence: the
# result is identical to qemu-img's replay (qemu-img compare), holds the
# logged data and not the stale older entry, passes qemu-img check, and
# opens read-only afterwards (the log is done). A read-only open of a dirty
# image is refused as QEMU's. Entries with a bad checksum are not replayed;
# crafted bad entries (over the headers, into the log, a petabyte
# LastFileOffset, a huge descriptor count, a data sector without its
# signature) are ignored: vmm-img never crashes, the headers and data stay.
. "$top_srcdir/tests/lib/harness.sh"
require_tool qemu-img qemu-io python3
T=$TEST_TMP
MK="python3 $top_srcdir/tests/block/make-vhdx-log.py"

base() {
	rm -f "$T/$1.vhdx"
	qemu-img create -q -f vhdx "$T/$1.vhdx" 64M
	qemu-io -f vhdx -c "write -q -P 0x33 0 1M" "$T/$1.vhdx" >/dev/null
	$MK "$T/$1.vhdx" "$1" >/dev/null
	cp "$T/$1.vhdx" "$T/q-$1.vhdx"
	cp "$T/$1.vhdx" "$T/orig-$1.vhdx"
}

# readp IMAGE PATTERN OFFSET LEN: the guest bytes hold PATTERN
readp() {
	out=$(qemu-io -r -f vhdx -c "read -P $2 $3 $4" "$1") || fail "qemu-io on $1: $out"
	case "$out" in *failed*) fail "$1: not $2 at $3+$4: $out" ;; esac
}

for c in replay wrap; do
	base $c
	out=$("$VMM_IMG" info "$T/$c.vhdx" 2>&1) && fail "$c: read-only open of a dirty log worked"
	expect_contains "$out" "opened read-only, but contains a log that needs to be replayed"
	"$VMM_IMG" check -r all "$T/$c.vhdx" >/dev/null || fail "$c: vmm-img check -r all failed"
	qemu-img check -q -r all "$T/q-$c.vhdx" >/dev/null 2>&1 || fail "$c: qemu-img's replay failed"
	qemu-img compare -q -f vhdx -F vhdx "$T/$c.vhdx" "$T/q-$c.vhdx" ||
		fail "$c: vmm-img's replay differs from qemu-img's"
	qemu-img check -q "$T/$c.vhdx" || fail "$c: qemu-img check of vmm-img's replay"
	"$VMM_IMG" info "$T/$c.vhdx" >/dev/null || fail "$c: the log is still there"
done
readp "$T/replay.vhdx" 0x77 0 8k
readp "$T/replay.vhdx" 0 64k 8k
readp "$T/replay.vhdx" 0x88 128k 4k
readp "$T/replay.vhdx" 0x33 256k 4k # the stale sequence is not replayed
readp "$T/replay.vhdx" 0x33 132k 120k
readp "$T/wrap.vhdx" 0x5c 0 4k
readp "$T/wrap.vhdx" 0x33 4k 1020k

for c in badcrc header inlog far ndesc datasig; do
	base $c
	"$VMM_IMG" check -r all "$T/$c.vhdx" >"$T/out" 2>&1
	rc=$?
	[ $rc -lt 2 ] || fail "$c: vmm-img exited with $rc: $(cat "$T/out")"
	cmp -s -n 196608 "$T/$c.vhdx" "$T/orig-$c.vhdx" || fail "$c: the headers changed"
	# the data stays (read by vmm-img: qemu-img takes some of these logs as valid)
	"$VMM_IMG" convert -f vhdx -O raw "$T/$c.vhdx" "$T/$c.raw" >"$T/out" 2>&1 ||
		fail "$c: vmm-img convert: $(cat "$T/out")"
	python3 -c "import sys; d = open(sys.argv[1], 'rb').read(); sys.exit(d[:1 << 20] != b'\x33' * (1 << 20))" \
		"$T/$c.raw" || fail "$c: the data changed"
done
echo ok
