#!/usr/bin/python3
"""gRPC server reflection, from an independent client, the way grpcurl uses
it: list the services, fetch the file that defines a service (with its
imports) over one bidirectional stream, build message classes from those
descriptors alone and make a real call with them - no .proto file and no
generated databuild stubs on the client side. Both reflection versions
(v1, v1alpha) are checked. Run by ctest (python/test_reflection) or by hand:

    DBLD_BIN_DIR=build DBLD_SOURCE_DIR=. /usr/bin/python3 tests/python/test_reflection.py
"""

import os
import shutil
import subprocess
import sys
import tempfile
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dbld_testlib as lib  # noqa: E402

import grpc  # noqa: E402
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory  # noqa: E402

R = None  # reflection stubs (grpc.reflection.v1)
V1 = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
V1ALPHA = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"


def reflection_stubs(out_dir):
    protoc = shutil.which("protoc")
    os.makedirs(out_dir, exist_ok=True)
    for sub, name in (("reflection/v1", "reflection.proto"), ("health/v1", "health.proto")):
        src = os.path.join(lib.SOURCE_DIR, "proto", "grpc", sub)
        subprocess.run([protoc, "-I", src, "--python_out=" + out_dir, name], check=True)
    sys.path.insert(0, out_dir)
    import reflection_pb2
    return reflection_pb2


def message_class(pool, name):
    desc = pool.FindMessageTypeByName(name)
    if hasattr(message_factory, "GetMessageClass"):
        return message_factory.GetMessageClass(desc)
    return message_factory.MessageFactory(pool).GetPrototype(desc)


