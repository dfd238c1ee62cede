#!/usr/bin/env python3
"""virtio-mem with QEMU's commands and events: a cold-plugged device
("maxmem" + "memory_devices" in the VM definition, QEMU's -m maxmem= plus
memory-backend-ram and virtio-mem-pci) driven by tests/guests/virtio-mem.c,
a spec-written driver that plugs blocks, writes a pattern into them, checks
it, and unplugs on a smaller request. Compared with QEMU 7.2 running the
same guest (tests/functional/memory/record-qemu.py): the guest's transcript
(device config, the answers to bad requests, each converged size), the
MEMORY_DEVICE_SIZE_CHANGE events, and the QMP answers of qom-get/qom-set,
query-memory-devices, query-memory-size-summary and device_del."""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vmmdtest import Vmmd, main  # noqa: E402
from daemon_helpers import console_log, guest, rss_kib, vm_def  # noqa: E402

MiB = 1 << 20
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "memory",
                       "qemu-7.2-virtio-mem.json")) as _f:
    GOLDEN = json.load(_f)

MEMDEV = [{"id": "vmem0", "memdev": "mem0", "size": "256M", "requested_size": "64M"}]


def mem_vm(name, kernel, **extra):
    return vm_def(name, kernel, memory="128M", maxmem="1G", memory_devices=MEMDEV, **extra)


def transcript(d, vm):
    """The guest's complete "vmem: " lines (not one it is still writing)."""
    text = console_log(d, vm).replace("\r\n", "\n")
    return [ln for ln in text[:text.rfind("\n") + 1].split("\n") if ln.startswith("vmem: ")]


def wait_line(d, vm, prefix, skip, timeout=300.0):
    """Wait for a transcript line starting with @prefix after the first @skip lines."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(ln.startswith(prefix) for ln in transcript(d, vm)[skip:]):
            return
        time.sleep(0.1)
    raise AssertionError("no %r in %r" % (prefix, transcript(d, vm)[skip:]))


def size_events(q, settle=2.5):
    """The MEMORY_DEVICE_SIZE_CHANGE events of the next @settle seconds (throttle: 1 s)."""
    out = []
    deadline = time.monotonic() + settle
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            out.append(q.event("MEMORY_DEVICE_SIZE_CHANGE", timeout=left))
        except AssertionError:
            break
    return out


def check_events(events, before, after, block, vm=None):
    """QEMU's throttled sequence: the first change at once, then at most one a second,
    the last one the final size, sizes moving one way."""
    sizes = [e["data"]["size"] for e in events]
    assert sizes, "no MEMORY_DEVICE_SIZE_CHANGE"
    for e in events:
        data = dict(e["data"])
        if vm is not None:
            assert data.pop("vm") == vm, e
        assert data == {"id": "vmem0", "size": data["size"],
                        "qom-path": "/machine/peripheral/vmem0"}, e
    assert sizes[0] == before + (block if after > before else -block), sizes
    assert sizes[-1] == after, sizes
    assert sizes == sorted(sizes, reverse=after < before), sizes


def test_golden_events_shape():
    """The recorded QEMU sequence itself has the properties we check vmmd for."""
    prev = 0
    for st in GOLDEN["guest"]:
        want = 64 * MiB if st["requested-size"] is None else st["requested-size"]
        check_events(st["events"], prev, want, 2 * MiB)
        prev = want


def test_guest_as_qemu():
    with Vmmd() as d:
        q = d.qmp()
        q.ok("vm-create", dict(mem_vm("m", guest("virtio-mem")), start=True))
        prev, seen = 0, 0
        for st in GOLDEN["guest"]:
            value = st["requested-size"]
            if value is not None:
                q.ok("qom-set", {"vm": "m", "path": "/machine/peripheral/vmem0",
                                 "property": "requested-size", "value": value})
            want = 64 * MiB if value is None else value
            wait_line(d, "m", "vmem: plugged %d " % want, seen)
            lines = transcript(d, "m")[seen:]
            assert lines == st["transcript"], (lines, st["transcript"])
            seen += len(lines)
            check_events(size_events(q), prev, want, 2 * MiB, vm="m")
            info = q.ok("query-memory-devices", {"vm": "m"})
            assert info[0]["data"]["size"] == want and \
                info[0]["data"]["requested-size"] == want, info
            assert q.ok("query-memory-size-summary", {"vm": "m"}) == \
                {"base-memory": 128 * MiB, "plugged-memory": want}
            prev = want
        # the persisted definition follows requested-size
        with open(os.path.join(d.state_dir, "vms", "m.json")) as f:
            assert json.load(f)["memory_devices"][0]["requested_size"] == 0


def test_qmp_as_qemu():
    """QEMU's answers (stopped, no driver) against a VM whose guest has no driver."""
    with Vmmd() as d:
        q = d.qmp()
        q.ok("vm-create", dict(mem_vm("y", guest("idle")), start=True))
        q.ok("vm-create", dict(vm_def("n", guest("idle"), memory="128M"), start=True))
        # query-memdev lists the device's backend after the RAM, as QEMU's
        mds = q.ok("query-memdev", {"vm": "y"})
        assert [(m["id"], m["size"]) for m in mds] == [("pc.ram", 128 * MiB),
                                                        ("mem0", 256 * MiB)], mds
        for vm, key in (("y", "qmp"), ("n", "no-maxmem")):
            for st in GOLDEN[key]:
                r = q.cmd(st["execute"], dict(st["arguments"], vm=vm))
                want = {"error": st["error"]} if "error" in st else {"return": st["return"]}
                assert r == want, (vm, st["step"], r, want)


