#!/usr/bin/env python3
"""Record QEMU 7.2's internal block snapshot commands as a golden trace
(tests/functional/golden/blockdev-snapshot-internal.json) for vmmd's
blockdev-snapshot-internal-sync and blockdev-snapshot-delete-internal-sync,
their use as transaction actions, and the HMP commands
snapshot_blkdev_internal and snapshot_delete_blkdev_internal through
human-monitor-command.

qemu-system-x86_64 -M none (no guest) with three disks given as -drive
(so that they are named by id, as vmmd's disks are):
vda, a 16 MiB qcow2 image with some data written by qemu-io first; vdb, a
1 MiB raw image; vdc, a 1 MiB qcow2 image opened readonly=on. Each step is
written as

  {"cmd": {"execute": ..., "arguments": ...}, "reply": ...,
   "events": [{"event": ..., "data": ...}, ...]}

where "events" are the events that arrived after the command was sent and
before the next one (timestamps removed); "events-before-reply" counts how
many of them came before the reply (only written when not 0). A step may
carry "note" (what the recorder wants the reader to know) and
"vda-snapshots" (the [id, name] pairs query-block's inserted.image.snapshots
shows for vda right after it, for steps that change them or query-block
itself).

The steps, in order: blockdev-snapshot-internal-sync (ok, a duplicate name,
an empty name, an unknown device, the raw disk, the read-only disk, a name
that looks like an id, a name of 200 characters, missing arguments);
query-block; blockdev-snapshot-delete-internal-sync (by name, not found,
neither id nor name, by id, id and name that do not match, the raw disk,
the read-only disk, an unknown device); transaction with
blockdev-snapshot-internal-sync actions (one ok, then a second action that
fails after a first that succeeded, on the same disk and on another disk:
is the first rolled back?); human-monitor-command with
snapshot_blkdev_internal, snapshot_delete_blkdev_internal and
info snapshots.

Besides "steps":
- "schema": the arguments of blockdev-snapshot-internal-sync,
  blockdev-snapshot-delete-internal-sync (and its return type), of
  transaction, and the TransactionAction variant names, expanded from
  query-qmp-schema;
- "facts": what the recorder checked on the raw values it then replaced
  with placeholders (vm-clock zero or not, date-sec the wall clock);
- "qemu-img-snapshot-list": the lines of `qemu-img snapshot -l
  @DIR@/vda.qcow2` after QEMU quit, date and clock columns replaced.

Placeholders: @DIR@ is the temporary directory (sockets, images);
@NAME200@ is a string of 200 "n", both in commands and in replies. Values
that change from run to run are replaced in replies: date-sec by
"@DATE-SEC@", date-nsec by "@DATE-NSEC@", vm-clock-sec by
"@VM-CLOCK-SEC@", vm-clock-nsec by "@VM-CLOCK-NSEC@", actual-size (file
system dependent) by "@ACTUAL-SIZE@"; in HMP and qemu-img text, a date
"YYYY-MM-DD HH:MM:SS" by "@DATE@" and a VM clock "HH:MM:SS.mmm" by
"@VM-CLOCK@" (the columns keep their other spaces).

The temporary directory is made under /tmp and removed at the end; the
qemu process is killed whatever happens.

Usage: tests/functional/make-golden-blockdev-snapshot-internal.py [QEMU]"""

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("golden_migration",
                                               os.path.join(HERE, "make-golden-migration.py"))
golden_migration = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(golden_migration)
_spec = importlib.util.spec_from_file_location("golden_nbd",
                                               os.path.join(HERE, "make-golden-nbd-server.py"))
golden_nbd = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(golden_nbd)
StepQmp = golden_nbd.StepQmp

OUT = os.path.join(HERE, "golden", "blockdev-snapshot-internal.json")
NAME200 = "n" * 200
VOLATILE = {"date-sec": "@DATE-SEC@", "date-nsec": "@DATE-NSEC@",
            "vm-clock-sec": "@VM-CLOCK-SEC@", "vm-clock-nsec": "@VM-CLOCK-NSEC@",
            "actual-size": "@ACTUAL-SIZE@"}
DATE_RE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")
AUTO_NODE_RE = re.compile(r"#block\d+")
CLOCK_RE = re.compile(r"\b\d{2,}:\d\d:\d\d\.\d{3}\b")
QEMU_IO = [("vda.qcow2", "write -P 0xa5 0 64k"), ("vda.qcow2", "write -P 0x5a 1M 128k"),
           ("vda.qcow2", "write -z 4M 64k"), ("vdc.qcow2", "write -P 0x11 0 4k")]


