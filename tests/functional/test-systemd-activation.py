#!/usr/bin/env python3
"""vmmd under systemd's protocols, without systemd as PID 1:
systemd-socket-activate passes the listening socket (vmmd.socket's job),
and a NOTIFY_SOCKET set by the test receives READY=1, STATUS=, WATCHDOG=1 and
STOPPING=1."""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vmmdtest import QMP, VMMD, main, require_tool, wait_for  # noqa: E402


class Notify:
    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.2)
        self.messages = []

    def poll(self):
        try:
            while True:
                self.messages.append(self.sock.recv(4096).decode())
        except socket.timeout:
            pass
        return self.messages

    def wait(self, needle, timeout=10):
        return wait_for(lambda: any(needle in m for m in self.poll()), timeout,
                        what="%r on NOTIFY_SOCKET (got %r)" % (needle, self.messages))


def test_socket_activation_and_notify():
    require_tool("systemd-socket-activate")
    tmp = tempfile.mkdtemp(prefix="vmmd-test.")
    sock = os.path.join(tmp, "vmmd.sock")
    notify = Notify(os.path.join(tmp, "notify"))
    log = open(os.path.join(tmp, "vmmd.log"), "wb")
    cmd = ["systemd-socket-activate", "-l", sock,
           "-E", "NOTIFY_SOCKET=" + notify.path, "-E", "WATCHDOG_USEC=400000",
           VMMD, "--state-dir", os.path.join(tmp, "state"), "--run-dir", os.path.join(tmp, "run"),
           "--socket", os.path.join(tmp, "not-used.sock")]
    p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: os.path.exists(sock), 10, what="the activation socket")
        # The first connection starts vmmd, which answers it on the passed socket.
        q = QMP(sock)
        q.ok("vm-create", {"name": "act", "memory": "32M", "boot": {"kernel": "/nonexistent/vmlinuz"}})
        notify.wait("READY=1")
        ready = [m for m in notify.messages if "READY=1" in m][0]
        assert "STATUS=0 VMs running, 0 defined" in ready, ready
        assert not os.path.exists(os.path.join(tmp, "not-used.sock"))
        # The watchdog pings at half of WATCHDOG_USEC.
        n0 = sum("WATCHDOG=1" in m for m in notify.poll())
        time.sleep(1.0)
        n1 = sum("WATCHDOG=1" in m for m in notify.poll())
        assert n1 - n0 >= 3, (n0, n1)
        assert q.ok("query-vms")[0]["name"] == "act"
        q.close()
        p.send_signal(signal.SIGTERM)
        assert p.wait(20) == 0
        notify.wait("STOPPING=1")
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        log.close()
        with open(os.path.join(tmp, "vmmd.log"), "rb") as f:
            print(f.read().decode(errors="replace")[-3000:])
        subprocess.run(["rm", "-rf", tmp])


def test_notify_status_counts_vms():
    tmp = tempfile.mkdtemp(prefix="vmmd-test.")
    notify = Notify(os.path.join(tmp, "notify"))
    sock = os.path.join(tmp, "vmmd.sock")
    env = dict(os.environ, NOTIFY_SOCKET=notify.path)
    p = subprocess.Popen([VMMD, "--socket", sock, "--state-dir", os.path.join(tmp, "s"),
                          "--run-dir", os.path.join(tmp, "r")], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        notify.wait("READY=1")
        q = QMP(sock)
        q.ok("vm-create", {"name": "one", "memory": "32M", "boot": {"kernel": "/nonexistent/vmlinuz"}})
        q.ok("vm-create", {"name": "two", "memory": "32M", "boot": {"kernel": "/nonexistent/vmlinuz"}})
        q.ok("vm-delete", {"vm": "two"})
        notify.wait("STATUS=0 VMs running, 1 defined")
        q.close()
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(20) == 0
        subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    main(globals())