class Reflection(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        global R
        cls.tmp = tempfile.mkdtemp(prefix="dbld-pyrefl-")
        cls.cluster = cls.db = cls.svc = cls.channel = None
        try:
            R = reflection_stubs(os.path.join(cls.tmp, "gen"))
            server_dsn, cls.cluster = lib.postgres()
            cls.db = lib.Database(server_dsn, "refl")
            cls.svc = lib.Service("eventlog", cls.db.dsn, cls.tmp)
            cls.channel = grpc.insecure_channel(cls.svc.addr)
            cls.svc.wait_serving(cls.health_status)
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def health_status(cls, name):
        import health_pb2
        check = cls.channel.unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString)
        return check(health_pb2.HealthCheckRequest(service=name), timeout=2).status

    @classmethod
    def tearDownClass(cls):
        if cls.channel:
            cls.channel.close()
        if cls.svc:
            cls.svc.stop()
        if cls.db:
            cls.db.drop()
        if cls.cluster:
            cls.cluster.destroy()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def ask(self, requests, path=V1):
        call = self.channel.stream_stream(
            path, request_serializer=R.ServerReflectionRequest.SerializeToString,
            response_deserializer=R.ServerReflectionResponse.FromString)
        return list(call(iter(requests), timeout=10))

    def test_list_services(self):
        for path in (V1, V1ALPHA):
            [resp] = self.ask([R.ServerReflectionRequest(list_services="")], path)
            names = {s.name for s in resp.list_services_response.service}
            for want in ("databuild.v1.EventLog", "databuild.v1.PartitionClaims",
                         "databuild.v1.BuildLeases", "databuild.v1.JobLogs",
                         "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection",
                         "grpc.reflection.v1alpha.ServerReflection"):
                self.assertIn(want, names, path)
            self.assertNotIn("databuild.v1.DataBuildService", names)  # not served here

    def test_describe_and_call_without_protos(self):
        [resp] = self.ask([R.ServerReflectionRequest(
            file_containing_symbol="databuild.v1.EventLog")])
        files = [descriptor_pb2.FileDescriptorProto.FromString(b)
                 for b in resp.file_descriptor_response.file_descriptor_proto]
        self.assertEqual(files[0].name, "databuild_ext.proto")
        self.assertIn("databuild.proto", [f.name for f in files])
        # what grpcurl does: a pool from the answer alone, imports first
        pool = descriptor_pool.DescriptorPool()
        added = set()
        byname = {f.name: f for f in files}

        def add(f):
            if f.name in added:
                return
            for dep in f.dependency:
                add(byname[dep])
            pool.Add(f)
            added.add(f.name)
        for f in files:
            add(f)
        svc = pool.FindServiceByName("databuild.v1.EventLog")
        append = svc.FindMethodByName("Append")
        Req = message_class(pool, append.input_type.full_name)
        Resp = message_class(pool, append.output_type.full_name)
        BuildEvent = message_class(pool, "databuild.v1.BuildEvent")
        ev = BuildEvent(event_id=str(uuid.uuid4()), timestamp=1767225600000000000,
                        build_request_id="br-refl")
        ev.build_cancel_event.reason = "described by reflection"
        stub = self.channel.unary_unary("/databuild.v1.EventLog/Append",
                                        request_serializer=Req.SerializeToString,
                                        response_deserializer=Resp.FromString)
        out = stub(Req(events=[ev]), timeout=10)
        self.assertEqual(len(out.events), 1)
        self.assertGreater(out.events[0].idx, 0)
        self.assertEqual(out.events[0].event_id, ev.event_id)

    def test_many_requests_one_stream_and_errors(self):
        reqs = [
            R.ServerReflectionRequest(host="h1", file_containing_symbol="databuild.v1.NoSuch"),
            R.ServerReflectionRequest(file_containing_symbol="databuild.v1.EventLog.Append"),
            R.ServerReflectionRequest(file_by_filename="grpc/health/v1/health.proto"),
            R.ServerReflectionRequest(file_by_filename="nope.proto"),
            R.ServerReflectionRequest(
                file_containing_symbol="databuild.v1.BuildEvent"),
            R.ServerReflectionRequest(
                file_containing_symbol="databuild.v1.PartitionRef"),
            R.ServerReflectionRequest(all_extension_numbers_of_type="databuild.v1.BuildEvent"),
            R.ServerReflectionRequest(all_extension_numbers_of_type="databuild.v1.Nope"),
            R.ServerReflectionRequest(file_containing_extension=R.ExtensionRequest(
                containing_type="databuild.v1.BuildEvent", extension_number=100)),
            R.ServerReflectionRequest(),
        ]
        resp = self.ask(reqs, V1ALPHA)
        self.assertEqual(len(resp), len(reqs))
        for q, r in zip(reqs, resp):
            self.assertEqual(r.original_request, q)
        self.assertEqual(resp[0].valid_host, "h1")
        self.assertEqual(resp[0].error_response.error_code, grpc.StatusCode.NOT_FOUND.value[0])
        self.assertIn("databuild.v1.NoSuch", resp[0].error_response.error_message)
        names = lambda r: [descriptor_pb2.FileDescriptorProto.FromString(b).name  # noqa: E731
                           for b in r.file_descriptor_response.file_descriptor_proto]
        self.assertEqual(names(resp[1])[0], "databuild_ext.proto")
        self.assertEqual(names(resp[2]), ["grpc/health/v1/health.proto"])
        self.assertEqual(resp[3].error_response.error_code, 5)
        self.assertIn("nope.proto", resp[3].error_response.error_message)
        # databuild.proto imports only databuild_exec.proto (the execution state)
        self.assertEqual(names(resp[4]), ["databuild.proto", "databuild_exec.proto"])
        self.assertEqual(names(resp[5]), ["databuild.proto", "databuild_exec.proto"])
        self.assertEqual(resp[6].all_extension_numbers_response.base_type_name,
                         "databuild.v1.BuildEvent")
        self.assertEqual(list(resp[6].all_extension_numbers_response.extension_number), [])
        self.assertEqual(resp[7].error_response.error_code, 5)
        self.assertEqual(resp[8].error_response.error_code, 5)
        self.assertEqual(resp[9].error_response.error_code, grpc.StatusCode.INVALID_ARGUMENT.value[0])

    def test_garbage_request_bytes(self):
        call = self.channel.stream_stream(V1)
        with self.assertRaises(grpc.RpcError) as e:
            list(call(iter([b"\xff\xff\xff"]), timeout=10))
        self.assertEqual(e.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)


if __name__ == "__main__":
    unittest.main(verbosity=2)
