#!/usr/bin/env python3
"""One QMP script against QEMU 7.2 and against vmmd (issue 15).

The same steps (queries, run-state commands, HMP commands, errors, quit) run
with QEMU's own Python QMP library (qemu.qmp, QEMUMonitorProtocol) against:
qemu-system-x86_64 running a test guest, vmmd's per-VM socket for the same
guest, and vmmd's main socket (the same commands with "vm" added; events
carry "vm" there). Answers and events are compared after normalising what
cannot be equal (thread ids, socket paths, timestamps); every remaining
difference must be one of KNOWN below, each with its reason, and each KNOWN
entry must still occur (the list stays exact). qmp-shell -H (the library's
qmp_shell.py) sends HMP commands to the per-VM socket as it does to QEMU.

qemu.qmp is taken from Debian's QEMU source package at test time (apt-get
source with a private deb-src list, into the build tree; never committed):
Debian ships the library in no binary package. Skips without KVM, QEMU, or
the source package."""

import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from daemon_helpers import guest, wait_console  # noqa: E402
from vmmdtest import TOP_BUILDDIR, Vmmd, main, require_kvm, skip  # noqa: E402

CACHE = os.path.abspath(os.path.join(TOP_BUILDDIR, "tests", "qemu-python"))

# (step, field or "", reason): differences that remain, each for a reason.
KNOWN = [
    ("greeting", "capabilities",
     "vmmd offers no out-of-band execution, so it announces no 'oob' capability"),
    ("query-cpus-fast", "qom-path", "vmmd has no QOM tree; it names vCPUs /machine/cpu[N]"),
    ("query-machines", "", "vmmd has one machine type (pc-i440fx-7.2) without CPU hotplug, "
     "at most 64 vCPUs, and the host CPU model by default"),
    ("query-memdev", "reserve", "vmmd maps guest RAM with MAP_NORESERVE"),
    ("query-current-machine", "wakeup-suspend-support", "vmmd's ACPI tables have no S3: its "
     "guests cannot suspend to RAM (QEMU's pc can)"),
    ("system_wakeup", "error.desc", "so nothing to wake: QEMU's words for a machine without "
     "it (QEMU's pc: 'Unable to wake up: guest is not in suspended state')"),
    ("query-chardev", "", "vmmd's console is a UNIX socket it serves (QEMU: the ringbuf "
     "chardev of this command line)"),
    ("query-block", "inserted.node-name", "vmmd gives nodes no automatic names (QEMU: #blockN)"),
    ("query-block", "qdev", "vmmd has no QOM tree: qdev is the device id (QEMU: "
     "/machine/peripheral/ID/virtio-backend)"),
    ("query-block", "inserted.cache.writeback", "sometimes: QEMU turns the write cache off "
     "when SeaBIOS's virtio-blk driver negotiates no flush, if its probe ran before the query; "
     "vmmd keeps writeback until a guest driver negotiates", "sometimes"),
    ("query-blockstats", "node-name", "vmmd gives nodes no automatic names (QEMU: #blockN)"),
    ("query-blockstats", "parent.node-name", "the same for the protocol node under the format"),
    ("query-blockstats", "qdev", "vmmd has no QOM tree: qdev is the device id (QEMU: "
     "/machine/peripheral/ID/virtio-backend)"),
    ("hmp info block", "", "no automatic node name, a different device path (no QOM)"),
    ("query-pci", "", "the machines differ: QEMU's pc has the PIIX3 functions in slot 1 and "
     "transitional virtio devices (1af4:1001); vmmd has modern virtio functions (1af4:1040+N) "
     "in the first free slots, no PIIX3, and assigns BARs itself"),
    ("hmp info pci", "", "the same machine differences, printed in QEMU's layout"),
]


