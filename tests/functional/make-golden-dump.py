#!/usr/bin/env python3
"""Record QEMU 7.2's dump-guest-memory as a golden trace (tests/functional/
golden/dump.json) for test-dump.py.

qemu-system-x86_64 runs tests/functional/guest-idle.elf with two vCPUs
until the guest says "idle: up" on its serial port, then:

- "calls": dump-guest-memory's answers to bad arguments, a dump of 64 KiB
  and query-dump around them, each with the events before its answer
  (timestamps dropped);
- "core": what a full dump holds, read as gdb and crash read it (core_facts
  below): the ELF machine, the notes (names, types, sizes, pr_pid), vCPU
  0's QEMU note, the PT_LOAD ranges, whether the guest's code segment is
  in the file where its addresses say; and gdb's view of the core with the
  guest's ELF (registers, the symbol at rip, the guest's greeting read at
  its address);
- "busy": a detached dump into a pipe nobody reads yet (getfd), so it
  stays active: query-dump, stop, cont, another dump, migrate and HMP's
  info dump meanwhile; then the pipe drained: DUMP_COMPLETED, RESUME and
  the bytes that came through;
- "paging-core": the same facts of a dump with paging true;
- "memsave": memsave's answers, and for each file written its size and
  whether it holds the guest's code (read by its virtual address);
- "hmp": human-monitor-command's dump-guest-memory, info dump, memsave,
  pmemsave, x, xp, gva2gpa, info mem and info tlb lines (QEMU's stray
  "GLib: ..." warning lines left out; a long answer as hmp_text keeps it).

QEMU 7.2 writes every linear address of a 4-level paging dump with bits
48-63 set (0xffff000000000000 for this guest's identity map at 0); vmmd
writes them canonical, so test-dump.py compares the paging core's notes,
not its addresses. Left out because vmmd answers differently on purpose
(test-dump.py checks vmmd's own answers): kdump-zlib and win-dmp
(QEMU writes them; vmmd refuses them as QEMU refuses kdump-lzo), a negative
length (QEMU 7.2 answers "dump: no guest memory to dump" for -5 and dumps
for begin -1 with length -1; vmmd says the length is invalid).

Usage: tests/functional/make-golden-dump.py GUEST.elf [QEMU]"""

import hashlib
import importlib.util
import json
import os
import re
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("golden_migration",
                                               os.path.join(HERE, "make-golden-migration.py"))
golden_migration = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(golden_migration)
_spec = importlib.util.spec_from_file_location("golden_pmemsave",
                                               os.path.join(HERE, "make-golden-pmemsave.py"))
golden_pmemsave = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(golden_pmemsave)
code_segment = golden_pmemsave.code_segment

OUT = os.path.join(HERE, "golden", "dump.json")
GREETING = b"idle: up"


def calls():
    """dump-guest-memory's arguments ($DIR: the directory of the files) and
    the query-dump calls between them."""
    f = "file:$DIR/c.elf"
    dg = "dump-guest-memory"
    return [("query-dump", {}),
            ("query-dump-guest-memory-capability", {}),
            (dg, {"paging": False, "protocol": f, "begin": 4096}),
            (dg, {"paging": False, "protocol": f, "length": 4096}),
            (dg, {"paging": False, "protocol": "xx:$DIR/c.elf"}),
            (dg, {"paging": False, "protocol": "fd:nope"}),
            (dg, {"paging": False, "protocol": "file:$DIR/missing/c.elf"}),
            (dg, {"paging": False, "protocol": f, "format": "kdump-lzo"}),
            (dg, {"paging": False, "protocol": f, "format": "kdump-snappy"}),
            (dg, {"paging": False, "protocol": f, "format": "kdump-zlib", "begin": 0,
                  "length": 4096}),
            (dg, {"paging": True, "protocol": f, "format": "kdump-zlib"}),
            (dg, {"paging": False, "protocol": f, "format": "bogus"}),
            (dg, {"paging": False, "protocol": f, "begin": -1, "length": 8192}),
            (dg, {"paging": False, "protocol": f, "begin": 4096, "length": 0}),
            (dg, {"paging": False, "protocol": f, "begin": 1 << 40, "length": 8192}),
            (dg, {"protocol": f}),
            (dg, {"paging": False}),
            (dg, {"paging": False, "protocol": f, "begin": 0x100000, "length": 0x10000}),
            ("query-dump", {}),
            (dg, {"paging": True, "protocol": "file:$DIR/paging.elf"})]


