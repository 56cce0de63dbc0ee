"""compose_lib - the compose deployment (deploy/compose.yaml) for the container tests.

Each test starts its own deployment under a unique compose project name
(dbldt<name><pid>x<random>), so runs never collide, with every port
published on a free 127.0.0.1 port, no restart policy (a killed container
stays dead) and short graph leases. The deployment is removed with its
networks and volumes when the test ends (also on failure, SIGTERM or
Ctrl-C), and a deployment left by a test process that no longer exists is
removed when the next container test starts. The host's `databuild` CLI
talks to it through a generated config naming the published ports.

Every subprocess is started with an argv list, never through a shell.
"""

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time

SOURCE_DIR = os.environ.get("DBLD_SOURCE_DIR") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
BIN_DIR = os.environ.get("DBLD_BIN_DIR") or os.path.join(SOURCE_DIR, "build")
COMPOSE_FILE = os.path.join(SOURCE_DIR, "deploy", "compose.yaml")
SKIP = 77  # ctest SKIP_RETURN_CODE
PREFIX = "dbldt"
SERVICES = ["eventlog", "job-1", "job-2", "graph-1", "graph-2", "query-1", "query-2"]
PORT_VARS = {"eventlog": "DATABUILD_EVENTLOG_PORT", "job-1": "DATABUILD_JOB1_PORT",
             "job-2": "DATABUILD_JOB2_PORT", "graph-1": "DATABUILD_GRAPH1_PORT",
             "graph-2": "DATABUILD_GRAPH2_PORT", "query-1": "DATABUILD_QUERY1_PORT",
             "query-2": "DATABUILD_QUERY2_PORT"}
METRICS_PORT_VARS = {s: v.replace("_PORT", "_METRICS_PORT") for s, v in PORT_VARS.items()}
CONTAINER_PORT = {"eventlog": 7101, "job": 7102, "graph": 7103, "query": 7104}
METRICS_PORT = {"eventlog": 9101, "job": 9102, "graph": 9103, "query": 9104}
MAKE_TOKENS = os.path.join(SOURCE_DIR, "deploy", "compose", "make-tokens.sh")


def log(msg):
    print("[%s] %s" % (time.strftime("%H:%M:%S"), msg), flush=True)


def run(argv, check=True, timeout=600, **kw):
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise RuntimeError("%s exited %d:\n%s%s" % (" ".join(argv), r.returncode, r.stdout[-4000:],
                                                   r.stderr[-4000:]))
    return r


def require_docker():
    """Exit with SKIP (and say why) unless docker, compose and the images are there."""
    if not shutil.which("docker"):
        print("SKIPPED: no docker (the container tests need Docker Engine)")
        sys.exit(SKIP)
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        print("SKIPPED: no docker (docker info failed: the daemon does not answer)")
        sys.exit(SKIP)
    compose_cmd()  # fails clearly when neither compose is installed


_COMPOSE = None


def compose_cmd():
    global _COMPOSE
    if _COMPOSE is None:
        if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
            _COMPOSE = ["docker", "compose"]
        elif shutil.which("docker-compose"):
            _COMPOSE = ["docker-compose"]
        else:
            raise RuntimeError("docker is installed but neither `docker compose` nor "
                               "docker-compose is (Debian: apt-get install docker-compose)")
    return _COMPOSE


def sweep_stale():
    """Remove deployments of container tests whose process is gone."""
    r = run(["docker", "ps", "-a", "--format", '{{.Label "com.docker.compose.project"}}'],
            check=False)
    projects = set(re.findall(r"^(%s[a-z]*?(\d+)x[0-9a-f]+)$" % PREFIX, r.stdout, re.M))
    for project, pid in projects:
        if not os.path.exists("/proc/%s" % pid):
            log("removing the stale deployment %s (its test process %s is gone)" % (project, pid))
            subprocess.run(compose_cmd() + ["-p", project, "-f", COMPOSE_FILE, "down", "-v",
                                            "--remove-orphans", "-t", "1"], capture_output=True)


