#!/usr/bin/env python3
"""dump-guest-memory, replayed from QEMU 7.2's golden trace (golden/dump.json,
make-golden-dump.py) on guest-idle.elf with two vCPUs: the answers to bad
arguments and the events of a dump; the core as gdb and crash read it (the
notes of both vCPUs, vCPU 0's QEMU note, the guest's code where its
addresses say, gdb's registers, symbol and greeting), with paging too;
memsave's answers and files; a detached dump into
a pipe that stays active while stop, cont, another dump and migrate are
refused; a pipe whose reader is gone; HMP's dump-guest-memory, info dump,
memsave, pmemsave, x, xp, gva2gpa, info mem and info tlb. Then what vmmd does its own way: the formats it does
not write refused, a negative length, a paused VM stays paused, a destroy that
waits for the dump, the file through the image roots, a regular file with
holes for zero pages, and vmctl dump."""

import json
import os
import socket
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from vmmdtest import Vmmd, main  # noqa: E402
from daemon_helpers import TEST_CPU, guest, vmmd_with_image_roots, wait_console  # noqa: E402

TOP_SRCDIR = os.environ.get("top_srcdir", os.path.join(HERE, "..", ".."))
GOLDEN = os.path.join(TOP_SRCDIR, "tests", "functional", "golden", "dump.json")
rec = __import__("make-golden-dump")
RAM = 32 << 20


def golden():
    with open(GOLDEN) as f:
        return json.load(f)


def boot(d, name="m1", vcpus=2):
    q = d.qmp()
    q.ok("vm-create", {"name": name, "vcpus": vcpus, "memory": "32M", "cpu": TEST_CPU,
                       "boot": {"kernel": guest("idle")}, "start": True})
    wait_console(d, name, "idle: up\r\n")
    q.event("RESUME")
    q.events = []
    return q


def call(q, d, name, args):
    r = q.cmd(name, dict(rec.subst(args, d.tmp), vm="m1"))
    r.pop("id", None)
    return rec.unsubst(r, d.tmp)


def events(q, upto="RESUME"):
    """The VM's events up to @upto (the last of a dump), shaped as golden."""
    q.event(upto, timeout=30)
    got = [rec.event_shape(e) for e in q.events] + [{"event": upto}]
    q.events = []
    return got


def ram_only(evs):
    """QEMU's events with vmmd's total: QEMU also dumps the firmware ROM."""
    out = json.loads(json.dumps(evs))
    for e in out:
        res = e.get("data", {}).get("result", {})
        if res.get("total", 0) > RAM:
            res["total"] = res["completed"] = RAM
    return out


def send_fd(q, name, fd):
    msg = json.dumps({"execute": "getfd", "arguments": {"fdname": name}})
    socket.send_fds(q.sock, [msg.encode() + b"\n"], [fd])
    r = q.reply()
    assert "return" in r, r


def test_answers_as_qemu():
    """Each call's answer as QEMU's. A dump's events as QEMU's; QEMU stops
    and resumes the guest before it finds a bad begin or length, vmmd
    refuses those before the guest stops: no event."""
    g = golden()
    with Vmmd() as d:
        q = boot(d)
        for c in g["calls"]:
            r = call(q, d, c["execute"], c["arguments"])
            if c["execute"] == "query-dump-guest-memory-capability":
                formats = r["return"]["formats"]
                assert "elf" in formats and set(formats) <= set(c["reply"]["return"]["formats"])
                continue
            assert r == c["reply"], (c["arguments"], r, c["reply"])
            if "return" in r and c["execute"] == "dump-guest-memory":
                assert events(q) == ram_only(c["events"]), c
            else:
                assert not q.events, (c["arguments"], q.events)


