#!/usr/bin/env python3
"""Lazy restore of shared guest RAM (docs/vmstate.md, "Restore and memory"):
vm-restore of a VM with memfd RAM registers it with a userfaultfd and a
handler thread fills it from the snapshot's memory file, on first touch and
in the background, instead of copying it before the VM runs.

With the memtouch guest (tests/guests/memtouch.c: every page from 16 MiB up
holds a word made of its address and a boot nonce, checked on each pass):
right after the restore little of the memfd is resident (mincore over a
fresh mapping of /proc/PID/fd/N); the guest goes on with the same nonce and
no mismatch; a local migration or a daemon-upgrade right after the restore
(the memfd goes by fd) first finishes the population, so the destination's memfd holds every
page of the file and the same bytes; with the default (unpaced) rate the VM
ends fully populated on its own. With the balloon guest, pages given back
while the population runs come back zero, not from the file, and stay
given back. vm-destroy during the population ends the handler. Without a
userfaultfd (/dev/userfaultfd hidden, no CAP_SYS_PTRACE) the restore copies
and says so at notice level."""

import ctypes
import importlib.util
import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vmmdtest import QMP, Vmmd, main, skip, wait_for  # noqa: E402
from daemon_helpers import TEST_CPU, console_log, guest, wait_console  # noqa: E402

PAGE = 4096
MIB = 1 << 20
LOW_START = 16 * MIB
PASS = re.compile(r"memtouch: pass (\d+)\r?\n")
NONCE = re.compile(r"memtouch: boot nonce (0x[0-9a-f]+)")

libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                      ctypes.c_int, ctypes.c_long]
libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]


def guest_memfds(pid):
    """/proc/PID/fd/N of each guest RAM memfd of daemon @pid."""
    out = []
    for n in os.listdir("/proc/%d/fd" % pid):
        p = "/proc/%d/fd/%s" % (pid, n)
        try:
            if os.readlink(p).startswith("/memfd:vmmd-guest-ram"):
                out.append(p)
        except OSError:
            pass
    return out


def the_memfd(d):
    fds = guest_memfds(d.proc.pid)
    assert len(fds) == 1, fds
    return fds[0]


