"""virtio-rng under a real VM: a test guest (tests/guests/virtio-rng.c) finds the
device by PCI enumeration (CF8/CFC and ECAM from ACPI MCFG must agree),
negotiates, sets up its queue with MSI-X and reads random bytes twice."""

from guestrun import run_guest
from vmmdtest import main


def test_rng_guest():
    run = run_guest("virtio-rng", timeout=120, done=("poweroff",), rng=True)
    c = run.console
    assert "pci: host bridge 0x12378086" in c, run.describe()
    assert "pci: ecam 0xc0000000 (from MCFG)" in c, run.describe()
    assert "pci: ecam matches cf8" in c, run.describe()
    assert "MISMATCH" not in c, run.describe()
    assert "rng: status 0xf" in c, run.describe()
    assert c.count("rng: got 64 bytes") == 2, run.describe()
    assert "rng: random ok" in c, run.describe()
    assert "rng: msix vector delivered" in c, run.describe()


def test_no_rng_without_config():
    run = run_guest("virtio-rng", timeout=120, done=("poweroff",))
    assert "rng: no device" in run.console, run.describe()


if __name__ == "__main__":
    main(globals())
