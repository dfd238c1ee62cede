#!/usr/bin/env python3
"""Record QEMU 7.2's NBD server commands as a golden trace (tests/functional/
golden/nbd-server.json) for vmmd's NBD server.

qemu-system-x86_64 -M none (no guest) with two disks given as -blockdev:
vda, a 64 MiB raw image (over the file node vda-file), and vdb, a 32 MiB
qcow2 image (over vdb-file). A scripted sequence of nbd-server-start,
nbd-server-add, nbd-server-remove, nbd-server-stop, block-export-add,
block-export-del and query-block-exports, each step written as

  {"cmd": {"execute": ..., "arguments": ...}, "reply": ...,
   "events": [{"event": ..., "data": ...}, ...]}

where "events" are the events that arrived after the command was sent and
before the next one (timestamps removed); "events-before-reply" counts how
many of them came before the reply (only written when not 0). A step marked
"pipelined" was sent right behind the one before it, without waiting for its
reply. A step may carry "note" (what the recorder did around it, e.g. a
client connected) and "client" (what an NBD client connected to the export
saw).

The steps, in order: everything refused while no server runs; nbd-server-start
(bad arguments, then a unix socket, then again); nbd-server-add and
block-export-add (duplicates, unknown nodes, over-long names, bitmaps, other
export types, a read-only node vda-ro added by blockdev-add, no name given);
nbd-server-remove and block-export-del without clients; then with a raw NBD
client past NBD_OPT_GO (safe mode refused, hard mode); then an export over a
throttle node (vda-slow, throttle-group tg0 with iops-read 1) whose client
has reads in flight, so that it stays "shutting-down" for a few seconds while
more commands arrive; nbd-server-stop with exports (one with a client) left;
tcp addresses (a bad port, port "0", max-connections 1); last, exports with
an iothread (io0), which moves vdb out of the main loop.

Besides "steps":
- "schema": the arguments of nbd-server-start, nbd-server-add,
  nbd-server-remove, nbd-server-stop, block-export-add (common members, the
  type enum, the nbd members and the member names of the other types),
  block-export-del, the return type of query-block-exports and the data of
  BLOCK_EXPORT_DELETED, expanded from query-qmp-schema;
- "handshake": the NBD fixed-newstyle negotiation QEMU's server offers, as a
  raw client sees it (greeting, NBD_OPT_LIST, NBD_OPT_INFO with and without
  NBD_INFO_BLOCK_SIZE and before and after NBD_OPT_STRUCTURED_REPLY,
  NBD_OPT_LIST_META_CONTEXT, an unknown export, an unknown option,
  NBD_OPT_ABORT, NBD_OPT_GO, NBD_OPT_EXPORT_NAME with and without
  NBD_FLAG_C_NO_ZEROES), decoded;
- "max-connections": whether a second client gets a greeting while the first
  holds the only connection that max-connections=1 allows.

Placeholders: @DIR@ is the temporary directory (sockets, images);
@NAME4097@ is a string of 4097 "x" (one byte over NBD's 4096 limit), both in
commands and in replies; @PORT@ a tcp port that was free just before.

The temporary directory is made under /tmp and removed at the end; the
qemu process is killed whatever happens.

Usage: tests/functional/make-golden-nbd-server.py [QEMU]"""

import importlib.util
import json
import os
import select
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("golden_migration",
                                               os.path.join(HERE, "make-golden-migration.py"))
golden_migration = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(golden_migration)

OUT = os.path.join(HERE, "golden", "nbd-server.json")
LONG = "x" * 4097
SOCK = {"type": "unix", "data": {"path": "@DIR@/nbd.sock"}}

# --- NBD protocol constants (doc/proto.md of the NBD project) ---
IHAVEOPT = 0x49484156454F5054
REPLY_MAGIC = 0x0003E889045565A9
HS_FLAGS = {0: "NBD_FLAG_FIXED_NEWSTYLE", 1: "NBD_FLAG_NO_ZEROES"}
TX_FLAGS = {0: "NBD_FLAG_HAS_FLAGS", 1: "NBD_FLAG_READ_ONLY", 2: "NBD_FLAG_SEND_FLUSH",
            3: "NBD_FLAG_SEND_FUA", 4: "NBD_FLAG_ROTATIONAL", 5: "NBD_FLAG_SEND_TRIM",
            6: "NBD_FLAG_SEND_WRITE_ZEROES", 7: "NBD_FLAG_SEND_DF", 8: "NBD_FLAG_CAN_MULTI_CONN",
            9: "NBD_FLAG_SEND_RESIZE", 10: "NBD_FLAG_SEND_CACHE", 11: "NBD_FLAG_SEND_FAST_ZERO"}
