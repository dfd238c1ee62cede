#!/bin/sh
# Figure 9 of tests/bench/README: save/restore against QEMU, through
# tests/bench/vmstate.py (the harness contract: BENCH_ROUNDS, BENCH_QUICK,
# BENCH_TMP, top_builddir). Guests of 64 MiB and 512 MiB (64 MiB with
# BENCH_QUICK=1); BENCH_VMSTATE_SIZES overrides (the issue's 4G needs
# minutes per round and 4 GiB of BENCH_TMP per VMM).
set -eu
: "${top_srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
if [ "${BENCH_QUICK:-0}" = 1 ]; then
	sizes=${BENCH_VMSTATE_SIZES:-64M}
else
	sizes=${BENCH_VMSTATE_SIZES:-64M,512M}
fi
exec python3 "$top_srcdir/tests/bench/vmstate.py" --sizes "$sizes"
