#!/bin/sh
# dist/: the systemd units pass systemd-analyze verify and keep KVM usable
# (Type=notify, DeviceAllow for /dev/kvm and /dev/net/tun); the bash
# completion of vmctl parses and completes commands and VM names.
. "$top_srcdir/tests/lib/harness.sh"

D="$top_srcdir/dist"
grep -qx 'Type=notify' "$D/vmmd.service" || fail "vmmd.service is not Type=notify"
grep -qx 'DeviceAllow=/dev/kvm rw' "$D/vmmd.service" || fail "vmmd.service does not allow /dev/kvm"
grep -qx 'DeviceAllow=/dev/net/tun rw' "$D/vmmd.service" || fail "no /dev/net/tun"
grep -qx 'DeviceAllow=/dev/userfaultfd rw' "$D/vmmd.service" || fail "no /dev/userfaultfd (lazy restore of shared RAM)"
grep -qx 'ListenStream=/run/vmmd/vmmd.sock' "$D/vmmd.socket" || fail "vmmd.socket path"

if command -v systemd-analyze >/dev/null 2>&1; then
	mkdir "$TEST_TMP/units"
	vmmd_abs=$(cd "$(dirname "$VMMD")" && pwd)/vmmd
	sed "s|^ExecStart=.*|ExecStart=$vmmd_abs|" "$D/vmmd.service" >"$TEST_TMP/units/vmmd.service"
	cp "$D/vmmd.socket" "$TEST_TMP/units/vmmd.socket"
	vmctl_abs=$(cd "$(dirname "$VMCTL")" && pwd)/vmctl
	sed "s|/usr/bin/vmctl|$vmctl_abs|" "$D/vmmd-vm@.service" >"$TEST_TMP/units/vmmd-vm@.service"
	# Only the man: links may be missing (the pages are not installed here).
	out=$(cd "$TEST_TMP/units" &&
		systemd-analyze verify vmmd.service vmmd.socket vmmd-vm@web1.service 2>&1 |
		grep -v "Command 'man " || true)
	[ -z "$out" ] || fail "systemd-analyze verify: $out"
fi

# vmmd-vm@NAME: one VM through the daemon, after it, the network and storage
U="$D/vmmd-vm@.service"
grep -qx 'ExecStart=/usr/bin/vmctl start --wait %i' "$U" || fail "vmmd-vm@ ExecStart"
grep -qx 'ExecStop=/usr/bin/vmctl stop --timeout 60 %i' "$U" || fail "vmmd-vm@ ExecStop"
grep -qx 'Requires=vmmd.service' "$U" || fail "vmmd-vm@ does not require vmmd"
grep -q '^After=.*vmmd.service.*network-online.target.*remote-fs.target' "$U" ||
	fail "vmmd-vm@ is not ordered after vmmd, the network and storage"

for f in vmctl vmm-img vmmd; do
	bash -n "$D/bash-completion/$f" || fail "bash completion of $f does not parse"
done
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
: >"$TEST_TMP/k"
"$VMCTL" create --name alpha --memory 32M --kernel "$TEST_TMP/k" >/dev/null
"$VMCTL" create --name beta --memory 32M --kernel "$TEST_TMP/k" >/dev/null
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
got=$(complete_words vmctl disk b)
[ "$got" = "backup bitmap" ] || fail "completing disk verbs: '$got'"
got=$(complete_words vmctl disk bitmap "")
[ "$got" = "add remove clear enable disable list" ] || fail "completing disk bitmap: '$got'"
got=$(complete_words vmctl disk bitmap add "")
[ "$got" = "alpha beta" ] || fail "completing disk bitmap's VM: '$got'"
got=$(complete_words vmctl disk backup al)
[ "$got" = "alpha" ] || fail "completing disk backup's VM: '$got'"
complete_cmd() {
	prog=$1
	shift
	bash -c '
		. '"$BC"'
		. '"$D"'/bash-completion/'"$prog"'
		COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}
		_'"$(echo "$prog" | tr - _)"' '"$prog"' "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
		echo "${COMPREPLY[*]}"' _ "$@"
}
got=$(complete_cmd vmm-img vmm-img me)
[ "$got" = "measure" ] || fail "completing vmm-img verbs: '$got'"
got=$(complete_cmd vmm-img vmm-img convert -O "")
[ "$got" = "raw qcow2" ] || fail "completing vmm-img formats: '$got'"
got=$(complete_cmd vmm-img vmm-img info --out)
[ "$got" = "--output" ] || fail "completing vmm-img options: '$got'"
got=$(complete_cmd vmmd vmmd --log-level n)
[ "$got" = "notice" ] || fail "completing vmmd --log-level: '$got'"
got=$(complete_cmd vmmd vmmd --run)
[ "$got" = "--run-dir --run-vm" ] || fail "completing vmmd options: '$got'"
echo "PASS"