def test_definition_errors():
    """Bad memory definitions fail with QEMU's checks before anything is built."""
    cases = [
        ({"memory_devices": MEMDEV}, "maxmem"),
        ({"maxmem": "1G", "memory_devices": [dict(MEMDEV[0], block_size="3M")]},
         "'block-size' property has to be a power of two"),
        ({"maxmem": "1G", "memory_devices": [dict(MEMDEV[0], block_size="512K")]},
         "'block-size' property has to be at least 0x100000"),
        ({"maxmem": "1G", "memory_devices": [dict(MEMDEV[0], requested_size="300M")]},
         "'requested-size' cannot exceed the memory backend size(0x10000000)"),
        ({"maxmem": "1G", "memory_devices": [dict(MEMDEV[0], requested_size="1M")]},
         "'requested-size' property has to be multiples of 'block-size' (0x200000)"),
        ({"maxmem": "1G", "memory_devices": [dict(MEMDEV[0], size="3M")]},
         "backend memory size must be multiple of 0x200000"),
        ({"maxmem": "256M", "memory_devices": MEMDEV},
         "not enough space, currently 0x0 in use of total space for memory devices 0x8000000"),
        ({"maxmem": "1G", "memory_devices": [MEMDEV[0], dict(MEMDEV[0], memdev="m2")]},
         "device id \"vmem0\" is used twice"),
        ({"maxmem": "1G", "memory_devices": [MEMDEV[0], dict(MEMDEV[0], id="v2")]},
         "busy memdev: mem0"),
        ({"maxmem": "64M"}, "must not be less than"),
        ({"maxmem": "1G", "memory_devices": [dict(MEMDEV[0], bogus=1)]}, "unknown key"),
    ]
    with Vmmd() as d:
        q = d.qmp()
        for extra, msg in cases:
            dfn = vm_def("bad", "/nonexistent", memory="128M")
            dfn.update(extra)
            r = q.cmd("vm-create", dfn)
            assert "error" in r and msg in r["error"]["desc"], (extra, r)
        assert q.ok("query-vms") == []


