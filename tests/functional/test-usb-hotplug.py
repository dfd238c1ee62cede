#!/usr/bin/env python3
"""USB hotplug (device_add usb-storage/usb-kbd/usb-tablet on bus xhci.0,
device_del) against QEMU 7.2's answers, the definition following it, and
100 plug/unplug cycles without fd or memory growth.

tests/functional/hotplug/qemu-7.2-usb.json was recorded from QEMU by
tests/functional/hotplug/record-qemu-usb.py (-device qemu-xhci,id=xhci,
stopped). The same steps go to vmmd with the idle test guest and "usb":
true; answers must match QEMU's (class and description) except where
DIFFERENT says why, and the DEVICE_DELETED events after each step must be
QEMU's. The guest's view (port change events, enumeration, reading the
disk) is in test-usb-xhci.py."""

import json
import os
import re
import sys
import tempfile
import time
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vmmdtest import Vmmd, main, wait_for  # noqa: E402
from daemon_helpers import console_log, guest, rss_slack, vm_def  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
GOLDEN = os.path.join(HERE, "hotplug", "qemu-7.2-usb.json")

DIFFERENT = {
    # QEMU explains its block permission system; vmmd says which device holds the node.
    "device_add drive in use": "desc",
    # The protocol's schema checks device_add's arguments before the command
    # runs ("Parameter 'nosuch' is unexpected"), as for PCI devices.
    "device_add unknown property": "desc",
}


def subst(obj, table):
    s = json.dumps(obj)
    for k, v in table.items():
        s = s.replace(k, v)
    return json.loads(s)


def deleted_events(q, want, wait):
    deadline = time.monotonic() + wait
    got = []
    while True:
        for ev in list(q.events):
            q.events.remove(ev)
            if ev["event"] == "DEVICE_DELETED":
                data = dict(ev.get("data", {}))
                data.pop("vm", None)
                got.append({"event": ev["event"], "data": data})
        if len(got) >= want and (want or time.monotonic() > deadline):
            return got
        if time.monotonic() > deadline:
            return got
        q.sock.settimeout(0.05)
        try:
            q.events.append(q.recv())
        except (OSError, ValueError):
            pass
        finally:
            q.sock.settimeout(10.0)


def usb_lines(text):
    """x-query-usb lines without the speed: vmmd's usb-storage is a USB 2.0
    device (480 Mb/s) where QEMU's also does SuperSpeed on the same port."""
    return [re.sub(r"Speed [0-9.]+ Mb/s", "Speed *", ln) for ln in text.splitlines()]


def run_steps(q, vm, steps, table):
    failures = []
    for st in steps:
        args = subst(st["arguments"], table)
        args["vm"] = vm
        r = q.cmd(st["execute"], args)
        name = st["step"]
        diff = DIFFERENT.get(name)
        if "error" in st:
            if "error" not in r:
                failures.append("%s: QEMU failed (%r), vmmd did not (%r)" % (name, st["error"], r))
            elif r["error"]["class"] != st["error"]["class"]:
                failures.append("%s: class %s, QEMU %s" % (name, r["error"]["class"],
                                                           st["error"]["class"]))
            elif diff != "desc" and r["error"]["desc"] != st["error"]["desc"]:
                failures.append("%s: desc %r, QEMU %r" % (name, r["error"]["desc"],
                                                          st["error"]["desc"]))
        elif st["execute"] == "x-query-usb":
            got = usb_lines(r.get("return", {}).get("human-readable-text", "?"))
            if got != usb_lines(st["return"]["human-readable-text"]):
                failures.append("%s: %r, QEMU %r" % (name, got, st["return"]))
        elif r.get("return") != st["return"]:
            failures.append("%s: %r, QEMU returned %r" % (name, r, st["return"]))
        want = len(st["events"]) + len(st["events-before"])
        got = deleted_events(q, want, 10.0 if want else 0.05)
        if got != st["events-before"] + st["events"]:
            failures.append("%s: events %r, QEMU %r" % (name, got, st["events"]))
    return failures


