#!/bin/sh
# Figure 10 of tests/bench/README: live upgrade of running guests against
# QEMU's local migration into new processes, through tests/bench/upgrade.py
# (the harness contract: BENCH_ROUNDS, top_builddir). Two guests, anonymous
# and shared RAM.
set -eu
: "${top_srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
exec python3 "$top_srcdir/tests/bench/upgrade.py"
