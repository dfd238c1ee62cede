#!/usr/bin/env python3
"""vmmd's NBD server (daemon/nbd-server.c, docs/nbd-server.md).

- QEMU 7.2's answers replayed (golden/nbd-server.json, recorded by
  make-golden-nbd-server.py) on a VM's own socket: nbd-server-start/-add/
  -remove/-stop, block-export-add/-del, query-block-exports and
  BLOCK_EXPORT_DELETED, the NBD negotiation a raw client sees, and
  max-connections; the differences vmmd makes on purpose are listed in
  DIFFERENCES and asserted as vmmd's own answers.
- QEMU's NBD client (qemu-io, qemu-img) reads and writes a running VM's
  disk through an export, as the image holds it.
- Hostile clients: one that never negotiates is dropped after
  NBD_HANDSHAKE_SECONDS, a bad magic or an oversized write drops the
  client, a request past the end is refused, and meanwhile the daemon
  answers at once.
- Migration without shared storage, as libvirt drives QEMU's: the
  destination VM waits (incoming) with its disk exported, the source
  mirrors its disk into the export while the guest writes and checks its
  data, migrates, ends the mirror; the destination's image then equals the
  source's, and the guest goes on there with its data.
- The same migration driven by vmctl (export start/add, migrate
  --copy-storage).
- An incoming VM that stops waiting releases its exported image; a live
  upgrade is refused while a server runs."""

import fcntl
import json
import os
import socket
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from vmmdtest import QMP, Vmmd, main, require_tool, wait_for  # noqa: E402
from daemon_helpers import TEST_CPU, console_log, guest, vm_def  # noqa: E402

TOP_SRCDIR = os.environ.get("top_srcdir", os.path.join(HERE, "..", ".."))
GOLDEN = os.path.join(TOP_SRCDIR, "tests", "functional", "golden", "nbd-server.json")
rec = __import__("make-golden-nbd-server")
live = __import__("test-jobs-live")
mig = __import__("test-migration")

HANDSHAKE_SECONDS = 10  # daemon/nbd-server.h

# Steps vmmd answers differently on purpose (docs/nbd-server.md), by command
# and arguments: vmmd's answer instead of QEMU's.
VHOST = "vmmd exports over NBD only ('%s' is not supported)"
DIFFERENCES = {
    ("block-export-add", "vhost-user-blk", False): {"error": {
        "class": "GenericError", "desc": VHOST % "vhost-user-blk"}},
    ("block-export-add", "fuse", False): {"error": {
        "class": "GenericError", "desc": VHOST % "fuse"}},
    # the fuse type's member is not in vmmd's schema
    ("block-export-add", "fuse", True): {"error": {
        "class": "GenericError", "desc": "Parameter 'mountpoint' is unexpected"}},
}
# Sections with no counterpart in vmmd, from the step naming the first
# string to the step naming the second: an export of a throttle node (vmmd
# has throttle limits on disks, not filter nodes), and exports with
# iothread objects (until the server stops).
SKIPPED = (("tg0", "object-del"), ("iothread", "nbd-server-stop"))


def golden():
    with open(GOLDEN) as f:
        return json.load(f)


def images(tmp):
    vda, vdb = os.path.join(tmp, "vda.img"), os.path.join(tmp, "vdb.qcow2")
    subprocess.run(["qemu-img", "create", "-q", "-f", "raw", vda, "64M"], check=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", vdb, "32M"], check=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "raw", os.path.join(tmp, "ro.img"), "1M"],
                   check=True)
    return [{"id": "vda", "file": vda, "format": "raw"},
            {"id": "vdb", "file": vdb, "format": "qcow2"}]


def start_vm(d, name="n1", **extra):
    q = d.qmp()
    q.ok("vm-create", dict(vm_def(name, guest("idle"), disks=images(d.tmp)), start=True,
                           **extra))
    return q, QMP(os.path.join(d.run_dir, "vms", name + ".qmp"))


