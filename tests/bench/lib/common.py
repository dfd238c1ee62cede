"""Shared pieces of the benchmark harness: locations, statistics, samples,
process bookkeeping, waiting for a guest's first serial byte.

Everything here runs in the harness's main thread unless a function says
otherwise; helpers that start processes register them so that the harness
kills exactly the processes it started, and nothing else, when it ends.
"""

import ctypes
import ctypes.util
import math
import os
import re
import select
import shutil
import signal
import struct
import subprocess
import time

SRCDIR = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))


class SkipFigure(Exception):
    """A side of a figure cannot be measured here; the message says why."""


def find_builddir():
    """The build tree with vmmd in it: $top_builddir, ./build, or the source tree."""
    for d in (os.environ.get("top_builddir"), os.path.join(SRCDIR, "build"), SRCDIR):
        if d and os.path.exists(os.path.join(d, "vmmd")):
            return os.path.abspath(d)
    return os.path.abspath(os.environ.get("top_builddir") or os.path.join(SRCDIR, "build"))


# ---------------------------------------------------------------------------
# Statistics

def percentile(values, p):
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    v = sorted(values)
    if not v:
        raise ValueError("percentile of no values")
    k = max(0, min(len(v) - 1, math.ceil(p / 100.0 * len(v)) - 1))
    return v[k]


def median(values):
    v = sorted(values)
    n = len(v)
    if n == 0:
        raise ValueError("median of no values")
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2.0


def summarize(samples):
    return {"samples": [round(s, 6) for s in samples], "median": round(median(samples), 6),
            "min": round(min(samples), 6), "max": round(max(samples), 6), "n": len(samples)}


# ---------------------------------------------------------------------------
# Process bookkeeping: only what we started, killed by pid.

_children = []


def register(proc):
    _children.append(proc)
    return proc


