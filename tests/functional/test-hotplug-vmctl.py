#!/usr/bin/env python3
"""vmctl disk add|remove|resize and vmctl nic add|remove against a VM whose
test guest ejects on request (tests/guests/hotplug.c): the device appears
in query-pci and in the persisted definition, removal waits for
DEVICE_DELETED and frees the backend, a failed add leaves no backend, and
a guest that never ejects makes 'remove' time out with the removal
pending."""

import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vmmdtest import Vmmd, main, require_tool  # noqa: E402
from daemon_helpers import console_log, guest, vm_def  # noqa: E402


def wait_console(d, vm, text, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in console_log(d, vm).replace("\r\n", "\n"):
            return
        time.sleep(0.05)
    raise AssertionError("console lacks %r: %r" % (text, console_log(d, vm)[-2000:]))


def definition(d, name):
    with open(os.path.join(d.state_dir, "vms", name + ".json")) as f:
        return json.load(f)


def pci_ids(q, vm):
    return sorted(x["qdev_id"] for x in q.ok("query-pci", {"vm": vm})[0]["devices"])


def test_disk_and_nic_commands():
    require_tool("qemu-img")
    with tempfile.TemporaryDirectory(prefix="vmmd-hpv.") as tmp:
        img = os.path.join(tmp, "d.qcow2")
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", img, "8M"], check=True)
        with Vmmd() as d:
            q = d.qmp()
            q.ok("vm-create", dict(vm_def("v", guest("hotplug"), memory="64M"), start=True))
            wait_console(d, "v", "hp: ready\n")
            p = d.vmctl("disk", "add", "v", "data1", img, "--format", "qcow2", "--serial",
                        "SER1", "--cache", "none", "--aio", "native")
            assert p.stdout == "v: disk data1 added\n", p.stdout
            wait_console(d, "v", "hp: io ok round 0 capacity 16384\n")
            assert "data1" in pci_ids(q, "v")
            disks = definition(d, "v").get("disks", [])
            assert [x["id"] for x in disks] == ["data1"] and disks[0]["format"] == "qcow2"
            # the cache mode and the engine are kept for the next start
            assert disks[0]["cache"] == "none" and disks[0]["aio"] == "native", disks
            # native without O_DIRECT: the file node's refusal, QEMU's words
            p = d.vmctl("disk", "add", "v", "data2", img, "--format", "qcow2", "--aio",
                        "native", check=False)
            assert p.returncode == 1 and "aio=native was specified, but it requires " \
                "cache.direct=on, which was not specified." in p.stderr, p.stderr
            # a second disk with the same id fails and leaves no node behind
            p = d.vmctl("disk", "add", "v", "data1", img, check=False)
            assert p.returncode == 1, (p.returncode, p.stderr)
            assert "Duplicate nodes with node-name='node-data1'" in p.stderr, p.stderr
            assert "data1" in pci_ids(q, "v")
            p = d.vmctl("disk", "resize", "v", "data1", "16M")
            assert p.stdout == "v: disk data1 resized\n"
            assert subprocess.run(["qemu-img", "info", "-U", "--output=json", img],
                                  capture_output=True, text=True, check=True).stdout.count(
                                      '"virtual-size": 16777216') == 1
            p = d.vmctl("disk", "remove", "v", "data1")
            assert p.stdout == "v: disk data1 removed\n", p.stdout
            assert "data1" not in pci_ids(q, "v")
            assert definition(d, "v").get("disks", []) == []
            # the node is gone: the image can be opened again
            r = q.cmd("blockdev-del", {"vm": "v", "node-name": "node-data1"})
            assert r["error"]["desc"] == "Failed to find node with node-name='node-data1'", r

            p = d.vmctl("nic", "add", "v", "eth9", "--model", "e1000", "--mac",
                        "52:54:00:aa:bb:cc")
            assert p.stdout == "v: nic eth9 added\n", p.stdout
            wait_console(d, "v", "hp: slot ")
            nics = definition(d, "v").get("nics", [])
            assert nics and nics[0]["id"] == "eth9" and nics[0]["mac"] == "52:54:00:aa:bb:cc"
            # the guest ignores the first request for a NIC: remove times out, stays pending
            p = d.vmctl("nic", "remove", "v", "eth9", "--timeout", "1", check=False)
            assert p.returncode == 5 and "pending" in p.stderr, (p.returncode, p.stderr)
            p = d.vmctl("nic", "remove", "v", "eth9")
            assert p.stdout == "v: nic eth9 removed\n", p.stdout
            assert definition(d, "v").get("nics", []) == []
            r = q.cmd("netdev_del", {"vm": "v", "id": "netdev-eth9"})
            assert r["error"]["class"] == "DeviceNotFound", r

            # a failed device_add undoes the netdev: no netdev-bad is left
            p = d.vmctl("nic", "add", "v", "bad", "--addr", "0x0", check=False)
            assert p.returncode == 1 and "not available" in p.stderr, p.stderr
            r = q.cmd("netdev_del", {"vm": "v", "id": "netdev-bad"})
            assert r["error"]["class"] == "DeviceNotFound", r
            p = d.vmctl("disk", "add", "v", "x", os.path.join(tmp, "missing.img"), check=False)
            assert p.returncode == 1, p
            p = d.vmctl("disk", "frob", "v", check=False)
            assert p.returncode == 2, p


if __name__ == "__main__":
    main(globals())
