#!/bin/sh
# Every manual page formats without a warning from man --warnings (groff's
# warnings: unbreakable lines, bad escapes, unknown macros), and names the
# sections a page of its kind must have.
. "$top_srcdir/tests/lib/harness.sh"
require_tool man

n=0
for page in "$top_srcdir"/man/*.[1-8]; do
	n=$((n + 1))
	err=$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -E UTF-8 -l -Tutf8 "$page" 2>&1 >/dev/null) ||
		fail "man cannot format $page: $err"
	[ -z "$err" ] || fail "$(basename "$page"): $err"
	for s in NAME DESCRIPTION; do
		grep -q "^\.SH $s" "$page" || fail "$(basename "$page") has no $s section"
	done
done
[ "$n" -ge 6 ] || fail "only $n manual pages found"
echo "PASS ($n pages)"
