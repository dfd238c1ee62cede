#!/bin/sh
# Figure 9 of tests/bench/README: save/restore against QEMU, through
# tests/bench/vmstate.py (the harness contract: BENCH_ROUNDS, BENCH_QUICK,
# BENCH_TMP, top_builddir). A 64 MiB guest; the issue's 512M and 4G sizes
# need minutes and GiBs: run vmstate.py --sizes by hand for them.
set -eu
: "${top_srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
exec python3 "$top_srcdir/tests/bench/vmstate.py" --sizes 64M