def qemu_python():
    """The directory holding qemu/qmp from Debian's qemu source package."""
    if os.path.exists(os.path.join(CACHE, "qemu", "qmp", "legacy.py")):
        return CACHE
    ver = subprocess.run(["dpkg-query", "-W", "-f", "${source:Version}", "qemu-system-x86"],
                         capture_output=True, text=True).stdout.strip()
    if not ver:
        skip("qemu-system-x86 is not installed from Debian")
    tmp = tempfile.mkdtemp(prefix="qemu-src.")
    os.chmod(tmp, 0o755)  # apt's downloads run as the _apt user
    try:
        sources = []
        for f in ["/etc/apt/sources.list"] + glob.glob("/etc/apt/sources.list.d/*"):
            try:
                text = open(f).read()
            except OSError:
                continue
            sources += re.findall(r"(?m)^deb\s+(\S+)\s+(\S+)\s+(.*)$", text)
            for stanza in re.split(r"\n\s*\n", text):  # deb822 .sources files
                fields = dict(re.findall(r"(?m)^(\w[\w-]*):\s*(.*)$", stanza))
                if "deb" in fields.get("Types", "").split() and "URIs" in fields:
                    sources += [(fields["URIs"].split()[0], suite, fields.get("Components", ""))
                                for suite in fields.get("Suites", "").split()]
        # Debian's own archives only (third-party repositories carry no qemu source)
        sources = [x for x in sources if "debian" in x[0]]
        if not sources:
            skip("no Debian apt sources to derive deb-src lines from")
        lst = os.path.join(tmp, "src.list")
        with open(lst, "w") as f:
            for uri, suite, comps in sources:
                f.write("deb-src %s %s %s\n" % (uri, suite, comps))
        lists = os.path.join(tmp, "lists")
        os.makedirs(os.path.join(lists, "partial"))
        opts = ["-o", "Dir::Etc::SourceList=" + lst, "-o", "Dir::Etc::SourceParts=/nonexistent",
                "-o", "Dir::State::Lists=" + lists, "-o", "Debug::NoLocking=1"]
        p = subprocess.run(["apt-get"] + opts + ["update"], capture_output=True, text=True,
                           timeout=300)
        if p.returncode != 0:
            skip("apt-get update (deb-src) failed: %s" % p.stderr.strip()[-300:])
        p = subprocess.run(["apt-get"] + opts + ["source", "--download-only", "qemu=" + ver],
                           cwd=tmp, capture_output=True, text=True, timeout=600)
        orig = glob.glob(os.path.join(tmp, "qemu_*.orig.tar.*"))
        if p.returncode != 0 or not orig:
            skip("apt-get source qemu=%s failed: %s" % (ver, p.stderr.strip()[-300:]))
        p = subprocess.run(["tar", "-xf", orig[0], "--wildcards", "*/python/qemu/qmp/*"],
                           cwd=tmp, capture_output=True, text=True, timeout=300)
        found = glob.glob(os.path.join(tmp, "*", "python", "qemu", "qmp"))
        if p.returncode != 0 or not found:
            skip("the QEMU source has no python/qemu/qmp: %s" % p.stderr[-300:])
        staging = CACHE + ".new"
        shutil.rmtree(staging, ignore_errors=True)
        os.makedirs(os.path.join(staging, "qemu"))
        shutil.copytree(found[0], os.path.join(staging, "qemu", "qmp"))
        open(os.path.join(staging, "qemu", "__init__.py"), "w").close()
        shutil.rmtree(CACHE, ignore_errors=True)
        os.rename(staging, CACHE)
        return CACHE
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def norm(step, value):
    """What may differ by nature: thread ids, paths of sockets and files."""
    text = json.dumps(value, sort_keys=True)
    text = re.sub(r'"thread-id": [1-9]\d*', '"thread-id": "TID"', text)
    text = re.sub(r"thread_id=\d+", "thread_id=TID", text)
    text = re.sub(r"/[qv]\.qcow2", "/IMAGE.qcow2", text)  # each run has its own image
    if step == "hmp info snapshots":
        # the state's size (vmmd's own format), the date and the guest clock
        text = re.sub(r"(?<=\S) +[\d.]+ (?:[KMGTPE]i)?B +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"
                      r" +\d\d:\d\d:\d\d\.\d{3}", " SIZE DATE CLOCK", text)
    return json.loads(text)


