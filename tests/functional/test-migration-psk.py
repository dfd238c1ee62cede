#!/usr/bin/env python3
"""TLS pre-shared keys and tls-authz for live migration, QEMU's way
(docs/migration.md "TLS"): object-add tls-creds-psk (DIR/keys.psk, lines
"username:hexkey"), authz-simple and authz-list, and the migration
parameter tls-authz. The object answers and errors replay QEMU 7.2's
(tests/functional/golden/migration-psk.json, make-golden-psk.py). Between
two daemons on one host over unix: sockets: a PSK migration completes and
the guest counts on; a wrong key, an unknown identity and a username the
destination's tls-authz does not allow each fail with the VM running on at
the source, while the destination, as QEMU's, drops that source and keeps
listening for the next; bad key files (a FIFO, too big, a directory outside
the image roots) fail at object-add."""

import importlib.util
import json
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from vmmdtest import QMP, Vmmd, main, wait_for  # noqa: E402
from daemon_helpers import console_log  # noqa: E402


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, os.path.join(HERE, path))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


tmig = _load("tmig", "test-migration.py")
gpsk = _load("gpsk", "make-golden-psk.py")
GOLDEN = os.path.join(HERE, "golden", "migration-psk.json")
KEY = gpsk.KEY


def golden():
    with open(GOLDEN) as f:
        return json.load(f)


class OneVm:
    """vmmd's QMP with VM-scoped commands aimed at @vm: the golden
    sequence's commands then read as QEMU's."""

    VM_SCOPED = ("migrate-set-parameters", "query-migrate-parameters")

    def __init__(self, q, vm):
        self.q, self.vm = q, vm

    def cmd(self, name, **args):
        if name in self.VM_SCOPED:
            args["vm"] = self.vm
        return self.q.cmd(name, args)


def psk(q, ident, d, endpoint, **extra):
    return q.cmd("object-add", dict({"qom-type": "tls-creds-psk", "id": ident, "dir": d,
                                     "endpoint": endpoint}, **extra))


def test_objects_as_qemu():
    """Every object-add / object-del answer of the golden sequence, in order."""
    g = golden()["objects"]
    with Vmmd() as d, tempfile.TemporaryDirectory() as tmp:
        q = d.qmp()
        q.ok("vm-create", tmig.vm_def("m1"))
        got = gpsk.object_sequence(OneVm(q, "m1"), tmp)
        assert got.keys() == g.keys(), set(got) ^ set(g)
        for k in g:
            assert got[k] == g[k], (k, got[k], g[k])
        # QEMU's MigrationParameters shows tls-authz among the TLS members.
        params = q.ok("query-migrate-parameters", vm="m1")
        assert {k: params[k] for k in ("tls-creds", "tls-hostname", "tls-authz")} == \
            {"tls-creds": "", "tls-hostname": "", "tls-authz": "nosuch"}, params


def test_bad_key_files():
    """keys.psk is read through the path policy, without waiting, bounded:
    a FIFO and a file over 1 MiB fail at once; so does a directory outside
    the image roots; vmmd's own bounds on usernames and authz objects."""
    d = Vmmd()
    roots = os.path.join(d.tmp, "images")
    os.mkdir(roots)
    conf = os.path.join(d.tmp, "vmmd.conf")
    with open(conf, "w") as f:
        f.write("image-roots = %s\n" % roots)
    d.args += ["--config", conf]
    with d:
        q = QMP(d.socket, timeout=10)
        fifo = os.path.join(roots, "fifo")
        os.mkdir(fifo)
        os.mkfifo(os.path.join(fifo, "keys.psk"))
        r = psk(q, "f", fifo, "server")
        assert "Unable to access credentials %s/keys.psk: not a regular file" % fifo in \
            r["error"]["desc"], r
        big = os.path.join(roots, "big")
        os.mkdir(big)
        with open(os.path.join(big, "keys.psk"), "w") as f:
            f.write("qemu:%s\n" % KEY)
            f.write("#" * (1 << 20))
        r = psk(q, "b", big, "client")
        assert "not a regular file of at most 1048576 bytes" in r["error"]["desc"], r
        outside = gpsk.keyfile(d.tmp, "outside", "qemu:%s\n" % KEY)
        r = psk(q, "o", outside, "client")
        assert "outside the image roots" in r["error"]["desc"], r
        good = gpsk.keyfile(roots, "good", "qemu:%s\n%s:%s\n" % (KEY, "u" * 257, KEY))
        r = psk(q, "u", good, "client", username="u" * 257)
        assert r["error"]["desc"] == "Parameter 'username' is longer than 256 bytes", r
        r = q.cmd("object-add", {"qom-type": "authz-simple", "id": "a", "identity": "x" * 1025})
        assert r["error"]["desc"] == "Parameter 'identity' is longer than 1024 bytes", r
        rules = [{"match": "CN=%d" % i, "policy": "allow"} for i in range(65)]
        r = q.cmd("object-add", {"qom-type": "authz-list", "id": "a", "rules": rules})
        assert r["error"]["desc"] == "Parameter 'rules' has more than 64 rules", r
        # None of them took its id; the daemon goes on.
        for ident in ("f", "b", "o", "u", "a"):
            assert q.cmd("object-del", {"id": ident})["error"]["desc"] == \
                "object '%s' not found" % ident
        assert psk(q, "ok", good, "client") == {"return": {}}
        r = q.cmd("object-add", {"qom-type": "authz-list", "id": "a", "rules": rules[:64]})
        assert r == {"return": {}}, r


