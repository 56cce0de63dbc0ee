#!/usr/bin/python3
"""DataBuildService wire compatibility with the ORIGINAL seed proto.

Stubs for databuild.v1 are generated at run time from tests/python/seed/
databuild.proto - a verbatim copy of the seed interface, with its proto3
`optional` labels (which proto/databuild.proto drops for protobuf-c) - by the
system protoc and grpc_python_plugin. The event log's extension proto is
compiled against that same seed copy to populate the log. Then every
DataBuildService RPC (and QueryOps) is driven from stock python3-grpcio
against real databuild-eventlog and databuild-query processes, checking
values, optional-field presence, error codes and the seed's odd spellings
(build_reqeust_ids, date_timestamp).

Run by ctest (python/test_query_seed_compat) or by hand:

    DBLD_BIN_DIR=build DBLD_SOURCE_DIR=. /usr/bin/python3 tests/python/test_query_seed_compat.py
"""

import importlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import dbld_testlib as lib  # noqa: E402

import grpc  # noqa: E402

T0 = 1767225600000000000  # 2026-01-01T00:00:00Z in ns
SEC = 1000000000
P = None  # seed messages (databuild_pb2)
G = None  # seed services (databuild_pb2_grpc)
X = None  # extension messages/services compiled against the seed
H = None  # health
E = None  # execution state messages (databuild_exec.proto)


def generate(out_dir):
    """Seed stubs from tests/python/seed, the ext proto against the seed, health."""
    global P, G, X, H, E
    plugin, protoc = shutil.which("grpc_python_plugin"), shutil.which("protoc")
    if not plugin or not protoc:
        raise RuntimeError("need protoc and grpc_python_plugin")
    seed_dir = os.path.join(HERE, "seed")
    proto_dir = os.path.join(lib.SOURCE_DIR, "proto")
    os.makedirs(out_dir, exist_ok=True)
    common = ["--python_out=" + out_dir, "--grpc_out=" + out_dir,
              "--plugin=protoc-gen-grpc=" + plugin]
    subprocess.run([protoc, "-I", seed_dir] + common + ["databuild.proto"], check=True)
    # databuild_ext.proto imports "databuild.proto": the seed copy comes first on the path
    # (and databuild_exec.proto, the execution state messages ext imports: it imports nothing)
    subprocess.run([protoc, "-I", seed_dir, "-I", proto_dir] + common +
                   ["databuild_exec.proto", "databuild_ext.proto"], check=True)
    subprocess.run([protoc, "-I", os.path.join(proto_dir, "grpc", "health", "v1")] + common +
                   ["health.proto"], check=True)
    sys.path.insert(0, out_dir)
    P = importlib.import_module("databuild_pb2")
    G = importlib.import_module("databuild_pb2_grpc")
    X = importlib.import_module("databuild_ext_pb2_grpc"), importlib.import_module("databuild_ext_pb2")
    H = importlib.import_module("health_pb2_grpc"), importlib.import_module("health_pb2")
    E = importlib.import_module("databuild_exec_pb2")