def test_core_as_qemu():
    """The core's notes, vCPU 0's state, memory and gdb's view as QEMU's.
    QEMU also dumps the firmware ROM below 4 GiB; vmmd dumps RAM only."""
    g = golden()
    with Vmmd() as d:
        q = boot(d)
        core = os.path.join(d.tmp, "full.elf")
        q.ok("dump-guest-memory", vm="m1", paging=False, protocol="file:" + core)
        got = events(q)
        assert got == [{"event": "STOP"},
                       {"event": "DUMP_COMPLETED",
                        "data": {"result": {"completed": RAM, "status": "completed",
                                            "total": RAM}}},
                       {"event": "RESUME"}], got
        want, got = dict(g["core"]), rec.core_facts(core, guest("idle"))
        want["loads"] = [ld for ld in want["loads"] if ld[0] < RAM]
        for k in ("size", "events"):
            want.pop(k)
        # TR and the IDT as each VMM's PVH boot leaves them (the guest loads
        # neither): QEMU's option ROM has the real-mode IDT and a null TR
        for k in ("tr", "idt"):
            want["qemu-note-0"].pop(k)
            got["qemu-note-0"].pop(k)
        assert got == want, (got, want)
        assert rec.gdb_view(guest("idle"), core) == g["gdb"]
        # with paging: the same notes; the identity map at 0 gives virtual
        # addresses equal to physical (QEMU 7.2 sets bits 48-63 of them)
        paging = os.path.join(d.tmp, "paging.elf")
        q.ok("dump-guest-memory", vm="m1", paging=True, protocol="file:" + paging)
        events(q)
        got = rec.core_facts(paging, guest("idle"))
        want = dict(g["paging-core"])
        assert got["loads"] == [[0, RAM]] and got["vaddr-is-paddr"], got
        for k in ("loads", "vaddr-is-paddr", "qemu-note-0"):
            got.pop(k)
            want.pop(k)
        assert got == want, (got, want)
        assert q.ok("query-dump", vm="m1") == {"status": "completed", "total": RAM,
                                               "completed": RAM}
        # a regular file: header, notes and RAM, the zero pages holes
        st = os.stat(core)
        assert st.st_size < RAM + 4096 and st.st_blocks * 512 < RAM // 2, st


def test_memsave_as_qemu():
    """memsave's answers as QEMU's; the files it writes hold what QEMU's do
    (the guest's code, read by its virtual address, from either vCPU)."""
    g = golden()
    code = rec.code_segment(guest("idle"))[1]
    with Vmmd() as d:
        q = boot(d)
        for step in g["memsave"]:
            r = call(q, d, "memsave", step["arguments"])
            assert r == step["reply"], (step["arguments"], r, step["reply"])
            f = rec.subst(step["arguments"].get("filename", ""), d.tmp)
            if "file-size" in step:
                with open(f, "rb") as fh:
                    data = fh.read()
                assert len(data) == step["file-size"], f
                assert (data == code) == step["file-is-the-code"], f
            elif f:
                assert not os.path.exists(f), f  # (QEMU leaves an empty file)
        assert not q.events and q.ok("query-status", vm="m1")["status"] == "running"


def test_busy_as_qemu():
    """A detached dump into a pipe: active while stop, cont, a dump and a
    migration are refused as QEMU refuses them; every byte through the
    pipe; then a pipe with no reader fails the dump as QEMU's."""
    g = golden()
    with Vmmd() as d:
        q = boot(d)
        out = rec.pipe_dump(lambda c, a: rec.unsubst(call(q, d, c, a), d.tmp),
                            lambda n, fd: send_fd(q, n, fd), {})
        assert out["steps"] == g["busy"]["steps"], out["steps"]
        assert out["active"] == {"status": "active", "total": RAM}, out
        assert out["info-dump-first-line"] == g["busy"]["info-dump-first-line"]
        got = events(q)
        assert got == [e if e["event"] != "DUMP_COMPLETED" else
                       {"event": "DUMP_COMPLETED",
                        "data": {"result": {"completed": RAM, "status": "completed",
                                            "total": RAM}}}
                       for e in g["busy"]["events"]], got
        core = os.path.join(d.tmp, "file.elf")
        q.ok("dump-guest-memory", vm="m1", paging=False, protocol="file:" + core)
        assert [e["event"] for e in events(q)] == ["STOP", "DUMP_COMPLETED", "RESUME"]
        assert out["bytes-through-pipe"] == os.path.getsize(core), out
        r = rec.broken_pipe(lambda c, a: call(q, d, c, a), lambda n, fd: send_fd(q, n, fd),
                            {})
        assert r == g["broken"]["reply"], r
        got = events(q)
        want = g["broken"]["events"]
        want[1]["data"]["result"]["total"] = RAM
        assert got == want, (got, want)
        assert q.ok("query-status", vm="m1")["status"] == "running"


