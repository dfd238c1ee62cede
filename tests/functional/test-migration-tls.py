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
fail as in QEMU. A destination that refuses a source at the TLS handshake
keeps listening, as QEMU's (golden/migration-psk.json). tls-authz (authz-
simple, authz-list) allows a client certificate's DN or refuses it: the
source says so and runs on."""

import importlib.util
import json
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from vmmdtest import QMP, Vmmd, main, require_tool, wait_for  # noqa: E402
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
        # As QEMU's, the destination drops that source and listens on.
        wait_for(lambda: "waiting for another source" in dst.read_log(), 30,
                 what="the destination to drop the source")
        assert qd.ok("query-status", vm="m1")["status"] == "inmigrate"
        tmig.still_counting(src, "m1", tmig.passes(console_log(src, "m1"))[-1][0])
        qd.ok("vm-delete", vm="m1")
        # Unknown credentials: QEMU's error, nothing sent.
        qs.ok("migrate-set-parameters", vm="m1", **{"tls-creds": "nosuch"})
        qd = dest_ready(dst, h, 4471, None)
        qs.ok("migrate", vm="m1", uri="tcp:%s:4471" % h.b)
        assert tmig.wait_status(qs, "m1", ("completed", "failed")) == \
            g["unknown-creds"]["status"]
        assert qs.ok("query-migrate", vm="m1")["error-desc"] == g["unknown-creds"]["error-desc"]
        # A plain source to a TLS destination: no stream in clear text; the
        # destination logs why and listens on.
        assert tmig.wait_status(qd, "m1", ("completed", "failed")) == "failed"
        qd.ok("vm-delete", vm="m1")
        qs.ok("migrate-set-parameters", vm="m1", **{"tls-creds": ""})
        qd = dest_ready(dst, h, 4472, good)
        before = dst.read_log().count("waiting for another source")
        qs.ok("migrate", vm="m1", uri="tcp:%s:4472" % h.b)
        assert tmig.wait_status(qs, "m1", ("completed", "failed")) == "failed"
        wait_for(lambda: dst.read_log().count("waiting for another source") > before, 30,
                 what="the destination to drop the source")
        assert "incoming migration: TLS handshake failed" in dst.read_log()
        assert "status" not in qd.ok("query-migrate", vm="m1")
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
        tmig.counts_on_moved(src, dst, nonce)
        # The events are QEMU's (setup, active, completed) around the TLS handshake.
        evs = [e["data"]["status"] for e in tmig.migration_events(qs, "m1")
               if e["event"] == "MIGRATION"]
        assert evs[-3:] == [e["data"]["status"] for e in g["good"]["events"]], evs


def test_tls_authz_x509():
    """tls-authz on the destination asks about the client certificate's DN
    (QEMU's x509 check): authz-list denying it refuses the source, which
    says so and runs on, while the destination listens on; the object made
    again to allow the DN (authz-simple), the same destination takes it.
    One host, unix: sockets, the server's name given by tls-hostname."""
    g = tmig_psk_golden()
    with Vmmd() as src, Vmmd() as dst:
        good, _ = certs(src.tmp, "127.0.0.1")
        sock = "unix:" + os.path.join(dst.tmp, "mig.sock")
        qs = tmig.boot_source(src)
        qs.ok("migrate-set-parameters", vm="m1", **{"max-bandwidth": 8 << 30,
                                                  "downtime-limit": 2000})
        assert creds(qs, "cli", good, "client") == {"return": {}}
        qs.ok("migrate-set-parameters", vm="m1", **{"tls-creds": "cli",
                                                  "tls-hostname": "vmmd-dst"})
        qd = dst.qmp()
        assert creds(qd, "srv", good, "server") == {"return": {}}
        qd.ok("object-add", {"qom-type": "authz-list", "id": "az", "policy": "allow",
                             "rules": [{"match": "CN=vmmd-dst", "policy": "deny"}]})
        qd.ok("vm-create", dict(tmig.vm_def("m1"), incoming=True, start=True))
        qd.ok("migrate-set-parameters", vm="m1", **{"tls-creds": "srv", "tls-authz": "az"})
        assert qd.ok("query-migrate-parameters", vm="m1")["tls-authz"] == "az"
        qd.ok("migrate-incoming", vm="m1", uri=sock)
        denied = g["x509-authz-list-deny-rule"]
        qs.ok("migrate", vm="m1", uri=sock)
        assert tmig.wait_status(qs, "m1", ("completed", "failed")) == denied["status"]
        desc = qs.ok("query-migrate", vm="m1")["error-desc"]
        assert desc == ("the destination refused the TLS session: Access was denied (its "
                        "tls-authz does not allow this source)"), desc
        assert qs.ok("query-status", vm="m1")["status"] == denied["src-status"]
        wait_for(lambda: "waiting for another source" in dst.read_log(), 30,
                 what="the destination to drop the source")
        # QEMU's words in the destination's log, its VM still waiting.
        want = denied["dst-log"][0].replace("CN=localhost", "CN=vmmd-dst")
        assert want == "TLS x509 authz check for CN=vmmd-dst is denied", want
        assert want in dst.read_log()
        assert qd.ok("query-status", vm="m1")["status"] == denied["dst-status"]
        tmig.still_counting(src, "m1", tmig.passes(console_log(src, "m1"))[-1][0])
        # The object replaced (QEMU looks it up by id at each handshake).
        qd.ok("object-del", {"id": "az"})
        qd.ok("object-add", {"qom-type": "authz-simple", "id": "az",
                             "identity": "CN=vmmd-dst"})
        nonce = tmig.passes(console_log(src, "m1"))[-1][1]
        qs.ok("migrate", vm="m1", uri=sock)
        assert tmig.wait_status(qs, "m1", ("completed", "failed")) == \
            g["x509-authz-allowed"]["status"], qs.ok("query-migrate", vm="m1")
        assert tmig.wait_status(qd, "m1", ("completed", "failed")) == "completed"
        tmig.counts_on_moved(src, dst, nonce)


def tmig_psk_golden():
    with open(os.path.join(HERE, "golden", "migration-psk.json")) as f:
        return json.load(f)["migrations"]


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
