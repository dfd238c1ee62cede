#!/usr/bin/env python3
"""Images handed in as fds (issue 14): QEMU's add-fd, remove-fd and
query-fdsets, and /dev/fdset/N wherever a host path is accepted. With
image-roots set to an empty directory the daemon can open no file of the VM
by name, yet a VM whose kernel and disk come in as fd sets runs; the fds'
access mode must match; names inside a passed image (a qcow2's backing
file) still obey the roots; a VM keeps its own duplicate after remove-fd."""

import json
import os
import socket
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vmmdtest import Vmmd, main, require_tool  # noqa: E402
from daemon_helpers import guest, vm_def, wait_console  # noqa: E402

DENIED = "outside the image roots"


def add_fd(q, fd, **args):
    msg = json.dumps({"execute": "add-fd", "arguments": args}).encode()
    socket.send_fds(q.sock, [msg], [fd])
    return q.reply()


def jailed():
    """A daemon whose only image root is an empty directory."""
    d = Vmmd()
    roots = os.path.join(d.tmp, "empty")
    os.mkdir(roots)
    conf = os.path.join(d.tmp, "vmmd.conf")
    with open(conf, "w") as f:
        f.write("image-roots = %s\n" % roots)
    d.args += ["--config", conf]
    return d


def held(pid, path):
    """How many fds of process @pid are open on @path."""
    n = 0
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            n += os.readlink("/proc/%d/fd/%s" % (pid, fd)) == path
        except OSError:
            pass
    return n


def test_protocol():
    with Vmmd() as d:
        q = d.qmp()
        r = q.cmd("add-fd")
        assert r["error"]["desc"] == "No file descriptor supplied via SCM_RIGHTS", r
        fd = os.open("/dev/null", os.O_RDONLY)
        r = add_fd(q, fd, **{"fdset-id": -1})
        assert r["error"]["desc"] == "Parameter 'fdset-id' expects a non-negative value", r
        a = add_fd(q, fd, opaque="null ro")["return"]
        b = add_fd(q, fd, **{"fdset-id": 7})["return"]
        c = add_fd(q, fd)["return"]
        os.close(fd)
        assert a["fdset-id"] == 0 and b["fdset-id"] == 7 and c["fdset-id"] == 1, (a, b, c)
        assert q.ok("query-fdsets") == [
            {"fdset-id": 0, "fds": [{"fd": a["fd"], "opaque": "null ro"}]},
            {"fdset-id": 1, "fds": [{"fd": c["fd"]}]},
            {"fdset-id": 7, "fds": [{"fd": b["fd"]}]}], q.ok("query-fdsets")
        r = q.cmd("remove-fd", {"fdset-id": 7, "fd": 999})
        assert r["error"]["desc"] == "File descriptor named 'fdset-id:7, fd:999' not found", r
        r = q.cmd("remove-fd", {"fdset-id": 3})
        assert r["error"]["desc"] == "File descriptor named 'fdset-id:3' not found", r
        q.ok("remove-fd", {"fdset-id": 7, "fd": b["fd"]})
        q.ok("remove-fd", {"fdset-id": 0})
        assert q.ok("query-fdsets") == [{"fdset-id": 1, "fds": [{"fd": c["fd"]}]}]
        # the daemon closed what it removed
        assert not os.path.exists("/proc/%d/fd/%d" % (d.proc.pid, b["fd"]))
        # sets outlive the connection that made them
        q.sock.close()
        assert d.qmp().ok("query-fdsets") == [{"fdset-id": 1, "fds": [{"fd": c["fd"]}]}]


