"""Helpers shared by the daemon, protocol, vmctl and systemd tests (not a test itself)."""

import os
import socket
import time

from vmmdtest import TOP_BUILDDIR, Vmmd, skip, require_kvm

# A kernel path for definitions that are never started (the definition
# requires one; only vm-start opens it).
NOBOOT = {"kernel": "/nonexistent/vmlinuz"}

# This host's KVM emulates guest instructions and lacks these (see DESIGN.md §7).
TEST_CPU = "host,-cx16,-xsave"


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for pid %d" % pid)


def sanitized(pid):
    """Whether process @pid runs under AddressSanitizer (./run check --sanitize)."""
    with open("/proc/%d/maps" % pid) as f:
        return "libasan" in f.read()


def rss_slack(pid, normal=8 * 1024):
    """KiB of RSS growth tolerated: @normal, or under AddressSanitizer 320 MiB:
    its quarantine keeps up to 256 MiB of freed memory by design, and
    LeakSanitizer checks for leaks directly at exit there."""
    return 320 * 1024 if sanitized(pid) else normal


def guest(name="hello"):
    """Path of a test guest (tests/guests/NAME.elf, or the daemon tests' own
    tests/functional/guest-NAME.elf), or skip."""
    require_kvm()
    for p in (os.path.join(TOP_BUILDDIR, "tests", "guests", name + ".elf"),
              os.path.join(TOP_BUILDDIR, "tests", "functional", "guest-%s.elf" % name)):
        if os.path.exists(p):
            return os.path.abspath(p)
    skip("test guest %s is not built" % name)


def vmmd_with_image_roots(*roots):
    """A Vmmd (not started) whose image-roots are its own images/ directory
    and @roots: (the Vmmd, that directory)."""
    d = Vmmd()
    images = os.path.join(d.tmp, "images")
    os.mkdir(images)
    conf = os.path.join(d.tmp, "vmmd.conf")
    with open(conf, "w") as f:
        f.write("image-roots = %s\n" % " ".join((images,) + roots))
    d.args += ["--config", conf]
    return d, images


def console_log(d, name):
    path = os.path.join(d.run_dir, "vms", name + ".console")
    try:
        with open(path, "rb") as f:
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def wait_console(d, name, text, timeout=30.0, count=1):
    """Wait until the VM's console log shows @text (@count times)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if console_log(d, name).count(text) >= count:
            return
        time.sleep(0.05)
    raise AssertionError("console of %s lacks %r (x%d): %r" %
                         (name, text, count, console_log(d, name)[-2000:]))


def drain_events(q, seconds, names, fix=None):
    """The events named in @names that arrive within @seconds (and those
    already queued), in order, timestamps dropped and @fix applied; every
    queued event is consumed."""
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        q.sock.settimeout(left)
        try:
            q.events.append(q.recv())
        except socket.timeout:
            break
    q.sock.settimeout(10.0)
    out = [fix(e) if fix else e for e in q.events if e["event"] in names]
    del q.events[:]
    for e in out:
        e.pop("timestamp", None)
    return out


def vm_def(name, kernel, **extra):
    d = {"name": name, "vcpus": 1, "memory": "32M", "cpu": TEST_CPU,
         "boot": {"kernel": kernel}}
    d.update(extra)
    return d


def raw_connect(path, timeout=5.0):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(path)
    return s


def read_line(s, timeout=5.0):
    """One CRLF-terminated line from a raw socket (byte by byte: no over-read)."""
    s.settimeout(timeout)
    buf = b""
    while not buf.endswith(b"\n"):
        c = s.recv(1)
        if not c:
            raise EOFError("connection closed after %r" % buf)
        buf += c
    assert buf.endswith(b"\r\n"), "not CRLF-terminated: %r" % buf
    return buf


def timed_ok(q, limit=1.0):
    """query-vms on an established client must answer within @limit seconds."""
    t0 = time.monotonic()
    q.ok("query-vms")
    dt = time.monotonic() - t0
    assert dt < limit, "answer took %.2fs" % dt
    return dt
