"""Guest reboot paths: i8042 reset and triple fault become VM resets with RESET events;
with on_reboot "shutdown" a triple fault stops the VM in state shutdown instead."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from guestrun import check_ending, run_guest  # noqa: E402
from vmmdtest import main  # noqa: E402


def test_reboot_reset():
    run = run_guest("reboot", on_reboot="reset")
    for i in (1, 2, 3):
        assert "reboot: boot %d\n" % i in run.console, run.describe()
    # hw/isa/i8042.c pulses the reset line: no fallback to a triple fault was needed.
    assert "reboot: i8042 reset\n" in run.console, run.describe()
    assert "i8042 reset did nothing" not in run.console, run.describe()
    resets = run.events("RESET")
    assert len(resets) == 2, run.describe()
    assert all(r["guest"] and r["reason"] == "guest-reset" for r in resets), resets
    # The triple fault is logged with the CPU state, not fatal to vmmd.
    assert "triple fault" in run.stderr, run.describe()
    check_ending(run)


def test_reboot_shutdown():
    run = run_guest("reboot", on_reboot="shutdown", done=("boot 2",))
    assert "reboot: boot 1\n" in run.console, run.describe()
    assert "reboot: boot 2" not in run.console, run.describe()
    assert not run.signalled and run.rc == 0, run.describe()
    shutdowns = run.events("SHUTDOWN")
    assert len(shutdowns) == 1 and shutdowns[0]["reason"] == "guest-reset", run.describe()
    assert not run.events("RESET"), run.describe()
    assert "stopped: shutdown" in run.stderr, run.describe()


if __name__ == "__main__":
    main(globals())