OPT = {"NBD_OPT_EXPORT_NAME": 1, "NBD_OPT_ABORT": 2, "NBD_OPT_LIST": 3, "NBD_OPT_STARTTLS": 5,
       "NBD_OPT_INFO": 6, "NBD_OPT_GO": 7, "NBD_OPT_STRUCTURED_REPLY": 8,
       "NBD_OPT_LIST_META_CONTEXT": 9, "NBD_OPT_SET_META_CONTEXT": 10}
OPT_NAMES = {v: k for k, v in OPT.items()}
REP = {1: "NBD_REP_ACK", 2: "NBD_REP_SERVER", 3: "NBD_REP_INFO", 4: "NBD_REP_META_CONTEXT",
       0x80000001: "NBD_REP_ERR_UNSUP", 0x80000002: "NBD_REP_ERR_POLICY",
       0x80000003: "NBD_REP_ERR_INVALID", 0x80000004: "NBD_REP_ERR_PLATFORM",
       0x80000005: "NBD_REP_ERR_TLS_REQD", 0x80000006: "NBD_REP_ERR_UNKNOWN",
       0x80000007: "NBD_REP_ERR_SHUTDOWN", 0x80000008: "NBD_REP_ERR_BLOCK_SIZE_REQD",
       0x80000009: "NBD_REP_ERR_TOO_BIG"}
INFO = {"NBD_INFO_EXPORT": 0, "NBD_INFO_NAME": 1, "NBD_INFO_DESCRIPTION": 2,
        "NBD_INFO_BLOCK_SIZE": 3}
INFO_NAMES = {v: k for k, v in INFO.items()}


def flag_names(value, names):
    return [names.get(b, "bit%d" % b) for b in range(32) if value & (1 << b)]


class StepQmp:
    """A QMP client that keeps apart the events before and after each reply:
    golden_migration.Qmp reads through a buffered file, which cannot be polled
    for the events that trail a reply."""

    def __init__(self, path):
        for _ in range(200):
            try:
                self.s = socket.socket(socket.AF_UNIX)
                self.s.connect(path)
                break
            except OSError:
                time.sleep(0.05)
        self.buf = b""
        self.pending = []           # events read but not yet given to a step
        self.read(10)               # greeting
        assert self.call("qmp_capabilities", {}) == {"return": {}}

    def read(self, timeout):
        """One message, or None when none came within @timeout seconds."""
        end = time.time() + timeout
        while b"\n" not in self.buf:
            left = end - time.time()
            if left <= 0 or not select.select([self.s], [], [], left)[0]:
                return None
            c = self.s.recv(65536)
            if not c:
                raise EOFError("QMP closed")
            self.buf += c
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def send(self, name, args):
        self.s.sendall(json.dumps({"execute": name, "arguments": args}).encode() + b"\n")

    def reply(self):
        """The next reply; events before it go to pending."""
        while True:
            m = self.read(60)
            if m is None:
                raise TimeoutError("no reply")
            if "event" in m:
                self.pending.append({"event": m["event"], "data": m.get("data", {})})
            else:
                return m

    def call(self, name, args):
        self.send(name, args)
        return self.reply()

    def drain(self, quiet=0.3, want=None, timeout=5):
        """Read events until none came for @quiet seconds; with @want, first
        wait (up to @timeout seconds) for an event of that name."""
        end = time.time() + timeout
        while True:
            if not want or any(e["event"] == want for e in self.pending):
                m = self.read(quiet)
            else:
                m = self.read(max(0, end - time.time()))
            if m is None:
                return
            if "event" not in m:
                raise RuntimeError("unexpected reply %r" % m)
            self.pending.append({"event": m["event"], "data": m.get("data", {})})

    def take(self):
        got, self.pending = self.pending, []
        return got


