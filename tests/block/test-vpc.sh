#!/bin/sh
# VPC (VHD) through vmm-img against qemu-img: fixed and dynamic images made
# by qemu-img (CHS-rounded and force_size sizes, data patterns) read back
# identically; vmm-img's images (create, convert, random writes) compare
# equal under qemu-img (which has no check for vpc) and get qemu-img's
# virtual size; a fixed image is probed as raw, as QEMU does.
. "$top_srcdir/tests/lib/harness.sh"
require_tool qemu-img qemu-io python3
FMT=vpc
. "$top_srcdir/tests/block/format-lib.sh"

read_back 3M
read_back 50M
read_back 1G
read_back 20M -o force_size=on
read_back 10000000 -o subformat=fixed

write_interop 3M
write_interop 50M
write_interop 20M -o force_size=on
write_interop 30M -o subformat=fixed

create_line 10M
create_line 1000
create_line 127G
create_line 200G
create_line 10M -o subformat=fixed
create_line 50M -o force_size=on

# a fixed image has no header at the start: probed as raw (as QEMU), opened with -f vpc
qemu-img create -q -f vpc -o subformat=fixed "$T/f.vpc" 4M
"$VMM_IMG" info "$T/f.vpc" | grep -q 'file format: raw' || fail "fixed vpc should probe as raw"
"$VMM_IMG" info -f vpc "$T/f.vpc" | grep -q 'file format: vpc' || fail "vmm-img info -f vpc (fixed)"

# refusals
"$VMM_IMG" create -f vpc "$T/big.vpc" 2041G 2>"$T/err" && fail "a 2041G vpc was accepted"
grep -q 'too large' "$T/err" || fail "2041G: $(cat "$T/err")"
"$VMM_IMG" create -f vpc -o subformat=sparse "$T/bad.vpc" 1M 2>"$T/err" && fail "subformat=sparse accepted"
echo "PASS"
