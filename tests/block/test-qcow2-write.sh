#!/bin/sh
# Images written by our qcow2 driver pass `qemu-img check` with no errors and
# match the expected content under `qemu-img compare`: random writes, zero
# writes, discards and compressed writes (mirrored into a raw file) across
# versions, cluster sizes and refcount widths; snapshots taken, applied and
# deleted; resize; overlays on backing files; our own check and repair.
. "$top_srcdir/tests/lib/harness.sh"
require_tool qemu-img qemu-io
IO="$top_builddir/tests/block/qcow2-io"
cd "$TEST_TMP"

clean() {
	out=$(qemu-img check "$1" 2>&1) || fail "qemu-img check $1 ($2): $out"
	case "$out" in *"No errors were found"*) ;; *) fail "qemu-img check $1 ($2): $out" ;; esac
}

same() {
	qemu-img compare -q -f qcow2 -F raw "$1" "$2" || fail "$1 differs from $2 ($3)"
}

n=0
for spec in "compat=1.1 cluster_size=65536" "compat=0.10 cluster_size=65536" \
	"cluster_size=512" "cluster_size=2M" "cluster_size=4096 refcount_bits=1" \
	"cluster_size=4096 refcount_bits=2" "cluster_size=4096 refcount_bits=4" \
	"cluster_size=4096 refcount_bits=8" "cluster_size=4096 refcount_bits=32" \
	"cluster_size=4096 refcount_bits=64" "compression_type=zstd" \
	"lazy_refcounts=on cluster_size=4096"; do
	rm -f a.qcow2 m.raw
	# shellcheck disable=SC2086
	"$IO" create a.qcow2 24M $spec || fail "create $spec"
	truncate -s 24M m.raw
	# every other configuration goes through cache=none (O_DIRECT)
	if [ $((n % 2)) = 1 ]; then
		QCOW2_IO_NOCACHE=1 "$IO" ops a.qcow2 m.raw $n 300 || fail "ops on $spec (cache=none)"
	else
		"$IO" ops a.qcow2 m.raw $n 300 || fail "ops on $spec"
	fi
	clean a.qcow2 "$spec"
	same a.qcow2 m.raw "$spec"
	n=$((n + 1))
done

# vmm-img convert -c writes compressed clusters qemu-img reads back
head -c 3M /dev/urandom >rnd.raw
qemu-io -f raw -c "write -P 0x61 1M 1M" -c "write -z 2M 512k" rnd.raw >/dev/null
for ct in zlib zstd; do
	rm -f c.qcow2
	"$VMM_IMG" convert -q -c -f raw -O qcow2 -o compression_type=$ct,cluster_size=4096 rnd.raw \
		c.qcow2 || fail "vmm-img convert -c ($ct)"
	qemu-img check c.qcow2 | grep -q "compressed clusters" || fail "no compressed clusters ($ct)"
	clean c.qcow2 "convert -c $ct"
	same c.qcow2 rnd.raw "convert -c $ct"
	n=$((n + 1))
done

# preallocation: every cluster mapped; zeroing without unmap keeps the mapping,
# and later writes land in the same clusters (the file does not grow)
for p in metadata full; do
	rm -f p.qcow2 m.raw
	"$IO" create p.qcow2 8M preallocation=$p cluster_size=65536
	clean p.qcow2 "preallocation=$p"
	qemu-img check p.qcow2 | grep -q "128/128 = 100.00% allocated" || fail "not preallocated ($p)"
	"$IO" zero p.qcow2 1M 2M
	qemu-img map --output=json p.qcow2 | grep '"start": 1048576' | grep -q '"zero": true.*"offset"' ||
		fail "zeroing dropped the preallocation ($p)"
	size=$(stat -c %s p.qcow2)
	"$IO" write p.qcow2 1M 100000 3
	[ "$(stat -c %s p.qcow2)" = "$size" ] || fail "a write into a preallocated zero cluster grew the file"
	"$IO" zero p.qcow2 4M 1M unmap
	truncate -s 8M m.raw
	qemu-io -f raw -c "write -P 3 1M 100000" m.raw >/dev/null
	clean p.qcow2 "zeroes on preallocation=$p"
	same p.qcow2 m.raw "zeroes on preallocation=$p"
	n=$((n + 1))
done

