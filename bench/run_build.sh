#!/usr/bin/env bash
# bench/run_build.sh - end-to-end build throughput of no-op jobs through the
# event log, job and graph services, versus spawning the same two processes
# per job (config + exec) directly, in the same run; and the time of Analyze
# on a 100k-partition graph with its configure spawn count.
#
# The job is bench/noop_job.c (compiled here with the C compiler alone, static
# when possible): `config` prints a minimal JobConfigureResponse, `exec` exits
# 0. The graph is noop/TAG/top/WxH: 1 top <- W mids <- W*H leaves.
#
# Needs: DBLD_TEST_PG (superuser conninfo, set by `./dev bench build`),
#        DBLD_BUILD_DIR (default ./build). Optional: BENCH_PARALLEL (graph
#        max_parallel = job max_concurrent_runs = raw spawn threads, default 8),
#        BENCH_SHAPE (build graph, default 20x100: 2,021 tasks),
#        BENCH_ANALYZE_SHAPE (default 100x1000: 100,101 tasks), BENCH_RUNS
#        (service builds, each of a fresh graph; the best is compared, default 3;
#        0 measures Analyze alone).
# Service CPU per job is each process's own utime+stime (/proc/PID/stat); the
# job service's reaped children (the job processes) are its cutime+cstime,
# reported on their own and not in the services' total.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
build=${DBLD_BUILD_DIR:-$root/build}
par=${BENCH_PARALLEL:-8}
shape=${BENCH_SHAPE:-20x100}
ashape=${BENCH_ANALYZE_SHAPE:-100x1000}
runs=${BENCH_RUNS:-3}
: "${DBLD_TEST_PG:?DBLD_TEST_PG must name the PostgreSQL server (run ./dev bench build)}"

db="bench_build_$$"
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
job="$work/noop_job"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pe=$(free_port) pj=$(free_port) pg=$(free_port)
psql -q "$DBLD_TEST_PG" -c "CREATE DATABASE $db" >/dev/null
cat >"$work/databuild.yaml" <<YAML
shared:
  postgres_dsn: "$dsn"
  log_level: warn
  peers:
    eventlog: 127.0.0.1:$pe
    job: [127.0.0.1:$pj]
    graph: 127.0.0.1:$pg
eventlog:
  listen: 127.0.0.1:$pe
job:
  listen: 127.0.0.1:$pj
  max_concurrent_runs: $par
graph:
  listen: 127.0.0.1:$pg
  max_parallel: $par
  jobs:
    - label: //bench:noop
      command: ["$job"]
      outputs: ['noop/.*']
      env: [NOOP_CONFIG_LOG=$work/config.log]
      timeout_ms: 60000
YAML
for s in eventlog job graph; do
    "$build/databuild-$s" --config "$work/databuild.yaml" 2>"$work/$s.log" &
    pids+=($!)
done
for _ in $(seq 1 150); do
    ok=1
    for p in $pe $pj $pg; do "$build/databuild" health --server "127.0.0.1:$p" >/dev/null 2>&1 || ok=0; done
    [ $ok = 1 ] && break
    sleep 0.2
done
for p in $pe $pj $pg; do "$build/databuild" health --server "127.0.0.1:$p" >/dev/null; done

# CPU time (ms) of the given pids: their own (utime+stime), or with
# CPU_FIELDS=children that of their reaped children (cutime+cstime: the job
# processes, for the job service).
cpu_of() {
    local p tot=0 t f='$14 + $15'
    [ "${CPU_FIELDS:-}" = children ] && f='$16 + $17'
    for p in "$@"; do
        t=$(awk "{print $f}" "/proc/$p/stat" 2>/dev/null || echo 0)
        tot=$((tot + t))
    done
    echo $((tot * 1000 / $(getconf CLK_TCK)))
}
backends() { psql -tAq "$DBLD_TEST_PG" -c "SELECT pid FROM pg_stat_activity WHERE datname = '$db'"; }

