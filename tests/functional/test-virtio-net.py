"""virtio-net under a real VM, driven by a spec-written test guest
(tests/guests/virtio-net.c): a DHCP DISCOVER/OFFER exchange with libslirp's
server (user backend), also after an IPv4 fragment the backend must keep
from libslirp, and ARP through a tap device bridged to a veth whose
peer lives in another network namespace (skipped where namespaces or tap
cannot be created)."""

import ctypes
import json
import os
import subprocess

from guestrun import guest_path, run_guest
from vmmdtest import main, require_tool, skip

CLONE_NEWNET = 0x40000000


def test_dhcp_through_slirp():
    run = run_guest("virtio-net", timeout=240, done=("poweroff",),
                    nics=[{"id": "net0", "backend": "user", "mac": "52:54:00:00:00:01"}])
    c = run.console
    assert "net: mac 52:54:00:00:00:01" in c, run.describe()
    assert "net: link up" in c, run.describe()
    assert "dhcp: discover sent" in c, run.describe()
    assert "dhcp: offer 10.0.2.15 from 10.0.2.2" in c, run.describe()
    assert "net: rx msix delivered" in c, run.describe()
    # slirp cannot take the virtio-net header: no offloads are offered
    assert "net: no csum offload" in c, run.describe()


def qemu_outcome(kernel, mac):
    """How QEMU 7.2 with -netdev user fares with the same guest: its exit
    status (negative: the signal that ended it) and the console, or None
    without qemu-system-x86_64. Printed for comparison, not asserted: it
    depends on the host's libslirp, not on vmmd."""
    import shutil
    import tempfile
    import time
    if not shutil.which("qemu-system-x86_64"):
        return None
    with tempfile.TemporaryDirectory(prefix="vmmd-qemu.") as tmp:
        log = os.path.join(tmp, "console.log")
        p = subprocess.Popen(["qemu-system-x86_64", "-machine", "pc,accel=kvm",
                              "-cpu", "qemu64,-cx16", "-m", "64", "-nodefaults",
                              "-display", "none", "-no-reboot", "-kernel", kernel,
                              "-serial", "file:" + log, "-netdev", "user,id=n0",
                              "-device", "virtio-net-pci,disable-legacy=on,netdev=n0,mac=" + mac],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        con = ""
        while p.poll() is None and time.monotonic() < deadline and "net: done" not in con:
            time.sleep(0.5)
            if os.path.exists(log):
                with open(log, errors="replace") as f:
                    con = f.read()
        if p.poll() is None:
            p.kill()
        return p.wait(), con


def test_fragment_then_dhcp_through_slirp():
    """The last fragment of a datagram whose other fragments never come
    (it ends a process linked with Debian 12's libslirp), then DHCP: the
    user backend drops the fragment, the VM and its network go on."""
    mac = "52:54:00:00:00:03"
    run = run_guest("virtio-net", timeout=240, done=("poweroff",),
                    nics=[{"id": "net0", "backend": "user", "mac": mac}])
    c = run.console
    assert "ipv4: last fragment sent" in c, run.describe()
    assert "dhcp: offer 10.0.2.15 from 10.0.2.2" in c, run.describe()
    assert "net: done" in c, run.describe()
    q = qemu_outcome(guest_path("virtio-net"), mac)
    if q:
        print("QEMU with -netdev user, same guest: exit status %d, console ends %r"
              % (q[0], q[1][-80:]))


def sh(*cmd):
    subprocess.run(cmd, check=True, capture_output=True)


def tap_topology(tap_cmd=True):
    """In a network namespace of our own (vmmd inherits it, the host is
    untouched): bridge br0 joining tap vt0 (unless @tap_cmd is False: the
    caller creates the tap) and veth0, whose peer veth1 (10.0.3.1/24) lives
    in another namespace. Returns that namespace's name, or skips."""
    require_tool("ip")
    if not os.access("/dev/net/tun", os.R_OK | os.W_OK):
        skip("/dev/net/tun is not accessible")
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        skip("cannot create a network namespace: %s" % os.strerror(ctypes.get_errno()))
    peer = "vmmdpeer%d" % os.getpid()
    try:
        sh("ip", "link", "set", "lo", "up")
        if tap_cmd:
            sh("ip", "tuntap", "add", "dev", "vt0", "mode", "tap", "vnet_hdr")
        sh("ip", "netns", "add", peer)
        sh("ip", "link", "add", "veth0", "type", "veth", "peer", "name", "veth1")
        sh("ip", "link", "set", "veth1", "netns", peer)
        sh("ip", "-n", peer, "addr", "add", "10.0.3.1/24", "dev", "veth1")
        sh("ip", "-n", peer, "link", "set", "veth1", "up")
        sh("ip", "link", "add", "br0", "type", "bridge")
        sh("ip", "link", "set", "veth0", "master", "br0")
        for dev in ("veth0", "br0"):
            sh("ip", "link", "set", dev, "up")
        if tap_cmd:
            sh("ip", "link", "set", "vt0", "master", "br0")
            sh("ip", "link", "set", "vt0", "up")
    except subprocess.CalledProcessError as e:
        skip("cannot build the tap/veth topology: %s" % e.stderr.decode().strip())
    return peer


def test_arp_through_tap_to_another_namespace():
    peer = tap_topology()
    # the peer listens for the guest's UDP datagram, whose checksum the host
    # completes (CSUM offload): a bad checksum would be dropped by its stack
    listener = subprocess.Popen(
        ["ip", "netns", "exec", peer, "python3", "-c",
         "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
         "s.bind(('10.0.3.1', 9999)); s.settimeout(120); print('ready', flush=True); "
         "print(s.recvfrom(100)[0].decode())"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert listener.stdout.readline().strip() == "ready", listener.stderr.read()
        run = run_guest("virtio-net", timeout=240, done=("poweroff",),
                        nics=[{"id": "net0", "backend": "tap", "ifname": "vt0",
                               "mac": "52:54:00:00:00:02"}])
        c = run.console
        assert "arp: request sent" in c, run.describe()
        assert "arp: reply from 10.0.3.1" in c, run.describe()
        assert "net: csum offload negotiated" in c, run.describe()
        assert "udp: sent with partial checksum" in c, run.describe()
        out, err = listener.communicate(timeout=30)
        assert out.strip() == "vmmd-offload", "peer got %r %r\n%s" % (out, err, run.describe())
    finally:
        if listener.poll() is None:
            listener.kill()
            listener.wait()
        subprocess.run(["ip", "netns", "del", peer], capture_output=True)


def test_tap_fd_passed_with_getfd():
    """The tap as an fd handed to the daemon with getfd (SCM_RIGHTS)."""
    import fcntl
    import socket
    import struct
    import sys
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from daemon_helpers import TEST_CPU, console_log, guest, wait_console
    from vmmdtest import Vmmd

    kernel = guest("virtio-net")
    peer = tap_topology(tap_cmd=False)
    try:
        fd = os.open("/dev/net/tun", os.O_RDWR)
        # TUNSETIFF: IFF_TAP | IFF_NO_PI | IFF_VNET_HDR
        fcntl.ioctl(fd, 0x400454CA, struct.pack("16sH", b"vt1", 0x0002 | 0x1000 | 0x4000))
        sh("ip", "link", "set", "vt1", "master", "br0")
        sh("ip", "link", "set", "vt1", "up")
        with Vmmd() as d:
            q = d.qmp()
            msg = json.dumps({"execute": "getfd", "arguments": {"fdname": "tap0"}}).encode()
            socket.send_fds(q.sock, [msg], [fd])
            r = q.reply()
            assert "return" in r, r
            os.close(fd)
            q.ok("vm-create", {"name": "t", "vcpus": 1, "memory": "64M", "cpu": TEST_CPU,
                               "boot": {"kernel": kernel}, "start": True,
                               "nics": [{"id": "net0", "backend": "tap", "fd": "tap0",
                                         "mac": "52:54:00:00:00:02"}]})
            wait_console(d, "t", "net: done", timeout=120)
            c = console_log(d, "t")
            assert "arp: reply from 10.0.3.1" in c, c
            # an unknown fd name is a clear error, nothing is created
            r = q.cmd("vm-create", {"name": "u", "vcpus": 1, "memory": "64M", "cpu": TEST_CPU,
                                    "boot": {"kernel": kernel}, "start": True,
                                    "nics": [{"id": "net0", "backend": "tap", "fd": "nope"}]})
            assert "error" in r and "nope" in r["error"]["desc"], r
    finally:
        subprocess.run(["ip", "netns", "del", peer], capture_output=True)


if __name__ == "__main__":
    main(globals())