class Recorder:
    def __init__(self, q, d):
        self.q, self.d, self.steps = q, d, []
        self.port = None

    def subst(self, v):
        """@DIR@, @NAME4097@ and @PORT@ -> their values, in every string of @v."""
        t = json.dumps(v).replace("@DIR@", self.d).replace("@NAME4097@", LONG)
        if self.port:
            t = t.replace("@PORT@", self.port)
        return json.loads(t)

    def unsubst(self, v):
        return json.loads(json.dumps(v).replace(LONG, "@NAME4097@").replace(self.d, "@DIR@"))

    def step(self, name, args=None, want=None, note=None, timeout=5):
        """Send one command; record its answer and the events until the
        next one (waiting for an event named @want if given)."""
        args = args or {}
        self.q.send(name, self.subst(args))
        m = self.q.reply()
        before = len(self.q.pending)
        self.q.drain(want=want, timeout=timeout)
        s = {"cmd": {"execute": name, "arguments": args}, "reply": self.unsubst(m),
             "events": self.unsubst(self.q.take())}
        if before:
            s["events-before-reply"] = before
        if note:
            s["note"] = note
        self.steps.append(s)
        return s

    def pipelined(self, cmds, want=None, note=None, timeout=5):
        """Send all of @cmds at once, then read their answers in turn."""
        for name, args in cmds:
            self.q.send(name, self.subst(args))
        out = []
        for i, (name, args) in enumerate(cmds):
            m = self.q.reply()
            before = len(self.q.pending)
            if i == len(cmds) - 1:
                self.q.drain(want=want, timeout=timeout)
            s = {"cmd": {"execute": name, "arguments": args}, "reply": self.unsubst(m),
                 "events": self.unsubst(self.q.take())}
            if before:
                s["events-before-reply"] = before
            if i:
                s["pipelined"] = True
            if note and not i:
                s["note"] = note
            self.steps.append(s)
            out.append(s)
        return out


# --- a raw NBD client ---

class NbdClient:
    def __init__(self, path=None, inet=None, timeout=5):
        if path:
            self.s = socket.socket(socket.AF_UNIX)
            self.s.connect(path)
        else:
            self.s = socket.create_connection(inet)
        self.s.settimeout(timeout)

    def recvn(self, n):
        b = b""
        while len(b) < n:
            c = self.s.recv(n - len(b))
            if not c:
                raise EOFError("NBD server closed after %d of %d bytes" % (len(b), n))
            b += c
        return b

    def greeting(self):
        raw = self.recvn(18)
        magic, optmagic, flags = struct.unpack(">8sQH", raw)
        return {"bytes": len(raw), "magic": magic.decode(), "opt-magic": "0x%016x" % optmagic,
                "handshake-flags": "0x%04x" % flags, "handshake-flag-names":
                flag_names(flags, HS_FLAGS)}

    def send_client_flags(self, flags):
        self.s.sendall(struct.pack(">I", flags))

    def send_opt(self, opt, data=b""):
        self.s.sendall(struct.pack(">QII", IHAVEOPT, opt, len(data)) + data)

    def reply(self):
        magic, opt, typ, length = struct.unpack(">QIII", self.recvn(20))
        data = self.recvn(length)
        r = {"magic-ok": magic == REPLY_MAGIC, "option": OPT_NAMES.get(opt, opt),
             "type": REP.get(typ, "0x%08x" % typ), "length": length}
        if typ == 2:                                   # NBD_REP_SERVER
            n = struct.unpack(">I", data[:4])[0]
            r["name"] = data[4:4 + n].decode()
            r["description"] = data[4 + n:].decode()
        elif typ == 3:                                 # NBD_REP_INFO
            it = struct.unpack(">H", data[:2])[0]
            r["info"] = INFO_NAMES.get(it, it)
            body = data[2:]
            if it == 0:
                size, fl = struct.unpack(">QH", body)
                r.update({"size": size, "transmission-flags": "0x%04x" % fl,
                          "transmission-flag-names": flag_names(fl, TX_FLAGS)})
            elif it in (1, 2):
                r["text"] = body.decode()
            elif it == 3:
                mn, pref, mx = struct.unpack(">III", body)
                r.update({"minimum": mn, "preferred": pref, "maximum": mx})
            else:
                r["data"] = body.hex()
        elif typ == 4:                                 # NBD_REP_META_CONTEXT
            r["context-id"] = struct.unpack(">I", data[:4])[0]
            r["context"] = data[4:].decode()
        elif typ & 0x80000000:
            r["message"] = data.decode(errors="replace")
        elif length:
            r["data"] = data.hex()
        return r

    def replies(self):
        """Replies until the final one (ACK, or an error, or the reply to
        NBD_OPT_INFO/GO's ACK)."""
        out = []
        while True:
            r = self.reply()
            out.append(r)
            if r["type"] != "NBD_REP_SERVER" and r["type"] != "NBD_REP_INFO" \
                    and r["type"] != "NBD_REP_META_CONTEXT":
                return out

    def exchange(self, optname, data=b"", request=None):
        self.send_opt(OPT[optname] if isinstance(optname, str) else optname, data)
        ex = {"option": optname}
        if request is not None:
            ex["request"] = request
        ex["replies"] = self.replies()
        return ex

    def info(self, optname, name, infos):
        n = name.encode()
        data = struct.pack(">I", len(n)) + n + struct.pack(">H", len(infos)) + \
            b"".join(struct.pack(">H", INFO[i]) for i in infos)
        return self.exchange(optname, data, {"name": name, "info-requests": infos})

    def meta(self, optname, name, queries):
        n = name.encode()
        data = struct.pack(">I", len(n)) + n + struct.pack(">I", len(queries)) + \
            b"".join(struct.pack(">I", len(x)) + x.encode() for x in queries)
        return self.exchange(optname, data, {"name": name, "queries": queries})

    def read_request(self, cookie, offset, length):
        """NBD_CMD_READ (simple request)."""
        self.s.sendall(struct.pack(">IHHQQI", 0x25609513, 0, 0, cookie, offset, length))

    def eof_within(self, timeout):
        """True when the server closed the connection within @timeout (any
        data still coming before the close is read and counted in
        self.bytes_before_eof)."""
        end = time.time() + timeout
        self.bytes_before_eof = 0
        while True:
            left = end - time.time()
            if left <= 0:
                return False
            self.s.settimeout(left)
            try:
                b = self.s.recv(65536)
            except socket.timeout:
                return False
            except OSError:
                return True
            if not b:
                return True
            self.bytes_before_eof += len(b)

    def close(self):
        self.s.close()


