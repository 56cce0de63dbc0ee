#!/usr/bin/python3
"""`docker kill` of the graph replica that owns a running build: the other
replica adopts it (its lease lapses), and the build completes with every
partition of the week built by exactly one COMPLETED run."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compose_lib as cl  # noqa: E402

WEEK = "2025-W03"


def test():
    # slow ingests keep the build running while the owner dies
    with cl.Deployment("gkill", ingest_delay_s=3) as dep:
        br = dep.submit(cl.week_refs(WEEK))  # through graph-1: it owns the build
        cl.log("build %s submitted to graph-1" % br)
        running = dep.wait_running_jobs(br, 2)
        cl.log("running: %s; docker kill graph-1" % sorted(running))
        cl.run(["docker", "kill", dep.container("graph-1")])
        t0 = time.monotonic()
        status = dep.wait_build_end(br, timeout=600)
        cl.log("build ended %s %.0f s after the kill" % (status, time.monotonic() - t0))
        assert status == "BUILD_REQUEST_COMPLETED", status
        logs = dep.compose("logs", "--no-color", "graph-2").stdout
        adopted = [line for line in logs.splitlines() if "resuming build" in line and br in line]
        assert adopted, "graph-2 did not log \"resuming build\" for %s: it did not adopt it" % br
        cl.log("graph-2: " + adopted[0])
        events = dep.events(br)
        cl.assert_week_built_once(events, WEEK)
        cl.assert_available(dep, WEEK)


if __name__ == "__main__":
    cl.main(test)
