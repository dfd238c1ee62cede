#!/usr/bin/env python3
"""Whole-VM save and restore (vm-save / vm-restore, docs/vmstate.md) with the
counter guest (tests/guests/counter.c): a counter and a TSC-drawn nonce live
only in RAM, the counter is mirrored on a virtio-blk disk. Saved with
"stop", destroyed, restored in the same daemon and in a second daemon, the
guest must go on counting from where it was with the same nonce (no
reboot), and find on the disk what RAM says it wrote last (no MISMATCH).
Then every bad input: a truncated memory file, a wrong checksum, a newer
format, a CPU model and a TSC frequency this host cannot provide, and a
save that runs out of space; each fails with a message naming the cause
and leaves no VM, file or definition behind."""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vmmdtest import Vmmd, main, skip, wait_for  # noqa: E402
from daemon_helpers import TEST_CPU, console_log, guest, wait_console  # noqa: E402

TICK = re.compile(r"counter: tick (\d+) nonce (0x[0-9a-f]+) disk ok")


def ticks(text):
    return [(int(m.group(1)), m.group(2)) for m in TICK.finditer(text)]


def counter_vm(tmp, name="c1"):
    disk = os.path.join(tmp, name + ".raw")
    with open(disk, "wb") as f:
        f.truncate(1 << 20)
    return {"name": name, "vcpus": 1, "memory": "32M", "cpu": TEST_CPU,
            "boot": {"kernel": guest("counter")},
            "disks": [{"id": "vda", "file": disk, "format": "raw"}]}


def save(q, vm, path, stop=True, timeout=120.0):
    q.ok("vm-save", vm=vm, path=path, stop=stop)
    ev = q.event("VM_SAVE_COMPLETED", timeout=timeout, pred=lambda e: e["data"]["path"] == path)
    return ev["data"]


def boot_and_save(d, q, tmp, name="c1", min_tick=3, vcpus=1, **extra):
    q.ok("vm-create", dict(counter_vm(tmp, name), start=True, vcpus=vcpus, **extra))
    wait_console(d, name, "counter: tick %d " % min_tick, timeout=90)
    snap = os.path.join(tmp, name + ".snap")
    data = save(q, name, snap)
    assert data["status"] == "completed", data
    before = ticks(console_log(d, name))
    return snap, before


def whole_ticks(d, name):
    """The console once a whole tick line follows the restore (the wait for
    "tick N " can return while that line is still being written)."""
    wait_for(lambda: ticks(console_log(d, name)), 60, what="a whole tick line of %s" % name)
    return console_log(d, name)


def check_continues(text_after, before):
    last, nonce = before[-1]
    after = ticks(text_after)
    assert after, "no tick after restore: %r" % text_after[-2000:]
    assert "counter: boot" not in text_after, "the guest rebooted:\n" + text_after[-2000:]
    assert "MISMATCH" not in text_after, "disk and RAM disagree:\n" + text_after[-2000:]
    assert all(n == nonce for _, n in after), (nonce, after[:5])
    # The save caught it at or after the last tick the console showed.
    assert after[0][0] >= last + 1 and after[0][0] <= last + 3, (last, after[:3])


def test_save_destroy_restore_same_daemon():
    with tempfile.TemporaryDirectory(prefix="vmmd-save.") as tmp, Vmmd() as d:
        q = d.qmp()
        # Two vCPUs: the second waits for a SIPI, a state the restore must keep.
        snap, before = boot_and_save(d, q, tmp, vcpus=2)
        q.event("SHUTDOWN", timeout=30)
        assert q.ok("query-vms", vm="c1")[0]["status"] == "shutdown"
        assert sorted(os.listdir(snap)) == ["manifest.json", "memory", "state"]
        assert not [f for f in os.listdir(tmp) if ".tmp-" in f]
        man = json.load(open(os.path.join(snap, "manifest.json")))
        assert man["format"] == "vmmd-vm-state" and man["format-version"] == 1
        assert man["cpu"]["model"] == TEST_CPU and man["cpu"]["tsc-khz"] > 0
        names = [s["name"] for s in man["sections"]]
        for n in ("kvm", "cpu", "serial", "rtc", "pci-host", "virtio-blk"):
            assert n in names, names
        assert [s["instance"] for s in man["sections"] if s["name"] == "cpu"] == [0, 1]
        # sparse: a 32 MiB guest that touched little
        st = os.stat(os.path.join(snap, "memory"))
        assert st.st_size == 32 << 20 and st.st_blocks * 512 < 16 << 20, st
        os.unlink(os.path.join(d.run_dir, "vms", "c1.console"))
        info = q.ok("vm-restore", path=snap)
        assert info["name"] == "c1" and info["status"] == "running", info
        wait_console(d, "c1", "counter: tick %d " % (before[-1][0] + 3), timeout=90)
        check_continues(whole_ticks(d, "c1"), before)
        # A restored VM (RAM mapped from the first snapshot) saved and restored again.
        data = save(q, "c1", os.path.join(tmp, "again"))
        assert data["status"] == "completed", data
        q.event("SHUTDOWN", timeout=30)
        before = ticks(console_log(d, "c1"))
        os.unlink(os.path.join(d.run_dir, "vms", "c1.console"))
        q.ok("vm-restore", path=os.path.join(tmp, "again"))
        wait_console(d, "c1", "counter: tick %d " % (before[-1][0] + 2), timeout=90)
        check_continues(whole_ticks(d, "c1"), before)
        q.ok("vm-destroy", vm="c1")