def subst(v, tmp, port):
    s = json.dumps(v).replace("@DIR@", tmp).replace("@NAME4097@", rec.LONG)
    return json.loads(s.replace("@PORT@", str(port)))


def normalize_flags(replies):
    """QEMU's transmission flags less SEND_FAST_ZERO (vmmd does not offer it)
    and SEND_DF (structured replies only)."""
    for r in replies:
        if "transmission-flags" in r:
            fl = int(r["transmission-flags"], 16) & ~(1 << 11 | 1 << 7)
            r["transmission-flags"] = "0x%04x" % fl
            r["transmission-flag-names"] = rec.flag_names(fl, rec.TX_FLAGS)
    return replies


def check_handshake(want, got):
    """vmmd's negotiation as QEMU's, but for what needs structured replies."""
    assert got["greeting"] == want["greeting"], got["greeting"]
    assert got["closed-after-abort"] and want["closed-after-abort"]
    for w, g in zip(want["exchanges"], got["exchanges"]):
        if w["option"] in ("NBD_OPT_STRUCTURED_REPLY", "NBD_OPT_LIST_META_CONTEXT"):
            # no structured replies: refused, and the client goes on with simple ones
            names = {"NBD_OPT_STRUCTURED_REPLY": "structured reply",
                     "NBD_OPT_LIST_META_CONTEXT": "list meta context"}
            assert [r["type"] for r in g["replies"]] == ["NBD_REP_ERR_UNSUP"], g
            assert g["replies"][0]["message"] == "Unsupported option %d (%s)" % (
                rec.OPT[w["option"]], names[w["option"]]), g
            continue
        assert normalize_flags(w["replies"]) == g["replies"], (w, g)
    assert len(want["exchanges"]) == len(got["exchanges"])
    assert normalize_flags(want["go"]["replies"]) == got["go"]["replies"]
    for w, g in zip(want["export-name"], got["export-name"]):
        w = dict(w, **{"transmission-flags": normalize_flags([dict(w)])[0]["transmission-flags"],
                       "transmission-flag-names": normalize_flags([dict(w)])[0][
                           "transmission-flag-names"]})
        assert w == g, (w, g)


def check_max_connections(want, port):
    a = rec.NbdClient(inet=("127.0.0.1", port))
    assert a.greeting() == want["first-greeting"]
    b = rec.NbdClient(inet=("127.0.0.1", port), timeout=1)
    try:
        b.greeting()
        raise AssertionError("a second client was greeted beyond max-connections 1")
    except (socket.timeout, TimeoutError):
        pass
    a.close()
    b.s.settimeout(5)
    assert b.greeting() == want["second-greeting-after-first-closed"]
    b.close()


def free_port():
    t = socket.socket()
    t.bind(("127.0.0.1", 0))
    port = t.getsockname()[1]
    t.close()
    return port


