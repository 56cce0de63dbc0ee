#!/usr/bin/python3
"""make_seeds.py - (re)write the seed inputs of tests/fuzz/corpus/*/seed-*.

Seeds are real messages: the example pipeline's refs, labels and jobs
(examples/), its configuration file, its jobs' `config` output, log lines
of the shapes its jobs print, and one filled-in request per RPC of every
service (field values chosen by field name, as the example pipeline would
send them). Inputs found by fuzzing that are worth keeping (regressions)
are named regress-*; this script leaves those alone.

Usage: tests/fuzz/make_seeds.py   (Debian's /usr/bin/python3 with python3-protobuf, protoc)
"""
import glob
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "python"))
import dbld_testlib  # noqa: E402  (generates the Python protobuf modules)

from google.protobuf import json_format  # noqa: E402
from google.protobuf.descriptor import FieldDescriptor as FD  # noqa: E402

REFS = ["raw/reviews/date=2025-01-01", "agg/category=books/date=2025-01-01",
        "report/week=2025-W01"]
LABELS = ["//examples/reviews:ingest", "//examples/reviews:aggregate",
          "//examples/reviews:weekly_report"]
UUID = "5f0c3d1e-8a7b-4c2d-9e1f-0a1b2c3d4e5f"


def value_for(field, i):
    n = field.name
    if n in ("ref", "refs", "str", "held_ref", "partition_refs", "last_partition") or "partition" in n:
        return REFS[i % len(REFS)]
    if n.endswith("_id") or n.endswith("_ids") or n in ("owner", "previous_owner"):
        return UUID
    if "label" in n or n == "run_jobs":
        return LABELS[i % len(LABELS)]
    if "pattern" in n:
        return "reviews/.*"
    if n in ("args",):
        return ["--date", "2025-01-01"][i % 2]
    if n == "comment" or n == "reason":
        return "nightly rebuild"
    if n == "timestamp":
        return "1735689600000000000"
    return "value %d" % i


def fill(msg, depth=0):
    """Fill every field of msg (one arm of each oneof, two items of lists)."""
    seen_oneofs = set()
    for f in msg.DESCRIPTOR.fields:
        if f.containing_oneof is not None:
            if f.containing_oneof.name in seen_oneofs or depth > 3:
                continue
            seen_oneofs.add(f.containing_oneof.name)
        count = 2 if f.label == FD.LABEL_REPEATED else 1
        for i in range(count):
            if f.type == FD.TYPE_MESSAGE:
                if depth > 4:
                    break
                if f.message_type.GetOptions().map_entry:
                    vf = f.message_type.fields_by_name["value"]
                    if vf.type == FD.TYPE_MESSAGE:
                        fill(getattr(msg, f.name)["KEY_%d" % i], depth + 1)
                    elif vf.type == FD.TYPE_STRING:
                        getattr(msg, f.name)["KEY_%d" % i] = "v%d" % i
                    continue
                sub = getattr(msg, f.name).add() if count == 2 else getattr(msg, f.name)
                fill(sub, depth + 1)
                if count == 1:
                    sub.SetInParent()
            elif f.type == FD.TYPE_STRING:
                v = value_for(f, i)
                getattr(msg, f.name).append(v) if count == 2 else setattr(msg, f.name, v)
            elif f.type == FD.TYPE_ENUM:
                v = f.enum_type.values[min(1, len(f.enum_type.values) - 1)].number
                getattr(msg, f.name).append(v) if count == 2 else setattr(msg, f.name, v)
            elif f.type == FD.TYPE_BOOL:
                getattr(msg, f.name).append(True) if count == 2 else setattr(msg, f.name, True)
            elif f.type in (FD.TYPE_DOUBLE, FD.TYPE_FLOAT):
                getattr(msg, f.name).append(1.5) if count == 2 else setattr(msg, f.name, 1.5)
            elif f.type != FD.TYPE_BYTES:
                getattr(msg, f.name).append(7) if count == 2 else setattr(msg, f.name, 7)
    return msg


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def method_requests(*mods):
    """(service file, method name, request class) of every RPC."""
    out = []
    for mod in mods:
        for svc in mod.DESCRIPTOR.services_by_name.values():
            for m in svc.methods:
                cls = None
                for cand in mods:
                    cls = getattr(cand, m.input_type.name, None)
                    if cls is not None and cls.DESCRIPTOR.full_name == m.input_type.full_name:
                        break
                    cls = None
                out.append((svc.full_name, m.name, cls))
    return out