def test_vm_from_fds_under_empty_roots():
    require_tool("qemu-img")
    idle = guest("idle")
    d = jailed()
    img = os.path.join(d.tmp, "disk.qcow2")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", img, "4M"], check=True)
    with d:
        q = d.qmp()
        # by name, neither the kernel nor the disk may be opened
        r = q.cmd("vm-create", dict(vm_def("byname", idle), start=True))
        assert "error" in r and DENIED in r["error"]["desc"], r
        kfd = os.open(idle, os.O_RDONLY)
        k = add_fd(q, kfd, opaque="kernel")["return"]
        os.close(kfd)
        dfd = os.open(img, os.O_RDWR)
        ro = os.open(img, os.O_RDONLY)
        disk = add_fd(q, dfd)["return"]
        add_fd(q, ro, **{"fdset-id": disk["fdset-id"]})
        os.close(dfd)
        os.close(ro)
        kernel = "/dev/fdset/%d" % k["fdset-id"]
        dev = "/dev/fdset/%d" % disk["fdset-id"]
        vm = dict(vm_def("fds", kernel), start=True,
                  disks=[{"id": "vda", "file": dev, "format": "qcow2"}])
        q.ok("vm-create", vm)
        wait_console(d, "fds", "idle: up")
        blk = q.ok("query-block", vm="fds")
        assert blk[0]["inserted"]["file"] == dev, blk
        # the two fds of the set, and the VM's own duplicate of the read-write one
        assert held(d.proc.pid, img) == 3, held(d.proc.pid, img)
        # the daemon's copies may go: the VM keeps its own duplicates
        q.ok("remove-fd", {"fdset-id": disk["fdset-id"]})
        q.ok("remove-fd", {"fdset-id": k["fdset-id"]})
        assert q.ok("query-fdsets") == []
        assert held(d.proc.pid, img) == 1
        assert q.ok("query-status", vm="fds")["status"] == "running"
        q.ok("vm-destroy", vm="fds")
        assert held(d.proc.pid, img) == 0
        subprocess.run(["qemu-img", "check", "-q", img], check=True)
        # a set no longer there is a clear error at once
        r = q.cmd("vm-create", dict(vm_def("gone", kernel), start=True))
        assert "error" in r and "no fd set" in r["error"]["desc"], r


def test_access_mode_and_backing_names():
    require_tool("qemu-img")
    idle = guest("idle")
    d = jailed()
    img = os.path.join(d.tmp, "disk.raw")
    with open(img, "wb") as f:
        f.truncate(1 << 20)
    secret = os.path.join(d.tmp, "secret.raw")
    with open(secret, "wb") as f:
        f.write(b"host secret\n" * 4096)
    top = os.path.join(d.tmp, "top.qcow2")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-u", "-b", secret, "-F", "raw",
                    top, "1M"], check=True)
    with d:
        q = d.qmp()
        kfd = os.open(idle, os.O_RDONLY)
        kernel = "/dev/fdset/%d" % add_fd(q, kfd)["return"]["fdset-id"]
        os.close(kfd)
        # only a read-only fd: a read-write disk cannot use it
        ro = os.open(img, os.O_RDONLY)
        s = add_fd(q, ro)["return"]["fdset-id"]
        os.close(ro)
        r = q.cmd("vm-create", dict(vm_def("rw", kernel), start=True,
                                    disks=[{"id": "vda", "file": "/dev/fdset/%d" % s,
                                            "format": "raw"}]))
        assert "error" in r and "Permission denied" in r["error"]["desc"], r
        # read-only, it can
        q.ok("vm-create", dict(vm_def("ro", kernel), start=True,
                               disks=[{"id": "vda", "file": "/dev/fdset/%d" % s,
                                       "format": "raw", "readonly": True}]))
        wait_console(d, "ro", "idle: up")
        q.ok("vm-destroy", vm="ro")
        # a passed qcow2 whose backing file names a host path outside the roots
        tfd = os.open(top, os.O_RDWR)
        t = add_fd(q, tfd)["return"]["fdset-id"]
        os.close(tfd)
        r = q.cmd("vm-create", dict(vm_def("back", kernel), start=True,
                                    disks=[{"id": "vda", "file": "/dev/fdset/%d" % t,
                                            "format": "qcow2"}]))
        assert "error" in r and DENIED in r["error"]["desc"], r


if __name__ == "__main__":
    main(globals())