def test_qmp_as_qemu():
    g = golden()
    with Vmmd() as d:
        _, q = start_vm(d)
        port = free_port()
        sock = os.path.join(d.tmp, "nbd.sock")
        clients = []
        replayed = 0
        steps = g["steps"]
        skipping = None
        for i, step in enumerate(steps):
            text = json.dumps(step["cmd"])
            skipping = skipping or next((s for s in SKIPPED if s[0] in text), None)
            if skipping:
                if skipping[1] in text:
                    skipping = None
                    if "nbd-server-stop" not in text:
                        continue
                else:
                    continue
            cmd = subst(step["cmd"], d.tmp, port)
            name, args = cmd["execute"], cmd.get("arguments", {})
            if step.get("client", {}).get("go"):
                c, _ = rec.go_client(sock, step["client"]["go"]["request"]["name"])
                clients.append(c)
            if "connected to export five" in step.get("note", ""):
                c, _ = rec.go_client(sock, "five")
                clients.append(c)
            q.events = []
            r = q.cmd(name, args)
            before = list(q.events)
            want = subst(step["reply"], d.tmp, port)
            want = DIFFERENCES.get((name, args.get("type"), "mountpoint" in args), want)
            r.pop("id", None)
            assert r == want, (i, cmd, r, want)
            # the events of this step and of those sent with it (pipelined),
            # all waited for at the first of them
            wanted = [] if step.get("pipelined") else list(step["events"])
            j = i + 1
            while j < len(steps) and steps[j].get("pipelined"):
                wanted += steps[j]["events"]
                j += 1
            got = before
            while len(got) < len(wanted):
                try:
                    got.append(q.event("BLOCK_EXPORT_DELETED", timeout=10))
                except AssertionError:
                    raise AssertionError("step %d %s: no BLOCK_EXPORT_DELETED after %r" %
                                         (i, cmd, got))
            strip = [{"event": e["event"], "data": e["data"]} for e in got]
            def key(e):
                return json.dumps(e, sort_keys=True)
            assert sorted(map(key, strip)) == sorted(map(key, wanted)), (i, cmd, strip, wanted)
            if not step.get("pipelined") and "events-before-reply" not in step and \
                    not step.get("client", {}).get("closed-within-2s"):
                # (with a client to disconnect, vmmd's event may come first)
                assert not before, (i, cmd, before)
            if step.get("events-before-reply") and not step.get("pipelined"):
                assert len(before) == step["events-before-reply"], (i, cmd, before)
            if step.get("client", {}).get("closed-within-2s"):
                assert clients[-1].eof_within(2), (i, cmd)
            if "socket-exists-after" in step:
                assert os.path.exists(sock) == step["socket-exists-after"], i
            replayed += 1
            if name == "query-block-exports" and any(e["id"] == "e3" for e in r["return"]):
                check_handshake(g["handshake"], rec.record_handshake(sock))
            if name == "nbd-server-add" and "max-connections" in json.dumps(steps[i - 1]):
                check_max_connections(g["max-connections"], port)
        for c in clients:
            c.close()
        assert replayed >= 95, replayed
        assert "Seccomp" not in d.read_log() and "forbidden" not in d.read_log()


def test_qemu_client_reads_and_writes():
    """qemu-io and qemu-img through exports of a running VM's disks."""
    require_tool("qemu-io")
    with Vmmd() as d:
        disks = images(d.tmp)
        subprocess.run(["qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 1M 3M", disks[1]["file"]],
                       check=True, capture_output=True)
        q = d.qmp()
        q.ok("vm-create", dict(vm_def("n1", guest("idle"), disks=disks), start=True))
        sock = os.path.join(d.tmp, "nbd.sock")
        q.ok("nbd-server-start", vm="n1", addr={"type": "unix", "data": {"path": sock}})
        q.ok("nbd-server-add", vm="n1", device="vdb", writable=True)
        q.ok("block-export-add", {"vm": "n1", "type": "nbd", "id": "ro", "node-name": "vdb",
                                  "name": "ro"})
        uri = "nbd+unix:///%s?socket=" + sock

        def io(export, *cmds, check=True):
            argv = ["qemu-io", "-f", "raw"]
            for c in cmds:
                argv += ["-c", c]
            return subprocess.run(argv + [uri % export], capture_output=True, text=True,
                                  check=check)

        info = subprocess.run(["qemu-img", "info", "--output=json", uri % "vdb"], check=True,
                              capture_output=True, text=True).stdout
        assert json.loads(info)["virtual-size"] == 32 << 20, info
        io("vdb", "read -P 0x5a 1M 3M", "read -P 0 0 1M", "write -P 0x33 2M 64k",
           "write -z 8M 1M", "discard 12M 1M", "flush", "read -P 0x33 2M 64k")
        # a read past the end is refused, the connection goes on
        r = io("vdb", "read 32M 4k", "read -P 0x33 2M 4k", check=False)
        assert "read failed: Input/output error" in r.stdout + r.stderr, r
        assert "read 4096/4096" in r.stdout, r
        r = io("ro", "write -P 1 0 4k", check=False)
        assert r.returncode != 0 and "Permission denied" in r.stderr, r
        r = io("nosuch", "read 0 4k", check=False)
        assert r.returncode != 0, r
        # both exports see the same data (one node), and the image holds it after
        cmp = subprocess.run(["qemu-img", "compare", "-f", "raw", "-F", "raw", uri % "vdb",
                              uri % "ro"], capture_output=True, text=True)
        assert cmp.returncode == 0, cmp
        q.ok("nbd-server-stop", vm="n1")
        assert not os.path.exists(sock)
        q.ok("vm-destroy", vm="n1")
        io_img = subprocess.run(["qemu-io", "-f", "qcow2", "-c", "read -P 0x33 2M 64k", "-c",
                                 "read -P 0 8M 1M", "-c", "read -P 0x5a 3M 1M",
                                 disks[1]["file"]], capture_output=True, text=True)
        assert io_img.returncode == 0 and "Pattern verification failed" not in io_img.stdout, \
            io_img


