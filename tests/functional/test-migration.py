#!/usr/bin/env python3
"""Live migration between two vmmd daemons (docs/migration.md), each in its
own network namespace joined by a veth pair (tests/lib/two-hosts.sh), over
tcp on the private /30. The guest (tests/guests/migrate.c, after QEMU's
a-b-bootblock) rewrites a RAM pattern and checks it on every pass: after the
move it must go on counting on the destination with its nonce (no reboot)
and no "BAD page". Then the failure cases: a bandwidth cap too low to
converge (QEMU's behaviour: it keeps iterating, the VM stays on the source,
migrate_cancel ends it), cancel, the destination killed mid-stream, and a
destination that speaks another wire version; in each the VM keeps running
on the source. The event sequences are compared with QEMU 7.2's
(tests/functional/golden/migration.json, make-golden-migration.py)."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vmmdtest import TOP_SRCDIR, Vmmd, main, require_tool, skip, wait_for  # noqa: E402
from daemon_helpers import TEST_CPU, console_log, guest, wait_console  # noqa: E402

PASS = re.compile(r"migrate: pass (\d+) nonce (0x[0-9a-f]+) ok")
HOSTS = os.path.join(TOP_SRCDIR, "tests", "lib", "two-hosts.sh")
GOLDEN = os.path.join(TOP_SRCDIR, "tests", "functional", "golden", "migration.json")


def passes(text):
    return [(int(m.group(1)), m.group(2)) for m in PASS.finditer(text)]


class TwoHosts:
    """Namespaces NAME-a (10.N.1) and NAME-b (10.N.2); removed at the end."""

    def __init__(self):
        if os.geteuid() != 0:
            skip("network namespaces need root")
        require_tool("ip", "tc")
        self.name = "vmmdmig%d" % (os.getpid() % 100000)
        n = os.getpid() % 250
        self.net = "10.232.%d" % n
        self.a, self.b = self.net + ".1", self.net + ".2"

    def __enter__(self):
        subprocess.run(["sh", HOSTS, "down", self.name], check=False)
        subprocess.run(["sh", HOSTS, "up", self.name, self.net], check=True)
        return self

    def __exit__(self, *exc):
        subprocess.run(["sh", HOSTS, "down", self.name], check=False)


class NsVmmd(Vmmd):
    """A vmmd started inside a network namespace (its sockets are files: the
    test reaches them from outside)."""

    def __init__(self, ns, env=None):
        super().__init__(env=env)
        self.ns = ns

    def start(self, timeout=10.0):
        import vmmdtest
        real = vmmdtest.VMMD
        wrapper = os.path.join(self.tmp, "vmmd-in-ns")
        with open(wrapper, "w") as f:
            f.write("#!/bin/sh\nexec ip netns exec %s %s \"$@\"\n" % (self.ns, real))
        os.chmod(wrapper, 0o755)
        vmmdtest.VMMD = wrapper
        try:
            return super().start(timeout)
        finally:
            vmmdtest.VMMD = real


def vm_def(name="m1", **extra):
    d = {"name": name, "vcpus": 1, "memory": "32M", "cpu": TEST_CPU,
         "boot": {"kernel": guest("migrate")}}
    d.update(extra)
    return d


def boot_source(src, name="m1"):
    q = src.qmp()
    q.ok("vm-create", dict(vm_def(name), start=True))
    wait_console(src, name, "migrate: pass 32 ", timeout=90)
    return q


def incoming(dst, host, port, name="m1"):
    q = dst.qmp()
    q.ok("vm-create", dict(vm_def(name), incoming=True, start=True))
    assert q.ok("query-status", vm=name)["status"] == "inmigrate"
    q.ok("migrate-incoming", vm=name, uri="tcp:%s:%d" % (host, port))
    return q


def migration_events(q, vm):
    """The migration's events on @q: from its "setup" on."""
    evs = [e for e in q.events + q.seen
           if e["event"] in ("MIGRATION", "MIGRATION_PASS", "STOP", "RESUME")
           and e["data"].get("vm") == vm]
    evs.sort(key=lambda e: (e["timestamp"]["seconds"], e["timestamp"]["microseconds"]))
    first = next(i for i, e in enumerate(evs)
                 if e["event"] == "MIGRATION" and e["data"]["status"] == "setup")
    return evs[first:]


