#!/bin/sh
# virtio-blk benchmark (not part of make check): the same test guest
# (tests/guests/virtio-bench.c, a polling virtio 1.x driver) reads the same
# raw image under vmmd and under QEMU (-M pc, virtio-blk-pci, modern only),
# 4 KiB random reads with 16 in flight and 64 KiB sequential reads with 8
# in flight, cache=none on both. The host times the guest's start/end
# markers on the serial console; requests/s, MiB/s and the vmmd/QEMU ratio
# are printed per phase (medians over BENCH_ROUNDS rounds, default 3, the
# order of the two alternating between rounds).
#
# Environment: top_builddir (default build/), BENCH_TMP (scratch directory),
# BENCH_ROUNDS.
# Exit 77 without /dev/kvm or qemu-system-x86_64.
set -eu

: "${top_srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
: "${top_builddir:=$top_srcdir/build}"
: "${BENCH_ROUNDS:=3}"
VMMD="$top_builddir/vmmd"
GUEST="$top_builddir/tests/guests/virtio-bench.elf"
QEMU=qemu-system-x86_64

for need in "$VMMD" "$GUEST"; do
	[ -e "$need" ] || { echo "virtio-blk bench: $need is not built" >&2; exit 77; }
done
command -v "$QEMU" >/dev/null 2>&1 || { echo "virtio-blk bench: no $QEMU" >&2; exit 77; }
[ -w /dev/kvm ] || { echo "virtio-blk bench: /dev/kvm is not usable" >&2; exit 77; }

own_tmp=""
if [ -z "${BENCH_TMP:-}" ]; then
	BENCH_TMP=$(mktemp -d "${TMPDIR:-/var/tmp}/bench-virtio-blk.XXXXXX")
	own_tmp=$BENCH_TMP
fi
trap '[ -n "$own_tmp" ] && rm -rf "$own_tmp"' EXIT

IMG="$BENCH_TMP/disk.raw"
dd if=/dev/urandom of="$IMG" bs=1M count=64 status=none
# Written back and dropped from the page cache before the first run: a
# cache=none read of dirty pages writes them back first, which the VMM
# that runs first in round 1 (vmmd) would otherwise pay for.
sync "$IMG"
dd if="$IMG" iflag=nocache count=0 status=none

cat >"$BENCH_TMP/vm.json" <<JSON
{"name": "bench", "vcpus": 1, "memory": "64M", "cpu": "host,-cx16,-xsave",
 "boot": {"kernel": "$GUEST"}, "serial": {"log": "$BENCH_TMP/vmmd.log"},
 "disks": [{"id": "vda", "file": "$IMG", "format": "raw", "cache": "none", "queues": 1}]}
JSON

# Run a command until the guest prints "bench: done"; time the markers.
timeit() { # name console command...
	python3 - "$@" <<'PY'
import os, re, subprocess, sys, time
name, log = sys.argv[1], sys.argv[2]
cmd = sys.argv[3:]
if os.path.exists(log):
    os.unlink(log)
p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
seen, marks, deadline = "", {}, time.monotonic() + 900
while time.monotonic() < deadline and p.poll() is None:
    try:
        with open(log, "rb") as f:
            seen = f.read().decode(errors="replace")
    except OSError:
        pass
    now = time.monotonic()
    for m in re.finditer(r"bench: (\S+) (start|end)", seen):
        marks.setdefault((m.group(1), m.group(2)), now)
    if "bench: done" in seen or "bench: timeout" in seen or "no usable" in seen:
        break
    time.sleep(0.002)
p.kill()
p.wait()
for m in re.finditer(r"bench: (\S+) end (\d+) requests (\d+) bytes (\d+) errors", seen):
    ph, n, nbytes, errs = m.group(1), int(m.group(2)), int(m.group(3)), int(m.group(4))
    t = marks[(ph, "end")] - marks[(ph, "start")]
    print("%s %s %.1f %.2f %d" % (name, ph, n / t, nbytes / t / 2**20, errs))
if "bench: done" not in seen:
    print("%s failed: %s" % (name, seen[-300:].replace("\n", " | ")), file=sys.stderr)
PY
}

R="$BENCH_TMP/results"
: >"$R"
run_vmmd() {
	timeit vmmd "$BENCH_TMP/vmmd.log" "$VMMD" --run-vm "$BENCH_TMP/vm.json" >>"$R"
}
run_qemu() {
	timeit qemu "$BENCH_TMP/qemu.log" "$QEMU" -M pc -accel kvm -cpu qemu64,-cx16 -m 64M \
		-nodefaults -display none -no-reboot -kernel "$GUEST" \
		-drive "file=$IMG,if=none,id=d0,format=raw,cache=none,aio=io_uring" \
		-device virtio-blk-pci,drive=d0,disable-legacy=on,num-queues=1 \
		-serial "file:$BENCH_TMP/qemu.log" >>"$R"
}
round=1
while [ "$round" -le "$BENCH_ROUNDS" ]; do
	if [ $((round % 2)) = 1 ]; then
		run_vmmd
		run_qemu
	else
		run_qemu
		run_vmmd
	fi
	round=$((round + 1))
done

python3 - "$R" <<'PY'
import sys
import statistics
samples = {}
for line in open(sys.argv[1]):
    who, ph, rps, mibs, errs = line.split()
    samples.setdefault(ph, {}).setdefault(who, []).append((float(rps), float(mibs), int(errs)))
rows = {ph: {who: (statistics.median(x[0] for x in v), statistics.median(x[1] for x in v),
                   sum(x[2] for x in v)) for who, v in r.items()} for ph, r in samples.items()}
print("medians of %d round(s); per-round req/s:" % max(len(v) for r in samples.values()
                                                        for v in r.values()))
for ph, r in samples.items():
    for who, v in sorted(r.items()):
        print("  %-12s %-5s %s" % (ph, who, " ".join("%.0f" % x[0] for x in v)))
print("%-12s %12s %10s %12s %10s %8s" % ("phase", "vmmd req/s", "MiB/s", "qemu req/s", "MiB/s",
                                          "ratio"))
for ph, r in rows.items():
    v, q = r.get("vmmd"), r.get("qemu")
    ratio = "%.2f" % (v[0] / q[0]) if v and q else "-"
    fmt = lambda x: ("%12.0f %10.1f" % (x[0], x[1])) if x else "%12s %10s" % ("-", "-")
    print("%-12s %s %s %8s" % (ph, fmt(v), fmt(q), ratio))
    for who, x in r.items():
        if x[2]:
            print("  %s: %d request errors" % (who, x[2]))
PY
