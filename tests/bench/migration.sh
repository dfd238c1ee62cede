#!/bin/sh
# Figure 10 of tests/bench/README: live migration downtime and total time
# against QEMU over the same veth link, through tests/bench/migration.py
# (the harness contract: BENCH_ROUNDS, top_builddir). Unshaped link, the
# parameters of the README's table (max-bandwidth 8 GiB/s, downtime-limit
# 2000 ms, the same for both).
set -eu
: "${top_srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
exec python3 "$top_srcdir/tests/bench/migration.py"