def wait_status(q, vm, statuses, timeout=120):
    """Wait for a MIGRATION event of @vm with one of @statuses (kept in q.seen)."""
    if not hasattr(q, "seen"):
        q.seen = []
    ev = q.event("MIGRATION", timeout=timeout,
                 pred=lambda e: e["data"].get("vm") == vm and e["data"]["status"] in statuses)
    q.seen.append(ev)
    return ev["data"]["status"]


def still_counting(d, name, after, timeout=60):
    """The guest on @d prints a pass beyond @after, with no BAD page."""
    wait_for(lambda: any(p > after for p, _ in passes(console_log(d, name))), timeout,
             what="the guest to go on counting on %s" % name)
    text = console_log(d, name)
    assert "BAD page" not in text, text[-2000:]


def counts_on_moved(src, dst, nonce, name="m1"):
    """After a completed migration: the guest counts on at @dst past the
    source's last pass, with the source's @nonce (it did not reboot)."""
    still_counting(dst, name, passes(console_log(src, name))[-1][0])
    after = console_log(dst, name)
    assert all(n == nonce for _, n in passes(after)) and "migrate: boot" not in after, \
        after[-1000:]


def shape(events):
    """Events as the golden file compares them: names and data without "vm",
    MIGRATION_PASS left out (how many passes depends on the guest)."""
    return [{"event": e["event"], "data": {k: v for k, v in e["data"].items() if k != "vm"}}
            for e in events if e["event"] != "MIGRATION_PASS"]


def check_passes(events):
    """MIGRATION_PASS counts 1, 2, ... and, as in QEMU, the last sync follows STOP."""
    nums = [e["data"]["pass"] for e in events if e["event"] == "MIGRATION_PASS"]
    assert nums == list(range(1, len(nums) + 1)) and len(nums) >= 2, nums
    names = [e["event"] for e in events]
    assert names.index("STOP") < len(names) - 1 - names[::-1].index("MIGRATION_PASS"), names


def test_migrate_between_namespaces():
    golden = json.load(open(GOLDEN))
    with TwoHosts() as h, NsVmmd(h.name + "-a") as src, NsVmmd(h.name + "-b") as dst:
        qs = boot_source(src)
        qd = incoming(dst, h.b, 4444)
        # QEMU's defaults, and shapes of the parameters.
        params = qs.ok("query-migrate-parameters", vm="m1")
        tls_golden = json.load(open(GOLDEN.replace("migration.json", "migration-tls.json")))
        caps_golden = json.load(open(GOLDEN.replace("migration.json", "migration-caps.json")))
        psk_golden = json.load(open(GOLDEN.replace("migration.json", "migration-psk.json")))
        xbzrle_golden = json.load(open(GOLDEN.replace("migration.json",
                                                      "migration-xbzrle.json")))
        announce_golden = json.load(open(GOLDEN.replace("migration.json", "announce.json")))
        assert params == dict(golden["default-parameters"],
                              **tls_golden["default-parameters"],
                              **caps_golden["default-parameters"],
                              **announce_golden["default-parameters"],
                              **{"tls-authz": psk_golden["objects"]["default-tls-authz"],
                                 "xbzrle-cache-size":
                                     xbzrle_golden["default-xbzrle-cache-size"]}), params
        assert qs.ok("query-migrate", vm="m1") == golden["query-migrate-before"]
        # Plenty of bandwidth and downtime so this guest (~600 MB/s of dirty RAM) converges.
        qs.ok("migrate-set-parameters", vm="m1", **{"max-bandwidth": 8 << 30,
                                                  "downtime-limit": 2000})
        nonce = passes(console_log(src, "m1"))[-1][1]
        qs.ok("migrate", vm="m1", uri="tcp:%s:4444" % h.b)
        assert wait_status(qs, "m1", ("completed", "failed")) == "completed", \
            qs.ok("query-migrate", vm="m1")
        assert wait_status(qd, "m1", ("completed", "failed")) == "completed", \
            qd.ok("query-migrate", vm="m1")
        last_src = passes(console_log(src, "m1"))[-1][0]
        info = qs.ok("query-migrate", vm="m1")
        assert sorted(info) == golden["query-migrate-completed-keys"], info
        assert info["ram"]["total"] == 32 << 20 and info["ram"]["remaining"] == 0, info
        assert info["ram"]["transferred"] > 0 and info["ram"]["dirty-sync-count"] >= 2, info
        assert 0 < info["downtime"] <= info["total-time"], info
        # Run states: postmigrate on the source, running on the destination.
        assert qs.ok("query-status", vm="m1")["status"] == golden["src-status-after"]
        assert qd.ok("query-status", vm="m1")["status"] == golden["dst-status-after"]
        err = qs.cmd("cont", vm="m1")
        still_counting(dst, "m1", last_src)
        after = console_log(dst, "m1")
        assert "migrate: boot" not in after, "the guest rebooted: " + after[-1000:]
        assert all(n == nonce for _, n in passes(after)), (nonce, after[-500:])
        # The source's guest stopped for good.
        time.sleep(0.5)
        assert passes(console_log(src, "m1"))[-1][0] == last_src
        assert "error" in err, err
        # Event sequences as QEMU 7.2's.
        time.sleep(0.3)
        qs.ok("query-status", vm="m1")
        qd.ok("query-status", vm="m1")
        assert shape(migration_events(qs, "m1")) == shape(golden["src-events"]), \
            migration_events(qs, "m1")
        check_passes(migration_events(qs, "m1"))
        check_passes(golden["src-events"])
        assert shape(migration_events(qd, "m1")) == shape(golden["dst-events"]), \
            migration_events(qd, "m1")
        again = qd.cmd("migrate-incoming", vm="m1", uri="tcp:%s:4445" % h.b)
        assert "error" in again, again
        # The destination's persisted definition no longer waits for a migration.
        with open(os.path.join(dst.state_dir, "vms", "m1.json")) as f:
            assert "incoming" not in json.load(f)


