#!/bin/bash
# Build the fuzz targets with clang (libFuzzer + ASan + UBSan) and run each
# for SECONDS (default 30) over a copy of its seed corpus; a crash stops with
# the reproducer in the work directory. Usage: tests/fuzz/fuzz.sh [SECONDS] [TARGET...]
# .ci/run runs it briefly; ./run check --slow (VMMD_SLOW_TESTS=1) for 10 minutes.
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-30}
[ $# -gt 0 ] && shift
targets=${*:-json-stream virtqueue qcow2-open}
work=${FUZZ_WORK:-build-fuzz}
mkdir -p "$work"
command -v clang >/dev/null || { echo "fuzz: clang is not installed" >&2; exit 1; }
pc() { pkg-config --cflags --libs "$@"; }
CC="clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined"
INC="-I. -Iinclude -Ibuild -I$work"
# config.h and the schema text come from a configured build tree.
[ -f build/config.h ] || { echo "fuzz: configure and build first (./run check)" >&2; exit 1; }
[ -f build/monitor/schema-data.c ] || make -C build monitor/schema-data.c
for t in $targets; do
	case $t in
	json-stream)
		srcs="monitor/json-stream.c monitor/schema.c build/monitor/schema-data.c $(ls common/*.c)"
		libs="$(pc jansson libsystemd)" ;;
	virtqueue)
		srcs="hw/virtio/virtqueue.c $(ls common/*.c)"
		libs="$(pc libsystemd)" ;;
	qcow2-open)
		srcs="$(ls block/*.c) $(ls common/*.c)"
		libs="$(pc jansson libevent liburing libnbd zlib libzstd libsystemd) -lpthread" ;;
	*) echo "fuzz: unknown target $t" >&2; exit 2 ;;
	esac
	echo "==> fuzz $t for ${secs}s"
	# shellcheck disable=SC2086
	$CC $INC -o "$work/fuzz-$t" "tests/fuzz/fuzz-$t.c" $srcs $libs
	rm -rf "$work/corpus-$t"
	cp -r "tests/fuzz/corpus/$t" "$work/corpus-$t"
	(cd "$work" && ASAN_OPTIONS=detect_leaks=1 "./fuzz-$t" -max_total_time="$secs" \
		-rss_limit_mb=1024 -timeout=10 -print_final_stats=1 "corpus-$t" 2>&1 |
		tail -12)
done
