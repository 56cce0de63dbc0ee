#!/usr/bin/env bash
# bench/run_containers.sh - the compose deployment against the same processes
# on the host, in the same run (./dev bench containers):
#   - image sizes (databuild, databuild-demo, databuild-postgres);
#   - time from `compose up` to every container healthy (fresh volumes);
#   - no-op build throughput (bench/noop_job.c, graph noop/TAG/top/WxH as in
#     bench/run_build.sh): GraphBuilder/Build of a fresh graph on the host
#     (event log, 2 job services, 1 graph service, the private PostgreSQL of
#     ./dev bench) and through the compose deployment (PostgreSQL, event log,
#     2 job and 2 graph replicas; the build goes to graph-1), best of
#     BENCH_RUNS each.
# Needs: docker with compose, the images (./dev image), DBLD_TEST_PG (set by
# ./dev bench), DBLD_BUILD_DIR. Optional: BENCH_SHAPE (default 10x100: 1,011
# tasks), BENCH_PARALLEL (graph max_parallel = each job service's
# max_concurrent_runs, default 8), BENCH_RUNS (default 2).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
build=${DBLD_BUILD_DIR:-$root/build}
par=${BENCH_PARALLEL:-8}
shape=${BENCH_SHAPE:-10x100}
runs=${BENCH_RUNS:-2}
: "${DBLD_TEST_PG:?DBLD_TEST_PG must name the PostgreSQL server (run ./dev bench containers)}"
command -v docker >/dev/null || { echo "bench containers: docker not found" >&2; exit 1; }
if docker compose version >/dev/null 2>&1; then compose=(docker compose); else compose=(docker-compose); fi

project="dbldbench$$"
db="bench_containers_$$"
dsn="${DBLD_TEST_PG/dbname=postgres/dbname=$db}"
work=$(mktemp -d)
chmod 755 "$work"
pids=()
dc() { "${compose[@]}" -p "$project" -f "$root/deploy/compose.yaml" -f "$work/override.yaml" "$@"; }
cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    [ -f "$work/override.yaml" ] && dc down -v --remove-orphans -t 20 >/dev/null 2>&1
    psql -q "$DBLD_TEST_PG" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cc=${CC:-cc}
"$cc" -O2 -static -o "$work/noop_job" "$here/noop_job.c" 2>/dev/null ||
    "$cc" -O2 -o "$work/noop_job" "$here/noop_job.c"
chmod 755 "$work/noop_job"

