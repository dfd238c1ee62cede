#!/bin/sh
# Images made by qemu-img/qemu-io read back through our qcow2 driver exactly
# as qemu-img converts them to raw: v2 and v3, cluster sizes 512 B..2 MiB,
# refcount_bits 1..64, zero clusters, compressed (zlib, zstd), backing chains
# of qcow2 and raw, and images with internal snapshots.
. "$top_srcdir/tests/lib/harness.sh"
require_tool qemu-img qemu-io
IO="$top_builddir/tests/block/qcow2-io"
cd "$TEST_TMP"

# fill IMG: a pattern of writes, a zeroed range and a discard
fill() {
	qemu-io -f qcow2 -c "write -P 0x11 0 300k" -c "write -P 0x22 1000k 64k" \
		-c "write -P 0x33 3M 5k" -c "write -z 3M 1k" -c "write -P 0x44 6M 1M" \
		-c "discard 6M 512k" -c "write -P 0x55 7800k 200k" "$1" >/dev/null
}

# same FILE [FMT]: our reading equals qemu-img's
same() {
	fmt=${2:-qcow2}
	qemu-img convert -f "$fmt" -O raw "$1" ref.raw
	"$IO" dump "$1" "$fmt" ours.raw || fail "dump of $1 failed"
	cmp -s ref.raw ours.raw || fail "$1 ($3) reads differently from qemu-img"
	# and the user's way: vmm-img convert -O raw
	rm -f conv.raw
	"$VMM_IMG" convert -f "$fmt" -O raw "$1" conv.raw || fail "vmm-img convert of $1 failed"
	cmp -s ref.raw conv.raw || fail "$1 ($3): vmm-img convert differs from qemu-img"
}

n=0
for compat in 0.10 1.1; do
	for cs in 512 4096 65536 2M; do
		rm -f a.qcow2
		qemu-img create -q -f qcow2 -o compat=$compat,cluster_size=$cs a.qcow2 8M
		fill a.qcow2
		same a.qcow2 qcow2 "compat=$compat cluster_size=$cs"
		n=$((n + 1))
	done
done
for rb in 1 2 4 8 16 32 64; do
	rm -f a.qcow2
	qemu-img create -q -f qcow2 -o refcount_bits=$rb,cluster_size=4096 a.qcow2 8M
	fill a.qcow2
	same a.qcow2 qcow2 "refcount_bits=$rb"
	n=$((n + 1))
done

# compressed: zlib and zstd, converted with -c
head -c 4M /dev/urandom >rnd.raw
qemu-io -f raw -c "write -P 0x61 1M 1M" -c "write -z 3M 512k" rnd.raw >/dev/null
for ct in zlib zstd; do
	for cs in 4096 65536; do
		rm -f c.qcow2
		qemu-img convert -q -c -O qcow2 -o compression_type=$ct,cluster_size=$cs rnd.raw c.qcow2
		qemu-img info c.qcow2 | grep -q "compression type: $ct" || fail "not $ct"
		same c.qcow2 qcow2 "compressed $ct cluster_size=$cs"
		n=$((n + 1))
	done
done

# backing chains: raw <- qcow2 <- qcow2, relative names, and v2 over v3
head -c 8M /dev/zero | tr '\0' 'b' >base.raw
qemu-img create -q -f qcow2 -b base.raw -F raw mid.qcow2
qemu-io -f qcow2 -c "write -P 0x77 1M 100k" -c "write -z 2M 64k" mid.qcow2 >/dev/null
qemu-img create -q -f qcow2 -o compat=0.10 -b mid.qcow2 -F qcow2 top.qcow2
qemu-io -f qcow2 -c "write -P 0x78 1050k 4k" -c "write -P 0x79 5M 3k" top.qcow2 >/dev/null
same top.qcow2 qcow2 "chain raw<-qcow2<-qcow2"
n=$((n + 1))
# a backing file shorter than the overlay reads as zeroes past its end
head -c 1M /dev/zero | tr '\0' 's' >short.raw
qemu-img create -q -f qcow2 -b short.raw -F raw long.qcow2 4M
same long.qcow2 qcow2 "short backing"
n=$((n + 1))
# a backing file without a recorded format is probed (read-only)
qemu-img create -q -f qcow2 -b mid.qcow2 -F qcow2 nofmt.qcow2
qemu-img rebase -u -b mid.qcow2 nofmt.qcow2 2>/dev/null || true
same nofmt.qcow2 qcow2 "unrecorded backing format"
n=$((n + 1))

# chain depth: 16 backing images open, 17 are refused with the chain named;
# a loop is caught by the same limit
mkdir chain
qemu-img create -q -f qcow2 chain/c0.qcow2 1M
qemu-io -f qcow2 -c "write -P 0x5c 0 64k" chain/c0.qcow2 >/dev/null
for i in $(seq 1 17); do
	qemu-img create -q -f qcow2 -b "c$((i - 1)).qcow2" -F qcow2 "chain/c$i.qcow2"
done
same chain/c16.qcow2 qcow2 "16 backing files"
if "$IO" dump chain/c17.qcow2 qcow2 ours.raw 2>err.txt; then
	fail "a chain of 17 backing files was opened"
fi
grep -q "backing file 'chain/c16.qcow2' of 'chain/c17.qcow2'" err.txt || fail "chain not named: $(cat err.txt)"
grep -q "deeper than 16" err.txt || fail "no depth message: $(cat err.txt)"
qemu-img create -q -f qcow2 -u -b loopb.qcow2 -F qcow2 loopa.qcow2 1M
qemu-img create -q -f qcow2 -u -b loopa.qcow2 -F qcow2 loopb.qcow2 1M
if "$IO" dump loopa.qcow2 qcow2 ours.raw 2>err.txt; then
	fail "a backing loop was opened"
fi
grep -q "deeper than 16" err.txt || fail "loop: $(cat err.txt)"
n=$((n + 1))

# internal snapshots made by qemu-img: the active state reads right
rm -f s.qcow2
qemu-img create -q -f qcow2 s.qcow2 8M
qemu-io -f qcow2 -c "write -P 0x01 0 2M" s.qcow2 >/dev/null
qemu-img snapshot -c first s.qcow2
qemu-io -f qcow2 -c "write -P 0x02 1M 2M" s.qcow2 >/dev/null
qemu-img snapshot -c second s.qcow2
qemu-io -f qcow2 -c "write -P 0x03 512k 64k" s.qcow2 >/dev/null
same s.qcow2 qcow2 "with snapshots"
"$IO" snapshot s.qcow2 -l >list.txt
grep -q "^1 first$" list.txt && grep -q "^2 second$" list.txt || fail "snapshot list: $(cat list.txt)"
n=$((n + 1))

echo "ok: $n images read identically"
