#!/bin/sh
# VMDK (monolithicSparse and streamOptimized) through vmm-img against
# qemu-img: images made by qemu-img (several sizes, data patterns) read back
# identically; vmm-img's images (create, convert, random writes, which
# rewrite compressed grains of a stream) pass qemu-img check and compare.
. "$top_srcdir/tests/lib/harness.sh"
require_tool qemu-img qemu-io python3
FMT=vmdk
HAS_CHECK=1
. "$top_srcdir/tests/block/format-lib.sh"

read_back 3M
read_back 50M
read_back 1G
read_back 10000000
STREAM=1 read_back 3M -o subformat=streamOptimized
STREAM=1 read_back 50M -o subformat=streamOptimized
STREAM=1 read_back 10000000 -o subformat=streamOptimized

write_interop 3M
write_interop 50M
write_interop 3M -o subformat=streamOptimized
write_interop 50M -o subformat=streamOptimized

create_line 10M
create_line 1000
create_line 10M -o subformat=streamOptimized
create_line 2G -o subformat=streamOptimized

# refusals
"$VMM_IMG" create -f vmdk -o subformat=twoGbMaxExtentFlat "$T/bad.vmdk" 1M 2>"$T/err" &&
	fail "twoGbMaxExtentFlat accepted"
grep -q 'not supported' "$T/err" || fail "flat: $(cat "$T/err")"
qemu-img create -q -f vmdk -o subformat=monolithicFlat "$T/flat.vmdk" 1M
"$VMM_IMG" info -f vmdk "$T/flat.vmdk" >/dev/null 2>"$T/err" && fail "a descriptor-only vmdk was accepted"
grep -q 'not a VMDK sparse extent' "$T/err" || fail "flat open: $(cat "$T/err")"
echo "PASS"