def main():
    tmp = tempfile.mkdtemp(prefix="dbld-seeds-")
    ns = dbld_testlib.generate_stubs(tmp)
    pb, ext, health, proc = ns.pb, ns.ext, ns.health, ns.proc

    # ---- JSON: what the project reads as JSON
    types = [pb.JobConfigureResponse, pb.BuildEvent, pb.MetricPoint, pb.JobLogEntry]
    for k, job in enumerate(["ingest_reviews.py", "aggregate_category.py", "weekly_report.py"]):
        out = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "jobs", job), "config",
                              REFS[k]], capture_output=True, check=True, cwd=ROOT).stdout
        write("fuzz_json", "config-" + job.split(".")[0], bytes([0]) + out)
    ev = pb.BuildEvent()
    for i, f in enumerate(ev.DESCRIPTOR.oneofs_by_name["event_type"].fields):
        e = pb.BuildEvent(event_id=UUID, timestamp=1735689600000000000,
                          build_request_id=UUID)
        fill(getattr(e, f.name), 1)
        getattr(e, f.name).SetInParent()
        text = json_format.MessageToJson(e).encode()
        write("fuzz_json", "event-" + f.name, bytes([1 | (i % 8) << 2]) + text)
    write("fuzz_json", "metric", bytes([2]) + b'{"name":"rows","value":"512","labels":{"k":"v"}}')
    write("fuzz_json", "logentry",
          bytes([3]) + json_format.MessageToJson(fill(pb.JobLogEntry())).encode())

    # ---- wire: one filled-in request per RPC, by the target's numbering
    reqs = {}
    for svc, name, cls in method_requests(pb, ext, health, proc):
        reqs["/%s/%s" % (svc, name)] = cls
    def cls(name):
        for mod in (pb, ext, health):
            if hasattr(mod, name):
                return getattr(mod, name)
        raise KeyError(name)
    wire_order = [cls(n) for n in (
        "AppendRequest ListEventsRequest SubscribeRequest ClaimRequest ReleaseRequest "
        "PartitionStatusRequest RenewLeasesRequest OrphansRequest AppendJobLogsRequest "
        "JobLogsRequest JobConfigureRequest JobExecuteRequest RunJobRequest CancelJobRunRequest "
        "GraphLookupRequest GraphAnalyzeRequest GraphBuildRequest SubmitBuildRequest "
        "CancelBuildRequest ListBuildEventsRequest BatchedRequest ListBuildsRequest "
        "BuildSummaryRequest ListPartitionsRequest PartitionSummaryRequest ListJobsRequest "
        "JobSummaryRequest ListJobRunsRequest JobRunSummaryRequest ListWantsRequest "
        "WantSummaryRequest PutWantsRequest ListTaintsRequest TaintSummaryRequest "
        "PutTaintsRequest HealthCheckRequest").split()]
    for i, c in enumerate(wire_order):
        write("fuzz_wire", c.DESCRIPTOR.name, bytes([i]) + fill(c()).SerializeToString())

    # ---- per service: the order of the C method tables (paths grep'd from the sources)
    tables = {
        "fuzz_req_eventlog": ["services/eventlog/eventlog_rpc.c", "services/eventlog/claims_rpc.c",
                              "services/eventlog/leases_rpc.c", "services/eventlog/joblogs_rpc.c",
                              "services/eventlog/processes_rpc.c"],
        "fuzz_req_job": ["services/job/job_rpc.c"],
        "fuzz_req_graph": ["services/graph/graph_rpc.c"],
        "fuzz_req_query": ["services/query/service.c"],
    }
    import re
    for target, files in tables.items():
        paths = []
        for f in files:
            text = open(os.path.join(ROOT, f)).read()
            if target == "fuzz_req_query":
                for m in re.finditer(r'M(?:_FLAGS)?\("(\w+)"', text):
                    paths.append("/databuild.v1.DataBuildService/" + m.group(1))
                paths += re.findall(r'"(/databuild\.v1\.QueryOps/\w+)"', text)
                paths += ["/databuild.v1.Processes/" + n for n in re.findall(r'\bP\("(\w+)"', text)]
            elif f.endswith("processes_rpc.c"):
                paths += ["/databuild.v1.ProcessStore/" + n for n in re.findall(r'\bM\("(\w+)"', text)]
            else:
                paths += re.findall(r'\{"(/databuild\.v1\.\w+/\w+)"', text)
        for i, p in enumerate(paths):
            msg = fill(reqs[p]())
            write(target, "%02d-%s" % (i, p.rsplit("/", 1)[1]), bytes([i]) + msg.SerializeToString())

    # ---- JSON dictionary: every field name (both spellings) and enum value name
    words = set()
    for mod in (pb, ext):
        for m in list(mod.DESCRIPTOR.message_types_by_name.values()):
            stack = [m]
            while stack:
                d = stack.pop()
                stack.extend(d.nested_types)
                for f in d.fields:
                    words.add('"%s":' % f.name)
                    words.add('"%s":' % f.json_name)
        for e in mod.DESCRIPTOR.enum_types_by_name.values():
            for v in e.values:
                words.add('"%s"' % v.name)
    with open(os.path.join(HERE, "fuzz_json.dict"), "w") as f:
        f.write("# fuzz_json: field names and enum values of proto/ (tests/fuzz/make_seeds.py)\n")
        for w in sorted(words):
            f.write('"%s"\n' % w.replace("\\", "\\\\").replace('"', '\\"'))

    # ---- config: the real files
    for f in [os.path.join(ROOT, "examples", "databuild.yaml")] + \
            glob.glob(os.path.join(ROOT, "deploy", "**", "*.yaml"), recursive=True):
        with open(f, "rb") as fh:
            write("fuzz_config", os.path.relpath(f, ROOT).replace("/", "_"), fh.read())

    # ---- rxoverlap: the example graph's output patterns, pairwise, plus probes
    pats = [b"raw/reviews/date=[0-9]{4}-[0-9]{2}-[0-9]{2}",
            b"agg/category=[a-z_]+/date=[0-9]{4}-[0-9]{2}-[0-9]{2}",
            b"report/week=[0-9]{4}-W[0-9]{2}", b"reviews/.*", b"(a|b)*c{2,3}[[:alpha:]]?"]
    for i, a in enumerate(pats):
        for j, b in enumerate(pats):
            if i < j or (i == j == 4):
                write("fuzz_rxoverlap", "%d-%d" % (i, j),
                      a + b"\0" + b + b"\0" + REFS[(i + j) % 3].encode() + b"\0\x07\x13\x2a")

    # ---- text[]: literals as PostgreSQL prints them
    for k, lit in enumerate([b'{}', b'{raw/reviews/date=2025-01-01,"agg/category=books/date=2025-01-01"}',
                             b'{"with space","quote\\"inside","back\\\\slash",NULL,"NULL"}',
                             b'{"}","{","",","}']):
        write("fuzz_text_array", str(k), lit)

    # ---- joblog: output as the example jobs print it (header: 3 chunk sizes)
    lines = (b"ingest raw/reviews/date=2025-01-01: 512 reviews\n"
             b'{"level":"info","msg":"wrote reviews.jsonl","rows":512,"path":"var/data"}\n'
             b'{"name":"rows_written","value":512,"labels":{"category":"books"}}\n'
             b"\xff\xfe not utf-8 \x00 with a NUL\n"
             b"a last line without a newline")
    write("fuzz_joblog", "example", bytes([0x02, 7, 0x83, 1]) + lines)
    write("fuzz_joblog", "stderr", bytes([0x08, 0x40]) + b"Traceback (most recent call last):\n  x\n")


if __name__ == "__main__":
    main()
