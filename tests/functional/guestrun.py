"""Run one of the test guests (tests/guests/*.elf) under `vmmd --run-vm`.

Shared by tests/functional/test-guest-*.py. The guest reports on COM1 (the
console log); vmmd prints the VM's events on stderr. A guest ends by ACPI
poweroff (VM state shutdown, vmmd exits 0) or, where the machine has no
ACPI PM block yet, by printing "halting" and halting, after which the test
stops vmmd with SIGTERM.
"""

import json
import os
import signal
import subprocess
import tempfile
import time

from vmmdtest import TOP_BUILDDIR, VMMD, require_kvm, skip

GUESTS = os.path.join(TOP_BUILDDIR, "tests", "guests")
# This host's KVM emulates guest instructions and lacks cmpxchg16b and xsave.
TEST_CPU = "host,-cx16,-xsave"


class GuestRun:
    def __init__(self, console, stderr, rc, signalled):
        self.console = console
        self.stderr = stderr
        self.rc = rc
        self.signalled = signalled  # vmmd had to be stopped by the test

    def events(self, name):
        """The data of every event NAME vmmd printed, in order."""
        out = []
        for line in self.stderr.splitlines():
            parts = line.split(" ", 2)
            if len(parts) == 3 and parts[0] == "event" and parts[1] == name:
                out.append(json.loads(parts[2]))
        return out

    def describe(self):
        return "--- console ---\n%s\n--- vmmd stderr ---\n%s" % (self.console, self.stderr)


def guest_path(name):
    path = os.path.join(GUESTS, name + ".elf")
    if not os.path.exists(path):
        skip("test guest %s is not built" % path)
    return path


def run_guest(name, timeout=60.0, done=("halting\n",), at_done=None, **cfg):
    """Boot guest NAME; return a GuestRun once it powered off or printed a DONE marker
    (then AT_DONE(pid of vmmd) runs first, while the VM still exists)."""
    require_kvm()
    kernel = guest_path(name)
    with tempfile.TemporaryDirectory(prefix="vmmd-guest.") as tmp:
        log = os.path.join(tmp, "console.log")
        definition = {
            "name": name,
            "vcpus": 1,
            "memory": "64M",
            "cpu": TEST_CPU,
            "boot": {"kernel": kernel},
            "serial": {"log": log},
            "on_reboot": "shutdown",
        }
        definition.update(cfg)
        path = os.path.join(tmp, "vm.json")
        with open(path, "w") as f:
            json.dump(definition, f)
        errpath = os.path.join(tmp, "stderr")
        with open(errpath, "wb") as err:
            proc = subprocess.Popen([VMMD, "--run-vm", path], cwd=tmp, stdout=err,
                                    stderr=subprocess.STDOUT)
        signalled = False
        deadline = time.monotonic() + timeout

        def console():
            try:
                with open(log, "rb") as f:
                    return f.read().decode(errors="replace").replace("\r\n", "\n")
            except OSError:
                return ""

        try:
            while proc.poll() is None:
                if any(m in console() for m in done):
                    time.sleep(0.2)  # let the serial ring drain into the log
                    if at_done:
                        at_done(proc.pid)
                    if "poweroff: ACPI S5" in console():
                        # The guest wrote S5 and went on to halt: vmmd stops on
                        # its own, and under ASan on a loaded machine that took
                        # longer than the 0.2 s above (CI, 44e5105).
                        try:
                            proc.wait(timeout=10)
                            break
                        except subprocess.TimeoutExpired:
                            pass
                    proc.send_signal(signal.SIGTERM)
                    signalled = True
                    break
                if time.monotonic() > deadline:
                    proc.send_signal(signal.SIGTERM)
                    signalled = True
                    break
                time.sleep(0.05)
            proc.wait(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        with open(errpath, "rb") as f:
            stderr = f.read().decode(errors="replace")
        return GuestRun(console(), stderr, proc.returncode, signalled)


def check_ending(run):
    """The guest's last words: a clean ACPI poweroff, or a halt when there is no PM block."""
    if "poweroff: ACPI S5" in run.console:
        assert not run.signalled, "ACPI poweroff did not stop the VM\n" + run.describe()
        assert run.rc == 0, run.describe()
        shutdowns = run.events("SHUTDOWN")
        assert shutdowns and shutdowns[-1]["reason"] == "guest-shutdown", run.describe()
        assert "stopped: shutdown" in run.stderr, run.describe()
    else:
        assert "poweroff: no ACPI PM block, halting" in run.console, run.describe()
        assert run.signalled and run.rc == 0, run.describe()