# config COMMAND EVENTLOG JOB1 JOB2 GRAPH LISTEN_HOST DSN: the suite's YAML for the no-op graph
config() {
    cat <<YAML
shared:
  postgres_dsn: "$7"
  log_level: warn
  peers:
    eventlog: $2
    job: [$3, $4]
    graph: $5
eventlog:
  listen: $6:${2##*:}
job:
  listen: $6:${3##*:}
  max_concurrent_runs: $par
graph:
  listen: $6:${5##*:}
  max_parallel: $par
  jobs:
    - label: //bench:noop
      command: ["$1"]
      outputs: ['noop/.*']
      timeout_ms: 60000
query:
  listen: $6:7104
YAML
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
best() { sed -E 's/.* jobs_per_s=([0-9.]+).*/\1/' "$1" | sort -g | tail -n1; }

echo "== images =="
for i in databuild:latest databuild-demo:latest databuild-postgres:latest; do
    printf '%-28s %7.1f MB\n' "$i" "$(docker image inspect -f '{{.Size}}' "$i" | awk '{ print $1 / 1000000 }')"
done

echo
echo "== the compose deployment: up to healthy =="
config /opt/bench/noop_job eventlog:7101 job-1:7102 job-2:7102 graph-1:7103 0.0.0.0 \
    "host=postgres port=5432 dbname=databuild user=databuild password=databuild" >"$work/containers.yaml"
chmod 644 "$work/containers.yaml"
{
    echo "services:"
    for s in eventlog job-1 job-2 graph-1 graph-2 query-1 query-2; do
        echo "  $s:"
        echo "    volumes:"
        echo "      - $work/containers.yaml:/etc/databuild/databuild.yaml:ro"
        echo "      - $work/noop_job:/opt/bench/noop_job:ro"
    done
} >"$work/override.yaml"
export DATABUILD_RESTART=no DATABUILD_EVENTLOG_PORT= DATABUILD_JOB1_PORT= DATABUILD_JOB2_PORT= \
    DATABUILD_GRAPH1_PORT= DATABUILD_GRAPH2_PORT= DATABUILD_QUERY1_PORT= DATABUILD_QUERY2_PORT=
t0=$(date +%s.%N)
dc up -d >/dev/null 2>&1
n_ok=0
for _ in $(seq 1 600); do
    st=$(docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{end}}' \
        $(docker ps -aq --filter "label=com.docker.compose.project=$project"))
    n_ok=$(grep -c '^healthy$' <<<"$st" || true)
    [ "$n_ok" = 8 ] && break
    sleep 0.5
done
t1=$(date +%s.%N)
[ "$n_ok" = 8 ] || { dc ps; echo "the deployment did not become healthy" >&2; exit 1; }
up_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
echo "compose up -> 8 containers healthy: $up_s s"
cgraph=$(dc port graph-1 7103 | tail -n1)

echo
echo "== host processes: event log, 2 job services, graph =="
psql -q "$DBLD_TEST_PG" -c "CREATE DATABASE $db" >/dev/null
pe=$(free_port) pj1=$(free_port) pj2=$(free_port) pg=$(free_port)
config "$work/noop_job" "127.0.0.1:$pe" "127.0.0.1:$pj1" "127.0.0.1:$pj2" "127.0.0.1:$pg" 127.0.0.1 "$dsn" \
    >"$work/host.yaml"
start() { # start SERVICE [ENV...]
    local s=$1; shift
    env "$@" "$build/databuild-$s" --config "$work/host.yaml" 2>>"$work/$s.log" &
    pids+=($!)
}
start eventlog
start job DATABUILD_JOB_LISTEN="127.0.0.1:$pj1" DATABUILD_JOB_STATE_DIR="$work/js1"
start job DATABUILD_JOB_LISTEN="127.0.0.1:$pj2" DATABUILD_JOB_STATE_DIR="$work/js2"
start graph
for _ in $(seq 1 150); do
    ok=1
    for p in $pe $pj1 $pj2 $pg; do "$build/databuild" health --server "127.0.0.1:$p" >/dev/null 2>&1 || ok=0; done
    [ $ok = 1 ] && break
    sleep 0.2
done
for p in $pe $pj1 $pj2 $pg; do "$build/databuild" health --server "127.0.0.1:$p" >/dev/null; done

echo
echo "== no-op builds: graph $shape, parallelism $par, $(nproc) CPUs, alternating host / containers =="
: >"$work/host.txt"
: >"$work/ctr.txt"
for i in $(seq 1 "$runs"); do
    printf 'host:       '
    "$build/bench_build" build --graph "127.0.0.1:$pg" --tag "h$$-$i" --shape "$shape" --parallel "$par" | tee -a "$work/host.txt"
    printf 'containers: '
    "$build/bench_build" build --graph "$cgraph" --tag "c$$-$i" --shape "$shape" --parallel "$par" | tee -a "$work/ctr.txt"
done
h=$(best "$work/host.txt")
c=$(best "$work/ctr.txt")
echo
echo "== results =="
printf 'up to all healthy:                %6s s\n' "$up_s"
printf 'no-op build, host processes:      %8.1f jobs/s (best of %d)\n' "$h" "$runs"
printf 'no-op build, compose deployment:  %8.1f jobs/s (best of %d) = %.2fx the host\n' "$c" "$runs" \
    "$(awk -v c="$c" -v h="$h" 'BEGIN { print c / h }')"
