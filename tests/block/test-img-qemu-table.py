#!/usr/bin/env python3
"""qemu-img command lines (from QEMU's qemu-img documentation and the scripts
that copy it) run unchanged with vmm-img and with qemu-img, each in its own
directory holding the same files; exit status, stdout and (where marked)
stderr must match. Normalised only where the two cannot agree: the tool's
name in messages, snapshot dates, and the host's "disk size" figure."""

import json
import os
import re
import shlex
import shutil
import struct
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from vmmdtest import VMM_IMG  # noqa: E402

# (command line, compare stderr too). Rows run in order; each changes both
# directories the same way.
TABLE = [
    ("create -f qcow2 base.qcow2 64M", True),
    ("create -f raw disk.raw 4M", True),
    ("create -f raw -o help", True),
    ("info base.qcow2", True),
    ("info --output=json disk.raw", True),
    # the documentation's diff example: QEMU 7.2 refuses -b without -F
    ("create -f qcow2 -b disk.raw diff.qcow2", True),
    ("create -f qcow2 -b base.qcow2 -F qcow2 snap1.qcow2", True),
    ("create -f qcow2 -b snap1.qcow2 -F qcow2 snap2.qcow2", True),
    ("info --backing-chain snap2.qcow2", True),
    ("snapshot -c s1 base.qcow2", True),
    ("snapshot -l base.qcow2", True),
    ("snapshot -l disk.raw", True),
    ("check base.qcow2", True),
    ("check --output=json base.qcow2", True),
    ("check disk.raw", True),
    ("map --output=json disk.raw", True),
    ("map -f raw disk.raw", True),
    ("measure --size 1G -O qcow2", True),
    ("measure -O qcow2 disk.raw", True),
    ("measure --output=json -O qcow2 base.qcow2", True),
    ("measure -O qcow2 -o cluster_size=4k --size 1G", True),
    ("measure -O qcow2 -o preallocation=full --size 1M", True),
    ("measure --size 1G disk.raw", True),
    ("measure", True),
    ("convert -O qcow2 disk.raw disk.qcow2", True),
    ("compare disk.raw disk.qcow2", True),
    ("convert -O qcow2 -c disk.raw c.qcow2", True),
    ("compare -f raw -F qcow2 disk.raw c.qcow2", True),
    ("convert -W -m 4 -O raw disk.qcow2 back.raw", True),
    ("convert -W -c -O qcow2 disk.qcow2 w.qcow2", True),
    ("convert -m 17 -O raw disk.qcow2 m.raw", True),
    ("compare disk.raw back.raw", True),
    ("dd if=disk.raw of=dd.raw bs=64k count=4", True),
    ("dd -O qcow2 if=disk.raw of=dd.qcow2 bs=4k skip=2", True),
    ("info dd.qcow2", True),
    ("dd if=disk.raw", True),
    ("resize disk.raw 8M", True),
    ("resize disk.raw 2M", True),
    ("resize --shrink disk.raw 2M", True),
    ("resize -f qcow2 base.qcow2 +64M", True),
    ("amend -o cluster_size=4k base.qcow2", True),
    ("amend -f raw -o size=8M disk.raw", True),
    ("rebase -u -b base.qcow2 -F qcow2 snap2.qcow2", True),
    ("info snap2.qcow2", True),
    ("commit snap1.qcow2", True),
    ("check -r all base.qcow2", True),
    # a qcow2 image with two leaked clusters (made by the test, see leak_image)
    ("!leak leak.qcow2", True),
    ("check leak.qcow2", True),
    ("check --output=json leak.qcow2", True),
    ("check -r leaks leak.qcow2", True),
    ("check leak.qcow2", True),
    # persistent dirty bitmaps (qcow2 "Bitmaps" extension): options, messages, info
    ("bitmap base.qcow2 b0", True),
    ("bitmap --add base.qcow2", True),
    ("bitmap --add base.qcow2 b0", True),
    ("bitmap --add base.qcow2 b0", True),
    ("bitmap --add -g 4k base.qcow2 b1", True),
    ("bitmap --add -g 1000 base.qcow2 b2", True),
    ("bitmap --add -g 4G base.qcow2 b2", True),
    ("bitmap --add -g xyz base.qcow2 b2", True),
    ("bitmap --add base.qcow2 ''", True),
    ("bitmap --remove -g 4k base.qcow2 b1", True),
    ("bitmap --clear -F raw base.qcow2 b1", True),
    ("bitmap --clear -b disk.raw base.qcow2 b1", True),
    ("bitmap --disable base.qcow2 b1", True),
    ("bitmap --clear base.qcow2 b1", True),
    ("bitmap --enable base.qcow2 nope", True),
    ("bitmap --remove base.qcow2 nope", True),
    ("bitmap --merge nope base.qcow2 b1", True),
    ("bitmap --merge b0 base.qcow2 nope", True),
    ("bitmap --merge b0 base.qcow2 b1", True),
    ("bitmap base.qcow2 b1 --enable --merge b0", True),
    ("bitmap --add --remove --add base.qcow2 x", True),
    ("bitmap --add -g 2G base.qcow2 huge", True),
    ("bitmap --bogus base.qcow2 b0", True),
    ("bitmap --merge", True),
    ("bitmap -g", True),
    ("bitmap --add base.qcow2 b0 extra", True),
    ("bitmap --add nofile.qcow2 b0", False),
    ("bitmap -f raw --add disk.raw b0", True),
    ("bitmap -f raw --clear disk.raw b0", True),
    ("bitmap --add --merge b0 -b base.qcow2 -F qcow2 c.qcow2 m0", True),
    ("info base.qcow2", True),
    ("info --output=json base.qcow2", True),
    ("bitmap --remove base.qcow2 huge", True),
    ("bitmap --remove base.qcow2 x", True),
    ("info base.qcow2", True),
    ("create -q -f qcow2 m1.qcow2 64M", True),
    ("create -q -f qcow2 -o cluster_size=512 m2.qcow2 64M", True),
    ("bitmap --add m2.qcow2 d0", True),
    ("bitmap --add --merge d0 -b m2.qcow2 -F qcow2 m1.qcow2 c0", True),
    ("bitmap --merge d0 -b m2.qcow2 m1.qcow2 c0", True),
    ("info --output=json m2.qcow2", True),
    ("info m1.qcow2", True),
    ("create -q -f qcow2 -o compat=0.10 v2.qcow2 1M", True),
    ("bitmap --add v2.qcow2 b0", True),
]


