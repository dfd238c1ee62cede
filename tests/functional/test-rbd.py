"""Ceph RBD disks on a real single-node cluster (Debian's ceph-mon and
ceph-osd, started once on loopback by tests/lib/ceph-cluster.sh for the whole
file and removed at the end): vmm-img creates, converts to and from, resizes
and describes RBD images, and QEMU's own rbd driver reads back what vmm-img
wrote; writes, write-zeroes and discards through the block layer give the
SHA-256 of a mirror file when Ceph's own tool exports the image; the
virtio-blk test guest runs on an RBD disk and the host checks every sector it
wrote; a disk hot-plugged by blockdev options is grown by block_resize; a
second VM cannot open a disk another VM writes (RBD's exclusive lock, the
holder named); a VM migrates between two daemons with its disk on RBD, the
lock handed over and the disk not copied, and a failed destination gives the
lock back; the lock of a killed daemon is broken once Ceph sees it gone;
a live upgrade of the daemon keeps such a VM running; librbd is loaded only when needed and leaves the lifecycle RSS
bound intact; bad names, refused options and an unreachable cluster give
clear errors within the deadline."""

import atexit
import hashlib
import importlib
import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import time

from daemon_helpers import TEST_CPU, console_log, guest, vm_def, wait_console
from guestrun import run_guest
from vmmdtest import QMP, TOP_BUILDDIR, TOP_SRCDIR, Vmmd, main, require_tool, skip, wait_for

VMM_IMG = os.path.join(TOP_BUILDDIR, "vmm-img")
CLUSTER = os.path.join(TOP_SRCDIR, "tests", "lib", "ceph-cluster.sh")
TICK = re.compile(r"counter: tick (\d+) nonce (0x[0-9a-f]+) disk ok")
_conf = None
_dir = None


def conf():
    """Start the cluster once for the whole file; its ceph.conf path."""
    global _conf, _dir
    if _conf:
        return _conf
    _dir = tempfile.mkdtemp(prefix="vmmd-ceph.")
    os.rmdir(_dir)
    atexit.register(lambda: subprocess.run([CLUSTER, "stop", _dir]))
    p = subprocess.run([CLUSTER, "start", _dir], capture_output=True, text=True, timeout=300)
    if p.returncode == 77:
        skip(p.stderr.strip())
    assert p.returncode == 0, "cluster did not start:\n" + p.stdout + p.stderr
    _conf = p.stdout.strip().splitlines()[-1].split("=", 1)[1]
    return _conf


def name(image):
    return "rbd:rbd/%s:conf=%s" % (image, conf())


def img(*args, check=True):
    p = subprocess.run([VMM_IMG] + list(args), capture_output=True, text=True, timeout=120)
    if check and p.returncode != 0:
        raise AssertionError("vmm-img %s: %d\n%s%s" % (" ".join(args), p.returncode, p.stdout,
                                                        p.stderr))
    return p


def test_vmm_img_on_rbd():
    require_tool("qemu-img")
    with tempfile.TemporaryDirectory(prefix="vmmd-rbd.") as tmp:
        src = os.path.join(tmp, "src.raw")
        back = os.path.join(tmp, "back.raw")
        data = os.urandom(3 << 20)
        with open(src, "wb") as f:
            f.write(data)
        img("create", "-f", "raw", name("created"), "16M")
        out = img("info", "-f", "raw", name("created")).stdout
        assert "virtual size: 16 MiB (16777216 bytes)" in out, out
        # to RBD and back, and QEMU's rbd driver reads the same bytes
        img("convert", "-f", "raw", "-O", "raw", src, name("conv"))
        img("convert", "-f", "raw", "-O", "raw", name("conv"), back)
        with open(back, "rb") as f:
            assert f.read() == data
        p = subprocess.run(["qemu-img", "compare", "-f", "raw", "-F", "raw", src, name("conv")],
                           capture_output=True, text=True)
        assert p.returncode == 0, p.stdout + p.stderr
        img("resize", "-f", "raw", name("conv"), "8M")
        out = img("info", "-f", "raw", name("conv")).stdout
        assert "virtual size: 8 MiB" in out, out
        # a qcow2 image cannot be created on RBD: said, nothing made
        p = img("create", "-f", "qcow2", name("q"), "1M", check=False)
        assert p.returncode != 0 and "creates raw images only" in p.stderr, p.stderr