def test_vmctl_memory():
    """vmctl memory resize --wait and memory list, the definition following."""
    with Vmmd() as d:
        q = d.qmp()
        q.ok("vm-create", dict(mem_vm("v", guest("virtio-mem")), start=True))
        wait_line(d, "v", "vmem: plugged 67108864 ", 0)
        p = d.vmctl("memory", "resize", "v", "vmem0", "32M", "--wait", "--timeout", "120")
        assert "v: memory device vmem0 has 32M" in p.stdout, p.stdout
        assert q.ok("qom-get", {"vm": "v", "path": "vmem0", "property": "size"}) == 32 * MiB
        p = d.vmctl("memory", "list", "v")
        assert "base memory 128M, plugged 32M" in p.stdout, p.stdout
        assert "vmem0" in p.stdout and "0x0000000100000000" in p.stdout, p.stdout
        p = d.vmctl("--json", "memory", "list", "v")
        info = json.loads(p.stdout)
        assert info["devices"][0]["data"]["size"] == 32 * MiB, info
        p = d.vmctl("memory", "resize", "v", "vmem0", "1M", check=False)
        assert p.returncode == 1 and "multiples of 'block-size'" in p.stderr, p
        p = d.vmctl("memory", "resize", "v", "nosuch", "2M", check=False)
        assert p.returncode != 0 and "Device 'nosuch' not found" in p.stderr, p
        with open(os.path.join(d.state_dir, "vms", "v.json")) as f:
            assert json.load(f)["memory_devices"][0]["requested_size"] == 32 * MiB
        # memory set: above the RAM the device plugs the rest, at the RAM it unplugs all
        p = d.vmctl("memory", "set", "v", "192M", "--wait", "--timeout", "120")
        assert "v: memory is 192M (RAM 128M)" in p.stdout, p.stdout
        assert q.ok("qom-get", {"vm": "v", "path": "vmem0", "property": "size"}) == 64 * MiB
        p = d.vmctl("memory", "set", "v", "128M", "--wait", "--timeout", "120")
        assert q.ok("qom-get", {"vm": "v", "path": "vmem0", "property": "size"}) == 0
        p = d.vmctl("memory", "set", "v", "100M", check=False)
        assert p.returncode == 1 and "without a balloon" in p.stderr, p


def test_firmware_with_eight_devices():
    """SeaBIOS boots with the most memory devices (their memslots stay clear of
    the firmware's ROM slots; etc/reserved-memory-end is above them)."""
    bios = "/usr/share/seabios/bios.bin"
    if not os.path.exists(bios):
        from vmmdtest import skip
        skip("no SeaBIOS at %s" % bios)
    guest("idle")  # skips without KVM
    devs = [{"id": "m%d" % i, "size": "64M", "requested_size": "16M"} for i in range(8)]
    with Vmmd() as d:
        q = d.qmp()
        dfn = vm_def("f", "/nonexistent", memory="128M", maxmem="1G", memory_devices=devs)
        dfn["boot"] = {"firmware": bios}
        q.ok("vm-create", dict(dfn, start=True))
        deadline = time.monotonic() + 120
        while "SeaBIOS (version" not in console_log(d, "f"):
            assert time.monotonic() < deadline, console_log(d, "f")[-2000:]
            time.sleep(0.2)
        info = q.ok("query-memory-devices", {"vm": "f"})
        assert [x["data"]["memaddr"] for x in info] == \
            [(4 << 30) + i * 64 * MiB for i in range(8)], info


def count(pid, what):
    return len(os.listdir("/proc/%d/%s" % (pid, what)))


