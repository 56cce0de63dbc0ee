#!/usr/bin/env bash
# bench/run_wants.sh - the control plane's figures (services/graph/README.md,
# "Background processes"), through real event log, job, graph and query
# services on a fresh database (PostgreSQL fsync on):
#
#   1. want -> build latency on an idle suite: N wants (default 100) on
#      unbuilt no-op partitions, one at a time (each waits for its build to
#      finish), latency = build request created - want created (both stamped
#      by the event log); p50 / p99 / max.
#   2. a want_reconciler pass over W live wants (default 10,000) on W
#      distinct partitions that are already AVAILABLE (loaded through the
#      event log's Append: PartitionEvents AVAILABLE, then WantEvents): the
#      pass that marks them COMPLETED, then a steady pass (RunProcessNow):
#      duration (the run's start/finish) and PostgreSQL transactions during
#      it (pg_stat_database.xact_commit delta, read after the stats flush;
#      every autocommit statement is one; the replica's lease polls - one
#      Acquire of two statements every 200 ms - are included).
#   3. a taint on a partition with D transitive dependents (default 10,000:
#      root <- 100 mids <- D leaves, recorded as SCHEDULED JobEvents with
#      their configured inputs, all AVAILABLE): time from PutTaints to the
#      last dependent marked stale.
#
# Needs: DBLD_TEST_PG (superuser conninfo, set by `./dev bench wants`),
#        DBLD_BUILD_DIR (default ./build), psql, python3.
# Optional: BENCH_WANTS_LAT (100), BENCH_WANTS (10000), BENCH_DEPENDENTS (10000).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
build=${DBLD_BUILD_DIR:-$root/build}
nlat=${BENCH_WANTS_LAT:-100}
nwants=${BENCH_WANTS:-10000}
ndeps=${BENCH_DEPENDENTS:-10000}
: "${DBLD_TEST_PG:?DBLD_TEST_PG must name the PostgreSQL server (run ./dev bench wants)}"

db="bench_wants_$$"
dsn="${DBLD_TEST_PG/dbname=postgres/dbname=$db}"
work=$(mktemp -d)
chmod 755 "$work"
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    psql -q "$DBLD_TEST_PG" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cc=${CC:-cc}
"$cc" -O2 -static -o "$work/noop_job" "$here/noop_job.c" 2>/dev/null ||
    "$cc" -O2 -o "$work/noop_job" "$here/noop_job.c"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pe=$(free_port) pj=$(free_port) pg=$(free_port) pq=$(free_port)
psql -q "$DBLD_TEST_PG" -c "CREATE DATABASE $db" >/dev/null
cat >"$work/databuild.yaml" <<YAML
shared:
  postgres_dsn: "$dsn"
  log_level: warn
  peers:
    eventlog: 127.0.0.1:$pe
    job: [127.0.0.1:$pj]
    graph: 127.0.0.1:$pg
    query: 127.0.0.1:$pq
eventlog:
  listen: 127.0.0.1:$pe
job:
  listen: 127.0.0.1:$pj
graph:
  listen: 127.0.0.1:$pg
  jobs:
    - label: //bench:noop
      command: ["$work/noop_job"]
      outputs: ['noop/.*']
      timeout_ms: 60000
query:
  listen: 127.0.0.1:$pq
YAML
for s in eventlog job graph query; do
    "$build/databuild-$s" --config "$work/databuild.yaml" 2>"$work/$s.log" &
    pids+=($!)
done
cli() { "$build/databuild" --config "$work/databuild.yaml" "$@"; }
for _ in $(seq 1 150); do
    cli health >/dev/null 2>&1 && break
    sleep 0.2
done
cli health >/dev/null
sql() { psql -tAq "$dsn" -c "$1"; }
commits() { psql -tAq "$DBLD_TEST_PG" -c "SELECT xact_commit FROM pg_stat_database WHERE datname = '$db'"; }
pct() { sort -n | awk -v p="$1" '{a[NR]=$1} END {i=int(NR*p/100+0.5); if (i<1) i=1; if (i>NR) i=NR; print a[i]}'; }