def request(c, typ, off, length, data=b"", flags=0, cookie=7):
    c.s.sendall(struct.pack(">IHHQQI", 0x25609513, flags, typ, cookie, off, length) + data)


def simple_reply(c):
    magic, err, cookie = struct.unpack(">IIQ", c.recvn(16))
    assert magic == 0x67446698, hex(magic)
    return err, cookie


def test_hostile_clients():
    """Clients that break the protocol lose their connection, and only that."""
    with Vmmd() as d:
        ctl, q = start_vm(d)
        sock = os.path.join(d.tmp, "nbd.sock")
        q.ok("nbd-server-start", addr={"type": "unix", "data": {"path": sock}})
        q.ok("nbd-server-add", device="vda", writable=True)
        idle = rec.NbdClient(path=sock, timeout=HANDSHAKE_SECONDS + 10)
        idle.greeting()  # and then nothing
        t0 = time.monotonic()
        bad = rec.NbdClient(path=sock)
        bad.greeting()
        bad.send_client_flags(3)
        bad.s.sendall(b"NOTMAGIC" + struct.pack(">II", 7, 0))
        assert bad.eof_within(5), "a bad option magic did not end the connection"
        big = rec.NbdClient(path=sock)
        big.greeting()
        big.send_client_flags(1 << 5)  # a flag never offered
        assert big.eof_within(5), "unknown client flags did not end the connection"
        c, _ = rec.go_client(sock, "vda")
        request(c, 0, 64 << 20, 4096)  # a read past the end
        assert simple_reply(c) == (22, 7)
        request(c, 1, (64 << 20) - 512, 4096, b"\0" * 4096, cookie=8)  # a write past it
        assert simple_reply(c) == (28, 8)
        request(c, 0, 0, 64 << 20, cookie=9)  # beyond NBD_MAX_REQUEST
        assert simple_reply(c) == (22, 9)
        request(c, 0, 0, 4096, flags=1 << 3, cookie=10)  # a flag the command lacks
        assert simple_reply(c) == (22, 10)
        request(c, 1, 0, 64 << 20, cookie=11)  # a write of 64 MiB: no way to resync
        assert c.eof_within(5), "an oversized write did not end the connection"
        # meanwhile the daemon answers
        for _ in range(20):
            t = time.monotonic()
            ctl.ok("query-status", vm="n1")
            assert time.monotonic() - t < 1.0
        assert idle.eof_within(HANDSHAKE_SECONDS + 5 - (time.monotonic() - t0)), \
            "a client that never negotiated was not dropped"
        assert time.monotonic() - t0 >= HANDSHAKE_SECONDS - 1
        # the server serves on
        c, seen = rec.go_client(sock, "vda")
        assert seen["go"]["replies"][-1]["type"] == "NBD_REP_ACK"
        c.close()
        assert "NBD client dropped" in d.read_log()


