"""Port I/O and MMIO to unclaimed addresses read all ones; the VM and vmmd carry on."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from guestrun import check_ending, run_guest  # noqa: E402
from vmmdtest import main  # noqa: E402


def test_unclaimed():
    run = run_guest("unclaimed")
    for line in ("inb = 0xff", "inw = 0xffff", "inl = 0xffffffff", "mmio8 = 0xff",
                 "mmio32 = 0xffffffff", "mmio64 = 0xffffffffffffffff", "unclaimed: ok"):
        assert line + "\n" in run.console, "missing %r\n%s" % (line, run.describe())
    assert "FAIL" not in run.console, run.describe()
    check_ending(run)


if __name__ == "__main__":
    main(globals())
