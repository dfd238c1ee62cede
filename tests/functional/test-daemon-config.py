#!/usr/bin/env python3
"""vmmd's command line, settings file (vmmd.conf(5)), SIGHUP reload, socket
access control (mode, group, SO_PEERCRED), image roots, and persistence of
definitions across a restart (no VM needs to run)."""

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vmmdtest import VMMD, Vmmd, main, wait_for  # noqa: E402
from daemon_helpers import NOBOOT, raw_connect, read_line  # noqa: E402


def with_conf(text, **kw):
    d = Vmmd(**kw)
    conf = os.path.join(d.tmp, "vmmd.conf")
    with open(conf, "w") as f:
        f.write(text)
    d.args += ["--config", conf]
    d.conf = conf
    return d


def test_help_prints_defaults():
    p = subprocess.run([VMMD, "--help"], capture_output=True, text=True, check=True)
    for s in ("/etc/vmmd/vmmd.conf", "/run/vmmd/vmmd.sock", "/var/lib/vmmd", "--user-session",
              "--state-dir", "--run-dir", "--log-level", "max-clients 64"):
        assert s in p.stdout, s
    env = dict(os.environ, XDG_RUNTIME_DIR="/run/user/4242", XDG_STATE_HOME="/home/x/.st")
    p = subprocess.run([VMMD, "--user-session", "--help"], capture_output=True, text=True,
                       check=True, env=env)
    assert "/run/user/4242/vmmd/vmmd.sock" in p.stdout and "/home/x/.st/vmmd" in p.stdout
    p = subprocess.run([VMMD, "--no-such-option"], capture_output=True, text=True)
    assert p.returncode == 2


def test_bad_settings_file():
    d = with_conf("max-clients = 10\nsocket-mode = 999\n")
    p = subprocess.run([VMMD] + d.args, capture_output=True, text=True)
    assert p.returncode == 1, p
    assert "vmmd.conf:2: socket-mode '999'" in p.stderr, p.stderr
    p = subprocess.run([VMMD, "--config", "/nonexistent.conf"], capture_output=True, text=True)
    assert p.returncode == 1 and "/nonexistent.conf" in p.stderr, p.stderr
    os.unlink(d.conf)
    os.rmdir(d.tmp)