def test_storage_migration():
    """The blk-writer guest moves to another host that does not share its
    disk (two daemons in two network namespaces): the destination exports
    its empty image over NBD (tcp), the source mirrors the disk into it,
    migrates, and ends the mirror; then the images are equal and the guest
    goes on checking its data on the destination."""
    writer = guest("blk-writer")
    with mig.TwoHosts() as h, mig.NsVmmd(h.name + "-a") as src, \
            mig.NsVmmd(h.name + "-b") as dst:
        orig, base = live.make_base(src.tmp, 11)
        target = os.path.join(dst.tmp, "moved.qcow2")
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", target, str(live.SIZE)],
                       check=True)
        qs = live.start_writer(src, "m", writer, base)
        qd = dst.qmp()
        qd.ok("vm-create", dict(vm_def("m", writer,
                                       disks=[{"id": "vda", "file": target, "format": "qcow2"}]),
                                incoming=True, start=True))
        qd.ok("stop", vm="m")  # QEMU's -S: runs only when told, after the mirror ended
        qd.ok("nbd-server-start", vm="m",
              addr={"type": "inet", "data": {"host": h.b, "port": "10809"}})
        qd.ok("block-export-add", {"vm": "m", "type": "nbd", "id": "mig-vda",
                                   "node-name": "vda", "writable": True})
        qs.ok("blockdev-add", vm="m", driver="raw", **{"node-name": "mig-vda"},
              file={"driver": "nbd", "export": "vda",
                    "server": {"type": "inet", "host": h.b, "port": "10809"}})
        qs.ok("blockdev-mirror", vm="m", device="vda", target="mig-vda", sync="full",
              **{"job-id": "mig-vda"})
        qs.event("BLOCK_JOB_READY", timeout=120, pred=lambda e: e["data"]["device"] == "mig-vda")
        live.wait_passes(src, "m", 2)
        qd.ok("migrate-incoming", vm="m", uri="tcp:%s:4451" % h.b)
        qs.ok("migrate", vm="m", uri="tcp:%s:4451" % h.b)
        assert mig.wait_status(qs, "m", ("completed", "failed")) == "completed", \
            qs.ok("query-migrate", vm="m")
        # the source is stopped: the mirror's last pass makes the copy whole
        qs.ok("block-job-cancel", vm="m", device="mig-vda")
        done = qs.event("BLOCK_JOB_COMPLETED", timeout=60)
        assert "error" not in done["data"] and done["data"]["offset"] == done["data"]["len"], \
            done
        cmp = subprocess.run(["qemu-img", "compare", "-U", base, target], capture_output=True,
                             text=True)
        assert cmp.returncode == 0, cmp
        qd.ok("nbd-server-stop", vm="m")
        assert qd.ok("query-status", vm="m")["status"] == "paused"
        qd.ok("cont", vm="m")
        live.wait_passes(dst, "m", 3)
        blk = qd.ok("query-block", vm="m")[0]["inserted"]
        assert blk["file"] == target, blk
        assert "writer: boot" not in console_log(dst, "m").split("writer: up")[-1]
        qd.ok("stop", vm="m")
        qd.ok("vm-destroy", vm="m")
        chk = subprocess.run(["qemu-img", "check", target], capture_output=True, text=True)
        assert chk.returncode == 0, chk


def test_storage_migration_vmctl():
    """The same with vmctl: export start/add on the destination, migrate
    --copy-storage on the source, export stop and resume on the
    destination; a raw disk this time."""
    writer = guest("blk-writer")
    with mig.TwoHosts() as h, mig.NsVmmd(h.name + "-a") as src, \
            mig.NsVmmd(h.name + "-b") as dst:
        orig, base = live.make_base(src.tmp, 12)
        target = os.path.join(dst.tmp, "moved.raw")
        subprocess.run(["qemu-img", "create", "-q", "-f", "raw", target, str(live.SIZE)],
                       check=True)
        live.start_writer(src, "m", writer, base)
        qd = dst.qmp()
        qd.ok("vm-create", dict(vm_def("m", writer,
                                       disks=[{"id": "vda", "file": target, "format": "raw"}]),
                                incoming=True, start=True))
        dst.vmctl("pause", "m")
        dst.vmctl("export", "start", "m", "--listen", "%s:10809" % h.b)
        dst.vmctl("export", "add", "m", "vda", "--writable")
        assert "vda" in dst.vmctl("export", "list", "m").stdout
        dst.vmctl("incoming", "m", "tcp:%s:4452" % h.b)
        out = src.vmctl("migrate", "m", "tcp:%s:4452" % h.b, "--copy-storage",
                        "%s:10809" % h.b, timeout=180)
        assert "copying 1 disk(s)" in out.stdout and "migrated in" in out.stdout, out.stdout
        # the mirror and its node are gone on the source
        assert src.qmp().ok("query-jobs", vm="m") == []
        cmp = subprocess.run(["qemu-img", "compare", "-U", "-F", "raw", base, target],
                             capture_output=True, text=True)
        assert cmp.returncode == 0, cmp
        dst.vmctl("export", "stop", "m")
        dst.vmctl("resume", "m")
        live.wait_passes(dst, "m", 3)
        qd.ok("stop", vm="m")
        qd.ok("vm-destroy", vm="m")


