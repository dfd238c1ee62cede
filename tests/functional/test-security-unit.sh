#!/bin/sh
# dist/vmmd.service keeps its sandboxing (issue 14): systemd-analyze security
# rates its exposure at most 3.5 (it was 4.6 before the syscall deny-list,
# PrivateMounts and ProtectProc), and it still verifies.
set -eu
D="${top_srcdir:-$(dirname "$0")/../..}/dist"
if ! command -v systemd-analyze >/dev/null 2>&1; then
	echo "SKIP: systemd-analyze is not installed"
	exit 77
fi
if ! systemd-analyze security --offline=yes --threshold=35 "$D/vmmd.service" >/dev/null 2>&1; then
	systemd-analyze security --offline=yes "$D/vmmd.service" 2>&1 | tail -3
	echo "FAIL: vmmd.service's exposure is above 3.5"
	exit 1
fi
systemd-analyze security --offline=yes "$D/vmmd.service" 2>&1 | tail -1
grep -qx 'NoNewPrivileges=yes' "$D/vmmd.service"
grep -q '^SystemCallFilter=~@clock' "$D/vmmd.service"
echo "PASS: vmmd.service sandboxing"
