"""The hello test guest boots under vmmd (PVH entry), prints on COM1 and powers off."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from guestrun import check_ending, run_guest  # noqa: E402
from vmmdtest import main  # noqa: E402


def test_hello():
    run = run_guest("hello")
    assert "hello from the vmmd test guest" in run.console, run.describe()
    assert "cpuid: hypervisor=1" in run.console, run.describe()
    # Hidden on the test's CPU model (the host's emulator lacks cmpxchg16b).
    assert "cx16=0" in run.console, run.describe()
    assert "hypervisor signature KVMKVMKVM" in run.console, run.describe()
    assert run.events("RESUME"), run.describe()
    check_ending(run)
    assert "exits to user space" in run.stderr, run.describe()


def test_bad_kernel():
    """A file that is not a kernel fails vm_new with a message naming it; vmmd exits 1."""
    import subprocess
    import tempfile
    import json
    from vmmdtest import VMMD, require_kvm
    require_kvm()
    with tempfile.TemporaryDirectory() as tmp:
        bogus = os.path.join(tmp, "bogus")
        with open(bogus, "w") as f:
            f.write("#!/bin/sh\necho not a kernel\n" * 100)
        cfg = os.path.join(tmp, "vm.json")
        with open(cfg, "w") as f:
            json.dump({"name": "bad", "memory": "16M", "cpu": "host,-cx16,-xsave",
                       "boot": {"kernel": bogus}}, f)
        p = subprocess.run([VMMD, "--run-vm", cfg], cwd=tmp, capture_output=True, text=True,
                           timeout=30)
        assert p.returncode == 1, p
        assert bogus + ": not a kernel" in p.stderr, p.stderr
        with open(cfg, "w") as f:
            json.dump({"name": "bad", "memory": "16M", "vcpus": 0,
                       "boot": {"kernel": bogus}}, f)
        p = subprocess.run([VMMD, "--run-vm", cfg], cwd=tmp, capture_output=True, text=True,
                           timeout=30)
        assert p.returncode == 1 and "between 1 and 64" in p.stderr, p


if __name__ == "__main__":
    main(globals())
