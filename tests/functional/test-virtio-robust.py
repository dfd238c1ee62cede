"""Malicious virtqueues built for real by a test guest
(tests/guests/virtio-robust.c): every case must fail cleanly (the device
sets DEVICE_NEEDS_RESET, or a malformed request gets an error status), the
device must work again after a reset, and vmmd must not stop the VM or die.
A second VM in the same vmmd process keeps running meanwhile
(tests/functional/two-vms, when built)."""

import json
import os
import subprocess
import tempfile

from guestrun import TEST_CPU, guest_path, run_guest
from vmmdtest import TOP_BUILDDIR, main, require_kvm, skip

RESET_CASES = ["loop", "overlong-indirect", "outside-ram", "wrapping", "nested-indirect",
               "avail-jump", "ring-outside-ram"]


def test_malicious_rings():
    with tempfile.TemporaryDirectory(prefix="vmmd-robust.") as tmp:
        disk = os.path.join(tmp, "d.raw")
        with open(disk, "wb") as f:
            f.truncate(1 << 20)
        run = run_guest("virtio-robust", timeout=300, done=("poweroff",), rng=True,
                        disks=[{"id": "vda", "file": disk, "format": "raw"}])
    c = run.console
    for case in RESET_CASES:
        assert "robust: %s needs-reset" % case in c, case + "\n" + run.describe()
        assert "robust: %s recovered" % case in c, case + "\n" + run.describe()
    assert "robust: zero-length completed len 0" in c, run.describe()
    assert "robust: blk-writable-header completed len 1 status 1" in c, run.describe()
    assert "robust: blk-no-status needs-reset" in c, run.describe()
    assert "robust: blk-recovered-empty-read completed len 1 status 0" in c, run.describe()
    assert "robust: done" in c, run.describe()
    # the guest's misbehaviour is logged (rate-limited), never fatal
    assert "device needs reset" in run.stderr, run.describe()
    assert "internal-error" not in run.stderr, run.describe()


def test_other_vm_keeps_running():
    require_kvm()
    prog = os.path.join(TOP_BUILDDIR, "tests", "functional", "two-vms")
    if not os.path.exists(prog):
        skip("two-vms is not built")
    with tempfile.TemporaryDirectory(prefix="vmmd-two.") as tmp:
        disk = os.path.join(tmp, "d.raw")
        with open(disk, "wb") as f:
            f.truncate(1 << 20)
        cons = {}
        for name, guest, extra in (("bad", "virtio-robust",
                                    {"disks": [{"id": "vda", "file": disk, "format": "raw"}]}),
                                   ("good", "virtio-rng-loop", {})):
            cons[name] = os.path.join(tmp, name + ".log")
            d = {"name": name, "vcpus": 1, "memory": "64M", "cpu": TEST_CPU, "rng": True,
                 "boot": {"kernel": guest_path(guest)}, "serial": {"log": cons[name]},
                 "on_reboot": "shutdown"}
            d.update(extra)
            with open(os.path.join(tmp, name + ".json"), "w") as f:
                json.dump(d, f)
        r = subprocess.run([prog, os.path.join(tmp, "bad.json"), os.path.join(tmp, "good.json"),
                            cons["bad"], "robust: done", cons["good"], "rng: loop progress"],
                           capture_output=True, text=True, timeout=400)
        with open(cons["bad"]) as f:
            bad = f.read()
        assert r.returncode == 0, r.stdout + r.stderr + "\n--- bad ---\n" + bad
        assert "robust: loop needs-reset" in bad


if __name__ == "__main__":
    main(globals())
