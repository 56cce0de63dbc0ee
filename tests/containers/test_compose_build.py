#!/usr/bin/python3
"""A week of the example pipeline through the compose deployment, then the
same build again (every job SKIPPED), then `docker stop` of every service.

Checks: the deployment becomes healthy (health checks through the image's own
CLI, dependency order), its ports are published on 127.0.0.1 only, the build
ends with every partition of the week AVAILABLE and built by exactly one
COMPLETED run, both job replicas ran tasks, both query replicas answer, the
rebuild runs nothing, and each service exits 0 on SIGTERM (docker stop) within
its grace period (a SIGKILL after the grace period would be exit 137).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compose_lib as cl  # noqa: E402

WEEK = "2025-W02"


def check_ports(dep):
    for s in ["postgres"] + cl.SERVICES:
        r = cl.run(["docker", "inspect", "-f", "{{json .NetworkSettings.Ports}}", dep.container(s)])
        ports = cl.json.loads(r.stdout) or {}
        for cport, binds in ports.items():
            for b in binds or []:
                assert b["HostIp"] == "127.0.0.1", "%s publishes %s on %s" % (s, cport, b)


def check_auth(dep):
    """Auth is on in the deployment: no token and a wrong one are refused, the
    operators' token may read and write but not append events (internal)."""
    wrong = os.path.join(dep.tmp, "wrong.token")
    with open(wrong, "w") as f:
        f.write("not-a-token\n")
    noauth = os.path.join(dep.tmp, "noauth.yaml")
    with open(dep.config) as f, open(noauth, "w") as g:
        g.write(f.read().split("  auth:")[0])
    no_token = cl.run([os.path.join(cl.BIN_DIR, "databuild"), "--config", noauth, "partitions",
                       "list"], check=False)
    wrong_token = dep.cli("--token-file", wrong, "partitions", "list", check=False)
    for r in (no_token, wrong_token):
        assert r.returncode != 0 and "UNAUTHENTICATED" in r.stderr, (r.returncode, r.stderr)
        assert "not-a-token" not in r.stderr, r.stderr
    r = dep.cli("events", "append", '{"partitionEvent":{"partitionRef":{"str":"ctest/auth"},'
                '"statusCode":"PARTITION_REQUESTED"}}', check=False)
    assert r.returncode != 0 and "PERMISSION_DENIED" in r.stderr and "internal" in r.stderr, \
        r.stderr
    assert dep.cli("partitions", "list").returncode == 0


def check_metrics(dep):
    """Every service serves Prometheus text at its published metrics port, and
    the event log's counts the services' Append calls."""
    import urllib.request
    text = {}
    for s in cl.SERVICES:
        url = "http://%s/metrics" % dep.port(s, metrics=True)
        text[s] = urllib.request.urlopen(url, timeout=10).read().decode()
        assert "process_resident_memory_bytes" in text[s], (s, text[s][:500])
        assert "grpc_server_handled_total{" in text[s], (s, text[s][:500])
    assert 'grpc_method="Append"' in text["eventlog"], text["eventlog"][:2000]


def test():
    with cl.Deployment("build") as dep:
        check_ports(dep)
        health = dep.cli("health").stdout
        cl.log("health:\n" + health)
        check_auth(dep)

        cl.log("building %s" % WEEK)
        rc, events, result = dep.build(cl.week_refs(WEEK))
        assert result["status"] == "BUILD_REQUEST_COMPLETED", result
        cl.assert_week_built_once(events, WEEK)
        cl.assert_available(dep, WEEK)
        on1, on2 = cl.runs_on(events, "job-1:"), cl.runs_on(events, "job-2:")
        cl.log("runs on job-1: %d, on job-2: %d" % (len(on1), len(on2)))
        assert on1 and on2, "both job replicas should have run tasks (job-1 %d, job-2 %d)" % (
            len(on1), len(on2))
        for q in ("query-1", "query-2"):
            out = dep.cli("--server", dep.addr[q], "partitions", "show",
                          "report/week=" + WEEK).stdout
            assert "AVAILABLE" in out, (q, out)

        cl.log("building %s again" % WEEK)
        rc, events, result = dep.build(cl.week_refs(WEEK))
        statuses = [je.get("statusCode") for _, je in cl.job_events(events)]
        assert statuses and set(statuses) == {"JOB_SKIPPED"}, statuses
        assert len(statuses) == len(cl.week_partitions(WEEK)), len(statuses)

        check_metrics(dep)

        for s in ["graph-1", "graph-2", "query-1", "query-2", "job-1", "job-2", "eventlog"]:
            cl.run(["docker", "stop", "-t", "15", dep.container(s)])
            st = dep.state(s)
            cl.log("%s: docker stop -> exit %d" % (s, st["ExitCode"]))
            assert st["ExitCode"] == 0, "%s exited %d on SIGTERM (137: killed after the grace " \
                "period)" % (s, st["ExitCode"])


if __name__ == "__main__":
    cl.main(test)