def go_client(path, name):
    """A client through to transmission on export @name; (client, what it saw)."""
    c = NbdClient(path=path)
    seen = {"greeting": c.greeting()}
    c.send_client_flags(3)
    seen["go"] = c.info("NBD_OPT_GO", name, ["NBD_INFO_BLOCK_SIZE"])
    return c, seen


def record_handshake(sock):
    c = NbdClient(path=sock)
    h = {"greeting": c.greeting()}
    h["client-flags"] = {"value": "0x%08x" % 3, "names": ["NBD_FLAG_C_FIXED_NEWSTYLE",
                                                         "NBD_FLAG_C_NO_ZEROES"]}
    c.send_client_flags(3)
    ex = [c.exchange("NBD_OPT_LIST")]
    for name in ("vda", "other", "third", "vdb", "byid", "ro-writable"):
        ex.append(c.info("NBD_OPT_INFO", name, ["NBD_INFO_BLOCK_SIZE"]))
    ex.append(c.info("NBD_OPT_INFO", "vda", []))
    ex.append(c.info("NBD_OPT_INFO", "other", ["NBD_INFO_NAME", "NBD_INFO_DESCRIPTION",
                                               "NBD_INFO_BLOCK_SIZE"]))
    ex.append(c.info("NBD_OPT_INFO", "nosuch", ["NBD_INFO_BLOCK_SIZE"]))
    ex.append(c.meta("NBD_OPT_LIST_META_CONTEXT", "vda", []))
    ex.append(c.exchange("NBD_OPT_STRUCTURED_REPLY"))
    ex.append(c.exchange("NBD_OPT_STRUCTURED_REPLY"))
    # transmission flags once structured replies are on
    ex.append(c.info("NBD_OPT_INFO", "vda", ["NBD_INFO_BLOCK_SIZE"]))
    ex.append(c.info("NBD_OPT_INFO", "third", ["NBD_INFO_BLOCK_SIZE"]))
    ex.append(c.meta("NBD_OPT_LIST_META_CONTEXT", "vda", []))
    ex.append(c.meta("NBD_OPT_LIST_META_CONTEXT", "other", ["qemu:"]))
    ex.append(c.exchange(99))
    ex.append(c.exchange("NBD_OPT_ABORT"))
    h["exchanges"] = ex
    h["closed-after-abort"] = c.eof_within(2)
    c.close()
    # NBD_OPT_GO through to transmission, on a fresh connection
    c, seen = go_client(sock, "third")
    h["go"] = seen["go"]
    c.close()
    # NBD_OPT_EXPORT_NAME, with and without NBD_FLAG_C_NO_ZEROES
    h["export-name"] = []
    for flags in (3, 1):
        c = NbdClient(path=sock)
        c.greeting()
        c.send_client_flags(flags)
        c.send_opt(OPT["NBD_OPT_EXPORT_NAME"], b"third")
        c.s.settimeout(1)
        got = b""
        try:
            while True:
                b = c.s.recv(4096)
                if not b:
                    break
                got += b
        except socket.timeout:
            pass
        size, fl = struct.unpack(">QH", got[:10])
        h["export-name"].append({
            "client-flags": "0x%08x" % flags, "name": "third", "reply-bytes": len(got),
            "size": size, "transmission-flags": "0x%04x" % fl,
            "transmission-flag-names": flag_names(fl, TX_FLAGS),
            "padding-all-zero": got[10:] == b"\0" * (len(got) - 10)})
        c.close()
    return h