def test_user_session():
    d = Vmmd()
    env = {"XDG_RUNTIME_DIR": os.path.join(d.tmp, "xdg-run"),
           "XDG_STATE_HOME": os.path.join(d.tmp, "xdg-state")}
    os.mkdir(env["XDG_RUNTIME_DIR"], 0o700)
    p = subprocess.Popen([VMMD, "--user-session"], env=dict(os.environ, **env),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        sock = os.path.join(env["XDG_RUNTIME_DIR"], "vmmd", "vmmd.sock")
        wait_for(lambda: os.path.exists(sock), 10, what="the user socket")
        assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600
        assert os.path.isdir(os.path.join(env["XDG_STATE_HOME"], "vmmd", "vms"))
        from vmmdtest import QMP
        QMP(sock).ok("query-vms")
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(10) == 0
        subprocess.run(["rm", "-rf", d.tmp])


def test_socket_mode_and_group():
    with with_conf("socket-group = nogroup\nsocket-mode = 0660\n") as d:
        st = os.stat(d.socket)
        assert stat.S_IMODE(st.st_mode) == 0o660, oct(st.st_mode)
        import grp
        assert st.st_gid == grp.getgrnam("nogroup").gr_gid


def connect_as(path, uid, gid):
    """Connect from a child running as @uid/@gid; returns what it read first."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(5)
            s.connect(path)
            data = s.recv(4096)
            os.write(w, data if data else b"EOF")
        except Exception as e:
            os.write(w, ("EXC %r" % e).encode())
        os._exit(0)
    os.close(w)
    out = os.read(r, 4096)
    os.close(r)
    os.waitpid(pid, 0)
    return out


def test_peer_credentials():
    # 0666 lets anyone reach the socket, so SO_PEERCRED is what refuses them.
    with with_conf("socket-mode = 0666\nsocket-group = nogroup\n") as d:
        os.chmod(d.tmp, 0o755)
        assert connect_as(d.socket, 65534, 65534).startswith(b'{"QMP"')  # nogroup member
        assert connect_as(d.socket, 4321, 4321) == b"EOF"
        wait_for(lambda: "refused connection from pid" in d.read_log() and
                 "uid 4321" in d.read_log(), 5, what="the refusal in the log")


def test_sighup_reloads_limits_and_log_level():
    with with_conf("max-clients = 5\nlog-level = info\n") as d:
        a = d.qmp()
        with open(d.conf, "w") as f:
            f.write("max-clients = 1\nlog-level = debug\n")
        d.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "settings reloaded" in d.read_log(), 5, what="the reload")
        s = raw_connect(d.socket)
        r = json.loads(read_line(s))
        assert "limit 1" in r["error"]["desc"], r
        a.ok("query-vms")
        # A broken file is refused and the old settings stay.
        with open(d.conf, "w") as f:
            f.write("max-clients = many\n")
        d.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "settings not reloaded" in d.read_log(), 5, what="the refusal")
        a.ok("query-vms")
        assert d.proc.poll() is None


def test_image_roots():
    d = Vmmd()
    images = os.path.join(d.tmp, "images")
    os.mkdir(images)
    kernel = os.path.join(images, "k.elf")
    open(kernel, "w").close()
    outside = os.path.join(d.tmp, "outside.elf")
    open(outside, "w").close()
    os.symlink(outside, os.path.join(images, "sneaky.elf"))
    conf = os.path.join(d.tmp, "vmmd.conf")
    with open(conf, "w") as f:
        f.write("image-roots = %s\n" % images)
    d.args += ["--config", conf]
    with d:
        q = d.qmp()
        r = q.cmd("vm-create", {"name": "out", "boot": {"kernel": outside}})
        assert "outside the image roots" in r["error"]["desc"], r
        r = q.cmd("vm-create", {"name": "link", "boot": {"kernel": images + "/sneaky.elf"}})
        assert "outside the image roots" in r["error"]["desc"], r
        r = q.cmd("vm-create", {"name": "in", "boot": {"kernel": kernel}})
        assert r.get("return", {}).get("name") == "in" or "outside" not in json.dumps(r), r


def test_definitions_survive_restart():
    d = Vmmd()
    try:
        d.start()
        q = d.qmp()
        for n in ("alpha", "beta"):
            q.ok("vm-create", {"name": n, "memory": "64M", "boot": NOBOOT})
        q.close()
        assert d.stop() == 0
        vms = os.path.join(d.state_dir, "vms")
        assert sorted(os.listdir(vms)) == ["alpha.json", "beta.json"], os.listdir(vms)
        with open(os.path.join(vms, "alpha.json")) as f:
            assert json.load(f)["name"] == "alpha"
        # A corrupt definition is skipped with a message; the others load.
        with open(os.path.join(vms, "broken.json"), "w") as f:
            f.write("{not json")
        d.start()
        q = d.qmp()
        assert sorted(v["name"] for v in q.ok("query-vms")) == ["alpha", "beta"]
        assert "skipping" in d.read_log() and "broken.json" in d.read_log()
        q.ok("vm-delete", {"vm": "alpha"})
        assert not os.path.exists(os.path.join(vms, "alpha.json"))
        q.close()
    finally:
        d.stop()
        subprocess.run(["rm", "-rf", d.tmp])


def test_sigterm_exits_zero_and_removes_socket():
    d = Vmmd()
    with d:
        d.qmp().ok("query-vms")
        assert d.stop() == 0
        assert not os.path.exists(d.socket)
        time.sleep(0)


if __name__ == "__main__":
    main(globals())