bb="$build/bench_build"
cores=$(nproc)
echo "== no-op jobs: graph $shape, parallelism $par, $cores CPUs, PostgreSQL fsync on =="
: >"$work/raw1.txt"
: >"$work/rawp.txt"
: >"$work/svc.txt"
: >"$work/cpu.txt"
if [ "$runs" -gt 0 ]; then
echo "-- raw spawns: config REF + exec per job, no services"
"$bb" raw --job "$job" --tag raw --shape "$shape" --parallel 1 | tee "$work/raw1.txt"
"$bb" raw --job "$job" --tag raw --shape "$shape" --parallel "$par" | tee "$work/rawp.txt"
echo "-- through the services (GraphBuilder/Build of a fresh graph each run: analyze, claims, events, JobRunner/Run)"
for i in $(seq 1 "$runs"); do
    : >"$work/config.log"
    be=$(backends | tr '\n' ' ')
    c0=($(cpu_of "${pids[0]}") $(cpu_of "${pids[1]}") $(cpu_of "${pids[2]}") $(cpu_of $be)
        $(CPU_FIELDS=children cpu_of "${pids[1]}"))
    "$bb" build --graph "127.0.0.1:$pg" --tag "b$$-$i" --shape "$shape" --parallel "$par" | tee -a "$work/svc.txt"
    # backends that connected during the run count in full; ones that left are lost
    be2=$(printf '%s\n' $be $(backends) | sort -u | tr '\n' ' ')
    c1=($(cpu_of "${pids[0]}") $(cpu_of "${pids[1]}") $(cpu_of "${pids[2]}") $(cpu_of $be2)
        $(CPU_FIELDS=children cpu_of "${pids[1]}"))
    n=$(sed -E 's/.* jobs=([0-9]+).*/\1/' <(tail -n1 "$work/svc.txt"))
    awk -v n="$n" -v e=$((c1[0] - c0[0])) -v j=$((c1[1] - c0[1])) -v g=$((c1[2] - c0[2])) \
        -v p=$((c1[3] - c0[3])) -v k=$((c1[4] - c0[4])) 'BEGIN {
        printf "   cpu ms per job: eventlog %.2f, postgres %.2f, graph %.2f, job service %.2f; services %.2f (target <= 1.0: %s); job processes %.2f\n",
            e/n, p/n, g/n, j/n, (e+p+g+j)/n, ((e+p+g+j)/n <= 1.0) ? "met" : "MISSED", k/n }' | tee -a "$work/cpu.txt"
    echo "   configure spawns: $(wc -l <"$work/config.log") (refs per spawn: $(paste -sd, "$work/config.log"))"
done
fi

echo
echo "== Analyze: graph $ashape =="
"$bb" config --job "$job" --tag "a$$" --shape "$ashape" | tee "$work/cfg.txt"
: >"$work/config.log"
"$bb" analyze --graph "127.0.0.1:$pg" --tag "a$$" --shape "$ashape" | tee "$work/an.txt"
an_spawns=$(wc -l <"$work/config.log")
echo "   configure spawns: $an_spawns (refs per spawn: $(paste -sd, "$work/config.log"))"

val() { sed -E "s/.*[[:space:]]$1=([0-9.]+).*/\\1/" "$2" | sort -g | tail -n1; }
r1=$(val jobs_per_s "$work/raw1.txt")
rp=$(val jobs_per_s "$work/rawp.txt")
sv=$(val jobs_per_s "$work/svc.txt")
an=$(val seconds "$work/an.txt")
cf=$(val seconds "$work/cfg.txt")
an_tasks=$(val tasks "$work/an.txt")
# the lowest services' total (cpu.txt: "... services X (target ...") and its line
cpu_best=$(sed -E 's/.* services ([0-9.]+) .*/\1 &/' "$work/cpu.txt" | sort -g | head -n1 | cut -d' ' -f2-)
echo
echo "== results =="
if [ "$runs" -gt 0 ]; then
    awk -v r1="$r1" -v rp="$rp" -v sv="$sv" -v p="$par" 'BEGIN {
    printf "raw spawn rate, sequential:        %8.1f jobs/s\n", r1
    printf "raw spawn rate, %3d in parallel:    %8.1f jobs/s\n", p, rp
    printf "through the services (best run):   %8.1f jobs/s = %.2fx raw parallel, %.2fx raw sequential\n", sv, sv/rp, sv/r1
    printf "  target >= 0.5x raw at the same parallelism: %s\n", (sv/rp >= 0.5) ? "met" : "MISSED"
}'
    echo "service CPU per job (lowest run):${cpu_best#   cpu ms per job:}"
fi
awk -v an="$an" -v cf="$cf" -v sp="$an_spawns" -v shape="$ashape" -v tasks="$an_tasks" 'BEGIN {
    printf "Analyze, %s graph (%d tasks): %.3f s with %d configure spawns (%.3f s when spawned directly)\n", shape, tasks, an, sp, cf
    printf "  target <= 2 s: %s (without the spawns: %.3f s)\n", (an <= 2) ? "met" : "MISSED", an - cf
}'
