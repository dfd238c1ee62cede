# Shared checks of the format interop scripts (test-qed.sh, test-vpc.sh,
# test-vhdx.sh, test-vmdk.sh): vmm-img against qemu-img on the same files.
# Source after harness.sh; set FMT first. IMG_IO is the test driver.
IMG_IO="$top_builddir/tests/block/img-io"
T=$TEST_TMP

# qemu_pattern FILE FMT SIZE: data patterns at the start, across cluster and
# table boundaries, in the middle, at the end, and a zero write. With
# STREAM set, only writes to distinct 64 KiB grains (qemu cannot rewrite a
# grain of a streamOptimized vmdk).
qemu_pattern() {
	sz=$3
	if [ -n "${STREAM:-}" ]; then
		qemu-io -f "$2" -c 'write -P 0x11 0 64k' -c "write -P 0x33 $((sz / 2 / 65536 * 65536)) 192k" \
			-c "write -P 0x44 $(((sz - 1) / 65536 * 65536)) $((sz - (sz - 1) / 65536 * 65536))" \
			"$1" >/dev/null || fail "qemu-io could not write $1"
		return 0
	fi
	qemu-io -f "$2" -c 'write -P 0x11 0 64k' -c 'write -P 0x22 60k 8k' \
		-c "write -P 0x33 $((sz / 2 - 3072)) 100k" -c "write -z $((sz / 2 + 1048576)) 64k" \
		-c "write -P 0x44 $((sz - 4096)) 4k" -c "write -P 0x55 $((sz / 3 / 512 * 512)) 512" \
		"$1" >/dev/null || fail "qemu-io could not write $1"
}

# read_back SIZE [qemu-img create options]: an image made by qemu-img reads
# back identically through vmm-img (and is probed as $FMT).
read_back() {
	sz=$1
	shift
	f="$T/q.$FMT"
	rm -f "$f" "$T/q.vmm.raw" "$T/q.ref.raw"
	qemu-img create -q -f "$FMT" "$@" "$f" "$sz" || fail "qemu-img create $FMT $* $sz"
	vsz=$(qemu-img info -f "$FMT" --output=json "$f" | python3 -c 'import json,sys; print(json.load(sys.stdin)["virtual-size"])')
	qemu_pattern "$f" "$FMT" "$vsz"
	probed=$FMT
	case "$FMT $*" in "vpc "*subformat=fixed*) probed=raw ;; esac # no header at the start
	"$VMM_IMG" info "$f" | grep -q "file format: $probed" || fail "vmm-img info does not probe $FMT ($*)"
	"$VMM_IMG" convert -f "$FMT" -O raw "$f" "$T/q.vmm.raw" || fail "vmm-img convert $FMT $* $sz"
	qemu-img convert -f "$FMT" -O raw "$f" "$T/q.ref.raw"
	cmp "$T/q.vmm.raw" "$T/q.ref.raw" || fail "$FMT $* $sz: vmm-img reads differently from qemu-img"
}

# write_interop SIZE [vmm-img create options]: vmm-img writes an image (convert,
# then random writes) that qemu-img checks clean and compares equal.
write_interop() {
	sz=$1
	shift
	src="$T/src.raw"
	rm -f "$src" "$T/w.$FMT" "$T/mirror.raw"
	qemu-img create -q -f raw "$src" "$sz"
	qemu_pattern "$src" raw "$(stat -c %s "$src")"
	"$VMM_IMG" convert -f raw -O "$FMT" "$@" "$src" "$T/w.$FMT" || fail "vmm-img convert to $FMT $*"
	if [ -n "${HAS_CHECK:-}" ]; then
		qemu-img check -f "$FMT" "$T/w.$FMT" >"$T/check.out" 2>&1 ||
			{ cat "$T/check.out"; fail "qemu-img check of $FMT written by vmm-img ($* $sz)"; }
	fi
	qemu-img compare -f raw -F "$FMT" "$src" "$T/w.$FMT" >/dev/null ||
		fail "qemu-img compare: $FMT written by vmm-img convert differs ($* $sz)"
	[ -n "${NO_RANDOM:-}" ] && return 0
	vsz=$(qemu-img info -f "$FMT" --output=json "$T/w.$FMT" | python3 -c 'import json,sys; print(json.load(sys.stdin)["virtual-size"])')
	cp "$src" "$T/mirror.raw"
	truncate -s "$vsz" "$T/mirror.raw"
	"$IMG_IO" random "$FMT" "$T/w.$FMT" "$T/mirror.raw" "${SEED:-7}" 60 ||
		fail "random writes to $FMT failed"
	if [ -n "${HAS_CHECK:-}" ]; then
		qemu-img check -f "$FMT" "$T/w.$FMT" >"$T/check.out" 2>&1 ||
			{ cat "$T/check.out"; fail "qemu-img check after random writes ($* $sz)"; }
	fi
	qemu-img compare -f raw -F "$FMT" "$T/mirror.raw" "$T/w.$FMT" >/dev/null ||
		fail "qemu-img compare after random writes to $FMT differs ($* $sz)"
	# four threads writing and reading back their own stripes at once (the
	# drivers' locking), then qemu-img's check again
	"$IMG_IO" stress "$FMT" "$T/w.$FMT" 4 150 || fail "concurrent writes to $FMT ($* $sz)"
	if [ -n "${HAS_CHECK:-}" ]; then
		qemu-img check -f "$FMT" "$T/w.$FMT" >"$T/check.out" 2>&1 ||
			{ cat "$T/check.out"; fail "qemu-img check after concurrent writes ($* $sz)"; }
	fi
}

# create_line SIZE [OPTIONS...]: vmm-img create prints qemu-img's line and qemu-img reads the image.
create_line() {
	sz=$1
	shift
	a=$("$VMM_IMG" create -f "$FMT" "$@" "$T/c.$FMT" "$sz" 2>&1) || fail "vmm-img create $*: $a"
	b=$(qemu-img create -f "$FMT" "$@" "$T/c.$FMT" "$sz" 2>&1)
	[ "$a" = "$b" ] || fail "create printed '$a', qemu-img '$b'"
	"$VMM_IMG" create -q -f "$FMT" "$@" "$T/c.$FMT" "$sz"
	qemu-img info --output=json -f "$FMT" "$T/c.$FMT" >"$T/c.vmm.json" || fail "qemu-img cannot read vmm-img's $FMT ($*)"
	qemu-img create -q -f "$FMT" "$@" "$T/c.$FMT" "$sz"
	qemu-img info --output=json -f "$FMT" "$T/c.$FMT" >"$T/c.qemu.json"
	python3 - "$T/c.vmm.json" "$T/c.qemu.json" <<'PY' || fail "vmm-img create $*: another virtual size than qemu-img"
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:])
assert a["virtual-size"] == b["virtual-size"], (a["virtual-size"], b["virtual-size"])
PY
	if [ -n "${HAS_CHECK:-}" ]; then
		"$VMM_IMG" create -q -f "$FMT" "$@" "$T/c.$FMT" "$sz"
		qemu-img check -f "$FMT" "$T/c.$FMT" >/dev/null 2>&1 || fail "qemu-img check of a new $FMT ($*)"
	fi
}