TICK = re.compile(r"counter: tick (\d+) nonce (0x[0-9a-f]+) disk ok")


def test_migrate_with_disk():
    """The counter guest (tests/guests/counter.c) with its virtio-blk disk on an
    image file both daemons open: the source flushes and releases the image
    at the hand-over, the destination opens it; the guest's own check (disk
    == RAM) holds and its counter and nonce go on."""
    with TwoHosts() as h, NsVmmd(h.name + "-a") as src, NsVmmd(h.name + "-b") as dst:
        disk = os.path.join(src.tmp, "shared.raw")
        with open(disk, "wb") as f:
            f.truncate(1 << 20)
        d = {"name": "c1", "vcpus": 1, "memory": "32M", "cpu": TEST_CPU,
             "boot": {"kernel": guest("counter")},
             "disks": [{"id": "vda", "file": disk, "format": "raw"}]}
        qs = src.qmp()
        qs.ok("vm-create", dict(d, start=True))
        wait_console(src, "c1", "counter: tick 3 ", timeout=90)
        qd = dst.qmp()
        qd.ok("vm-create", dict(d, incoming=True, start=True))
        qd.ok("migrate-incoming", vm="c1", uri="tcp:%s:4450" % h.b)
        qs.ok("migrate", vm="c1", uri="tcp:%s:4450" % h.b)
        assert wait_status(qs, "c1", ("completed", "failed")) == "completed", \
            qs.ok("query-migrate", vm="c1")
        assert wait_status(qd, "c1", ("completed", "failed")) == "completed"
        before = [(int(m.group(1)), m.group(2)) for m in TICK.finditer(console_log(src, "c1"))]
        wait_console(dst, "c1", "counter: tick %d " % (before[-1][0] + 2), timeout=60)
        after = console_log(dst, "c1")
        ticks = [(int(m.group(1)), m.group(2)) for m in TICK.finditer(after)]
        assert "MISMATCH" not in after and "counter: boot" not in after, after[-1500:]
        assert ticks[0][0] in (before[-1][0] + 1, before[-1][0] + 2), (before[-1], ticks[:2])
        assert all(n == before[-1][1] for _, n in ticks), (before[-1], ticks[:3])
        # The destination holds the image now: the source's copy cannot take it back.
        with open(disk, "rb") as f:
            assert int.from_bytes(f.read(8), "little") >= ticks[0][0]