def test_golden_sequence():
    with open(GOLDEN) as f:
        gold = json.load(f)
    idle = guest("idle")
    with tempfile.TemporaryDirectory(prefix="vmmd-usbhp.") as tmp:
        table = {"@IMG@": os.path.join(tmp, "a.img"), "@IMG2@": os.path.join(tmp, "b.img")}
        for p in table.values():
            with open(p, "wb") as f:
                f.truncate(1 << 20)
        with Vmmd() as d:
            q = d.qmp()
            q.ok("vm-create", dict(vm_def("u", idle, usb=True), start=True))
            q.ok("vm-create", dict(vm_def("n", idle), start=True))
            failures = run_steps(q, "u", gold["steps"], table)
            failures += run_steps(q, "n", gold["no-usb"], table)
            assert not failures, "\n".join(failures)


def definition(d, name):
    with open(os.path.join(d.state_dir, "vms", name + ".json")) as f:
        return json.load(f)


def test_definition_follows_usb_hotplug():
    idle = guest("idle")
    with tempfile.TemporaryDirectory(prefix="vmmd-usbhp.") as tmp:
        img = os.path.join(tmp, "disk.img")
        with open(img, "wb") as f:
            f.truncate(1 << 20)
        with Vmmd() as d:
            q = d.qmp()
            q.ok("vm-create", dict(vm_def("pd", idle, usb=True,
                                          input=[{"id": "kbd0", "driver": "usb-kbd"}]),
                                   start=True))
            assert definition(d, "pd")["usb"] is True
            q.ok("blockdev-add", {"vm": "pd", "driver": "raw", "node-name": "n0",
                                  "file": {"driver": "file", "filename": img}})
            q.ok("device_add", {"vm": "pd", "driver": "usb-storage", "id": "ud",
                                "drive": "n0", "serial": "S1", "removable": True})
            q.ok("device_add", {"vm": "pd", "driver": "usb-tablet", "id": "tab"})
            df = definition(d, "pd")
            disk = [x for x in df.get("disks", []) if x["id"] == "ud"]
            assert disk and disk[0]["driver"] == "usb-storage" and disk[0]["file"] == img, df
            assert disk[0].get("serial") == "S1" and disk[0].get("removable") is True, df
            assert {"id": "tab", "driver": "usb-tablet"} in df.get("input", []), df
            # input goes to the hot-added tablet, by id
            q.ok("input-send-event", {"vm": "pd", "device": "tab", "events": [
                {"type": "abs", "data": {"axis": "x", "value": 100}}]})
            # the VM no longer matches its start-up definition: vm-save refuses cleanly
            snap = os.path.join(tmp, "snap")
            q.ok("vm-save", vm="pd", path=snap)
            ev = q.event("VM_SAVE_COMPLETED", timeout=60,
                         pred=lambda e: e["data"]["path"] == snap)
            assert ev["data"]["status"] == "failed", ev
            assert "added or removed" in ev["data"]["error"], ev
            assert not os.path.exists(snap)
            assert q.ok("query-status", vm="pd")["status"] == "running"
            # a cold-plugged device can go too, at once
            q.ok("device_del", {"vm": "pd", "id": "kbd0"})
            q.event("DEVICE_DELETED", pred=lambda e: e["data"].get("device") == "kbd0")
            r = q.cmd("send-key", {"vm": "pd", "keys": [{"type": "qcode", "data": "a"}]})
            assert "error" in r, r
            q.ok("device_del", {"vm": "pd", "id": "ud"})
            q.event("DEVICE_DELETED", pred=lambda e: e["data"].get("device") == "ud")
            q.ok("device_del", {"vm": "pd", "id": "tab"})
            q.event("DEVICE_DELETED", pred=lambda e: e["data"].get("device") == "tab")
            df = definition(d, "pd")
            assert not any(x["id"] == "ud" for x in df.get("disks", [])), df
            assert not df.get("input"), df
            q.ok("blockdev-del", {"vm": "pd", "node-name": "n0"})


