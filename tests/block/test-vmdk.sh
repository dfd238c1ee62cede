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

# a stream with its grain directory behind a footer at the end (as VMware
# writes them; crafted from qemu-img's stream): read identically, read-only
qemu-img create -q -f raw "$T/s.raw" 3M
qemu-io -f raw -c 'write -P 0x61 0 64k' -c 'write -P 0x62 1M 128k' "$T/s.raw" >/dev/null
qemu-img convert -f raw -O vmdk -o subformat=streamOptimized "$T/s.raw" "$T/foot.vmdk"
python3 - "$T/foot.vmdk" <<'PY'
import struct, sys
p = sys.argv[1]
d = bytearray(open(p, 'rb').read())
hdr = bytes(d[:512])
d[56:64] = struct.pack('<Q', 0xffffffffffffffff)   # GD at the end
d += b'\0' * (-len(d) % 512)
d += struct.pack('<QII', 1, 0, 3) + b'\0' * 496      # footer marker
d += hdr                                            # footer: the header with the GD
d += b'\0' * 512                                    # end of stream
open(p, 'wb').write(d)
PY
qemu-img convert -f vmdk -O raw "$T/foot.vmdk" "$T/foot.ref" || fail "qemu-img cannot read the crafted stream"
"$VMM_IMG" convert -f vmdk -O raw "$T/foot.vmdk" "$T/foot.raw" || fail "vmm-img cannot read a footer stream"
cmp "$T/foot.raw" "$T/foot.ref" || fail "a footer stream reads differently"
"$IMG_IO" vmdk "$T/foot.vmdk" w:0:4k:1 2>"$T/err" && fail "a footer stream was opened read-write"
grep -q 'read-only' "$T/err" || fail "footer stream rw: $(cat "$T/err")"

# grain directory entries without a table (VMware's streams leave out empty
# tables): map, convert and check agree with qemu-img, where vmm-img skips
# each such entry's grains at once
qemu-img create -q -f vmdk "$T/gd.vmdk" 3G
qemu-io -f vmdk -c 'write -P 0x61 0 64k' -c 'write -P 0x62 2G 128k' "$T/gd.vmdk" >/dev/null
python3 - "$T/gd.vmdk" <<'PY'
import struct, sys
p = sys.argv[1]
d = bytearray(open(p, 'rb').read())
cap, grain = struct.unpack_from('<QQ', d, 12)
gtes = struct.unpack_from('<I', d, 44)[0]
rgd, gd = struct.unpack_from('<QQ', d, 48)
for i in range(-(-cap // grain // gtes)):
    if i not in (0, 64):  # the tables of the two writes stay
        struct.pack_into('<I', d, gd * 512 + 4 * i, 0)
        struct.pack_into('<I', d, rgd * 512 + 4 * i, 0)
open(p, 'wb').write(d)
PY
"$VMM_IMG" map --output=json "$T/gd.vmdk" >"$T/gd.map" || fail "vmm-img map of a sparse directory"
qemu-img map --output=json "$T/gd.vmdk" >"$T/gd.ref" || fail "qemu-img map of a sparse directory"
cmp "$T/gd.map" "$T/gd.ref" || fail "a sparse directory maps differently: $(cat "$T/gd.map")"
"$VMM_IMG" convert -f vmdk -O raw "$T/gd.vmdk" "$T/gd.raw" || fail "vmm-img convert of a sparse directory"
qemu-img convert -f vmdk -O raw "$T/gd.vmdk" "$T/gd.rref"
cmp "$T/gd.raw" "$T/gd.rref" || fail "a sparse directory reads differently"
"$VMM_IMG" check "$T/gd.vmdk" >"$T/gd.chk" || fail "vmm-img check of a sparse directory: $(cat "$T/gd.chk")"
grep -q '^3/49152 = ' "$T/gd.chk" || fail "check of a sparse directory: $(cat "$T/gd.chk")"

# refusals
"$VMM_IMG" create -f vmdk -o subformat=twoGbMaxExtentFlat "$T/bad.vmdk" 1M 2>"$T/err" &&
	fail "twoGbMaxExtentFlat accepted"
grep -q 'not supported' "$T/err" || fail "flat: $(cat "$T/err")"
qemu-img create -q -f vmdk -o subformat=monolithicFlat "$T/flat.vmdk" 1M
"$VMM_IMG" info -f vmdk "$T/flat.vmdk" >/dev/null 2>"$T/err" && fail "a descriptor-only vmdk was accepted"
grep -q 'not a VMDK sparse extent' "$T/err" || fail "flat open: $(cat "$T/err")"
echo "PASS"
