#!/usr/bin/python3
"""TLS, mTLS and bearer-token authorization of all four services, from the
stock Python gRPC client and the databuild CLI.

Certificates are made with openssl at test time: a CA, a server certificate
for 127.0.0.1, client certificates of that CA and one of another CA. The
suite runs with TLS everywhere and client certificates required (mTLS
between the services), and with tokens from files for the roles reader,
writer and internal. Checked:
  - every method in the role table (lib/rpc_auth.c), on the service that
    serves it, called with no token, an unknown token, a token without the
    method's role and a token with it: UNAUTHENTICATED, UNAUTHENTICATED,
    PERMISSION_DENIED and anything but those two; the answers name the
    method and the role and never a token; every method a server lists
    through reflection is in the table;
  - health and reflection answer without a token;
  - a plaintext client, and a client whose certificate comes from another
    CA, are refused; a client with the right certificate connects;
  - a build through the CLI with TLS and a token completes, and the CLI
    without a token is refused with UNAUTHENTICATED;
  - certificates are reloaded on SIGHUP.
Run by ctest (python/test_security) or by hand:

    DBLD_BIN_DIR=build DBLD_SOURCE_DIR=. /usr/bin/python3 tests/python/test_security.py
"""

import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dbld_testlib as lib  # noqa: E402

import grpc  # noqa: E402

S = None  # stubs
TOKENS = {"reader": "rd-0123456789abcdef", "writer": "wr-0123456789abcdef",
          "internal": "in-0123456789abcdef", "svc": "sv-0123456789abcdef",
          "ops": "op-0123456789abcdef"}
# which process serves which gRPC service
SERVED_BY = {
    "databuild.v1.EventLog": "eventlog", "databuild.v1.PartitionClaims": "eventlog",
    "databuild.v1.BuildLeases": "eventlog", "databuild.v1.JobLogs": "eventlog",
    "databuild.v1.JobConfigure": "job", "databuild.v1.JobExecute": "job",
    "databuild.v1.JobRunner": "job", "databuild.v1.GraphLookup": "graph",
    "databuild.v1.GraphBuilder": "graph", "databuild.v1.DataBuildService": "query",
    "databuild.v1.QueryOps": "query", "databuild.v1.Processes": "query",
    "databuild.v1.ProcessStore": "eventlog",
}
STREAMING = {"/databuild.v1.EventLog/Subscribe", "/databuild.v1.JobRunner/RunStreamed",
             "/grpc.health.v1.Health/Watch"}
# Deadline of a call whose answer is expected at once (a refusal, a health
# check, a TLS handshake, a CLI call): it bounds only a broken server, so it
# is generous for the ASan build on a loaded machine (it was 3 s, where a
# deadline hit instead of the expected code failed the test).
ANSWER_S = 60
# Deadline of a call that is let through: it may block until the deadline
# (a stream with nothing to send), which counts as let through.
ALLOWED_S = 3


def role_table():
    """The one table in code: {path: role} parsed from lib/rpc_auth.c."""
    with open(os.path.join(lib.SOURCE_DIR, "lib", "rpc_auth.c")) as f:
        src = f.read()
    names = {"R": "reader", "W": "writer", "I": "internal", "DBLD_ROLE_HEALTH": "health",
             "DBLD_ROLE_REFLECTION": "reflection"}
    rows = re.findall(r'\{"(/[^"]+)", (\w+)\}', src)
    return {path: names[role] for path, role in rows}


