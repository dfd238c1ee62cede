#!/bin/bash
# Build the fuzz targets with clang (libFuzzer + ASan + UBSan) and run each
# for SECONDS (default 30) over a copy of its seed corpus; a crash stops with
# the reproducer in the work directory. Usage: tests/fuzz/fuzz.sh [SECONDS] [TARGET...]
# .ci/run runs it briefly; ./run check --slow (VMMD_SLOW_TESTS=1) for 10 minutes.
# The code under test is compiled once per source change into static
# archives in the work directory (build-fuzz/), so a target links only the
# objects it reaches, as the gcc replay programs of the test suite do.
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-30}
[ $# -gt 0 ] && shift
all="json-stream virtqueue qcow2-open image-write image-formats ide e1000 uart rtc fwcfg xhci i8042 acpi virtio-blk
	virtio-mem virtio-net virtio-balloon virtio-rng x86-emul vm-config qmp xbzrle nbd-server"
targets=${*:-$all}
work=${FUZZ_WORK:-build-fuzz}
mkdir -p "$work/obj"
command -v clang >/dev/null || { echo "fuzz: clang is not installed" >&2; exit 1; }
pc() { pkg-config "$@"; }
SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined"
CFL="-g -O1 -fno-omit-frame-pointer $SAN -I. -Iinclude -Ibuild \
	$(pc --cflags jansson libevent libevent_pthreads liburing libnbd zlib libzstd libsystemd slirp gnutls libseccomp)"
LIBS="$(pc --libs jansson libevent libevent_pthreads liburing libnbd zlib libzstd libsystemd slirp gnutls \
	libseccomp) -laio -lpthread"
# config.h and the schema text come from a configured build tree.
[ -f build/config.h ] || { echo "fuzz: configure and build first (./run check)" >&2; exit 1; }
[ -f build/monitor/schema-data.c ] || make -C build monitor/schema-data.c

# lib NAME SOURCE...: compile (with -fsanitize=fuzzer-no-link) what changed
# since the last run (any header newer than an object rebuilds it too) and
# archive it as $work/libNAME.a.
stamp=$work/obj/.stamp
if [ ! -f "$stamp" ] || [ -n "$(find include common hw block net monitor daemon tests/unit build/config.h \
	-name '*.h' -newer "$stamp" | head -1)" ]; then
	rm -f "$work"/obj/*.o
fi
touch "$stamp"
lib() {
	local name=$1 s o objs=() todo=()
	shift
	for s in "$@"; do
		o="$work/obj/${s//\//_}.o"
		objs+=("$o")
		[ -f "$o" ] && [ "$o" -nt "$s" ] || todo+=("$s")
	done
	if [ ${#todo[@]} -gt 0 ]; then
		echo "  CC (clang) ${#todo[@]} files of lib$name"
		# shellcheck disable=SC2086
		printf '%s\n' "${todo[@]}" | xargs -P2 -I{} sh -c \
			'clang '"$CFL"' -fsanitize=fuzzer-no-link -c "$1" -o "$2/obj/$(echo "$1" | tr / _).o"' \
			_ {} "$work"
	fi
	rm -f "$work/lib$name.a"
	ar rcs "$work/lib$name.a" "${objs[@]}"
}

echo "==> fuzz: building the code under test with clang"
lib common common/*.c
lib monitor monitor/*.c build/monitor/schema-data.c
lib block block/*.c
lib net net/*.c
lib hwcore hw/core/memory.c hw/core/iobus.c hw/core/uffd.c hw/core/x86-emul.c
lib virtio hw/virtio/virtqueue.c
lib virtiodev hw/virtio/*.c
lib pci hw/pci/*.c
lib isa hw/isa/*.c
lib platform hw/platform/*.c
lib usb hw/usb/usb.c hw/usb/scsi.c hw/usb/usb-storage.c hw/usb/usb-hid.c hw/usb/xhci-ring.c \
	hw/usb/xhci.c
lib fake tests/unit/fake-machine.c
# the daemon without its main (daemon/local.mk's libdaemon) and the VM double
daemon=()
for s in daemon/*.c; do
	case $s in daemon/main.c | daemon/run-vm.c) ;; *) daemon+=("$s") ;; esac
done
lib daemon "${daemon[@]}"
lib vmdouble tests/unit/monitor-vm-double.c
# all of hw/, as the daemon links it (VM definitions name every device class)
lib hw hw/*.c hw/*/*.c
W=$work
supp=$PWD/tests/fuzz/lsan.supp # libslirp's own leaks (see there)
for t in $targets; do
	case $t in
	json-stream) libs="$W/libmonitor.a $W/libcommon.a" ;;
	virtqueue) libs="$W/libvirtio.a $W/libcommon.a" ;;
	qcow2-open | image-write | image-formats) libs="$W/libblock.a $W/libcommon.a" ;;
	ide) libs="$W/libfake.a $W/libpci.a $W/libhwcore.a $W/libblock.a $W/libcommon.a" ;;
	e1000) libs="$W/libfake.a $W/libpci.a $W/libhwcore.a $W/libnet.a $W/libcommon.a" ;;
	uart | rtc | i8042) libs="$W/libfake.a $W/libisa.a $W/libhwcore.a $W/libcommon.a" ;;
	fwcfg) libs="$W/libfake.a $W/libplatform.a $W/libhwcore.a $W/libcommon.a" ;;
	virtio-blk | virtio-mem | virtio-balloon | virtio-rng)
		libs="$W/libfake.a $W/libvirtiodev.a $W/libpci.a $W/libhwcore.a $W/libblock.a $W/libcommon.a" ;;
	virtio-net) libs="$W/libfake.a $W/libvirtiodev.a $W/libpci.a $W/libhwcore.a $W/libnet.a $W/libcommon.a" ;;
	acpi) libs="$W/libfake.a $W/libplatform.a $W/libisa.a $W/libhwcore.a $W/libcommon.a" ;;
	x86-emul) libs="$W/libhwcore.a $W/libcommon.a" ;;
	vm-config) libs="$W/libhw.a $W/libnet.a $W/libblock.a $W/libcommon.a" ;;
	qmp) libs="$W/libvmdouble.a $W/libdaemon.a $W/libmonitor.a $W/libnet.a $W/libblock.a $W/libcommon.a" ;;
	xbzrle) libs="$W/libdaemon.a $W/libcommon.a" ;;
	nbd-server) libs="$W/libdaemon.a $W/libblock.a $W/libcommon.a" ;;
	xhci) libs="$W/libfake.a $W/libusb.a $W/libhwcore.a $W/libblock.a $W/libcommon.a" ;;
	*) echo "fuzz: unknown target $t (known: $all)" >&2; exit 2 ;;
	esac
	echo "==> fuzz $t for ${secs}s"
	# The target's own file is listed first; the archives resolve the rest
	# (the fake machine before the devices it serves, common last).
	# shellcheck disable=SC2086
	clang $CFL -fsanitize=fuzzer -o "$work/fuzz-$t" "tests/fuzz/fuzz-$t.c" \
		-Wl,--start-group $libs -Wl,--end-group $LIBS
	rm -rf "$work/corpus-$t"
	cp -r "tests/fuzz/corpus/$t" "$work/corpus-$t"
	dict=() # a target's dictionary of words, where it has one (make-seeds.py)
	[ -f "tests/fuzz/$t.dict" ] && dict=(-dict="$PWD/tests/fuzz/$t.dict")
	(cd "$work" && ASAN_OPTIONS=detect_leaks=1 LSAN_OPTIONS=suppressions="$supp" \
		"./fuzz-$t" -max_total_time="$secs" "${dict[@]}" \
		-rss_limit_mb=2048 -timeout=20 -print_final_stats=1 "corpus-$t" 2>&1 |
		tail -12) || {
		echo "fuzz: $t failed; the reproducer is in $work/ (crash-*, leak-*, timeout-*)" >&2
		exit 1
	}
done
