#!/usr/bin/env python3
"""How guest RAM is mapped in the daemon, read back from /proc/PID/smaps
while the memtouch guest (tests/guests/memtouch.c) has written every page
from 16 MiB up: never in core dumps ("dd"), and in transparent huge pages
unless the definition says "mem_thp": false (vmmd-vm(5))."""

import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vmmdtest import Vmmd, main  # noqa: E402
from daemon_helpers import guest, vm_def, wait_console  # noqa: E402

# Not a size glibc uses for its own mappings (malloc arenas are 64 MiB).
RAM = 48 << 20


def thp_mode():
    """The host's THP mode: "always", "madvise" or "never"."""
    with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
        return re.search(r"\[(\w+)\]", f.read()).group(1)


def ram_mapping(pid):
    """(VmFlags, AnonHugePages KiB) of the one anonymous mapping of guest RAM."""
    found, cur = [], None
    with open("/proc/%d/smaps" % pid) as f:
        for line in f:
            m = re.match(r"^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \d+\s*(.*)$", line)
            if m:
                start, end = int(m.group(1), 16), int(m.group(2), 16)
                cur = {"size": end - start, "perm": m.group(3), "name": m.group(4)}
                found.append(cur)
            elif line.startswith("AnonHugePages:"):
                cur["huge"] = int(line.split()[1])
            elif line.startswith("VmFlags:"):
                cur["flags"] = line.split()[1:]
    ram = [v for v in found if v["size"] == RAM and v["perm"] == "rw-p" and not v["name"]
           and "dd" in v["flags"]]
    assert len(ram) == 1, found
    return ram[0]["flags"], ram[0]["huge"]


def saved(d, name):
    with open(os.path.join(d.state_dir, "vms", name + ".json")) as f:
        return json.load(f)


def touched(d, name, **extra):
    d.qmp().ok("vm-create", dict(vm_def(name, guest("memtouch"), memory="48M", **extra),
                                 start=True))
    wait_console(d, name, "memtouch: pass 1\r\n", timeout=120)


def test_huge_pages_by_default():
    with Vmmd() as d:
        touched(d, "thp")
        flags, huge = ram_mapping(d.proc.pid)
        print("guest RAM: VmFlags %s, AnonHugePages %d KiB (host THP %s)" %
              (" ".join(flags), huge, thp_mode()))
        assert "hg" in flags and "nh" not in flags, flags
        if thp_mode() != "never":
            # 32 MiB written in 2 MiB-aligned RAM: huge pages unless the host has none free.
            assert huge >= 2048, huge
        # The default is not written out (older daemons read definitions too).
        assert "mem_thp" not in saved(d, "thp"), saved(d, "thp")


def test_mem_thp_false():
    with Vmmd() as d:
        touched(d, "small", mem_thp=False)
        flags, huge = ram_mapping(d.proc.pid)
        print("guest RAM: VmFlags %s, AnonHugePages %d KiB" % (" ".join(flags), huge))
        assert "nh" in flags and "hg" not in flags, flags
        assert huge == 0, huge
        assert saved(d, "small")["mem_thp"] is False, saved(d, "small")
        r = d.qmp().cmd("vm-create", vm_def("bad", guest("memtouch"), mem_thp="yes"))
        assert r["error"]["desc"] == '"mem_thp" must be true or false', r


if __name__ == "__main__":
    main(globals())