def memsave_calls(guest):
    """memsave's arguments: the guest's code by its (identity-mapped)
    virtual address from either vCPU, bad vCPUs, addresses not mapped or
    mapped outside RAM, no bytes, a missing directory and filename."""
    addr, code = code_segment(guest)
    m = "$DIR/m.bin"
    return [{"val": addr, "size": len(code), "filename": "$DIR/code.bin"},
            {"val": addr, "size": len(code), "filename": "$DIR/code1.bin", "cpu-index": 1},
            {"val": addr, "size": 16, "filename": m, "cpu-index": 2},
            {"val": addr, "size": 16, "filename": m, "cpu-index": -1},
            {"val": 0xfffff000, "size": 8192, "filename": m},
            {"val": 0x100000000, "size": 4096, "filename": m},
            {"val": -4096, "size": 4096, "filename": m},
            {"val": 0x2000000, "size": 4096, "filename": m},
            {"val": 0xfec00000, "size": 4096, "filename": m},
            {"val": 0x800000000000, "size": 16, "filename": m},
            {"val": addr, "size": 0, "filename": "$DIR/empty.bin"},
            {"val": addr, "size": 16, "filename": "$DIR/missing/m.bin"},
            {"val": addr, "size": 16}]


HMP = ["info dump",
       "dump-guest-memory",
       "dump-guest-memory -l $DIR/h.elf",
       "dump-guest-memory -s $DIR/h.elf",
       "dump-guest-memory -z -l $DIR/h.elf",
       "dump-guest-memory -x $DIR/h.elf",
       "dump-guest-memory -l $DIR/h.elf 0 4096",
       "dump-guest-memory $DIR/h.elf 4096",
       "dump-guest-memory $DIR/h.elf 1M 64K",
       "dump-guest-memory $DIR/h.elf 0x100000 0x10000 5",
       "dump-guest-memory $DIR/missing/h.elf",
       "dump-guest-memory $DIR/h.elf 0x100000+4096 8192",
       "dump-guest-memory $DIR/h.elf 0x100000 -1",
       "info dump",
       "memsave",
       "memsave 0x100000 16 $DIR/hm.bin",
       'memsave 0x100000 16 "$DIR/hm.bin"',
       'pmemsave 0x100000 16 "$DIR/hp.bin"',
       'memsave 0x100000000 16 "$DIR/hm.bin"',
       "memsave 1M 16 x",
       "memsave (1 16 x",
       "memsave 4/0 16 x",
       "memsave 0x100000 (4*4) x y",
       "pmemsave 0x100000 16",
       "xp /16xb 0x100000", "xp /8xh 0x100000", "xp /2xg 0x100000", "x /4xw 0x100000",
       "xp 0x100000", "xp /5dw 0x100000", "xp /5uw 0x100000", "xp /3ow 0x100000",
       "xp /16c 0x100000", "xp /2s 0x100000", "xp /40xb 0x100000", "xp /xb 0x100000",
       "xp /4xw 0x2000000", "x /4xw 0x100000000", "xp /4xz 0x100000", "xp",
       "x /2xw 0xfffffffffffffffc",
       "gva2gpa 0x100123", "gva2gpa 0x100000000", "gva2gpa", "info mem", "info tlb"]


def hmp_text(text):
    """HMP's answer as kept in the trace: in full, or for a long one (info
    tlb) its line count, first lines and SHA-256."""
    if len(text) <= 8192:
        return text
    lines = text.split("\r\n")
    return {"lines": len(lines), "head": lines[:4],
            "sha256": hashlib.sha256(text.encode()).hexdigest()}


def subst(v, d):
    if isinstance(v, str):
        return v.replace("$DIR", d)
    if isinstance(v, dict):
        return {k: subst(x, d) for k, x in v.items()}
    return v


def unsubst(m, d):
    return json.loads(json.dumps(m).replace(d, "$DIR"))


def event_shape(e):
    """An event without its timestamp (and vmmd's "vm" key)."""
    data = dict(e.get("data", {}))
    data.pop("vm", None)
    return {"event": e["event"], "data": data} if data else {"event": e["event"]}


