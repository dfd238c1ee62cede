"""SMP bring-up: the BSP wakes every AP with INIT-SIPI-SIPI and each reports on COM1."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from guestrun import check_ending, run_guest  # noqa: E402
from vmmdtest import main  # noqa: E402


def smp(n):
    run = run_guest("smp", vcpus=n)
    assert "smp: %d CPUs, BSP APIC ID 0" % n in run.console, run.describe()
    for i in range(1, n):
        assert "smp: AP %d up" % i in run.console, run.describe()
    ids = sorted(int(l.rsplit(" ", 1)[1]) for l in run.console.splitlines()
                 if l.startswith("smp: AP "))
    assert ids == list(range(1, n)), "APIC IDs %r\n%s" % (ids, run.describe())
    assert "smp: %d of %d CPUs up" % (n, n) in run.console, run.describe()
    check_ending(run)


def test_smp_1():
    smp(1)


def test_smp_4():
    smp(4)


if __name__ == "__main__":
    main(globals())
