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

# refusals
"$VMM_IMG" create -f qed -o table_size=3 "$T/bad.qed" 10M 2>"$T/err" && fail "table_size=3 accepted"
grep -q 'table size must be within range' "$T/err" || fail "table_size=3: $(cat "$T/err")"
"$VMM_IMG" create -f qed -o cluster_size=4096,table_size=2 "$T/bad.qed" 5G 2>"$T/err" &&
	fail "a QED image larger than its tables map was accepted"
"$VMM_IMG" create -f qed -b "$T/c.qed" -F qed "$T/bad.qed" 2>"$T/err" && fail "backing file accepted"
grep -q 'backing file are not supported' "$T/err" || fail "backing: $(cat "$T/err")"

# an image left with need-check set is repaired by a writable open, as QEMU does
qemu-img create -q -f qed "$T/nc.qed" 4M
qemu-io -f qed -c 'write -P 0x66 0 128k' "$T/nc.qed" >/dev/null
printf '\002' | dd of="$T/nc.qed" bs=1 seek=16 conv=notrunc 2>/dev/null
"$IMG_IO" qed "$T/nc.qed" r:0:128k:0x66 w:1M:4k:0x77 || fail "repairing open lost data"
qemu-img check -f qed "$T/nc.qed" >/dev/null || fail "qemu-img check after repair"
od -An -tx1 -j16 -N1 "$T/nc.qed" | grep -q ' 00' || fail "need-check should be cleared"
echo "PASS"
