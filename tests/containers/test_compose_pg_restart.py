#!/usr/bin/python3
"""A PostgreSQL container restart mid-build: the services recover by
themselves (no container restarts: the restart policy is off in tests), the
build completes with every partition built by exactly one COMPLETED run,
and no acknowledged event is lost: events appended by a client during the
restart, counted as acknowledged when `databuild events append` printed
their idx, are all stored afterwards."""
import os
import secrets
import sys
import threading
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compose_lib as cl  # noqa: E402

WEEK = "2025-W05"


class Appender(threading.Thread):
    """Appends one event at a time until stopped; records acknowledged ids."""

    def __init__(self, dep, br):
        super().__init__(daemon=True)
        self.dep, self.br = dep, br
        self.acked, self.failed, self.stop = set(), 0, threading.Event()

    def run(self):
        i = 0
        while not self.stop.is_set():
            eid = str(uuid.uuid4())
            ev = ('{"eventId":"%s","buildRequestId":"%s","partitionEvent":{"partitionRef":'
                  '{"str":"ctest/pg_restart/n=%d"},"statusCode":"PARTITION_REQUESTED"}}'
                  % (eid, self.br, i))
            # Append is an `internal` method: the services' token, not the operators'
            r = self.dep.cli("--token-file", os.path.join(self.dep.tokens, "services.token"),
                             "--timeout", "5000", "events", "append", ev, check=False, timeout=60)
            if r.returncode == 0 and eid in r.stdout:
                self.acked.add(eid)
            else:
                self.failed += 1
            i += 1
            time.sleep(0.05)


def test():
    with cl.Deployment("pgrst", ingest_delay_s=2) as dep:
        br = dep.submit(cl.week_refs(WEEK))
        dep.wait_running_jobs(br, 1)
        app = Appender(dep, "pg-restart-" + secrets.token_hex(4))
        app.start()
        time.sleep(2)
        cl.log("docker restart postgres (mid-build, while appending)")
        cl.run(["docker", "restart", "-t", "10", dep.container("postgres")])
        time.sleep(5)
        app.stop.set()
        app.join(120)
        status = dep.wait_build_end(br, timeout=600)
        cl.log("build ended %s; appender: %d acknowledged, %d not" % (status, len(app.acked),
                                                                      app.failed))
        assert status == "BUILD_REQUEST_COMPLETED", status
        events = dep.events(br)
        cl.assert_week_built_once(events, WEEK)
        cl.assert_available(dep, WEEK)
        stored = {e["eventId"] for e in dep.events(app.br)}
        lost = app.acked - stored
        assert app.acked, "no append was acknowledged at all"
        assert not lost, "%d acknowledged events lost: %s" % (len(lost), sorted(lost)[:5])
        cl.log("all %d acknowledged events stored (%d stored)" % (len(app.acked), len(stored)))
        for s in ["eventlog", "job-1", "job-2", "graph-1", "graph-2", "query-1", "query-2"]:
            st = dep.state(s)
            assert st["Status"] == "running", "%s is %s, not running" % (s, st["Status"])
        dep.wait_healthy(120)


if __name__ == "__main__":
    cl.main(test)
