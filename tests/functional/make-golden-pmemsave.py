#!/usr/bin/env python3
"""Record QEMU 7.2's pmemsave as a golden trace (tests/functional/golden/
pmemsave.json) for test-pmemsave.py.

qemu-system-x86_64 runs tests/functional/guest-idle.elf (its PVH note): the
answers to pmemsave for the guest's code segment (and whether the file
holds the ELF's bytes of it), for no bytes, a file in a missing directory,
a missing filename, and 16 bytes at val -1 (the top of the address space);
the size of each file written.

Usage: tests/functional/make-golden-pmemsave.py GUEST.elf [QEMU]"""

import importlib.util
import json
import os
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("golden_migration",
                                               os.path.join(HERE, "make-golden-migration.py"))
golden_migration = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(golden_migration)

OUT = os.path.join(HERE, "golden", "pmemsave.json")


def code_segment(path):
    """(guest-physical address, bytes) of the ELF's largest executable PT_LOAD:
    what the loader put in guest RAM and the guest does not write."""
    with open(path, "rb") as f:
        elf = f.read()
    phoff, = struct.unpack_from("<Q", elf, 32)
    phentsize, phnum = struct.unpack_from("<HH", elf, 54)
    best = None
    for i in range(phnum):
        p_type, p_flags, p_offset, _, p_paddr, p_filesz = struct.unpack_from(
            "<IIQQQQ", elf, phoff + i * phentsize)
        if p_type == 1 and p_flags & 1 and (not best or p_filesz > len(best[1])):
            best = (p_paddr, elf[p_offset:p_offset + p_filesz])
    if not best:
        raise AssertionError("no executable segment in %s" % path)
    return best


def calls(guest):
    """pmemsave's arguments, $DIR for the directory of the files."""
    addr, code = code_segment(guest)
    return [{"val": addr, "size": len(code), "filename": "$DIR/code.bin"},
            {"val": 0x100000, "size": 0, "filename": "$DIR/empty.bin"},
            {"val": 0, "size": 4096, "filename": "$DIR/missing/x.bin"},
            {"val": 0, "size": 16},
            {"val": -1, "size": 16, "filename": "$DIR/top.bin"}]


def subst(v, d):
    return {k: x.replace("$DIR", d) if isinstance(x, str) else x for k, x in v.items()}


def main():
    guest = sys.argv[1]
    qemu = sys.argv[2] if len(sys.argv) > 2 else "qemu-system-x86_64"
    code = code_segment(guest)[1]
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "qmp")
        p = subprocess.Popen([qemu, "-machine", "pc,accel=kvm",
                              "-cpu", "host,-cx16,-xsave,-arch-capabilities", "-m", "32",
                              "-nodefaults", "-display", "none", "-kernel", guest,
                              "-qmp", "unix:%s,server=on,wait=off" % path],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            q = golden_migration.Qmp(path)
            out = {"qemu": q.cmd("query-version")["return"]["qemu"], "calls": []}
            time.sleep(1)
            for a in calls(guest):
                m = q.call("pmemsave", subst(a, d))
                m = json.loads(json.dumps(m).replace(d, "$DIR"))
                step = {"arguments": a, "reply": m}
                f = a.get("filename", "").replace("$DIR", d)
                if f and os.path.exists(f):
                    step["file-size"] = os.path.getsize(f)
                if f.endswith("code.bin"):
                    with open(f, "rb") as fh:
                        step["file-is-the-code"] = fh.read() == code
                out["calls"].append(step)
        finally:
            p.kill()
            p.wait()
    golden_migration.write_golden(OUT, out)


if __name__ == "__main__":
    main()
