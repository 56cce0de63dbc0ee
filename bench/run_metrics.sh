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
#        BENCH_EVENTS (200000), BENCH_PARTITIONS (20000), BENCH_RPC (summary),
#        BENCH_CALLGRIND (1: also count instructions per call, see the end).
#
# Throughput on a shared 2-core machine drifts by +-10 % between runs, more
# than the 3 % being checked; so the script also counts the instructions the
# service executes per call under valgrind's callgrind (repeatable whatever
# else the machine does): the same calls against a query service without and
# with metrics, and separately the instructions of one /metrics scrape.
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
pid_off=${pids[-1]}
start query "$work/on.yaml" "$qon"
pid_on=${pids[-1]}

echo "== load: $events events over $partitions partitions through the event log =="
"$build/bench_query" load --target "127.0.0.1:$el" --events "$events" --partitions "$partitions" \
    --threads 4
psql -q "$dsn" -c "VACUUM ANALYZE" >/dev/null

# the scraper: what a Prometheus with a 1 s interval costs the "on" service
( while sleep 1; do curl -sf "http://127.0.0.1:$mport/metrics" >/dev/null || true; done ) &
pids+=("$!")

# CPU seconds (user + system) a process has used so far
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.4f", ($14 + $15) / hz }' "/proc/$1/stat"; }

run() { # run PORT PID -> "qps cpu_us_per_call"
    local c0 c1 q
    c0=$(cpu_s "$2")
    q=$("$build/bench_query" run --target "127.0.0.1:$1" --rpc "$rpc" --partitions "$partitions" \
        --clients "$clients" --seconds "$secs" | sed -n 's/.*qps=\([0-9.]*\).*/\1/p')
    c1=$(cpu_s "$2")
    python3 -c "print('%s %.1f' % ('$q', ($c1 - $c0) * 1e6 / max(1.0, $q * $secs)))"
}
run "$qoff" "$pid_off" >/dev/null # warm-up, both
run "$qon" "$pid_on" >/dev/null
# Rounds alternate the order (off,on then on,off) so that a drift of the
# machine's load within a round pair hits both sides alike. Besides QPS, each
# round reports the query service's own CPU time per call, which a busy
# machine disturbs far less than throughput.
echo "== $rpc, $clients clients, $secs s per round, $rounds rounds of off/on =="
results=()
for r in $(seq 1 "$rounds"); do
    if [ $((r % 2)) = 1 ]; then a=$(run "$qoff" "$pid_off"); b=$(run "$qon" "$pid_on")
    else b=$(run "$qon" "$pid_on"); a=$(run "$qoff" "$pid_off"); fi
    set -- $a $b
    printf 'round %d: metrics off %8.1f qps %6.1f us cpu/call, on %8.1f qps %6.1f us cpu/call\n' \
        "$r" "$1" "$2" "$3" "$4"
    results+=("$1 $2 $3 $4")
done
printf '%s\n' "${results[@]}" | python3 -c '
import sys
rows = [list(map(float, l.split())) for l in sys.stdin if l.strip()]
n = len(rows)
off_q, off_c, on_q, on_c = (sum(r[i] for r in rows) / n for i in range(4))
ratio = on_q / off_q if off_q else 0
cost = on_c / off_c - 1 if off_c else 0
print("mean: off %.1f qps, on %.1f qps, on/off %.3f (%+.1f %%); target: lose at most 3 %%: %s"
      % (off_q, on_q, ratio, (ratio - 1) * 100, "met" if ratio >= 0.97 else "MISSED"))
print("service cpu per call: off %.1f us, on %.1f us (%+.1f %%)" % (off_c, on_c, cost * 100))
'
curl -sf "http://127.0.0.1:$mport/metrics" | grep -c '^grpc_server_handled_total' |
    sed 's/^/series of grpc_server_handled_total on the "on" service: /'

[ "${BENCH_CALLGRIND:-1}" = 1 ] || exit 0
command -v valgrind >/dev/null && command -v callgrind_control >/dev/null ||
    { echo "callgrind: valgrind not installed, instruction counts skipped"; exit 0; }
# instr SERVICE_PORT PID FILE CMD... -> instructions the service executed while CMD ran
instr() {
    local port=$1 pid=$2 out=$3 before f
    shift 3
    before=$(ls "$out".* 2>/dev/null | wc -l)
    callgrind_control --instr=on "$pid" >/dev/null 2>&1
    "$@" >"$work/cmd.out"
    callgrind_control --dump "$pid" >/dev/null 2>&1 # the dump also zeroes the counters
    callgrind_control --instr=off "$pid" >/dev/null 2>&1
    for _ in $(seq 1 100); do
        [ "$(ls "$out".* 2>/dev/null | wc -l)" -gt "$before" ] && break
        sleep 0.1
    done
    f=$(ls -t "$out".* | head -1)
    [ -z "${BENCH_KEEP:-}" ] || cp "$f" "$BENCH_KEEP/"
    sed -n 's/^totals: *\([0-9]*\).*/\1/p' "$f" | head -1 # (summary: is wrong after instr toggles)
}
cg_start() { # cg_start CONFIG PORT OUT -> pid
    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$3" \
        "$build/databuild-query" --config "$1" 2>>"$work/callgrind.log" >/dev/null &
    pids+=("$!")
    for _ in $(seq 1 300); do
        "$build/databuild" health --server "127.0.0.1:$2" --timeout 2000 >/dev/null 2>&1 && break
        sleep 0.5
    done
    echo "${pids[-1]}"
}
cg_off=$(freeport) cg_on=$(freeport) cg_m=$(freeport)
config "$cg_off" >"$work/cg_off.yaml"
config "$cg_on" "$cg_m" >"$work/cg_on.yaml"
p_off=$(cg_start "$work/cg_off.yaml" "$cg_off" "$work/cg.off")
p_on=$(cg_start "$work/cg_on.yaml" "$cg_on" "$work/cg.on")
cg_secs=${BENCH_CALLGRIND_SECONDS:-20}
echo "== instructions per call (callgrind), $rpc, 4 clients, ${cg_secs} s each =="
declare -A per
for side in off on; do
    port=$cg_off pid=$p_off; [ "$side" = on ] && port=$cg_on pid=$p_on
    "$build/bench_query" run --target "127.0.0.1:$port" --rpc "$rpc" --partitions "$partitions" \
        --clients 4 --seconds 3 >/dev/null # warm-up, not counted
    ir=$(instr "$port" "$pid" "$work/cg.$side" "$build/bench_query" run --target "127.0.0.1:$port" \
        --rpc "$rpc" --partitions "$partitions" --clients 4 --seconds "$cg_secs")
    calls=$(sed -n 's/.* calls=\([0-9]*\).*/\1/p' "$work/cmd.out")
    per[$side]=$(python3 -c "print('%.0f' % ($ir / max(1, $calls)))")
    echo "metrics $side: $calls calls, $ir instructions, ${per[$side]} per call"
done
scrape_ir=$(instr "$cg_on" "$p_on" "$work/cg.on" bash -c \
    "for i in \$(seq 1 10); do curl -sf http://127.0.0.1:$cg_m/metrics >/dev/null; done")
python3 - "${per[off]}" "${per[on]}" "$scrape_ir" <<'PY'
import sys
off, on, scrape = float(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]) / 10
print("per call: %+.0f instructions (%+.2f %%) with metrics on" % (on - off, (on / off - 1) * 100))
print("one /metrics scrape: %.0f instructions (= %.1f calls' worth; at 1 scrape/s and "
      "1,000 calls/s that adds %.2f %%)" % (scrape, scrape / off, scrape / (1000 * off) * 100))
PY