def wait_console(d, vm, text, timeout=60.0, count=1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        c = console_log(d, vm).replace("\r\n", "\n")
        if c.count(text) >= count:
            return c
        time.sleep(0.05)
    raise AssertionError("console lacks %r: %r" % (text, console_log(d, vm)[-3000:]))


def test_guest_sees_hotplug():
    """The xHCI test guest as the driver: each device_add is a connect Port
    Status Change it enumerates and reads; each device_del a disconnect after
    which its queued transfer fails with USB Transaction Error (4)."""
    xg = guest("xhci")
    with tempfile.TemporaryDirectory(prefix="vmmd-usbhp.") as tmp:
        img = os.path.join(tmp, "disk.img")
        data = os.urandom(1 << 20)
        with open(img, "wb") as f:
            f.write(data)
        crc = "0x%x" % zlib.crc32(data[:8 * 512])
        with Vmmd() as d:
            q = d.qmp()
            q.ok("vm-create", dict(vm_def("g", xg, memory="64M", usb=True), start=True))
            for rnd, port, want in ((1, "3", 3), (2, None, 1), (3, "3", 3)):
                wait_console(d, "g", "xhci: hotplug: waiting round %d\n" % rnd)
                q.ok("blockdev-add", {"vm": "g", "driver": "raw", "node-name": "n%d" % rnd,
                                      "file": {"driver": "file", "filename": img}})
                args = {"vm": "g", "driver": "usb-storage", "id": "hd%d" % rnd,
                        "bus": "xhci.0", "drive": "n%d" % rnd}
                if port:
                    args["port"] = port
                q.ok("device_add", args)
                c = wait_console(d, "g", "xhci: hotplug: round %d ready for removal" % rnd)
                assert ("xhci: hotplug: port %d connect ccs 1 csc 1 ped 0" % want) in c, c
                assert ("xhci: hotplug: round %d read status 0 crc %s" % (rnd, crc)) in c, c
                q.ok("device_del", {"vm": "g", "id": "hd%d" % rnd})
                q.event("DEVICE_DELETED", pred=lambda e, r=rnd: e["data"].get("device") ==
                        "hd%d" % r)
                # the backend is released with the device
                q.ok("blockdev-del", {"vm": "g", "node-name": "n%d" % rnd})
                wait_console(d, "g", "xhci: hotplug: disable slot cc 1\n", count=rnd)
            c = wait_console(d, "g", "xhci: hotplug: done\n")
            assert c.count("xhci: hotplug: transfer after removal cc 4\n") == 3, c
            assert c.count("disconnect ccs 0 csc 1 ped 0") == 3, c
            assert "FAIL" not in c, c


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for ln in f:
            if ln.startswith("VmRSS:"):
                return int(ln.split()[1])
    return 0


def test_hundred_cycles_no_growth():
    idle = guest("idle")
    with tempfile.TemporaryDirectory(prefix="vmmd-usbhp.") as tmp:
        img = os.path.join(tmp, "disk.img")
        with open(img, "wb") as f:
            f.truncate(4 << 20)
        with Vmmd() as d:
            q = d.qmp()
            q.ok("vm-create", dict(vm_def("c", idle, usb=True), start=True))
            pid = d.proc.pid

            def cycle(i):
                q.ok("blockdev-add", {"vm": "c", "driver": "raw", "node-name": "n%d" % i,
                                      "file": {"driver": "file", "filename": img}})
                q.ok("device_add", {"vm": "c", "driver": "usb-storage", "id": "s%d" % i,
                                    "bus": "xhci.0", "port": "1", "drive": "n%d" % i})
                q.ok("device_add", {"vm": "c", "driver": "usb-kbd", "id": "k%d" % i})
                q.ok("device_del", {"vm": "c", "id": "s%d" % i})
                q.ok("device_del", {"vm": "c", "id": "k%d" % i})
                q.ok("blockdev-del", {"vm": "c", "node-name": "n%d" % i})
                q.events.clear()

            for i in range(10):
                cycle(i)
            time.sleep(0.5)
            fds, rss = fd_count(pid), rss_kib(pid)
            for i in range(10, 110):
                cycle(i)
            time.sleep(0.5)
            wait_for(lambda: fd_count(pid) <= fds, timeout=10,
                     what="fd count back to %d (now %d)" % (fds, fd_count(pid)))
            grown = rss_kib(pid) - rss
            assert grown < rss_slack(pid, 2048), "RSS grew by %d KiB over 100 cycles" % grown
            text = q.ok("x-query-usb", {"vm": "c"})["human-readable-text"]
            assert text == "", text


if __name__ == "__main__":
    main(globals())