def q(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


GRAPH_YAML = """graph:
  external: ["raw/date=[0-9-]+"]
  jobs:
    - label: "//py:ingest"
      command: ["/bin/true"]
      outputs: ["reviews/date=[0-9-]+"]
    - label: "//py:agg"
      command: ["/bin/true"]
      outputs: ["agg/date=[0-9-]+"]
"""


class QueryService:
    """databuild-query with peers.eventlog and a graph section (the shared
    helper's Service writes neither)."""

    def __init__(self, dsn, eventlog_addr, workdir):
        self.kind = "query"
        self.port = lib.free_port()
        self.addr = "127.0.0.1:%d" % self.port
        self.log_path = os.path.join(workdir, "query-%d.log" % self.port)
        config = os.path.join(workdir, "query-%d.yaml" % self.port)
        with open(config, "w") as f:
            f.write("shared:\n  postgres_dsn: %s\n  log_level: debug\n  peers:\n    eventlog: %s\n"
                    "query:\n  listen: %s\n  workers: 4\n%s"
                    % (q(dsn), q(eventlog_addr), q(self.addr), GRAPH_YAML))
        self.sanitizer_prefix = os.path.join(workdir, "sanitizer-query-%d" % self.port)
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([os.path.join(lib.BIN_DIR, "databuild-query"), "--config",
                                      config], stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=self.log, env=lib.service_env(self.sanitizer_prefix))

    wait_serving = lib.Service.wait_serving
    stop = lib.Service.stop
    log_text = lib.Service.log_text


def ref(s):
    return P.PartitionRef(str=s)


def event(br, ts, **payload):
    e = P.BuildEvent(event_id=str(uuid.uuid4()), timestamp=ts, build_request_id=br)
    (field, msg), = payload.items()
    getattr(e, field).CopyFrom(msg)
    return e


def br_event(br, ts, code, refs, comment=None, want_id=None):
    kw = {}
    if comment is not None:
        kw["comment"] = comment
    if want_id is not None:
        kw["want_id"] = want_id
    return event(br, ts, build_request_event=P.BuildRequestEvent(
        status=P.BuildRequestStatus(code=code, name=P.BuildRequestStatusCode.Name(code)),
        requested_partitions=[ref(r) for r in refs], **kw))


def job_event(br, ts, run, label, code, target):
    return event(br, ts, job_event=P.JobEvent(job_run_id=run, job_label=P.JobLabel(label=label),
                                              target_partitions=[ref(target)], status_code=code))


def part_event(br, ts, target, code, run):
    return event(br, ts, partition_event=P.PartitionEvent(partition_ref=ref(target),
                                                          status_code=code, job_run_id=run))


def graph_event(br, ts):
    def task(label, out, inp):
        return P.Task(job=P.JobLabel(label=label), config=P.JobConfig(
            outputs=[ref(out)], inputs=[P.DataDep(dep_type_code=P.MATERIALIZE,
                                                  partition_ref=ref(inp))]))
    return event(br, ts, job_graph_event=P.JobGraphEvent(job_graph=P.JobGraph(
        label=P.GraphLabel(label="//py:graph"), outputs=[ref("agg/date=2026-01-01")],
        nodes=[task("//py:ingest", "reviews/date=2026-01-01", "raw/date=2026-01-01"),
               task("//py:agg", "agg/date=2026-01-01", "reviews/date=2026-01-01")])))


class SeedCompat(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="dbld-pytest-query-")
        cls.cluster = cls.db = cls.el = cls.query = None
        cls.channels = []
        try:
            generate(os.path.join(cls.tmp, "gen"))
            server_dsn, cls.cluster = lib.postgres()
            cls.db = lib.Database(server_dsn, "qseed")
            cls.el = lib.Service("eventlog", cls.db.dsn, cls.tmp)
            el_ch = grpc.insecure_channel(cls.el.addr)
            cls.channels.append(el_ch)
            el_health = H[0].HealthStub(el_ch)
            cls.el.wait_serving(lambda n: el_health.Check(H[1].HealthCheckRequest(service=n),
                                                          timeout=2).status)
            cls.query = QueryService(cls.db.dsn, cls.el.addr, cls.tmp)
            ch = grpc.insecure_channel(cls.query.addr)
            cls.channels.append(ch)
            health = H[0].HealthStub(ch)
            cls.query.wait_serving(lambda n: health.Check(H[1].HealthCheckRequest(service=n),
                                                          timeout=2).status)
            cls.api = G.DataBuildServiceStub(ch)
            cls.ops = X[0].QueryOpsStub(ch)
            cls.populate(X[0].EventLogStub(el_ch), X[0].JobLogsStub(el_ch))
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        for ch in cls.channels:
            ch.close()
        failed = []
        for svc in (cls.query, cls.el):
            if svc and svc.stop() != 0:
                failed.append(svc.log_text())
        if cls.db:
            cls.db.drop()
        if cls.cluster:
            cls.cluster.destroy()
        shutil.rmtree(cls.tmp, ignore_errors=True)
        if failed:
            raise AssertionError("a service did not exit 0 on SIGTERM:\n" + "\n".join(failed))

    @classmethod
    def populate(cls, eventlog, joblogs):
        """Two builds with seed-generated events: b-ok completes, b-run is executing."""
        t = [T0]

        def ts():
            t[0] += SEC
            return t[0]
        ok, run = "b-ok", "b-run"
        evs = [
            br_event(ok, ts(), P.BUILD_REQUEST_RECEIVED, ["agg/date=2026-01-01"], "from python",
                     "want-py"),
            br_event(ok, ts(), P.BUILD_REQUEST_PLANNING, ["agg/date=2026-01-01"]),
            graph_event(ok, ts()),
            br_event(ok, ts(), P.BUILD_REQUEST_EXECUTING, ["agg/date=2026-01-01"]),
            job_event(ok, ts(), "r-1", "//py:ingest", P.JOB_SCHEDULED, "reviews/date=2026-01-01"),
            job_event(ok, ts(), "r-1", "//py:ingest", P.JOB_RUNNING, "reviews/date=2026-01-01"),
            job_event(ok, ts(), "r-1", "//py:ingest", P.JOB_COMPLETED, "reviews/date=2026-01-01"),
            part_event(ok, ts(), "reviews/date=2026-01-01", P.PARTITION_AVAILABLE, "r-1"),
            job_event(ok, ts(), "r-2", "//py:agg", P.JOB_SCHEDULED, "agg/date=2026-01-01"),
            job_event(ok, ts(), "r-2", "//py:agg", P.JOB_RUNNING, "agg/date=2026-01-01"),
            job_event(ok, ts(), "r-2", "//py:agg", P.JOB_COMPLETED, "agg/date=2026-01-01"),
            part_event(ok, ts(), "agg/date=2026-01-01", P.PARTITION_AVAILABLE, "r-2"),
            br_event(ok, ts(), P.BUILD_REQUEST_COMPLETED, ["agg/date=2026-01-01"]),
            br_event(run, ts(), P.BUILD_REQUEST_RECEIVED, ["reviews/date=2026-01-02"]),
            br_event(run, ts(), P.BUILD_REQUEST_EXECUTING, ["reviews/date=2026-01-02"]),
            job_event(run, ts(), "r-3", "//py:ingest", P.JOB_SCHEDULED, "reviews/date=2026-01-02"),
            part_event(run, ts(), "reviews/date=2026-01-02", P.PARTITION_BUILDING, "r-3"),
        ]
        cls.times = {e.event_id: e.timestamp for e in evs}
        cls.events = evs
        eventlog.Append(X[1].AppendRequest(events=evs), timeout=10)
        entries = [P.JobLogEntry(timestamp=str(T0 + i * SEC), job_id="r-1", sequence_number=i,
                                 outputs=[ref("reviews/date=2026-01-01")],
                                 log=P.LogMessage(level=i % 4, message="line %d" % i,
                                                  fields={"k": "v"}))
                   for i in range(1, 31)]
        joblogs.Append(X[1].AppendJobLogsRequest(entries=entries), timeout=10)

    def assert_code(self, fn, req, code, contains):
        with self.assertRaises(grpc.RpcError) as cm:
            fn(req, timeout=10)
        self.assertEqual(cm.exception.code(), code, cm.exception.details())
        self.assertIn(contains, cm.exception.details())

    # ------------------------------------------------------------- builds

    def test_build_events(self):
        r = self.api.GetBuildEvents(P.ListBuildEventsRequest(
            filters=P.EventFilter(build_request_ids=["b-ok"]), min_timestamp_ns=1), timeout=10)
        self.assertEqual([e.event_id for e in r.events],
                         [e.event_id for e in self.events if e.build_request_id == "b-ok"])
        self.assertFalse(r.has_more)
        first = r.events[0]
        self.assertTrue(first.HasField("build_request_id"))  # optional in the seed
        self.assertEqual(first.build_request_event.comment, "from python")
        self.assertTrue(first.build_request_event.HasField("want_id"))
        r = self.api.GetBuildEvents(P.ListBuildEventsRequest(
            filters=P.EventFilter(partition_patterns=["agg/.*"], job_labels=["//py:agg"])),
            timeout=10)
        self.assertEqual(len(r.events), 4)  # graph event + three job events of r-2
        self.assert_code(self.api.GetBuildEvents, P.ListBuildEventsRequest(
            filters=P.EventFilter(partition_patterns=["(unclosed"])),
            grpc.StatusCode.INVALID_ARGUMENT, "(unclosed")

    def test_list_builds_and_summary(self):
        r = self.api.ListBuildRequests(P.ListBuildsRequest(), timeout=10)
        self.assertEqual([b.build_request_id for b in r.builds], ["b-run", "b-ok"])
        self.assertFalse(r.has_more)
        running, done = r.builds
        self.assertFalse(running.HasField("completed_at"))  # optional: absent while running
        self.assertFalse(running.HasField("duration_ms"))
        self.assertTrue(done.HasField("completed_at"))
        self.assertEqual(done.comment, "from python")
        self.assertEqual(done.status.code, P.BUILD_REQUEST_COMPLETED)
        self.assertEqual(done.status.name, "BUILD_REQUEST_COMPLETED")
        self.assertEqual((done.total_jobs, done.completed_jobs), (2, 2))
        r = self.api.ListBuildRequests(P.ListBuildsRequest(run_jobs=["//py:agg"],
                                                           comment_contains="PYTHON"), timeout=10)
        self.assertEqual([b.build_request_id for b in r.builds], ["b-ok"])
        r = self.api.ListBuildRequests(P.ListBuildsRequest(triggering_want_ids=["want-py"],
                                                           build_status=["completed"]), timeout=10)
        self.assertEqual(len(r.builds), 1)

        s = self.api.GetBuildSummary(P.BuildSummaryRequest(build_id="b-ok"), timeout=10)
        self.assertEqual(s.status, P.BUILD_REQUEST_COMPLETED)
        self.assertEqual(s.summary.requested_partitions[0].str, "agg/date=2026-01-01")
        self.assertEqual({p.ref.str: p.status for p in s.partitions},
                         {"agg/date=2026-01-01": P.PARTITION_AVAILABLE,
                          "reviews/date=2026-01-01": P.PARTITION_AVAILABLE})
        self.assert_code(self.api.GetBuildSummary, P.BuildSummaryRequest(build_id="nope"),
                         grpc.StatusCode.NOT_FOUND, "nope")

        m = self.api.GetBuildMermaid(P.BuildSummaryRequest(build_id="b-ok"), timeout=10)
        self.assertTrue(m.mermaid.startswith("flowchart"))
        self.assertEqual(m.mermaid.count(" --> "), 4)
        self.assertIn("class j0,j1 job_completed", m.mermaid)

    def test_batched(self):
        r = self.api.Batched(P.BatchedRequest(requests={
            "ok": P.RequestContainer(build_request_status=P.BuildSummaryRequest(build_id="b-ok")),
            "events": P.RequestContainer(list_build_events=P.ListBuildEventsResponse(
                events=[P.BuildEvent(build_request_id="b-run")])),
            "bad": P.RequestContainer(build_request_status=P.BuildSummaryRequest(build_id="zz")),
        }), timeout=10)
        self.assertEqual(set(r.responses), {"ok", "events"})
        self.assertEqual(r.responses["ok"].build_request_status.build_id, "b-ok")
        self.assertEqual(len(r.responses["events"].list_build_events.events), 4)
        self.assertIn("NOT_FOUND", r.errors["bad"].error_message)

    # --------------------------------------------------------- partitions

    def test_partitions(self):
        r = self.api.ListPartitions(P.ListPartitionsRequest(), timeout=10)
        self.assertEqual([p.partition_ref.str for p in r.refs],
                         ["agg/date=2026-01-01", "reviews/date=2026-01-01",
                          "reviews/date=2026-01-02"])
        r = self.api.ListPartitions(P.ListPartitionsRequest(
            ref_pattern="reviews/.*", partition_status=[P.PARTITION_BUILDING]), timeout=10)
        self.assertEqual([p.partition_ref.str for p in r.refs], ["reviews/date=2026-01-02"])
        self.assertEqual(r.refs[0].status.name, "PARTITION_BUILDING")
        r = self.api.ListPartitions(P.ListPartitionsRequest(
            last_partition="reviews/date=2026-01-01"), timeout=10)
        self.assertEqual(len(r.refs), 1)
        self.assert_code(self.api.ListPartitions, P.ListPartitionsRequest(ref_pattern="[z-a]"),
                         grpc.StatusCode.INVALID_ARGUMENT, "[z-a]")
        s = self.api.GetPartitionsSummary(P.PartitionSummaryRequest(
            ref=ref("reviews/date=2026-01-01")), timeout=10).partition
        self.assertEqual(s.status.code, P.PARTITION_AVAILABLE)
        self.assertEqual(list(s.past_build_request), ["b-ok"])
        self.assertGreater(s.last_updated, T0)
        self.assert_code(self.api.GetPartitionsSummary, P.PartitionSummaryRequest(),
                         grpc.StatusCode.INVALID_ARGUMENT, "ref")

    # --------------------------------------------------------------- jobs

    def test_jobs_and_runs(self):
        jobs = self.api.ListJobs(P.ListJobsRequest(), timeout=10).jobs
        self.assertEqual([j.job_label for j in jobs], ["//py:ingest", "//py:agg"])
        ingest = jobs[0]
        self.assertEqual((ingest.total_runs, ingest.successful_runs), (2, 1))
        self.assertEqual(ingest.last_run_status_code, P.JOB_SCHEDULED)
        self.assertEqual(list(ingest.recent_builds), ["b-run", "b-ok"])
        j = self.api.GetJobSummary(P.JobSummaryRequest(job_label="//py:agg"), timeout=10).job
        self.assertAlmostEqual(j.average_partitions_per_run, 1.0)
        self.assert_code(self.api.GetJobSummary, P.JobSummaryRequest(job_label="//py:nope"),
                         grpc.StatusCode.NOT_FOUND, "//py:nope")

        runs = self.api.ListJobRuns(P.ListJobRunsRequest(), timeout=10)
        self.assertEqual([r.job_run_id for r in runs.job_runs], ["r-3", "r-2", "r-1"])
        runs = self.api.ListJobRuns(P.ListJobRunsRequest(build_reqeust_ids=["b-run"],
                                                         job_run_ids=["r-1"]), timeout=10)
        self.assertEqual([r.job_run_id for r in runs.job_runs], ["r-3", "r-1"])
        more = self.api.ListJobRuns(P.ListJobRunsRequest(started_until=runs.min_start_at),
                                    timeout=10)
        self.assertEqual(len(more.job_runs), 0)
        r1 = self.api.GetJobRunSummary(P.JobRunSummaryRequest(job_run_id="r-1"),
                                       timeout=10).job_run
        self.assertEqual(r1.status_code, P.JOB_COMPLETED)
        self.assertTrue(r1.HasField("started_at") and r1.HasField("completed_at"))
        self.assertEqual(r1.duration_ms, 1000)
        r3 = self.api.GetJobRunSummary(P.JobRunSummaryRequest(job_run_id="r-3"),
                                       timeout=10).job_run
        self.assertFalse(r3.HasField("started_at"))  # scheduled, never ran yet
        self.assert_code(self.api.GetJobRunSummary, P.JobRunSummaryRequest(job_run_id="r-9"),
                         grpc.StatusCode.NOT_FOUND, "r-9")

    def test_job_logs(self):
        r = self.ops.GetJobLogs(P.JobLogsRequest(job_run_id="r-1", limit=10), timeout=10)
        self.assertEqual([e.sequence_number for e in r.entries], list(range(1, 11)))
        self.assertTrue(r.has_more)
        r = self.ops.GetJobLogs(P.JobLogsRequest(job_run_id="r-1", min_level=3,
                                                 since_timestamp=int(r.entries[-1].timestamp)),
                                timeout=10)
        self.assertEqual([e.sequence_number for e in r.entries], [11, 15, 19, 23, 27])
        self.assertEqual(r.entries[0].log.fields["k"], "v")

    # ---------------------------------------------------- wants and taints

    def test_wants(self):
        before = time.time_ns()
        r = self.api.PutWants(P.PutWantsRequest(
            wants=[P.IndividualWantRequest(ref=ref("agg/date=2026-01-01"), date_timestamp=T0,
                                           ttl_seconds=86400, sla_seconds=3600),
                   P.IndividualWantRequest(ref=ref("raw/date=2026-01-01"))],
            source=P.WantSource(source_type=P.SourceType(code=P.CLI_MANUAL, name="cli")),
            comment="py want"), timeout=10)
        self.assertEqual([w.ref.str for w in r.wants], ["agg/date=2026-01-01",
                                                        "raw/date=2026-01-01"])
        w = self.api.GetWantSummary(P.WantSummaryRequest(want_id=r.wants[0].want_id),
                                    timeout=10).want
        self.assertEqual(w.want.ref.str, "agg/date=2026-01-01")
        self.assertTrue(w.want.HasField("ttl_seconds"))  # optional in the seed
        self.assertEqual((w.want.ttl_seconds, w.want.sla_seconds, w.want.data_timestamp),
                         (86400, 3600, T0))
        self.assertGreaterEqual(w.want.created_at, before)
        self.assertEqual(w.comment, "py want")
        self.assertEqual(w.partitions[0].status_code, P.PARTITION_AVAILABLE)
        self.assertEqual(w.partitions[0].last_successful_build, "b-ok")
        ext = self.api.GetWantSummary(P.WantSummaryRequest(want_id=r.wants[1].want_id),
                                      timeout=10).want
        self.assertFalse(ext.want.HasField("ttl_seconds"))
        self.assertEqual(ext.external_partitions[0].ref.str, "raw/date=2026-01-01")
        listed = self.api.ListWants(P.ListWantsRequest(), timeout=10)
        self.assertGreaterEqual(len(listed.wants), 2)
        self.assert_code(self.api.PutWants, P.PutWantsRequest(
            wants=[P.IndividualWantRequest(ref=ref("elsewhere/x"))]),
            grpc.StatusCode.INVALID_ARGUMENT, "elsewhere/x")

    def test_taints(self):
        r = self.api.PutTaints(P.PutTaintsRequest(refs=[ref("reviews/date=2026-01-01")],
                                                  source=P.SourceType(code=P.SCHEDULED),
                                                  comment="py taint"), timeout=10)
        t = self.api.GetTaintSummary(P.TaintSummaryRequest(taint_id=r.taint_id), timeout=10).taint
        self.assertEqual(t.comment, "py taint")
        self.assertEqual(t.source.code, P.SCHEDULED)
        self.assertEqual([x.str for x in t.refs], ["reviews/date=2026-01-01"])
        listed = self.api.ListTaints(P.ListTaintsRequest(), timeout=10)
        self.assertIn(r.taint_id, [x.taint_id for x in listed.taints])
        s = self.api.GetPartitionsSummary(P.PartitionSummaryRequest(
            ref=ref("reviews/date=2026-01-01")), timeout=10).partition
        self.assertGreaterEqual(s.last_invalidated_at, t.tainted_at)
        self.assert_code(self.api.PutTaints, P.PutTaintsRequest(),
                         grpc.StatusCode.INVALID_ARGUMENT, "refs")


    # ------------------------------------------- execution state (issue 12)

    def test_zz_execution_and_cancel(self):
        """QueryOps.GetBuildExecution, the attempt links GetJobRunSummary
        carries in field 1001, and QueryOps.CancelJobRun, from seed stubs.
        Named to run last: it adds a build the other tests do not expect.
        BuildEvent.execution_event (110) is not in the seed, so it goes into
        seed BuildEvents as an unknown field, exactly as the graph service's
        events reach a seed-generated reader."""
        br, t0 = "b-exec", T0 + 1000 * SEC

        def with_execution(ts, x):
            base = P.BuildEvent(event_id=str(uuid.uuid4()), timestamp=ts,
                                build_request_id=br).SerializeToString()
            body = x.SerializeToString()
            n, length = len(body), b""
            while True:
                length += bytes([(n & 0x7F) | (0x80 if n > 0x7F else 0)])
                n >>= 7
                if not n:
                    break
            return P.BuildEvent.FromString(base + bytes([0xF2, 0x06]) + length + body)

        def attempt(run, n, status, result=0):
            return E.ExecutionAttempt(job_run_id=run, attempt=n, status=status, result=result)

        A = E.ExecutionAttempt
        task = dict(job_label="//py:ingest", outputs=["reviews/date=2026-02-01"], critical=True)
        x1 = attempt("x-1", 1, A.ENDED, A.FAILED_TRANSIENTLY)
        x2 = attempt("x-2", 2, A.ENDED, A.FAILED_TRANSIENTLY)
        snap2 = E.JobRunSnapshot(job_run_id="x-2", attempt=2, status=A.ENDED,
                                 result=A.FAILED_TRANSIENTLY)
        L = E.ExecutionLogEntry
        evs = [
            br_event(br, t0 + 1, P.BUILD_REQUEST_RECEIVED, ["reviews/date=2026-02-01"]),
            with_execution(t0 + 2, E.ExecutionEvent(entry=L(
                time=t0 + 2, requirement_changed=L.RequirementChanged(
                    tasks=[E.TaskExecution(**task)], message="planned")))),
            job_event(br, t0 + 3, "x-1", "//py:ingest", P.JOB_FAILED, "reviews/date=2026-02-01"),
            with_execution(t0 + 3, E.ExecutionEvent(
                entry=L(time=t0 + 3, job_runs_ended=L.JobRunsEnded(job_runs=[E.JobRunSnapshot(
                    job_run_id="x-1", attempt=1, status=A.ENDED, result=A.FAILED_TRANSIENTLY)])),
                execution=E.TaskExecution(attempts=[x1], used_quota=1, **task),
                used_global_quota=1)),
            job_event(br, t0 + 4, "x-2", "//py:ingest", P.JOB_FAILED, "reviews/date=2026-02-01"),
            with_execution(t0 + 4, E.ExecutionEvent(
                entry=L(time=t0 + 4, job_runs_ended=L.JobRunsEnded(job_runs=[snap2])),
                execution=E.TaskExecution(attempts=[x1, x2], used_quota=2, **task),
                used_global_quota=2)),
            with_execution(t0 + 5, E.ExecutionEvent(
                entry=L(time=t0 + 5, retry_denied=L.RetryDenied(job_runs=[snap2],
                                                                 reason="insufficient quota")),
                execution=E.TaskExecution(attempts=[x1, x2], used_quota=2, **task),
                used_global_quota=2)),
            job_event(br, t0 + 6, "x-3", "//py:ingest", P.JOB_SCHEDULED, "other/1"),
        ]
        el = X[0].EventLogStub(self.channels[0])
        el.Append(X[1].AppendRequest(events=evs), timeout=10)

        r = self.ops.GetBuildExecution(X[1].BuildExecutionRequest(build_request_id=br), timeout=10)
        self.assertEqual(r.build_request_id, br)
        self.assertEqual(r.state.status, X[1].BuildExecutionState.RUNNING)
        self.assertEqual(r.state.used_global_quota, 2)
        [te] = r.state.executions
        self.assertEqual(list(te.outputs), ["reviews/date=2026-02-01"])
        self.assertEqual([(a.job_run_id, a.attempt, a.status, a.result) for a in te.attempts],
                         [("x-1", 1, A.ENDED, A.FAILED_TRANSIENTLY),
                          ("x-2", 2, A.ENDED, A.FAILED_TRANSIENTLY)])
        self.assertEqual(te.used_quota, 2)
        self.assertEqual(list(r.state.failures.unsuccessful_job_run_ids), ["x-1", "x-2"])
        self.assertEqual([e.WhichOneof("kind") for e in r.log],
                         ["requirement_changed", "job_runs_ended", "job_runs_ended",
                          "retry_denied"])
        self.assertEqual(r.log[-1].retry_denied.reason, "insufficient quota")
        self.assert_code(self.ops.GetBuildExecution,
                         X[1].BuildExecutionRequest(build_request_id="b-nope"),
                         grpc.StatusCode.NOT_FOUND, "b-nope")

        # the attempt links ride in GetJobRunSummary as field 1001
        s = self.api.GetJobRunSummary(P.JobRunSummaryRequest(job_run_id="x-2"), timeout=10)
        self.assertEqual(s.job_run.job_run_id, "x-2")
        links = X[1].JobRunSummaryResponseExt.FromString(s.SerializeToString()).attempt_links
        self.assertEqual((links.attempt, links.previous_job_run_id, links.next_job_run_id),
                         (2, "x-1", ""))

        c = self.ops.CancelJobRun(X[1].JobRunCancelRequest(job_run_id="x-3", reason="py"),
                                  timeout=10)
        self.assertEqual(c.build_request_id, br)
        self.assert_code(self.ops.CancelJobRun, X[1].JobRunCancelRequest(job_run_id="x-1"),
                         grpc.StatusCode.FAILED_PRECONDITION, "already ended")
        self.assert_code(self.ops.CancelJobRun, X[1].JobRunCancelRequest(job_run_id="x-9"),
                         grpc.StatusCode.NOT_FOUND, "x-9")
        page = el.List(X[1].ListEventsRequest(filter=P.EventFilter(job_run_ids=["x-3"])),
                       timeout=10)
        cancels = [e for e in page.events if e.WhichOneof("event_type") == "job_run_cancel_event"]
        self.assertEqual(len(cancels), 1)
        self.assertEqual(cancels[0].build_request_id, br)
        self.assertEqual(cancels[0].job_run_cancel_event.reason, "py")


if __name__ == "__main__":
    unittest.main(verbosity=2)