def test_resize_cycles():
    """100 plug/unplug cycles: no fd, thread or memory growth; unplugged blocks
    go back to the host (RSS falls when the guest unplugs)."""
    with Vmmd() as d:
        q = d.qmp()
        q.ok("vm-create", dict(mem_vm("c", guest("virtio-mem")), start=True))
        wait_line(d, "c", "vmem: plugged 67108864 ", 0)
        seen = len(transcript(d, "c"))
        pid = d.proc.pid

        def resize(value):
            nonlocal seen
            q.ok("qom-set", {"vm": "c", "path": "vmem0", "property": "requested-size",
                             "value": value})
            wait_line(d, "c", "vmem: plugged %d " % value, seen)
            seen = len(transcript(d, "c"))

        # the guest wrote one word per page of 64 MiB: 16384 pages are resident
        rss_plugged = rss_kib(pid)
        resize(0)
        rss_unplugged = rss_kib(pid)
        print("RSS with 64 MiB plugged %d KiB, unplugged %d KiB" % (rss_plugged, rss_unplugged))
        assert rss_plugged - rss_unplugged >= 48 * 1024, (rss_plugged, rss_unplugged)
        fds, threads = count(pid, "fd"), count(pid, "task")
        rss0 = rss_kib(pid)
        # 100 cycles take about two minutes on a busy host: the full run is slow-only
        cycles = 100 if os.environ.get("VMMD_SLOW_TESTS") == "1" else 20
        t0 = time.monotonic()
        for _ in range(cycles):
            resize(8 * MiB)
            resize(0)
        q.events.clear()
        rss1 = rss_kib(pid)
        print("%d cycles of 8 MiB in %.1f s: fds %d -> %d, threads %d -> %d, RSS %d -> %d KiB"
              % (cycles, time.monotonic() - t0, fds, count(pid, "fd"), threads,
                 count(pid, "task"), rss0, rss1))
        assert count(pid, "fd") == fds and count(pid, "task") == threads
        assert rss1 - rss0 < 4 * 1024, (rss0, rss1)
        assert q.ok("query-memory-size-summary", {"vm": "c"})["plugged-memory"] == 0


def test_save_restore_keeps_plugged_memory():
    """vm-save / vm-restore carry the plugged bitmap and the blocks' contents:
    the restored guest unplugs and finds its pattern intact (it checks each
    block before unplugging it)."""
    with Vmmd() as d:
        q = d.qmp()
        q.ok("vm-create", dict(mem_vm("s", guest("virtio-mem")), start=True))
        wait_line(d, "s", "vmem: plugged 67108864 ", 0)
        path = os.path.join(d.tmp, "s.vmstate")
        q.ok("vm-save", {"vm": "s", "path": path, "stop": True})
        ev = q.event("VM_SAVE_COMPLETED", timeout=120)
        assert ev["data"]["status"] == "completed", ev
        q.event("SHUTDOWN", timeout=30)
        os.unlink(os.path.join(d.run_dir, "vms", "s.console"))
        q.ok("vm-restore", {"path": path})
        info = q.ok("query-memory-devices", {"vm": "s"})
        assert info[0]["data"]["size"] == 64 * MiB, info
        seen = 0
        q.ok("qom-set", {"vm": "s", "path": "vmem0", "property": "requested-size",
                         "value": 0})
        wait_line(d, "s", "vmem: plugged 0 ", seen)
        assert not any("pattern lost" in ln for ln in transcript(d, "s")), transcript(d, "s")


def test_migrate_keeps_plugged_memory():
    """Live migration carries the device regions and the plugged bitmap: on
    the destination the guest finds its pattern in every block it unplugs."""
    with Vmmd() as src, Vmmd() as dst:
        qs = src.qmp()
        qs.ok("vm-create", dict(mem_vm("g", guest("virtio-mem")), start=True))
        wait_line(src, "g", "vmem: plugged 67108864 ", 0)
        qd = dst.qmp()
        qd.ok("vm-create", dict(mem_vm("g", guest("virtio-mem")), incoming=True, start=True))
        sock = os.path.join(dst.tmp, "mig.sock")
        qd.ok("migrate-incoming", {"vm": "g", "uri": "unix:" + sock})
        qs.ok("migrate", {"vm": "g", "uri": "unix:" + sock})
        ev = qs.event("MIGRATION", timeout=180, pred=lambda e: e["data"]["status"] in
                      ("completed", "failed", "cancelled"))
        assert ev["data"]["status"] == "completed", ev
        qd.event("MIGRATION", timeout=60, pred=lambda e: e["data"]["status"] == "completed")
        info = qd.ok("query-memory-devices", {"vm": "g"})
        assert info[0]["data"]["size"] == 64 * MiB, info
        qd.ok("qom-set", {"vm": "g", "path": "vmem0", "property": "requested-size",
                          "value": 0})
        wait_line(dst, "g", "vmem: plugged 0 ", 0)
        assert not any("pattern lost" in ln for ln in transcript(dst, "g")), transcript(dst, "g")


if __name__ == "__main__":
    main(globals())