class Deployment:
    """One compose project of deploy/compose.yaml; use as a context manager."""

    def __init__(self, name, ingest_delay_s=0.2, lease_ttl_ms=6000, orphan_poll_ms=2000):
        self.project = "%s%s%dx%s" % (PREFIX, name, os.getpid(), secrets.token_hex(3))
        self.tmp = tempfile.mkdtemp(prefix="dbld-ct-")
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("DATABUILD_")}
        self.env.update({v: "" for v in PORT_VARS.values()})  # "" = a free host port
        self.env.update({v: "" for v in METRICS_PORT_VARS.values()})
        # Auth is on in the deployment: each project gets its own tokens.
        self.tokens = os.path.join(self.tmp, "tokens")
        run([MAKE_TOKENS, self.tokens])
        self.env["DATABUILD_TOKENS_DIR"] = self.tokens
        self.env.update({
            "DATABUILD_RESTART": "no",
            "DATABUILD_INGEST_DELAY_S": str(ingest_delay_s),
            "DBLD_GRAPH_LEASE_TTL_MS": str(lease_ttl_ms),
            "DBLD_GRAPH_ORPHAN_POLL_MS": str(orphan_poll_ms),
        })
        self.config = os.path.join(self.tmp, "client.yaml")
        self.up_seconds = None

    # ---- lifecycle

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, _exit_on_signal)
        sweep_stale()
        try:
            self.up()
        except BaseException:
            self.down()
            raise
        return self

    def __exit__(self, *exc):
        if exc[0] is not None:
            self.dump_logs()
        self.down()
        return False

    def compose(self, *args, check=True, timeout=600):
        return run(compose_cmd() + ["-p", self.project, "-f", COMPOSE_FILE] + list(args),
                   check=check, timeout=timeout, env=self.env)

    def up(self, timeout=300):
        log("compose up (project %s)" % self.project)
        t0 = time.monotonic()
        self.compose("up", "-d")
        self.wait_healthy(timeout)
        self.up_seconds = time.monotonic() - t0
        log("all healthy %.1f s after up" % self.up_seconds)
        self.write_client_config()

    def down(self):
        log("compose down (project %s)" % self.project)
        r = self.compose("down", "-v", "--remove-orphans", "-t", "20", check=False)
        if r.returncode != 0:
            log("compose down failed: %s" % r.stderr[-2000:])
        shutil.rmtree(self.tmp, ignore_errors=True)

    def dump_logs(self):
        r = self.compose("logs", "--no-color", "--tail", "40", check=False)
        sys.stdout.write(r.stdout[-30000:])

    # ---- containers

    def container(self, service):
        r = run(["docker", "ps", "-aq", "--filter", "label=com.docker.compose.project=" + self.project,
                 "--filter", "label=com.docker.compose.service=" + service])
        ids = r.stdout.split()
        if len(ids) != 1:
            raise RuntimeError("expected one container of %s, found %r" % (service, ids))
        return ids[0]

    def state(self, service):
        r = run(["docker", "inspect", "-f", "{{json .State}}", self.container(service)])
        return json.loads(r.stdout)

    def health(self):
        out = {}
        for s in ["postgres"] + SERVICES:
            st = self.state(s)
            out[s] = (st.get("Health") or {}).get("Status") or st.get("Status")
        return out

    def wait_healthy(self, timeout=300, services=None):
        deadline = time.monotonic() + timeout
        h = {}
        while time.monotonic() < deadline:
            h = self.health()
            if all(h[s] == "healthy" for s in (services or h)):
                return
            dead = [s for s, v in h.items() if v in ("exited", "dead")]
            if dead and not services:
                break
            time.sleep(1)
        self.dump_logs()
        raise AssertionError("not healthy after %.0f s: %r" % (timeout, h))

    def network(self):
        return self.project + "_default"

    def port(self, service, metrics=False):
        kind = service.split("-")[0]
        r = self.compose("port", service, str((METRICS_PORT if metrics else CONTAINER_PORT)[kind]))
        return r.stdout.strip().splitlines()[-1]

    # ---- the host CLI

    def write_client_config(self):
        addr = {s: self.port(s) for s in SERVICES}
        with open(self.config, "w") as f:
            f.write("shared:\n  peers:\n")
            f.write("    eventlog: %s\n" % addr["eventlog"])
            f.write("    job: [%s, %s]\n" % (addr["job-1"], addr["job-2"]))
            f.write("    graph: %s\n" % addr["graph-1"])
            f.write("    query: %s\n" % addr["query-1"])
            f.write("  auth:\n    client_token_file: %s\n"
                    % os.path.join(self.tokens, "operators.token"))
        self.addr = addr

    def cli(self, *args, check=True, timeout=600):
        argv = [os.path.join(BIN_DIR, "databuild"), "--config", self.config] + list(args)
        return run(argv, check=check, timeout=timeout)

    def cli_json(self, *args):
        out = self.cli("--json", *args).stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def build(self, refs, *extra, check=True, timeout=900):
        """databuild build --json; returns (exit code, events, result)."""
        r = self.cli("--json", "build", *refs, *extra, check=False, timeout=timeout)
        events, result = [], None
        for line in r.stdout.splitlines():
            o = json.loads(line)
            if "result" in o:
                result = o["result"]
            elif "event" in o:
                events.append(o["event"])
        if check and r.returncode != 0:
            raise AssertionError("build %s exited %d: %s\n%s" % (refs, r.returncode, r.stderr,
                                                                 json.dumps(result)[:3000]))
        return r.returncode, events, result

    def submit(self, refs, comment="container test"):
        """databuild build --detach: the build request id."""
        r = self.cli("build", "--detach", "--comment", comment, *refs)
        return r.stdout.strip().split()[-1]

    def events(self, build_request_id):
        return [o["event"] for o in self.cli_json("events", "--build-request-id", build_request_id)]

    def build_status(self, build_request_id):
        for e in reversed(self.events(build_request_id)):
            if "buildRequestEvent" in e:
                return e["buildRequestEvent"].get("status", {}).get("code")
        return None

    def wait_build_end(self, build_request_id, timeout=600):
        deadline = time.monotonic() + timeout
        st = None
        while time.monotonic() < deadline:
            st = self.build_status(build_request_id)
            if st in ("BUILD_REQUEST_COMPLETED", "BUILD_REQUEST_FAILED", "BUILD_REQUEST_CANCELLED",
                      "BUILD_REQUEST_PRECONDITION_FAILED"):
                return st
            time.sleep(1)
        raise AssertionError("build %s did not end within %.0f s (last status %s)" %
                             (build_request_id, timeout, st))

    def wait_running_jobs(self, build_request_id, n=1, timeout=300):
        """Wait until at least n job runs of the build are RUNNING (not ended)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            running = running_runs(self.events(build_request_id))
            if len(running) >= n:
                return running
            time.sleep(0.5)
        raise AssertionError("no %d running jobs in build %s after %.0f s" % (n, build_request_id,
                                                                              timeout))

    def partitions(self, pattern):
        return {p["partitionRef"]["str"]: p
                for p in self.cli_json("partitions", "list", "--pattern", pattern, "--all")}


def _exit_on_signal(signum, frame):
    raise SystemExit(128 + signum)


# ---- the example pipeline and what its events say

def week_refs(week):
    """The refs the demo builds for ISO week 'YYYY-Www': the report (36 tasks)."""
    return ["report/week=" + week]


def week_partitions(week):
    import datetime
    y, w = week.split("-W")
    monday = datetime.date.fromisocalendar(int(y), int(w), 1)
    days = [(monday + datetime.timedelta(days=i)).isoformat() for i in range(7)]
    refs = ["report/week=" + week]
    refs += ["raw/reviews/date=" + d for d in days]
    refs += ["agg/category=%s/date=%s" % (c, d) for c in ("books", "electronics", "garden", "toys")
             for d in days]
    return refs


def job_events(events):
    return [(e.get("timestamp"), e["jobEvent"]) for e in events if "jobEvent" in e]


def targets(je):
    return [p["str"] for p in je.get("targetPartitions", [])]


def running_runs(events):
    """job_run_id -> targets of runs RUNNING and not ended yet."""
    state = {}
    for _, je in job_events(events):
        state[je.get("jobRunId")] = (je.get("statusCode"), targets(je))
    return {r: t for r, (s, t) in state.items() if s == "JOB_RUNNING"}


def completed_runs_per_partition(events):
    out = {}
    for _, je in job_events(events):
        if je.get("statusCode") == "JOB_COMPLETED":
            for ref in targets(je):
                out.setdefault(ref, []).append(je.get("jobRunId"))
    return out


def run_intervals(events):
    """partition -> [(start_ns, end_ns or None, run id)] from RUNNING to its end event."""
    start, out = {}, {}
    for ts, je in job_events(events):
        run_id, st = je.get("jobRunId"), je.get("statusCode")
        if st == "JOB_RUNNING":
            start[run_id] = int(ts)
        elif st in ("JOB_COMPLETED", "JOB_FAILED", "JOB_CANCELLED") and run_id in start:
            for ref in targets(je):
                out.setdefault(ref, []).append((start.pop(run_id), int(ts), run_id))
    for run_id, t in start.items():  # never ended
        out.setdefault("?", []).append((t, None, run_id))
    return out


def assert_week_built_once(events, week):
    """Every partition of the week has exactly one COMPLETED run in these events."""
    done = completed_runs_per_partition(events)
    problems = []
    for ref in week_partitions(week):
        n = len(done.get(ref, []))
        if n != 1:
            problems.append("%s: %d COMPLETED runs %r" % (ref, n, done.get(ref, [])))
    if problems:
        raise AssertionError("partitions not built by exactly one COMPLETED run:\n  " +
                             "\n  ".join(problems))


def assert_available(dep, week):
    parts = dep.partitions(".*")
    bad = []
    for ref in week_partitions(week):
        p = parts.get(ref)
        if not p or "PARTITION_AVAILABLE" not in json.dumps(p.get("status")):
            bad.append("%s: %s" % (ref, json.dumps(p)[:200]))
    if bad:
        raise AssertionError("partitions not AVAILABLE:\n  " + "\n  ".join(bad))


def runs_on(events, needle):
    """Job run ids whose RUNNING message names an address containing needle."""
    return {je.get("jobRunId") for _, je in job_events(events)
            if je.get("statusCode") == "JOB_RUNNING" and needle in (je.get("message") or "")}


def main(test):
    """Run test() as a ctest test: skip without docker, print PASSED at the end."""
    require_docker()
    test()
    print("PASSED")
