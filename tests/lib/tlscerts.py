"""Test certificates for migration TLS, made with certtool (gnutls-bin) at
test time: a CA, a server certificate for a host name and an IP address,
a client certificate, and the same from a second, unrelated CA. Laid out as
QEMU's tls-creds-x509 "dir" wants it: ca-cert.pem, server-cert.pem,
server-key.pem, client-cert.pem, client-key.pem."""

import os
import shutil
import subprocess


def _certtool(*args):
    subprocess.run(["certtool"] + list(args), check=True, capture_output=True)


def _template(path, lines):
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def make_ca(d, name):
    os.makedirs(d, exist_ok=True)
    key, cert, tpl = (os.path.join(d, n) for n in ("ca-key.pem", "ca-cert.pem", "ca.info"))
    _template(tpl, ['cn = "%s"' % name, "ca", "cert_signing_key", "expiration_days = 2"])
    _certtool("--generate-privkey", "--key-type=ecdsa", "--outfile", key)
    _certtool("--generate-self-signed", "--load-privkey", key, "--template", tpl,
              "--outfile", cert)
    return key, cert


def make_dir(d, ca_dir, hostname, ip):
    """@d gets ca-cert.pem of @ca_dir and server/client pairs it signed."""
    os.makedirs(d, exist_ok=True)
    ca_key, ca_cert = (os.path.join(ca_dir, n) for n in ("ca-key.pem", "ca-cert.pem"))
    shutil.copy(ca_cert, os.path.join(d, "ca-cert.pem"))
    for role in ("server", "client"):
        key = os.path.join(d, role + "-key.pem")
        cert = os.path.join(d, role + "-cert.pem")
        tpl = os.path.join(d, role + ".info")
        lines = ['cn = "%s"' % hostname, "expiration_days = 2", "signing_key",
                 "encryption_key"]
        if role == "server":
            lines += ["tls_www_server", 'dns_name = "%s"' % hostname, 'ip_address = "%s"' % ip]
        else:
            lines += ["tls_www_client"]
        _template(tpl, lines)
        _certtool("--generate-privkey", "--key-type=ecdsa", "--outfile", key)
        _certtool("--generate-certificate", "--load-privkey", key, "--load-ca-certificate",
                  ca_cert, "--load-ca-privkey", ca_key, "--template", tpl, "--outfile", cert)
        os.chmod(key, 0o600)
    return d


def make_all(tmp, hostname="vmmd-dst", ip="127.0.0.1"):
    """Returns (good dir, dir whose CA is another one)."""
    make_ca(os.path.join(tmp, "ca"), "vmmd test CA")
    make_ca(os.path.join(tmp, "ca2"), "another CA")
    good = make_dir(os.path.join(tmp, "tls"), os.path.join(tmp, "ca"), hostname, ip)
    bad = make_dir(os.path.join(tmp, "tls-wrong"), os.path.join(tmp, "ca2"), hostname, ip)
    return good, bad
