"""virtio-net under a real VM, driven by a spec-written test guest
(tests/guests/virtio-net.c): a DHCP DISCOVER/OFFER exchange with libslirp's
server (user backend), and ARP through a tap device bridged to a veth whose
peer lives in another network namespace (skipped where namespaces or tap
cannot be created)."""

import ctypes
import os
import subprocess

from guestrun import run_guest
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


def sh(*cmd):
    subprocess.run(cmd, check=True, capture_output=True)


def test_arp_through_tap_to_another_namespace():
    require_tool("ip")
    if not os.access("/dev/net/tun", os.R_OK | os.W_OK):
        skip("/dev/net/tun is not accessible")
    # run in a network namespace of our own: vmmd inherits it, the host is untouched
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        skip("cannot create a network namespace: %s" % os.strerror(ctypes.get_errno()))
    peer = "vmmdpeer%d" % os.getpid()
    try:
        sh("ip", "link", "set", "lo", "up")
        sh("ip", "tuntap", "add", "dev", "vt0", "mode", "tap", "vnet_hdr")
        sh("ip", "netns", "add", peer)
        sh("ip", "link", "add", "veth0", "type", "veth", "peer", "name", "veth1")
        sh("ip", "link", "set", "veth1", "netns", peer)
        sh("ip", "-n", peer, "addr", "add", "10.0.3.1/24", "dev", "veth1")
        sh("ip", "-n", peer, "link", "set", "veth1", "up")
        sh("ip", "link", "add", "br0", "type", "bridge")
        sh("ip", "link", "set", "vt0", "master", "br0")
        sh("ip", "link", "set", "veth0", "master", "br0")
        for dev in ("vt0", "veth0", "br0"):
            sh("ip", "link", "set", dev, "up")
    except subprocess.CalledProcessError as e:
        skip("cannot build the tap/veth topology: %s" % e.stderr.decode().strip())
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


if __name__ == "__main__":
    main(globals())
