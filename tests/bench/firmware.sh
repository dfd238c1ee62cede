#!/bin/sh
# Firmware boot benchmark (issue #8; not part of make check): SeaBIOS from
# Debian's seabios package boots the same boot-sector images under QEMU
# (qemu-system-x86_64 -M pc -accel kvm -cpu qemu64,-cx16 -nographic) and under
# vmmd (vmmd --run-vm, cpu "host,-cx16,-xsave"); each run is timed from the
# exec of the VMM to the boot sector's first line on the serial console
# ("VMMD-BOOT: hello", see tests/functional/fwimages.py). Rounds alternate
# which VMM goes first. Rows: virtio-blk qcow2, IDE raw, IDE CD-ROM (ISO),
# usb-storage raw on the xHCI controller picked by the boot order (bootindex),
# with USB_FIRMWARE (the 128 KiB bios.bin has no xHCI driver).
#
# Environment (the harness contract of tests/bench): top_srcdir, top_builddir,
# BENCH_ROUNDS (default 3), BENCH_QUICK (1: one round, virtio-blk only),
# BENCH_TMP (scratch directory), FIRMWARE (default /usr/share/seabios/bios.bin),
# USB_FIRMWARE (default /usr/share/seabios/bios-256k.bin), BENCH_ROWS (a
# comma-separated list of row names to run; default all).
# Output: one "BENCH {json}" line per row (seconds, medians and their ratio
# vmmd/QEMU), then a table. A VMM that cannot boot a row is reported as
# skipped with the reason; nothing is left out silently.
set -eu

: "${top_srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
: "${top_builddir:=$top_srcdir/build}"
: "${BENCH_ROUNDS:=3}"
: "${BENCH_QUICK:=0}"
: "${FIRMWARE:=/usr/share/seabios/bios.bin}"
: "${USB_FIRMWARE:=/usr/share/seabios/bios-256k.bin}"
: "${BENCH_ROWS:=}"
own_tmp=""
if [ -z "${BENCH_TMP:-}" ]; then
	BENCH_TMP=$(mktemp -d "${TMPDIR:-/var/tmp}/bench-firmware.XXXXXX")
	own_tmp=$BENCH_TMP
fi
trap '[ -n "$own_tmp" ] && rm -rf "$own_tmp"' EXIT

if [ ! -e /dev/kvm ] || ! command -v qemu-system-x86_64 >/dev/null 2>&1 ||
	[ ! -f "$FIRMWARE" ]; then
	echo 'BENCH {"figure": "firmware", "vmmd": [], "qemu": [], "unit": "s", "skipped": "needs /dev/kvm, qemu-system-x86_64 and seabios"}'
	exit 77
fi

export top_srcdir top_builddir BENCH_ROUNDS BENCH_QUICK BENCH_TMP FIRMWARE USB_FIRMWARE BENCH_ROWS
exec python3 - <<'EOF'
import json
import os
import signal
import statistics
import subprocess
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.environ["top_srcdir"], "tests", "functional"))
import fwimages  # noqa: E402

TMP = os.environ["BENCH_TMP"]
ROUNDS = 1 if os.environ["BENCH_QUICK"] == "1" else int(os.environ["BENCH_ROUNDS"])
FIRMWARE = os.environ["FIRMWARE"]
USB_FIRMWARE = os.environ["USB_FIRMWARE"]
VMMD = os.path.join(os.environ["top_builddir"], "vmmd")
TIMEOUT = 120

qcow2 = fwimages.make_qcow2_disk(os.path.join(TMP, "disk.qcow2"), TMP)
raw = fwimages.make_raw_disk(os.path.join(TMP, "disk.raw"))
rows = [("virtio-blk qcow2", [{"id": "vda", "file": qcow2, "format": "qcow2"}],
         ["-drive", "file=%s,format=qcow2,if=virtio" % qcow2])]
# (name, vmmd disks, QEMU arguments[, firmware, vmmd boot order])
if os.environ["BENCH_QUICK"] != "1":
    iso = fwimages.make_iso(os.path.join(TMP, "boot.iso"), TMP)
    rows += [("IDE raw", [{"id": "hda", "driver": "ide-hd", "file": raw, "format": "raw"}],
              ["-drive", "file=%s,format=raw,if=ide" % raw]),
             ("IDE CD-ROM", [{"id": "cd0", "driver": "ide-cd", "file": iso, "format": "raw",
                              "readonly": True}],
              ["-drive", "file=%s,format=raw,if=ide,media=cdrom" % iso]),
             ("usb-storage raw", [{"id": "usb0", "driver": "usb-storage", "file": raw,
                                   "format": "raw"}],
              ["-device", "qemu-xhci", "-drive", "if=none,id=usb0,file=%s,format=raw" % raw,
               "-device", "usb-storage,drive=usb0,bootindex=0"], USB_FIRMWARE, ["usb0"])]