def refused(qs, qd, dst, what, want_prefix):
    """A migration the destination refuses at the TLS handshake: the source
    fails with @want_prefix and runs on; the destination listens on."""
    g = golden()["migrations"][what]
    before = dst.read_log().count("waiting for another source")
    qs.ok("migrate", vm="m1", uri="unix:" + os.path.join(dst.tmp, "mig.sock"))
    assert tmig.wait_status(qs, "m1", ("completed", "failed")) == g["status"]
    info = qs.ok("query-migrate", vm="m1")
    assert info["error-desc"].startswith(want_prefix), info
    assert qs.ok("query-status", vm="m1")["status"] == g["src-status"]
    # QEMU's destination drops the source and stays in inmigrate, listening.
    wait_for(lambda: dst.read_log().count("waiting for another source") > before, 30,
             what="the destination to drop the source")
    assert qd.ok("query-status", vm="m1")["status"] == g["dst-status"]
    assert "status" not in qd.ok("query-migrate", vm="m1")
    return info["error-desc"]


def test_psk_migration():
    """PSK on both sides; one destination listening throughout: a wrong
    key, an unknown identity and a username tls-authz does not allow are
    refused, then the right one migrates and the guest counts on."""
    g = golden()["migrations"]
    with Vmmd() as src, Vmmd() as dst:
        srv = gpsk.keyfile(dst.tmp, "srv", "qemu:%s\nalice:%s\n" % (KEY, KEY))
        qs = tmig.boot_source(src)
        qs.ok("migrate-set-parameters", vm="m1", **{"max-bandwidth": 8 << 30,
                                                  "downtime-limit": 2000})
        qd = dst.qmp()
        assert psk(qd, "t0", srv, "server") == {"return": {}}
        qd.ok("object-add", {"qom-type": "authz-list", "id": "az", "policy": "deny",
                             "rules": [{"match": "mallory", "policy": "deny"},
                                       {"match": "al*", "policy": "allow",
                                        "format": "glob"}]})
        qd.ok("vm-create", dict(tmig.vm_def("m1"), incoming=True, start=True))
        sock = "unix:" + os.path.join(dst.tmp, "mig.sock")
        p = dst.vmctl("incoming", "m1", sock, "--tls-creds", "t0", "--tls-authz", "az")
        assert "m1: waiting for a migration on %s" % sock in p.stdout, p.stdout
        params = qd.ok("query-migrate-parameters", vm="m1")
        assert (params["tls-creds"], params["tls-authz"]) == ("t0", "az"), params
        # A wrong key for a known name.
        wrong = gpsk.keyfile(src.tmp, "wrong", "alice:%s\n" % KEY.replace("ff", "fe"))
        assert psk(qs, "w", wrong, "client", username="alice") == {"return": {}}
        qs.ok("migrate-set-parameters", vm="m1", **{"tls-creds": "w"})
        refused(qs, qd, dst, "psk-wrong-key", "TLS handshake failed: ")
        # An identity the destination's file does not have.
        other = gpsk.keyfile(src.tmp, "other", "mallory:%s\n" % KEY)
        assert psk(qs, "m", other, "client", username="mallory") == {"return": {}}
        qs.ok("migrate-set-parameters", vm="m1", **{"tls-creds": "m"})
        desc = refused(qs, qd, dst, "psk-unknown-identity", "TLS handshake failed: ")
        assert desc.endswith("(The SRP/PSK username is missing or not known)"), desc
        assert "the client's PSK identity is not in %s/keys.psk" % srv in dst.read_log()
        # The right key for "qemu", which tls-authz does not allow (QEMU 7.2
        # would let it in: vmmd asks tls-authz about PSK usernames too).
        assert g["psk-authz-other-user"]["status"] == "completed"
        assert psk(qs, "q", srv, "client") == {"return": {}}
        qs.ok("migrate-set-parameters", vm="m1", **{"tls-creds": "q"})
        desc = refused(qs, qd, dst, "x509-authz-denied", "the destination refused the TLS")
        assert desc == ("the destination refused the TLS session: Access was denied (its "
                        "tls-authz does not allow this source)"), desc
        assert "TLS PSK authz check for qemu is denied" in dst.read_log()
        tmig.still_counting(src, "m1", tmig.passes(console_log(src, "m1"))[-1][0])
        # alice with her key (vmctl): allowed by the glob rule; the guest counts on there.
        assert psk(qs, "a", srv, "client", username="alice") == {"return": {}}
        nonce = tmig.passes(console_log(src, "m1"))[-1][1]
        p = src.vmctl("migrate", "m1", sock, "--tls-creds", "a", timeout=120)
        assert p.stdout.splitlines()[-1].startswith("m1: migrated in "), p.stdout
        assert qs.ok("query-migrate-parameters", vm="m1")["tls-creds"] == "a"
        assert tmig.wait_status(qs, "m1", ("completed", "failed")) == g["psk-good"]["status"], \
            qs.ok("query-migrate", vm="m1")
        assert tmig.wait_status(qd, "m1", ("completed", "failed")) == "completed"
        tmig.counts_on_moved(src, dst, nonce)
        evs = [e["data"]["status"] for e in tmig.migration_events(qs, "m1")
               if e["event"] == "MIGRATION"]
        assert evs[-3:] == g["psk-good"]["src-events"], evs


if __name__ == "__main__":
    main(globals())
