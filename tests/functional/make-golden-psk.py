#!/usr/bin/env python3
"""Record QEMU 7.2's shapes for TLS pre-shared keys and tls-authz as a
golden trace (tests/functional/golden/migration-psk.json) for
test-migration-psk.py: object-add tls-creds-psk (good, default username,
duplicate, missing key file, bad endpoint, unknown username, malformed
key, missing dir, misplaced members), authz-simple and authz-list (good and
every argument error), object-del, the tls-authz parameter, and migrations
between two QEMUs: PSK good, wrong key and unknown identity (what the
source reports, and that the destination keeps listening and takes a good
source next), tls-authz with x509 (the client certificate's DN allowed,
refused, by glob) and with PSK.

Usage: tests/functional/make-golden-psk.py [QEMU]"""

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
import tlscerts  # noqa: E402

_spec = importlib.util.spec_from_file_location("gtls", os.path.join(HERE, "make-golden-tls.py"))
gtls = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gtls)
if len(sys.argv) > 1:
    gtls.QEMU = sys.argv[1]

OUT = os.path.join(HERE, "golden", "migration-psk.json")
KEY = "00112233445566778899aabbccddeeff"


def start(tmp, name, extra):
    """QEMU as make-golden-tls.py starts it, its stderr kept in TMP/NAME.err."""
    path = os.path.join(tmp, name + ".qmp")
    with open(os.path.join(tmp, name + ".err"), "w") as err:
        p = subprocess.Popen([gtls.QEMU, "-machine", "pc,accel=kvm", "-cpu", "qemu64,-cx16",
                              "-m", "64", "-nodefaults", "-display", "none", "-qmp",
                              "unix:%s,server=on,wait=off" % path] + extra,
                             stdout=subprocess.DEVNULL, stderr=err)
    return p, gtls.Qmp(path)


def keyfile(tmp, name, text):
    d = os.path.join(tmp, name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "keys.psk"), "w") as f:
        f.write(text)
    return d


def psk(q, ident, d, endpoint=None, **extra):
    args = {"qom-type": "tls-creds-psk", "id": ident, "dir": d}
    if endpoint:
        args["endpoint"] = endpoint
    args.update(extra)
    return gtls.strip(q.cmd("object-add", **args))


def x509(q, ident, d, endpoint):
    return q.cmd("object-add", **{"qom-type": "tls-creds-x509", "id": ident, "dir": d,
                                   "endpoint": endpoint})


def tmpfree(r, tmp):
    return json.loads(json.dumps(r).replace(tmp, "TMP"))