def resident(path):
    """One bool per page of the file at @path: in memory (mincore)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        addr = libc.mmap(None, size, 1, 1, fd, 0)  # PROT_READ, MAP_SHARED
        assert addr not in (None, ctypes.c_void_p(-1).value), ctypes.get_errno()
        vec = ctypes.create_string_buffer(size // PAGE)
        try:
            assert libc.mincore(addr, size, vec) == 0, ctypes.get_errno()
        finally:
            libc.munmap(addr, size)
        return [b & 1 == 1 for b in vec.raw]
    finally:
        os.close(fd)


def data_pages(path):
    """Indexes of the pages of @path's data extents (SEEK_DATA)."""
    pages = set()
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        off = 0
        while off < size:
            try:
                s = os.lseek(f.fileno(), off, os.SEEK_DATA)
            except OSError:
                break
            e = os.lseek(f.fileno(), s, os.SEEK_HOLE)
            pages.update(range(s // PAGE, (e + PAGE - 1) // PAGE))
            off = e
    return pages


def same_bytes(a, b, start, end):
    with open(a, "rb") as fa, open(b, "rb") as fb:
        off = start
        while off < end:
            n = min(4 * MIB, end - off)
            if os.pread(fa.fileno(), n, off) != os.pread(fb.fileno(), n, off):
                return off
            off += n
    return None


def passes(d, name):
    return [int(p) for p in PASS.findall(console_log(d, name))]


def check_guest(d, name, nonce, after_pass=None):
    """memtouch goes on: two more passes (after @after_pass, else after those
    on the console now), same nonce, no mismatch, no reboot."""
    seen = len(passes(d, name))
    if after_pass is None:
        wait_for(lambda: len(passes(d, name)) >= seen + 2, 120,
                 what="two more passes of %s" % name)
    else:
        wait_for(lambda: passes(d, name) and passes(d, name)[-1] >= after_pass + 2, 120,
                 what="two more passes of %s" % name)
    text = console_log(d, name)
    assert "MISMATCH" not in text, text[-2000:]
    assert NONCE.findall(text) in ([], [nonce]), text[-2000:]


def conf(tmp, text):
    path = os.path.join(tmp, "vmmd.conf")
    with open(path, "w") as f:
        f.write(text)
    return ["--config", path]


def boot_and_save(tmp, vm, ready):
    """Boot @vm in a daemon of its own, wait for @ready(d), save it with stop:
    (snapshot dir, the console at the save)."""
    with Vmmd() as d:
        q = d.qmp()
        q.ok("vm-create", dict(vm, start=True))
        wait_for(lambda: ready(d), 120, what="%s to be ready for the save" % vm["name"])
        snap = os.path.join(tmp, vm["name"] + ".snap")
        q.ok("vm-save", vm=vm["name"], path=snap, stop=True)
        ev = q.event("VM_SAVE_COMPLETED", timeout=300)
        assert ev["data"]["status"] == "completed", ev
        q.event("SHUTDOWN", timeout=60)
        return snap, console_log(d, vm["name"])


def memtouch_snapshot(tmp, size="256M", backend="memfd"):
    """A memtouch VM with shared RAM, saved after its first check pass:
    (snapshot dir, definition, nonce, last pass)."""
    vm = {"name": "mt", "vcpus": 1, "memory": size, "cpu": TEST_CPU,
          "mem_backend": backend, "boot": {"kernel": guest("memtouch")}}
    snap, text = boot_and_save(tmp, vm, lambda d: passes(d, "mt") and passes(d, "mt")[-1] >= 2)
    return snap, vm, NONCE.search(text).group(1), [int(p) for p in PASS.findall(text)][-1]


def restore(d, q, snap, paused=False):
    t0 = time.monotonic()
    info = q.ok("vm-restore", path=snap, paused=paused)
    ms = (time.monotonic() - t0) * 1000
    assert info["status"] == ("paused" if paused else "running"), info
    return ms


def migrate_locally(src, qs, dst, vm):
    """migrate over a UNIX socket to @dst (the memfd goes by fd)."""
    qd = dst.qmp()
    qd.ok("vm-create", dict(vm, incoming=True, start=True))
    sock = os.path.join(dst.tmp, "mig.sock")
    qd.ok("migrate-incoming", vm=vm["name"], uri="unix:" + sock)
    wait_for(lambda: os.path.exists(sock), 30, what="the migration socket")
    qs.ok("migrate", vm=vm["name"], uri="unix:" + sock)
    ev = qs.event("MIGRATION", timeout=300,
                  pred=lambda e: e["data"]["status"] in ("completed", "failed"))
    assert ev["data"]["status"] == "completed", ev
    wait_for(lambda: qd.ok("query-vms", vm=vm["name"])[0]["status"] in ("running", "paused"),
             60, what="the migrated VM")
    return qd


def test_memfd_restore_is_lazy_then_migrates_whole():
    with tempfile.TemporaryDirectory(prefix="vmmd-lazy.") as tmp:
        snap, vm, nonce, last = memtouch_snapshot(tmp)
        mem = os.path.join(snap, "memory")
        data = data_pages(mem)
        top = os.path.getsize(mem)  # RAM below the PCI hole: one region
        assert len(data) * PAGE > 200 * MIB, len(data)
        # Paced to 64 KiB/s in the background: what is resident is what was touched.
        with Vmmd(args=conf(tmp, "restore-populate-rate = 64K\n")) as d, \
                Vmmd() as d3:
            q = d.qmp()
            ms = restore(d, q, snap)
            res = resident(the_memfd(d))
            n = sum(res)
            print("restore %.0f ms; resident right after: %d of %d data pages" % (
                ms, n, len(data)))
            assert n * 10 < len(data), (n, len(data))
            # The handler thread of the VM exists while it populates (it names
            # itself when it starts, maybe just after the answer).
            wait_for(lambda: "vm-uffd" in [
                open("/proc/%d/task/%s/comm" % (d.proc.pid, t)).read().strip()
                for t in os.listdir("/proc/%d/task" % d.proc.pid)], 10,
                what="the VM's vm-uffd thread")
            check_guest(d, "mt", nonce, last)
            # The guest's own touches (every page from 16 MiB up) are served.
            res = resident(the_memfd(d))
            assert all(res[p] for p in range(LOW_START // PAGE, top // PAGE)), \
                "a page the guest read is not resident"
            q.ok("vm-destroy", vm="mt")
            log = d.read_log()
            assert "copying it" not in log, log[-3000:]
            # Restored paused, then at once a local migration (the memfd goes by fd):
            # the population ends first (unpaced), or the destination would read zeros.
            restore(d, q, snap, paused=True)
            n = sum(resident(the_memfd(d)))
            assert n * 10 < len(data), (n, len(data))
            qd = migrate_locally(d, q, d3, vm)
            memfd = the_memfd(d3)
            res = resident(memfd)
            missing = [p for p in data if not res[p]]
            assert not missing, "%d data pages missing, first %#x" % (
                len(missing), missing[0] * PAGE)
            bad = same_bytes(mem, memfd, 0, top)
            assert bad is None, "RAM differs from the snapshot at %#x" % bad
            assert qd.ok("query-vms", vm="mt")[0]["status"] == "paused"
            qd.ok("cont", vm="mt")
            check_guest(d3, "mt", nonce)
            qd.ok("vm-destroy", vm="mt")
            log = d.read_log()
            assert log.rfind("guest RAM restored") < log.rfind("migrated out"), log[-3000:]


def upgrade_helpers():
    """CopiedVmmd and upgrade() of test-upgrade.py."""
    spec = importlib.util.spec_from_file_location(
        "upgrade_helpers", os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                        "test-upgrade.py"))
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    return m


def test_upgrade_right_after_restore():
    """daemon-upgrade hands the memfd to the new daemon: the old one
    finishes the population first."""
    up = upgrade_helpers()
    with tempfile.TemporaryDirectory(prefix="vmmd-lazy.") as tmp:
        snap, vm, nonce, last = memtouch_snapshot(tmp)
        mem = os.path.join(snap, "memory")
        data = data_pages(mem)
        top = os.path.getsize(mem)
        with up.CopiedVmmd(args=conf(tmp, "restore-populate-rate = 4K\n")) as d:
            q = d.qmp()
            restore(d, q, snap, paused=True)
            n = sum(resident(the_memfd(d)))
            assert n * 10 < len(data), (n, len(data))
            with QMP(d.socket, timeout=120) as q2:
                pid, ans, secs = up.upgrade(d, q2, 1)
            memfds = guest_memfds(pid)
            assert len(memfds) == 1, memfds
            res = resident(memfds[0])
            missing = [p for p in data if not res[p]]
            assert not missing, "%d data pages missing after the upgrade" % len(missing)
            bad = same_bytes(mem, memfds[0], 0, top)
            assert bad is None, "RAM differs from the snapshot at %#x" % bad
            with d.qmp() as q3:
                assert q3.ok("query-vms", vm="mt")[0]["status"] == "paused"
                q3.ok("cont", vm="mt")
                check_guest(d, "mt", nonce)


def test_unpaced_restore_ends_fully_populated():
    with tempfile.TemporaryDirectory(prefix="vmmd-lazy.") as tmp:
        snap, vm, nonce, last = memtouch_snapshot(tmp, "128M")
        mem = os.path.join(snap, "memory")
        data = data_pages(mem)
        top = os.path.getsize(mem)
        with Vmmd() as d:
            q = d.qmp()
            restore(d, q, snap)
            wait_for(lambda: "guest RAM restored" in d.read_log(), 60,
                     what="the population to end")
            wait_for(lambda: not [t for t in os.listdir("/proc/%d/task" % d.proc.pid)
                                  if open("/proc/%d/task/%s/comm" % (d.proc.pid, t))
                                  .read().strip() == "vm-uffd"], 10,
                     what="the handler thread to end")
            memfd = the_memfd(d)
            res = resident(memfd)
            missing = [p for p in data if not res[p]]
            assert not missing, "%d data pages missing" % len(missing)
            # The memory file is let go (a migration's is a memfd of the whole RAM).
            held = [n for n in os.listdir("/proc/%d/fd" % d.proc.pid)
                    if os.path.realpath("/proc/%d/fd/%s" % (d.proc.pid, n)) ==
                    os.path.realpath(mem)]
            assert not held, "the daemon still holds the memory file"
            # memtouch only reads from 16 MiB up after its first pass
            assert same_bytes(mem, memfd, LOW_START, top) is None
            check_guest(d, "mt", nonce, last)
            # And it saves again (the memfd VM read through its mapping).
            q.ok("vm-save", vm="mt", path=os.path.join(tmp, "again"), stop=True)
            ev = q.event("VM_SAVE_COMPLETED", timeout=300)
            assert ev["data"]["status"] == "completed", ev


def free_hugepages():
    with open("/proc/meminfo") as f:
        return int(re.search(r"HugePages_Free:\s+(\d+)", f.read()).group(1))


def hugetlb_kib(pid):
    """KiB of hugetlb pages mapped in guest RAM mappings of @pid (smaps)."""
    kib, inside = 0, False
    with open("/proc/%d/smaps" % pid) as f:
        for line in f:
            if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
                inside = "vmmd-guest-ram" in line
            elif inside and re.match(r"^(Shared|Private)_Hugetlb:", line):
                kib += int(line.split()[1])
    return kib


def test_hugepages_restore():
    """hugetlb RAM: faults and the background copy work in 2 MiB pages."""
    if free_hugepages() < 40:
        skip("needs 40 free 2M pages (/proc/sys/vm/nr_hugepages); this host has %d"
             % free_hugepages())
    with tempfile.TemporaryDirectory(prefix="vmmd-lazy.") as tmp:
        snap, vm, nonce, last = memtouch_snapshot(tmp, "64M", "hugepages")
        mem = os.path.join(snap, "memory")
        data = data_pages(mem)
        top = os.path.getsize(mem)
        # Paced: the guest's faults bring in most of it, in 2 MiB pages.
        with Vmmd(args=conf(tmp, "restore-populate-rate = 1M\n")) as d:
            q = d.qmp()
            restore(d, q, snap)
            check_guest(d, "mt", nonce, last)
            wait_for(lambda: "guest RAM restored" in d.read_log(), 60,
                     what="the population to end")
            done = re.search(r"guest RAM restored: .* (\d+) faults served", d.read_log())
            print(done.group(0))
            assert int(done.group(1)) > 0, d.read_log()
            path = the_memfd(d)
            # (mincore sees only this process's page tables on hugetlbfs: smaps instead)
            huge = {p * PAGE >> 21 for p in data}
            assert hugetlb_kib(d.proc.pid) >= len(huge) * 2048, (hugetlb_kib(d.proc.pid),
                                                                 len(huge))
            assert same_bytes(mem, path, LOW_START, top) is None
            assert "copying it" not in d.read_log()


def balloon_snapshot(tmp):
    vm = {"name": "b", "vcpus": 1, "memory": "64M", "cpu": TEST_CPU, "balloon": True,
          "mem_backend": "memfd", "boot": {"kernel": guest("balloon")}}
    snap, _ = boot_and_save(tmp, vm, lambda d: "balloon: ready" in console_log(d, "b"))
    return snap, vm


def pool_pages():
    """The balloon guest's 4 MiB pool: its first page (guest-physical = file offset)."""
    nm = subprocess.run(["nm", guest("balloon")], capture_output=True, text=True,
                        check=True).stdout
    addr = int(re.search(r"^([0-9a-f]+) [bB] pool$", nm, re.M).group(1), 16)
    return addr // PAGE


def test_ballooned_pages_come_back_zero():
    with tempfile.TemporaryDirectory(prefix="vmmd-lazy.") as tmp:
        snap, vm = balloon_snapshot(tmp)
        first = pool_pages()
        data = data_pages(os.path.join(snap, "memory"))
        pool = set(range(first, first + 1024))
        assert pool <= data  # the guest wrote a pattern into every pool page
        # 16 KiB/s: the background does not reach the pool for seconds.
        with Vmmd(args=conf(tmp, "restore-populate-rate = 16K\n")) as d, Vmmd() as d3:
            q = d.qmp()
            restore(d, q, snap)
            q.ok("balloon", vm="b", value=60 * MIB)  # inflate the whole pool
            wait_console(d, "b", "balloon: actual 1024", timeout=60)
            res = resident(the_memfd(d))
            assert not any(res[p] for p in pool), "pool pages resident while ballooned"
            # Half back while the population runs: they fault, and read zero.
            q.ok("balloon", vm="b", value=62 * MIB)
            wait_console(d, "b", "balloon: actual 512", timeout=60)
            # The hand-over finishes the population: the other half stays given back.
            qd = migrate_locally(d, q, d3, vm)
            res = resident(the_memfd(d3))
            assert not any(res[p] for p in range(first, first + 512)), \
                "ballooned pages came back from the snapshot"
            assert all(res[p] for p in data - pool)
            qd.ok("balloon", vm="b", value=64 * MIB)
            wait_console(d3, "b", "balloon: actual 0", timeout=60)
            for dd in (d, d3):
                assert "not zero" not in console_log(dd, "b"), console_log(dd, "b")[-2000:]


def test_destroy_during_population():
    with tempfile.TemporaryDirectory(prefix="vmmd-lazy.") as tmp:
        snap, vm = balloon_snapshot(tmp)
        with Vmmd(args=conf(tmp, "restore-populate-rate = 4K\n")) as d:
            q = d.qmp()

            def handlers():
                return [t for t in os.listdir("/proc/%d/task" % d.proc.pid)
                        if open("/proc/%d/task/%s/comm" % (d.proc.pid, t)).read().strip()
                        == "vm-uffd"]
            for _ in range(2):
                restore(d, q, snap)
                # the thread names itself when it starts: maybe just after the answer
                wait_for(handlers, 10, what="the handler thread")
                time.sleep(0.3)  # the guest runs, the handler serves its faults
                q.ok("vm-destroy", vm="b")
                wait_for(lambda: not handlers(), 10, what="the handler thread to end")
                assert not guest_memfds(d.proc.pid)
            assert "guest RAM restored" not in d.read_log()


def hidden_uffd_vmmd():
    """A vmmd in a private mount namespace whose /dev/userfaultfd is /dev/null."""
    return Vmmd(prefix=["unshare", "-m", "--propagation", "private", "sh", "-c",
                        'mount --bind /dev/null /dev/userfaultfd && exec "$0" "$@"'])


def test_no_userfaultfd_copies():
    if os.geteuid() != 0 or not os.path.exists("/dev/userfaultfd"):
        skip("needs root and a /dev/userfaultfd to hide")
    if subprocess.run(["unshare", "-m", "true"]).returncode != 0:
        skip("no mount namespaces here")
    with tempfile.TemporaryDirectory(prefix="vmmd-lazy.") as tmp:
        snap, vm = balloon_snapshot(tmp)
        with hidden_uffd_vmmd() as d:
            q = d.qmp()
            restore(d, q, snap)
            log = d.read_log()
            # The default capabilities have no CAP_SYS_PTRACE: userfaultfd(2) is refused.
            assert "restoring shared RAM by copying it" in log, log[-2000:]
            assert "CAP_SYS_PTRACE" in log and "/dev/userfaultfd" in log, log[-2000:]
            assert "vm-uffd" not in [
                open("/proc/%d/task/%s/comm" % (d.proc.pid, t)).read().strip()
                for t in os.listdir("/proc/%d/task" % d.proc.pid)]
            res = resident(the_memfd(d))
            assert all(res[p] for p in data_pages(os.path.join(snap, "memory")))
            q.ok("balloon", vm="b", value=62 * MIB)
            wait_console(d, "b", "balloon: actual 512", timeout=60)
            assert "not zero" not in console_log(d, "b")


if __name__ == "__main__":
    main(globals())