def mask_text(t):
    return CLOCK_RE.sub("@VM-CLOCK@", DATE_RE.sub("@DATE@", t))


class Recorder:
    def __init__(self, q, d):
        self.q, self.d, self.steps = q, d, []
        self.start = int(time.time())
        self.infos = []             # every SnapshotInfo seen, unmasked
        self.node = None            # vda's automatic node name, once known
        self.key_orders = []        # distinct member orders of SnapshotInfo

    def subst(self, v):
        t = json.dumps(v).replace("@DIR@", self.d).replace("@NAME200@", NAME200)
        if self.node:
            t = t.replace("@NODE@", self.node)
        return json.loads(t)

    def plain(self, v):
        t = json.dumps(v).replace(NAME200, "@NAME200@").replace(self.d, "@DIR@")
        t = AUTO_NODE_RE.sub(lambda m: "@NODE@" if m.group(0) == self.node else "@AUTO-NODE@",
                             t)
        return json.loads(t)

    def collect(self, v):
        if isinstance(v, dict):
            if "date-sec" in v and "vm-clock-sec" in v:
                self.infos.append(dict(v))
            for x in v.values():
                self.collect(x)
        elif isinstance(v, list):
            for x in v:
                self.collect(x)

    def orders(self, v):
        """The member order of each SnapshotInfo as QEMU sent it (the golden
        file itself is written with sorted keys)."""
        if isinstance(v, dict):
            if "date-sec" in v and "vm-clock-sec" in v:
                o = list(v.keys())
                if o not in self.key_orders:
                    self.key_orders.append(o)
            for x in v.values():
                self.orders(x)
        elif isinstance(v, list):
            for x in v:
                self.orders(x)

    def mask(self, v):
        if isinstance(v, dict):
            return {k: (VOLATILE[k] if k in VOLATILE and isinstance(x, int) else self.mask(x))
                    for k, x in v.items()}
        if isinstance(v, list):
            return [self.mask(x) for x in v]
        if isinstance(v, str):
            return mask_text(v)
        return v

    def unsubst(self, v):
        self.collect(v)
        self.orders(v)
        return self.plain(self.mask(v))

    def step(self, name, args=None, note=None, raw=False):
        """Send one command; record its answer and the events until the
        next one. With @raw, @args is sent as is (no "arguments" when None)."""
        if raw:
            msg = {"execute": name}
            if args is not None:
                msg["arguments"] = args
            self.q.s.sendall(json.dumps(self.subst(msg)).encode() + b"\n")
        else:
            args = args or {}
            self.q.send(name, self.subst(args))
        m = self.q.reply()
        before = len(self.q.pending)
        self.q.drain()
        cmd = {"execute": name}
        if not raw or args is not None:
            cmd["arguments"] = args
        s = {"cmd": cmd, "reply": self.unsubst(m), "events": self.unsubst(self.q.take())}
        if before:
            s["events-before-reply"] = before
        if note:
            s["note"] = note
        self.steps.append(s)
        return s

    def vda_snapshots(self):
        """[id, name] of vda's snapshots, from query-block (not recorded)."""
        for b in self.q.call("query-block", {})["return"]:
            if b["device"] == "vda":
                return [[x["id"], self.plain(x["name"])]
                        for x in b["inserted"]["image"].get("snapshots", [])]
        raise RuntimeError("no vda")

    def changed(self, name, args=None, note=None):
        """A step that may change vda's snapshots; the list after it too."""
        s = self.step(name, args, note)
        s["vda-snapshots"] = self.vda_snapshots()
        return s

    def hmp(self, line, note=None):
        s = self.step("human-monitor-command", {"command-line": line}, note)
        s["vda-snapshots"] = self.vda_snapshots()
        return s