def test_restore_in_second_daemon_and_paused():
    with tempfile.TemporaryDirectory(prefix="vmmd-save.") as tmp:
        with Vmmd() as d:
            q = d.qmp()
            # memfd RAM must stay shared: filled through userfaultfd, not mapped privately.
            snap, before = boot_and_save(d, q, tmp, mem_backend="memfd")
            q.event("SHUTDOWN", timeout=30)
        # A copy of the disk, given as an override: the saved definition names the old one.
        disk2 = os.path.join(tmp, "copy.raw")
        shutil.copy(os.path.join(tmp, "c1.raw"), disk2)
        with Vmmd() as d2:
            q = d2.qmp()
            info = q.ok("vm-restore", {"path": snap, "name": "c2", "paused": True,
                                       "disks": [{"id": "vda", "file": disk2}]})
            assert info["status"] == "paused", info
            assert "counter: tick" not in console_log(d2, "c2")
            q.ok("cont", vm="c2")
            wait_console(d2, "c2", "counter: tick %d " % (before[-1][0] + 2), timeout=90)
            check_continues(whole_ticks(d2, "c2"), before)
            assert json.load(open(os.path.join(d2.state_dir, "vms", "c2.json")))[
                "disks"][0]["file"] == disk2


def test_save_keeps_running():
    with tempfile.TemporaryDirectory(prefix="vmmd-save.") as tmp, Vmmd() as d:
        q = d.qmp()
        q.ok("vm-create", dict(counter_vm(tmp), start=True))
        wait_console(d, "c1", "counter: tick 2 ", timeout=90)
        data = save(q, "c1", os.path.join(tmp, "s"), stop=False)
        assert data["status"] == "completed" and data["memory-bytes"] > 0, data
        q.event("RESUME", timeout=30)
        assert q.ok("query-status", vm="c1")["status"] == "running"
        n = len(ticks(console_log(d, "c1")))
        wait_for(lambda: len(ticks(console_log(d, "c1"))) > n + 1, 60, what="ticks")
        # a second save into the same directory is refused, the VM keeps running
        r = q.cmd("vm-save", vm="c1", path=os.path.join(tmp, "s"))
        assert "return" in r
        data = q.event("VM_SAVE_COMPLETED", timeout=60)["data"]
        assert data["status"] == "failed" and "already exists" in data["error"], data
        assert q.ok("query-status", vm="c1")["status"] == "running"


def test_vmctl_save_restore():
    with tempfile.TemporaryDirectory(prefix="vmmd-save.") as tmp, Vmmd() as d:
        q = d.qmp()
        q.ok("vm-create", dict(counter_vm(tmp), start=True))
        wait_console(d, "c1", "counter: tick 1 ", timeout=90)
        snap = os.path.join(tmp, "v")
        out = d.vmctl("save", "c1", snap, "--stop").stdout
        assert re.match(r"c1: saved to %s \(\d+ bytes of RAM, \d+ ms\)" % re.escape(snap), out), out
        assert q.ok("query-vms", vm="c1")[0]["status"] == "shutdown"
        p = d.vmctl("save", "c1", os.path.join(tmp, "w"), check=False)
        assert p.returncode == 1 and "not running" in p.stderr, p.stderr
        out = d.vmctl("restore", snap, "--paused", "--name", "c9",
                      "--disk", "vda=" + os.path.join(tmp, "c1.raw")).stdout
        assert out.strip() == "c9: restored (paused)", out
        d.vmctl("resume", "c9")
        wait_console(d, "c9", "counter: tick", timeout=60)
        p = d.vmctl("restore", snap, "--name", "c9", check=False)
        assert p.returncode == 1 and "is running" in p.stderr, p.stderr
        p = d.vmctl("restore", snap, "--disk", "nosuch=/x", "--name", "c8", check=False)
        assert p.returncode == 3 and "no disk with id 'nosuch'" in p.stderr, p.stderr


def rewrite_manifest(snap, fn):
    p = os.path.join(snap, "manifest.json")
    m = json.load(open(p))
    fn(m)
    json.dump(m, open(p, "w"))


def expect_restore_error(d, q, snap, pattern, name="bad"):
    before = sorted(os.listdir(os.path.join(d.state_dir, "vms")))
    r = q.cmd("vm-restore", {"path": snap, "name": name})
    assert "error" in r, r
    assert re.search(pattern, r["error"]["desc"]), r["error"]["desc"]
    names = [v["name"] for v in q.ok("query-vms")]
    assert name not in names, names
    assert sorted(os.listdir(os.path.join(d.state_dir, "vms"))) == before
    assert not os.path.exists(os.path.join(d.run_dir, "vms", name + ".qmp"))
    return r["error"]["desc"]


