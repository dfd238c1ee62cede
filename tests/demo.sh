#!/bin/sh
# The README's demo (./run demo): start a private vmmd, define and boot a VM
# from a bundled test guest with vmctl, show its console output and
# `vmctl list`, stop it, and clean up.
set -eu
B=${1:?builddir}
B=$(cd "$B" && pwd)
VMMD="$B/vmmd"
VMCTL="$B/vmctl"

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

T=$(mktemp -d "${TMPDIR:-/tmp}/vmmd-demo.XXXXXX")
VMMD_PID=""
EVENTS_PID=""
cleanup() {
	[ -n "$EVENTS_PID" ] && kill "$EVENTS_PID" 2>/dev/null || true
	if [ -n "$VMMD_PID" ] && kill -0 "$VMMD_PID" 2>/dev/null; then
		kill -TERM "$VMMD_PID"
		wait "$VMMD_PID" || true
	fi
	rm -rf "$T"
}
trap cleanup EXIT INT TERM

export VMMD_SOCKET="$T/vmmd.sock"
say "vmmd $("$VMMD" --version | cut -d' ' -f2): starting a private daemon on $VMMD_SOCKET"
echo "\$ vmmd --socket $VMMD_SOCKET --state-dir $T/state --run-dir $T/run &"
"$VMMD" --socket "$VMMD_SOCKET" --state-dir "$T/state" --run-dir "$T/run" \
	--log-level notice 2>"$T/vmmd.log" &
VMMD_PID=$!
i=0
while [ ! -S "$VMMD_SOCKET" ]; do
	i=$((i + 1))
	if [ $i -gt 100 ] || ! kill -0 "$VMMD_PID" 2>/dev/null; then
		cat "$T/vmmd.log"
		echo "demo: vmmd did not start" >&2
		exit 1
	fi
	sleep 0.05
done

HELLO="$B/tests/guests/hello.elf"
ACPI="$B/tests/functional/guest-acpi.elf"
if [ ! -r /dev/kvm ] || [ ! -w /dev/kvm ] || [ ! -f "$HELLO" ] || [ ! -f "$ACPI" ]; then
	say "no /dev/kvm or no test guests: showing the control plane only"
	"$VMCTL" create --name demo --memory 32M --vcpus 1 --kernel "$0"
	"$VMCTL" list
	"$VMCTL" delete demo
	exit 0
fi
CPU="host,-cx16,-xsave" # this host's KVM lacks cmpxchg16b and xsave (README, DESIGN.md)

# Follow the events of every VM while the demo runs.
"$VMCTL" events >"$T/events" 2>&1 &
EVENTS_PID=$!
sleep 0.3

say "define and boot a VM from the bundled test guest hello.elf"
echo "\$ vmctl create --name hello --memory 32M --cpu $CPU --kernel $HELLO --start"
"$VMCTL" create --name hello --memory 32M --vcpus 1 --cpu "$CPU" --kernel "$HELLO" --start

console_of() {
	LOG=$("$VMCTL" --json status "$1" | sed -n 's/.*"console-log": "\(.*\)".*/\1/p')
	i=0
	while ! grep -q "$2" "$LOG" 2>/dev/null && [ $i -lt 300 ]; do
		i=$((i + 1))
		sleep 0.1
	done
	echo "--- $LOG ---"
	cat "$LOG" 2>/dev/null || true
}
say "its console output: the guest greets, reports its CPUID, and powers itself off"
console_of hello "signature"
sleep 0.5

say "a second VM whose guest waits for the ACPI power button"
"$VMCTL" create --name web1 --memory 32M --vcpus 1 --cpu "$CPU" --kernel "$ACPI" --start
console_of web1 "acpi: up"

say "vmctl list"
"$VMCTL" list

say "vmctl stop web1 (power button, then wait for the guest to shut down)"
"$VMCTL" stop --timeout 30 web1 || "$VMCTL" stop --force web1
console_of web1 "power button"

say "vmctl list"
"$VMCTL" list

say "the events vmctl events saw"
sleep 0.3
kill "$EVENTS_PID" 2>/dev/null || true
cat "$T/events"

say "delete the VMs and stop vmmd (SIGTERM: running VMs are stopped cleanly, exit status 0)"
"$VMCTL" delete --force hello
"$VMCTL" delete --force web1
kill -TERM "$VMMD_PID"
wait "$VMMD_PID"
VMMD_PID=""
echo "vmmd exited with status 0"
