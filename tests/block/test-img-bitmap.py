#!/usr/bin/env python3
"""Persistent dirty bitmaps, both ways between vmm-img and QEMU 7.2 on the
same files: bitmaps QEMU filled (qemu-io writes through enabled bitmaps)
are read, merged, cleared and removed by vmm-img; what vmm-img writes is
listed identically by qemu-img info, passes qemu-img check, and merges in
QEMU to the same bits. The bits are compared by reading the qcow2 bitmap
directory and tables here (an independent reader of the spec's layout).
The option and message conformance is in test-img-qemu-table.py."""

import os
import shutil
import struct
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from vmmdtest import VMM_IMG  # noqa: E402

BITMAPS_EXT = 0x23852875
failures = 0


def check(cond, what):
    global failures
    print("%s %s" % ("ok  " if cond else "FAIL", what))
    if not cond:
        failures += 1


def run(argv, cwd, ok=True):
    p = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=120)
    if ok and p.returncode != 0:
        print("command failed: %s\n%s%s" % (" ".join(argv), p.stdout, p.stderr))
        check(False, " ".join(argv))
    return p


def read_bitmaps(path):
    """{name: (granularity, flags, set of dirty granule offsets)}"""
    with open(path, "rb") as f:
        h = f.read(65536)
        cs = 1 << struct.unpack(">I", h[20:24])[0]
        size = struct.unpack(">Q", h[24:32])[0]
        autoclear = struct.unpack(">Q", h[88:96])[0]
        p = struct.unpack(">I", h[100:104])[0]
        while True:
            t, ln = struct.unpack(">II", h[p:p + 8])
            if t == 0:
                return {}
            if t == BITMAPS_EXT:
                nb, _, dsize, doff = struct.unpack(">IIQQ", h[p + 8:p + 32])
                break
            p += 8 + ((ln + 7) & ~7)
        if not autoclear & 1:
            return {}
        f.seek(doff)
        d = f.read(dsize)
        q, out = 0, {}
        for _ in range(nb):
            toff, tsize, flags, _, gbits, nlen, extra = struct.unpack(">QIIBBHI", d[q:q + 24])
            name = d[q + 24 + extra:q + 24 + extra + nlen].decode()
            f.seek(toff)
            data = b""
            for e in struct.unpack(">%dQ" % tsize, f.read(8 * tsize)):
                off = e & 0x00fffffffffffe00
                if off:
                    f.seek(off)
                    data += f.read(cs)
                else:
                    data += (b"\xff" if e & 1 else b"\0") * cs
            g = 1 << gbits
            dirty = {i * g for i in range((size + g - 1) // g) if data[i // 8] >> (i % 8) & 1}
            out[name] = (g, flags, dirty)
            q += (24 + extra + nlen + 7) & ~7
        return out


def coarsen(offsets, src_g, dst_g, size):
    out = set()
    for o in offsets:
        end = min(o + src_g, size)
        out.update(range(o // dst_g * dst_g, end, dst_g))
    return out


def main():
    if shutil.which("qemu-img") is None or shutil.which("qemu-io") is None:
        print("SKIP: qemu-img/qemu-io are not installed")
        return 77
    d = tempfile.mkdtemp(prefix="img-bitmap-")
    size = 64 << 20
    try:
        img = "a.qcow2"
        run(["qemu-img", "create", "-q", "-f", "qcow2", img, str(size)], d)
        run(["qemu-img", "bitmap", "--add", img, "q64k"], d)
        run(["qemu-img", "bitmap", "--add", "-g", "512", img, "q512"], d)
        run(["qemu-io", "-c", "write 0 64k", "-c", "write 1M 4k", "-c", "write 33M 512",
             "-c", "write 63M 1M", img], d)
        bm = read_bitmaps(os.path.join(d, img))
        check(len(bm["q512"][2]) == 128 + 8 + 1 + 2048, "QEMU's writes dirtied q512")

        # vmm-img reads QEMU's bitmaps: merges into new ones of other granularities
        run([VMM_IMG, "bitmap", "--add", "-g", "4k", img, "v4k", "--merge", "q64k"], d)
        run([VMM_IMG, "bitmap", "--add", img, "v64k", "--merge", "q512"], d)
        run([VMM_IMG, "bitmap", "--add", "-g", "1M", "--merge", "q512", img, "v1m"], d)
        bm = read_bitmaps(os.path.join(d, img))
        q64k, q512 = bm["q64k"][2], bm["q512"][2]
        check(bm["v4k"][2] == coarsen(q64k, 65536, 4096, size), "merge to a finer granularity")
        check(bm["v64k"][2] == coarsen(q512, 512, 65536, size), "merge to a coarser one")
        check(bm["v1m"][2] == coarsen(q512, 512, 1 << 20, size), "merge to 1 MiB")
        check(bm["v64k"][2] == q64k, "coarsened q512 equals QEMU's own q64k")

        # QEMU reads vmm-img's bitmaps: its merges give the same bits
        for name, g in (("v4k", "4k"), ("v64k", "64k"), ("v1m", "1M")):
            run(["qemu-img", "bitmap", "--add", "-g", g, img, "q-" + name, "--merge", name], d)
        bm = read_bitmaps(os.path.join(d, img))
        for name in ("v4k", "v64k", "v1m"):
            check(bm["q-" + name][2] == bm[name][2], "QEMU merges vmm-img's %s alike" % name)

        # both tools list the same bitmaps, and both checks are clean
        for args in (["info"], ["info", "--output=json"]):
            q = run(["qemu-img"] + args + [img], d).stdout
            v = run([VMM_IMG] + args + [img], d).stdout
            strip = lambda s: "\n".join(ln for ln in s.splitlines()
                                        if "disk size" not in ln and "actual-size" not in ln)
            check(strip(q) == strip(v), "vmm-img %s lists the bitmaps as qemu-img" % " ".join(args))
        p = run(["qemu-img", "check", img], d, ok=False)
        check(p.returncode == 0 and "No errors" in p.stdout, "qemu-img check after vmm-img")
        p = run([VMM_IMG, "check", img], d, ok=False)
        check(p.returncode == 0 and "No errors" in p.stdout, "vmm-img check")

        # clear, disable, remove by vmm-img; QEMU sees the result
        run([VMM_IMG, "bitmap", "--clear", "--disable", img, "q512"], d)
        run([VMM_IMG, "bitmap", "--remove", img, "q64k"], d)
        bm = read_bitmaps(os.path.join(d, img))
        check(bm["q512"][2] == set() and not bm["q512"][1] & 2, "clear and disable")
        check("q64k" not in bm, "remove")
        run(["qemu-io", "-c", "write 2M 4k", img], d)
        bm = read_bitmaps(os.path.join(d, img))
        check(bm["q512"][2] == set(), "a disabled bitmap stays clean in QEMU")
        check(bm["v4k"][2] >= {2 << 20}, "an enabled one records QEMU's write")
        run([VMM_IMG, "bitmap", "--enable", img, "q512"], d)
        run(["qemu-io", "-c", "write 3M 512", img], d)
        bm = read_bitmaps(os.path.join(d, img))
        check(bm["q512"][2] == {3 << 20}, "enabled again by vmm-img, QEMU tracks")
        for tool in ("qemu-img", VMM_IMG):
            p = run([tool, "check", img], d, ok=False)
            check(p.returncode == 0 and "No errors" in p.stdout, "%s check at the end" % tool)
        for name in list(bm):
            run([VMM_IMG, "bitmap", "--remove", img, name], d)
        p = run(["qemu-img", "check", img], d, ok=False)
        check(p.returncode == 0 and "No errors" in p.stdout and "leaked" not in p.stdout,
              "every bitmap removed: no leak")
        check(read_bitmaps(os.path.join(d, img)) == {}, "no bitmaps extension left")

        # a bitmap QEMU left in use (crash) is refused but removable
        run(["qemu-img", "bitmap", "--add", img, "crashed"], d)
        with open(os.path.join(d, img), "r+b") as f:
            h = f.read(65536)
            p = struct.unpack(">I", h[100:104])[0]
            while struct.unpack(">I", h[p:p + 4])[0] != BITMAPS_EXT:
                p += 8 + ((struct.unpack(">I", h[p + 4:p + 8])[0] + 7) & ~7)
            doff = struct.unpack(">Q", h[p + 24:p + 32])[0]
            f.seek(doff + 12)
            f.write(struct.pack(">I", 3))
        for tool in ("qemu-img", VMM_IMG):
            p = run([tool, "bitmap", "--clear", img, "crashed"], d, ok=False)
            check(p.returncode == 1 and "is inconsistent" in p.stderr, "%s refuses in-use" % tool)
        q = run(["qemu-img", "info", img], d).stdout
        v = run([VMM_IMG, "info", img], d).stdout
        check("in-use" in v and q.split("Format")[1] == v.split("Format")[1], "in-use listed")
        run([VMM_IMG, "bitmap", "--remove", img, "crashed"], d)
        p = run(["qemu-img", "check", img], d, ok=False)
        check(p.returncode == 0 and "No errors" in p.stdout, "in-use removed cleanly")

        # check -r changes refcounts only: the bitmaps stay valid, their clusters in use
        run(["qemu-img", "bitmap", "--add", img, "kept"], d)
        run(["qemu-io", "-c", "write 5M 4k", img], d)
        with open(os.path.join(d, img), "r+b") as f:  # one leaked cluster past the end
            f.seek(48)
            reftable = struct.unpack(">Q", f.read(8))[0]
            f.seek(reftable)
            block = struct.unpack(">Q", f.read(8))[0]
            f.seek(0, 2)
            end = (f.tell() + 65535) // 65536 * 65536
            f.truncate(end + 65536)
            f.seek(block + 2 * (end // 65536))
            f.write(struct.pack(">H", 1))
        p = run([VMM_IMG, "check", "-r", "leaks", img], d, ok=False)
        check(p.returncode == 0 and "Repairing cluster" in p.stderr + p.stdout, "check -r leaks")
        p = run(["qemu-img", "check", img], d, ok=False)
        check(p.returncode == 0 and "No errors" in p.stdout, "qemu-img check after the repair")
        bm = read_bitmaps(os.path.join(d, img))
        check("kept" in bm and (5 << 20) in bm["kept"][2], "the bitmap survives check -r")
        run([VMM_IMG, "bitmap", "--remove", img, "kept"], d)

        # vmmd's rule: a read-write open that may write guest data marks the bitmaps stale
        run(["qemu-img", "bitmap", "--add", img, "b"], d)
        run([VMM_IMG, "resize", img, "+1M"], d)
        p = run(["qemu-img", "info", img], d)
        check("bitmaps:" not in p.stdout and "lacking bitmap support" in p.stderr,
              "after a vmm-img write QEMU sees the bitmaps as stale")
    finally:
        shutil.rmtree(d, ignore_errors=True)
    print("%d failures" % failures)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
