"""Functional-test harness for vmmd.

Start a private vmmd on a temporary socket (cleaned up even when a test
fails), talk QMP to it, and report in Automake's terms: exit 0 pass, 77 skip
(with a reason on stdout), 1 fail, 99 hard error.

    from vmmdtest import Vmmd, main, require_kvm

    def test_status(t):
        with Vmmd() as d:
            q = d.qmp()
            assert q.cmd("query-version")["return"]

    if __name__ == "__main__":
        main(globals())
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

TOP_SRCDIR = os.environ.get("top_srcdir") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
TOP_BUILDDIR = os.environ.get("top_builddir") or TOP_SRCDIR

VMMD = os.path.join(TOP_BUILDDIR, "vmmd")
VMCTL = os.path.join(TOP_BUILDDIR, "vmctl")
VMM_IMG = os.path.join(TOP_BUILDDIR, "vmm-img")


class Skip(Exception):
    """Raise to skip the current test (or the whole file, from main)."""


def skip(reason):
    raise Skip(reason)


def require_kvm():
    if not os.path.exists("/dev/kvm"):
        skip("/dev/kvm is absent: this test needs KVM")
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        skip("/dev/kvm is not accessible to uid %d" % os.getuid())


def require_tool(*tools):
    for tool in tools:
        if shutil.which(tool) is None:
            skip("'%s' is not installed" % tool)


def wait_for(pred, timeout=10.0, *, interval=0.02, what="condition"):
    """Poll @pred until it returns a true value (returned) or @timeout passes."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


