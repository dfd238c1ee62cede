#!/bin/sh
# Every installed program answers --version and --help, and rejects an unknown option.
. "$top_srcdir/tests/lib/harness.sh"

for prog in vmmd vmctl vmm-img; do
	bin="$top_builddir/$prog"
	[ -x "$bin" ] || fail "$bin not built"
	out=$("$bin" --version)
	expect_contains "$out" "$prog "
	out=$("$bin" --help)
	expect_contains "$out" "Usage: $prog"
	if "$bin" --no-such-option >/dev/null 2>&1; then
		fail "$prog accepted an unknown option"
	fi
done
echo "ok"
