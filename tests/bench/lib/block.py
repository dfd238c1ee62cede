"""Figure 5 when the block helper's tests/bench/block.sh is absent:
`vmm-img bench` vs `qemu-img bench` on the same raw and qcow2 images, with
qemu-img's option names (-f -c -d -s -w -t), 4 KiB requests, 16 in flight,
O_DIRECT (cache none). Each run's "Run completed in S seconds" (or a
"... seconds" figure) gives requests per second.
"""

import os
import re
import subprocess

from common import SkipFigure, have
from figures import Figure

_SECONDS = re.compile(r"(?:completed in|in)\s+([0-9.]+)\s*s(?:ec|econds)?\b")


def parse_seconds(text):
    m = _SECONDS.search(text)
    if not m:
        return None
    s = float(m.group(1))
    return s if s > 0 else None


class BlockBench(Figure):
    number = 5
    name = "block"
    needs_kvm = False
    CASES = (("raw", "read"), ("raw", "write"), ("qcow2", "read"), ("qcow2", "write"))

    def __init__(self, ctx):
        super().__init__(ctx)
        self.count = 4000 if ctx.quick else 50000
        self.size_mib = 64 if ctx.quick else 512
        self.r = {}
        for fmt, op in self.CASES:
            self.r[(fmt, op)] = self.row(
                "block.%s.%s" % (fmt, op), "image tool bench: %s 4 KiB %ss, queue depth 16, "
                "cache=none" % (fmt, op), "IOPS", "higher")
        self.images = {}

    def unavailable(self):
        out = {}
        if not have("qemu-img"):
            out["qemu"] = "qemu-img is not installed"
        p = subprocess.run([self.ctx.cfg.vmm_img, "bench", "--help"], capture_output=True,
                           text=True)
        if p.returncode != 0:
            out["vmmd"] = "vmm-img has no bench command yet (vmm-img bench --help exited %d)" % (
                p.returncode)
        return out

    def image(self, fmt):
        if fmt not in self.images:
            path = os.path.join(self.ctx.cfg.tmp, "bench.%s" % fmt)
            p = subprocess.run(["qemu-img", "create", "-q", "-f", fmt, path,
                                "%dM" % self.size_mib], capture_output=True, text=True)
            if p.returncode != 0:
                raise SkipFigure("qemu-img create failed: %s" % p.stderr.strip())
            # Fill it once so that reads hit allocated data in both formats.
            subprocess.run(["qemu-img", "bench", "-f", fmt, "-w", "-c",
                            str(self.size_mib * 16), "-s", "64k", "-d", "4", path],
                           capture_output=True)
            self.images[fmt] = path
        return self.images[fmt]

    def run(self, side, tool):
        for fmt, op in self.CASES:
            path = self.image(fmt)
            argv = [tool, "bench", "-f", fmt, "-c", str(self.count), "-d", "16", "-s", "4096",
                    "-t", "none"] + (["-w"] if op == "write" else []) + [path]
            p = subprocess.run(argv, capture_output=True, text=True, timeout=600)
            secs = parse_seconds(p.stdout + p.stderr)
            if p.returncode != 0 or secs is None:
                raise SkipFigure("%s exited %d: %s" % (" ".join(argv[:2]), p.returncode,
                                                       (p.stderr or p.stdout).strip()[-200:]))
            self.r[(fmt, op)].add(side, self.count / secs)

    def measure_qemu(self, rnd):
        self.run("qemu", "qemu-img")

    def measure_vmmd(self, rnd):
        self.run("vmmd", self.ctx.cfg.vmm_img)