def core_facts(path, guest):
    """What a consumer reads of an ELF core: see the module's docstring."""
    with open(path, "rb") as f:
        core = f.read()
    e_type, e_machine = struct.unpack_from("<HH", core, 16)
    phoff, = struct.unpack_from("<Q", core, 32)
    phentsize, phnum = struct.unpack_from("<HH", core, 54)
    notes, loads, qemu0 = [], [], None
    identity = True
    code_addr, code = code_segment(guest)
    code_found = False
    for i in range(phnum):
        p_type, _, p_offset, p_vaddr, p_paddr, p_filesz = struct.unpack_from(
            "<IIQQQQ", core, phoff + i * phentsize)
        if p_type == 4:
            off = p_offset
            while off < p_offset + p_filesz:
                namesz, descsz, ntype = struct.unpack_from("<III", core, off)
                name = core[off + 12:off + 12 + namesz].rstrip(b"\0").decode()
                desc = off + 12 + ((namesz + 3) & ~3)
                note = [name, ntype, descsz]
                if name == "CORE" and ntype == 1:
                    note.append(struct.unpack_from("<I", core,
                                                   desc + (32 if descsz == 336 else 24))[0])
                if name == "QEMU" and qemu0 is None:
                    qemu0 = qemu_note(core, desc)
                notes.append(note)
                off = desc + ((descsz + 3) & ~3)
        elif p_type == 1:
            identity = identity and p_vaddr == p_paddr
            if loads and loads[-1][0] + loads[-1][1] == p_paddr:
                loads[-1][1] += p_filesz
            else:
                loads.append([p_paddr, p_filesz])
            if p_paddr <= code_addr and code_addr + len(code) <= p_paddr + p_filesz:
                at = p_offset + code_addr - p_paddr
                code_found = core[at:at + len(code)] == code
    return {"type": e_type, "machine": e_machine, "notes": notes, "qemu-note-0": qemu0,
            "loads": loads, "vaddr-is-paddr": identity, "code-segment-found": code_found}


def qemu_note(core, off):
    """vCPU state a crash user reads from QEMU's note (QEMUCPUState)."""
    version, size = struct.unpack_from("<II", core, off)
    regs = struct.unpack_from("<18Q", core, off + 8)
    segs = {}
    for i, n in enumerate(["cs", "ds", "es", "fs", "gs", "ss", "ldt", "tr", "gdt", "idt"]):
        segs[n] = list(struct.unpack_from("<IIIIQ", core, off + 152 + 24 * i))
    cr = struct.unpack_from("<5Q", core, off + 392)
    return {"version": version, "size": size, "rip": regs[16], "rsp": regs[6],
            "cs": segs["cs"], "ss": segs["ss"], "ds": segs["ds"], "tr": segs["tr"],
            "gdt": segs["gdt"][1::3], "idt": segs["idt"][1::3], "cr0": cr[0], "cr3": cr[3],
            "cr4": cr[4]}


def greeting_addr(guest):
    """The guest-physical address of the greeting in the guest's ELF."""
    with open(guest, "rb") as f:
        elf = f.read()
    phoff, = struct.unpack_from("<Q", elf, 32)
    phentsize, phnum = struct.unpack_from("<HH", elf, 54)
    for i in range(phnum):
        p_type, _, p_offset, _, p_paddr, p_filesz = struct.unpack_from(
            "<IIQQQQ", elf, phoff + i * phentsize)
        at = elf.find(GREETING, p_offset, p_offset + p_filesz)
        if p_type == 1 and at >= 0:
            return p_paddr + at - p_offset
    raise AssertionError("no greeting in %s" % guest)


def gdb_view(guest, core):
    """gdb's answers about the core: registers, the symbol at rip, the
    greeting (its chatter about threads and source lines left out)."""
    out = subprocess.run(["gdb", "-nx", "-batch", "-ex", "info registers rip rsp cs ss",
                          "-ex", "info symbol $pc",
                          "-ex", "x/s 0x%x" % greeting_addr(guest), guest, core],
                         capture_output=True, text=True, timeout=60).stdout
    return [ln for ln in out.splitlines()
            if re.match(r"(rip|rsp|cs|ss) |0x|\w+ \+ \d+ in section ", ln)]


def pipe_dump(q, send_fd, vm_args):
    """The busy part: a detached dump into a pipe, commands meanwhile, the
    pipe drained. @q: call(name, args) -> answer; @send_fd(name, fd)."""
    r, w = os.pipe()
    send_fd("dumppipe", w)
    os.close(w)
    out = {"steps": []}

    def step(cmd, args):
        m = q(cmd, dict(args, **vm_args))
        m.pop("id", None)
        out["steps"].append({"execute": cmd, "arguments": args, "reply": m})
        return m

    step("dump-guest-memory", {"paging": False, "protocol": "fd:dumppipe", "detach": True})
    m = q("query-dump", dict(vm_args))
    out["active"] = {"status": m["return"]["status"], "total": m["return"]["total"]}
    step("stop", {})
    step("cont", {})
    step("dump-guest-memory", {"paging": False, "protocol": "file:/nonexistent/x"})
    step("migrate", {"uri": "unix:/nonexistent/x"})
    m = q("human-monitor-command", dict(vm_args, **{"command-line": "info dump"}))
    out["info-dump-first-line"] = m["return"].split("\r\n")[0]
    got = []
    t = threading.Thread(target=lambda: got.append(drain(r)))
    t.start()
    t.join(120)
    out["bytes-through-pipe"] = got[0] if got else None
    return out