def test_destination_cannot_open_disk():
    """The destination fails to open its disk after GO: it says so (DONE with
    the error), the source takes its image back and resumes; the guest's
    disk check still holds."""
    with TwoHosts() as h, NsVmmd(h.name + "-a") as src, NsVmmd(h.name + "-b") as dst:
        disk = os.path.join(src.tmp, "shared.raw")
        with open(disk, "wb") as f:
            f.truncate(1 << 20)
        d = {"name": "c1", "vcpus": 1, "memory": "32M", "cpu": TEST_CPU,
             "boot": {"kernel": guest("counter")},
             "disks": [{"id": "vda", "file": disk, "format": "raw"}]}
        qs = src.qmp()
        qs.ok("vm-create", dict(d, start=True))
        wait_console(src, "c1", "counter: tick 3 ", timeout=90)
        qd = dst.qmp()
        gone = dict(d, disks=[{"id": "vda", "file": disk + ".missing", "format": "raw"}])
        qd.ok("vm-create", dict(gone, incoming=True, start=True))
        qd.ok("migrate-incoming", vm="c1", uri="tcp:%s:4451" % h.b)
        qs.ok("migrate", vm="c1", uri="tcp:%s:4451" % h.b)
        assert wait_status(qs, "c1", ("completed", "failed")) == "failed"
        desc = qs.ok("query-migrate", vm="c1")["error-desc"]
        assert "destination failed" in desc and ".missing" in desc, desc
        assert wait_status(qd, "c1", ("completed", "failed")) == "failed"
        assert qd.ok("query-status", vm="c1")["status"] == "shutdown"
        assert qs.ok("query-status", vm="c1")["status"] == "running"
        last = [int(m.group(1)) for m in TICK.finditer(console_log(src, "c1"))][-1]
        wait_console(src, "c1", "counter: tick %d " % (last + 2), timeout=180)
        assert "MISMATCH" not in console_log(src, "c1")
        # The source holds its image again: a second writer is refused.
        other = dict(d, name="c2")
        err = qd.cmd("vm-create", dict(other, start=True))
        assert "error" in err and "locked" in err["error"]["desc"], err


def test_bandwidth_too_low_then_cancel():
    with TwoHosts() as h, NsVmmd(h.name + "-a") as src, NsVmmd(h.name + "-b") as dst:
        qs = boot_source(src)
        qd = incoming(dst, h.b, 4446)
        qs.ok("migrate-set-parameters", vm="m1", **{"max-bandwidth": 4 << 20})
        qs.ok("migrate", vm="m1", uri="tcp:%s:4446" % h.b)
        # As QEMU without auto-converge: it keeps iterating and never stops the VM.
        wait_for(lambda: qs.ok("query-migrate", vm="m1").get("ram", {})
                 .get("dirty-sync-count", 0) >= 3, 120, what="three passes")
        info = qs.ok("query-migrate", vm="m1")
        assert info["status"] == "active", info
        assert info["ram"]["dirty-pages-rate"] > 0 and info["expected-downtime"] > 300, info
        assert qs.ok("query-status", vm="m1")["status"] == "running"
        before = passes(console_log(src, "m1"))[-1][0]
        still_counting(src, "m1", before)
        qs.ok("migrate_cancel", vm="m1")
        assert wait_status(qs, "m1", ("cancelled", "failed", "completed")) == "cancelled"
        assert [e["data"]["status"] for e in migration_events(qs, "m1")
                if e["event"] == "MIGRATION"][-2:] == ["cancelling", "cancelled"]
        assert qs.ok("query-status", vm="m1")["status"] == "running"
        still_counting(src, "m1", passes(console_log(src, "m1"))[-1][0])
        # The destination saw the source go and built nothing.
        assert wait_status(qd, "m1", ("failed", "completed")) == "failed"
        assert qd.ok("query-status", vm="m1")["status"] == "shutdown"
        assert "error-desc" in qd.ok("query-migrate", vm="m1")


def test_destination_killed_mid_stream():
    with TwoHosts() as h, NsVmmd(h.name + "-a") as src, NsVmmd(h.name + "-b") as dst:
        qs = boot_source(src)
        incoming(dst, h.b, 4447)
        qs.ok("migrate-set-parameters", vm="m1", **{"max-bandwidth": 4 << 20})
        qs.ok("migrate", vm="m1", uri="tcp:%s:4447" % h.b)
        wait_for(lambda: qs.ok("query-migrate", vm="m1").get("ram", {})
                 .get("transferred", 0) > 1 << 20, 60, what="1 MiB sent")
        dst.proc.send_signal(signal.SIGKILL)
        dst.proc.wait()
        assert wait_status(qs, "m1", ("failed", "completed", "cancelled")) == "failed"
        info = qs.ok("query-migrate", vm="m1")
        assert info["status"] == "failed" and info["error-desc"], info
        assert qs.ok("query-status", vm="m1")["status"] == "running"
        still_counting(src, "m1", passes(console_log(src, "m1"))[-1][0])


