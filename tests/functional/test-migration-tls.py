#!/usr/bin/env python3
"""TLS for live migration, QEMU's way (docs/migration.md "TLS"): object-add
tls-creds-x509 and migrate-set-parameters tls-creds / tls-hostname, with
certificates made at test time by certtool (tests/lib/tlscerts.py). The
shapes and error messages are QEMU 7.2's (tests/functional/golden/
migration-tls.json, make-golden-tls.py). Between two daemons in two network
namespaces (tests/lib/two-hosts.sh): a migration over TLS completes and the
guest counts on; a source whose CA is another one fails with QEMU's "The
certificate hasn't got a known issuer" and the VM runs on at the source; a
source without TLS cannot talk to a TLS destination; unknown credentials
fail as in QEMU."""

import importlib.util
import json
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from vmmdtest import QMP, Vmmd, main, require_tool  # noqa: E402
from daemon_helpers import console_log  # noqa: E402
import tlscerts  # noqa: E402

_spec = importlib.util.spec_from_file_location("tmig", os.path.join(HERE, "test-migration.py"))
tmig = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tmig)

GOLDEN = os.path.join(HERE, "golden", "migration-tls.json")


def golden():
    with open(GOLDEN) as f:
        return json.load(f)


def creds(q, ident, d, endpoint):
    return q.cmd("object-add", {"qom-type": "tls-creds-x509", "id": ident, "dir": d,
                                "endpoint": endpoint})


def certs(tmp, ip):
    require_tool("certtool")
    return tlscerts.make_all(tmp, "vmmd-dst", ip)


def test_objects_as_qemu():
    g = golden()
    with Vmmd() as d, tempfile.TemporaryDirectory() as tmp:
        good, _ = certs(tmp, "127.0.0.1")
        q = d.qmp()
        r = creds(q, "tls0", good, "server")
        assert r == g["object-add"], r
        r = creds(q, "tls0", good, "server")
        assert r["error"] == g["object-add-duplicate"]["error"], r
        r = creds(q, "tlsx", os.path.join(tmp, "nonexistent"), "server")
        r["error"]["desc"] = r["error"]["desc"].replace(tmp, "TMP")
        assert r["error"] == g["object-add-missing-dir"]["error"], r
        r = creds(q, "tlsy", good, "middle")
        assert r["error"] == g["object-add-bad-endpoint"]["error"], r
        r = q.cmd("object-del", {"id": "nosuch"})
        assert r["error"] == g["object-del-unknown"]["error"], r
        q.ok("vm-create", tmig.vm_def("m1"))
        params = q.ok("query-migrate-parameters", vm="m1")
        assert {k: params[k] for k in g["default-parameters"]} == g["default-parameters"]
        assert q.cmd("migrate-set-parameters", vm="m1", **{
            "tls-creds": "bad", "tls-hostname": "localhost"}) == g["set-tls-hostname"]
        params = q.ok("query-migrate-parameters", vm="m1")
        assert {k: params[k] for k in g["parameters-after"]} == g["parameters-after"]
        # The client side of the same directory; object-del then frees the id.
        assert creds(q, "cli", good, "client") == g["object-add"]
        q.ok("object-del", {"id": "cli"})
        assert creds(q, "cli", good, "client") == g["object-add"]


def test_fifo_in_place_of_a_credentials_file():
    """object-add reads the credentials files through the path policy
    without waiting: a FIFO as ca-cert.pem fails at once with QEMU's
    "Unable to access credentials" (before, the control thread waited for a
    writer and the daemon answered nobody), and the daemon goes on."""
    import shutil
    with Vmmd() as d, tempfile.TemporaryDirectory() as tmp:
        good, _ = certs(tmp, "127.0.0.1")
        bad = os.path.join(tmp, "fifo")
        shutil.copytree(good, bad)
        os.unlink(os.path.join(bad, "ca-cert.pem"))
        os.mkfifo(os.path.join(bad, "ca-cert.pem"))
        q = QMP(d.socket, timeout=10)
        r = creds(q, "t0", bad, "server")
        want = "Unable to access credentials %s/ca-cert.pem: not a regular file" % bad
        assert want in r["error"]["desc"], r
        assert creds(q, "t1", good, "server") == golden()["object-add"]


def dest_ready(dst, h, port, tls_dir):
    qd = dst.qmp()
    qd.ok("vm-create", dict(tmig.vm_def("m1"), incoming=True, start=True))
    if tls_dir:
        creds(qd, "srv", tls_dir, "server")  # an error if already there: fine
        qd.ok("migrate-set-parameters", vm="m1", **{"tls-creds": "srv"})
    qd.ok("migrate-incoming", vm="m1", uri="tcp:%s:%d" % (h.b, port))
    return qd


