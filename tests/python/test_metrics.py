#!/usr/bin/python3
"""Prometheus metrics of all four services, checked by the real tools.

The suite runs with metrics_listen set on every service; a build goes
through it (CLI -> graph -> job -> event log, the query service read), and
then:
  - each service's /metrics passes `promtool check metrics` and carries the
    grpc-ecosystem series and process_* series;
  - a real Prometheus server (Debian's package), started here on loopback
    with a 1 s scrape interval, scrapes the four services, and its HTTP API
    answers the questions an operator asks: Appends handled, a job-run
    duration histogram for the test job, resident memory of every service,
    builds by status.
Run by ctest (python/test_metrics) or by hand:

    DBLD_BIN_DIR=build DBLD_SOURCE_DIR=. /usr/bin/python3 tests/python/test_metrics.py
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dbld_testlib as lib  # noqa: E402

import grpc  # noqa: E402

S = None
KINDS = ("eventlog", "job", "graph", "query")


def http_get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


class Metrics(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        global S
        cls.tmp = tempfile.mkdtemp(prefix="dbld-pymetrics-")
        cls.cluster = cls.db = cls.prom = None
        cls.svcs = {}
        try:
            S = lib.generate_stubs(os.path.join(cls.tmp, "gen"))
            server_dsn, cls.cluster = lib.postgres()
            cls.db = lib.Database(server_dsn, "metrics")
            cls.start_suite()
            cls.start_prometheus()
            cls.build()
        except Exception:
            cls.tearDownClass()
            raise

    @classmethod
    def start_suite(cls):
        state = os.path.join(cls.tmp, "jobstate")
        os.makedirs(state)
        spec = os.path.join(cls.tmp, "spec.json")
        with open(spec, "w") as f:
            json.dump({"state": state, "rules": [
                {"match": "agg/(.*)", "inputs": ["raw/\\1"]}, {"match": "raw/.*"}]}, f)
        job = os.path.join(lib.SOURCE_DIR, "tests", "jobs", "graph_job.py")
        jobs = ["  jobs:",
                "    - label: //m:raw",
                "      command: [python3, %s, --spec, %s]" % (job, spec),
                "      outputs: [\"raw/.*\"]",
                "    - label: //m:agg",
                "      command: [python3, %s, --spec, %s]" % (job, spec),
                "      outputs: [\"agg/.*\"]"]
        ports = {k: lib.free_port() for k in KINDS}
        cls.mports = {k: lib.free_port() for k in KINDS}
        peers = {k: "127.0.0.1:%d" % p for k, p in ports.items()}
        for kind in KINDS:
            extra = ["  metrics_listen: \"127.0.0.1:%d\"" % cls.mports[kind]]
            extra += jobs if kind == "graph" else (["graph:"] + jobs if kind == "job" else [])
            cls.svcs[kind] = lib.Service(kind, cls.db.dsn, cls.tmp, peers=peers, extra=extra,
                                         port=ports[kind])
        cls.peers = peers
        for svc in cls.svcs.values():
            ch = grpc.insecure_channel(svc.addr)
            stub = S.health_grpc.HealthStub(ch)
            svc.wait_serving(lambda n, stub=stub: stub.Check(
                S.health.HealthCheckRequest(service=n), timeout=2).status)
            ch.close()

    @classmethod
    def start_prometheus(cls):
        prom = shutil.which("prometheus")
        if not prom:
            raise RuntimeError("prometheus not installed (./dev deps installs it)")
        cls.prom_port = lib.free_port()
        cfg = os.path.join(cls.tmp, "prometheus.yml")
        with open(cfg, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                    "scrape_configs:\n")
            for kind in KINDS:
                f.write("  - job_name: %s\n    static_configs:\n"
                        "      - targets: ['127.0.0.1:%d']\n" % (kind, cls.mports[kind]))
        log = open(os.path.join(cls.tmp, "prometheus.log"), "wb")
        cls.prom = subprocess.Popen(
            [prom, "--config.file=" + cfg, "--storage.tsdb.path=" + os.path.join(cls.tmp, "tsdb"),
             "--web.listen-address=127.0.0.1:%d" % cls.prom_port],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                http_get("http://127.0.0.1:%d/-/ready" % cls.prom_port, timeout=1)
                return
            except Exception:
                time.sleep(0.2)
        raise RuntimeError("prometheus not ready")

    @classmethod
    def build(cls):
        cfg = os.path.join(cls.tmp, "cli.yaml")
        with open(cfg, "w") as f:
            f.write("shared:\n  peers:\n" + "".join(
                "    %s: \"%s\"\n" % (k, v) for k, v in cls.peers.items()))
        env = {k: v for k, v in os.environ.items() if not k.startswith("DATABUILD_")}
        out = subprocess.run([os.path.join(lib.BIN_DIR, "databuild"), "--config", cfg, "build",
                              "agg/1", "agg/2", "agg/3"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env, timeout=120)
        if out.returncode != 0:
            raise RuntimeError("build failed: %s %s" % (out.stdout, out.stderr))

    @classmethod
    def tearDownClass(cls):
        if cls.prom:
            cls.prom.terminate()
            cls.prom.wait(30)
        for svc in cls.svcs.values():
            svc.stop()
        if cls.db:
            cls.db.drop()
        if cls.cluster:
            cls.cluster.destroy()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def scrape(self, kind):
        return http_get("http://127.0.0.1:%d/metrics" % self.mports[kind])

    def test_promtool_accepts_every_service(self):
        for kind in KINDS:
            text = self.scrape(kind)
            r = subprocess.run(["promtool", "check", "metrics"], input=text, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            self.assertEqual(r.returncode, 0, "%s: %s" % (kind, r.stdout))
            for name in ("grpc_server_started_total", "grpc_server_handled_total",
                         "grpc_server_handling_seconds_bucket", "grpc_server_msg_received_total",
                         "grpc_server_msg_sent_total", "process_resident_memory_bytes",
                         "process_cpu_seconds_total", "process_open_fds",
                         "process_start_time_seconds", "process_threads"):
                self.assertTrue(("\n" + name) in ("\n" + text), "%s lacks %s" % (kind, name))
        # the service that called others during the build exports client metrics
        # too (the job service calls the event log only for runs longer than
        # 200 ms, whose logs it stores itself; this build's runs hand theirs back)
        self.assertTrue("grpc_client_handled_total{" in self.scrape("graph"), "graph")
        self.assertTrue('grpc_code="OK"' in self.scrape("eventlog"))

    def wait_for(self, kind, needle, timeout=20):
        """The service's exposition once it contains needle (the CLI returns
        when the partitions are AVAILABLE, a moment before the build ends)."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.scrape(kind)
            if needle in text or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        self.assertIn(needle, text, "%s: no %s" % (kind, needle))
        return text

    def test_domain_metrics(self):
        for name in ("databuild_eventlog_appended_events_total",
                     "databuild_eventlog_commit_batch_events_bucket",
                     "databuild_eventlog_commit_seconds_bucket",
                     "databuild_eventlog_write_queue_events",
                     "databuild_eventlog_subscribe_streams"):
            self.wait_for("eventlog", name)
        self.wait_for("graph", 'databuild_graph_builds_total{status="BUILD_REQUEST_COMPLETED"} 1')
        self.wait_for("graph", 'databuild_graph_tasks_total{state="ok"} 6')
        self.wait_for("graph", 'databuild_graph_job_run_duration_seconds_count'
                               '{job_label="//m:raw",outcome="ok"} 3')
        self.wait_for("job", "databuild_job_running_jobs 0")
        self.wait_for("job", "databuild_job_free_slots 4")
        self.wait_for("query", "databuild_query_db_connections_in_use 0")
        self.wait_for("query", "databuild_query_db_wait_seconds_bucket")

    def query(self, promql):
        url = "http://127.0.0.1:%d/api/v1/query?query=%s" % (self.prom_port,
                                                             urllib.parse.quote(promql))
        body = json.loads(http_get(url))
        self.assertEqual(body["status"], "success", body)
        return body["data"]["result"]

    def poll(self, promql, check, timeout=30):
        deadline = time.monotonic() + timeout
        res = None
        while time.monotonic() < deadline:
            res = self.query(promql)
            if check(res):
                return res
            time.sleep(0.5)
        self.fail("%s: %r" % (promql, res))

    def test_prometheus_scrapes_the_suite(self):
        self.poll('up', lambda r: len(r) == 4 and all(x["value"][1] == "1" for x in r))
        self.poll('sum(grpc_server_handled_total{grpc_method="Append"}) > 0', lambda r: len(r) == 1)
        self.poll('sum(databuild_graph_job_run_duration_seconds_count{job_label="//m:raw"}) >= 3',
                  lambda r: len(r) == 1)
        self.poll('histogram_quantile(0.5, sum by (le) '
                  '(databuild_graph_job_run_duration_seconds_bucket{job_label="//m:agg"}))',
                  lambda r: len(r) == 1 and float(r[0]["value"][1]) > 0)
        r = self.poll('process_resident_memory_bytes', lambda r: len(r) == 4)
        self.assertEqual({x["metric"]["job"] for x in r}, set(KINDS))
        for x in r:
            self.assertGreater(float(x["value"][1]), 1e6)


if __name__ == "__main__":
    unittest.main(verbosity=2)
