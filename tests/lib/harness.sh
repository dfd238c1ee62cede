# Shared helpers for shell functional tests. Source it:
#   . "$top_srcdir/tests/lib/harness.sh"
# Exit codes follow Automake: 0 pass, 77 skip, 99 hard error, else fail.

set -eu
: "${top_srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
: "${top_builddir:=$top_srcdir}"
VMMD="$top_builddir/vmmd"
VMCTL="$top_builddir/vmctl"
VMM_IMG="$top_builddir/vmm-img"

TEST_TMP=$(mktemp -d "${TMPDIR:-/tmp}/vmmd-test.XXXXXX")
VMMD_PID=""

cleanup() {
	rc=$?
	if [ -n "$VMMD_PID" ] && kill -0 "$VMMD_PID" 2>/dev/null; then
		kill -TERM "$VMMD_PID" 2>/dev/null || true
		for _ in $(seq 50); do kill -0 "$VMMD_PID" 2>/dev/null || break; sleep 0.1; done
		# only if it is still there: once reaped, its pid may be another process's
		if kill -0 "$VMMD_PID" 2>/dev/null; then kill -KILL "$VMMD_PID" 2>/dev/null || true; fi
	fi
	if [ $rc -ne 0 ] && [ $rc -ne 77 ] && [ -f "$TEST_TMP/vmmd.log" ]; then
		echo "--- vmmd log ---"; tail -n 50 "$TEST_TMP/vmmd.log"
	fi
	rm -rf "$TEST_TMP"
	exit $rc
}
trap cleanup EXIT INT TERM

skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*"; exit 1; }

require_kvm() {
	[ -c /dev/kvm ] && [ -r /dev/kvm ] && [ -w /dev/kvm ] || skip "/dev/kvm is absent or not accessible"
}

require_tool() {
	for t in "$@"; do command -v "$t" >/dev/null 2>&1 || skip "'$t' is not installed"; done
}

# Start a private vmmd on a temporary socket; sets VMMD_SOCKET.
start_vmmd() {
	VMMD_SOCKET="$TEST_TMP/vmmd.sock"
	export VMMD_SOCKET
	"$VMMD" --socket "$VMMD_SOCKET" --state-dir "$TEST_TMP/state" --run-dir "$TEST_TMP/run" \
		"$@" >"$TEST_TMP/vmmd.log" 2>&1 &
	VMMD_PID=$!
	for _ in $(seq 100); do
		[ -S "$VMMD_SOCKET" ] && return 0
		kill -0 "$VMMD_PID" 2>/dev/null || { cat "$TEST_TMP/vmmd.log"; fail "vmmd exited at start"; }
		sleep 0.05
	done
	fail "vmmd did not create $VMMD_SOCKET"
}

# expect_contains HAYSTACK NEEDLE
expect_contains() {
	case "$1" in *"$2"*) ;; *) fail "expected '$2' in: $1" ;; esac
}