# concurrent writers, zeroers, discarders and readers on one image (the
# block layer calls drivers from several threads at once)
for spec in "cluster_size=65536" "cluster_size=4096 compat=0.10" "cluster_size=1M"; do
	rm -f t.qcow2
	# shellcheck disable=SC2086
	"$IO" create t.qcow2 32M $spec
	"$IO" stress t.qcow2 4 400 || fail "concurrent I/O ($spec)"
	clean t.qcow2 "concurrent I/O ($spec)"
	n=$((n + 1))
done

# snapshots: create, overwrite, apply, delete; qemu-img sees the same state
rm -f s.qcow2 m.raw
"$IO" create s.qcow2 16M cluster_size=4096
truncate -s 16M m.raw
"$IO" ops s.qcow2 m.raw 100 200
cp m.raw m1.raw
"$IO" snapshot s.qcow2 -c one
"$IO" ops s.qcow2 m.raw 101 200
clean s.qcow2 "after snapshot one"
same s.qcow2 m.raw "after snapshot one"
"$IO" snapshot s.qcow2 -c two
qemu-img snapshot -l s.qcow2 | grep -q " two " || fail "qemu-img does not list snapshot two"
cp s.qcow2 q.qcow2
qemu-img snapshot -a one q.qcow2
same q.qcow2 m1.raw "qemu-img applying our snapshot"
"$IO" snapshot s.qcow2 -a one
same s.qcow2 m1.raw "our apply"
clean s.qcow2 "after apply"
"$IO" ops s.qcow2 m1.raw 102 100
"$IO" snapshot s.qcow2 -d two
clean s.qcow2 "after delete two"
"$IO" snapshot s.qcow2 -d one
clean s.qcow2 "after delete one"
same s.qcow2 m1.raw "after deletes"
"$IO" snapshot s.qcow2 -a one 2>/dev/null && fail "applied a deleted snapshot"
# a snapshot qemu-img made, applied by us
qemu-io -f qcow2 -c "write -P 0x42 0 1M" s.qcow2 >/dev/null
qemu-img convert -O raw s.qcow2 before.raw
qemu-img snapshot -c qsnap s.qcow2
"$IO" write s.qcow2 0 2M 9
"$IO" snapshot s.qcow2 -a qsnap
same s.qcow2 before.raw "our apply of a qemu-img snapshot"
clean s.qcow2 "after applying qsnap"
n=$((n + 1))

# resize: grow past the L1 table's reach, data stays, new space reads zeroes
rm -f r.qcow2 m.raw
"$IO" create r.qcow2 1M cluster_size=512
truncate -s 1M m.raw
"$IO" ops r.qcow2 m.raw 200 100
"$IO" resize r.qcow2 300M
truncate -s 300M m.raw
"$IO" write r.qcow2 299M 4096 7
qemu-io -f raw -c "write -P 7 299M 4096" m.raw >/dev/null
clean r.qcow2 "after resize"
same r.qcow2 m.raw "after resize"
"$IO" resize r.qcow2 1M 2>/dev/null && fail "shrinking was accepted"
n=$((n + 1))

# overlay over a backing chain: copy-on-write keeps the backing data
head -c 4M /dev/zero | tr '\0' 'B' >base.raw
"$IO" create over.qcow2 0 backing_file=base.raw backing_fmt=raw cluster_size=65536
qemu-img info over.qcow2 | grep -q "backing file: base.raw" || fail "backing not recorded"
cp base.raw m.raw
"$IO" write over.qcow2 1000 3000 1
qemu-io -f raw -c "write -P 1 1000 3000" m.raw >/dev/null
"$IO" ops over.qcow2 m.raw 300 50 || fail "ops on the overlay"
clean over.qcow2 "overlay"
qemu-img compare -q -f qcow2 -F raw over.qcow2 m.raw || fail "overlay differs"
n=$((n + 1))

