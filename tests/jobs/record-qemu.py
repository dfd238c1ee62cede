#!/usr/bin/env python3
"""Record the golden traces: run every scenario of scenarios.json against
QEMU 7.2 (qemu-system-x86_64 -machine none, one -drive if=none per disk,
or one -blockdev with the disk's id as node name when the scenario says
"blockdev": true, QMP on a UNIX socket) and write golden/NAME.json. Run it by hand after
changing scenarios.json; the output is committed.

    tests/jobs/record-qemu.py [NAME...]
"""

import json
import os
import subprocess
import sys
import tempfile
import time

import qmptrace


def record(name, sc):
    procs = []
    with tempfile.TemporaryDirectory(prefix="qemu-jobs.") as d:
        tops = qmptrace.make_chains(d, sc["disks"], procs)
        sock = os.path.join(d, ".qmp")
        cmd = ["qemu-system-x86_64", "-machine", "none", "-nodefaults", "-display", "none",
               "-qmp", "unix:%s,server=on,wait=off" % sock]
        for disk, top in tops.items():
            fmt = qmptrace.image_format(top)
            if sc.get("blockdev"):
                # node names, as snapshot-save's "devices" name them
                cmd += ["-blockdev", "driver=%s,node-name=%s,file.driver=file,"
                        "file.filename=%s" % (fmt, disk, top)]
            else:
                cmd += ["-drive", "if=none,id=%s,file=%s,format=%s" % (disk, top, fmt)]
        p = subprocess.Popen(cmd)
        try:
            for _ in range(100):
                if os.path.exists(sock):
                    break
                time.sleep(0.05)
            conn = qmptrace.Conn(sock)
            trace = qmptrace.run(conn, sc["steps"], d)
            conn.cmd("quit", {})
        finally:
            p.wait(timeout=30)
            qmptrace.stop_procs(procs)
        trace["files"] = qmptrace.files(d)
        ver = subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True,
                             text=True).stdout.splitlines()[0]
        trace["recorded-with"] = ver
        trace = json.loads(json.dumps(trace).replace(d, "$DIR"))
    out = os.path.join(qmptrace.HERE, "golden", name + ".json")
    with open(out, "w") as f:
        json.dump(trace, f, indent=1, sort_keys=True)
        f.write("\n")
    print("wrote", out)


def main():
    scs = qmptrace.load_scenarios()
    names = sys.argv[1:] or list(scs)
    for n in names:
        record(n, scs[n])


if __name__ == "__main__":
    main()
