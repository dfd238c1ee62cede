#!/usr/bin/env python3
"""pmemsave, replayed from QEMU 7.2's golden trace (golden/pmemsave.json,
make-golden-pmemsave.py) on guest-idle.elf: the answers, the sizes of the
files, the guest's code segment read back as the ELF has it; then what
vmmd adds: a size past the guest's memory refused (QEMU writes on), holes
read as zeroes, the file through the image roots, and the VM held (a
destroy waits) while the file is written."""

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from vmmdtest import Vmmd, main  # noqa: E402
from daemon_helpers import TEST_CPU, guest, vmmd_with_image_roots  # noqa: E402

TOP_SRCDIR = os.environ.get("top_srcdir", os.path.join(HERE, "..", ".."))
GOLDEN = os.path.join(TOP_SRCDIR, "tests", "functional", "golden", "pmemsave.json")
rec = __import__("make-golden-pmemsave")


def golden():
    with open(GOLDEN) as f:
        return json.load(f)


def boot(d, name="m1", memory="32M"):
    q = d.qmp()
    q.ok("vm-create", {"name": name, "vcpus": 1, "memory": memory, "cpu": TEST_CPU,
                       "boot": {"kernel": guest("idle")}, "start": True})
    return q


def test_pmemsave_as_qemu():
    g = golden()
    code = rec.code_segment(guest("idle"))[1]
    with Vmmd() as d:
        q = boot(d)
        for step in g["calls"]:
            r = q.cmd("pmemsave", dict(rec.subst(step["arguments"], d.tmp), vm="m1"))
            r.pop("id", None)
            r = json.loads(json.dumps(r).replace(d.tmp, "$DIR"))
            assert r == step["reply"], (step["arguments"], r, step["reply"])
            f = step["arguments"].get("filename", "").replace("$DIR", d.tmp)
            if "file-size" in step:
                assert os.path.getsize(f) == step["file-size"], f
            if "file-is-the-code" in step:
                with open(f, "rb") as fh:
                    assert (fh.read() == code) == step["file-is-the-code"]


def test_bounds_and_holes():
    with Vmmd() as d:
        q = boot(d)
        f = os.path.join(d.tmp, "m.bin")
        r = q.cmd("pmemsave", vm="m1", val=0, size=(32 << 20) + (4 << 30) + 1, filename=f)
        assert "pmemsave writes at most" in r["error"]["desc"], r
        assert not os.path.exists(f)
        # 32 MiB of RAM: from 31 MiB, 1 MiB of RAM then 1 MiB of nothing (zeroes)
        q.ok("pmemsave", vm="m1", val=31 << 20, size=2 << 20, filename=f)
        with open(f, "rb") as fh:
            data = fh.read()
        assert len(data) == 2 << 20 and data[1 << 20:] == bytes(1 << 20)


def test_image_roots():
    """With image-roots set, the file must lie beneath one (the policy's words)."""
    idle = guest("idle")
    d, images = vmmd_with_image_roots(os.path.dirname(idle))
    with d:
        q = boot(d)
        out = os.path.join(d.tmp, "out.bin")
        r = q.cmd("pmemsave", vm="m1", val=0, size=4096, filename=out)
        assert "outside" in r["error"]["desc"] and not os.path.exists(out), r
        q.ok("pmemsave", vm="m1", val=0, size=4096, filename=os.path.join(images, "out.bin"))
        assert os.path.getsize(os.path.join(images, "out.bin")) == 4096


def test_destroy_waits():
    """A destroy while pmemsave writes 1 GiB waits for it: the file is whole."""
    with Vmmd() as d:
        q = boot(d, memory="1G")
        f = os.path.join(d.tmp, "big.bin")
        q.send_raw(json.dumps({"execute": "pmemsave", "arguments": {
            "vm": "m1", "val": 0, "size": 1 << 30, "filename": f}, "id": "p"}) + "\n")
        q2 = d.qmp()
        q2.ok("vm-destroy", vm="m1")
        r = q.reply()
        assert r.get("return") == {} and r.get("id") == "p", r
        assert os.path.getsize(f) == 1 << 30


if __name__ == "__main__":
    main(globals())
