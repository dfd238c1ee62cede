#!/usr/bin/env python3
"""usb-kbd and usb-tablet fed through QMP (issue 17):

- SeaBIOS (bios-256k.bin, which has the xHCI driver) boots a boot sector
  that reads keys with INT 16h and prints each one on COM1; keys sent with
  send-key (qcode and number forms, shift held) and input-send-event arrive
  from the usb-kbd in order.
- send-key and input-send-event answer malformed arguments exactly as QEMU
  7.2 does (tests/functional/golden/qmp-input.json, recorded with
  make-golden-qmp-input.py); the differences vmmd documents (no display
  consoles) are checked separately.
"""

import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fwimages  # noqa: E402
from daemon_helpers import TEST_CPU, console_log, wait_console  # noqa: E402
from vmmdtest import Vmmd, main, require_kvm, skip  # noqa: E402

FIRMWARE = os.environ.get("VMMD_FIRMWARE", "/usr/share/seabios/bios-256k.bin")
GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden", "qmp-input.json")


def firmware_vm(tmp, name, inputs):
    if not os.path.exists(FIRMWARE):
        skip("%s is missing (Debian package seabios)" % FIRMWARE)
    disk = fwimages.make_keyboard_disk(os.path.join(tmp, "kbd.raw"))
    return {"name": name, "vcpus": 1, "memory": "128M", "cpu": TEST_CPU,
            "boot": {"firmware": FIRMWARE},
            "disks": [{"id": "hda", "driver": "ide-hd", "file": disk, "format": "raw"}],
            "input": inputs}


def keys_seen(d, name):
    """The keys of complete lines (not one the firmware is still printing)."""
    text = console_log(d, name).replace("\r", "")
    return [l[len(fwimages.KEY_PREFIX):].strip() for l in
            text[:text.rfind("\n") + 1].split("\n")
            if l.startswith(fwimages.KEY_PREFIX)]


