#!/usr/bin/env python3
"""set_link, replayed from QEMU 7.2's golden trace (golden/set-link.json,
make-golden-set-link.py) with the net-echo guest (tests/guests/net-echo.c)
on a tap in a network namespace of the test's own: the answers, no frame
answered while the link is down and none of those reaching the guest
later; a NIC named by its netdev's id; the link state carried by a
migration; vmctl nic link."""

import importlib.util
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from vmmdtest import Vmmd, main, wait_for  # noqa: E402

_spec = importlib.util.spec_from_file_location("upgrade", os.path.join(HERE, "test-upgrade.py"))
upgrade = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(upgrade)

TOP_SRCDIR = os.environ.get("top_srcdir", os.path.join(HERE, "..", ".."))
GOLDEN = os.path.join(TOP_SRCDIR, "tests", "functional", "golden", "set-link.json")


def golden():
    with open(GOLDEN) as f:
        return json.load(f)


def vm_def():
    d = upgrade.echo_def("e1", "vl0")
    d["nics"][0]["id"] = "nic0"
    return d


def set_link(q, name, up):
    r = q.cmd("set_link", {"vm": "e1", "name": name, "up": up})
    r.pop("id", None)
    return r


def no_answers(e, n=3):
    """Send @n frames; the seqs of those answered within a second each."""
    got = []
    for _ in range(n):
        seq = e.send()
        e.drain(1.0)
        if seq in e.answers:
            got.append(seq)
    return got


def test_set_link_as_qemu():
    g = golden()
    with upgrade.OwnNetns() as ns, Vmmd() as d:
        ns.tap("vl0")
        q = d.qmp()
        q.ok("vm-create", dict(vm_def(), start=True))
        e = upgrade.Echo("vl0")
        try:
            e.exchange()
            for step in g["set_link"]:
                a = step["arguments"]
                if a.get("name") == "n0":
                    continue  # a netdev's id: test_netdev_id_and_e1000
                r = q.cmd("set_link", dict(a, vm="e1"))
                r.pop("id", None)
                assert r == step["reply"], (a, r, step["reply"])
            before = e.exchange()[1]
            assert set_link(q, "nic0", False) == {"return": {}}
            assert no_answers(e) == [a for a in g["answered-while-down"] if a is not None]
            assert set_link(q, "nic0", True) == {"return": {}}
            after = e.exchange(timeout=10)[1]
            assert after - before == g["count-after-up-minus-before-down"], (before, after)
        finally:
            e.close()


def test_netdev_id_and_e1000():
    """A NIC named by the netdev_add id it uses (QEMU's other name for it),
    on both NIC models; a netdev no NIC uses is not found."""
    with upgrade.OwnNetns() as ns, Vmmd() as d:
        ns.tap("vl0")
        q = d.qmp()
        q.ok("vm-create", dict(vm_def(), start=True))
        for i, model in enumerate(("e1000", "virtio-net-pci")):
            q.ok("netdev_add", {"vm": "e1", "type": "user", "id": "n%d" % i})
            q.ok("device_add", {"vm": "e1", "driver": model, "id": "hot%d" % i,
                                "netdev": "n%d" % i})
            for up in (False, True):
                assert set_link(q, "n%d" % i, up) == {"return": {}}
                assert set_link(q, "hot%d" % i, up) == {"return": {}}
        q.ok("netdev_add", {"vm": "e1", "type": "user", "id": "lonely"})
        r = set_link(q, "lonely", False)
        assert r["error"] == {"class": "DeviceNotFound", "desc": "Device 'lonely' not found"}, r


def test_migration_carries_a_link_down():
    """A link set down stays down on the destination (the NIC's state
    carries it); set up there, frames flow again."""
    with upgrade.OwnNetns() as ns, Vmmd() as src, Vmmd() as dst:
        ns.tap("vl0")
        qs, qd = src.qmp(), dst.qmp()
        qs.ok("vm-create", dict(vm_def(), start=True))
        e = upgrade.Echo("vl0")
        try:
            e.exchange()
            assert set_link(qs, "nic0", False) == {"return": {}}
            qd.ok("vm-create", dict(vm_def(), incoming=True, start=True))
            sock = os.path.join(dst.tmp, "mig.sock")
            qd.ok("migrate-incoming", vm="e1", uri="unix:" + sock)
            qs.ok("migrate", vm="e1", uri="unix:" + sock)
            wait_for(lambda: qd.ok("query-migrate", vm="e1").get("status") == "completed", 60,
                     what="the migration to complete")
            assert no_answers(e) == []
            assert set_link(qd, "nic0", True) == {"return": {}}
            e.exchange(timeout=10)
        finally:
            e.close()


def test_vmctl_nic_link():
    with upgrade.OwnNetns() as ns, Vmmd() as d:
        ns.tap("vl0")
        q = d.qmp()
        q.ok("vm-create", dict(vm_def(), start=True))
        e = upgrade.Echo("vl0")
        try:
            e.exchange()
            p = d.vmctl("nic", "link", "e1", "nic0", "down")
            assert p.stdout.strip() == "e1: nic nic0 link down", p.stdout
            assert no_answers(e, 2) == []
            d.vmctl("nic", "link", "e1", "nic0", "up")
            e.exchange(timeout=10)
            p = d.vmctl("nic", "link", "e1", "nic0", "sideways", check=False)
            assert p.returncode == 2 and "up or down" in p.stderr, (p.returncode, p.stderr)
            p = d.vmctl("nic", "link", "e1", "nope", "down", check=False)
            assert p.returncode not in (0, 2) and "Device 'nope' not found" in p.stderr, \
                (p.returncode, p.stderr)
        finally:
            e.close()


if __name__ == "__main__":
    main(globals())
