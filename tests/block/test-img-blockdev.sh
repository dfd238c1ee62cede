#!/bin/sh
# The file protocol on a block device (a loop device): size from the
# device, O_DIRECT with the device's sector size, convert onto it (-n),
# write-zeroes/discard through the BLK* ioctls (vmm-img bench, convert -n),
# and a resize refused. Skipped without root or loop devices.
. "$top_srcdir/tests/lib/harness.sh"
require_tool qemu-img losetup
T=$TEST_TMP
[ "$(id -u)" = 0 ] || skip "needs root for a loop device"

truncate -s 8M "$T/backing.img"
LOOP=$(losetup -f --show "$T/backing.img" 2>/dev/null) || skip "cannot set up a loop device"
trap 'rc=$?; losetup -d "$LOOP" 2>/dev/null; (exit $rc); cleanup' EXIT INT TERM

"$VMM_IMG" info -f raw --output=json "$LOOP" | grep -q '"virtual-size": 8388608' ||
	fail "block device size"

qemu-img create -q -f raw "$T/src.raw" 8M
qemu-io -f raw -c 'write -P 0x5c 0 1M' -c 'write -P 0x3d 5M 4k' "$T/src.raw" >/dev/null
# dirty the device first so that convert -n must write the zero ranges
"$VMM_IMG" bench -f raw -w -c 128 -s 64k --pattern=0x77 -t none "$LOOP" >/dev/null
"$VMM_IMG" convert -n -f raw -O raw -t none "$T/src.raw" "$LOOP"
qemu-img compare -f raw -F raw "$T/src.raw" "$LOOP" >/dev/null || fail "convert -n onto the device"
"$VMM_IMG" compare -f raw "$T/src.raw" "$LOOP" | grep -q "Images are identical." ||
	fail "compare with the device"

# O_DIRECT reads of the device through io_uring and the thread pool
for aio in io_uring threads; do
	"$VMM_IMG" bench -f raw -c 2000 -d 8 -t none -i $aio "$LOOP" | grep -q "Run completed" ||
		fail "bench -i $aio on the device"
done

"$VMM_IMG" resize -f raw "$LOOP" 16M 2>"$T/err" && fail "resized a block device"
grep -q "cannot resize block device" "$T/err" || fail "unexpected error: $(cat "$T/err")"
echo ok
