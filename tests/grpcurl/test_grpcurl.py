#!/usr/bin/python3
"""grpcurl, the operators' tool, against each real service (reflection only,
no .proto files): `list` shows the services, `describe` shows a seed method
and its message, -d JSON calls of DataBuildService/ListPartitions,
GetBuildSummary and PutWants return the expected JSON, grpc.health.v1 Check
answers SERVING, and a malformed -d is refused with a clear error.

The four services run on the host against the private PostgreSQL
(tests/python/dbld_testlib.py). grpcurl is the pinned one `./dev deps`
installs into .dev/tools/bin (DBLD_TOOLS_BIN overrides); without it the test
is skipped (exit 77). By hand:

    DBLD_BIN_DIR=build DBLD_SOURCE_DIR=. /usr/bin/python3 tests/grpcurl/test_grpcurl.py
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))
import dbld_testlib as lib  # noqa: E402

TOOLS = os.environ.get("DBLD_TOOLS_BIN") or os.path.join(lib.SOURCE_DIR, ".dev", "tools", "bin")
GRPCURL = os.path.join(TOOLS, "grpcurl")
BUILD_ID = "b-grpcurl-" + uuid.uuid4().hex[:8]
REF = "grpcurl/day=2025-01-01"


def grpcurl(*args, check=True):
    r = subprocess.run([GRPCURL, "-plaintext", "-max-time", "20"] + list(args),
                       capture_output=True, text=True, timeout=60)
    if check and r.returncode != 0:
        raise AssertionError("grpcurl %s exited %d: %s%s" % (" ".join(args), r.returncode,
                                                              r.stdout, r.stderr))
    return r


class Grpcurl(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="dbld-grpcurl-")
        cls.cluster = cls.db = None
        cls.svcs = {}
        try:
            server_dsn, cls.cluster = lib.postgres()
            cls.db = lib.Database(server_dsn, "grpcurl")
            el = lib.Service("eventlog", cls.db.dsn, cls.tmp)
            cls.svcs["eventlog"] = el
            for kind in ("job", "graph", "query"):
                # refs under grpcurl/ are external, so the query service takes wants for them
                extra = "graph:\n  external: ['grpcurl/.*']\n" if kind == "query" else ""
                cls.svcs[kind] = lib.Service(kind, cls.db.dsn, cls.tmp, eventlog_addr=el.addr,
                                             extra_yaml=extra)
            for kind, svc in cls.svcs.items():
                svc.wait_serving(lambda name, s=svc: cls.health(s.addr), timeout=60)
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        failed = []
        for svc in cls.svcs.values():
            if svc.stop() != 0:
                failed.append(svc.log_text())
        if cls.db:
            cls.db.drop()
        if cls.cluster:
            cls.cluster.destroy()
        shutil.rmtree(cls.tmp, ignore_errors=True)
        if failed:
            raise AssertionError("a service did not exit 0 on SIGTERM:\n" + "\n".join(failed))

    @staticmethod
    def health(addr):
        r = grpcurl("-d", "{}", addr, "grpc.health.v1.Health/Check", check=False)
        if r.returncode != 0:
            raise RuntimeError(r.stderr.strip())
        return 1 if json.loads(r.stdout).get("status") == "SERVING" else 0

    def test_list(self):
        want = {
            "eventlog": ["databuild.v1.EventLog", "databuild.v1.PartitionClaims",
                         "databuild.v1.BuildLeases", "databuild.v1.JobLogs",
                         "databuild.v1.ProcessStore"],
            "job": ["databuild.v1.JobConfigure", "databuild.v1.JobExecute",
                    "databuild.v1.JobRunner"],
            "graph": ["databuild.v1.GraphLookup", "databuild.v1.GraphBuilder"],
            "query": ["databuild.v1.DataBuildService", "databuild.v1.QueryOps",
                      "databuild.v1.Processes"],
        }
        for kind, services in want.items():
            listed = grpcurl(self.svcs[kind].addr, "list").stdout.split()
            for s in services + ["grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"]:
                self.assertIn(s, listed, "%s: grpcurl list" % kind)

    def test_health_serving(self):
        for kind, svc in self.svcs.items():
            out = json.loads(grpcurl("-d", "{}", svc.addr, "grpc.health.v1.Health/Check").stdout)
            self.assertEqual(out, {"status": "SERVING"}, kind)

    def test_describe(self):
        q = self.svcs["query"].addr
        out = grpcurl(q, "describe", "databuild.v1.DataBuildService.ListPartitions").stdout
        self.assertIn("rpc ListPartitions ( .databuild.v1.ListPartitionsRequest ) returns "
                      "( .databuild.v1.ListPartitionsResponse )", out)
        out = grpcurl(q, "describe", "databuild.v1.ListPartitionsRequest").stdout
        self.assertIn("message ListPartitionsRequest {", out)
        self.assertIn("string ref_pattern = 1;", out)
        self.assertIn("repeated .databuild.v1.PartitionStatus partition_status = 2;", out)
        out = grpcurl(self.svcs["job"].addr, "describe", "databuild.v1.JobConfigure").stdout
        self.assertIn("rpc Configure ( .databuild.v1.JobConfigureRequest )", out)

    def append_build(self):
        """A finished build with one AVAILABLE partition, appended with grpcurl."""
        now = time.time_ns()
        ev = lambda i, body: dict(body, buildRequestId=BUILD_ID, timestamp=str(now + i),  # noqa
                                  eventId=str(uuid.uuid5(uuid.NAMESPACE_URL, BUILD_ID + str(i))))
        events = [
            ev(0, {"buildRequestEvent": {"status": {"code": "BUILD_REQUEST_RECEIVED"},
                                         "requestedPartitions": [{"str": REF}],
                                         "comment": "grpcurl test"}}),
            ev(1, {"partitionEvent": {"partitionRef": {"str": REF},
                                      "statusCode": "PARTITION_AVAILABLE"}}),
            ev(2, {"buildRequestEvent": {"status": {"code": "BUILD_REQUEST_COMPLETED"},
                                         "requestedPartitions": [{"str": REF}]}}),
        ]
        out = grpcurl("-d", json.dumps({"events": events}), self.svcs["eventlog"].addr,
                      "databuild.v1.EventLog/Append").stdout
        return json.loads(out)

    def test_calls_with_json(self):
        self.append_build()
        q = self.svcs["query"].addr
        out = json.loads(grpcurl("-d", json.dumps({"refPattern": "grpcurl/.*"}), q,
                                 "databuild.v1.DataBuildService/ListPartitions").stdout)
        self.assertEqual([p["partitionRef"]["str"] for p in out.get("refs", [])], [REF], out)
        self.assertEqual(out["refs"][0]["status"]["code"], "PARTITION_AVAILABLE", out)
        self.assertEqual(out["refs"][0]["pastBuildRequest"], [BUILD_ID], out)

        out = json.loads(grpcurl("-d", json.dumps({"buildId": BUILD_ID}), q,
                                 "databuild.v1.DataBuildService/GetBuildSummary").stdout)
        self.assertEqual(out["buildId"], BUILD_ID, out)
        self.assertEqual(out["status"], "BUILD_REQUEST_COMPLETED", out)

        want = {"wants": [{"ref": {"str": "grpcurl/want=1"}, "ttlSeconds": "3600"}],
                "comment": "from grpcurl"}
        out = json.loads(grpcurl("-d", json.dumps(want), q,
                                 "databuild.v1.DataBuildService/PutWants").stdout)
        created = out.get("wants", [])
        self.assertEqual(len(created), 1, out)
        self.assertEqual(created[0]["ref"], {"str": "grpcurl/want=1"}, out)
        self.assertTrue(created[0]["wantId"], out)

    def test_malformed_json(self):
        q = self.svcs["query"].addr
        r = grpcurl("-d", '{"refPattern": ', q, "databuild.v1.DataBuildService/ListPartitions",
                    check=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("Error invoking method", r.stderr)
        self.assertIn("unexpected EOF", r.stderr)
        r = grpcurl("-d", '{"refPatern": "x"}', q, "databuild.v1.DataBuildService/ListPartitions",
                    check=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("ListPartitionsRequest has no known field named refPatern", r.stderr)
        r = grpcurl("-d", '{"refPattern": "("}', q, "databuild.v1.DataBuildService/ListPartitions",
                    check=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("Code: InvalidArgument", r.stderr)


if __name__ == "__main__":
    if not os.access(GRPCURL, os.X_OK):
        print("SKIPPED: grpcurl not installed at %s (./dev deps installs it when Go is present)"
              % GRPCURL)
        sys.exit(77)
    unittest.main(verbosity=2)