def leak_image(path):
    """qemu-img's empty 1M qcow2, two more clusters with refcount 1 and no user."""
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", path, "1M"], check=True)
    with open(path, "r+b") as f:
        f.seek(48)
        reftable = struct.unpack(">Q", f.read(8))[0]
        f.seek(reftable)
        block = struct.unpack(">Q", f.read(8))[0]
        f.seek(0, 2)
        f.write(b"\0" * 2 * 65536)  # clusters 4 and 5
        for c in (4, 5):
            f.seek(block + 2 * c)
            f.write(struct.pack(">H", 1))


def normalise(text):
    text = text.replace("qemu-img", "TOOL").replace("vmm-img", "TOOL")
    text = re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", "DATE", text)
    text = re.sub(r"(?m)^disk size: .*$", "disk size: N", text)
    text = re.sub(r'"actual-size": \d+', '"actual-size": N', text)
    text = re.sub(r'"date-(sec|nsec)": \d+', r'"date-\1": N', text)
    # QEMU names a node by its generated name ("#block123"), vmm-img by its file
    text = re.sub(r"(persistent in |persistent bitmaps to )'?[^' :]*'?", r"\1NODE", text)
    return text


def run(tool, argv, cwd):
    p = subprocess.run([tool] + argv, cwd=cwd, capture_output=True, text=True, timeout=120)
    return p.returncode, normalise(p.stdout), normalise(p.stderr)


def main():
    if shutil.which("qemu-img") is None or shutil.which("qemu-io") is None:
        print("SKIP: qemu-img/qemu-io are not installed")
        return 77
    tmp = tempfile.mkdtemp(prefix="img-table-")
    failures = 0
    try:
        qdir, vdir = os.path.join(tmp, "q"), os.path.join(tmp, "v")
        os.mkdir(qdir)
        os.mkdir(vdir)
        for i, (line, with_err) in enumerate(TABLE):
            argv = shlex.split(line)
            if line.startswith("!leak "):
                for d in (qdir, vdir):
                    leak_image(os.path.join(d, argv[1]))
                continue
            q = run("qemu-img", argv, qdir)
            v = run(VMM_IMG, argv, vdir)
            if line.startswith("create -f raw disk.raw"):
                # the same data in both: a few written ranges and holes
                for d in (qdir, vdir):
                    subprocess.run(["qemu-io", "-f", "raw", "-c", "write -P 0x11 64k 64k",
                                    "-c", "write -P 0x22 1M 4k", "-c", "write -P 0x33 3M 512",
                                    "disk.raw"], cwd=d, check=True, capture_output=True)
            same = q[0] == v[0] and q[1] == v[1] and (not with_err or q[2] == v[2])
            print("%s %2d: %s" % ("ok  " if same else "FAIL", i, line))
            if not same:
                failures += 1
                for name, a, b in (("rc", q[0], v[0]), ("stdout", q[1], v[1]),
                                   ("stderr", q[2], v[2])):
                    if a != b:
                        print("  %s: qemu-img %r\n  %s: vmm-img  %r" % (name, a, name, b))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("%d of %d command lines differ" % (failures, len(TABLE)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