class QMP:
    """A minimal QMP client: CRLF-framed JSON objects, events kept aside."""

    def __init__(self, path, negotiate=True, timeout=10.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b""
        self.events = []
        self.greeting = self.recv()
        if "QMP" not in self.greeting:
            raise AssertionError("no QMP greeting: %r" % self.greeting)
        if negotiate:
            r = self.cmd("qmp_capabilities")
            if "return" not in r:
                raise AssertionError("negotiation failed: %r" % r)

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send_raw(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def recv(self):
        """Next JSON object from the server (event or reply)."""
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("vmmd closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line.decode())

    def reply(self):
        """Next reply, queueing events that arrive first."""
        while True:
            msg = self.recv()
            if "event" in msg:
                self.events.append(msg)
                continue
            return msg

    def cmd(self, name, args=None, id=None, **kwargs):
        """Execute a command; returns the whole reply object."""
        msg = {"execute": name}
        if args is None and kwargs:
            args = kwargs
        if args is not None:
            msg["arguments"] = args
        if id is not None:
            msg["id"] = id
        self.send_raw(json.dumps(msg) + "\n")
        return self.reply()

    def ok(self, name, args=None, **kwargs):
        """Execute a command that must succeed; returns its "return" value."""
        r = self.cmd(name, args, **kwargs)
        if "return" not in r:
            raise AssertionError("%s failed: %r" % (name, r))
        return r["return"]

    def event(self, name, timeout=10.0, pred=None):
        """Wait for an event by name, or one of a tuple of names (already
        queued ones first)."""
        names = name if isinstance(name, tuple) else (name,)
        deadline = time.monotonic() + timeout
        while True:
            for i, ev in enumerate(self.events):
                if ev["event"] in names and (pred is None or pred(ev)):
                    return self.events.pop(i)
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no %s event within %.1fs (got %r)" %
                                     (name, timeout, [e["event"] for e in self.events]))
            self.sock.settimeout(left)
            try:
                self.events.append(self.recv())
            except socket.timeout:
                pass
            finally:
                self.sock.settimeout(10.0)


class Vmmd:
    """A private vmmd with its own socket, state and run directories."""

    def __init__(self, args=(), tmp=None, env=None, prefix=()):
        """@prefix: a command that runs vmmd (its path and arguments follow)."""
        self.owns_tmp = tmp is None
        self.tmp = tmp or tempfile.mkdtemp(prefix="vmmd-test.")
        self.socket = os.path.join(self.tmp, "vmmd.sock")
        self.state_dir = os.path.join(self.tmp, "state")
        self.run_dir = os.path.join(self.tmp, "run")
        self.log_path = os.path.join(self.tmp, "vmmd.log")
        self.args = list(args)
        self.prefix = list(prefix)
        self.env = dict(os.environ, **(env or {}))
        self.proc = None

    def start(self, timeout=10.0):
        self.log = open(self.log_path, "ab")
        cmd = self.prefix + [VMMD, "--socket", self.socket, "--state-dir", self.state_dir,
                             "--run-dir", self.run_dir] + self.args
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT,
                                     env=self.env)

        def ready():
            if self.proc.poll() is not None:
                raise AssertionError("vmmd exited with %d at start:\n%s" %
                                     (self.proc.returncode, self.read_log()))
            return os.path.exists(self.socket)
        wait_for(ready, timeout, what="vmmd socket")
        return self

    def read_log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def qmp(self, negotiate=True, path=None):
        return QMP(path or self.socket, negotiate=negotiate)

    def vmctl(self, *args, check=True, input=None, timeout=60):
        env = dict(self.env, VMMD_SOCKET=self.socket)
        p = subprocess.run([VMCTL] + list(args), capture_output=True, text=True, env=env,
                           input=input, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError("vmctl %s exited %d:\nstdout: %s\nstderr: %s" %
                                 (" ".join(args), p.returncode, p.stdout, p.stderr))
        if sanitizer_report(p.stderr):
            raise AssertionError("vmctl %s: sanitizer report:\n%s" % (" ".join(args), p.stderr))
        return p

    def stop(self, sig=signal.SIGTERM, timeout=20.0):
        """Stop vmmd; returns its exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        rc = self.proc.returncode
        self.proc = None
        return rc

    def __enter__(self):
        return self.start()

    def __exit__(self, exc_type, exc, tb):
        self.stop()
        report = sanitizer_report(self.read_log())
        if not report and "VMMD_SECCOMP_SELFTEST" not in self.env:
            # a seccomp filter refused a call the daemon needed: a bug in the lists
            i = self.read_log().find("seccomp: forbidden system call")
            report = self.read_log()[i:i + 2000] if i >= 0 else ""
        if exc_type is not None and exc_type is not Skip or report:
            sys.stdout.write("--- vmmd log (%s) ---\n%s\n" % (self.log_path, self.read_log()[-8000:]))
        if self.owns_tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)
        if report and exc_type is None:
            # ./run check --sanitize: a report at exit (a leak) fails the test
            raise AssertionError("vmmd: sanitizer or seccomp report:\n" + report)


SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                   "SUMMARY: UndefinedBehaviorSanitizer")


def sanitizer_report(text):
    """The first lines of an ASan/LSan/UBSan report in @text, or ""."""
    for mark in SANITIZER_MARKS:
        i = text.find(mark)
        if i >= 0:
            return text[max(0, text.rfind("\n", 0, i)):][:6000]
    return ""


def main(namespace):
    """Run every test_* function in @namespace; exit with Automake's codes."""
    tests = sorted((k, v) for k, v in namespace.items() if k.startswith("test_") and callable(v))
    only = os.environ.get("VMMD_TEST_ONLY")
    passed = failed = skipped = 0
    for name, fn in tests:
        if only and only not in name:
            continue
        t0 = time.monotonic()
        try:
            fn()
        except Skip as e:
            skipped += 1
            print("SKIP: %s: %s" % (name, e), flush=True)
            continue
        except Exception:
            failed += 1
            print("FAIL: %s" % name, flush=True)
            traceback.print_exc(file=sys.stdout)
            continue
        passed += 1
        print("PASS: %s (%.1fs)" % (name, time.monotonic() - t0), flush=True)
    print("%d passed, %d failed, %d skipped" % (passed, failed, skipped))
    if failed:
        sys.exit(1)
    if passed == 0 and skipped:
        sys.exit(77)
    sys.exit(0)
