#!/usr/bin/env python3
"""vmctl without a running guest: list, create (flags and --config), status,
delete, qmp, --json output that parses, the socket search order and the
documented exit codes (0 ok, 1 daemon error, 2 usage, 3 not found, 4 cannot
connect)."""

import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vmmdtest import VMCTL, Vmmd, main  # noqa: E402


def test_help_and_usage_errors():
    p = subprocess.run([VMCTL, "--help"], capture_output=True, text=True)
    assert p.returncode == 0 and "VMMD_SOCKET" in p.stdout and "Exit status" in p.stdout
    for args in ([], ["frobnicate"], ["--bogus", "list"]):
        assert subprocess.run([VMCTL] + args, capture_output=True).returncode == 2, args


def test_cannot_connect():
    env = dict(os.environ, VMMD_SOCKET="/nonexistent/vmmd.sock")
    p = subprocess.run([VMCTL, "list"], capture_output=True, text=True, env=env)
    assert p.returncode == 4 and "/nonexistent/vmmd.sock" in p.stderr, p
    # --socket wins over $VMMD_SOCKET.
    with Vmmd() as d:
        p = subprocess.run([VMCTL, "--socket", d.socket, "list"], capture_output=True,
                           text=True, env=env)
        assert p.returncode == 0, p


def test_create_list_status_delete():
    with Vmmd() as d:
        kernel = os.path.join(d.tmp, "kernel.elf")
        open(kernel, "w").close()
        open(os.path.join(d.tmp, "d.img"), "w").close()
        d.vmctl("create", "--name", "web1", "--memory", "64M", "--vcpus", "2",
                "--cpu", "host,-cx16,-xsave", "--kernel", kernel, "--cmdline", "console=ttyS0",
                "--disk", os.path.join(d.tmp, "d.img") + ",format=raw,readonly",
                "--nic", "user", "--autostart")
        p = d.vmctl("list")
        lines = p.stdout.splitlines()
        assert lines[0].split() == ["NAME", "STATE", "VCPUS", "MEMORY", "AUTOSTART"], lines
        assert lines[1].split() == ["web1", "shutdown", "2", "64M", "yes"], lines
        vms = json.loads(d.vmctl("--json", "list").stdout)
        assert vms[0]["name"] == "web1" and vms[0]["vcpus"] == 2, vms
        assert vms[0]["memory"] == 64 << 20 and vms[0]["autostart"] is True
        st = json.loads(d.vmctl("--json", "status", "web1").stdout)
        assert st["status"] == "shutdown" and st["running"] is False, st
        assert "status" in d.vmctl("status", "web1").stdout
        # What vmmd persisted is what the flags said.
        with open(os.path.join(d.state_dir, "vms", "web1.json")) as f:
            saved = json.load(f)
        assert saved["boot"]["kernel"] == kernel, saved
        # a disk's engine; native without cache=none is vmmd's refusal
        d.vmctl("create", "--name", "aio1", "--kernel", kernel, "--disk",
                os.path.join(d.tmp, "d.img") + ",cache=none,aio=native")
        with open(os.path.join(d.state_dir, "vms", "aio1.json")) as f:
            disk = json.load(f)["disks"][0]
        assert disk["aio"] == "native" and disk["cache"] == "none", disk
        p = d.vmctl("create", "--name", "aio2", "--kernel", kernel, "--disk",
                    os.path.join(d.tmp, "d.img") + ",aio=native", check=False)
        assert p.returncode != 0 and "needs \"cache\": \"none\"" in p.stderr, p
        d.vmctl("delete", "aio1")
        p = d.vmctl("create", "--name", "web1", check=False)
        assert p.returncode == 1 and "already exists" in p.stderr, p
        p = d.vmctl("status", "nope", check=False)
        assert p.returncode == 3, p
        p = d.vmctl("start", "nope", check=False)
        assert p.returncode == 3, p
        p = d.vmctl("delete", "nope", check=False)
        assert p.returncode == 3, p
        assert "deleted" in d.vmctl("delete", "web1").stdout
        assert json.loads(d.vmctl("--json", "list").stdout) == []


def test_create_from_config_file():
    with Vmmd() as d:
        cfg = os.path.join(d.tmp, "vm.json")
        with open(cfg, "w") as f:
            json.dump({"name": "fromfile", "vcpus": 1, "memory": "32M",
                       "cpu": "host,-cx16,-xsave", "boot": {"kernel": cfg}}, f)
        info = json.loads(d.vmctl("--json", "create", "--config", cfg, "--memory", "48M").stdout)
        assert info["name"] == "fromfile" and info["memory"] == 48 << 20, info
        with open(cfg, "w") as f:
            json.dump({"name": "bad", "no-such-key": 1}, f)
        p = d.vmctl("create", "--config", cfg, check=False)
        assert p.returncode == 1 and "no-such-key" in p.stderr, p
        with open(cfg, "w") as f:
            f.write("{broken")
        assert d.vmctl("create", "--config", cfg, check=False).returncode == 2
        assert d.vmctl("create", "--memory", "lots", "--name", "x", check=False).returncode == 2
        assert d.vmctl("create", "--disk", "a,format", "--name", "x", check=False).returncode == 2


