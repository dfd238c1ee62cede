#!/bin/sh
# VHDX through vmm-img against qemu-img: images made by qemu-img (several
# sizes and block sizes, 4 KiB logical sectors, data patterns) read back
# identically; vmm-img's images (create, convert, random writes) pass
# qemu-img check and compare; a log without a valid entry is not replayed.
. "$top_srcdir/tests/lib/harness.sh"
require_tool qemu-img qemu-io python3
FMT=vhdx
HAS_CHECK=1
. "$top_srcdir/tests/block/format-lib.sh"

read_back 3M
read_back 50M -o block_size=1M
read_back 1100M
read_back 10000000 -o block_state_zero=off
read_back 20M -o subformat=fixed
# qemu-img's fixed images with present blocks end with the disk, inside the last block
read_back 20M -o subformat=fixed,block_state_zero=off

write_interop 3M
write_interop 50M -o block_size=1M
write_interop 120M -o block_size=32M,log_size=2M
write_interop 20M -o subformat=fixed
write_interop 50M -o subformat=fixed,block_size=1M

create_line 10M
create_line 1000
create_line 2G
create_line 200G
create_line 64M -o block_size=2M,log_size=4M
create_line 20M -o subformat=fixed

# a fixed image is preallocated (sparse): the blocks follow the metadata (at 4 MiB here;
# qemu-img puts them at 8 MiB) up to the disk's end, all present
"$VMM_IMG" create -q -f vhdx -o subformat=fixed "$T/fx.vhdx" 20M
[ "$(stat -c %s "$T/fx.vhdx")" -eq $((4 * 1048576 + 20 * 1048576)) ] ||
	fail "fixed image of $(stat -c %s "$T/fx.vhdx") bytes"
qemu-img check -q "$T/fx.vhdx" || fail "qemu-img check of a fixed image"
qemu-io -f vhdx -c "write -q -P 0x21 19M 1M" "$T/fx.vhdx" || fail "qemu-io write"
[ "$(stat -c %s "$T/fx.vhdx")" -eq $((24 * 1048576)) ] || fail "a write to a fixed image grew it"
"$VMM_IMG" create -f vhdx -o subformat=foo "$T/bad.vhdx" 1M 2>"$T/err" && fail "subformat=foo"
grep -q "Parameter 'subformat' does not accept value 'foo'" "$T/err" || fail "foo: $(cat "$T/err")"

# refusals
"$VMM_IMG" create -f vhdx -o block_size=3M "$T/bad.vhdx" 1M 2>"$T/err" && fail "block_size=3M accepted"

# a header naming a log GUID and a "loge" sector carrying it, but no more ...
qemu-img create -q -f vhdx "$T/log.vhdx" 8M
python3 - "$T/log.vhdx" <<'PY'
import struct, sys, zlib
p = sys.argv[1]
d = bytearray(open(p, 'rb').read())
def crc32c(b):
    crc = 0xffffffff
    for x in b:
        crc ^= x
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82f63b78 if crc & 1 else 0)
    return crc ^ 0xffffffff
guid = bytes(range(1, 17))
for off in (65536, 131072):
    h = bytearray(d[off:off + 4096])
    h[48:64] = guid
    h[4:8] = b'\0\0\0\0'
    h[4:8] = struct.pack('<I', crc32c(h))
    d[off:off + 4096] = h
log = struct.unpack_from('<Q', d, 65536 + 72)[0]
d[log:log + 4] = b'loge'
d[log + 32:log + 48] = guid
open(p, 'wb').write(d)
PY
# ... is no valid entry (no checksum, no length): nothing to replay, the image
# opens, as in qemu-img (valid logs: test-vhdx-log.sh)
qemu-img info -f vhdx "$T/log.vhdx" >/dev/null 2>"$T/err" || fail "qemu-img: $(cat "$T/err")"
"$VMM_IMG" info -f vhdx "$T/log.vhdx" >/dev/null 2>"$T/err" || fail "log: $(cat "$T/err")"
echo "PASS"