def test_tls_migration_and_wrong_ca():
    g = golden()
    with tmig.TwoHosts() as h, tmig.NsVmmd(h.name + "-a") as src, \
            tmig.NsVmmd(h.name + "-b") as dst:
        good, wrong = certs(src.tmp, h.b)
        qs = tmig.boot_source(src)
        qs.ok("migrate-set-parameters", vm="m1", **{"max-bandwidth": 8 << 30,
                                                  "downtime-limit": 2000})
        # A source trusting another CA: QEMU's error, the VM runs on here.
        assert creds(qs, "bad", wrong, "client") == g["object-add"]
        qs.ok("migrate-set-parameters", vm="m1", **{"tls-creds": "bad"})
        qd = dest_ready(dst, h, 4470, good)
        qs.ok("migrate", vm="m1", uri="tcp:%s:4470" % h.b)
        assert tmig.wait_status(qs, "m1", ("completed", "failed")) == g["wrong-ca"]["status"]
        info = qs.ok("query-migrate", vm="m1")
        assert info["error-desc"] == g["wrong-ca"]["error-desc"], info
        assert qs.ok("query-status", vm="m1")["status"] == g["wrong-ca"]["src-status"]
        assert tmig.wait_status(qd, "m1", ("completed", "failed")) == "failed"
        assert qd.ok("query-status", vm="m1")["status"] == "shutdown"
        tmig.still_counting(src, "m1", tmig.passes(console_log(src, "m1"))[-1][0])
        qd.ok("vm-delete", vm="m1")
        # Unknown credentials: QEMU's error, nothing sent.
        qs.ok("migrate-set-parameters", vm="m1", **{"tls-creds": "nosuch"})
        qd = dest_ready(dst, h, 4471, None)
        qs.ok("migrate", vm="m1", uri="tcp:%s:4471" % h.b)
        assert tmig.wait_status(qs, "m1", ("completed", "failed")) == \
            g["unknown-creds"]["status"]
        assert qs.ok("query-migrate", vm="m1")["error-desc"] == g["unknown-creds"]["error-desc"]
        # A plain source to a TLS destination: no stream in clear text.
        assert tmig.wait_status(qd, "m1", ("completed", "failed")) == "failed"
        qd.ok("vm-delete", vm="m1")
        qs.ok("migrate-set-parameters", vm="m1", **{"tls-creds": ""})
        qd = dest_ready(dst, h, 4472, good)
        qs.ok("migrate", vm="m1", uri="tcp:%s:4472" % h.b)
        assert tmig.wait_status(qs, "m1", ("completed", "failed")) == "failed"
        assert tmig.wait_status(qd, "m1", ("completed", "failed")) == "failed"
        desc = qd.ok("query-migrate", vm="m1")["error-desc"]
        assert "TLS handshake failed" in desc, desc
        assert qs.ok("query-status", vm="m1")["status"] == "running"
        qd.ok("vm-delete", vm="m1")
        # The good CA: it migrates over TLS (hostname from the URI: the server
        # certificate names the destination's address) and counts on there.
        assert creds(qs, "cli", good, "client") == g["object-add"]
        qs.ok("migrate-set-parameters", vm="m1", **{"tls-creds": "cli"})
        qd = dest_ready(dst, h, 4473, good)
        nonce = tmig.passes(console_log(src, "m1"))[-1][1]
        qs.ok("migrate", vm="m1", uri="tcp:%s:4473" % h.b)
        assert tmig.wait_status(qs, "m1", ("completed", "failed")) == g["good"]["status"], \
            qs.ok("query-migrate", vm="m1")
        assert tmig.wait_status(qd, "m1", ("completed", "failed")) == "completed"
        last = tmig.passes(console_log(src, "m1"))[-1][0]
        tmig.still_counting(dst, "m1", last)
        after = console_log(dst, "m1")
        assert all(n == nonce for _, n in tmig.passes(after)) and "migrate: boot" not in after
        # The events are QEMU's (setup, active, completed) around the TLS handshake.
        evs = [e["data"]["status"] for e in tmig.migration_events(qs, "m1")
               if e["event"] == "MIGRATION"]
        assert evs[-3:] == [e["data"]["status"] for e in g["good"]["events"]], evs


def test_hostname_mismatch():
    """tls-hostname names another host than the server certificate: refused."""
    with tmig.TwoHosts() as h, tmig.NsVmmd(h.name + "-a") as src, \
            tmig.NsVmmd(h.name + "-b") as dst:
        good, _ = certs(src.tmp, h.b)
        qs = tmig.boot_source(src)
        creds(qs, "cli", good, "client")
        qs.ok("migrate-set-parameters", vm="m1", **{"tls-creds": "cli",
                                                  "tls-hostname": "other-host"})
        dest_ready(dst, h, 4474, good)
        qs.ok("migrate", vm="m1", uri="tcp:%s:4474" % h.b)
        assert tmig.wait_status(qs, "m1", ("completed", "failed")) == "failed"
        desc = qs.ok("query-migrate", vm="m1")["error-desc"]
        assert desc == "Certificate does not match the hostname other-host", desc
        assert qs.ok("query-status", vm="m1")["status"] == "running"


if __name__ == "__main__":
    main(globals())
