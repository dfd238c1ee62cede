#!/bin/sh
# vmm-img amend -o compat / lazy_refcounts / refcount_bits against qemu-img
# amend, option by option on five images (compat=0.10; compat=1.1; 1.1 with
# zero clusters, unallocated and allocated; 1.1 with an internal snapshot
# sharing clusters; an overlay with a zero cluster over its backing): the same
# exit status, the same message, the same compat / lazy-refcounts /
# refcount-bits in qemu-img info afterwards, the same guest data (qemu-img
# compare), and qemu-img check passes on vmm-img's result. One known
# difference: downgrading an overlay whose zero clusters hide its backing
# file, which qemu-img does by allocating them and vmm-img refuses. Also the
# -o help lines.
. "$top_srcdir/tests/lib/harness.sh"
require_tool qemu-img qemu-io python3
T=$TEST_TMP
cd "$T"

qemu-img create -q -f qcow2 -o compat=0.10 a2.qcow2 16M
qemu-img create -q -f qcow2 a3.qcow2 16M
qemu-io -c "write -q -P 0x11 0 1M" a2.qcow2
qemu-io -c "write -q -P 0x11 0 1M" a3.qcow2
cp a3.qcow2 az.qcow2
qemu-io -c "write -q -z 2M 64k" -c "write -q -z 0 64k" az.qcow2
qemu-img create -q -f qcow2 -b a3.qcow2 -F qcow2 ab.qcow2
qemu-io -c "write -q -z 2M 64k" ab.qcow2
cp a3.qcow2 as.qcow2
qemu-img snapshot -c s1 as.qcow2
qemu-io -c "write -q -P 0x22 0 64k" as.qcow2

info() {
	qemu-img info --output=json "$1" | python3 -c 'import json, sys
f = json.load(sys.stdin)["format-specific"]["data"]
print(f.get("compat"), f.get("lazy-refcounts"), f.get("refcount-bits"))'
}

n=0
for o in lazy_refcounts=on lazy_refcounts=off compat=1.1 compat=v3 compat=0.10 compat=v2 \
	compat=foo refcount_bits=16 refcount_bits=8 refcount_bits=1 refcount_bits=64 \
	refcount_bits=3 lazy_refcounts=maybe compat=0.10,lazy_refcounts=on \
	compat=1.1,lazy_refcounts=on,refcount_bits=32 compat=0.10,refcount_bits=8; do
	for f in a2 a3 az as ab; do
		cp $f.qcow2 q.qcow2
		cp $f.qcow2 m.qcow2
		qo=$(qemu-img amend -o "$o" q.qcow2 2>&1) && qr=0 || qr=$?
		mo=$("$VMM_IMG" amend -o "$o" m.qcow2 2>&1) && mr=0 || mr=$?
		qemu-img check -q m.qcow2 || fail "$f $o: qemu-img check of vmm-img's result"
		qemu-img compare -q q.qcow2 m.qcow2 || fail "$f $o: the data differ"
		if [ $f = ab ] && { [ "$o" = compat=0.10 ] || [ "$o" = compat=v2 ]; }; then
			[ $mr = 1 ] || fail "$f $o: downgrade with zero clusters: $mo"
			expect_contains "$mo" "the image has zero clusters over a backing file"
			continue
		fi
		[ "$qr" = "$mr" ] || fail "$f $o: exit $mr, qemu-img $qr ($mo / $qo)"
		[ "${qo#qemu-img: }" = "${mo#vmm-img: }" ] || fail "$f $o: '$mo', qemu-img '$qo'"
		[ "$(info q.qcow2)" = "$(info m.qcow2)" ] ||
			fail "$f $o: $(info m.qcow2), qemu-img $(info q.qcow2)"
		n=$((n + 1))
	done
done
echo "$n cases as qemu-img"

# lazy refcounts really in use after the amend: writes, then a clean check
cp a3.qcow2 l.qcow2
"$VMM_IMG" amend -o lazy_refcounts=on l.qcow2
"$VMM_IMG" bench -q -w -c 200 -s 4k -S 64k l.qcow2 >/dev/null || fail "writes with lazy refcounts"
qemu-img check -q l.qcow2 || fail "lazy refcounts image after writes"

# the help lists what vmm-img amends, each line as qemu-img's
qemu-img amend -f qcow2 -o help >qh.txt
"$VMM_IMG" amend -f qcow2 -o help >mh.txt
while IFS= read -r line; do
	grep -qxF -- "$line" qh.txt || fail "help line '$line' is not qemu-img's"
done <mh.txt
echo ok