def test_upgrade_refused_while_serving():
    """A live upgrade would leave the NBD server behind: refused while one
    runs, and the server serves on."""
    with Vmmd() as d:
        ctl, q = start_vm(d)
        sock = os.path.join(d.tmp, "nbd.sock")
        q.ok("nbd-server-start", addr={"type": "unix", "data": {"path": sock}})
        r = ctl.cmd("daemon-upgrade")
        assert r.get("error", {}).get("desc") == (
            "VM 'n1' serves disks over NBD: stop its server (nbd-server-stop) first, the new "
            "vmmd does not take it over"), r
        q.ok("nbd-server-add", device="vda")
        c, seen = rec.go_client(sock, "vda")
        assert seen["go"]["replies"][-1]["type"] == "NBD_REP_ACK"
        c.close()


def locked(path):
    """Whether vmmd holds its image lock on @path (block/file.c's lock byte;
    a POSIX lock conflicts with vmmd's OFD lock)."""
    with open(path, "rb+") as f:
        try:
            fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 0x766d6d64)
        except OSError:
            return True
        fcntl.lockf(f, fcntl.LOCK_UN, 1, 0x766d6d64)
        return False


def test_waiting_vm_releases_its_image():
    """An incoming VM's exported image is open (locked) while it waits, and
    free again once it stops waiting; nbd-server-add of a disk the
    definition lacks is refused before anything opens."""
    with Vmmd() as d:
        disks = images(d.tmp)
        q = d.qmp()
        q.ok("vm-create", dict(vm_def("w", guest("idle"), disks=disks), incoming=True,
                               start=True))
        sock = os.path.join(d.tmp, "nbd.sock")
        q.ok("nbd-server-start", vm="w", addr={"type": "unix", "data": {"path": sock}})
        r = q.cmd("nbd-server-add", vm="w", device="nosuch")
        assert r["error"]["desc"] == "Cannot find device='nosuch' nor node-name='nosuch'", r
        q.ok("nbd-server-add", {"vm": "w", "device": "vdb", "writable": True})
        q.ok("nbd-server-add", {"vm": "w", "device": "vdb", "name": "again"})  # the same node
        assert locked(disks[1]["file"])
        wr = subprocess.run(["qemu-io", "-f", "raw", "-c", "write -P 0x77 0 64k",
                             "nbd+unix:///vdb?socket=" + sock], capture_output=True, text=True)
        assert wr.returncode == 0, wr
        q.ok("vm-destroy", vm="w")  # it stops waiting: the server and the image go
        wait_for(lambda: not os.path.exists(sock), 10, what="the NBD socket to go")
        wait_for(lambda: not locked(disks[1]["file"]), 10, what="the image lock to go")
        rd = subprocess.run(["qemu-io", "-f", "qcow2", "-c", "read -P 0x77 0 64k",
                             disks[1]["file"]], capture_output=True, text=True)
        assert rd.returncode == 0 and "verification failed" not in rd.stdout, rd


if __name__ == "__main__":
    main(globals())
