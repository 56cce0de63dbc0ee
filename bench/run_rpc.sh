#!/usr/bin/env bash
# bench/run_rpc.sh - what the RPC runtime (lib/rpc_server.c) costs per call,
# with no database and no handler work: grpc.health.v1 Check against a job
# service started on its own (a minimal config: no graph, no PostgreSQL).
#
# For 1, 16 and 64 closed-loop clients (bench_query's async driver, a
# connection per client) it prints the rate, p50/p99, and the job service's
# CPU (user + system, /proc/PID/stat) per call answered. The rate depends on
# what else the machine runs; the CPU per call much less, which makes it the
# figure to compare two builds by: DBLD_BUILD_DIR_B=DIR also runs the job
# service of another build (the client is always DBLD_BUILD_DIR's),
# alternating BENCH_ROUNDS rounds of the two.
#
# Needs: DBLD_BUILD_DIR (default ./build). Optional: BENCH_SECONDS (4),
#        BENCH_ROUNDS (2), BENCH_CLIENTS ("1 16 64"), DBLD_BUILD_DIR_B.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
build=${DBLD_BUILD_DIR:-$root/build}
secs=${BENCH_SECONDS:-4}
rounds=${BENCH_ROUNDS:-2}
clients=${BENCH_CLIENTS:-1 16 64}
. "$here/lib.sh"

work=$(mktemp -d)
pid=
cleanup() {
    [ -z "$pid" ] || { kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true; }
    rm -rf "$work"
}
trap cleanup EXIT

port=$(freeport)
printf 'shared:\n  log_level: error\njob:\n  listen: 127.0.0.1:%s\n' "$port" >"$work/databuild.yaml"

# run LABEL BUILD_DIR: one round against that build's job service
run() {
    DATABUILD_JOB_STATE_DIR="$work/state-$1" "$2/databuild-job" --config "$work/databuild.yaml" \
        >"$work/job-$1.log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do
        "$build/bench_query" run --target "127.0.0.1:$port" --rpc health --partitions 1 \
            --seconds 0.2 --clients 1 >/dev/null 2>&1 && break
        sleep 0.1
    done
    "$build/bench_query" run --target "127.0.0.1:$port" --rpc health --partitions 1 --seconds 1 \
        --clients 16 >/dev/null # warm-up
    for c in $clients; do
        local t0 t1 out calls
        t0=$(cpu_ticks "$pid")
        out=$("$build/bench_query" run --target "127.0.0.1:$port" --rpc health --partitions 1 \
            --seconds "$secs" --clients "$c")
        t1=$(cpu_ticks "$pid")
        calls=$(sed -E 's/.* calls=([0-9]+) .*/\1/' <<<"$out")
        awk -v l="$1" -v c="$c" -v n="$calls" -v t="$((t1 - t0))" -v hz="$(getconf CLK_TCK)" \
            -v o="$out" 'BEGIN {
                match(o, /qps=[0-9.]+ p50_ms=[0-9.]+ p99_ms=[0-9.]+ errors=[0-9]+/)
                printf "%-4s clients=%-3s %s server_us_per_call=%.2f\n", l, c,
                    substr(o, RSTART, RLENGTH), (n > 0 ? t * 1e6 / hz / n : 0) }'
    done
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    pid=
}

echo "== grpc.health.v1 Check on a lone job service, ${secs}s per client count =="
for r in $(seq "$rounds"); do
    run A "$build"
    [ -z "${DBLD_BUILD_DIR_B:-}" ] || run B "$DBLD_BUILD_DIR_B"
done
echo "machine: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
