#!/usr/bin/python3
"""The event log from an independent client: stock python3-grpcio with stubs
generated from proto/ at run time. Starts databuild-eventlog against a fresh
database and checks Append, List, Subscribe, health and error codes on the
wire. Run by ctest (python/test_eventlog_grpc) or by hand:

    DBLD_BIN_DIR=build DBLD_SOURCE_DIR=. /usr/bin/python3 tests/python/test_eventlog_grpc.py
"""

import os
import queue
import shutil
import sys
import tempfile
import threading
import time
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dbld_testlib as lib  # noqa: E402

import grpc  # noqa: E402

S = None  # generated stubs


class EventLogOverGrpc(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        global S
        cls.tmp = tempfile.mkdtemp(prefix="dbld-pytest-")
        cls.cluster = cls.db = cls.svc = cls.channel = None
        try:
            S = lib.generate_stubs(os.path.join(cls.tmp, "gen"))
            server_dsn, cls.cluster = lib.postgres()
            cls.db = lib.Database(server_dsn, "grpc")
            cls.svc = lib.Service("eventlog", cls.db.dsn, cls.tmp)
            cls.channel = grpc.insecure_channel(cls.svc.addr)
            cls.health = S.health_grpc.HealthStub(cls.channel)
            cls.stub = S.ext_grpc.EventLogStub(cls.channel)
            cls.svc.wait_serving(lambda name: cls.health.Check(
                S.health.HealthCheckRequest(service=name), timeout=2).status)
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        failed = False
        if cls.channel:
            cls.channel.close()
        if cls.svc:
            rc = cls.svc.stop()
            if rc != 0:
                print("eventlog exited with %s after SIGTERM, want 0\n%s" %
                      (rc, cls.svc.log_text()), file=sys.stderr)
                failed = True
        if cls.db:
            cls.db.drop()
        if cls.cluster:
            cls.cluster.destroy()
        shutil.rmtree(cls.tmp, ignore_errors=True)
        if failed:
            raise AssertionError("eventlog did not exit 0 on SIGTERM")

    # ----------------------------------------------------------- helpers

    def br(self):
        return "br-py-" + uuid.uuid4().hex[:10]

    def partition_event(self, br, ref, status=None, run="", ts=1767225600000000000):
        pb = S.pb
        return pb.BuildEvent(
            event_id=str(uuid.uuid4()), timestamp=ts, build_request_id=br,
            partition_event=pb.PartitionEvent(
                partition_ref=pb.PartitionRef(str=ref),
                status_code=status if status is not None else pb.PARTITION_AVAILABLE,
                status_name="available", job_run_id=run))

    def all_kinds(self, br):
        pb = S.pb
        ref = lambda s: pb.PartitionRef(str=s)  # noqa: E731
        src = pb.SourceType(code=pb.SCHEDULED, name="scheduled")
        cfg = pb.JobConfig(outputs=[ref("py/a")], args=["--x", "\u00e9"],
                           inputs=[pb.DataDep(dep_type_code=pb.MATERIALIZE,
                                              dep_type_name="materialize",
                                              partition_ref=ref("py/in"))],
                           env={"A": "1", "B": "2"})
        ExecutionEvent = type(pb.BuildEvent().execution_event)
        TaskExecution = type(ExecutionEvent().execution)
        Attempt = type(TaskExecution().attempts.add())
        payloads = [
            ("build_request_event", pb.BuildRequestEvent(
                status=pb.BuildRequestStatus(code=pb.BUILD_REQUEST_RECEIVED, name="received"),
                requested_partitions=[ref("py/a")], message="m", comment="c", want_id="w")),
            ("partition_event", pb.PartitionEvent(partition_ref=ref("py/a"),
                                                  status_code=pb.PARTITION_BUILDING,
                                                  job_run_id="run-py")),
            ("job_event", pb.JobEvent(
                job_run_id="run-py", job_label=pb.JobLabel(label="//py:job"),
                target_partitions=[ref("py/a")], status_code=pb.JOB_COMPLETED, config=cfg,
                manifests=[pb.PartitionManifest(outputs=[ref("py/a")], start_time=1, end_time=2,
                                                task=pb.Task(job=pb.JobLabel(label="//py:job"),
                                                             config=cfg),
                                                metadata={"rows": "3"})])),
            ("delegation_event", pb.DelegationEvent(partition_ref=ref("py/a"),
                                                    delegated_to_build_request_id="other")),
            ("job_graph_event", pb.JobGraphEvent(job_graph=pb.JobGraph(
                label=pb.GraphLabel(label="//py:graph"), outputs=[ref("py/a")],
                nodes=[pb.Task(job=pb.JobLabel(label="//py:job"), config=cfg)]))),
            ("partition_invalidation_event", pb.PartitionInvalidationEvent(
                partition_ref=ref("py/a"), reason="r")),
            ("job_run_cancel_event", pb.JobRunCancelEvent(job_run_id="run-py", reason="r")),
            ("build_cancel_event", pb.BuildCancelEvent(reason="r")),
            ("want_event", pb.WantEvent(requested_partitions=[ref("py/a")], want_id="w",
                                        source=pb.WantSource(source_type=src), comment="c")),
            ("taint_event", pb.TaintEvent(refs=[ref("py/a")], created_at=5, source_type=src,
                                          comment="c")),
            # not in the seed: the execution state (databuild_exec.proto, field 110)
            ("execution_event", ExecutionEvent(
                execution=TaskExecution(job_label="//py:job", outputs=["py/a"], used_quota=1,
                                        attempts=[Attempt(job_run_id="run-py", attempt=1)]),
                used_global_quota=1)),
            ("process_run_event", pb.ProcessRunEvent(process_name="p", instance="i",
                                                     lease_token=1, state=5, items=2,
                                                     build_request_ids=[br])),
        ]
        evs = []
        for i, (field, payload) in enumerate(payloads):
            e = pb.BuildEvent(event_id=str(uuid.uuid4()), timestamp=1767225600000000000 + i,
                              build_request_id=br)
            getattr(e, field).CopyFrom(payload)
            evs.append(e)
        return evs

    def append(self, events, timeout=10):
        return self.stub.Append(S.ext.AppendRequest(events=events), timeout=timeout)

    def list_all(self, flt, limit=0):
        out, start = [], 0
        while True:
            page = self.stub.List(S.ext.ListEventsRequest(filter=flt, start_idx=start,
                                                          limit=limit), timeout=10)
            out.extend(page.events)
            if not page.has_more:
                return out
            self.assertGreater(page.next_idx, start)
            start = page.next_idx

    def assert_code(self, call, code, contains=()):
        with self.assertRaises(grpc.RpcError) as cm:
            call()
        self.assertEqual(cm.exception.code(), code, cm.exception.details())
        for s in contains:
            self.assertIn(s, cm.exception.details())

    # ------------------------------------------------------------- tests

    def test_health(self):
        for name in ("", "databuild.v1.EventLog"):
            r = self.health.Check(S.health.HealthCheckRequest(service=name), timeout=5)
            self.assertEqual(r.status, S.health.HealthCheckResponse.SERVING, name)
        self.assert_code(lambda: self.health.Check(
            S.health.HealthCheckRequest(service="no.such.Service"), timeout=5),
            grpc.StatusCode.NOT_FOUND)

    def test_round_trip_all_kinds(self):
        br = self.br()
        evs = self.all_kinds(br)
        self.assertEqual(sorted(e.WhichOneof("event_type") for e in evs),
                         sorted(f.name for f in S.pb.BuildEvent.DESCRIPTOR.oneofs_by_name[
                             "event_type"].fields))
        r = self.append(evs)
        self.assertEqual([a.event_id for a in r.events], [e.event_id for e in evs])
        self.assertFalse(any(a.duplicate for a in r.events))
        idx = [a.idx for a in r.events]
        self.assertEqual(idx, sorted(set(idx)))
        got = self.list_all(S.pb.EventFilter(build_request_ids=[br]))
        self.assertEqual(len(got), len(evs))
        for sent, back in zip(evs, got):
            self.assertEqual(sent, back)

    def test_server_fills_id_and_timestamp(self):
        br = self.br()
        e = self.partition_event(br, "py/fill", ts=0)
        e.event_id = ""
        before = time.time_ns()
        r = self.append([e])
        after = time.time_ns()
        gen = r.events[0].event_id
        self.assertEqual(str(uuid.UUID(gen)), gen.lower())
        (back,) = self.list_all(S.pb.EventFilter(build_request_ids=[br]))
        self.assertEqual(back.event_id, gen)
        self.assertTrue(before <= back.timestamp <= after, (before, back.timestamp, after))

    def test_append_errors(self):
        br = self.br()
        self.assert_code(lambda: self.append([]), grpc.StatusCode.INVALID_ARGUMENT)
        ok = self.partition_event(br, "py/ok")
        empty = S.pb.BuildEvent(event_id=str(uuid.uuid4()), build_request_id=br)
        self.assert_code(lambda: self.append([ok, empty]), grpc.StatusCode.INVALID_ARGUMENT,
                         ("event 1", "event_type"))
        bad = self.partition_event(br, "py/bad")
        bad.event_id = "definitely-not-a-uuid"
        self.assert_code(lambda: self.append([ok, bad]), grpc.StatusCode.INVALID_ARGUMENT,
                         ("definitely-not-a-uuid",))
        self.assertEqual(self.list_all(S.pb.EventFilter(build_request_ids=[br])), [])

    def test_idempotent(self):
        br = self.br()
        e1, e2 = self.partition_event(br, "py/i1"), self.partition_event(br, "py/i2")
        first = self.append([e1]).events[0]
        again = self.append([e2, e1, e2]).events
        self.assertFalse(again[0].duplicate)
        self.assertTrue(again[1].duplicate)
        self.assertEqual(again[1].idx, first.idx)
        self.assertTrue(again[2].duplicate)
        self.assertEqual(again[2].idx, again[0].idx)
        got = self.list_all(S.pb.EventFilter(build_request_ids=[br]))
        self.assertEqual([g.event_id for g in got], [e1.event_id, e2.event_id])

    def test_filters_and_paging(self):
        br = self.br()
        evs = [self.partition_event(br, "py/page/p=%d" % i, run="run-%d" % (i % 3))
               for i in range(37)]
        idx = [a.idx for a in list(self.append(evs[:20]).events) + list(self.append(evs[20:]).events)]
        flt = S.pb.EventFilter(build_request_ids=[br])
        for limit in (1, 5, 36, 37, 0):
            got = self.list_all(flt, limit)
            self.assertEqual([g.event_id for g in got], [e.event_id for e in evs], limit)
        page = self.stub.List(S.ext.ListEventsRequest(filter=flt, start_idx=idx[10], limit=5),
                              timeout=10)
        self.assertEqual([g.event_id for g in page.events], [e.event_id for e in evs[10:15]])
        self.assertEqual(page.next_idx, idx[14] + 1)
        self.assertTrue(page.has_more)
        # AND across fields, OR within one; patterns match whole refs
        got = self.list_all(S.pb.EventFilter(build_request_ids=[br], job_run_ids=["run-1"],
                                             partition_patterns=["py/page/p=1[0-9]",
                                                                 "py/page/p=2"]))
        want = [e.event_id for i, e in enumerate(evs)
                if i % 3 == 1 and (10 <= i <= 19 or i == 2)]
        self.assertEqual([g.event_id for g in got], want)
        self.assertEqual(self.list_all(S.pb.EventFilter(build_request_ids=[br],
                                                        partition_patterns=["p=1"])), [])
        got = self.list_all(S.pb.EventFilter(partition_refs=["py/page/p=7", "py/page/p=8"]))
        self.assertEqual([g.event_id for g in got], [evs[7].event_id, evs[8].event_id])
        self.assert_code(lambda: self.stub.List(S.ext.ListEventsRequest(
            filter=S.pb.EventFilter(partition_patterns=["py/(broken"])), timeout=10),
            grpc.StatusCode.INVALID_ARGUMENT, ("py/(broken",))

    def test_subscribe_past_and_live(self):
        br = self.br()
        past = [self.partition_event(br, "py/sub/p=%d" % i) for i in range(5)]
        past_idx = [a.idx for a in self.append(past).events]
        stream = self.stub.Subscribe(S.ext.SubscribeRequest(
            filter=S.pb.EventFilter(build_request_ids=[br]), start_idx=0))
        q = queue.Queue()

        def reader():
            try:
                for ie in stream:
                    q.put(ie)
            except grpc.RpcError as e:
                q.put(e)

        t = threading.Thread(target=reader, daemon=True)
        t.start()
        try:
            for e, i in zip(past, past_idx):
                ie = q.get(timeout=10)
                self.assertNotIsInstance(ie, Exception)
                self.assertEqual((ie.idx, ie.event), (i, e))
            self.append([self.partition_event(self.br(), "py/other")])  # filtered out
            live = [self.partition_event(br, "py/sub/live=%d" % i) for i in range(3)]
            for e in live:
                i = self.append([e]).events[0].idx
                ie = q.get(timeout=10)
                self.assertNotIsInstance(ie, Exception)
                self.assertEqual((ie.idx, ie.event), (i, e))
            with self.assertRaises(queue.Empty):
                q.get(timeout=1.0)
        finally:
            stream.cancel()
            t.join(10)
        err = q.get(timeout=5)
        self.assertIsInstance(err, grpc.RpcError)
        self.assertEqual(err.code(), grpc.StatusCode.CANCELLED)

    def test_bad_bytes_and_unknown_method(self):
        raw = lambda path: self.channel.unary_unary(path)  # noqa: E731  (bytes in, bytes out)
        self.assert_code(lambda: raw("/databuild.v1.EventLog/Append")(b"\xff\xff\xff", timeout=5),
                         grpc.StatusCode.INVALID_ARGUMENT)
        self.assert_code(lambda: raw("/databuild.v1.EventLog/Nope")(b"", timeout=5),
                         grpc.StatusCode.UNIMPLEMENTED)
        self.assert_code(lambda: raw("/no.such.Service/Append")(b"", timeout=5),
                         grpc.StatusCode.UNIMPLEMENTED)
        # still serving
        r = self.health.Check(S.health.HealthCheckRequest(service=""), timeout=5)
        self.assertEqual(r.status, S.health.HealthCheckResponse.SERVING)
        self.assertIsNone(self.svc.proc.poll())


if __name__ == "__main__":
    unittest.main(verbosity=2)