def run(argv, **kw):
    return subprocess.run(argv, check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def make_certs(d):
    """CA + server/client certificates, and a second CA with a client."""
    def key(name):
        run(["openssl", "genrsa", "-out", os.path.join(d, name + ".key"), "2048"])

    def ca(name):
        key(name)
        run(["openssl", "req", "-x509", "-new", "-key", os.path.join(d, name + ".key"),
             "-subj", "/CN=" + name, "-days", "2", "-out", os.path.join(d, name + ".crt")])

    def cert(name, ca_name, cn, san):
        key(name)
        run(["openssl", "req", "-new", "-key", os.path.join(d, name + ".key"),
             "-subj", "/CN=" + cn, "-out", os.path.join(d, name + ".csr")])
        ext = os.path.join(d, name + ".ext")
        with open(ext, "w") as f:
            f.write("subjectAltName=%s\n" % san)
        run(["openssl", "x509", "-req", "-in", os.path.join(d, name + ".csr"),
             "-CA", os.path.join(d, ca_name + ".crt"), "-CAkey", os.path.join(d, ca_name + ".key"),
             "-CAcreateserial", "-days", "2", "-extfile", ext,
             "-out", os.path.join(d, name + ".crt")])

    ca("ca")
    ca("otherca")
    cert("server", "ca", "databuild-server", "IP:127.0.0.1,DNS:localhost")
    cert("client", "ca", "test-client", "DNS:test-client")
    cert("stranger", "otherca", "stranger", "DNS:stranger")


def read(path):
    with open(path, "rb") as f:
        return f.read()


class Security(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        global S
        cls.tmp = tempfile.mkdtemp(prefix="dbld-pysec-")
        cls.cluster = cls.db = None
        cls.svcs = {}
        try:
            S = lib.generate_stubs(os.path.join(cls.tmp, "gen"))
            d = os.path.join(cls.tmp, "pki")
            os.makedirs(d)
            make_certs(d)
            cls.pki = d
            for name, tok in TOKENS.items():
                with open(os.path.join(d, name + ".token"), "w") as f:
                    f.write(tok + "\n")
            server_dsn, cls.cluster = lib.postgres()
            cls.db = lib.Database(server_dsn, "sec")
            cls.start_suite()
        except Exception:
            cls.tearDownClass()
            raise

    @classmethod
    def shared_yaml(cls):
        d = cls.pki
        roles = {"reader": "[reader]", "writer": "[writer]", "internal": "[internal]",
                 "svc": "[reader, writer, internal]", "ops": "[reader, writer]"}
        lines = ["  tls:",
                 "    cert_file: " + os.path.join(d, "server.crt"),
                 "    key_file: " + os.path.join(d, "server.key"),
                 "    ca_file: " + os.path.join(d, "ca.crt"),
                 "    client_auth: require",
                 "  auth:",
                 "    client_token_file: " + os.path.join(d, "svc.token"),
                 "    tokens:"]
        for name, r in roles.items():
            lines += ["      - name: " + name,
                      "        token_file: " + os.path.join(d, name + ".token"),
                      "        roles: " + r]
        return lines

    @classmethod
    def start_suite(cls):
        state = os.path.join(cls.tmp, "jobstate")
        os.makedirs(state)
        spec = os.path.join(cls.tmp, "spec.json")
        with open(spec, "w") as f:
            json.dump({"state": state, "rules": [{"match": "sec/.*"}]}, f)
        job = os.path.join(lib.SOURCE_DIR, "tests", "jobs", "graph_job.py")
        jobs = ["  jobs:",
                "    - label: //sec:job",
                "      command: [python3, %s, --spec, %s]" % (job, spec),
                "      outputs: [\"sec/.*\"]"]
        ports = {k: lib.free_port() for k in ("eventlog", "job", "graph", "query")}
        peers = {k: "127.0.0.1:%d" % p for k, p in ports.items()}
        shared = cls.shared_yaml()
        for kind in ("eventlog", "job", "graph", "query"):
            extra = jobs if kind == "graph" else (["graph:"] + jobs if kind == "job" else [])
            cls.svcs[kind] = lib.Service(kind, cls.db.dsn, cls.tmp, peers=peers,
                                         shared_extra=shared, extra=extra, port=ports[kind])
        cls.peers = peers
        for kind, svc in cls.svcs.items():
            ch = cls.channel(svc.addr)
            stub = S.health_grpc.HealthStub(ch)
            svc.wait_serving(lambda n, stub=stub: stub.Check(
                S.health.HealthCheckRequest(service=n), timeout=5).status, timeout=120)
            ch.close()

    @classmethod
    def tearDownClass(cls):
        for svc in getattr(cls, "svcs", {}).values():
            svc.stop()
        if cls.db:
            cls.db.drop()
        if cls.cluster:
            cls.cluster.destroy()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    @classmethod
    def channel(cls, addr, client="client", ca="ca"):
        creds = grpc.ssl_channel_credentials(
            root_certificates=read(os.path.join(cls.pki, ca + ".crt")),
            private_key=read(os.path.join(cls.pki, client + ".key")) if client else None,
            certificate_chain=read(os.path.join(cls.pki, client + ".crt")) if client else None)
        return grpc.secure_channel(addr, creds)

    def call(self, ch, path, token, timeout=ANSWER_S):
        """Call path with an empty request; returns (code, details)."""
        md = (("authorization", "Bearer " + token),) if token else None
        try:
            if path in STREAMING:
                it = ch.unary_stream(path)(b"", metadata=md, timeout=timeout)
                try:
                    next(iter(it))
                finally:
                    it.cancel()
                return grpc.StatusCode.OK, ""
            if "ServerReflection" in path:
                it = ch.stream_stream(path)(iter([b""]), metadata=md, timeout=timeout)
                next(iter(it))
                it.cancel()
                return grpc.StatusCode.OK, ""
            ch.unary_unary(path)(b"", metadata=md, timeout=timeout)
            return grpc.StatusCode.OK, ""
        except grpc.RpcError as e:
            return e.code(), e.details() or ""
        except StopIteration:
            return grpc.StatusCode.OK, ""

    def test_every_method_by_role(self):
        table = role_table()
        self.assertGreaterEqual(len(table), 40)
        wrong_role = {"reader": "writer", "writer": "reader", "internal": "ops"}
        denied = (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)
        chans = {k: self.channel(s.addr) for k, s in self.svcs.items()}
        checked = 0
        for path, role in sorted(table.items()):
            service = path.split("/")[1]
            if role in ("health", "reflection"):
                for kind, ch in chans.items():  # open on every server
                    code, details = self.call(ch, path, None, ALLOWED_S)
                    self.assertNotIn(code, denied, "%s on %s: %s" % (path, kind, details))
                continue
            ch = chans[SERVED_BY[service]]
            with self.subTest(path=path):
                code, details = self.call(ch, path, None)
                self.assertEqual(code, grpc.StatusCode.UNAUTHENTICATED, details)
                self.assertIn(path, details)
                self.assertIn(role, details)
                code, details = self.call(ch, path, "not-a-token")
                self.assertEqual(code, grpc.StatusCode.UNAUTHENTICATED, details)
                self.assertNotIn("not-a-token", details)
                code, details = self.call(ch, path, TOKENS[wrong_role[role]])
                self.assertEqual(code, grpc.StatusCode.PERMISSION_DENIED, details)
                self.assertIn(role, details)
                for tok in TOKENS.values():
                    self.assertNotIn(tok, details)
                code, details = self.call(ch, path, TOKENS[role], ALLOWED_S)
                self.assertNotIn(code, denied, details)
                checked += 1
        self.assertEqual(checked, len([r for r in table.values()
                                       if r not in ("health", "reflection")]))
        for ch in chans.values():
            ch.close()

    def test_reflected_methods_are_in_the_table(self):
        """Every service a server lists has each of its methods in the table."""
        table = role_table()
        for kind, svc in self.svcs.items():
            out = subprocess.run(
                [os.path.join(lib.BIN_DIR, "databuild"), "--server", svc.addr,
                 "--tls-ca", os.path.join(self.pki, "ca.crt"),
                 "--tls-cert", os.path.join(self.pki, "client.crt"),
                 "--tls-key", os.path.join(self.pki, "client.key"),
                 "--timeout", str(ANSWER_S * 1000), "health"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        served = set()
        for path in table:
            served.add(path.split("/")[1])
        self.assertTrue(set(SERVED_BY) <= served, set(SERVED_BY) - served)
        # the generated descriptors know every method of every service
        for mod in (S.pb, S.ext):
            for sname, sdesc in mod.DESCRIPTOR.services_by_name.items():
                for m in sdesc.methods:
                    path = "/%s/%s" % (sdesc.full_name, m.name)
                    self.assertIn(path, table, "%s has no role" % path)

    def test_plaintext_and_foreign_certificates_refused(self):
        addr = self.svcs["query"].addr
        stub = S.health_grpc.HealthStub
        with grpc.insecure_channel(addr) as ch:
            with self.assertRaises(grpc.RpcError) as cm:
                stub(ch).Check(S.health.HealthCheckRequest(), timeout=ANSWER_S)
            self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAVAILABLE)
        ch = self.channel(addr, client="stranger")
        with self.assertRaises(grpc.RpcError) as cm:
            stub(ch).Check(S.health.HealthCheckRequest(), timeout=ANSWER_S)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAVAILABLE)
        ch.close()
        ch = self.channel(addr, client=None)  # no client certificate: mTLS required
        with self.assertRaises(grpc.RpcError) as cm:
            stub(ch).Check(S.health.HealthCheckRequest(), timeout=ANSWER_S)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAVAILABLE)
        ch.close()
        ch = self.channel(addr)
        r = stub(ch).Check(S.health.HealthCheckRequest(), timeout=ANSWER_S)
        self.assertEqual(r.status, 1)
        ch.close()

    def cli(self, *args, token="ops"):
        argv = [os.path.join(lib.BIN_DIR, "databuild"), "--timeout", str(ANSWER_S * 1000),
                "--tls-ca", os.path.join(self.pki, "ca.crt"),
                "--tls-cert", os.path.join(self.pki, "client.crt"),
                "--tls-key", os.path.join(self.pki, "client.key")]
        if token:
            argv += ["--token-file", os.path.join(self.pki, token + ".token")]
        cfg = os.path.join(self.tmp, "cli.yaml")
        with open(cfg, "w") as f:
            f.write("shared:\n  peers:\n" + "".join(
                "    %s: \"%s\"\n" % (k, v) for k, v in self.peers.items()))
        env = {k: v for k, v in os.environ.items() if not k.startswith("DATABUILD_")}
        return subprocess.run(argv + ["--config", cfg] + list(args), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env, timeout=120)

    def test_build_through_cli_with_tls_and_token(self):
        out = self.cli("build", "sec/a", "sec/b")
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        out = self.cli("partitions", "list", "--json")
        self.assertEqual(out.returncode, 0, out.stderr)
        refs = {json.loads(line)["partitionRef"]["str"] for line in out.stdout.splitlines()
                if line.strip()}
        self.assertTrue({"sec/a", "sec/b"} <= refs, refs)
        out = self.cli("partitions", "list", token=None)
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("UNAUTHENTICATED", out.stderr)
        out = self.cli("taints", "put", "sec/a", "--comment", "x", token="reader")
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("PERMISSION_DENIED", out.stderr)
        self.assertIn("writer", out.stderr)

    def server_cn(self, addr):
        """The CN of the certificate a new TLS connection to addr is given."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(os.path.join(self.pki, "ca.crt"))
        ctx.load_cert_chain(os.path.join(self.pki, "client.crt"), os.path.join(self.pki, "client.key"))
        ctx.set_alpn_protocols(["h2"])
        host, port = addr.rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=ANSWER_S) as raw:
            with ctx.wrap_socket(raw, server_hostname=host) as tls:
                subject = dict(x[0] for x in tls.getpeercert()["subject"])
                return subject.get("commonName", "")

    def test_sighup_reloads_certificates(self):
        """A new certificate is served after SIGHUP; established channels keep working."""
        svc = self.svcs["query"]
        ch_old = self.channel(svc.addr)
        stub = S.health_grpc.HealthStub
        self.assertEqual(stub(ch_old).Check(S.health.HealthCheckRequest(), timeout=ANSWER_S).status, 1)
        d = self.pki
        # a new server certificate (same key) with a different CN
        run(["openssl", "req", "-new", "-key", os.path.join(d, "server.key"),
             "-subj", "/CN=reloaded-server", "-out", os.path.join(d, "server2.csr")])
        run(["openssl", "x509", "-req", "-in", os.path.join(d, "server2.csr"),
             "-CA", os.path.join(d, "ca.crt"), "-CAkey", os.path.join(d, "ca.key"),
             "-CAcreateserial", "-days", "2", "-extfile", os.path.join(d, "server.ext"),
             "-out", os.path.join(d, "server2.crt")])
        shutil.copy(os.path.join(d, "server.crt"), os.path.join(d, "server.crt.orig"))
        shutil.copy(os.path.join(d, "server2.crt"), os.path.join(d, "server.crt"))
        try:
            svc.proc.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + ANSWER_S
            while time.monotonic() < deadline and "SIGHUP: reloading" not in svc.log_text():
                time.sleep(0.1)
            # a new connection gets the new certificate
            cn = ""
            while time.monotonic() < deadline:
                cn = self.server_cn(svc.addr)
                if cn == "reloaded-server":
                    break
                time.sleep(0.2)
            pem = cn
            self.assertIn("reloaded-server", pem)
            self.assertIn("tls certificates reloaded", svc.log_text())
            self.assertEqual(svc.proc.poll(), None, "SIGHUP must not stop the service")
            self.assertEqual(stub(ch_old).Check(S.health.HealthCheckRequest(), timeout=ANSWER_S).status, 1)
        finally:
            shutil.copy(os.path.join(d, "server.crt.orig"), os.path.join(d, "server.crt"))
            ch_old.close()


if __name__ == "__main__":
    unittest.main(verbosity=2)