def kill_all():
    """Kill every process this harness started and still runs (SIGKILL, by pid)."""
    while _children:
        p = _children.pop()
        if p.poll() is None:
            try:
                p.send_signal(signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                pass


def reap(proc, sig=signal.SIGTERM, timeout=10.0):
    """Stop one process we started and forget it."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc in _children:
        _children.remove(proc)


# ---------------------------------------------------------------------------
# Memory accounting

def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise SkipFigure("no VmRSS for pid %d" % pid)


_MAP_RE = re.compile(r"^([0-9a-f]+)-([0-9a-f]+) \S+ \S+ \S+ \S+\s*(.*)$")


def guest_ram_rss_kib(pid, ram_bytes):
    """Resident KiB in the mappings that are guest RAM of @ram_bytes.

    A guest RAM block is recognised by its size: a mapping as large as the
    configured guest memory (the benchmark picks an unusual size so nothing
    else matches), or a whole multiple of it: the kernel merges the RAM of
    two VMs into one mapping when their blocks happen to be adjacent with
    the same flags. Returns (resident KiB, number of guest RAM blocks).
    """
    want = ram_bytes // 1024
    total = count = 0
    size = None
    with open("/proc/%d/smaps" % pid) as f:
        for line in f:
            m = _MAP_RE.match(line)
            if m:
                size = (int(m.group(2), 16) - int(m.group(1), 16)) // 1024
                continue
            if line.startswith("Rss:") and size and size % want == 0:
                total += int(line.split()[1])
                count += size // want
    return total, count


# ---------------------------------------------------------------------------
# Waiting for first serial output

class _Inotify:
    IN_MODIFY = 0x2
    IN_CLOSE_WRITE = 0x8
    IN_CREATE = 0x100
    IN_NONBLOCK = 0o4000
    IN_CLOEXEC = 0o2000000

    def __init__(self):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        self.libc = libc
        self.fd = libc.inotify_init1(self.IN_NONBLOCK | self.IN_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")

    def watch(self, path):
        wd = self.libc.inotify_add_watch(self.fd, path.encode(),
                                         self.IN_MODIFY | self.IN_CLOSE_WRITE | self.IN_CREATE)
        if wd < 0:
            raise OSError(ctypes.get_errno(), "inotify_add_watch %s" % path)
        return wd

    def read_names(self, timeout):
        """Names of files in watched directories that changed (may be empty)."""
        r, _, _ = select.select([self.fd], [], [], timeout)
        if not r:
            return []
        try:
            data = os.read(self.fd, 65536)
        except BlockingIOError:
            return []
        names = []
        off = 0
        while off + 16 <= len(data):
            _, _, _, ln = struct.unpack_from("iIII", data, off)
            name = data[off + 16:off + 16 + ln].split(b"\0", 1)[0].decode()
            names.append(name)
            off += 16 + ln
        return names

    def close(self):
        os.close(self.fd)


def _has_output(path):
    try:
        return os.path.getsize(path) > 0
    except OSError:
        return False


class LogWatcher:
    """Time of the first byte written to each of several console log files.

    The files live in one directory, which is watched with inotify (or
    polled every 0.5 ms if inotify is unavailable). Create the watcher
    before starting the guests; then wait().
    """

    def __init__(self, directory):
        self.dir = directory
        try:
            self.ino = _Inotify()
            self.ino.watch(directory)
        except (OSError, AttributeError):
            self.ino = None

    def wait(self, names, timeout):
        """{name: monotonic time of first output} for every name in @names.

        Raises SkipFigure naming the files still empty after @timeout s."""
        pending = set(names)
        seen = {}
        deadline = time.monotonic() + timeout
        # Output written before the watch started is found by the first scan.
        for n in list(pending):
            if _has_output(os.path.join(self.dir, n)):
                seen[n] = time.monotonic()
                pending.discard(n)
        while pending:
            left = deadline - time.monotonic()
            if left <= 0:
                raise SkipFigure("no serial output within %.0f s from %d guest(s) (%s)" %
                                 (timeout, len(pending), ", ".join(sorted(pending)[:3])))
            if self.ino:
                changed = self.ino.read_names(min(left, 0.5))
                now = time.monotonic()
                candidates = [n for n in changed if n in pending] or (
                    list(pending) if not changed else [])
            else:
                time.sleep(0.0005)
                now = time.monotonic()
                candidates = list(pending)
            for n in candidates:
                if _has_output(os.path.join(self.dir, n)):
                    seen[n] = now
                    pending.discard(n)
        return seen

    def close(self):
        if self.ino:
            self.ino.close()


def wait_first_byte_fds(fds, timeout):
    """{fd: monotonic time of its first readable byte} for pipes in @fds."""
    pending = set(fds)
    seen = {}
    deadline = time.monotonic() + timeout
    poller = select.poll()
    for fd in pending:
        poller.register(fd, select.POLLIN | select.POLLHUP)
    while pending:
        left = deadline - time.monotonic()
        if left <= 0:
            raise SkipFigure("no serial output within %.0f s from %d guest(s)" %
                             (timeout, len(pending)))
        for fd, ev in poller.poll(left * 1000):
            now = time.monotonic()
            poller.unregister(fd)
            pending.discard(fd)
            data = os.read(fd, 4096) if ev & select.POLLIN else b""
            if not data:
                raise SkipFigure("a guest's serial pipe closed before any output "
                                 "(the VMM exited)")
            seen[fd] = now
    return seen


# ---------------------------------------------------------------------------
# Tools

def have(tool):
    return shutil.which(tool) is not None


def kvm_usable():
    """None if /dev/kvm can be used, else the reason it cannot."""
    if not os.path.exists("/dev/kvm"):
        return "/dev/kvm is absent"
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "/dev/kvm is not accessible to uid %d" % os.getuid()
    return None


def build_guest(out_dir):
    """Build tests/bench/guest/bench-guest.elf into @out_dir with $GUEST_CC (or cc)."""
    cc = os.environ.get("GUEST_CC") or ("cc" if have("cc") else "gcc")
    gdir = os.path.join(SRCDIR, "tests", "bench", "guest")
    out = os.path.join(out_dir, "bench-guest.elf")
    cmd = [cc, "-nostdlib", "-static", "-no-pie", "-Wl,-T," + os.path.join(gdir, "bench-guest.ld"),
           "-Wl,--build-id=none", "-Wl,-z,noexecstack", "-o", out,
           os.path.join(gdir, "bench-guest.S")]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise SkipFigure("cannot build the bench guest with %s: %s" % (cc, p.stderr.strip()[-300:]))
    return out


def elf_has_pvh_note(path):
    """True if the ELF file at @path carries a Xen PHYS32_ENTRY (PVH) note."""
    try:
        with open(path, "rb") as f:
            data = f.read(4 << 20)
    except OSError:
        return False
    if data[:4] != b"\x7fELF" or data[4] != 2:
        return False
    phoff, = struct.unpack_from("<Q", data, 32)
    phentsize, phnum = struct.unpack_from("<HH", data, 54)
    for i in range(phnum):
        p_type, _, p_offset, _, _, p_filesz = struct.unpack_from("<IIQQQQ", data,
                                                                 phoff + i * phentsize)
        if p_type != 4:
            continue
        off, end = p_offset, p_offset + p_filesz
        while off + 12 <= end:
            namesz, descsz, ntype = struct.unpack_from("<III", data, off)
            name = data[off + 12:off + 12 + namesz].rstrip(b"\0")
            if name == b"Xen" and ntype == 18:
                return True
            off += 12 + ((namesz + 3) & ~3) + ((descsz + 3) & ~3)
    return False