IMG_IO = os.path.join(TOP_BUILDDIR, "tests", "block", "img-io")


def img_io(*args):
    p = subprocess.run([IMG_IO] + list(args), capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, "img-io %s: %d\n%s" % (" ".join(args), p.returncode, p.stderr)


def test_io_checksums_on_host():
    """Random writes, write-zeroes and discards through the block layer on an
    RBD image with 1 MiB objects, mirrored into a raw file: the image Ceph's
    own tool exports has the mirror's SHA-256; a discard of whole objects
    removes them (rbd diff); four threads writing and reading back their
    own stripes concurrently (asynchronous requests in flight) agree."""
    M = 1 << 20
    img("create", "-f", "raw", "-o", "cluster_size=1048576", name("io"), "8M")
    with tempfile.TemporaryDirectory(prefix="vmmd-rbdio.") as tmp:
        mirror = os.path.join(tmp, "mirror.raw")
        with open(mirror, "wb") as f:
            f.truncate(8 * M)
        img_io("random", "raw", name("io"), mirror, "7", "300")
        img_io("raw", name("io"), "d:2M:2M", "z:5M:512K", "w:7M:4K:0xab", "r:2M:2M:0",
               "r:5M:512K:0", "r:7M:4K:0xab")
        with open(mirror, "rb") as f:
            m = bytearray(f.read())
        m[2 * M:4 * M] = bytes(2 * M)
        m[5 * M:5 * M + 512 * 1024] = bytes(512 * 1024)
        m[7 * M:7 * M + 4096] = b"\xab" * 4096
        out = os.path.join(tmp, "export.raw")
        p = subprocess.run(["rbd", "-c", conf(), "export", "rbd/io", out],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        with open(out, "rb") as f:
            got = f.read()
        assert hashlib.sha256(got).hexdigest() == hashlib.sha256(m).hexdigest()
        p = subprocess.run(["rbd", "-c", conf(), "diff", "--format", "json", "rbd/io"],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        there = {e["offset"] for e in json.loads(p.stdout) if e["exists"] == "true"}
        assert 2 * M not in there and 3 * M not in there and 0 in there, sorted(there)
    img("create", "-f", "raw", name("stress"), "4M")
    img_io("stress", "raw", name("stress"), "4", "200")


def test_bad_names_and_unreachable_cluster():
    c = conf()
    cases = [
        ("rbd:onlypool", "an rbd name is"),
        ("rbd:rbd/a/b/c", "an rbd name is"),
        ("rbd:rbd/missing:conf=" + c, "cannot open rbd image 'missing' in pool 'rbd'"),
        ("rbd:nopool/x:conf=" + c, "cannot open pool 'nopool'"),
        ("rbd:rbd/x:conf=" + c + ":log_file=/tmp/owned", "option 'log_file' is not accepted"),
        ("rbd:rbd/x:conf=" + c + ":timeout=0", "timeout must be 1 to"),
    ]
    for n, want in cases:
        p = img("info", "-f", "raw", n, check=False)
        assert p.returncode != 0 and want in p.stderr, (n, p.stderr)
    # nobody answers on port 1: fails within the 2 s deadline, never hangs
    t0 = time.monotonic()
    p = img("info", "-f", "raw", "rbd:rbd/x:mon_host=127.0.0.1\\:1:timeout=2", check=False)
    took = time.monotonic() - t0
    assert p.returncode != 0 and "cannot connect to the Ceph cluster" in p.stderr, p.stderr
    assert took < 30, "connect deadline not honoured: %.1f s" % took


def test_guest_disk_on_rbd():
    """The virtio-blk test guest on an RBD disk; the host checks what it wrote."""
    blk = importlib.import_module("test-virtio-blk")
    with tempfile.TemporaryDirectory(prefix="vmmd-rbdvm.") as tmp:
        basep = os.path.join(tmp, "base.raw")
        out = os.path.join(tmp, "after.raw")
        base = blk.make_base(basep)
        img("convert", "-f", "raw", "-O", "raw", basep, name("vmdisk"))
        run = run_guest("virtio-blk", timeout=240, done=("poweroff",),
                        disks=[{"id": "vda", "file": name("vmdisk"), "format": "raw",
                                "serial": "RBD-0003"}])
        blk.check_guest(run, base, "RBD-0003")
        img("convert", "-f", "raw", "-O", "raw", name("vmdisk"), out)
        with open(out, "rb") as f:
            flat = f.read()
        assert len(flat) == len(base)
        for s in range(8, 72):
            assert flat[s * 512:(s + 1) * 512] == blk.pattern(s), "sector %d differs" % s
        assert flat[:8 * 512] == base[:8 * 512] and flat[72 * 512:] == base[72 * 512:]


def ceph_loaded(pid):
    with open("/proc/%d/maps" % pid) as f:
        maps = f.read()
    return "librbd.so" in maps or "librados.so" in maps


def test_second_writer_refused():
    """Two VMs on one RBD disk: the second start fails naming the lock holder;
    once the first VM is gone, the second can start. librbd is loaded only
    when the first RBD disk opens (a daemon without RBD disks runs no Ceph
    code: block/rbd.c says why)."""
    idle = guest("idle")
    img("create", "-f", "raw", name("shared"), "4M")
    disk = [{"id": "vda", "file": name("shared"), "format": "raw"}]
    with Vmmd() as d, d.qmp() as q:
        q.ok("vm-create", dict(vm_def("plain", idle), start=True))
        wait_console(d, "plain", "idle: up")
        q.ok("vm-destroy", {"vm": "plain"})
        assert not ceph_loaded(d.proc.pid), "librbd mapped before any RBD disk"
        q.ok("vm-create", dict(vm_def("one", idle), disks=disk, start=True))
        wait_console(d, "one", "idle: up")
        assert ceph_loaded(d.proc.pid), "librbd not mapped with an RBD disk open"
        q.ok("vm-create", dict(vm_def("two", idle), disks=disk))
        r = q.cmd("vm-start", {"vm": "two"})
        assert "error" in r, r
        desc = r["error"]["desc"]
        assert "rbd image 'rbd/shared' is in use" in desc and "lock is held by 127.0.0.1:" in desc, desc
        q.ok("vm-destroy", {"vm": "one"})
        q.ok("vm-start", {"vm": "two"})
        wait_console(d, "two", "idle: up")
        q.ok("vm-destroy", {"vm": "two"})


def rbd_size(image):
    p = subprocess.run(["rbd", "-c", conf(), "info", "--format", "json", "rbd/" + image],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)["size"]


def test_hotplug_and_block_resize():
    """blockdev-add with the structured rbd options on a running VM, the disk
    plugged, grown by block_resize: the cluster's own tool sees the size."""
    img("create", "-f", "raw", name("hp"), "4M")
    with Vmmd() as d, d.qmp() as q:
        q.ok("vm-create", dict(vm_def("hp", guest("idle")), start=True))
        wait_console(d, "hp", "idle: up")
        q.ok("blockdev-add", {"vm": "hp", "driver": "raw", "node-name": "n0",
                              "file": {"driver": "rbd", "pool": "rbd", "image": "hp",
                                       "conf": conf()}})
        q.ok("device_add", {"vm": "hp", "driver": "virtio-blk-pci", "id": "vdz",
                            "drive": "n0"})
        blk = [b for b in q.ok("query-block", {"vm": "hp"}) if b["device"] == "vdz"]
        assert blk and blk[0]["inserted"]["image"]["virtual-size"] == 4 << 20, blk
        q.ok("block_resize", {"vm": "hp", "node-name": "n0", "size": 12 << 20})
        assert rbd_size("hp") == 12 << 20
        blk = [b for b in q.ok("query-block", {"vm": "hp"}) if b["device"] == "vdz"]
        assert blk[0]["inserted"]["image"]["virtual-size"] == 12 << 20, blk
        q.ok("vm-destroy", {"vm": "hp"})


def free_port():
    with socket.socket() as sk:
        sk.bind(("127.0.0.1", 0))
        return sk.getsockname()[1]


def counter_vm(image):
    return {"name": "c1", "vcpus": 1, "memory": "32M", "cpu": TEST_CPU,
            "boot": {"kernel": guest("counter")},
            "disks": [{"id": "vda", "file": name(image), "format": "raw"}]}


def ticks(d):
    return [(int(m.group(1)), m.group(2)) for m in TICK.finditer(console_log(d, "c1"))]


def wait_tick(d, n, timeout=60):
    """Until @d's console holds the whole line of a tick >= @n: the guest
    prints a line in pieces, and wait_console's prefix can match the first
    piece before ticks() can parse it."""
    wait_for(lambda: any(t >= n for t, _ in ticks(d)), timeout, what="counter tick %d" % n)


def migrate(qs, qd, port):
    mig = importlib.import_module("test-migration")
    qd.ok("migrate-incoming", vm="c1", uri="tcp:127.0.0.1:%d" % port)
    qs.ok("migrate", vm="c1", uri="tcp:127.0.0.1:%d" % port)
    return (mig.wait_status(qs, "c1", ("completed", "failed")),
            mig.wait_status(qd, "c1", ("completed", "failed")))


def test_migrate_with_disk_on_rbd():
    """Two daemons, one RBD image: the counter guest (tests/guests/counter.c,
    its counter mirrored on sector 0 and checked against RAM every tick)
    migrates without its disk being copied: the destination opens the same
    image once the source has flushed it and released RBD's exclusive lock.
    The guest counts on with its nonce and no MISMATCH; the source cannot
    take the image back while the destination runs; once the destination
    stops, the host reads the last counter from the cluster."""
    img("create", "-f", "raw", name("mig"), "1M")
    with Vmmd() as src, Vmmd() as dst, src.qmp() as qs, dst.qmp() as qd:
        qs.ok("vm-create", dict(counter_vm("mig"), start=True))
        wait_tick(src, 1, timeout=90)
        qd.ok("vm-create", dict(counter_vm("mig"), incoming=True, start=True))
        assert migrate(qs, qd, free_port()) == ("completed", "completed"), \
            qs.ok("query-migrate", vm="c1")
        # RAM only crossed the link: nothing of the disk was streamed.
        info = qs.ok("query-migrate", vm="c1")
        assert "disk" not in info, info
        before = ticks(src)
        wait_tick(dst, before[-1][0] + 1)
        after = console_log(dst, "c1")
        assert "MISMATCH" not in after and "counter: boot" not in after, after[-1500:]
        now = ticks(dst)
        assert now[0][0] in (before[-1][0] + 1, before[-1][0] + 2), (before[-1], now[:2])
        assert all(n == before[-1][1] for _, n in now), (before[-1], now[:3])
        # The destination holds the exclusive lock: another writer on the
        # source's daemon is refused, naming the holder.
        r = qs.cmd("vm-create", dict(counter_vm("mig"), name="c2", start=True))
        assert "error" in r and "rbd image 'rbd/mig' is in use" in r["error"]["desc"], r
        qd.ok("stop", vm="c1")
        last = ticks(dst)[-1][0]
        qd.ok("vm-destroy", vm="c1")
        qs.ok("vm-destroy", vm="c1")
    with tempfile.TemporaryDirectory(prefix="vmmd-rbdmig.") as tmp:
        out = os.path.join(tmp, "mig.raw")
        img("convert", "-f", "raw", "-O", "raw", name("mig"), out)
        with open(out, "rb") as f:
            sector0 = f.read(16)
        assert int.from_bytes(sector0[:8], "little") >= last, (sector0, last)


def test_migrate_between_namespaces_on_rbd():
    """Two hosts on one machine (tests/lib/two-hosts.sh: two network
    namespaces and a veth pair) with a Ceph cluster of their own inside host
    A on the veth address, so that host B reaches the monitor and the OSD
    over the link too: the counter guest migrates A -> B over tcp with its
    disk on RBD, the lock handed over, the disk not copied; its disk check
    holds and it counts on with its nonce. A second cluster start (~15-30 s):
    only with VMMD_SLOW_TESTS=1 (.ci/run runs it)."""
    if os.environ.get("VMMD_SLOW_TESTS") != "1":
        skip("needs VMMD_SLOW_TESTS=1 (starts a second Ceph cluster inside a namespace)")
    mig = importlib.import_module("test-migration")
    with mig.TwoHosts() as h:
        a, b = h.name + "-a", h.name + "-b"
        cdir = tempfile.mkdtemp(prefix="vmmd-cephns.")
        os.rmdir(cdir)
        env = dict(os.environ, CEPH_CLUSTER_ADDR=h.a, CEPH_CLUSTER_NET=h.net + ".0/30")
        try:
            p = subprocess.run(["ip", "netns", "exec", a, CLUSTER, "start", cdir], env=env,
                               capture_output=True, text=True, timeout=300)
            assert p.returncode == 0, "cluster did not start:\n" + p.stdout + p.stderr
            c = p.stdout.strip().splitlines()[-1].split("=", 1)[1]
            disk = "rbd:rbd/nsmig:conf=" + c
            p = subprocess.run(["ip", "netns", "exec", a, VMM_IMG, "create", "-f", "raw",
                                disk, "1M"], capture_output=True, text=True, timeout=120)
            assert p.returncode == 0, p.stderr
            d = dict(counter_vm("nsmig"), disks=[{"id": "vda", "file": disk, "format": "raw"}])
            with mig.NsVmmd(a) as src, mig.NsVmmd(b) as dst, src.qmp() as qs, \
                    dst.qmp() as qd:
                qs.ok("vm-create", dict(d, start=True))
                wait_tick(src, 1, timeout=90)
                qd.ok("vm-create", dict(d, incoming=True, start=True))
                qd.ok("migrate-incoming", vm="c1", uri="tcp:%s:4460" % h.b)
                qs.ok("migrate", vm="c1", uri="tcp:%s:4460" % h.b)
                assert mig.wait_status(qs, "c1", ("completed", "failed")) == "completed", \
                    qs.ok("query-migrate", vm="c1")
                assert mig.wait_status(qd, "c1", ("completed", "failed")) == "completed"
                before = ticks(src)
                wait_tick(dst, before[-1][0] + 1)
                after = console_log(dst, "c1")
                assert "MISMATCH" not in after and "counter: boot" not in after, after[-1500:]
                assert all(n == before[-1][1] for _, n in ticks(dst))
                qd.ok("vm-destroy", vm="c1")
                qs.ok("vm-destroy", vm="c1")
        finally:
            subprocess.run([CLUSTER, "stop", cdir], check=False)


def test_migrate_rbd_destination_fails():
    """The destination cannot open its disk after GO (another image name):
    the source takes RBD's lock back and resumes, and the guest's disk check
    holds; a writer on the destination's daemon is then refused."""
    img("create", "-f", "raw", name("migf"), "1M")
    with Vmmd() as src, Vmmd() as dst, src.qmp() as qs, dst.qmp() as qd:
        qs.ok("vm-create", dict(counter_vm("migf"), start=True))
        wait_tick(src, 1, timeout=90)
        qd.ok("vm-create", dict(counter_vm("migf-missing"), incoming=True, start=True))
        assert migrate(qs, qd, free_port()) == ("failed", "failed")
        desc = qs.ok("query-migrate", vm="c1")["error-desc"]
        assert "destination failed" in desc and "migf-missing" in desc, desc
        assert qs.ok("query-status", vm="c1")["status"] == "running"
        last = ticks(src)[-1][0]
        wait_tick(src, last + 1)
        assert "MISMATCH" not in console_log(src, "c1")
        r = qd.cmd("vm-create", dict(counter_vm("migf"), name="c2", start=True))
        assert "error" in r and "rbd image 'rbd/migf' is in use" in r["error"]["desc"], r
        qs.ok("vm-destroy", vm="c1")


def test_live_upgrade_with_disk_on_rbd():
    """daemon-upgrade (docs/upgrade.md) of a daemon whose VM has its disk on
    RBD: the new binary takes the VM over, RBD's exclusive lock handed over
    as in a migration; the counter guest counts on with its disk check intact
    and the new daemon holds the lock (a second writer is refused)."""
    up = importlib.import_module("test-upgrade")
    img("create", "-f", "raw", name("upg"), "1M")
    with up.CopiedVmmd() as d:
        q = d.qmp()
        q.ok("vm-create", dict(counter_vm("upg"), start=True))
        wait_console(d, "c1", "counter: tick 2 ", timeout=90)  # tick 1's line is whole
        before = ticks(d)
        with QMP(d.socket, timeout=120) as qq:
            up.upgrade(d, qq, 1)
        up.check_counter(d, "c1", before)
        with d.qmp() as q:
            r = q.cmd("vm-create", dict(counter_vm("upg"), name="c2", start=True))
            assert "error" in r and "rbd image 'rbd/upg' is in use" in r["error"]["desc"], r
            q.ok("vm-destroy", vm="c1")


def test_dead_owner_lock_broken():
    """A daemon holding an RBD disk is killed (a dead host): another daemon's
    start of a VM on that disk waits until the cluster sees the owner gone
    (its watch expires: osd client watch timeout, 10 s in the test cluster,
    30 s by Ceph's default), then librbd breaks the dead owner's lock
    (and blocklists it) and the VM starts."""
    img("create", "-f", "raw", name("dead"), "1M")
    disk = [{"id": "vda", "file": name("dead"), "format": "raw"}]
    with Vmmd() as a, Vmmd() as b:
        with a.qmp() as qa:
            qa.ok("vm-create", dict(vm_def("x", guest("idle")), disks=disk, start=True))
            wait_console(a, "x", "idle: up")
        a.proc.send_signal(signal.SIGKILL)
        a.proc.wait()
        t0 = time.monotonic()
        with QMP(b.socket, timeout=120) as qb:
            qb.ok("vm-create", dict(vm_def("x", guest("idle")), disks=disk, start=True))
            took = time.monotonic() - t0
            wait_console(b, "x", "idle: up")
            print("started on the second daemon %.1f s after the first was killed" % took)
            qb.ok("vm-destroy", vm="x")


def test_lifecycles_after_librbd_loaded():
    """Once an RBD disk has loaded librbd, many VM lifecycles still leave RSS
    within test-security-lifecycles' bound (Ceph's initialisers raise glibc's
    trim threshold; the driver puts it back)."""
    lc = importlib.import_module("test-security-lifecycles")
    img("create", "-f", "raw", name("lcdisk"), "4M")
    disk = [{"id": "vda", "file": name("lcdisk"), "format": "raw"}]
    with Vmmd() as d, d.qmp() as q:
        q.ok("vm-create", dict(vm_def("warm", guest("idle")), disks=disk, start=True))
        wait_console(d, "warm", "idle: up")
        q.ok("vm-delete", vm="warm", force=True)
        assert ceph_loaded(d.proc.pid)
        lc.lifecycles_return_to_baseline(d)


if __name__ == "__main__":
    main(globals())
