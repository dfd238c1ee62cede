#!/usr/bin/env python3
"""Hotplug end to end with a test guest as the OS (tests/guests/hotplug.c):
it runs the ACPI hotplug register protocol of the DSDT's methods, drives
I/O on each hot-added virtio-blk disk, and ejects on request with a write
still in flight. The host adds and removes devices over QMP and checks the
order of things (DEVICE_DELETED only after the guest's eject, the id free
only then), that a repeated device_del reaches the guest again, that the
image passes `qemu-img check` and holds what the guest wrote, and that
add/remove cycles leak no fd, thread or memory (100 cycles of each device
kind with VMMD_SLOW_TESTS=1, numbers printed)."""

import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vmmdtest import Vmmd, main, require_tool, wait_for  # noqa: E402
from daemon_helpers import console_log, guest, rss_slack, vm_def  # noqa: E402

SECTOR = 512
VM = "hg"


def pattern(sector, rnd):
    return bytes(((sector * 13 + i * 5 + rnd) & 0xFF) for i in range(SECTOR))


def console(d):
    return console_log(d, VM).replace("\r\n", "\n")


def wait_console(d, name, text, timeout=30.0, count=1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if console(d).count(text) >= count:
            return
        time.sleep(0.02)
    raise AssertionError("console lacks %r (x%d): %r" % (text, count, console(d)[-3000:]))


def fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def threads(pid):
    return len(os.listdir("/proc/%d/task" % pid))


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Rig:
    def __init__(self, d, tmp):
        self.d = d
        self.q = d.qmp()
        self.tmp = tmp
        self.rounds = 0
        self.q.ok("vm-create", dict(vm_def(VM, guest("hotplug"), memory="64M"), start=True))
        wait_console(d, VM, "hp: ready\n", timeout=60)

    def console(self):
        return console(self.d)

    def deleted(self, dev, timeout=30.0):
        ev = self.q.event("DEVICE_DELETED", timeout=timeout,
                          pred=lambda e: e["data"].get("device") == dev)
        assert ev["data"]["path"] == "/machine/peripheral/" + dev, ev
        # QEMU's order for virtio: the backend child first, then the device
        backend = "/machine/peripheral/%s/virtio-backend" % dev
        self.q.events = [e for e in self.q.events if not (
            e["event"] == "DEVICE_DELETED" and e["data"].get("path") == backend)]
        return ev

    def disk_cycle(self, img):
        q = self.q
        q.ok("blockdev-add", {"vm": VM, "driver": "qcow2", "node-name": "hd0",
                              "file": {"driver": "file", "filename": img}})
        q.ok("device_add", {"vm": VM, "driver": "virtio-blk-pci", "id": "hd",
                            "drive": "hd0", "addr": "0x9"})
        wait_console(self.d, VM, "hp: io ok round %d " % self.rounds, timeout=60)
        self.rounds += 1
        downs = self.console().count("hp: slot 9 down\n")
        q.ok("device_del", {"vm": VM, "id": "hd"})
        # node still in use until the guest has ejected and the device is gone
        self.deleted("hd")
        assert self.console().count("hp: slot 9 down\n") == downs + 1, \
            "DEVICE_DELETED before the guest saw the request"
        q.ok("blockdev-del", {"vm": VM, "node-name": "hd0"})
        wait_console(self.d, VM, "hp: slot 9 gone\n", count=self.rounds, timeout=30)

    def nic_cycle(self, driver, n):
        q = self.q
        q.ok("netdev_add", {"vm": VM, "type": "user", "id": "nd"})
        q.ok("device_add", {"vm": VM, "driver": driver, "id": "nic", "netdev": "nd",
                            "addr": "0xa"})
        wait_console(self.d, VM, "hp: slot 10 up ", count=n, timeout=30)
        q.ok("device_del", {"vm": VM, "id": "nic"})
        # the guest ignores the first request (its policy for NICs)
        wait_console(self.d, VM, "hp: slot 10 down ignored once\n", count=n, timeout=30)
        r = q.cmd("device_add", {"vm": VM, "driver": driver, "id": "nic", "netdev": "nd"})
        assert r["error"]["desc"] == "Duplicate device ID 'nic'", r
        r = q.cmd("netdev_del", {"vm": VM, "id": "nd"})
        assert "error" in r, r
        assert not [e for e in q.events if e["event"] == "DEVICE_DELETED" and
                    e["data"].get("device") == "nic"], q.events
        q.ok("device_del", {"vm": VM, "id": "nic"})
        self.deleted("nic")
        q.ok("netdev_del", {"vm": VM, "id": "nd"})
        wait_console(self.d, VM, "hp: slot 10 gone\n", count=n, timeout=30)


def new_image(tmp):
    img = os.path.join(tmp, "hot.qcow2")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", img, "16M"], check=True)
    return img


def check_image(tmp, img, rounds):
    r = subprocess.run(["qemu-img", "check", "-f", "qcow2", img], capture_output=True,
                       text=True)
    assert r.returncode == 0, "qemu-img check failed:\n" + r.stdout + r.stderr
    flat = os.path.join(tmp, "flat.raw")
    subprocess.run(["qemu-img", "convert", "-f", "qcow2", "-O", "raw", img, flat], check=True)
    with open(flat, "rb") as f:
        data = f.read()
    last = {}
    for rnd in range(rounds):
        last[8 * (rnd % 64)] = rnd
    for base, rnd in last.items():
        for s in range(base, base + 8):
            assert data[s * SECTOR:(s + 1) * SECTOR] == pattern(s, rnd), \
                "sector %d does not hold round %d's data" % (s, rnd)
    tail = data[512 * SECTOR:(512 + 128) * SECTOR]
    # the write left in flight across the eject: done entirely, or not at all
    assert tail in (b"\xa5" * len(tail), b"\0" * len(tail)), "torn in-flight write"
    return tail[0] == 0xA5


def test_disk_add_remove_with_io():
    require_tool("qemu-img")
    with tempfile.TemporaryDirectory(prefix="vmmd-hpg.") as tmp:
        img = new_image(tmp)
        with Vmmd() as d:
            rig = Rig(d, tmp)
            for _ in range(3):
                rig.disk_cycle(img)
            c = rig.console()
            assert "hp: slot 9 up 0x1af4:0x1042\n" in c, c
            assert "FAILED" not in c and "still there" not in c, c
            # query-pci no longer lists the disk; its id can be used again
            pci = rig.q.ok("query-pci", {"vm": VM})
            assert not [x for x in pci[0]["devices"] if x["slot"] == 9], pci
        completed = check_image(tmp, img, 3)
        print("in-flight write at eject: %s" % ("completed" if completed else "not started"))


def test_nics_repeated_device_del():
    with tempfile.TemporaryDirectory(prefix="vmmd-hpg.") as tmp:
        with Vmmd() as d:
            rig = Rig(d, tmp)
            rig.nic_cycle("e1000", 1)
            rig.nic_cycle("virtio-net-pci", 2)
            c = rig.console()
            assert "hp: slot 10 up 0x8086:0x100e\n" in c, c
            assert "hp: slot 10 up 0x1af4:0x1041\n" in c, c


def test_reset_completes_removal():
    with tempfile.TemporaryDirectory(prefix="vmmd-hpg.") as tmp:
        img = os.path.join(tmp, "r.img")
        with open(img, "wb") as f:
            f.truncate(1 << 20)
        with Vmmd() as d:
            q = d.qmp()
            # the idle guest never ejects: only a reset completes the removal
            q.ok("vm-create", dict(vm_def("rs", guest("idle")), start=True))
            q.ok("blockdev-add", {"vm": "rs", "driver": "raw", "node-name": "r0",
                                  "file": {"driver": "file", "filename": img}})
            q.ok("device_add", {"vm": "rs", "driver": "virtio-blk-pci", "id": "rd",
                                "drive": "r0"})
            q.ok("device_del", {"vm": "rs", "id": "rd"})
            time.sleep(0.5)
            assert not [e for e in q.events if e["event"] == "DEVICE_DELETED" and
                    e["data"].get("device") == "nic"], q.events
            assert q.cmd("blockdev-del", {"vm": "rs", "node-name": "r0"})["error"]
            q.ok("system_reset", {"vm": "rs"})
            q.event("RESET")
            q.event("DEVICE_DELETED", pred=lambda e: e["data"].get("device") == "rd")
            q.ok("blockdev-del", {"vm": "rs", "node-name": "r0"})


def test_cycles_leak_nothing():
    require_tool("qemu-img")
    n = 100 if os.environ.get("VMMD_SLOW_TESTS") == "1" else 5
    with tempfile.TemporaryDirectory(prefix="vmmd-hpg.") as tmp:
        img = new_image(tmp)
        with Vmmd() as d:
            pid = d.proc.pid
            rig = Rig(d, tmp)
            # warm up: first-use allocations (slirp, io_uring, caches)
            rig.disk_cycle(img)
            rig.nic_cycle("e1000", 1)
            rig.nic_cycle("virtio-net-pci", 2)
            time.sleep(0.5)  # VM start-up's worker thread is gone
            before = (fds(pid), threads(pid), rss_kib(pid))
            t0 = time.monotonic()
            for i in range(n):
                rig.disk_cycle(img)
            t1 = time.monotonic()
            for i in range(n):
                rig.nic_cycle("e1000", 3 + 2 * i)
                rig.nic_cycle("virtio-net-pci", 4 + 2 * i)
            t2 = time.monotonic()
            wait_for(lambda: (fds(pid), threads(pid)) == before[:2], timeout=10,
                     what="fd and thread counts back to %r" % (before[:2],))
            after = (fds(pid), threads(pid), rss_kib(pid))
            print("%d cycles each of virtio-blk (%.2fs), e1000 and virtio-net (%.2fs): "
                  "fds %d -> %d, threads %d -> %d, RSS %d -> %d KiB" %
                  (n, t1 - t0, t2 - t1, before[0], after[0], before[1], after[1],
                   before[2], after[2]))
            assert after[0] == before[0], "fd leak"
            assert after[1] == before[1], "thread leak"
            assert after[2] - before[2] < rss_slack(pid, 4096), \
                "RSS grew by %d KiB" % (after[2] - before[2])
        check_image(tmp, img, n + 1)


if __name__ == "__main__":
    main(globals())