def broken_pipe(q, send_fd, vm_args):
    """A detached dump into a pipe whose reader has gone: its answer."""
    r, w = os.pipe()
    send_fd("deadpipe", w)
    os.close(w)
    os.close(r)
    m = q("dump-guest-memory", dict(vm_args, paging=False, protocol="fd:deadpipe",
                                    detach=True))
    m.pop("id", None)
    return m


def drain(fd):
    n = 0
    while True:
        b = os.read(fd, 1 << 20)
        if not b:
            os.close(fd)
            return n
        n += len(b)


def main():
    guest = sys.argv[1]
    qemu = sys.argv[2] if len(sys.argv) > 2 else "qemu-system-x86_64"
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "qmp")
        serial = os.path.join(d, "serial")
        p = subprocess.Popen([qemu, "-machine", "pc,accel=kvm",
                              "-cpu", "host,-cx16,-xsave,-arch-capabilities", "-m", "32",
                              "-smp", "2", "-nodefaults", "-display", "none", "-kernel", guest,
                              "-serial", "file:" + serial,
                              "-qmp", "unix:%s,server=on,wait=off" % path],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            q = golden_migration.Qmp(path)
            out = {"qemu": q.cmd("query-version")["return"]["qemu"], "calls": [], "hmp": []}
            for _ in range(600):
                if os.path.exists(serial) and GREETING in open(serial, "rb").read():
                    break
                time.sleep(0.1)
            else:
                raise AssertionError("the guest did not come up under QEMU")
            for cmd, a in calls():
                q.events = []
                m = unsubst(q.call(cmd, subst(a, d)), d)
                out["calls"].append({"execute": cmd, "arguments": a, "reply": m,
                                     "events": [event_shape(e) for e in q.events]})
            out["paging-core"] = core_facts(os.path.join(d, "paging.elf"), guest)
            out["memsave"] = []
            code = code_segment(guest)[1]
            for a in memsave_calls(guest):
                m = unsubst(q.call("memsave", subst(a, d)), d)
                step = {"arguments": a, "reply": m}
                f = subst(a.get("filename", ""), d)
                if "return" in m:
                    with open(f, "rb") as fh:
                        data = fh.read()
                    step["file-size"] = len(data)
                    step["file-is-the-code"] = data == code
                out["memsave"].append(step)
            core = os.path.join(d, "full.elf")
            q.events = []
            assert q.call("dump-guest-memory",
                          {"paging": False, "protocol": "file:" + core}) == {"return": {}}
            out["core"] = core_facts(core, guest)
            out["core"]["size"] = os.path.getsize(core)
            out["core"]["events"] = [event_shape(e) for e in q.events]
            out["gdb"] = gdb_view(guest, core)
            for line in HMP:
                m = q.call("human-monitor-command", {"command-line": subst(line, d)})
                text = "".join(ln for ln in m["return"].splitlines(True)
                               if not ln.startswith("GLib:"))
                out["hmp"].append({"command-line": line, "return": hmp_text(unsubst(text, d))})

            def send_fd(name, fd):
                msg = json.dumps({"execute": "getfd", "arguments": {"fdname": name}})
                socket.send_fds(q.s, [msg.encode() + b"\n"], [fd])
                while "return" not in json.loads(q.f.readline()):
                    pass

            q.events = []
            out["busy"] = pipe_dump(lambda c, a: unsubst(q.call(c, a), d), send_fd, {})
            q.wait_event(lambda e: e["event"] == "RESUME")
            out["busy"]["events"] = [event_shape(e) for e in q.events]
            q.events = []
            out["broken"] = {"reply": broken_pipe(lambda c, a: q.call(c, a), send_fd, {})}
            q.wait_event(lambda e: e["event"] == "RESUME")
            out["broken"]["events"] = [event_shape(e) for e in q.events]
        finally:
            p.kill()
            p.wait()
    golden_migration.write_golden(OUT, out)


if __name__ == "__main__":
    main()
