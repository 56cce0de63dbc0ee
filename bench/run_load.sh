#!/usr/bin/env bash
# bench/run_load.sh - the query service under 1,000 concurrent clients.
#
#   1. Starts eventlog and query (default query settings: 4 workers, the
#      reactor) on a fresh database.
#   2. Loads BENCH_EVENTS events over BENCH_PARTITIONS partitions through the
#      event log's Append (bench_query load, as bench/run_query.sh does), then
#      VACUUM ANALYZE.
#   3. BENCH_CHANNELS channels (each its own HTTP/2 connection) x
#      BENCH_CALLS outstanding calls each, in a closed loop for
#      BENCH_SECONDS, of GetPartitionsSummary (a random partition),
#      ListPartitions (a page: pattern + status + cursor) and ListBuildRequests
#      (the newest page), a third of the callers each (bench_query mixed).
#   4. Samples the query service's RSS (VmRSS) and thread count every second:
#      before the load, during it (the peak) and after it (BENCH_AFTER
#      seconds after the last call); prints errors and p50/p99 per RPC, the
#      figures for RSS and threads, and whether the targets of issue 17 are
#      met: 0 errors, p99 <= 50 ms for every RPC, RSS <= 30 MB during and
#      after; and the event log's RSS after the load (<= 40 MB once idle).
#
# Needs: DBLD_TEST_PG (superuser conninfo, set by `./dev bench load`),
#        DBLD_BUILD_DIR (default ./build), psql.
# Optional: BENCH_EVENTS (1000000), BENCH_PARTITIONS (100000),
#        BENCH_SECONDS (60), BENCH_CHANNELS (50), BENCH_CALLS (20),
#        BENCH_RPCS (summary,list,builds), BENCH_AFTER (5),
#        BENCH_QUERY_WORKERS (the service's default), BENCH_KEEP_DB=1,
#        BENCH_QUERY_INDEX (true: the partition index; false: SQL only),
#        BENCH_WRAP_EVENTLOG / BENCH_WRAP_QUERY (a command the service runs
#        under, split on spaces, e.g. "heaptrack -o /tmp/el": where the
#        memory goes; the RSS figures are then the wrapper's).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
build=${DBLD_BUILD_DIR:-$root/build}
events=${BENCH_EVENTS:-1000000}
partitions=${BENCH_PARTITIONS:-100000}
secs=${BENCH_SECONDS:-60}
channels=${BENCH_CHANNELS:-50}
calls=${BENCH_CALLS:-20}
rpcs=${BENCH_RPCS:-summary,list,builds}
after=${BENCH_AFTER:-5}
: "${DBLD_TEST_PG:?DBLD_TEST_PG must name the PostgreSQL server (run ./dev bench load)}"

. "$here/lib.sh"
bench_db load
el=$(freeport) qp=$(freeport)
cat >"$work/databuild.yaml" <<YAML
shared:
  postgres_dsn: "$dsn"
  log_level: warn
  peers:
    eventlog: "127.0.0.1:$el"
    query: "127.0.0.1:$qp"
eventlog:
  listen: "127.0.0.1:$el"
  workers: 16
query:
  listen: "127.0.0.1:$qp"
YAML
[ -z "${BENCH_QUERY_WORKERS:-}" ] || echo "  workers: $BENCH_QUERY_WORKERS" >>"$work/databuild.yaml"
echo "  index: ${BENCH_QUERY_INDEX:-true}" >>"$work/databuild.yaml"

start() { # start SERVICE PORT: run it, wait until healthy; sets $started
    local wrap_var="BENCH_WRAP_${1^^}" wrap=()
    read -r -a wrap <<<"${!wrap_var:-}"
    "${wrap[@]}" "$build/databuild-$1" --config "$work/databuild.yaml" 2>"$work/$1.log" &
    started=$!
    pids+=("$started")
    for _ in $(seq 1 100); do
        "$build/databuild" health --server "127.0.0.1:$2" >/dev/null 2>&1 && return 0
        kill -0 "$started" 2>/dev/null || break
        sleep 0.2
    done
    cat "$work/$1.log" >&2
    return 1
}
start eventlog "$el"
elpid=$started
start query "$qp"
qpid=$started

# "rss_kib threads" of a process (default: the query service) now
sample() { awk '/^VmRSS:/ {r = $2} /^Threads:/ {t = $2} END {print r + 0, t + 0}' "/proc/${1:-$qpid}/status"; }
mib() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }

read -r rss_start thr_start < <(sample)
read -r el_start _ < <(sample "$elpid")
echo "== load: $events events over $partitions partitions through the event log's Append =="
# the event log's RSS four times a second while the load runs: its peak
( while kill -0 "$elpid" 2>/dev/null; do sample "$elpid"; sleep 0.25; done ) >"$work/el_samples.txt" &
el_sampler=$!
pids+=("$el_sampler")
"$build/bench_query" load --target "127.0.0.1:$el" --events "$events" --partitions "$partitions" \
    --threads 4
kill "$el_sampler" 2>/dev/null && wait "$el_sampler" 2>/dev/null || true
read -r el_peak _ < <(awk '$1 > r {r = $1} END {print r + 0}' "$work/el_samples.txt")
read -r el_loaded _ < <(sample "$elpid")
psql -q "$dsn" -c "VACUUM ANALYZE" >/dev/null
psql -At "$dsn" -c "SELECT 'stored: ' || (SELECT count(*) FROM events) || ' events, '
    || (SELECT count(*) FROM partitions) || ' partitions, '
    || (SELECT count(*) FROM build_requests) || ' build requests'"

