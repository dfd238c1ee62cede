"""virtio-blk under a real VM, driven by a test guest written from the
virtio spec (tests/guests/virtio-blk.c), on a qcow2 overlay over a raw base
and on an NBD export (qemu-nbd). After the VM is gone the host checks what
the guest wrote: the overlay passes `qemu-img check`, sectors 8..71 hold the
guest's pattern, everything else still reads as the base, and the base is
untouched."""

import hashlib
import os
import random
import shutil
import struct
import subprocess
import tempfile
import time
import zlib

from guestrun import run_guest
from vmmdtest import main, require_tool, skip

SECTOR = 512
BASE_SIZE = 4 << 20


def pattern(sector):
    return bytes(((sector * 31 + i * 7 + 0x5A) & 0xFF) for i in range(SECTOR))


def make_base(path):
    rnd = random.Random(4242)
    data = bytes(rnd.getrandbits(8) for _ in range(BASE_SIZE))
    with open(path, "wb") as f:
        f.write(data)
    return data


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def check_guest(run, base, serial):
    c = run.console
    assert "blk: capacity %d sectors" % (BASE_SIZE // SECTOR) in c, run.describe()
    assert "blk: serial %s" % serial in c, run.describe()
    crc = "blk: read 0-7 status 0 crc 0x%x" % zlib.crc32(base[:8 * SECTOR])
    assert crc in c, "guest did not read the base through the overlay\n" + run.describe()
    for line in ("blk: readback ok", "blk: event_idx avail_event ok", "blk: flush ok", "blk: past-end read fails ok",
                 "blk: msix vector delivered", "blk: done"):
        assert line in c, run.describe()


def check_image(tmp, overlay, base):
    r = subprocess.run(["qemu-img", "check", "-f", "qcow2", overlay], capture_output=True, text=True)
    assert r.returncode == 0, "qemu-img check failed:\n" + r.stdout + r.stderr
    out = os.path.join(tmp, "flat.raw")
    subprocess.run(["qemu-img", "convert", "-f", "qcow2", "-O", "raw", overlay, out], check=True)
    with open(out, "rb") as f:
        flat = f.read()
    assert len(flat) == len(base)
    for s in range(8, 72):
        assert flat[s * SECTOR:(s + 1) * SECTOR] == pattern(s), "sector %d differs" % s
    assert flat[:8 * SECTOR] == base[:8 * SECTOR]
    assert flat[72 * SECTOR:] == base[72 * SECTOR:]


def test_qcow2_overlay_on_raw_base():
    require_tool("qemu-img")
    with tempfile.TemporaryDirectory(prefix="vmmd-blk.") as tmp:
        basep = os.path.join(tmp, "base.raw")
        overlay = os.path.join(tmp, "overlay.qcow2")
        base = make_base(basep)
        before = sha(basep)
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", basep, "-F", "raw",
                        overlay], check=True)
        run = run_guest("virtio-blk", timeout=240, done=("poweroff",),
                        disks=[{"id": "vda", "file": overlay, "format": "qcow2",
                                "serial": "VMMD-0001", "queues": 2}])
        check_guest(run, base, "VMMD-0001")
        assert "blk: num_queues 2" in run.console, run.describe()
        assert "blk: queue 1 read ok" in run.console, run.describe()
        # the VM is gone (vmmd exited): the image must be complete and consistent
        check_image(tmp, overlay, base)
        assert sha(basep) == before, "the raw base was modified"


def aio_mappings(pid):
    """Linux AIO contexts of process PID (their rings are mapped as /[aio])."""
    with open("/proc/%d/maps" % pid) as f:
        return sum(1 for line in f if "/[aio]" in line)


def test_native_aio():
    """\"aio\": \"native\" (QEMU's aio=native): the counter guest's reads and
    writes (4 KiB at sector 0, aligned) through Linux AIO on O_DIRECT raw and
    qcow2 images, checked against the image afterwards; without it, no AIO
    context."""
    require_tool("qemu-img")
    for fmt in ("raw", "qcow2"):
        for aio in ("native", None):
            with tempfile.TemporaryDirectory(prefix="vmmd-blk.") as tmp:
                img = os.path.join(tmp, "disk." + fmt)
                subprocess.run(["qemu-img", "create", "-q", "-f", fmt, img, "1M"], check=True)
                disk = {"id": "vda", "file": img, "format": fmt, "cache": "none"}
                if aio:
                    disk["aio"] = aio
                seen = []
                run = run_guest("counter", timeout=240, done=("counter: tick 4 ",),
                                at_done=lambda pid: seen.append(aio_mappings(pid)),
                                disks=[disk])
                assert "counter: tick 4 " in run.console, run.describe()
                assert "MISMATCH" not in run.console and "failed" not in run.console, \
                    run.describe()
                # one context for the disk (set up at its first request), or none
                assert seen == [1 if aio else 0], (fmt, aio, seen)
                raw = os.path.join(tmp, "flat.raw")
                subprocess.run(["qemu-img", "convert", "-f", fmt, "-O", "raw", img, raw],
                               check=True)
                with open(raw, "rb") as f:
                    tick, nonce = struct.unpack("<QQ", f.read(16))
                line = "counter: boot nonce 0x%x\n" % nonce
                assert tick >= 4 and line in run.console, (tick, line, run.describe())