def schema(q):
    """The NBD commands' arguments, expanded from query-qmp-schema."""
    entries = q.call("query-qmp-schema", {})["return"]
    by = {e["name"]: e for e in entries}

    def ex(t, brief_variants=False):
        e = by[t]
        mt = e["meta-type"]
        if mt == "builtin":
            return t
        if mt == "enum":
            return {"enum": e["values"]}
        if mt == "array":
            return {"array": ex(e["element-type"])}
        if mt == "alternate":
            return {"alternate": [ex(m["type"]) for m in e["members"]]}
        r = {"members": []}
        for m in e["members"]:
            mm = {"name": m["name"], "type": ex(m["type"])}
            if "default" in m:
                mm["optional"] = True
            if m.get("features"):
                mm["features"] = m["features"]
            r["members"].append(mm)
        if "tag" in e:
            r["tag"] = e["tag"]
            r["variants"] = {}
            for v in e["variants"]:
                if brief_variants and v["case"] != "nbd":
                    r["variants"][v["case"]] = {"member-names": [
                        m["name"] for m in by[v["type"]]["members"]]}
                else:
                    r["variants"][v["case"]] = ex(v["type"])
        return r

    out = {}
    for n in ("nbd-server-start", "nbd-server-add", "nbd-server-remove", "nbd-server-stop",
              "block-export-add", "block-export-del", "query-block-exports",
              "BLOCK_EXPORT_DELETED"):
        e = by[n]
        s = {"meta-type": e["meta-type"],
             "arguments": ex(e["arg-type"], brief_variants=(n == "block-export-add"))}
        if "ret-type" in e:
            s["returns"] = ex(e["ret-type"])
        if e.get("features"):
            s["features"] = e["features"]
        out[n] = s
    return out


