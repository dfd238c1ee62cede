#!/bin/sh
# vmm-img's verbs on qcow2 images and backing chains, against qemu-img:
# create, info (--backing-chain), map, check, convert (-c zlib/zstd),
# compare, snapshot, rebase (safe and -u), commit, resize. Every image
# vmm-img writes must pass `qemu-img check` and compare equal to the
# expected content.
. "$top_srcdir/tests/lib/harness.sh"
require_tool qemu-img qemu-io
T=$TEST_TMP
cd "$T"

"$VMM_IMG" create -q -f qcow2 probe.qcow2 1M 2>/dev/null ||
	skip "this vmm-img has no qcow2 driver"

qcheck() { qemu-img check -q "$1" || fail "qemu-img check $1 failed"; }

# create: qemu-img's line and an image qemu-img accepts
out=$("$VMM_IMG" create -f qcow2 -o cluster_size=64k base.qcow2 4M)
[ "$out" = "Formatting 'base.qcow2', fmt=qcow2 cluster_size=65536 extended_l2=off compression_type=zlib size=4194304 lazy_refcounts=off refcount_bits=16" ] ||
	fail "create printed: $out"
qcheck base.qcow2
qemu-io -f qcow2 -c 'write -P 1 0 64k' -c 'write -z 128k 64k' -c 'write -P 3 1M 8k' \
	base.qcow2 >/dev/null
"$VMM_IMG" create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2
qcheck top.qcow2
qemu-io -f qcow2 -c 'write -P 2 192k 4k' -c 'write -P 4 1M 4k' top.qcow2 >/dev/null

# info, map: the same as qemu-img's
for args in "info top.qcow2" "info --backing-chain top.qcow2" "map -f qcow2 top.qcow2" \
	"map -f qcow2 --output=json top.qcow2"; do
	# shellcheck disable=SC2086
	"$VMM_IMG" $args >vmm.out
	# shellcheck disable=SC2086
	qemu-img $args >qemu.out
	cmp -s vmm.out qemu.out || { diff vmm.out qemu.out; fail "vmm-img $args differs"; }
done
"$VMM_IMG" info --output=json --backing-chain top.qcow2 | python3 -c '
import json, sys
chain = json.load(sys.stdin)
assert [i["filename"] for i in chain] == ["top.qcow2", "base.qcow2"], chain
assert chain[0]["backing-filename"] == "base.qcow2" and chain[0]["cluster-size"] == 65536
assert chain[0]["format-specific"]["data"]["compat"] == "1.1"'

# check: clean image, exit 0; the JSON has qemu-img's fields
"$VMM_IMG" check -f qcow2 top.qcow2 | grep -q "No errors were found on the image." ||
	fail "check"
"$VMM_IMG" check -f qcow2 --output=json top.qcow2 | python3 -c '
import json, sys
c = json.load(sys.stdin)
assert c["check-errors"] == 0 and c["total-clusters"] == 64 and "leaks" not in c, c'

# convert: the chain flattened, plain and compressed (zlib, zstd)
qemu-img convert -f qcow2 -O raw top.qcow2 expect.raw
"$VMM_IMG" convert -f qcow2 -O raw top.qcow2 flat.raw
qemu-img compare -f raw -F raw expect.raw flat.raw >/dev/null || fail "convert to raw"
for ct in zlib zstd; do
	"$VMM_IMG" convert -c -o compression_type=$ct -f qcow2 -O qcow2 top.qcow2 c-$ct.qcow2
	qcheck c-$ct.qcow2
	qemu-img compare -F raw c-$ct.qcow2 expect.raw >/dev/null || fail "convert -c $ct"
	qemu-img info c-$ct.qcow2 | grep -q "compression type: $ct" || fail "not $ct"
done
qemu-img check c-zlib.qcow2 | grep -q "100.00% compressed" || fail "convert -c wrote plain clusters"
"$VMM_IMG" convert -f raw -O qcow2 -o cluster_size=4k,refcount_bits=8 expect.raw small.qcow2
qcheck small.qcow2
qemu-img info small.qcow2 | grep -q "refcount bits: 8" || fail "refcount_bits option"
qemu-img compare small.qcow2 expect.raw >/dev/null || fail "convert to cluster_size=4k"

# convert onto a backing file: zeroes of the source must hide the backing data
qemu-img create -q -f raw zero.raw 4M
"$VMM_IMG" convert -f raw -O qcow2 -o backing_file=base.qcow2,backing_fmt=qcow2 zero.raw zb.qcow2
qcheck zb.qcow2
qemu-img compare -F raw zb.qcow2 zero.raw >/dev/null || fail "convert onto a backing file"

