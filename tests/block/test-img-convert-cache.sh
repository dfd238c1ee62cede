#!/bin/sh
# vmm-img convert's cache mode for the target, as qemu-img 7.2's: "unsafe"
# by default (its --help: "'writeback' (default, except for convert) ...
# 'unsafe' (default for convert)"), where flushes never reach the disk. The
# syncs each tool makes are counted with strace: by default vmm-img makes
# none for a raw target and no more than qemu-img for the formats (their
# creation syncs the new header); -t writeback syncs the data at the end.
# The converted images are identical to the source.
. "$top_srcdir/tests/lib/harness.sh"
require_tool qemu-img strace

T=$TEST_TMP
qemu-img create -q -f raw "$T/src.raw" 8M
qemu-img bench -q -f raw -w -c 64 -s 64k -d 4 --pattern=0x5a "$T/src.raw" >/dev/null

# syncs TOOL ARGS...: how many fsync-family calls the command made
# (LeakSanitizer cannot run under ptrace: off for these runs of an ASan build)
syncs() {
	ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" \
		strace -f -qq -e trace=fsync,fdatasync,sync_file_range,syncfs,sync -o "$T/st.log" "$@" \
		>/dev/null 2>"$T/err" || fail "$* failed: $(cat "$T/err")"
	grep -c 'sync' "$T/st.log" || true
}

for fmt in raw qcow2 qed vhdx vpc vmdk; do
	rm -f "$T/a" "$T/b" "$T/c"
	mine=$(syncs "$VMM_IMG" convert -f raw -O "$fmt" "$T/src.raw" "$T/a")
	theirs=$(syncs qemu-img convert -f raw -O "$fmt" "$T/src.raw" "$T/b")
	wb=$(syncs "$VMM_IMG" convert -t writeback -f raw -O "$fmt" "$T/src.raw" "$T/c")
	echo "$fmt: vmm-img $mine syncs (writeback $wb), qemu-img $theirs"
	if [ "$fmt" = raw ]; then
		[ "$mine" -eq 0 ] || fail "raw: vmm-img convert synced $mine times (qemu-img: $theirs)"
	else
		[ "$mine" -le "$theirs" ] || [ "$mine" -le 2 ] ||
			fail "$fmt: vmm-img convert synced $mine times, qemu-img $theirs"
	fi
	[ "$wb" -gt "$mine" ] || fail "$fmt: -t writeback made no sync of its own"
	qemu-img compare -q -f raw -F "$fmt" "$T/src.raw" "$T/a" || fail "$fmt: image differs"
	qemu-img compare -q -f raw -F "$fmt" "$T/src.raw" "$T/c" || fail "$fmt: image differs (wb)"
done
echo "ok"