def test_destroy_waits():
    """A destroy while a dump writes waits for it: every byte comes through,
    then the VM goes."""
    with Vmmd() as d:
        q = boot(d, vcpus=1)
        r, w = os.pipe()
        send_fd(q, "p", w)
        os.close(w)
        q.ok("dump-guest-memory", vm="m1", paging=False, protocol="fd:p", detach=True)
        q2 = d.qmp()
        q2.send_raw(json.dumps({"execute": "vm-destroy", "arguments": {"vm": "m1"},
                                "id": "x"}) + "\n")
        time.sleep(0.2)  # (so the destroy comes while the pipe is full)
        assert rec.drain(r) > RAM
        assert q2.reply() == {"return": {}, "id": "x"}
        e = q.event("DUMP_COMPLETED")
        assert e["data"]["result"]["status"] == "completed", e


def test_hmp_as_qemu():
    g = golden()
    with Vmmd() as d:
        q = boot(d)
        # (QEMU had dumped before: info dump starts "completed")
        q.ok("dump-guest-memory", vm="m1", paging=False,
             protocol="file:" + os.path.join(d.tmp, "c.elf"), begin=0, length=4096)
        for h in g["hmp"]:
            r = call(q, d, "human-monitor-command", {"command-line": h["command-line"]})
            assert rec.hmp_text(r["return"]) == h["return"], (h, r)
        # vmmd does not disassemble
        r = call(q, d, "human-monitor-command", {"command-line": "xp /3i 0x100000"})
        assert r["return"] == "vmmd: format 'i' (disassembly) is not supported\r\n", r
        r = call(q, d, "human-monitor-command", {"command-line": "xp /16385xw 0"})
        assert r["return"] == "Error: at most 65536 bytes at a time\r\n", r


def test_vmmd_answers():
    """kdump-zlib and win-dmp are refused, with QEMU's words for a format it
    lacks; so is a negative length; nothing stops. A paused VM stays paused
    (no event)."""
    with Vmmd() as d:
        q = boot(d)
        f = "file:" + os.path.join(d.tmp, "x.elf")
        for fmt in ("kdump-zlib", "win-dmp"):
            r = q.cmd("dump-guest-memory", vm="m1", paging=False, protocol=f, format=fmt)
            assert r["error"]["desc"] == fmt + " is not available now", r
        r = q.cmd("dump-guest-memory", vm="m1", paging=False, protocol=f, begin=0, length=-5)
        assert r["error"]["desc"] == "Invalid parameter 'length'", r
        assert not os.path.exists(f[5:]) and not q.events, q.events
        q.ok("stop", vm="m1")
        q.events = []
        q.ok("dump-guest-memory", vm="m1", paging=False, protocol=f, begin=0, length=4096)
        q.event("DUMP_COMPLETED")
        assert not q.events and q.ok("query-status", vm="m1")["status"] == "paused"
        q.ok("cont", vm="m1")
        r = q.cmd("dump-guest-memory", vm="m2", paging=False, protocol=f)
        assert r["error"]["class"] == "DeviceNotFound", r


def test_image_roots_and_vmctl():
    """With image-roots set the file must lie beneath one; vmctl dump."""
    idle = guest("idle")
    d, images = vmmd_with_image_roots(os.path.dirname(idle))
    with d:
        q = boot(d, vcpus=1)
        out = os.path.join(d.tmp, "out.elf")
        r = q.cmd("dump-guest-memory", vm="m1", paging=False, protocol="file:" + out)
        assert "outside" in r["error"]["desc"] and not os.path.exists(out), r
        assert q.ok("query-status", vm="m1")["status"] == "running"
        core = os.path.join(images, "v.elf")
        p = d.vmctl("dump", "m1", core, "--begin", "0x100000", "--length", "64K")
        assert p.stdout == "m1: 65536 bytes of memory dumped to %s\n" % core, p.stdout
        facts = rec.core_facts(core, idle)
        assert facts["loads"] == [[0x100000, 65536]] and facts["code-segment-found"], facts
        assert [n[:2] for n in facts["notes"]] == [["CORE", 1], ["QEMU", 0]], facts
        p = d.vmctl("dump", "m1", core, "--paging")
        facts = rec.core_facts(core, idle)
        assert facts["loads"] == [[0, RAM]] and facts["vaddr-is-paddr"], facts
        p = d.vmctl("dump", "m1", core, "--begin", "0x100000", check=False)
        assert p.returncode != 0 and "go together" in p.stderr, p


if __name__ == "__main__":
    main(globals())