def test_nbd_export():
    require_tool("qemu-img", "qemu-nbd")
    with tempfile.TemporaryDirectory(prefix="vmmd-nbd.") as tmp:
        basep = os.path.join(tmp, "base.raw")
        overlay = os.path.join(tmp, "overlay.qcow2")
        sock = os.path.join(tmp, "nbd.sock")
        base = make_base(basep)
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", basep, "-F", "raw",
                        overlay], check=True)
        nbd = subprocess.Popen(["qemu-nbd", "-f", "qcow2", "-k", sock, "-x", "disk", overlay],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            for _ in range(200):
                if os.path.exists(sock):
                    break
                time.sleep(0.05)
            else:
                skip("qemu-nbd did not start")
            time.sleep(0.2)
            run = run_guest("virtio-blk", timeout=240, done=("poweroff",),
                            disks=[{"id": "vda", "file": "nbd+unix:///disk?socket=" + sock,
                                    "format": "raw", "serial": "NBD-0002"}])
            if "no device" in run.console or "blk: capacity" not in run.console:
                raise AssertionError(run.describe())
            check_guest(run, base, "NBD-0002")
            # default: one queue per vCPU
            assert "blk: num_queues 1" in run.console, run.describe()
        finally:
            nbd.terminate()
            nbd.wait(timeout=20)
        check_image(tmp, overlay, base)


def test_readonly_disk_refuses_writes():
    require_tool("qemu-img")
    with tempfile.TemporaryDirectory(prefix="vmmd-ro.") as tmp:
        basep = os.path.join(tmp, "base.raw")
        make_base(basep)
        before = sha(basep)
        run = run_guest("virtio-blk", timeout=240, done=("poweroff",),
                        disks=[{"id": "vda", "file": basep, "format": "raw", "readonly": True}])
        assert "blk: write failed at 8" in run.console, run.describe()
        assert "blk: flush ok" in run.console, run.describe()
        assert sha(basep) == before


def nbdkit_failing_writes(tmp):
    """An NBD export whose writes fail with EIO (nbdkit's error filter)."""
    require_tool("nbdkit")
    sock = os.path.join(tmp, "err.sock")
    p = subprocess.Popen(["nbdkit", "-f", "-U", sock, "--filter=error", "memory", "4M",
                          "error-pwrite=EIO", "error-pwrite-rate=100%"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        if os.path.exists(sock):
            return p, "nbd+unix:///?socket=" + sock
        time.sleep(0.05)
    p.kill()
    skip("nbdkit did not start")


def test_werror_report():
    with tempfile.TemporaryDirectory(prefix="vmmd-werr.") as tmp:
        nbd, uri = nbdkit_failing_writes(tmp)
        try:
            run = run_guest("virtio-blk", timeout=240, done=("poweroff",),
                            disks=[{"id": "vda", "file": uri, "format": "raw",
                                    "werror": "report"}])
        finally:
            nbd.kill()
            nbd.wait()
        assert "blk: write failed at 8" in run.console, run.describe()
        assert "blk: done" in run.console, run.describe()
        ev = run.events("BLOCK_IO_ERROR")
        assert ev and ev[0]["device"] == "vda" and ev[0]["action"] == "report", run.describe()
        assert ev[0]["operation"] == "write", run.describe()


def test_werror_stop():
    with tempfile.TemporaryDirectory(prefix="vmmd-werr.") as tmp:
        nbd, uri = nbdkit_failing_writes(tmp)
        try:
            run = run_guest("virtio-blk", timeout=240, done=("poweroff",),
                            disks=[{"id": "vda", "file": uri, "format": "raw",
                                    "werror": "stop"}])
        finally:
            nbd.kill()
            nbd.wait()
        ev = run.events("BLOCK_IO_ERROR")
        assert ev and ev[0]["action"] == "stop", run.describe()
        # the guest never saw the failure: the request is held, the VM stopped
        assert "blk: write failed" not in run.console, run.describe()
        assert "io-error" in run.stderr, run.describe()


def test_werror_stop_then_cont_retries():
    """werror=stop through the daemon: the VM stops in io-error, `cont` after
    the fault is gone retries the held write, and the guest finishes as if
    nothing had happened."""
    require_tool("nbdkit")
    import sys
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from daemon_helpers import TEST_CPU, console_log, guest, wait_console
    from vmmdtest import Vmmd

    kernel = guest("virtio-blk")
    with tempfile.TemporaryDirectory(prefix="vmmd-cont.") as tmp:
        trigger = os.path.join(tmp, "fail-writes")
        sock = os.path.join(tmp, "nbd.sock")
        open(trigger, "w").close()
        nbd = subprocess.Popen(["nbdkit", "-f", "-U", sock, "--filter=error", "memory", "4M",
                                "error-pwrite=EIO", "error-pwrite-rate=100%",
                                "error-pwrite-file=" + trigger],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for _ in range(200):
                if os.path.exists(sock):
                    break
                time.sleep(0.05)
            with Vmmd() as d:
                q = d.qmp()
                q.ok("vm-create", {"name": "w", "vcpus": 1, "memory": "64M", "cpu": TEST_CPU,
                                   "boot": {"kernel": kernel}, "start": True,
                                   "disks": [{"id": "vda", "file": "nbd+unix:///?socket=" + sock,
                                              "format": "raw", "werror": "stop"}]})
                ev = q.event("BLOCK_IO_ERROR", timeout=120)
                assert ev["data"]["action"] == "stop" and ev["data"]["vm"] == "w", ev
                q.event("STOP", timeout=30)
                assert q.ok("query-status", vm="w")["status"] == "io-error"
                assert "blk: write failed" not in console_log(d, "w")
                os.unlink(trigger)
                q.ok("cont", vm="w")
                wait_console(d, "w", "blk: done", timeout=120)
                c = console_log(d, "w")
                assert "blk: readback ok" in c and "blk: write failed" not in c, c
        finally:
            nbd.kill()
            nbd.wait()


if __name__ == "__main__":
    main(globals())
