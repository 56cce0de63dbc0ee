#!/usr/bin/env bash
# bench/run_metrics.sh - what recording metrics costs the query service.
#
# One event log and TWO query services on one loaded database: "off" without
# metrics_listen, "on" with it (and a scraper reading its /metrics every
# second, as Prometheus would). GetPartitionsSummary (and ListPartitions) in a
# closed loop with bench_query, alternating off/on rounds so that drift of
# the machine hits both alike; prints each round, the mean QPS of each side
# and the ratio (target: "on" loses at most 3 %).
#
# Needs: DBLD_TEST_PG (superuser conninfo, set by `./dev bench metrics`),
#        DBLD_BUILD_DIR (default ./build), psql, curl.
# Optional: BENCH_SECONDS (5), BENCH_ROUNDS (4), BENCH_CLIENTS (16),
#        BENCH_EVENTS (200000), BENCH_PARTITIONS (20000), BENCH_RPC (summary).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
build=${DBLD_BUILD_DIR:-$root/build}
secs=${BENCH_SECONDS:-5}
rounds=${BENCH_ROUNDS:-4}
clients=${BENCH_CLIENTS:-16}
events=${BENCH_EVENTS:-200000}
partitions=${BENCH_PARTITIONS:-20000}
rpc=${BENCH_RPC:-summary}
: "${DBLD_TEST_PG:?DBLD_TEST_PG must name the PostgreSQL server (run ./dev bench metrics)}"

db="bench_metrics_$$"
dsn="${DBLD_TEST_PG/dbname=postgres/dbname=$db}"
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null || true; done
    psql -q "$DBLD_TEST_PG" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
psql -q "$DBLD_TEST_PG" -c "CREATE DATABASE $db" >/dev/null

el=$(freeport) qoff=$(freeport) qon=$(freeport) mport=$(freeport)
config() { # config QUERY_PORT [METRICS_PORT]
    cat <<YAML
shared:
  postgres_dsn: "$dsn"
  log_level: warn
  peers:
    eventlog: "127.0.0.1:$el"
eventlog:
  listen: "127.0.0.1:$el"
  workers: 16
query:
  listen: "127.0.0.1:$1"
  workers: 8
YAML
    [ -z "${2:-}" ] || echo "  metrics_listen: \"127.0.0.1:$2\""
}
config "$qoff" >"$work/off.yaml"
config "$qon" "$mport" >"$work/on.yaml"

start() { # start SERVICE CONFIG PORT
    "$build/databuild-$1" --config "$2" 2>>"$work/$1.log" &
    pids+=("$!")
    for _ in $(seq 1 100); do
        "$build/databuild" health --server "127.0.0.1:$3" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    cat "$work/$1.log" >&2
    return 1
}
start eventlog "$work/off.yaml" "$el"
start query "$work/off.yaml" "$qoff"
start query "$work/on.yaml" "$qon"

echo "== load: $events events over $partitions partitions through the event log =="
"$build/bench_query" load --target "127.0.0.1:$el" --events "$events" --partitions "$partitions" \
    --threads 4
psql -q "$dsn" -c "VACUUM ANALYZE" >/dev/null

# the scraper: what a Prometheus with a 1 s interval costs the "on" service
( while sleep 1; do curl -sf "http://127.0.0.1:$mport/metrics" >/dev/null || true; done ) &
pids+=("$!")

run() { # run PORT -> qps
    "$build/bench_query" run --target "127.0.0.1:$1" --rpc "$rpc" --partitions "$partitions" \
        --clients "$clients" --seconds "$secs" | sed -n 's/.*qps=\([0-9.]*\).*/\1/p'
}
run "$qoff" >/dev/null # warm-up, both
run "$qon" >/dev/null
echo "== $rpc, $clients clients, $secs s per round, $rounds rounds of off/on =="
off_sum=0 on_sum=0
for r in $(seq 1 "$rounds"); do
    a=$(run "$qoff")
    b=$(run "$qon")
    printf 'round %d: metrics off %8.1f qps, on %8.1f qps\n' "$r" "$a" "$b"
    off_sum=$(python3 -c "print($off_sum + $a)")
    on_sum=$(python3 -c "print($on_sum + $b)")
done
python3 - "$off_sum" "$on_sum" "$rounds" <<'PY'
import sys
off, on, n = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
ratio = on / off if off else 0
print("mean: off %.1f qps, on %.1f qps, on/off %.3f (%+.1f %%); target: lose at most 3 %%: %s"
      % (off / n, on / n, ratio, (ratio - 1) * 100, "met" if ratio >= 0.97 else "MISSED"))
PY
curl -sf "http://127.0.0.1:$mport/metrics" | grep -c '^grpc_server_handled_total' |
    sed 's/^/series of grpc_server_handled_total on the "on" service: /'
