#!/usr/bin/env python3
"""The control thread never blocks (issue 14, failures 3 and 4): an NBD
server that accepts and never answers delays only its own VM's vm-create
and vm-destroy; during many lifecycles from 16 clients, an unrelated
client's query-status stays fast (p50/p99 printed; the bounds here are
loose for a loaded CI machine, the real figures are in tests/bench/README)."""

import json
import os
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vmmdtest import QMP, Vmmd, main, wait_for  # noqa: E402
from daemon_helpers import guest, vm_def, wait_console  # noqa: E402


def probe(d, seconds, vm=None, limit=1.0):
    """query-vms (or query-status of @vm) on a fresh client for @seconds;
    returns the latencies. A client that waits longer than @limit fails."""
    q = QMP(d.socket, timeout=limit)
    lat = []
    t_end = time.monotonic() + seconds
    while time.monotonic() < t_end:
        t0 = time.monotonic()
        if vm:
            q.ok("query-status", vm=vm)
        else:
            q.ok("query-vms")
        lat.append(time.monotonic() - t0)
        time.sleep(0.01)
    q.close()
    return lat


class Background(threading.Thread):
    def __init__(self, fn):
        super().__init__(daemon=True)
        self.fn, self.result, self.error = fn, None, None
        self.start()

    def run(self):
        try:
            self.result = self.fn()
        except Exception as e:
            self.error = e


def hung_nbd_server(tmp):
    """A UNIX socket in @tmp that accepts (up to 4) connections and never
    answers: (its path, the accepted connections so far, the listener)."""
    sock = os.path.join(tmp, "hang.sock")
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(sock)
    srv.listen(4)
    accepted = []
    Background(lambda: [accepted.append(srv.accept()[0]) for _ in range(4)])
    return sock, accepted, srv


