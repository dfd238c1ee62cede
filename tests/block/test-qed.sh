#!/bin/sh
# QED through vmm-img against qemu-img: images qemu-img makes (several
# sizes, cluster and table sizes, sparse, with data patterns) read back
# identically; images vmm-img makes (create, convert, random writes) pass
# qemu-img check and compare; create prints qemu-img's line.
. "$top_srcdir/tests/lib/harness.sh"
require_tool qemu-img qemu-io python3
FMT=qed
HAS_CHECK=1
. "$top_srcdir/tests/block/format-lib.sh"

read_back 3M
read_back 50M -o cluster_size=4096,table_size=2
read_back 1G -o cluster_size=65536,table_size=16
read_back 10000000

write_interop 3M
write_interop 50M -o cluster_size=4096,table_size=2
write_interop 300M -o cluster_size=1M

create_line 10M
create_line 1000
create_line 100M -o cluster_size=4096,table_size=2
qemu-img create -q -f raw "$T/cbase.raw" 4M
create_line 4M -b "$T/cbase.raw" -F raw

# refusals
"$VMM_IMG" create -f qed -o table_size=3 "$T/bad.qed" 10M 2>"$T/err" && fail "table_size=3 accepted"
grep -q 'table size must be within range' "$T/err" || fail "table_size=3: $(cat "$T/err")"
"$VMM_IMG" create -f qed -o cluster_size=4096,table_size=2 "$T/bad.qed" 5G 2>"$T/err" &&
	fail "a QED image larger than its tables map was accepted"

# backing files: a raw base (recorded as "no probe") and a probed qcow2 base;
# reads fall through, allocating writes copy the rest of the cluster from the
# base, and qemu-img agrees on content, map and check
qemu-img create -q -f raw "$T/base.raw" 8M
qemu-io -f raw -c 'write -P 0x41 0 8M' "$T/base.raw" >/dev/null
qemu-img create -q -f qed -b base.raw -F raw "$T/ov-q.qed"
qemu-io -f qed -c 'write -P 0x42 100k 8k' -c 'write -P 0x43 5M 70k' "$T/ov-q.qed" >/dev/null
"$VMM_IMG" convert -f qed -O raw "$T/ov-q.qed" "$T/ov.vmm.raw"
qemu-img convert -f qed -O raw "$T/ov-q.qed" "$T/ov.ref.raw"
cmp "$T/ov.vmm.raw" "$T/ov.ref.raw" || fail "a qemu-img QED overlay reads differently"
"$VMM_IMG" create -q -f qed -b base.raw -F raw "$T/ov-v.qed"
qemu-img info -f qed "$T/ov-v.qed" | grep -q 'backing file format: raw' || fail "raw backing format not recorded"
"$IMG_IO" qed "$T/ov-v.qed" w:100k:8k:0x42 w:5M:70k:0x43 || fail "writes to an overlay"
qemu-img check -f qed "$T/ov-v.qed" >/dev/null || fail "qemu-img check of vmm-img's overlay"
qemu-img compare "$T/ov-q.qed" "$T/ov-v.qed" >/dev/null || fail "overlays differ"
qemu-img create -q -f qcow2 "$T/bq.qcow2" 8M
qemu-io -c 'write -P 0x44 1M 1M' "$T/bq.qcow2" >/dev/null
"$VMM_IMG" create -q -f qed -b bq.qcow2 -F qcow2 "$T/ov3.qed"
"$IMG_IO" qed "$T/ov3.qed" w:1500k:4k:0x45 r:1M:400k:0x44 r:1500k:4k:0x45 r:1504k:540k:0x44 ||
	fail "a QED overlay over a probed qcow2"
qemu-img check -f qed "$T/ov3.qed" >/dev/null || fail "qemu-img check of the qcow2-backed overlay"
"$VMM_IMG" map -f qed --output=json "$T/ov3.qed" >"$T/map.vmm"
qemu-img map -f qed --output=json "$T/ov3.qed" >"$T/map.qemu"
cmp "$T/map.vmm" "$T/map.qemu" || fail "map of a QED overlay differs from qemu-img's"
# a qcow2 overlay over a QED image and over a vmdk (QEMU allows any format below qcow2)
qemu-img create -q -f qcow2 -b ov-q.qed -F qed "$T/top.qcow2"
qemu-io -c 'write -P 0x46 6M 64k' "$T/top.qcow2" >/dev/null
"$VMM_IMG" convert -f qcow2 -O raw "$T/top.qcow2" "$T/top.vmm.raw" || fail "qcow2 over qed"
qemu-img convert -f qcow2 -O raw "$T/top.qcow2" "$T/top.ref.raw"
cmp "$T/top.vmm.raw" "$T/top.ref.raw" || fail "qcow2 over qed reads differently"
qemu-img convert -f raw -O vmdk "$T/base.raw" "$T/base.vmdk"
qemu-img create -q -f qcow2 -b base.vmdk -F vmdk "$T/top2.qcow2"
"$VMM_IMG" convert -f qcow2 -O raw "$T/top2.qcow2" "$T/top2.raw" || fail "qcow2 over vmdk"
cmp "$T/top2.raw" "$T/base.raw" || fail "qcow2 over vmdk reads differently"

# a chain that loops is refused, not followed forever
"$VMM_IMG" create -q -f qed -b loop2.qed -F qed "$T/loop1.qed" 1M
"$VMM_IMG" create -q -f qed -b loop1.qed -F qed "$T/loop2.qed" 1M
"$VMM_IMG" info -f qed "$T/loop1.qed" >/dev/null 2>"$T/err" && fail "a backing loop was accepted"
grep -q 'deeper than 16' "$T/err" || fail "loop: $(cat "$T/err")"

# an image left with need-check set is repaired by a writable open, as QEMU does
qemu-img create -q -f qed "$T/nc.qed" 4M
qemu-io -f qed -c 'write -P 0x66 0 128k' "$T/nc.qed" >/dev/null
printf '\002' | dd of="$T/nc.qed" bs=1 seek=16 conv=notrunc 2>/dev/null
"$IMG_IO" qed "$T/nc.qed" r:0:128k:0x66 w:1M:4k:0x77 || fail "repairing open lost data"
qemu-img check -f qed "$T/nc.qed" >/dev/null || fail "qemu-img check after repair"
od -An -tx1 -j16 -N1 "$T/nc.qed" | grep -q ' 00' || fail "need-check should be cleared"
echo "PASS"
