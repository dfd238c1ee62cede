"""A VM disk in each of the formats QEMU 7.2 also runs VMs on (qed, vhdx,
vmdk, vpc), through virtio-blk with the test guest of test-virtio-blk.py
(tests/guests/virtio-blk.c): the image is made by qemu-img from a random
base, the guest reads sectors 0-7 (their CRC must be the base's), writes
its pattern over sectors 8..71 (allocating in the format), reads it back and
flushes. After the VM is gone the host checks the image with qemu-img:
`check` where the format has one, and the content sector by sector."""

import os
import random
import subprocess
import tempfile
import zlib

from guestrun import run_guest
from vmmdtest import main, require_tool

SECTOR = 512
SIZE = 4 << 20


def pattern(sector):
    return bytes(((sector * 31 + i * 7 + 0x5A) & 0xFF) for i in range(SECTOR))


def run_format(fmt, opts=(), has_check=True):
    require_tool("qemu-img")
    with tempfile.TemporaryDirectory(prefix="vmmd-fmt.") as tmp:
        rawp = os.path.join(tmp, "base.raw")
        img = os.path.join(tmp, "disk." + fmt)
        rnd = random.Random(99)
        base = bytes(rnd.getrandbits(8) for _ in range(SIZE))
        with open(rawp, "wb") as f:
            f.write(base)
        cmd = ["qemu-img", "convert", "-f", "raw", "-O", fmt]
        if opts:
            cmd += ["-o", ",".join(opts)]
        subprocess.run(cmd + [rawp, img], check=True)
        run = run_guest("virtio-blk", timeout=240, done=("poweroff",),
                        disks=[{"id": "vda", "file": img, "format": fmt, "serial": "FMT-" + fmt}])
        c = run.console
        assert "blk: capacity %d sectors" % (SIZE // SECTOR) in c, run.describe()
        assert "blk: read 0-7 status 0 crc 0x%x" % zlib.crc32(base[:8 * SECTOR]) in c, run.describe()
        for line in ("blk: readback ok", "blk: flush ok", "blk: done"):
            assert line in c, run.describe()
        if has_check:
            r = subprocess.run(["qemu-img", "check", "-f", fmt, img], capture_output=True, text=True)
            assert r.returncode == 0, "qemu-img check failed:\n" + r.stdout + r.stderr
        out = os.path.join(tmp, "flat.raw")
        subprocess.run(["qemu-img", "convert", "-f", fmt, "-O", "raw", img, out], check=True)
        with open(out, "rb") as f:
            flat = f.read()
        assert len(flat) == SIZE, len(flat)
        for s in range(8, 72):
            assert flat[s * SECTOR:(s + 1) * SECTOR] == pattern(s), "%s: sector %d differs" % (fmt, s)
        assert flat[:8 * SECTOR] == base[:8 * SECTOR]
        assert flat[72 * SECTOR:] == base[72 * SECTOR:], fmt + ": data past the guest's writes changed"


def test_qed():
    run_format("qed")


def test_vhdx():
    run_format("vhdx", ["block_size=1M"])


def test_vmdk():
    run_format("vmdk")


def test_vpc():
    # force_size keeps the virtual size exact (no CHS rounding); qemu-img has no check for vpc
    run_format("vpc", ["force_size=on"], has_check=False)


if __name__ == "__main__":
    main(globals())