def test_qmp_passthrough():
    with Vmmd() as d:
        p = d.vmctl("qmp", '{"execute": "query-version", "id": "v"}')
        r = json.loads(p.stdout)
        assert r["id"] == "v" and "qemu" in r["return"], r
        p = d.vmctl("qmp", input='{"execute": "query-vms"}')
        assert json.loads(p.stdout) == {"return": []}
        p = d.vmctl("qmp", '{"execute": "nope"}', check=False)
        assert p.returncode == 1 and json.loads(p.stdout)["error"]["class"] == "CommandNotFound"
        assert d.vmctl("qmp", "{not json", check=False).returncode == 2


def test_commands_on_a_stopped_vm():
    with Vmmd() as d:
        d.vmctl("create", "--name", "idle", "--memory", "32M", "--kernel", "/dev/null")
        for cmd in ("pause", "resume", "reset"):
            p = d.vmctl(cmd, "idle", check=False)
            assert p.returncode == 1 and "not running" in p.stderr, (cmd, p)
            # the daemon's hint names the vmctl command, not the protocol's vm-start
            assert "'vmctl start'" in p.stderr and "vm-start" not in p.stderr, p
        p = d.vmctl("stop", "idle", check=False)
        assert p.returncode == 1 and "not running" in p.stderr, p
        p = d.vmctl("stop", "--force", "idle", check=False)
        assert p.returncode == 1 and "not running" in p.stderr, p
        p = d.vmctl("console", "idle", check=False)
        assert p.returncode == 1 and "no live console" in p.stderr, p


def test_command_help_json_errors_files_memory():
    # --help for every command, without a daemon
    out = subprocess.run([VMCTL, "--help"], capture_output=True, text=True).stdout
    cmds = [ln.split()[0] for ln in out.split("Commands:\n")[1].split("\n\n")[0].splitlines()]
    assert {"list", "create", "start", "stop", "pause", "resume", "reset", "delete", "status",
            "console", "events", "qmp", "save", "restore", "disk", "jobs"} <= set(cmds), cmds
    env = dict(os.environ, VMMD_SOCKET="/nonexistent/vmmd.sock")
    for c in cmds:
        p = subprocess.run([VMCTL, c, "--help"], capture_output=True, text=True, env=env)
        assert p.returncode == 0 and p.stdout.startswith("Usage: vmctl %s" % c), (c, p)
    p = subprocess.run([VMCTL, "stop", "x", "-h"], capture_output=True, text=True, env=env)
    assert p.returncode == 0 and "--force" in p.stdout, p
    # --json: errors are one JSON object on stdout, with the exit status
    p = subprocess.run([VMCTL, "--json", "list"], capture_output=True, text=True, env=env)
    e = json.loads(p.stdout)["error"]
    assert p.returncode == 4 and e["class"] == "ConnectError" and e["exit-status"] == 4, p
    p = subprocess.run([VMCTL, "frobnicate", "--json"], capture_output=True, text=True)
    assert p.returncode == 2 and json.loads(p.stdout)["error"]["class"] == "UsageError", p
    with Vmmd() as d:
        p = d.vmctl("--json", "status", "nope", check=False)
        e = json.loads(p.stdout)["error"]
        assert p.returncode == 3 and e["class"] == "DeviceNotFound", p
        # files are checked before the VM is defined
        p = d.vmctl("create", "--name", "f", "--kernel", "/nonexistent/k", check=False)
        assert p.returncode == 2 and "kernel '/nonexistent/k'" in p.stderr, p
        p = d.vmctl("create", "--name", "f", "--kernel", "/dev/null", "--disk",
                    "/nonexistent/d.img", check=False)
        assert p.returncode == 2 and "disk vda '/nonexistent/d.img'" in p.stderr, p
        assert json.loads(d.vmctl("--json", "list").stdout) == []
        # --memory 64 is 64 MiB, as QEMU's -m 64
        info = json.loads(d.vmctl("--json", "create", "--name", "m", "--memory", "64",
                                  "--kernel", "/dev/null").stdout)
        assert info["memory"] == 64 << 20, info


if __name__ == "__main__":
    main(globals())