def test_source_killed_mid_stream():
    with TwoHosts() as h, NsVmmd(h.name + "-a") as src, NsVmmd(h.name + "-b") as dst:
        qs = boot_source(src)
        qd = incoming(dst, h.b, 4452)
        qs.ok("migrate-set-parameters", vm="m1", **{"max-bandwidth": 4 << 20})
        qs.ok("migrate", vm="m1", uri="tcp:%s:4452" % h.b)
        wait_for(lambda: qd.ok("query-migrate", vm="m1").get("ram", {})
                 .get("transferred", 0) > 1 << 20, 60, what="1 MiB received")
        src.proc.send_signal(signal.SIGKILL)
        src.proc.wait()
        assert wait_status(qd, "m1", ("failed", "completed")) == "failed"
        assert "error-desc" in qd.ok("query-migrate", vm="m1")
        assert qd.ok("query-status", vm="m1")["status"] == "shutdown"
        assert qd.ok("query-vms", vm="m1")[0]["status"] == "shutdown"


def test_network_cut():
    """The link cut mid-stream (slow: TCP gives up after 30 s): both sides end
    "failed", the VM runs on at the source and nowhere else."""
    if os.environ.get("VMMD_SLOW_TESTS") != "1":
        skip("needs VMMD_SLOW_TESTS=1 (waits for the 30 s link timeout)")
    with TwoHosts() as h, NsVmmd(h.name + "-a") as src, NsVmmd(h.name + "-b") as dst:
        qs = boot_source(src)
        qd = incoming(dst, h.b, 4453)
        qs.ok("migrate-set-parameters", vm="m1", **{"max-bandwidth": 4 << 20})
        qs.ok("migrate", vm="m1", uri="tcp:%s:4453" % h.b)
        wait_for(lambda: qs.ok("query-migrate", vm="m1").get("ram", {})
                 .get("transferred", 0) > 1 << 20, 60, what="1 MiB sent")
        subprocess.run(["sh", HOSTS, "cut", h.name], check=True)
        assert wait_status(qs, "m1", ("failed", "completed"), timeout=120) == "failed"
        assert qs.ok("query-status", vm="m1")["status"] == "running"
        assert wait_status(qd, "m1", ("failed", "completed"), timeout=120) == "failed"
        assert qd.ok("query-status", vm="m1")["status"] == "shutdown"
        still_counting(src, "m1", passes(console_log(src, "m1"))[-1][0])


def test_other_cpu_model():
    """A destination defined with another CPU model refuses the state after
    GO ("CPU model mismatch"): the source resumes, nothing runs there."""
    with TwoHosts() as h, NsVmmd(h.name + "-a") as src, NsVmmd(h.name + "-b") as dst:
        qs = boot_source(src)
        qd = dst.qmp()
        qd.ok("vm-create", dict(vm_def(), cpu="baseline,-cx16,-xsave", incoming=True, start=True))
        qd.ok("migrate-incoming", vm="m1", uri="tcp:%s:4454" % h.b)
        qs.ok("migrate-set-parameters", vm="m1", **{"max-bandwidth": 8 << 30,
                                                  "downtime-limit": 2000})
        qs.ok("migrate", vm="m1", uri="tcp:%s:4454" % h.b)
        assert wait_status(qs, "m1", ("failed", "completed")) == "failed"
        desc = qs.ok("query-migrate", vm="m1")["error-desc"]
        assert "CPU model mismatch" in desc, desc
        assert qs.ok("query-status", vm="m1")["status"] == "running"
        assert wait_status(qd, "m1", ("failed", "completed")) == "failed"
        assert qd.ok("query-status", vm="m1")["status"] == "shutdown"
        still_counting(src, "m1", passes(console_log(src, "m1"))[-1][0])