# compare: vmm-img and qemu-img agree on mismatches
"$VMM_IMG" compare -f qcow2 -F raw top.qcow2 expect.raw | grep -q "Images are identical." ||
	fail "compare identical"
qemu-io -f qcow2 -c 'write -P 9 3000k 512' small.qcow2 >/dev/null
set +e
vout=$("$VMM_IMG" compare -f qcow2 -F raw small.qcow2 expect.raw); vrc=$?
qout=$(qemu-img compare -f qcow2 -F raw small.qcow2 expect.raw); qrc=$?
set -e
[ "$vrc" = 1 ] && [ "$qrc" = 1 ] && [ "$vout" = "$qout" ] ||
	fail "compare: '$vout' ($vrc) vs qemu-img '$qout' ($qrc)"

# snapshot: create, list (qemu-img sees it), apply, delete
cp flat.raw snapsrc.raw
"$VMM_IMG" convert -f raw -O qcow2 snapsrc.raw snap.qcow2
"$VMM_IMG" snapshot -f qcow2 -c before snap.qcow2
qemu-io -f qcow2 -c 'write -P 8 0 128k' snap.qcow2 >/dev/null
"$VMM_IMG" snapshot -f qcow2 -l snap.qcow2 | grep -q "before" || fail "snapshot -l"
qemu-img snapshot -l snap.qcow2 | grep -q "before" || fail "qemu-img does not see the snapshot"
"$VMM_IMG" snapshot -f qcow2 -a before snap.qcow2
qcheck snap.qcow2
qemu-img compare -F raw snap.qcow2 expect.raw >/dev/null || fail "snapshot -a"
"$VMM_IMG" snapshot -f qcow2 -d before snap.qcow2
qcheck snap.qcow2
qemu-img snapshot -l snap.qcow2 | grep -q "before" && fail "snapshot -d"

# rebase: safe mode keeps the guest view, -u only renames
qemu-img create -q -f qcow2 other.qcow2 4M
qemu-io -f qcow2 -c 'write -P 6 0 256k' other.qcow2 >/dev/null
cp top.qcow2 r.qcow2
"$VMM_IMG" rebase -f qcow2 -b other.qcow2 -F qcow2 r.qcow2
qcheck r.qcow2
qemu-img info r.qcow2 | grep -q "backing file: other.qcow2" || fail "rebase name"
qemu-img compare -F raw r.qcow2 expect.raw >/dev/null || fail "safe rebase changed the content"
"$VMM_IMG" rebase -f qcow2 -u -b base.qcow2 -F qcow2 r.qcow2
qemu-img info r.qcow2 | grep -q "backing file: base.qcow2" || fail "rebase -u"
"$VMM_IMG" rebase -f qcow2 -b "" r.qcow2
qemu-img info r.qcow2 | grep -q "backing file" && fail "rebase -b '' kept a backing file"
qemu-img compare -F raw r.qcow2 expect.raw >/dev/null || fail "rebase onto nothing"

# commit: the base gets the overlay's data, the overlay is emptied
cp base.qcow2 cbase.qcow2
"$VMM_IMG" create -q -f qcow2 -b cbase.qcow2 -F qcow2 ctop.qcow2
qemu-io -f qcow2 -c 'write -P 7 512k 64k' -c 'write -z 0 4k' ctop.qcow2 >/dev/null
qemu-img convert -f qcow2 -O raw ctop.qcow2 cexpect.raw
"$VMM_IMG" commit -f qcow2 ctop.qcow2 | grep -q "Image committed." || fail "commit"
qcheck cbase.qcow2
qcheck ctop.qcow2
qemu-img compare -F raw cbase.qcow2 cexpect.raw >/dev/null || fail "commit: base content"
qemu-img map --output=json ctop.qcow2 | grep -q '"depth": 0' && fail "commit left data in the overlay"

# resize: grow, check, read back
"$VMM_IMG" resize -f qcow2 small.qcow2 +4M | grep -q "Image resized." || fail "resize"
qcheck small.qcow2
qemu-img info --output=json small.qcow2 | grep -q '"virtual-size": 8388608' || fail "resize size"

# images qemu-img made with other layouts read back identically
for o in compat=0.10 refcount_bits=1 refcount_bits=64 cluster_size=512 cluster_size=2M; do
	qemu-img convert -f raw -O qcow2 -o $o expect.raw q.qcow2
	"$VMM_IMG" convert -f qcow2 -O raw q.qcow2 back.raw
	cmp -s back.raw expect.raw || fail "reading a qemu-img image with -o $o"
done
echo ok