def schema(q):
    """The commands' arguments, expanded from query-qmp-schema."""
    entries = q.call("query-qmp-schema", {})["return"]
    by = {e["name"]: e for e in entries}

    def ex(t):
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
            r["variants"] = {v["case"]: ex(v["type"]) for v in e["variants"]}
        return r

    out = {}
    for n in ("blockdev-snapshot-internal-sync", "blockdev-snapshot-delete-internal-sync"):
        e = by[n]
        s = {"meta-type": e["meta-type"], "arguments": ex(e["arg-type"])}
        if "ret-type" in e:
            s["returns"] = ex(e["ret-type"])
        if e.get("features"):
            s["features"] = e["features"]
        out[n] = s
    # transaction: its own members, with actions' element type described by
    # its tag, variant names and the one variant used here
    tr = by["transaction"]
    targs = by[tr["arg-type"]]
    members = []
    for m in targs["members"]:
        mm = {"name": m["name"]}
        if "default" in m:
            mm["optional"] = True
        t = by[m["type"]]
        if t["meta-type"] == "array":
            el = by[t["element-type"]]
            mm["type"] = {"array": {"members": [x["name"] for x in el["members"]],
                                    "tag": el.get("tag")}}
        else:
            mm["type"] = ex(m["type"])
        members.append(mm)
    out["transaction"] = {"meta-type": tr["meta-type"], "arguments": {"members": members},
                          "returns": ex(tr["ret-type"])}
    action = by[by[[m for m in targs["members"] if m["name"] == "actions"][0]["type"]]
                ["element-type"]]
    out["TransactionAction"] = {
        "tag": action["tag"],
        "variant-names": [v["case"] for v in action["variants"]],
        "tag-enum": ex([m for m in action["members"] if m["name"] == action["tag"]][0]["type"]),
        "blockdev-snapshot-internal-sync": ex(
            [v for v in action["variants"] if v["case"] == "blockdev-snapshot-internal-sync"]
            [0]["type"])}
    return out