def patch_section(snap, name, instance, fn):
    """Change section bytes with fn(bytearray) and fix its CRC in the manifest."""
    p = os.path.join(snap, "manifest.json")
    m = json.load(open(p))
    sec = [s for s in m["sections"] if s["name"] == name and s["instance"] == instance][0]
    with open(os.path.join(snap, "state"), "r+b") as f:
        f.seek(sec["offset"])
        data = bytearray(f.read(sec["size"]))
        fn(data)
        f.seek(sec["offset"])
        f.write(data)
    sec["crc32"] = zlib.crc32(bytes(data))
    json.dump(m, open(p, "w"))


def test_bad_snapshots():
    with tempfile.TemporaryDirectory(prefix="vmmd-save.") as tmp, Vmmd() as d:
        q = d.qmp()
        snap, before = boot_and_save(d, q, tmp, min_tick=1)
        q.event("SHUTDOWN", timeout=30)

        def variant(tag):
            p = os.path.join(tmp, tag)
            shutil.copytree(snap, p)
            return p

        p = variant("trunc")
        with open(os.path.join(p, "memory"), "r+b") as f:
            f.truncate((32 << 20) - 4096)
        expect_restore_error(d, q, p, r"memory file .* truncated")

        p = variant("crc")
        with open(os.path.join(p, "state"), "r+b") as f:
            f.seek(100)
            b = f.read(1)
            f.seek(100)
            f.write(bytes([b[0] ^ 0xff]))
        expect_restore_error(d, q, p, r"checksum mismatch in section")

        p = variant("newer")
        rewrite_manifest(p, lambda m: m.update({"format-version": 99}))
        expect_restore_error(d, q, p, r"format version 99 is newer")

        p = variant("nostate")
        os.truncate(os.path.join(p, "state"), 10)
        expect_restore_error(d, q, p, r"truncated or damaged")

        # The vCPU section: mp_state u32, regs blob, sregs blob, xsave flag+blob,
        # xcrs flag+blob, debugregs, lapic, then the TSC frequency (u32).
        def cpu_offsets(data):
            off = 4
            for _ in range(2):
                off += 4 + int.from_bytes(data[off:off + 4], "little")
            for _ in range(2):
                flag = data[off]
                off += 1
                if flag:
                    off += 4 + int.from_bytes(data[off:off + 4], "little")
            for _ in range(2):
                off += 4 + int.from_bytes(data[off:off + 4], "little")
            return off

        p = variant("tsc")

        def halve_tsc(data):
            off = cpu_offsets(data)
            khz = int.from_bytes(data[off:off + 4], "little")
            data[off:off + 4] = (khz // 2).to_bytes(4, "little")
        patch_section(p, "cpu", 0, halve_tsc)
        expect_restore_error(d, q, p, r"TSC frequency mismatch: .* cannot scale the TSC")

        p = variant("cpuid")

        def flip_cpuid(data):
            off = cpu_offsets(data) + 4
            n = int.from_bytes(data[off:off + 4], "little")
            ents = off + 4
            # struct kvm_cpuid_entry2: function, index, flags, eax, ebx, ecx, edx, padding[3]
            for i in range(n // 40):
                e = ents + 40 * i
                if int.from_bytes(data[e:e + 4], "little") == 0x80000001:
                    edx = int.from_bytes(data[e + 24:e + 28], "little")
                    data[e + 24:e + 28] = (edx ^ (1 << 26)).to_bytes(4, "little")  # pdpe1gb
                    return
            raise AssertionError("no leaf 0x80000001")
        patch_section(p, "cpu", 0, flip_cpuid)
        expect_restore_error(d, q, p, r"CPU model mismatch: .*0x80000001.* edx")

        # the untouched snapshot still restores
        info = q.ok("vm-restore", {"path": snap, "name": "good"})
        assert info["status"] == "running"
        q.ok("vm-destroy", vm="good")


def test_save_out_of_space():
    if os.geteuid() != 0 or not shutil.which("mount"):
        skip("needs root to mount a small tmpfs")
    with tempfile.TemporaryDirectory(prefix="vmmd-save.") as tmp, Vmmd() as d:
        small = os.path.join(tmp, "small")
        os.mkdir(small)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48k", "tmpfs", small],
                           capture_output=True, text=True)
        if r.returncode != 0:
            skip("cannot mount a tmpfs: " + r.stderr.strip())
        try:
            q = d.qmp()
            q.ok("vm-create", dict(counter_vm(tmp), start=True))
            wait_console(d, "c1", "counter: tick 1 ", timeout=90)
            # The guest's non-zero RAM (about 100 KiB) does not fit in 48 KiB.
            data = save(q, "c1", os.path.join(small, "snap"), stop=True)
            assert data["status"] == "failed", data
            assert "No space left on device" in data["error"], data
            assert os.listdir(small) == [], os.listdir(small)
            # the VM was not stopped: it runs on
            assert q.ok("query-status", vm="c1")["status"] == "running"
            n = len(ticks(console_log(d, "c1")))
            wait_for(lambda: len(ticks(console_log(d, "c1"))) > n, 60, what="ticks")
        finally:
            subprocess.run(["umount", "-l", small])


if __name__ == "__main__":
    main(globals())
