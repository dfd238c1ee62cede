#!/bin/sh
# dist/: the systemd units pass systemd-analyze verify and keep KVM usable
# (Type=notify, DeviceAllow for /dev/kvm and /dev/net/tun); the bash
# completion of vmctl parses and completes commands and VM names.
. "$top_srcdir/tests/lib/harness.sh"

D="$top_srcdir/dist"
grep -qx 'Type=notify' "$D/vmmd.service" || fail "vmmd.service is not Type=notify"
grep -qx 'DeviceAllow=/dev/kvm rw' "$D/vmmd.service" || fail "vmmd.service does not allow /dev/kvm"
grep -qx 'DeviceAllow=/dev/net/tun rw' "$D/vmmd.service" || fail "no /dev/net/tun"
grep -qx 'ListenStream=/run/vmmd/vmmd.sock' "$D/vmmd.socket" || fail "vmmd.socket path"

if command -v systemd-analyze >/dev/null 2>&1; then
	mkdir "$TEST_TMP/units"
	vmmd_abs=$(cd "$(dirname "$VMMD")" && pwd)/vmmd
	sed "s|^ExecStart=.*|ExecStart=$vmmd_abs|" "$D/vmmd.service" >"$TEST_TMP/units/vmmd.service"
	cp "$D/vmmd.socket" "$TEST_TMP/units/vmmd.socket"
	# Only the man: links may be missing (the pages are not installed here).
	out=$(cd "$TEST_TMP/units" && systemd-analyze verify vmmd.service vmmd.socket 2>&1 |
		grep -v "Command 'man " || true)
	[ -z "$out" ] || fail "systemd-analyze verify: $out"
fi

bash -n "$D/bash-completion/vmctl" || fail "bash completion does not parse"
# The bash-completion package's helpers, or a minimal stand-in for them.
BC=/usr/share/bash-completion/bash_completion
if [ ! -f "$BC" ]; then
	BC="$TEST_TMP/bc-helpers"
	cat >"$BC" <<'HELPERS'
_init_completion() {
	words=("${COMP_WORDS[@]}"); cword=$COMP_CWORD
	cur=${COMP_WORDS[COMP_CWORD]}; prev=${COMP_WORDS[COMP_CWORD-1]}
}
_filedir() { COMPREPLY=($(compgen -f -- "$cur")); }
HELPERS
fi
start_vmmd
"$VMCTL" create --name alpha --memory 32M --kernel /nonexistent/k >/dev/null
"$VMCTL" create --name beta --memory 32M --kernel /nonexistent/k >/dev/null
complete_words() {
	PATH="$top_builddir:$PATH" bash -c '
		. '"$BC"'
		. '"$D"'/bash-completion/vmctl
		COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}
		_vmctl vmctl "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
		echo "${COMPREPLY[*]}"' _ "$@"
}
got=$(complete_words vmctl st)
[ "$got" = "start stop status" ] || fail "completing 'st': '$got'"
got=$(complete_words vmctl start "")
[ "$got" = "alpha beta" ] || fail "completing VM names: '$got'"
got=$(complete_words vmctl stop --f)
[ "$got" = "--force" ] || fail "completing stop options: '$got'"
echo "PASS"