class MemoryNbd:
    """nbdkit's memory plugin (4 MiB) on a UNIX socket in @tmp, for a with
    block: .sock, .uri, .proc; left running (even if stopped) at the end."""

    def __init__(self, tmp):
        self.sock = os.path.join(tmp, "nbd.sock")
        self.uri = "nbd+unix:///?socket=" + self.sock

    def __enter__(self):
        self.proc = subprocess.Popen(["nbdkit", "-f", "-U", self.sock, "memory", "4M"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: os.path.exists(self.sock), 10, what="nbdkit")
        return self

    def __exit__(self, *exc):
        self.proc.send_signal(signal.SIGCONT)
        self.proc.kill()
        self.proc.wait()


def recv_exact(s, n):
    b = b""
    while len(b) < n:
        chunk = s.recv(n - len(b))
        if not chunk:
            raise EOFError
        b += chunk
    return b


class HoldingNbdRelay:
    """A UNIX socket in @tmp relaying NBD connections to the server at
    @target, holding them in two places: nothing passes until .serve()
    (the server seems not to answer), and the server's replies after the
    handshake (NBD_OPT_GO's final ACK) wait for .release()."""

    def __init__(self, tmp, target):
        self.sock = os.path.join(tmp, "relay.sock")
        self.uri = "nbd+unix:///?socket=" + self.sock
        self.target = target
        self.served, self.released = threading.Event(), threading.Event()
        self.accepted = []
        self.srv = socket.socket(socket.AF_UNIX)
        self.srv.bind(self.sock)
        self.srv.listen(4)
        Background(self._accept)

    def serve(self):
        self.served.set()

    def release(self):
        self.released.set()

    def _accept(self):
        while True:
            c = self.srv.accept()[0]
            self.accepted.append(c)
            Background(lambda c=c: self._relay(c))

    def _relay(self, c):
        self.served.wait()
        s = socket.socket(socket.AF_UNIX)
        s.connect(self.target)
        Background(lambda: self._pipe(c, s))
        try:
            c.sendall(recv_exact(s, 18))  # NBDMAGIC, IHAVEOPT, flags
            while True:  # option replies: magic, option, type, length, data
                head = recv_exact(s, 20)
                option, kind, length = struct.unpack(">IIi", head[8:])
                c.sendall(head + recv_exact(s, length))
                if option == 7 and kind == 1:  # NBD_OPT_GO's NBD_REP_ACK
                    break
            self.released.wait()
            self._pipe(s, c)
        except (EOFError, OSError):
            pass

    @staticmethod
    def _pipe(a, b):
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                b.sendall(data)
            b.shutdown(socket.SHUT_WR)  # the end passes too
        except OSError:
            pass


def save_and_stop(q, vm, path):
    """vm-save with stop: the snapshot complete and the VM gone."""
    q.ok("vm-save", vm=vm, path=path, stop=True)
    q.event("VM_SAVE_COMPLETED", timeout=60)
    q.event("SHUTDOWN", timeout=60)


def test_nbd_server_that_never_answers_delays_only_its_vm():
    idle = guest("idle")
    with tempfile.TemporaryDirectory(prefix="vmmd-hang.") as tmp, Vmmd() as d:
        sock, accepted, srv = hung_nbd_server(tmp)
        disk = [{"id": "vda", "file": "nbd+unix:///?socket=" + sock, "format": "raw"}]
        slow = QMP(d.socket, timeout=120)
        create = Background(lambda: slow.cmd("vm-create", dict(vm_def("hang", idle),
                                                               disks=disk, start=True)))
        wait_for(lambda: accepted, 10, what="the NBD connection")
        lat = probe(d, 2.0)
        assert max(lat) < 1.0, max(lat)
        # Meanwhile the VM reports itself as being built.
        assert d.qmp().ok("query-status", vm="hang")["status"] == "prelaunch"
        for c in accepted:
            c.close()
        srv.close()
        create.join(60)
        assert create.error is None, create.error
        assert "error" in create.result, create.result
        assert "hang" not in [v["name"] for v in d.qmp().ok("query-vms")]


def test_stalled_nbd_server_delays_only_its_vm_destroy():
    idle = guest("idle")
    with tempfile.TemporaryDirectory(prefix="vmmd-stall.") as tmp, Vmmd() as d, \
            MemoryNbd(tmp) as nbd:
        q = QMP(d.socket, timeout=120)
        disk = [{"id": "vda", "file": nbd.uri, "format": "raw"}]
        q.ok("vm-create", dict(vm_def("stall", idle), disks=disk, start=True))
        wait_console(d, "stall", "idle: up")
        nbd.proc.send_signal(signal.SIGSTOP)   # the server stops answering (a flush is due)
        destroy = Background(lambda: q.cmd("vm-destroy", vm="stall"))
        time.sleep(0.3)
        lat = probe(d, 2.0)
        assert max(lat) < 1.0, max(lat)
        nbd.proc.send_signal(signal.SIGCONT)
        destroy.join(60)
        assert destroy.error is None and "return" in destroy.result, \
            (destroy.error, destroy.result)


def test_start_past_its_timeout_holds_nobody():
    """start-timeout (vmmd.conf): a start whose NBD server answers only
    later is answered at the limit with an error that names it; when the
    server answers, the late VM is stopped on a worker, so the flush of
    its disk at close, which the server holds, holds no other client; its
    socket file goes, and after a reload to 60 s the next start, with the
    server answering, runs."""
    idle = guest("idle")
    with tempfile.TemporaryDirectory(prefix="vmmd-late.") as tmp, MemoryNbd(tmp) as nbd:
        conf = os.path.join(tmp, "vmmd.conf")
        with open(conf, "w") as f:
            f.write("start-timeout = 2\n")
        relay = HoldingNbdRelay(tmp, nbd.sock)
        with Vmmd(args=["--config", conf]) as d:
            q = QMP(d.socket, timeout=30)
            disk = [{"id": "vda", "file": relay.uri, "format": "raw"}]
            t0 = time.monotonic()
            r = q.cmd("vm-create", dict(vm_def("late", idle), disks=disk, start=True))
            assert "did not start within 2 s" in r["error"]["desc"], r
            assert time.monotonic() - t0 < 10
            relay.serve()  # the handshake passes; the replies after it wait
            wait_for(lambda: "VM setup finished too late" in d.read_log(), 10,
                     what="the late setup")
            lat = probe(d, 2.0)
            assert max(lat) < 1.0, max(lat)
            assert d.qmp().ok("query-status", vm="late")["status"] != "running"
            relay.release()
            wait_for(lambda: d.qmp().ok("query-status", vm="late")["status"] == "shutdown",
                     30, what="the late VM stopped")
            assert not os.path.exists(os.path.join(d.run_dir, "vms", "late.qmp"))
            # a reload applies to the next start (2 s is tight for one on a busy host)
            with open(conf, "w") as f:
                f.write("start-timeout = 60\n")
            d.proc.send_signal(signal.SIGHUP)
            wait_for(lambda: "settings reloaded" in d.read_log(), 10, what="the reload")
            q.ok("vm-start", vm="late")
            wait_console(d, "late", "idle: up")
            assert len(relay.accepted) == 2


def test_snapshot_of_a_stalled_nbd_disk_delays_only_its_vm():
    """blockdev-snapshot-sync waits for the disk's requests in flight (and a
    transaction, blockdev-snapshot): on a worker. While the NBD server is
    stopped other clients are answered; the VM's conflicting commands are
    refused, its destroy waits; then the snapshot completes, and the
    overlay and the definition name the disk as they should."""
    writer = guest("blk-writer")
    with tempfile.TemporaryDirectory(prefix="vmmd-snapstall.") as tmp, Vmmd() as d, \
            MemoryNbd(tmp) as nbd:
        ov = os.path.join(tmp, "ov.qcow2")
        q = QMP(d.socket, timeout=120)
        disk = [{"id": "vda", "file": nbd.uri, "format": "raw"}]
        q.ok("vm-create", dict(vm_def("w", writer, disks=disk), start=True))
        wait_console(d, "w", "writer: pass 1 ok", timeout=60)
        nbd.proc.send_signal(signal.SIGSTOP)   # the guest's next requests stay in flight
        time.sleep(0.3)
        snap = Background(lambda: q.cmd("blockdev-snapshot-sync", {
            "vm": "w", "device": "vda", "snapshot-file": ov, "format": "qcow2"}))
        lat = probe(d, 2.0)
        assert max(lat) < 1.0, max(lat)
        assert snap.result is None and snap.error is None, (snap.result, snap.error)
        other = d.qmp()
        for cmd, args in (("blockdev-snapshot-sync", {"device": "vda",
                                                      "snapshot-file": ov + ".2"}),
                          ("block_resize", {"device": "vda", "size": 8 << 20}),
                          ("block-stream", {"device": "vda"}),
                          ("device_del", {"id": "vda"}),
                          ("vm-save", {"path": os.path.join(tmp, "save")})):
            r = other.cmd(cmd, dict(args, vm="w"))
            assert "switching disks to a snapshot" in r["error"]["desc"], (cmd, r)
        assert not os.path.exists(ov + ".2")
        stopper = QMP(d.socket, timeout=120)
        destroy = Background(lambda: stopper.cmd("vm-destroy", vm="w"))
        time.sleep(0.3)
        assert destroy.result is None, destroy.result
        assert other.ok("query-status", vm="w")["status"] == "running"
        nbd.proc.send_signal(signal.SIGCONT)
        snap.join(60)
        assert snap.error is None and "return" in snap.result, (snap.error, snap.result)
        destroy.join(60)
        assert destroy.error is None and "return" in destroy.result, \
            (destroy.error, destroy.result)
        # the definition names the overlay; the overlay's backing is the NBD disk
        info = json.loads(subprocess.run(
            ["qemu-img", "info", "--output=json", ov], check=True,
            capture_output=True).stdout)
        assert info["backing-filename"] == disk[0]["file"], info
        assert "w" in [v["name"] for v in other.ok("query-vms")]
        with open(os.path.join(d.state_dir, "vms", "w.json")) as f:
            assert json.load(f)["disks"][0]["file"] == ov


def test_definition_file_that_stalls_delays_only_its_command():
    """A hot-plug rewrites the VM's definition file (write, fsync) on a
    worker: a FIFO in place of its temporary file (a state disk that
    stalls) holds device_add's answer, which waits for the file, and no
    one else's; the DEVICE_DELETED of an unplug waits for its file too."""
    idle = guest("idle")
    with Vmmd() as d:
        q = QMP(d.socket, timeout=60)
        q.ok("vm-create", dict(vm_def("h", idle), start=True))
        q.ok("netdev_add", {"vm": "h", "type": "user", "id": "u0"})
        fifo = os.path.join(d.state_dir, "vms", ".h.json.tmp")
        os.mkfifo(fifo)
        add = Background(lambda: q.cmd("device_add", {"vm": "h", "driver": "e1000",
                                                       "id": "nic9", "netdev": "u0"}))
        lat = probe(d, 1.5)
        assert max(lat) < 1.0, max(lat)
        assert add.result is None, add.result
        # the writer gets a reader: the FIFO takes the JSON, its fsync fails (logged)
        with open(fifo, "rb") as f:
            written = json.loads(f.read())
        assert any(n["id"] == "nic9" for n in written["nics"]), written
        add.join(30)
        assert add.error is None and "return" in add.result, (add.error, add.result)
        assert not os.path.exists(fifo)
        # a write that works: the definition names the NIC when device_add answers
        q.ok("netdev_add", {"vm": "h", "type": "user", "id": "u1"})
        q.ok("device_add", {"vm": "h", "driver": "e1000", "id": "nic8", "netdev": "u1"})
        with open(os.path.join(d.state_dir, "vms", "h.json")) as f:
            ids = [n["id"] for n in json.load(f)["nics"]]
        assert ids == ["nic9", "nic8"], ids
        q.ok("device_del", {"vm": "h", "id": "nic8"})
        q.ok("system_reset", {"vm": "h"})  # the idle guest never ejects: a reset does
        q.event("DEVICE_DELETED", pred=lambda e: e["data"].get("device") == "nic8",
                timeout=30)
        with open(os.path.join(d.state_dir, "vms", "h.json")) as f:
            ids = [n["id"] for n in json.load(f)["nics"]]
        assert ids == ["nic9"], ids


def test_device_deleted_waiting_for_its_file_holds_only_its_vm():
    """A DEVICE_DELETED waits for its VM's definition file (a FIFO in place
    of the temporary file: a state disk that stalls); the events of another
    VM go on meanwhile, the waiting VM's own later events come after it,
    in order."""
    idle = guest("idle")
    with Vmmd() as d:
        q = QMP(d.socket, timeout=60)
        for name in ("h", "o"):
            q.ok("vm-create", dict(vm_def(name, idle), start=True))
            wait_console(d, name, "idle: up")
        q.ok("netdev_add", {"vm": "h", "type": "user", "id": "u0"})
        q.ok("device_add", {"vm": "h", "driver": "e1000", "id": "nic8", "netdev": "u0"})
        fifo = os.path.join(d.state_dir, "vms", ".h.json.tmp")
        os.mkfifo(fifo)
        q.ok("device_del", {"vm": "h", "id": "nic8"})
        q.ok("system_reset", {"vm": "h"})  # the idle guest never ejects: a reset does
        q.event("RESET", pred=lambda e: e["data"].get("vm") == "h", timeout=30)
        time.sleep(0.5)  # the DEVICE_DELETED is held now, its file stalled
        del q.events[:]  # the starts' events
        q.ok("stop", {"vm": "h"})
        q.ok("stop", {"vm": "o"})
        q.event("STOP", pred=lambda e: e["data"].get("vm") == "o", timeout=5)
        q.ok("cont", {"vm": "o"})
        q.event("RESUME", pred=lambda e: e["data"].get("vm") == "o", timeout=5)
        held = [e["event"] for e in q.events if e["data"].get("vm") == "h"]
        assert held == [], ("h's events went out before its DEVICE_DELETED", held)
        with open(fifo, "rb") as f:
            json.loads(f.read())
        # events are read in the order they come: the DEVICE_DELETED is there first
        q.event("STOP", pred=lambda e: e["data"].get("vm") == "h", timeout=30)
        assert any(e["event"] == "DEVICE_DELETED" and e["data"].get("device") == "nic8"
                   for e in q.events), ("h's STOP came before its DEVICE_DELETED", q.events)
        q.ok("cont", {"vm": "h"})
        q.event("RESUME", pred=lambda e: e["data"].get("vm") == "h", timeout=10)


def test_fifo_in_place_of_a_snapshot_file():
    """vm-restore of a snapshot whose manifest, state or memory file is a
    FIFO: the daemon keeps answering (the snapshot is read on a worker,
    without waiting for a writer) and the restore fails at once, saying
    which file is not a regular file."""
    import shutil
    with tempfile.TemporaryDirectory(prefix="vmmd-fifo.") as tmp, Vmmd() as d:
        q = QMP(d.socket, timeout=30)
        q.ok("vm-create", dict(vm_def("f", guest("idle")), start=True))
        wait_console(d, "f", "idle: up")
        good = os.path.join(tmp, "good")
        save_and_stop(q, "f", good)
        for name, what in (("manifest.json", "snapshot manifest"), ("state", "snapshot state"),
                           ("memory", "snapshot memory file")):
            bad = os.path.join(tmp, "bad-" + name)
            shutil.copytree(good, bad)
            os.unlink(os.path.join(bad, name))
            os.mkfifo(os.path.join(bad, name))
            slow = QMP(d.socket, timeout=30)
            restore = Background(lambda: slow.cmd("vm-restore", path=bad))
            lat = probe(d, 0.5)
            assert max(lat) < 1.0, (name, max(lat))
            restore.join(20)
            assert restore.error is None, restore.error
            err = restore.result.get("error", {}).get("desc", "")
            assert "%s %s is not a regular file" % (what, os.path.join(bad, name)) in err, \
                (name, restore.result)
            slow.close()
        # the good copy still restores
        q.ok("vm-restore", path=good)
        assert q.ok("query-status", vm="f")["status"] == "running"


def test_restore_onto_a_hung_disk_delays_only_itself():
    """vm-restore whose disk (an override) is an NBD server that accepts
    and never answers: the daemon answers meanwhile, the name is taken
    (vm-create of it is refused) but nothing is written, and once the
    server goes the restore fails and leaves no VM and no definition."""
    with tempfile.TemporaryDirectory(prefix="vmmd-rhang.") as tmp, Vmmd() as d:
        q = QMP(d.socket, timeout=30)
        img = os.path.join(tmp, "d.raw")
        with open(img, "wb") as f:
            f.truncate(4 << 20)
        disk = [{"id": "vda", "file": img, "format": "raw"}]
        q.ok("vm-create", dict(vm_def("r", guest("idle")), disks=disk, start=True))
        wait_console(d, "r", "idle: up")
        snap = os.path.join(tmp, "snap")
        save_and_stop(q, "r", snap)
        q.ok("vm-delete", vm="r")
        sock, accepted, srv = hung_nbd_server(tmp)
        slow = QMP(d.socket, timeout=120)
        restore = Background(lambda: slow.cmd("vm-restore", {"path": snap, "name": "r2", "disks": [
            {"id": "vda", "file": "nbd+unix:///?socket=" + sock, "format": "raw"}]}))
        wait_for(lambda: accepted or restore.result, 10, what="the NBD connection")
        assert accepted, restore.result
        lat = probe(d, 1.0)
        assert max(lat) < 1.0, max(lat)
        err = q.cmd("vm-create", vm_def("r2", guest("idle")))
        assert err.get("error", {}).get("desc") == "VM 'r2' already exists", err
        assert not os.path.exists(os.path.join(d.state_dir, "vms", "r2.json"))
        for c in accepted:
            c.close()
        srv.close()
        restore.join(60)
        assert restore.error is None, restore.error
        assert "error" in restore.result, restore.result
        assert "r2" not in [v["name"] for v in q.ok("query-vms")]
        assert not os.path.exists(os.path.join(d.state_dir, "vms", "r2.json"))
        # the name is free again
        q.ok("vm-create", vm_def("r2", guest("idle")))


CLIENTS = 16
CYCLES = 6


def test_query_status_latency_during_lifecycles():
    idle = guest("idle")
    with Vmmd() as d:
        q = d.qmp()
        q.ok("vm-create", dict(vm_def("steady", idle), start=True))
        wait_console(d, "steady", "idle: up")
        errors = []

        def client(k):
            try:
                c = QMP(d.socket, timeout=120)
                name = "cy%d" % k
                for _ in range(CYCLES):
                    c.ok("vm-create", dict(vm_def(name, idle), start=True))
                    c.ok("stop", vm=name)
                    c.ok("vm-destroy", vm=name)
                    c.ok("vm-delete", vm=name)
                c.close()
            except Exception as e:
                errors.append(e)

        ts = [threading.Thread(target=client, args=(k,)) for k in range(CLIENTS)]
        for t in ts:
            t.start()
        lat = []
        m = QMP(d.socket, timeout=10)
        while any(t.is_alive() for t in ts):
            t0 = time.monotonic()
            m.ok("query-status", vm="steady")
            lat.append(time.monotonic() - t0)
            time.sleep(0.005)
        for t in ts:
            t.join()
        assert not errors, errors
        lat.sort()
        p50 = statistics.median(lat) * 1000
        p99 = lat[int(len(lat) * 0.99)] * 1000
        print("query-status during %d lifecycles: %d samples, p50 %.2f ms, p99 %.2f ms, "
              "max %.2f ms" % (CLIENTS * CYCLES, len(lat), p50, p99, lat[-1] * 1000))
        # Loose bounds for 2 shared cores under parallel builds (on an idle machine
        # see tests/bench/README); before, setup ran here: p50 112-160 ms.
        assert p50 < 60, p50
        assert p99 < 1000, p99


if __name__ == "__main__":
    main(globals())