echo "== control plane: $(nproc) CPUs, PostgreSQL fsync on =="

# ---- 1. latency
: >"$work/lat.txt"
for i in $(seq 1 "$nlat"); do
    ref="noop/lat/$i"
    id=$(cli wants put "$ref" | awk 'NR == 2 {print $2}')
    for _ in $(seq 1 500); do
        ms=$(sql "SELECT (b.created_ns - w.created_ns) / 1000000.0 FROM wants w
                  JOIN build_requests b ON b.want_id = w.want_id WHERE w.want_id = '$id'")
        [ -n "$ms" ] && break
        sleep 0.02
    done
    [ -n "$ms" ] || { echo "want $id: no build within 10 s" >&2; exit 1; }
    echo "$ms" >>"$work/lat.txt"
    for _ in $(seq 1 500); do
        [ "$(sql "SELECT status FROM partitions WHERE ref = '$ref'")" = 4 ] && break
        sleep 0.02
    done
done
echo "-- want -> build request on an idle suite, $nlat wants one at a time (ms):" \
    "p50 $(pct 50 <"$work/lat.txt")  p99 $(pct 99 <"$work/lat.txt")  max $(pct 100 <"$work/lat.txt")"

# ---- 2. a reconciler pass over many live, satisfied wants
python3 - "$nwants" >"$work/wants.jsonl" <<'PY'
import json, sys, uuid
n = int(sys.argv[1])
for i in range(n):
    print(json.dumps({"partitionEvent": {"partitionRef": {"str": "noop/avail/%d" % i},
                                         "statusCode": "PARTITION_AVAILABLE"}}))
for i in range(n):
    print(json.dumps({"wantEvent": {"requestedPartitions": [{"str": "noop/avail/%d" % i}],
                                    "wantId": str(uuid.uuid4())}}))
PY
cli events append --json-file "$work/wants.jsonl" >/dev/null
for _ in $(seq 1 600); do
    [ "$(sql "SELECT count(*) FROM process_work WHERE process = 'want_reconciler' AND state = 5")" -ge "$nwants" ] && break
    sleep 0.1
done
pass() { # run want_reconciler now; prints "duration_ms xacts"
    sleep 1.2 # let the stats of earlier work flush
    local c0 c1 op st
    c0=$(commits)
    op=$(cli processes run want_reconciler | awk '{print $1}')
    for _ in $(seq 1 600); do
        st=$(cli operations show "$op" | awk '{print $2}')
        [ "$st" = completed ] || [ "$st" = incomplete ] || [ "$st" = aborted ] && break
        sleep 0.05
    done
    sleep 1.2
    c1=$(commits)
    cli --json processes show want_reconciler --limit 1 | python3 -c '
import json, sys
p = json.load(sys.stdin)["process"]["processStatus"]
print((int(p["finishNs"]) - int(p["startNs"])) / 1e6, end=" ")'
    echo "$((c1 - c0))"
}
read -r d1 x1 < <(pass)
read -r d2 x2 < <(pass)
echo "-- want_reconciler pass over $nwants live wants on AVAILABLE partitions:" \
    "steady pass ${d2} ms, $x2 transactions in ~2.4 s around it (includes lease polls)" \
    "= $(python3 -c "print(round($x2 * 100 / $nwants, 2))") per 100 wants; first pass after the load ${d1} ms"

# ---- 3. a taint with many transitive dependents
python3 - "$ndeps" >"$work/lineage.jsonl" <<'PY'
import json, sys, uuid
n = int(sys.argv[1])
mids = 100
def sched(out, inp):
    return {"jobEvent": {"jobRunId": str(uuid.uuid4()), "jobLabel": {"label": "//bench:noop"},
                         "targetPartitions": [{"str": out}], "statusCode": "JOB_SCHEDULED",
                         "config": {"outputs": [{"str": out}],
                                    "inputs": [{"depTypeCode": "MATERIALIZE",
                                                "partitionRef": {"str": inp}}]}}}
def avail(ref):
    return {"partitionEvent": {"partitionRef": {"str": ref}, "statusCode": "PARTITION_AVAILABLE"}}
print(json.dumps(avail("noop/t/root")))
for m in range(mids):
    print(json.dumps(sched("noop/t/mid/%d" % m, "noop/t/root")))
    print(json.dumps(avail("noop/t/mid/%d" % m)))
for i in range(n - mids):
    m = i % mids
    print(json.dumps(sched("noop/t/leaf/%d/%d" % (m, i), "noop/t/mid/%d" % m)))
    print(json.dumps(avail("noop/t/leaf/%d/%d" % (m, i))))
PY
cli events append --json-file "$work/lineage.jsonl" >/dev/null
# BENCH_TAINT_CHUNKS="500 1000": one more round per extra value, the
# propagator's chunk setting (invalidations per Append) set to it, after the
# dependents were made AVAILABLE (untainted) again
for chunk in ${BENCH_TAINT_CHUNKS:-1000}; do
cli processes settings taint_propagator --set "chunk=$chunk" >/dev/null
sql "SELECT ref FROM partitions WHERE ref LIKE 'noop/t/%' AND tainted" | python3 -c '
import json, sys
for ref in sys.stdin.read().split():
    print(json.dumps({"partitionEvent": {"partitionRef": {"str": ref}, "statusCode": "PARTITION_AVAILABLE"}}))
' >"$work/avail.jsonl"
[ -s "$work/avail.jsonl" ] && cli events append --json-file "$work/avail.jsonl" >/dev/null
sleep 1
t0=$(date +%s%N)
cli taints put noop/t/root --comment bench >/dev/null
for _ in $(seq 1 3000); do
    [ "$(sql "SELECT count(*) FROM partitions WHERE tainted AND ref LIKE 'noop/t/%'")" -ge $((ndeps + 1)) ] && break
    sleep 0.01
done
t1=$(date +%s%N)
n=$(sql "SELECT count(*) FROM partitions WHERE tainted AND ref LIKE 'noop/t/%'")
echo "-- taint of a partition with $ndeps transitive dependents: $n partitions stale after" \
    "$(( (t1 - t0) / 1000000 )) ms"
# where the time goes: the propagator's pass, and the lineage walk of its
# Downstream statement alone (EXPLAIN ANALYZE; same recursive CTE)
sleep 0.5
prop=$(cli --json processes show taint_propagator --limit 1 | python3 -c '
import json, sys
p = json.load(sys.stdin)["process"]["processStatus"]
st = p.get("stats", {})
print(round((int(p["finishNs"]) - int(p["startNs"])) / 1e6, 1), "ms: Downstream call",
      st.get("downstream_ms", "?"), "ms, invalidations written in", st.get("mark_ms", "?"))')
walk=$(sql "EXPLAIN (ANALYZE, FORMAT JSON) WITH RECURSIVE down(ref, via, run) AS (
  SELECT pi.ref, pi.input, pi.job_run_id FROM partition_inputs pi WHERE pi.input = ANY('{noop/t/root}'::text[])
  UNION SELECT pi.ref, pi.input, pi.job_run_id FROM partition_inputs pi JOIN down d ON pi.input = d.ref)
  SELECT count(*) FROM down" | python3 -c 'import json, sys; print(round(json.load(sys.stdin)[0]["Execution Time"], 1))')
echo "   (chunk $chunk: taint_propagator pass ${prop} ms; the lineage walk alone ${walk} ms; the" \
    "rest of the figure: the wake-up, polled every 200 ms, and this script's polling)"
done