def wait_keys(d, name, n, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = keys_seen(d, name)
        if len(got) >= n:
            return got
        time.sleep(0.1)
    raise AssertionError("only %r of %d keys arrived; console:\n%s" %
                         (keys_seen(d, name), n, console_log(d, name)[-2000:]))


def qcode(k):
    return {"type": "qcode", "data": k}


def test_seabios_reads_send_key():
    require_kvm()
    with tempfile.TemporaryDirectory(prefix="vmmd-kbd.") as tmp, Vmmd() as d:
        q = d.qmp()
        vm = firmware_vm(tmp, "kbd", [{"id": "kbd0", "driver": "usb-kbd"},
                                      {"id": "tab0", "driver": "usb-tablet"}])
        q.ok("vm-create", dict(vm, start=True))
        wait_console(d, "kbd", fwimages.KEY_READY, timeout=60)
        t0 = time.monotonic()
        q.ok("send-key", {"vm": "kbd", "keys": [qcode("h")]})
        wait_keys(d, "kbd", 1)
        latency = time.monotonic() - t0
        q.ok("send-key", {"vm": "kbd", "keys": [qcode("i")], "hold-time": 50})
        d.vmctl("send-key", "kbd", "shift-x")  # a chord: shift held while x goes down
        q.ok("send-key", {"vm": "kbd", "keys": [{"type": "number", "data": 0x02}]})  # "1"
        q.ok("send-key", {"vm": "kbd", "keys": [qcode("ret")]})
        for down in (True, False):
            q.ok("input-send-event", {"vm": "kbd", "device": "kbd0", "events": [
                {"type": "key", "data": {"down": down, "key": qcode("z")}}]})
        # a pointer event goes to the tablet, not the keyboard
        q.ok("input-send-event", {"vm": "kbd", "events": [
            {"type": "abs", "data": {"axis": "x", "value": 100}},
            {"type": "btn", "data": {"down": True, "button": "left"}}]})
        q.ok("input-send-event", {"vm": "kbd", "device": "kbd0", "events": [
            {"type": "key", "data": {"down": True, "key": qcode("y")}},
            {"type": "key", "data": {"down": False, "key": qcode("y")}}]})
        got = wait_keys(d, "kbd", 7)
        # character and BIOS scancode: h=23, i=17, X (shifted)=2D, 1=02, Enter=1C, z=2C, y=15
        assert got[:7] == ["h 23", "i 17", "X 2D", "1 02", "1C", "z 2C", "y 15"], got
        print("first key reached INT 16h after %.2fs" % latency)
        # "info usb" through QMP, as QEMU's x-query-usb: SeaBIOS addressed both devices
        text = q.ok("x-query-usb", {"vm": "kbd"})["human-readable-text"]
        lines = text.splitlines()
        assert len(lines) == 2, text
        assert lines[0].startswith("  Device 0.") and lines[0].endswith(
            ", Port 1, Speed 480 Mb/s, Product QEMU USB Keyboard, ID: kbd0"), text
        assert lines[1].endswith(", Port 2, Speed 480 Mb/s, Product QEMU USB Tablet, ID: tab0"), \
            text
        assert "Device 0.0," not in text, text
        # nothing repeats: a key held by the hold time is one key
        time.sleep(1.0)
        assert len(keys_seen(d, "kbd")) == 7, keys_seen(d, "kbd")


def run_golden_cases(q, vm):
    with open(GOLDEN) as f:
        golden = json.load(f)
    for case in golden["cases"]:
        args = dict(case["arguments"], vm=vm)
        r = q.cmd(case["execute"], args)
        assert r == case["reply"], "%s %s:\nvmmd: %r\nqemu: %r" % (
            case["execute"], json.dumps(case["arguments"]), r, case["reply"])
    return len(golden["cases"])


def test_argument_errors_match_qemu():
    require_kvm()
    with tempfile.TemporaryDirectory(prefix="vmmd-kbd.") as tmp, Vmmd() as d:
        q = d.qmp()
        vm = firmware_vm(tmp, "args", [{"id": "kbd0", "driver": "usb-kbd"},
                                       {"id": "tab0", "driver": "usb-tablet"}])
        q.ok("vm-create", dict(vm, start=True))
        n = run_golden_cases(q, "args")
        print("%d cases answered as QEMU 7.2 does" % n)
        # vmmd's own answers where QEMU's depend on display consoles
        r = q.cmd("input-send-event", {"vm": "args", "device": "nosuch", "events": []})
        assert r["error"] == {"class": "DeviceNotFound", "desc": "Device 'nosuch' not found"}, r
        r = q.cmd("input-send-event", {"vm": "args", "device": "hda", "events": []})
        assert r["error"]["desc"] == "Device 'hda' is not an input device", r
        r = q.cmd("input-send-event", {"vm": "args", "device": "kbd0", "events": [
            {"type": "abs", "data": {"axis": "x", "value": 1}}]})
        assert r["error"]["desc"] == "Input handler not found for event type abs", r
        q.ok("stop", {"vm": "args"})
        r = q.cmd("input-send-event", {"vm": "args", "events": []})
        assert r["error"] == {"class": "GenericError", "desc": "VM not running"}, r
        # send-key has no such check in QEMU
        q.ok("send-key", {"vm": "args", "keys": [qcode("a")]})


def test_vmctl_create_flags():
    if not os.path.exists(FIRMWARE):
        skip("%s is missing (Debian package seabios)" % FIRMWARE)
    with tempfile.TemporaryDirectory(prefix="vmmd-kbd.") as tmp, Vmmd() as d:
        disk = fwimages.make_keyboard_disk(os.path.join(tmp, "d.raw"))
        fw = ["--firmware", FIRMWARE]
        d.vmctl("create", "--name", "u", *fw,
                "--disk", disk + ",id=usb0,driver=usb-storage,removable",
                "--input", "usb-kbd", "--input", "usb-tablet,id=tab")
        # a QEMU command line with USB devices imports to the same keys
        r = d.vmctl("create", "--name", "q", "--print", "--from-qemu",
                    "-m 64 -device qemu-xhci -drive if=none,id=u0,file=%s,format=raw "
                    "-device usb-storage,drive=u0,removable=on -device usb-kbd,id=k "
                    "-device usb-tablet" % disk)
        imported = json.loads(r.stdout)
        assert imported["disks"] == [{"id": "u0", "driver": "usb-storage", "file": disk,
                                      "format": "raw", "removable": True}], imported
        assert imported["input"] == [{"id": "k", "driver": "usb-kbd"},
                                     {"id": "input1", "driver": "usb-tablet"}], imported
        r = d.vmctl("create", "--name", "v", *fw,
                    "--input", "usb-mouse", check=False)
        assert r.returncode == 2 and "--input 'usb-mouse'" in r.stderr, r
        r = d.vmctl("create", "--name", "w", *fw,
                    "--disk", disk + ",removable", check=False)
        assert r.returncode == 1 and "\"removable\" applies to \"usb-storage\" only" in \
            r.stderr, r


def test_no_input_device():
    require_kvm()
    with tempfile.TemporaryDirectory(prefix="vmmd-kbd.") as tmp, Vmmd() as d:
        q = d.qmp()
        vm = firmware_vm(tmp, "none", [])
        del vm["input"]
        q.ok("vm-create", dict(vm, start=True))
        r = q.cmd("send-key", {"vm": "none", "keys": [qcode("a")]})
        assert r["error"]["desc"] == "Input handler not found for event type key", r
        # as QEMU without USB
        r = q.cmd("x-query-usb", {"vm": "none"})
        assert r["error"] == {"class": "GenericError", "desc": "USB support not enabled"}, r


if __name__ == "__main__":
    main(globals())
