#!/usr/bin/env python3
"""The path policy (issue 14, failures 1 and 2): with image-roots set, no file
a VM uses may lie outside them, whoever names it: the definition (disk,
kernel, debugcon, console log) or an image (a qcow2 backing file given as an
absolute path, as '..' or through a symbolic link)."""

import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vmmdtest import Vmmd, main  # noqa: E402
from daemon_helpers import guest, vm_def, wait_console  # noqa: E402

DENIED = "outside the image roots"


def setup():
    """A daemon whose roots are images/ and the test guests' directory, a
    secret file outside them, and images that point at it."""
    idle = guest("idle")
    d = Vmmd()
    images = os.path.join(d.tmp, "images")
    os.mkdir(images)
    outside = os.path.join(d.tmp, "outside")
    os.mkdir(outside)
    secret = os.path.join(outside, "secret.raw")
    with open(secret, "wb") as f:
        f.write(b"host secret\n" * 4096)
    conf = os.path.join(d.tmp, "vmmd.conf")
    with open(conf, "w") as f:
        f.write("image-roots = %s %s\n" % (images, os.path.dirname(idle)))
    d.args += ["--config", conf]
    return d, idle, images, outside, secret


def qcow2(path, backing, fmt="raw"):
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-u", "-b", backing, "-F", fmt,
                    path, "1M"], check=True)


def disk_vm(name, idle, image):
    return dict(vm_def(name, idle), disks=[{"id": "vda", "file": image, "format": "qcow2"}],
                start=True)


def test_backing_file_outside_roots_is_refused():
    d, idle, images, outside, secret = setup()
    try:
        with d:
            q = d.qmp()
            cases = {
                "abs": secret,
                "dotdot": "../outside/secret.raw",
            }
            os.symlink(secret, os.path.join(images, "link.raw"))
            cases["link"] = "link.raw"
            for name, backing in cases.items():
                img = os.path.join(images, name + ".qcow2")
                qcow2(img, backing)
                r = q.cmd("vm-create", disk_vm(name, idle, img))
                assert "error" in r and DENIED in r["error"]["desc"], (name, r)
                assert name not in [v["name"] for v in q.ok("query-vms")]
            # A chain that stays inside works: the policy does not refuse everything.
            base = os.path.join(images, "base.raw")
            with open(base, "wb") as f:
                f.truncate(1 << 20)
            img = os.path.join(images, "good.qcow2")
            qcow2(img, "base.raw")
            q.ok("vm-create", disk_vm("good", idle, img))
            wait_console(d, "good", "idle: up")
            q.ok("vm-destroy", vm="good")
    finally:
        shutil.rmtree(d.tmp, ignore_errors=True)


def test_debugcon_outside_roots_is_refused():
    d, idle, images, outside, secret = setup()
    try:
        with d:
            q = d.qmp()
            target = os.path.join(outside, "written-by-guest")
            r = q.cmd("vm-create", dict(vm_def("dc1", idle), debugcon=target))
            assert "error" in r and DENIED in r["error"]["desc"], r
            # Through a directory link inside the roots.
            os.symlink(outside, os.path.join(images, "out"))
            r = q.cmd("vm-create", dict(vm_def("dc2", idle),
                                        debugcon=os.path.join(images, "out", "dc.log")))
            assert "error" in r and DENIED in r["error"]["desc"], r
            # A link swapped in after vm-create: the open itself refuses it.
            ok = os.path.join(images, "dc3.log")
            q.ok("vm-create", dict(vm_def("dc3", idle), debugcon=ok))
            os.symlink(target, ok)
            r = q.cmd("vm-start", vm="dc3")
            assert "error" in r and DENIED in r["error"]["desc"], r
            assert not os.path.exists(target)
            # The console log is a path of the definition too.
            r = q.cmd("vm-create", dict(vm_def("log1", idle),
                                        serial={"log": os.path.join(outside, "c.log")}))
            assert "error" in r and DENIED in r["error"]["desc"], r
            # The socket of an nbd+unix URI is a host path too.
            r = q.cmd("vm-create", dict(vm_def("nbd1", idle), disks=[
                {"id": "vda", "file": "nbd+unix:///?socket=" + os.path.join(outside, "n.sock"),
                 "format": "raw"}]))
            assert "error" in r and DENIED in r["error"]["desc"], r
            # Inside the roots, debugcon works.
            good = os.path.join(images, "dc-good.log")
            q.ok("vm-create", dict(vm_def("dc4", idle), debugcon=good, start=True))
            wait_console(d, "dc4", "idle: up")
            q.ok("vm-destroy", vm="dc4")
            assert os.path.exists(good)
    finally:
        shutil.rmtree(d.tmp, ignore_errors=True)


if __name__ == "__main__":
    main(globals())