def object_sequence(q, tmp):
    """The object-add/object-del sequence, against anything whose
    cmd(NAME, **ARGS) answers like QMP (QEMU here, vmmd in
    test-migration-psk.py): the answers, TMP for @tmp."""
    out = {}
    good = keyfile(tmp, "psk", "qemu:%s\nalice:%s\n" % (KEY, KEY))
    bad = keyfile(tmp, "bad", "a line without a colon\nbob:zz\n")
    empty = os.path.join(tmp, "empty")
    os.makedirs(empty)
    out["psk-server"] = psk(q, "s0", good, "server")
    out["psk-duplicate"] = psk(q, "s0", good, "server")
    out["psk-client-default-username"] = psk(q, "c0", good, "client")
    out["psk-client-no-endpoint"] = psk(q, "c1", good)
    out["psk-client-username"] = psk(q, "c2", good, "client", username="alice")
    out["psk-unknown-username"] = tmpfree(psk(q, "c3", good, "client", username="carol"),
                                          tmp)
    out["psk-missing-file-client"] = tmpfree(psk(q, "c4", empty, "client"), tmp)
    out["psk-missing-file-server"] = tmpfree(psk(q, "s4", empty, "server"), tmp)
    out["psk-bad-endpoint"] = psk(q, "c5", good, "middle")
    out["psk-malformed-client"] = psk(q, "c6", bad, "client", username="bob")
    out["psk-malformed-client-default"] = tmpfree(psk(q, "c7", bad, "client"), tmp)
    out["psk-malformed-server"] = psk(q, "s8", bad, "server")
    out["psk-server-username"] = psk(q, "s9", good, "server", username="alice")
    out["psk-missing-dir"] = gtls.strip(q.cmd("object-add", **{
        "qom-type": "tls-creds-psk", "id": "c10", "endpoint": "client"}))
    out["x509-missing-dir"] = gtls.strip(q.cmd("object-add", **{
        "qom-type": "tls-creds-x509", "id": "c11", "endpoint": "client"}))
    out["psk-username-type"] = psk(q, "c12", good, "client", username=1)
    out["psk-unexpected"] = psk(q, "c13", good, "client", identity="a")
    out["x509-unexpected-username"] = gtls.strip(q.cmd("object-add", **{
        "qom-type": "tls-creds-x509", "id": "c14", "dir": good, "username": "a"}))

    def add(**a):
        return gtls.strip(q.cmd("object-add", **a))
    out["simple"] = add(**{"qom-type": "authz-simple", "id": "a0", "identity": "CN=x"})
    out["simple-duplicate"] = add(**{"qom-type": "authz-simple", "id": "a0",
                                     "identity": "CN=x"})
    out["psk-duplicate-of-authz"] = psk(q, "a0", good, "client")
    out["simple-missing-identity"] = add(**{"qom-type": "authz-simple", "id": "a1"})
    out["simple-identity-type"] = add(**{"qom-type": "authz-simple", "id": "a2",
                                         "identity": 1})
    out["simple-unexpected"] = add(**{"qom-type": "authz-simple", "id": "a3",
                                      "identity": "x", "policy": "allow"})
    out["list-empty"] = add(**{"qom-type": "authz-list", "id": "l0"})
    out["list"] = add(**{"qom-type": "authz-list", "id": "l1", "policy": "deny", "rules": [
        {"match": "CN=a", "policy": "allow"},
        {"match": "CN=b*", "policy": "allow", "format": "glob"},
        {"match": "CN=c", "policy": "deny", "format": "exact"}]})
    out["list-bad-policy"] = add(**{"qom-type": "authz-list", "id": "l2",
                                    "policy": "maybe"})
    out["list-policy-type"] = add(**{"qom-type": "authz-list", "id": "l3", "policy": 1})
    out["list-rule-missing-policy"] = add(**{"qom-type": "authz-list", "id": "l4",
                                             "rules": [{"match": "CN=a"}]})
    out["list-rule-missing-match"] = add(**{"qom-type": "authz-list", "id": "l5",
                                            "rules": [{"policy": "allow"}]})
    out["list-rule-bad-format"] = add(**{"qom-type": "authz-list", "id": "l6", "rules": [
        {"match": "CN=a", "policy": "allow", "format": "regex"}]})
    out["list-rule-bad-policy"] = add(**{"qom-type": "authz-list", "id": "l7", "rules": [
        {"match": "CN=a", "policy": "maybe"}]})
    out["list-rule-unexpected"] = add(**{"qom-type": "authz-list", "id": "l8", "rules": [
        {"match": "CN=a", "policy": "allow", "extra": 1}]})
    out["list-rule-match-type"] = add(**{"qom-type": "authz-list", "id": "l9", "rules": [
        {"match": 1, "policy": "allow"}]})
    out["list-rule-not-object"] = add(**{"qom-type": "authz-list", "id": "l10",
                                         "rules": ["x"]})
    out["list-rules-not-array"] = add(**{"qom-type": "authz-list", "id": "l11",
                                         "rules": "x"})
    out["list-unexpected"] = add(**{"qom-type": "authz-list", "id": "l12",
                                    "identity": "x"})
    out["unknown-type"] = add(**{"qom-type": "authz-nope", "id": "z"})
    out["del-authz"] = gtls.strip(q.cmd("object-del", id="l1"))
    out["del-authz-again"] = gtls.strip(q.cmd("object-del", id="l1"))
    out["del-psk"] = gtls.strip(q.cmd("object-del", id="s0"))
    params = q.cmd("query-migrate-parameters")["return"]
    out["default-tls-authz"] = params["tls-authz"]
    out["set-tls-authz"] = gtls.strip(q.cmd("migrate-set-parameters",
                                            **{"tls-authz": "nosuch"}))
    out["tls-authz-after"] = q.cmd("query-migrate-parameters")["return"]["tls-authz"]
    return out


def objects(tmp):
    p, q = start(tmp, "objs", [])
    try:
        return object_sequence(q, tmp)
    finally:
        p.kill()
        p.wait()


def finish(q):
    for _ in range(300):
        info = q.cmd("query-migrate")["return"]
        if info.get("status") in ("completed", "failed"):
            return info
        time.sleep(0.1)
    raise TimeoutError


