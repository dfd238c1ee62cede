#!/bin/sh
# The long fuzzing campaign of ./run check --slow (VMMD_SLOW_TESTS=1):
# every target for VMMD_FUZZ_SECONDS (default 600) with libFuzzer under
# ASan+UBSan (tests/fuzz/fuzz.sh), in the build tree's build-fuzz-long/.
# A crash fails the test and leaves its reproducer there; commit it under
# tests/fuzz/corpus/<target>/ with the fix so the default suite replays it.
set -eu
if [ "${VMMD_SLOW_TESTS:-}" != 1 ]; then
	echo "SKIP: the long fuzzing campaign runs with VMMD_SLOW_TESTS=1 (./run check --slow)"
	exit 77
fi
src=${top_srcdir:-$(dirname "$0")/../..}
bld=$(cd "${top_builddir:-.}" && pwd)
FUZZ_WORK=$bld/build-fuzz-long exec "$src/tests/fuzz/fuzz.sh" "${VMMD_FUZZ_SECONDS:-600}"
