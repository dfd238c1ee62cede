#!/usr/bin/env python3
"""Files vmmd leaves on the host (issue 14, failure 7): vm-delete removes the
console log vmmd chose; the console socket has the settings' socket-mode and
socket-group; no other local user can list the VM names in the run directory."""

import grp
import os
import stat
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vmmdtest import Vmmd, main  # noqa: E402
from daemon_helpers import guest, vm_def, wait_console  # noqa: E402


def test_console_socket_mode_run_dir_and_delete():
    idle = guest("idle")
    d = Vmmd()
    conf = os.path.join(d.tmp, "vmmd.conf")
    with open(conf, "w") as f:
        f.write("socket-group = nogroup\nsocket-mode = 0660\n")
    d.args += ["--config", conf]
    nogroup = grp.getgrnam("nogroup").gr_gid
    with d:
        q = d.qmp()
        info = q.ok("vm-create", dict(vm_def("c1", idle), start=True))
        wait_console(d, "c1", "idle: up")
        sock = info["console-socket"]
        st = os.stat(sock)
        assert stat.S_IMODE(st.st_mode) == 0o660, oct(st.st_mode)
        assert st.st_gid == nogroup, st.st_gid
        # The VM directory: the group may reach the sockets, nobody else may list it.
        vms = os.path.join(d.run_dir, "vms")
        st = os.stat(vms)
        assert stat.S_IMODE(st.st_mode) == 0o710 and st.st_gid == nogroup, oct(st.st_mode)
        r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                            "ls", vms], capture_output=True, text=True)
        assert r.returncode != 0 and "c1" not in r.stdout, r
        # Destroy keeps the log (it is still worth reading); delete removes it.
        log = info["console-log"]
        q.ok("vm-destroy", vm="c1")
        assert os.path.exists(log)
        q.ok("vm-delete", vm="c1")
        assert not os.path.exists(log), os.listdir(vms)
        assert not [f for f in os.listdir(vms) if f.startswith("c1.")], os.listdir(vms)


def test_run_dir_private_without_group():
    with Vmmd() as d:
        st = os.stat(os.path.join(d.run_dir, "vms"))
        assert stat.S_IMODE(st.st_mode) == 0o700, oct(st.st_mode)


if __name__ == "__main__":
    main(globals())