def main():
    qemu = sys.argv[1] if len(sys.argv) > 1 else "qemu-system-x86_64"
    d = tempfile.mkdtemp(prefix="nbdgold.", dir="/tmp")
    p = None
    clients = []
    try:
        vda, vdb = os.path.join(d, "vda.img"), os.path.join(d, "vdb.qcow2")
        subprocess.run(["qemu-img", "create", "-q", "-f", "raw", vda, "64M"], check=True)
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", vdb, "32M"], check=True)
        subprocess.run(["qemu-img", "create", "-q", "-f", "raw", os.path.join(d, "ro.img"), "1M"],
                       check=True)
        qmp = os.path.join(d, "qmp")
        p = subprocess.Popen([qemu, "-M", "none", "-nodefaults", "-display", "none",
                              "-qmp", "unix:%s,server=on,wait=off" % qmp,
                              "-blockdev", "driver=file,filename=%s,node-name=vda-file" % vda,
                              "-blockdev", "driver=raw,file=vda-file,node-name=vda",
                              "-blockdev", "driver=file,filename=%s,node-name=vdb-file" % vdb,
                              "-blockdev", "driver=qcow2,file=vdb-file,node-name=vdb"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        q = StepQmp(qmp)
        r = Recorder(q, d)
        sock = os.path.join(d, "nbd.sock")
        out = {"qemu": q.call("query-version", {})["return"]["qemu"],
               "setup": {"blockdev": ["driver=file,filename=@DIR@/vda.img,node-name=vda-file",
                                      "driver=raw,file=vda-file,node-name=vda",
                                      "driver=file,filename=@DIR@/vdb.qcow2,node-name=vdb-file",
                                      "driver=qcow2,file=vdb-file,node-name=vdb"],
                         "images": {"vda": "raw, 64 MiB", "vdb": "qcow2, 32 MiB"}},
               "placeholders": {"@DIR@": "the temporary directory",
                                "@NAME4097@": "4097 times \"x\"",
                                "@PORT@": "a tcp port on 127.0.0.1, free just before"}}
        out["schema"] = schema(q)

        # --- nothing running ---
        r.step("query-block-exports")
        r.step("nbd-server-add", {"device": "vda"})
        r.step("nbd-server-remove", {"name": "vda"})
        r.step("nbd-server-stop")
        r.step("block-export-add", {"type": "nbd", "id": "e0", "node-name": "vda"})
        r.step("block-export-del", {"id": "e0"})

        # --- nbd-server-start ---
        r.step("nbd-server-start", {"addr": {"type": "bogus", "data": {"path": "@DIR@/x.sock"}}})
        r.step("nbd-server-start", {"addr": {"type": "unix"}})
        r.step("nbd-server-start", {"addr": {"type": "unix", "data": {}}})
        r.step("nbd-server-start", {})
        r.step("nbd-server-start", {"addr": {"type": "unix", "data": {"path": "@DIR@/x.sock"}},
                                    "bogus": 1})
        r.step("nbd-server-start", {"addr": {"type": "unix",
                                             "data": {"path": "@DIR@/nodir/nbd.sock"}}})
        r.step("nbd-server-start", {"addr": SOCK, "max-connections": -1})
        r.step("nbd-server-start", {"addr": SOCK, "tls-creds": "nosuch"})
        r.step("query-block-exports")
        s = r.step("nbd-server-start", {"addr": SOCK})
        s["socket-exists-after"] = os.path.exists(sock)
        r.step("nbd-server-start", {"addr": SOCK})
        r.step("nbd-server-start", {"addr": {"type": "unix",
                                             "data": {"path": "@DIR@/nbd2.sock"}}})

        # --- nbd-server-add ---
        r.step("nbd-server-add", {"device": "vda"})
        r.step("nbd-server-add", {"device": "vda"})
        r.step("nbd-server-add", {"device": "nosuch"})
        r.step("nbd-server-add", {"device": "vda-file", "name": "vda"})
        r.step("nbd-server-add", {"device": "vdb", "name": "other", "writable": True,
                                  "description": "second disk"})
        r.step("nbd-server-add", {"device": "vda", "name": "@NAME4097@"})
        r.step("nbd-server-add", {"device": "vda", "name": "long-desc",
                                  "description": "@NAME4097@"})
        r.step("nbd-server-add", {"device": "vda", "name": "x", "bitmap": "b0"})
        r.step("nbd-server-add", {"name": "x"})
        r.step("query-block-exports")

        # --- block-export-add ---
        r.step("block-export-add", {"type": "nbd", "id": "e1", "node-name": "vda",
                                    "name": "third", "writable": True})
        r.step("block-export-add", {"type": "nbd", "id": "e1", "node-name": "vdb",
                                    "name": "fourth"})
        r.step("block-export-add", {"type": "nbd", "id": "vda", "node-name": "vdb",
                                    "name": "fourth"})
        r.step("block-export-add", {"type": "nbd", "id": "e2", "node-name": "vdb",
                                    "name": "third"})
        r.step("block-export-add", {"type": "nbd", "id": "e2", "node-name": "nosuch"})
        r.step("block-export-add", {"type": "nbd", "id": "e2", "node-name": "vdb",
                                    "bitmaps": ["b0"]})
        r.step("block-export-add", {"type": "nbd", "id": "e2", "node-name": "vdb",
                                    "name": "@NAME4097@"})
        r.step("block-export-add", {"type": "vhost-user-blk", "id": "e2", "node-name": "vdb"})
        r.step("block-export-add", {"type": "fuse", "id": "e2", "node-name": "vdb"})
        r.step("block-export-add", {"type": "fuse", "id": "e2", "node-name": "vdb",
                                    "mountpoint": "@DIR@/nosuch-mountpoint"})
        r.step("block-export-add", {"type": "bogus", "id": "e2", "node-name": "vdb"})
        r.step("block-export-add", {"type": "nbd", "node-name": "vdb"})
        r.step("block-export-add", {"type": "nbd", "id": "e2"})
        r.step("block-export-add", {"type": "nbd", "id": "", "node-name": "vdb"})
        r.step("blockdev-add", {"driver": "raw", "node-name": "vda-ro", "read-only": True,
                                "file": {"driver": "file", "filename": "@DIR@/ro.img",
                                         "read-only": True}})
        r.step("block-export-add", {"type": "nbd", "id": "e2", "node-name": "vda-ro",
                                    "writable": True, "name": "ro-writable"})
        r.step("nbd-server-add", {"device": "vda-ro", "name": "ro-writable",
                                  "writable": True})
        # no name: which name does the export get?
        r.step("block-export-add", {"type": "nbd", "id": "e2", "node-name": "vdb"})
        r.step("block-export-add", {"type": "nbd", "id": "e3", "node-name": "vdb",
                                    "name": "byid", "description": "", "writable": False})
        r.step("query-block-exports")

        # --- the NBD negotiation, with vda, other, third, vdb, byid, ro-writable ---
        out["handshake"] = record_handshake(sock)

        # --- nbd-server-remove ---
        r.step("nbd-server-remove", {"name": "nosuch"})
        r.step("nbd-server-remove", {"name": "third"})
        r.step("nbd-server-remove", {"name": "byid"})
        r.step("nbd-server-remove", {"name": "e3"}, want="BLOCK_EXPORT_DELETED")
        r.step("nbd-server-remove", {"name": "vda"}, want="BLOCK_EXPORT_DELETED")
        r.step("nbd-server-remove", {"name": "vda"})
        r.step("nbd-server-remove", {"name": "other", "mode": "hard"},
               want="BLOCK_EXPORT_DELETED")
        r.step("nbd-server-remove", {"name": "e2", "mode": "bogus"})
        r.step("nbd-server-remove", {})
        r.step("blockdev-del", {"node-name": "vda-ro"})
        r.step("nbd-server-remove", {"name": "ro-writable"}, want="BLOCK_EXPORT_DELETED")
        r.step("blockdev-del", {"node-name": "vda-ro"})
        r.step("query-block-exports")

        # --- block-export-del ---
        r.step("block-export-del", {"id": "nosuch"})
        r.step("block-export-del", {"id": "e1", "mode": "bogus"})
        r.step("block-export-del", {})
        r.pipelined([("block-export-del", {"id": "e1"}),
                     ("block-export-del", {"id": "e1"}),
                     ("query-block-exports", {})], want="BLOCK_EXPORT_DELETED",
                    note="the three commands sent together")
        r.step("block-export-del", {"id": "e1"})
        r.step("query-block-exports")

        # --- with a client connected ---
        r.step("block-export-add", {"type": "nbd", "id": "busy", "node-name": "vda",
                                    "name": "busy"})
        c1, seen1 = go_client(sock, "busy")
        clients.append(c1)
        s = r.step("block-export-del", {"id": "busy"},
                   note="a raw NBD client went through NBD_OPT_GO on export busy and idles")
        s["client"] = {"go": seen1["go"]}
        r.step("nbd-server-remove", {"name": "busy"})
        r.step("block-export-del", {"id": "busy", "mode": "safe"})
        r.step("query-block-exports")
        steps = r.pipelined([("block-export-del", {"id": "busy", "mode": "hard"}),
                             ("block-export-del", {"id": "busy", "mode": "hard"}),
                             ("query-block-exports", {})], want="BLOCK_EXPORT_DELETED",
                            note="the three commands sent together, the client still "
                                 "connected")
        steps[0]["client"] = {"closed-within-2s": c1.eof_within(2)}
        r.step("query-block-exports")

        # the same through nbd-server-add / nbd-server-remove
        r.step("nbd-server-add", {"device": "vdb", "name": "busy2"})
        c2, seen2 = go_client(sock, "busy2")
        clients.append(c2)
        s = r.step("nbd-server-remove", {"name": "busy2"},
                   note="a raw NBD client went through NBD_OPT_GO on export busy2 and idles")
        s["client"] = {"go": seen2["go"]}
        r.step("nbd-server-remove", {"name": "busy2", "mode": "safe"})
        s = r.step("nbd-server-remove", {"name": "busy2", "mode": "hard"},
                   want="BLOCK_EXPORT_DELETED")
        s["client"] = {"closed-within-2s": c2.eof_within(2)}
        r.step("query-block-exports")

        # --- shutting down: a client with reads held back by a throttle node ---
        r.step("object-add", {"qom-type": "throttle-group", "id": "tg0",
                              "limits": {"iops-read": 1}})
        r.step("blockdev-add", {"driver": "throttle", "node-name": "vda-slow",
                                "throttle-group": "tg0", "file": "vda"})
        r.step("block-export-add", {"type": "nbd", "id": "slow", "node-name": "vda-slow",
                                    "name": "slow"})
        c4, seen4 = go_client(sock, "slow")
        clients.append(c4)
        for cookie in range(1, 5):
            c4.read_request(cookie, 0, 4096)
        time.sleep(0.2)
        steps = r.pipelined([("block-export-del", {"id": "slow", "mode": "hard"}),
                             ("block-export-del", {"id": "slow", "mode": "hard"}),
                             ("block-export-del", {"id": "slow"}),
                             ("nbd-server-remove", {"name": "slow", "mode": "hard"}),
                             ("query-block-exports", {}),
                             ("block-export-add", {"type": "nbd", "id": "slow",
                                                   "node-name": "vda", "name": "slow2"}),
                             ("block-export-add", {"type": "nbd", "id": "slow2",
                                                   "node-name": "vda", "name": "slow"})],
                            want="BLOCK_EXPORT_DELETED", timeout=15,
                            note="sent together; a client on export slow (a throttle node, "
                                 "iops-read 1) has 4 reads of 4096 bytes in flight")
        steps[0]["client"] = {"go": seen4["go"], "closed-within-2s": c4.eof_within(2),
                              "bytes-before-close": c4.bytes_before_eof}
        r.step("query-block-exports")
        r.step("block-export-del", {"id": "slow2"}, want="BLOCK_EXPORT_DELETED")
        r.step("blockdev-del", {"node-name": "vda-slow"})
        r.step("object-del", {"id": "tg0"})

        # --- nbd-server-stop with exports (one with a client) still there ---
        r.step("nbd-server-add", {"device": "vda"})
        r.step("block-export-add", {"type": "nbd", "id": "e5", "node-name": "vdb",
                                    "name": "five"})
        c3, _ = go_client(sock, "five")
        clients.append(c3)
        r.step("query-block-exports")
        s = r.step("nbd-server-stop", want="BLOCK_EXPORT_DELETED",
                   note="a raw NBD client is connected to export five")
        # the second BLOCK_EXPORT_DELETED may trail
        q.drain(quiet=1.0)
        s["events"] += r.unsubst(q.take())
        s["client"] = {"closed-within-2s": c3.eof_within(2)}
        s["socket-exists-after"] = os.path.exists(sock)
        r.step("query-block-exports")
        r.step("nbd-server-stop")
        r.step("block-export-add", {"type": "nbd", "id": "e6", "node-name": "vda"})

        # --- tcp ---
        r.step("nbd-server-start", {"addr": {"type": "inet",
                                             "data": {"host": "127.0.0.1", "port": "x"}}})
        r.step("nbd-server-start", {"addr": {"type": "inet",
                                             "data": {"host": "127.0.0.1", "port": 10809}}})
        r.step("nbd-server-start", {"addr": {"type": "inet",
                                             "data": {"host": "127.0.0.1", "port": "0"}}})
        r.step("nbd-server-stop")
        # a port of our own, free just before
        t = socket.socket()
        t.bind(("127.0.0.1", 0))
        port = t.getsockname()[1]
        t.close()
        r.port = str(port)
        r.step("nbd-server-start", {"addr": {"type": "inet", "data": {
            "host": "127.0.0.1", "port": "@PORT@"}}, "max-connections": 1},
            note="@PORT@: a free tcp port")
        r.step("nbd-server-add", {"device": "vda"})
        a = NbdClient(inet=("127.0.0.1", port))
        clients.append(a)
        mc = {"first-greeting": a.greeting()}
        b = NbdClient(inet=("127.0.0.1", port), timeout=1)
        clients.append(b)
        try:
            mc["second-greeting-within-1s"] = b.greeting()
        except (socket.timeout, EOFError, OSError) as e:
            mc["second-greeting-within-1s"] = None
            mc["second-error"] = type(e).__name__
        a.close()
        if mc["second-greeting-within-1s"] is None:
            b.s.settimeout(3)
            try:
                mc["second-greeting-after-first-closed"] = b.greeting()
            except (socket.timeout, EOFError, OSError) as e:
                mc["second-greeting-after-first-closed"] = None
                mc["second-error-after"] = type(e).__name__
        b.close()
        out["max-connections"] = mc
        r.step("nbd-server-stop", want="BLOCK_EXPORT_DELETED")
        r.step("query-block-exports")

        # --- iothreads (last: they move vdb out of the main loop) ---
        r.step("nbd-server-start", {"addr": SOCK})
        r.step("block-export-add", {"type": "nbd", "id": "e7", "node-name": "vdb",
                                    "iothread": "nosuch"})
        r.step("object-add", {"qom-type": "iothread", "id": "io0"})
        r.step("block-export-add", {"type": "nbd", "id": "e7", "node-name": "vdb",
                                    "name": "io", "iothread": "io0"})
        r.step("block-export-add", {"type": "nbd", "id": "e8", "node-name": "vdb",
                                    "name": "iofixed", "iothread": "io0",
                                    "fixed-iothread": True})
        r.step("query-block-exports")
        r.step("block-export-del", {"id": "e7"}, want="BLOCK_EXPORT_DELETED")
        r.step("block-export-del", {"id": "e8"}, want="BLOCK_EXPORT_DELETED")
        r.step("nbd-server-stop")
        out["steps"] = r.steps
    finally:
        for c in clients:
            try:
                c.close()
            except OSError:
                pass
        if p:
            p.kill()
            p.wait()
        shutil.rmtree(d, ignore_errors=True)
    golden_migration.write_golden(OUT, out)


if __name__ == "__main__":
    main()