if os.environ["BENCH_ROWS"]:
    wanted = os.environ["BENCH_ROWS"].split(",")
    rows = [r for r in rows if r[0] in wanted]


def wait_marker(proc, path, t0):
    """Seconds from t0 until the hello line appears in @path; None on exit/timeout."""
    while time.monotonic() - t0 < TIMEOUT:
        try:
            with open(path, "rb") as f:
                if fwimages.HELLO.encode() in f.read():
                    return time.monotonic() - t0
        except OSError:
            pass
        if proc.poll() is not None:
            return None
        time.sleep(0.01)
    return None


def stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_qemu(qargs, firmware):
    out = os.path.join(TMP, "qemu.console")
    with open(out, "wb") as f:
        t0 = time.monotonic()
        p = subprocess.Popen(["qemu-system-x86_64", "-M", "pc", "-accel", "kvm", "-cpu",
                              "qemu64,-cx16", "-nographic", "-vga", "none", "-m", "128M",
                              "-net", "none", "-bios", firmware] + qargs,
                             stdout=f, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        t = wait_marker(p, out, t0)
        stop(p)
    return t


def run_vmmd(disks, firmware, order):
    if not os.access(VMMD, os.X_OK):
        return None
    console = os.path.join(TMP, "vmmd.console")
    if os.path.exists(console):
        os.unlink(console)
    vm = {"name": "fwbench", "vcpus": 1, "memory": "128M", "cpu": "host,-cx16,-xsave",
          "boot": {"firmware": firmware}, "disks": disks, "serial": {"log": console}}
    if order:
        vm["boot"]["order"] = order
    defp = os.path.join(TMP, "vm.json")
    with open(defp, "w") as f:
        json.dump(vm, f)
    with open(os.path.join(TMP, "vmmd.log"), "ab") as log:
        t0 = time.monotonic()
        p = subprocess.Popen([VMMD, "--run-vm", defp, "--run-dir", os.path.join(TMP, "run")],
                             stdout=log, stderr=subprocess.STDOUT)
        t = wait_marker(p, console, t0)
        stop(p)
    return t


table = []
for row in rows:
    name, disks, qargs = row[:3]
    firmware, boot_order = (row[3], row[4]) if len(row) > 3 else (FIRMWARE, None)
    samples = {"vmmd": [], "qemu": []}
    for r in range(ROUNDS):
        order = ["vmmd", "qemu"] if r % 2 == 0 else ["qemu", "vmmd"]
        for vmm in order:
            t = run_vmmd(disks, firmware, boot_order) if vmm == "vmmd" else run_qemu(qargs, firmware)
            if t is not None:
                samples[vmm].append(round(t, 3))
    med = {k: (statistics.median(v) if v else None) for k, v in samples.items()}
    ratio = med["vmmd"] / med["qemu"] if med["vmmd"] and med["qemu"] else None
    rec = {"figure": "firmware", "row": name, "unit": "s", "vmmd": samples["vmmd"],
           "qemu": samples["qemu"], "vmmd_median": med["vmmd"], "qemu_median": med["qemu"],
           "ratio": round(ratio, 3) if ratio else None}
    missing = [k for k in ("vmmd", "qemu") if not samples[k]]
    if missing:
        rec["skipped"] = "%s did not reach the boot sector (see %s)" % (
            " and ".join(missing), TMP)
    print("BENCH " + json.dumps(rec), flush=True)
    table.append(rec)

print("\nTime to the boot sector's first serial output (s, median over %d rounds)" % ROUNDS)
print("%-18s %10s %10s %8s" % ("row", "vmmd", "QEMU", "ratio"))
for rec in table:
    f = lambda v: "%.2f" % v if v is not None else "-"  # noqa: E731
    print("%-18s %10s %10s %8s" % (rec["row"], f(rec["vmmd_median"]), f(rec["qemu_median"]),
                                   f(rec["ratio"])))
EOF