def test_other_wire_version():
    with TwoHosts() as h, NsVmmd(h.name + "-a") as src, \
            NsVmmd(h.name + "-b", env={"VMMD_MIGRATION_WIRE_VERSION": "3"}) as dst:
        qs = boot_source(src)
        qd = incoming(dst, h.b, 4448)
        qs.ok("migrate", vm="m1", uri="tcp:%s:4448" % h.b)
        assert wait_status(qs, "m1", ("failed", "completed")) == "failed"
        desc = qs.ok("query-migrate", vm="m1")["error-desc"]
        assert "wire version 3" in desc and "version 1" in desc, desc
        assert qs.ok("query-status", vm="m1")["status"] == "running"
        assert wait_status(qd, "m1", ("failed", "completed")) == "failed"
        desc = qd.ok("query-migrate", vm="m1")["error-desc"]
        assert "version 1" in desc and "accepts 2 and 3" in desc, desc
        still_counting(src, "m1", passes(console_log(src, "m1"))[-1][0])


def test_previous_wire_version_accepted():
    """A destination one wire version ahead takes the VM (N-1 is accepted)."""
    with TwoHosts() as h, NsVmmd(h.name + "-a") as src, \
            NsVmmd(h.name + "-b", env={"VMMD_MIGRATION_WIRE_VERSION": "2"}) as dst:
        qs = boot_source(src)
        qd = incoming(dst, h.b, 4449)
        qs.ok("migrate-set-parameters", vm="m1", **{"max-bandwidth": 8 << 30,
                                                  "downtime-limit": 2000})
        last = passes(console_log(src, "m1"))[-1][0]
        qs.ok("migrate", vm="m1", uri="tcp:%s:4449" % h.b)
        assert wait_status(qs, "m1", ("failed", "completed")) == "completed", \
            qs.ok("query-migrate", vm="m1")
        assert wait_status(qd, "m1", ("failed", "completed")) == "completed"
        still_counting(dst, "m1", last)


def test_nobody_listening():
    """As QEMU: migrate answers at once; the failed connect is a "failed" status."""
    with Vmmd() as src:
        qs = boot_source(src)
        qs.ok("migrate", vm="m1", uri="unix:" + os.path.join(src.tmp, "nobody.sock"))
        assert wait_status(qs, "m1", ("failed", "completed")) == "failed"
        desc = qs.ok("query-migrate", vm="m1")["error-desc"]
        assert "cannot connect" in desc and "nobody.sock" in desc, desc
        assert qs.ok("query-status", vm="m1")["status"] == "running"
        err = qs.cmd("migrate", vm="m1", uri="ftp:x")
        assert "not supported" in err["error"]["desc"], err
        still_counting(src, "m1", passes(console_log(src, "m1"))[-1][0])


def kvm_vms(d):
    """How many KVM VMs daemon @d holds (its anon_inode:kvm-vm fds)."""
    n = 0
    fds = "/proc/%d/fd" % d.proc.pid
    for fd in os.listdir(fds):
        try:
            n += os.readlink(os.path.join(fds, fd)) == "anon_inode:kvm-vm"
        except OSError:
            pass
    return n


def test_destination_built_before_the_source_connects():
    """migrate-incoming does the kernel's share of the VM's build (its KVM
    VM, RAM memslots, IRQ routing) before a source connects, as QEMU's
    destination is built before it listens: the hand-over's pause does not
    wait for it. A destination that never gets its source frees it."""
    with Vmmd() as dst:
        qd = dst.qmp()
        qd.ok("vm-create", dict(vm_def(), incoming=True, start=True))
        assert kvm_vms(dst) == 0
        qd.ok("migrate-incoming", vm="m1", uri="unix:" + os.path.join(dst.tmp, "m.sock"))
        wait_for(lambda: kvm_vms(dst) == 1, 10, what="the KVM VM built ahead")
        qd.ok("vm-delete", vm="m1")
        wait_for(lambda: kvm_vms(dst) == 0, 10, what="the KVM VM built ahead to be freed")