def migration(tmp, port, src_creds, dst_creds, authz=None, retry=None):
    """A migration between two fresh QEMUs; @retry: after it, the
    destination's listener is given another source with these credentials
    (and, for a refused tls-authz, the object is made to allow it)."""
    name = "m%d" % port
    sp, s = start(tmp, name + "s", [])
    dp, d = start(tmp, name + "d", ["-incoming", "defer"])
    out = {}
    try:
        s.cmd("object-add", **src_creds)
        d.cmd("object-add", **dst_creds)
        dparams = {"tls-creds": dst_creds["id"]}
        if authz:
            d.cmd("object-add", **authz)
            dparams["tls-authz"] = authz["id"]
        d.cmd("migrate-set-parameters", **dparams)
        s.cmd("migrate-set-parameters", **{"tls-creds": src_creds["id"],
                                           "tls-hostname": "localhost"})
        d.cmd("migrate-incoming", uri="tcp:127.0.0.1:%d" % port)
        s.cmd("migrate", uri="tcp:127.0.0.1:%d" % port)
        info = finish(s)
        time.sleep(0.5)
        out["status"] = info["status"]
        out["error-desc"] = info.get("error-desc")
        out["src-status"] = s.cmd("query-status")["return"]["status"]
        out["src-events"] = [e["data"]["status"] for e in s.events if e["event"] == "MIGRATION"]
        out["dst-status"] = d.cmd("query-status")["return"]["status"]
        dinfo = d.cmd("query-migrate")["return"]
        out["dst-migrate-keys"] = sorted(dinfo)
        out["dst-migrate-status"] = dinfo.get("status")
        with open(os.path.join(tmp, name + "d.err")) as f:
            out["dst-log"] = [ln.split(": ", 1)[1] for ln in f.read().splitlines()
                              if "warning" not in ln]
        if retry:
            if authz:
                d.cmd("object-del", id=authz["id"])
                d.cmd("object-add", **retry[1])
            s2p, s2 = start(tmp, name + "s2", [])
            try:
                s2.cmd("object-add", **retry[0])
                s2.cmd("migrate-set-parameters", **{"tls-creds": retry[0]["id"],
                                                    "tls-hostname": "localhost"})
                s2.cmd("migrate", uri="tcp:127.0.0.1:%d" % port)
                out["retry-status"] = finish(s2)["status"]
            finally:
                s2p.kill()
                s2p.wait()
    finally:
        for p in (sp, dp):
            p.kill()
            p.wait()
    return out


def migrations(tmp):
    out = {}
    srv = keyfile(tmp, "srv", "qemu:%s\nalice:%s\n" % (KEY, KEY))
    wrong = keyfile(tmp, "wrongkey", "qemu:%s\n" % KEY.replace("ff", "fe"))
    unknown = keyfile(tmp, "unknown", "mallory:%s\n" % KEY)

    def creds(d, endpoint, user=None):
        c = {"qom-type": "tls-creds-psk", "id": "t0", "dir": d, "endpoint": endpoint}
        if user:
            c["username"] = user
        return c
    server = creds(srv, "server")
    out["psk-good"] = migration(tmp, 4521, creds(srv, "client"), server)
    out["psk-wrong-key"] = migration(tmp, 4522, creds(wrong, "client"), server,
                                     retry=(creds(srv, "client"), None))
    out["psk-unknown-identity"] = migration(tmp, 4523, creds(unknown, "client", "mallory"),
                                            server, retry=(creds(srv, "client"), None))
    # QEMU 7.2 asks tls-authz about x509 clients only: a PSK client it does not name passes.
    out["psk-authz-other-user"] = migration(
        tmp, 4524, creds(srv, "client", "qemu"), server,
        authz={"qom-type": "authz-simple", "id": "az", "identity": "alice"})
    good, _ = tlscerts.make_all(tmp, "localhost", "127.0.0.1")
    xs = {"qom-type": "tls-creds-x509", "id": "t0", "dir": good, "endpoint": "server"}
    xc = dict(xs, endpoint="client")
    out["x509-authz-allowed"] = migration(
        tmp, 4525, xc, xs, authz={"qom-type": "authz-simple", "id": "az",
                                  "identity": "CN=localhost"})
    out["x509-authz-denied"] = migration(
        tmp, 4526, xc, xs, authz={"qom-type": "authz-simple", "id": "az",
                                  "identity": "CN=other"},
        retry=(xc, {"qom-type": "authz-simple", "id": "az", "identity": "CN=localhost"}))
    out["x509-authz-list-glob"] = migration(
        tmp, 4527, xc, xs, authz={"qom-type": "authz-list", "id": "az", "policy": "deny",
                                  "rules": [{"match": "CN=local*", "policy": "allow",
                                             "format": "glob"}]})
    out["x509-authz-list-deny-rule"] = migration(
        tmp, 4528, xc, xs, authz={"qom-type": "authz-list", "id": "az", "policy": "allow",
                                  "rules": [{"match": "CN=localhost", "policy": "deny"}]})
    return out


def main():
    with tempfile.TemporaryDirectory() as tmp:
        p, q = start(tmp, "v", [])
        out = {"qemu": q.cmd("query-version")["return"]["qemu"]}
        p.kill()
        p.wait()
        out["objects"] = objects(tmp)
        out["migrations"] = migrations(tmp)
    with open(OUT, "w") as f:
        json.dump(out, f, indent=1, sort_keys=True)
        f.write("\n")
    print("wrote", OUT)


if __name__ == "__main__":
    main()