def main():
    qemu = sys.argv[1] if len(sys.argv) > 1 else "qemu-system-x86_64"
    d = tempfile.mkdtemp(prefix="snapgold.", dir="/tmp")
    p = None
    try:
        vda, vdb, vdc = (os.path.join(d, n) for n in ("vda.qcow2", "vdb.raw", "vdc.qcow2"))
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", vda, "16M"], check=True)
        subprocess.run(["qemu-img", "create", "-q", "-f", "raw", vdb, "1M"], check=True)
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", vdc, "1M"], check=True)
        for img, c in QEMU_IO:
            subprocess.run(["qemu-io", "-f", "qcow2", "-c", c, os.path.join(d, img)],
                           check=True, stdout=subprocess.DEVNULL)
        # a snapshot QEMU cannot make on the read-only vdc itself
        subprocess.run(["qemu-img", "snapshot", "-c", "ro1", vdc], check=True)
        qmp = os.path.join(d, "qmp")
        drives = ["if=none,id=vda,file=@DIR@/vda.qcow2,format=qcow2",
                  "if=none,id=vdb,file=@DIR@/vdb.raw,format=raw",
                  "if=none,id=vdc,file=@DIR@/vdc.qcow2,format=qcow2,readonly=on"]
        argv = [qemu, "-M", "none", "-nodefaults", "-display", "none",
                "-qmp", "unix:%s,server=on,wait=off" % qmp]
        for dr in drives:
            argv += ["-drive", dr.replace("@DIR@", d)]
        started = time.time()
        p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        q = StepQmp(qmp)
        r = Recorder(q, d)
        out = {"qemu": q.call("query-version", {})["return"]["qemu"],
               "setup": {"argv": ["qemu-system-x86_64", "-M", "none", "-nodefaults",
                                  "-display", "none", "-qmp",
                                  "unix:@DIR@/qmp,server=on,wait=off"]
                         + [x for dr in drives for x in ("-drive", dr)],
                         "images": {"vda": "qcow2, 16 MiB", "vdb": "raw, 1 MiB",
                                    "vdc": "qcow2, 1 MiB, opened readonly=on"},
                         "qemu-io": [{"image": "@DIR@/" + i, "command": c}
                                     for i, c in QEMU_IO],
                         "qemu-img": ["qemu-img snapshot -c ro1 @DIR@/vdc.qcow2"]},
               "placeholders": {"@DIR@": "the temporary directory",
                                "@NAME200@": "200 times \"n\"",
                                "@AUTO-NODE@": "another automatic node name (#blockN, "
                                               "random digits)",
                                "@DATE-SEC@": "date-sec (wall clock, seconds)",
                                "@DATE-NSEC@": "date-nsec",
                                "@VM-CLOCK-SEC@": "vm-clock-sec",
                                "@VM-CLOCK-NSEC@": "vm-clock-nsec",
                                "@ACTUAL-SIZE@": "actual-size of an image file",
                                "@DATE@": "a date YYYY-MM-DD HH:MM:SS in text",
                                "@VM-CLOCK@": "a VM clock HH:MM:SS.mmm in text"}}
        out["schema"] = schema(q)
        out["query-status"] = q.call("query-status", {})["return"]

        # --- blockdev-snapshot-internal-sync ---
        S = "blockdev-snapshot-internal-sync"
        D = "blockdev-snapshot-delete-internal-sync"
        r.changed(S, {"device": "vda", "name": "s1"})
        r.changed(S, {"device": "vda", "name": "s1"})
        r.changed(S, {"device": "vda", "name": ""})
        r.step(S, {"device": "nosuch", "name": "x"})
        r.step(S, {"device": "vdb", "name": "x"})
        r.step(S, {"device": "vdc", "name": "x"})
        r.changed(S, {"device": "vda", "name": "1"},
                  note="a name equal to the id of snapshot s1")
        r.changed(S, {"device": "vda", "name": "2"},
                  note="a name equal to the id the next snapshot would get")
        r.changed(S, {"device": "vda", "name": "@NAME200@"})
        r.step(S, {"device": "vda"})
        r.step(S, {"name": "x"})
        r.step(S, {"device": "vda", "name": "x", "bogus": 1})
        r.step(S, {"device": "vda", "name": 1})
        r.step(S, None, raw=True, note="no \"arguments\" member at all")
        r.step(S, {"device": "vda-file", "name": "x"},
               note="no node is called vda-file: -drive names nodes automatically")
        nodes = q.call("query-named-block-nodes", {})["return"]
        vda_node = [n["node-name"] for n in nodes if n.get("file") and
                    n["file"].endswith("/vda.qcow2") and n["drv"] == "qcow2"][0]
        r.node = vda_node
        out["placeholders"]["@NODE@"] = ("the automatic node name of vda's qcow2 node "
                                         "(here %s)" % re.sub(r"\d+", "N", vda_node))
        r.changed(S, {"device": "@NODE@", "name": "bynode"},
                  note="a node name instead of a device name")

        # --- query-block ---
        s = r.step("query-block")
        s["vda-snapshots"] = r.vda_snapshots()
        r.step("human-monitor-command", {"command-line": "info snapshots"},
               note="HMP info snapshots with -M none; vda has 5 snapshots, the read-only "
                    "vdc has ro1 (made by qemu-img), raw vdb none")

        # --- blockdev-snapshot-delete-internal-sync ---
        r.changed(D, {"device": "vda", "name": "s1"})
        r.changed(D, {"device": "vda", "name": "s1"})
        r.changed(D, {"device": "vda"})
        r.changed(S, {"device": "vda", "name": "s2"},
                  note="a new snapshot after s1 (id 1) was deleted")
        r.changed(D, {"device": "vda", "id": "1"})
        r.changed(D, {"device": "vda", "id": "X", "name": "Y"})
        r.changed(D, {"device": "vda", "id": "3", "name": "1"},
                  note="both exist, on different snapshots")
        r.changed(D, {"device": "vda", "id": "2", "name": "1"},
                  note="id and name of the same snapshot")
        r.changed(D, {"device": "vda", "id": "3"})
        r.changed(D, {"device": "vda", "name": "@NAME200@"})
        r.changed(D, {"device": "vda", "name": "s2"})
        r.changed(D, {"device": "vda", "name": "bynode"})
        r.step(D, {"device": "vdb", "name": "x"})
        r.step(D, {"device": "vdc", "name": "x"})
        s = r.step(D, {"device": "vdc", "name": "ro1"},
                   note="ro1 exists on the read-only vdc (made by qemu-img before)")
        s["vdc-snapshots"] = [x["name"] for b in q.call("query-block", {})["return"]
                              if b["device"] == "vdc"
                              for x in b["inserted"]["image"].get("snapshots", [])]
        r.step(D, {"device": "nosuch", "name": "x"})
        r.step(D, {"device": "vdb"})
        r.step(D, {"device": "nosuch"})
        r.step(D, {"name": "x"})
        r.changed(D, {"device": "vda", "id": ""})
        r.changed(D, {"device": "vda", "name": ""})
        r.changed(D, {"device": "vda", "id": "", "name": ""})

        # --- transaction ---
        def act(dev, name):
            return {"type": S, "data": {"device": dev, "name": name}}

        T = "transaction"
        r.changed(T, {"actions": [act("vda", "t1")]},
                  note="vda has no snapshot left before it")
        r.changed(T, {"actions": [act("vda", "t2"), act("vda", "t1")]},
                  note="the second action fails (t1 exists): is t2 rolled back?")
        r.changed(T, {"actions": [act("vda", "t3"), act("vda", "t3")]},
                  note="the same name twice in one transaction")
        r.changed(T, {"actions": [act("vda", "t4"), act("vdb", "t4")]},
                  note="the second action fails on the raw disk: is vda's t4 rolled back?")
        r.changed(T, {"actions": [act("vda", "t5"), act("vda", "t6")]})
        r.changed(T, {"actions": []})
        r.changed(T, {"actions": [act("vda", "t7")],
                      "properties": {"completion-mode": "grouped"}})
        r.changed(T, {"actions": [{"type": D, "data": {"device": "vda", "name": "t1"}}]},
                  note="the delete command is not a transaction action")
        r.step("human-monitor-command", {"command-line": "info snapshots"})

        # --- HMP ---
        r.hmp("snapshot_blkdev_internal vda h1")
        r.hmp("snapshot_blkdev_internal vda h1")
        r.hmp("snapshot_blkdev_internal vdb h2")
        r.hmp("snapshot_blkdev_internal nosuch h3")
        r.hmp("snapshot_blkdev_internal vdc h4")
        r.hmp("snapshot_blkdev_internal vda \"\"")
        r.hmp("snapshot_blkdev_internal vda")
        r.hmp("snapshot_blkdev_internal")
        r.hmp("info snapshots")
        r.hmp("snapshot_delete_blkdev_internal vda h1")
        r.hmp("snapshot_delete_blkdev_internal vda h1")
        r.hmp("snapshot_delete_blkdev_internal vda nosuch 7")
        r.hmp("snapshot_delete_blkdev_internal vda t1 1",
              note="name and id of the same snapshot")
        r.hmp("snapshot_delete_blkdev_internal vdb x")
        r.hmp("snapshot_delete_blkdev_internal vdc ro1",
              note="the failed QMP delete of ro1 on vdc above had dropped it from QEMU's "
                   "in-memory list (see vdc-snapshots there)")
        r.hmp("snapshot_delete_blkdev_internal vda")
        r.hmp("info snapshots")
        out["steps"] = r.steps

        # --- facts about the replaced values (snapshots this QEMU made;
        # ro1 on vdc was made by qemu-img) ---
        now = time.time()
        mine = [x for x in r.infos if x["name"] != "ro1"]
        ro1 = [x for x in r.infos if x["name"] == "ro1"]

        def clock(x):
            return x["vm-clock-sec"] + x["vm-clock-nsec"] / 1e9

        def date(x):
            return x["date-sec"] + x["date-nsec"] / 1e9

        by_date = sorted({(date(x), clock(x)) for x in mine})
        out["facts"] = {
            "snapshot-infos-seen": len(r.infos),
            "vm-clock-all-zero": all(clock(x) == 0 for x in mine),
            "vm-clock-sec-all-zero": all(x["vm-clock-sec"] == 0 for x in mine),
            "vm-clock-within-1s-of-qemu-uptime": all(
                abs(date(x) - started - clock(x)) < 1.0 for x in mine),
            "vm-clock-nondecreasing-with-date": all(
                a[1] <= b[1] for a, b in zip(by_date, by_date[1:])),
            "date-sec-is-wall-clock": all(int(started) - 1 <= x["date-sec"] <= now + 1
                                          for x in mine),
            "date-nsec-in-range": all(0 <= x["date-nsec"] < 10 ** 9 for x in mine),
            "date-nsec-all-zero": all(x["date-nsec"] == 0 for x in mine),
            "vm-state-size-values": sorted({x["vm-state-size"] for x in mine}),
            "icount-present": any("icount" in x for x in mine),
            "qemu-img-ro1-icount": [x.get("icount") for x in ro1],
            "qemu-img-ro1-vm-clock-zero": all(clock(x) == 0 for x in ro1)}
        out["snapshot-info-key-orders"] = r.key_orders

        q.send("quit", {})
        q.reply()
        p.wait(timeout=30)
        p = None
        for key, img in (("qemu-img-snapshot-list", "vda.qcow2"),
                         ("qemu-img-snapshot-list-vdc", "vdc.qcow2")):
            lst = subprocess.run(["qemu-img", "snapshot", "-l", os.path.join(d, img)],
                                 capture_output=True, text=True)
            out[key] = {
                "command": "qemu-img snapshot -l @DIR@/" + img, "exit": lst.returncode,
                "stdout": [mask_text(x) for x in lst.stdout.replace(d, "@DIR@").splitlines()],
                "stderr": [x for x in lst.stderr.replace(d, "@DIR@").splitlines()]}
    finally:
        if p:
            p.kill()
            p.wait()
        shutil.rmtree(d, ignore_errors=True)
    golden_migration.write_golden(OUT, out)


if __name__ == "__main__":
    main()