sleep 2 # the services trim their heaps after 1 s idle
read -r rss_before thr_before < <(sample)
read -r el_idle _ < <(sample "$elpid")
# one sample a second while the clients run; the peak is "during"
( while kill -0 "$qpid" 2>/dev/null; do sample; sleep 1; done ) >"$work/samples.txt" &
sampler=$!
pids+=("$sampler")
total=$((channels * calls))
echo "== $total clients ($channels channels x $calls calls) for ${secs}s: $rpcs =="
q_cpu0=$(cpu_ticks "$qpid")
pg_cpu0=$(pg_ticks)
el_cpu0=$(cpu_ticks "$elpid")
child_ticks >"$work/kids0"; kids0=$(cat "$work/kids0")
"$build/bench_query" mixed --target "127.0.0.1:$qp" --partitions "$partitions" --seconds "$secs" \
    --channels "$channels" --calls "$calls" --rpcs "$rpcs" >"$work/mixed.txt"
child_ticks >"$work/kids1"; kids1=$(cat "$work/kids1")
q_cpu1=$(cpu_ticks "$qpid")
pg_cpu1=$(pg_ticks)
el_cpu1=$(cpu_ticks "$elpid")
cat "$work/mixed.txt"
kill "$sampler" 2>/dev/null && wait "$sampler" 2>/dev/null || true
read -r rss_peak thr_peak < <(awk '$1 > r {r = $1} $2 > t {t = $2} END {print r + 0, t + 0}' "$work/samples.txt")
sleep "$after"
read -r rss_after thr_after < <(sample)

echo
echo "== query service: RSS (VmRSS) and threads =="
printf '%-26s %10s %8s\n' "" "RSS MiB" threads
printf '%-26s %10s %8s\n' "started" "$(mib "$rss_start")" "$thr_start"
printf '%-26s %10s %8s\n' "before the clients" "$(mib "$rss_before")" "$thr_before"
printf '%-26s %10s %8s\n' "during (peak)" "$(mib "$rss_peak")" "$thr_peak"
printf '%-26s %10s %8s\n' "${after}s after the clients" "$(mib "$rss_after")" "$thr_after"

echo
echo "== targets (issue 17: 0 errors, p99 <= 50 ms for every RPC, RSS <= 30 MB during and after) =="
verdict=met
while read -r line; do
    rpc=$(sed -E 's/.*rpc=([a-z]+).*/\1/' <<<"$line")
    p50=$(sed -E 's/.*p50_ms=([0-9.]+).*/\1/' <<<"$line")
    p99=$(sed -E 's/.*p99_ms=([0-9.]+).*/\1/' <<<"$line")
    err=$(sed -E 's/.*errors=([0-9]+).*/\1/' <<<"$line")
    qps=$(sed -E 's/.*qps=([0-9.]+).*/\1/' <<<"$line")
    ok=$(awk -v p="$p99" -v e="$err" 'BEGIN {print (p <= 50 && e == 0) ? "met" : "MISSED"}')
    [ "$ok" = met ] || verdict=MISSED
    printf '%-8s qps %8.1f  p50 %9.3f ms  p99 %9.3f ms  errors %6s  %s\n' "$rpc" "$qps" "$p50" "$p99" "$err" "$ok"
done <"$work/mixed.txt"
mem=$(awk -v a="$rss_peak" -v b="$rss_after" 'BEGIN {print (a <= 30 * 1024 && b <= 30 * 1024) ? "met" : "MISSED"}')
[ "$mem" = met ] || verdict=MISSED
echo "RSS during $(mib "$rss_peak") MiB, after $(mib "$rss_after") MiB: $mem"
elmem=$(awk -v k="$el_idle" 'BEGIN {print k <= 40 * 1024 ? "met" : "MISSED"}')
[ "$elmem" = met ] || verdict=MISSED
echo "event log RSS: $(mib "$el_start") MiB started, $(mib "$el_peak") MiB peak during the load," \
    "$(mib "$el_loaded") MiB as the load ended, $(mib "$el_idle") MiB once idle (target <= 40 MB): $elmem"
echo "overall: target $verdict"

# What the machine allows: the CPU each call costs in all (client, query
# service, PostgreSQL, event log), over the cores, bounds the throughput;
# with $total closed-loop callers the mean latency is at least
# callers / throughput (Little's law), whatever the server does.
calls_done=$(awk '{sub(/.*calls=/, ""); sub(/ .*/, ""); n += $1} END {print n + 0}' "$work/mixed.txt")
hz=$(getconf CLK_TCK)
echo
echo "== CPU per call during the clients (all RPCs, ${calls_done} calls) =="
awk -v n="$calls_done" -v hz="$hz" -v cores="$(nproc)" -v callers="$total" \
    -v cl=$((kids1 - kids0)) -v q=$((q_cpu1 - q_cpu0)) -v pg=$((pg_cpu1 - pg_cpu0)) \
    -v el=$((el_cpu1 - el_cpu0)) 'BEGIN {
    if (n == 0) exit;
    us = 1e6 / hz / n;
    printf "client %.1f us, query service %.1f us, PostgreSQL %.1f us, event log %.1f us: %.1f us in all\n",
        cl * us, q * us, pg * us, el * us, (cl + q + pg + el) * us;
    all = (cl + q + pg + el) * us;
    max_qps = cores * 1e6 / all;
    printf "at that cost %d cores serve at most %.0f calls/s; %d closed-loop callers then wait at least %.1f ms per call on average (Little'"'"'s law)\n",
        cores, max_qps, callers, callers / max_qps * 1000;
    printf "without the client'"'"'s share (a client on another machine): at most %.0f calls/s, at least %.1f ms\n",
        cores * 1e6 / ((q + pg + el) * us), callers / (cores * 1e6 / ((q + pg + el) * us)) * 1000 }'

echo "machine: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg) (clients, services and PostgreSQL share them)"
