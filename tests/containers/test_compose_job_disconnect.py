#!/usr/bin/python3
"""`docker network disconnect` of a job replica mid-build: the graph moves
its tasks to the other job replica, the build completes, and no partition is
lost or built twice concurrently (the graph's recorded runs of one partition
never overlap, and each partition has exactly one COMPLETED run). After
`docker network connect` the replica serves again: it is healthy, reaches
the event log by name, and runs tasks of a later build."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compose_lib as cl  # noqa: E402

WEEK = "2025-W04"


def assert_no_overlap(events):
    problems = []
    for ref, spans in cl.run_intervals(events).items():
        spans = sorted(spans, key=lambda s: s[0])
        for a, b in zip(spans, spans[1:]):
            if a[1] is None or b[0] < a[1]:
                problems.append("%s: runs %s and %s overlap" % (ref, a[2], b[2]))
    assert not problems, "\n".join(problems)


def test():
    with cl.Deployment("jdisc", ingest_delay_s=3) as dep:
        br = dep.submit(cl.week_refs(WEEK))
        cl.log("build %s submitted" % br)
        deadline = time.monotonic() + 300
        while not cl.runs_on(dep.events(br), "job-2:"):
            assert time.monotonic() < deadline, "no task started on job-2"
            time.sleep(0.5)
        job2 = dep.container("job-2")
        cl.log("a task runs on job-2: docker network disconnect")
        cl.run(["docker", "network", "disconnect", dep.network(), job2])
        try:
            status = dep.wait_build_end(br, timeout=600)
        finally:
            cl.log("docker network connect job-2")
            cl.run(["docker", "network", "connect", "--alias", "job-2", dep.network(), job2])
        events = dep.events(br)
        cl.log("build ended %s; runs on job-1: %d, on job-2: %d" % (
            status, len(cl.runs_on(events, "job-1:")), len(cl.runs_on(events, "job-2:"))))
        assert status == "BUILD_REQUEST_COMPLETED", status
        cl.assert_week_built_once(events, WEEK)
        assert_no_overlap(events)
        cl.assert_available(dep, WEEK)

        # the replica serves again
        dep.wait_healthy(120, services=["job-2"])
        cl.run(["docker", "exec", job2, "/usr/local/bin/databuild", "health", "--server",
                "eventlog:7101"])
        deadline = time.monotonic() + 300
        day = 0
        while True:
            ref = "agg/category=books/date=2025-03-%02d" % (day + 1)
            rc, ev, result = dep.build([ref])
            if cl.runs_on(ev, "job-2:"):
                cl.log("job-2 ran a task of the build of %s after the reconnect" % ref)
                break
            assert time.monotonic() < deadline, "job-2 ran nothing within 300 s of the reconnect"
            day += 1


if __name__ == "__main__":
    cl.main(test)
