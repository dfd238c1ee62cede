#!/bin/sh
# Replay every fuzz target's committed seed corpus (and any crash reproducers
# under tests/fuzz/corpus/<target>/) with the gcc-built replay programs: part
# of the default test command, so a fixed bug stays fixed.
set -eu
src=${top_srcdir:-$(dirname "$0")/../..}
bld=${top_builddir:-.}
# A target that cannot run here exits 77 and says why (virtio-net without a
# network namespace of its own); the others still run.
for t in json-stream virtqueue qcow2-open image-write image-formats ide e1000 uart rtc fwcfg xhci i8042 acpi \
	virtio-blk virtio-mem virtio-net virtio-balloon virtio-rng x86-emul vm-config qmp xbzrle nbd-server; do
	printf '%s: ' "$t"
	rc=0
	"$bld/tests/fuzz/replay-$t" "$src/tests/fuzz/corpus/$t" || rc=$?
	case $rc in
	0) ;;
	77) echo "$t: skipped" ;;
	*) exit "$rc" ;;
	esac
done