def test_hostile_source():
    """What a destination reads is bounded and checked: a peer that is not a
    vmmd, a record over the limit, a page outside RAM, a RAM size that is not
    the VM's, a stream without state, xbzrle changes that run past their
    page or their record. Each ends that incoming migration
    "failed" with the cause; the daemon lives on and builds nothing."""
    import struct
    hdr = b"VMMDMIG\n" + struct.pack("<II", 1, 0) + b"0.1.0".ljust(48, b"\0")

    def rec(t, payload=b"", count=0):
        return struct.pack("<IIQ", t, count, len(payload)) + payload

    cfg = json.dumps({"memory-size": 32 << 20}).encode()
    cases = [
        ("not a vmmd", b"GET / HTTP/1.0\r\n\r\n" + b"x" * 64, "not a vmmd migration source"),
        ("huge record", hdr + rec(1, cfg) + struct.pack("<IIQ", 4, 0, 1 << 40),
         "over the limit"),
        ("page outside RAM", hdr + rec(1, cfg) +
         rec(2, struct.pack("<Q", 64 << 20) + b"\0" * 4096, 1), "outside the VM"),
        ("wrong RAM size", hdr + rec(1, json.dumps({"memory-size": 1 << 20}).encode()),
         "bytes of RAM"),
        ("no state", hdr + rec(1, cfg) + rec(6), "without RAM, manifest or state"),
        ("bad record", hdr + rec(1, cfg) + rec(99), "unknown record type"),
        # xbzrle (13): 4096 bytes unchanged then one more changed: past the page
        ("xbzrle past the page", hdr + rec(1, cfg) +
         rec(13, struct.pack("<QH", 0, 4) + b"\x80\x20\x01\xaa", 1), "malformed xbzrle page"),
        ("xbzrle outside RAM", hdr + rec(1, cfg) +
         rec(13, struct.pack("<QH", 64 << 20, 3) + b"\x00\x01\xaa", 1), "outside the VM"),
        ("xbzrle cut short", hdr + rec(1, cfg) +
         rec(13, struct.pack("<QH", 0, 100) + b"\x00\x01\xaa", 1), "malformed xbzrle record"),
    ]
    with Vmmd() as dst:
        qd = dst.qmp()
        for i, (what, data, cause) in enumerate(cases):
            name = "h%d" % i
            sock = os.path.join(dst.tmp, name + ".sock")
            qd.ok("vm-create", dict(vm_def(name), incoming=True, start=True))
            qd.ok("migrate-incoming", vm=name, uri="unix:" + sock)
            s = socket.socket(socket.AF_UNIX)
            wait_for(lambda: os.path.exists(sock), 10, what="listener")
            s.connect(sock)
            try:
                s.sendall(data)
                s.shutdown(socket.SHUT_WR)
                s.settimeout(10)
                while s.recv(65536):
                    pass
            except OSError:
                pass
            s.close()
            assert wait_status(qd, name, ("failed", "completed")) == "failed", what
            desc = qd.ok("query-migrate", vm=name)["error-desc"]
            assert cause in desc, (what, desc)
            # the VM is torn down just after the migration fails (slow under ASan)
            wait_for(lambda: qd.ok("query-status", vm=name)["status"] == "shutdown", 20,
                     what="%s: VM shut down" % what)
            wait_for(lambda: kvm_vms(dst) == 0, 20, what="%s: no KVM VM left" % what)
        assert qd.ok("query-version")


def test_vmctl_migrate_over_unix():
    """vmctl incoming / vmctl migrate between two daemons on one host over a
    unix: socket, with progress lines and the result."""
    with Vmmd() as src, Vmmd() as dst:
        qs = boot_source(src)
        qd = dst.qmp()
        qd.ok("vm-create", dict(vm_def(), incoming=True, start=True))
        sock = os.path.join(dst.tmp, "mig.sock")
        p = dst.vmctl("incoming", "m1", "unix:" + sock)
        assert "waiting for a migration" in p.stdout, p.stdout
        last = passes(console_log(src, "m1"))[-1][0]
        p = src.vmctl("migrate", "m1", "unix:" + sock, "--max-bandwidth", "8G",
                      "--downtime-limit", "2000", timeout=120)
        lines = p.stdout.splitlines()
        assert any(re.match(r"m1: active +pass \d+ +sent +[\d.]+ MiB", x) for x in lines), lines
        assert re.match(r"m1: migrated in \d+ ms \(downtime \d+ ms, [\d.]+ MiB sent\)",
                        lines[-1]), lines
        assert qs.ok("query-status", vm="m1")["status"] == "postmigrate"
        still_counting(dst, "m1", last)
        # A second migration of the postmigrate VM is refused; vmctl says why.
        p = src.vmctl("migrate", "m1", "unix:" + sock, check=False)
        assert p.returncode == 1 and "postmigrate" in p.stderr, (p.returncode, p.stderr)
        p = src.vmctl("migrate", "m1", check=False)
        assert p.returncode == 2, p.returncode


if __name__ == "__main__":
    main(globals())