def diff(a, b, path=""):
    """Paths where @a and @b differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += diff(a.get(k, "<absent>"), b.get(k, "<absent>"), path + ("." if path else "") + k)
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        out = []
        for x, y in zip(a, b):
            out += [p for p in diff(x, y, path) if p not in out]
        return out
    return [] if a == b else [path]


# Commands of the whole daemon (no VM selector on the main socket).
GLOBAL = ("query-version", "query-kvm", "query-target", "query-machines")

STEPS = [
    ("query-version", None),
    ("query-name", None),
    ("query-uuid", None),
    ("query-kvm", None),
    ("query-target", None),
    ("query-status", None),
    ("query-cpus-fast", None),
    ("query-iothreads", None),
    ("query-memdev", None),
    ("query-chardev", None),
    ("query-machines", None),
    ("query-current-machine", None),
    ("system_wakeup", None),
    ("query-block", None),
    ("query-blockstats", None),
    ("stop", None),
    ("query-status", None),
    ("hmp", "info status"),
    ("cont", None),
    ("hmp", "info status"),
    ("hmp", "stop"),
    ("hmp", "cont"),
    # reset and power button with the vCPUs stopped: only the events of the
    # commands, none of the guest's own reaction (which depends on timing)
    ("stop", None),
    ("system_reset", None),
    ("hmp", "system_reset"),
    ("system_powerdown", None),
    ("hmp", "system_powerdown"),
    ("query-status", None),
    # the serial console as a ringbuf chardev (the guest is stopped: no new output)
    ("ringbuf-read", {"device": "serial0", "size": 65536}),
    ("ringbuf-write", {"device": "serial0", "data": "h\u00e9llo"}),
    ("ringbuf-read", {"device": "serial0", "size": 3}),
    ("ringbuf-read", {"device": "serial0", "size": 100, "format": "base64"}),
    ("ringbuf-write", {"device": "serial0", "data": "aGk=", "format": "base64"}),
    ("ringbuf-read", {"device": "serial0", "size": 10}),
    ("ringbuf-read", {"device": "serial0", "size": 0}),
    ("ringbuf-read", {"device": "nope", "size": 3}),
    ("hmp", "info version"),
    ("hmp", "info name"),
    ("hmp", "info kvm"),
    ("hmp", "info cpus"),
    ("hmp", "info network"),
    ("hmp", "info block"),
    ("hmp", "info blockstats"),
    ("hmp", "info snapshots"),
    # internal snapshots through HMP (the VM is paused: no STOP/RESUME); all
    # removed again, the next run uses the same image
    ("hmp", "savevm s1"),
    ("hmp", "info snapshots"),
    ("hmp", "savevm s1"),
    ("hmp", "savevm s2"),
    ("hmp", "info snapshots"),
    ("hmp", "loadvm nope"),
    ("hmp", "info status"),
    ("hmp", "loadvm s1"),
    ("hmp", "info status"),
    ("hmp", "loadvm"),
    ("hmp", "delvm nope"),
    ("hmp", "delvm s1"),
    ("hmp", "delvm s2"),
    ("hmp", "info snapshots"),
    ("query-pci", None),
    ("hmp", "info pci"),
    ("hmp", "bogus"),
    ("no-such-command", None),
    ("query-status", {"bogus": 1}),
    ("quit", None),
]


def run_script(qmp_cls, address, vm=None):
    """Run STEPS; returns [(step name, answer, [events])], greeting first."""
    c = qmp_cls(address)
    greeting = c.connect(negotiate=True)
    out = [("greeting", greeting, [])]
    for name, args in STEPS:
        if name == "hmp":
            label, cmd, a = "hmp " + args, "human-monitor-command", {"command-line": args}
        else:
            label, cmd, a = name, name, dict(args or {})
            if name == "ringbuf-read" and a.get("size") == 65536:
                label = "ringbuf-drain"  # the guests' own output differs
        if vm and cmd not in GLOBAL:
            a["vm"] = vm
        r = c.cmd(cmd, a) if a else c.cmd(cmd)
        r.pop("id", None)
        # events of state changes arrive asynchronously: wait until they settle
        # (nothing new for a second, at most 10 s; generous for a loaded host)
        got = []
        if cmd in ("stop", "cont", "system_reset", "system_powerdown", "quit",
                   "human-monitor-command") and label != "hmp bogus":
            # quit: SHUTDOWN comes after the answer, then the connection closes
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                try:
                    new = c.get_events(wait=2.0)  # runs the library's reader
                except Exception:  # noqa: BLE001 (quiet for 2 s, or closed after quit)
                    break
                if not new:
                    break
                got += new
                if cmd == "quit" and any(e["event"] == "SHUTDOWN" for e in got):
                    break
        try:
            got += c.get_events(wait=False)
        except Exception:  # noqa: BLE001 (closed after quit)
            pass
        events = []
        for ev in got:
            data = dict(ev.get("data", {}))
            if vm:
                assert data.pop("vm", None) == vm, ev  # the main socket names the VM
            events.append({"event": ev["event"], "data": data} if data else {"event": ev["event"]})
        out.append((label, r, events))
    try:
        c.close()
    except Exception:  # noqa: BLE001 (quit already closed it)
        pass
    return out


def compare(qemu, other, where):
    differences = []
    details = []
    for (label, qa, qe), (label2, va, ve) in zip(qemu, other):
        assert label == label2
        if label == "ringbuf-drain":
            continue
        if norm(label, qa) != norm(label, va) or qe != ve:
            details.append("%s: QEMU %r %r / vmmd %r %r" % (label, qa, qe, va, ve))
        if label == "greeting":
            qa, va = qa["QMP"], va["QMP"]
        for p in diff(norm(label, qa), norm(label, va)):
            differences.append((label, p.split(".", 1)[1] if p.startswith(("return.", "QMP."))
                                else p))
        if qe != ve:
            differences.append((label, "events %r vs %r" % (qe, ve)))
    known_hit = set()
    unexpected = []
    for label, field in differences:
        for i, (kl, kf, *_) in enumerate(KNOWN):
            if kl == label and (not kf or field == kf or field.startswith(kf + ".")):
                known_hit.add(i)
                break
        else:
            unexpected.append((label, field))
    print("%s: %d differences from QEMU, all known" % (where, len(differences))
          if not unexpected else "%s: unexpected differences" % where)
    for label, field in differences:
        print("  %s: %s" % (label, field))
    assert not unexpected, "%s differs from QEMU 7.2 where it should not: %r\n%s" % (
        where, unexpected, "\n".join(d for d in details
                                     if d.split(":")[0] in [u[0] for u in unexpected]))
    return known_hit


def test_conformance_and_qmp_shell():
    require_kvm()
    if shutil.which("qemu-system-x86_64") is None:
        skip("qemu-system-x86_64 is not installed")
    idle = guest("idle")
    sys.path.insert(0, qemu_python())
    from qemu.qmp.legacy import QEMUMonitorProtocol  # noqa: E402

    tmp = tempfile.mkdtemp(prefix="qmp-conf.")
    qemu = None
    try:
        for n in ("q.qcow2", "v.qcow2"):
            subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", os.path.join(tmp, n), "16M"],
                           check=True)
        sock = os.path.join(tmp, "qemu.qmp")
        qemu = subprocess.Popen(
            ["qemu-system-x86_64", "-accel", "kvm", "-nodefaults", "-display", "none",
             "-name", "conf", "-m", "64", "-smp", "2", "-kernel", idle,
             "-drive", "file=%s,format=qcow2,if=none,id=vda" % os.path.join(tmp, "q.qcow2"),
             "-device", "virtio-blk-pci,drive=vda,id=vda",
             "-netdev", "user,id=net0",
             "-device", "virtio-net-pci,netdev=net0,id=net0,mac=52:54:00:12:34:56",
             "-chardev", "ringbuf,id=serial0", "-serial", "chardev:serial0",
             "-qmp", "unix:%s,server=on,wait=off" % sock],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while not os.path.exists(sock) and time.monotonic() < deadline:
            time.sleep(0.05)
        probe = QEMUMonitorProtocol(sock)
        version = probe.connect(negotiate=True)["QMP"]["version"]
        probe.close()
        time.sleep(1)  # let the guest reach its idle loop, as vmmd's does below
        q = run_script(QEMUMonitorProtocol, sock)
        qemu.wait(30)
        qemu = None

        conf = os.path.join(tmp, "vmmd.conf")
        with open(conf, "w") as f:
            f.write("qmp-version = %d.%d.%d\nqmp-package = %s\n" % (
                version["qemu"]["major"], version["qemu"]["minor"], version["qemu"]["micro"],
                version["package"]))
        hit = set()
        for where in ("per-VM socket", "main socket"):
            # a fresh image per run: the snapshots of the previous one grew it
            subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2",
                            os.path.join(tmp, "v.qcow2"), "16M"], check=True)
            with Vmmd(args=["--config", conf]) as d:
                m = d.qmp()
                info = m.ok("vm-create", {
                    "name": "conf", "vcpus": 2, "memory": "64M", "start": True,
                    "boot": {"kernel": idle},
                    "disks": [{"id": "vda", "file": os.path.join(tmp, "v.qcow2"),
                               "format": "qcow2"}],
                    "nics": [{"id": "net0", "mac": "52:54:00:12:34:56"}]})
                wait_console(d, "conf", "idle: up")
                if where == "per-VM socket":
                    v = run_script(QEMUMonitorProtocol, info["qmp-socket"])
                else:
                    v = run_script(QEMUMonitorProtocol, d.socket, vm="conf")
                hit |= compare(q, v, where)
        print("remaining differences from QEMU 7.2, with their reasons:")
        for i in sorted(hit):
            print("  %s %s: %s" % KNOWN[i][:3])
        stale = [KNOWN[i] for i in range(len(KNOWN)) if i not in hit and len(KNOWN[i]) < 4]
        assert not stale, "KNOWN differences that no longer occur: %r" % stale

        # qmp-shell -H: HMP through the library's shell, to QEMU and to vmmd
        shell = os.path.join(qemu_python(), "qemu", "qmp", "qmp_shell.py")
        env = dict(os.environ, PYTHONPATH=qemu_python())
        with Vmmd(args=["--config", conf]) as d:
            info = d.qmp().ok("vm-create", {"name": "sh", "memory": "32M", "start": True,
                                            "boot": {"kernel": idle}})
            wait_console(d, "sh", "idle: up")
            p = subprocess.run([sys.executable, shell, "-H", info["qmp-socket"]],
                               input="info status\ninfo name\nstop\ninfo status\n",
                               capture_output=True, text=True, env=env, timeout=60)
            assert p.returncode == 0, p
            assert "VM status: running" in p.stdout and "VM status: paused" in p.stdout, p
            assert "(QEMU) sh\n" in p.stdout.replace("\r", ""), p
    finally:
        if qemu:
            qemu.kill()
            qemu.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main(globals())
