"""Instructions the host's emulator rejects (int3 at CPL 0, popcnt) still work in a guest:
vmmd delivers the #BP / emulates the register popcnt instead of stopping the VM."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from guestrun import check_ending, run_guest  # noqa: E402
from vmmdtest import main  # noqa: E402


def test_emul():
    run = run_guest("emul")
    for line in ("emul: int3 traps = 2", "emul: popcnt64 = 33", "emul: popcnt64 zf = 0",
                 "emul: popcnt64(0) = 0", "emul: popcnt64(0) zf = 1", "emul: popcnt32 = 2",
                 "emul: popcnt16 = 15", "emul: fwait done", "emul: ok"):
        assert line + "\n" in run.console, "missing %r\n%s" % (line, run.describe())
    assert "internal-error" not in run.stderr, run.describe()
    check_ending(run)


if __name__ == "__main__":
    main(globals())