# our check finds and repairs leaks and refcount errors
rm -f l.qcow2
"$IO" create l.qcow2 8M cluster_size=4096
"$IO" write l.qcow2 0 1M 5
qemu-img convert -O raw l.qcow2 l.raw
# leak: qemu-io frees host cluster 4 (the first data cluster), then we count it again
qemu-io -f qcow2 -c "discard 0 4k" l.qcow2 >/dev/null
qemu-io -f raw -c "write -z 0 4k" l.raw >/dev/null
printf '\000\001' | dd of=l.qcow2 bs=1 seek=$((2 * 4096 + 2 * 4)) conv=notrunc 2>/dev/null
rc=0; "$IO" check l.qcow2 >c.txt || rc=$?
[ $rc -eq 3 ] || fail "leak not reported: $(cat c.txt)"
rc=0; qemu-img check l.qcow2 >/dev/null 2>&1 || rc=$?
[ $rc -eq 3 ] || fail "qemu-img sees no leak either"
"$IO" check l.qcow2 leaks >c.txt || fail "leak repair failed: $(cat c.txt)"
grep -q "leaks_fixed=1" c.txt || fail "leak repair: $(cat c.txt)"
clean l.qcow2 "after leak repair"
# corruption: zero a refcount that is in use (host cluster 10 holds data)
printf '\000\000' | dd of=l.qcow2 bs=1 seek=$((2 * 4096 + 2 * 10)) conv=notrunc 2>/dev/null
rc=0; qemu-img check l.qcow2 >/dev/null 2>&1 || rc=$?
[ $rc -eq 2 ] || fail "qemu-img sees no corruption either"
rc=0; "$IO" check l.qcow2 >c.txt || rc=$?
[ $rc -eq 2 ] || fail "corruption not reported: $(cat c.txt)"
"$IO" check l.qcow2 all >c.txt || fail "repair failed: $(cat c.txt)"
clean l.qcow2 "after repair"
same l.qcow2 l.raw "after repair"
n=$((n + 1))

# persistent bitmaps written by qemu-img: counted while consistent; after we
# write (dropping the autoclear bit, as the spec asks) they are leaks to both
if qemu-img bitmap --help >/dev/null 2>&1; then
	rm -f bm.qcow2
	qemu-img create -q -f qcow2 bm.qcow2 16M
	qemu-io -f qcow2 -c "write 0 1M" bm.qcow2 >/dev/null
	qemu-img bitmap --add bm.qcow2 b0
	"$IO" check bm.qcow2 >c.txt || fail "bitmap clusters miscounted: $(cat c.txt)"
	"$IO" write bm.qcow2 0 4096 1
	rc=0; "$IO" check bm.qcow2 >c.txt || rc=$?
	[ $rc -eq 3 ] || fail "stale bitmaps are not leaks to us: $(cat c.txt)"
	rc=0; qemu-img check bm.qcow2 >/dev/null 2>&1 || rc=$?
	[ $rc -eq 3 ] || fail "stale bitmaps are not leaks to qemu-img"
	"$IO" check bm.qcow2 leaks >/dev/null || fail "bitmap leak repair"
	clean bm.qcow2 "after dropping bitmaps"
	n=$((n + 1))
fi

# refcount table growth (512-byte clusters, 64-bit refcounts: a block covers
# 32 KiB), then a rebuild of that multi-block structure after losing a block
rm -f g.qcow2 g.raw
"$IO" create g.qcow2 16M cluster_size=512 refcount_bits=64
"$IO" write g.qcow2 0 6M 7
clean g.qcow2 "refcount table growth"
qemu-img convert -O raw g.qcow2 g.raw
rt=$(od -An -tu1 -j48 -N8 g.qcow2 | awk '{ v = 0; for (i = 1; i <= 8; i++) v = v * 256 + $i; print v }')
[ "$rt" -gt 512 ] || fail "no refcount table offset"
dd if=/dev/zero of=g.qcow2 bs=1 seek=$((rt + 16)) count=8 conv=notrunc 2>/dev/null
rc=0; qemu-img check g.qcow2 >/dev/null 2>&1 || rc=$?
[ $rc -ne 0 ] || fail "qemu-img did not notice the lost refcount block"
"$IO" check g.qcow2 all >c.txt || fail "rebuild failed: $(cat c.txt)"
grep -q "corruptions=0 leaks=0" c.txt || fail "rebuild left problems: $(cat c.txt)"
clean g.qcow2 "after rebuild"
same g.qcow2 g.raw "after rebuild"
n=$((n + 1))

# a lazy-refcounts image left dirty is rebuilt on open
rm -f z.qcow2 m.raw
"$IO" create z.qcow2 8M lazy_refcounts=on cluster_size=4096
truncate -s 8M m.raw
"$IO" writer z.qcow2 5 >w.out 2>&1 &
wpid=$!
for _ in $(seq 100); do grep -q running w.out 2>/dev/null && break; sleep 0.05; done
kill -9 $wpid; wait $wpid 2>/dev/null || true
qemu-img info z.qcow2 >/dev/null 2>&1
"$IO" write z.qcow2 0 4096 1 || fail "dirty image did not open"
clean z.qcow2 "after dirty rebuild"
n=$((n + 1))

echo "ok: $n written-image scenarios pass qemu-img check and compare"
