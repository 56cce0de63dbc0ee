#!/usr/bin/env bash
# bench/run_query.sh - read throughput and latency of the query service versus
# pgbench running the same SQL, in the same PostgreSQL, in the same run.
#
#   1. Starts eventlog, query (and job and graph, for their idle RSS) on a
#      fresh database and records each service's idle RSS.
#   2. Loads >= 1M events over 100k partitions THROUGH THE EVENT LOG'S Append
#      (bench_query load: realistic builds, job runs and partition events, so
#      every projection is maintained exactly as in production; ~60 s on 2
#      cores). No direct SQL is used for loading. Then VACUUM ANALYZE.
#   3. For GetPartitionsSummary and a ListPartitions page (ref_pattern +
#      status filter + last_partition cursor), at 1, 16 and 64 concurrent
#      clients: the RPC in a closed loop (bench_query run; its async driver,
#      N outstanding calls from two threads like pgbench -c N -j 2; plus one
#      run of its threads driver at 64 clients for comparison), then pgbench with
#      a custom script of exactly the SQL the service runs for that RPC
#      (services/query/partitions.c: the summary statement as a prepared
#      statement like the service's, the list page as the service's pipeline
#      of regex check + unnamed statement), same client count, same duration.
#      Each pair runs back to back; a warm-up pass precedes the measurements.
#   4. Prints QPS, p50/p99 for both, the ratio, the targets (>= 0.7x the raw
#      rate, p99 <= 5 ms at 64 clients; and issue 17's: >= 1.0x and p99 <= the raw
#      p99 at every client count), the RPC runtime's floor (health
#      Check: no database) at the same client counts, and the services' idle
#      RSS again.
#
# Needs: DBLD_TEST_PG (superuser conninfo, set by `./dev bench query`),
#        DBLD_BUILD_DIR (default ./build), pgbench, psql.
# Optional: BENCH_SECONDS (10), BENCH_CLIENTS ("1 16 64"), BENCH_EVENTS
#        (1000000), BENCH_PARTITIONS (100000), BENCH_QUERY_WORKERS (8),
#        BENCH_KEEP_DB=1 (keep the loaded database and print its conninfo),
#        BENCH_QUERY_INDEX (true: the partition index answers; false: SQL only).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
build=${DBLD_BUILD_DIR:-$root/build}
secs=${BENCH_SECONDS:-10}
clients=${BENCH_CLIENTS:-1 16 64}
events=${BENCH_EVENTS:-1000000}
partitions=${BENCH_PARTITIONS:-100000}
qworkers=${BENCH_QUERY_WORKERS:-8}
: "${DBLD_TEST_PG:?DBLD_TEST_PG must name the PostgreSQL server (run ./dev bench query)}"

. "$here/lib.sh"
bench_db query
declare -A port
for s in eventlog job graph query; do port[$s]=$(freeport); done
cat >"$work/databuild.yaml" <<YAML
shared:
  postgres_dsn: "$dsn"
  log_level: warn
  peers:
    eventlog: "127.0.0.1:${port[eventlog]}"
    job: ["127.0.0.1:${port[job]}"]
    graph: "127.0.0.1:${port[graph]}"
    query: "127.0.0.1:${port[query]}"
eventlog:
  listen: "127.0.0.1:${port[eventlog]}"
  workers: 16
job:
  listen: "127.0.0.1:${port[job]}"
graph:
  listen: "127.0.0.1:${port[graph]}"
query:
  listen: "127.0.0.1:${port[query]}"
  workers: $qworkers
  index: ${BENCH_QUERY_INDEX:-true}
YAML

declare -A pid
start() { # start SERVICE: run it, wait until healthy (eventlog and query must be)
    "$build/databuild-$1" --config "$work/databuild.yaml" 2>"$work/$1.log" &
    pid[$1]=$!
    pids+=("$!")
    for _ in $(seq 1 100); do
        "$build/databuild" health --server "127.0.0.1:${port[$1]}" >/dev/null 2>&1 && return 0
        kill -0 "${pid[$1]}" 2>/dev/null || break
        sleep 0.2
    done
    return 1
}
rss() { # rss SERVICE -> "12.3 MiB" or "n/a"
    local p=${pid[$1]:-}
    if [ -n "$p" ] && [ -r "/proc/$p/status" ]; then
        awk '/^VmRSS:/ {printf "%.1f MiB", $2/1024}' "/proc/$p/status"
    else
        echo "n/a"
    fi
}
start eventlog || { cat "$work/eventlog.log" >&2; exit 1; }
start query || { cat "$work/query.log" >&2; exit 1; }
for s in job graph; do
    start "$s" || { echo "note: databuild-$s did not become healthy (its idle RSS is reported as n/a)"; unset "pid[$s]"; }
done
sleep 2
declare -A rss0
for s in eventlog job graph query; do rss0[$s]=$(rss "$s"); done

echo "== load: $events events over $partitions partitions through the event log's Append =="
"$build/bench_query" load --target "127.0.0.1:${port[eventlog]}" --events "$events" \
    --partitions "$partitions" --threads 4
psql -q "$dsn" -c "VACUUM ANALYZE" >/dev/null
psql -At "$dsn" -c "SELECT 'stored: ' || (SELECT count(*) FROM events) || ' events, '
    || (SELECT count(*) FROM partitions) || ' partitions, '
    || (SELECT count(*) FROM build_requests) || ' build requests, '
    || (SELECT count(*) FROM job_runs) || ' job runs, database '
    || pg_size_pretty(pg_database_size(current_database()))"

# The service's SQL (services/query/partitions.c), with the bench's parameters.
pattern='bench/p=[0-9]+'
cat >"$work/summary.sql" <<'SQL'
\set i random(0, 99999)
SELECT p.status, p.updated_ns, p.last_invalidated_ns, ARRAY(SELECT e.build_request_id FROM events e WHERE e.partition_refs @> ARRAY[p.ref] AND e.build_request_id <> '' GROUP BY e.build_request_id ORDER BY max(e.idx) DESC LIMIT 100) FROM partitions p WHERE p.ref = 'bench/p=' || lpad(:i::text, 6, '0');
SQL
cat >"$work/list.sql" <<SQL
\set i random(0, 99999)
\startpipeline
SELECT '' ~ '$pattern';
SELECT p.ref, p.status, p.updated_ns, p.last_invalidated_ns, p.build_request_id FROM partitions p WHERE p.ref > 'bench/p=' || lpad(:i::text, 6, '0') AND ('$pattern'::text IS NULL OR p.ref ~ ('^(?:' || '$pattern'::text || ')\$')) AND ('{4}'::int[] IS NULL OR p.status = ANY('{4}'::int[])) ORDER BY p.ref LIMIT 100;
\endpipeline
SQL
[ "$partitions" = 100000 ] || sed -i "s/random(0, 99999)/random(0, $((partitions - 1)))/" "$work/summary.sql" "$work/list.sql"

# pgbench run: prints "qps p50_ms p99_ms" from its per-transaction log.
pgb() { # pgb SCRIPT MODE CLIENTS SECONDS
    local dir="$work/pgb.$1.$3"
    mkdir -p "$dir"
    local j=$(( $3 < 2 ? 1 : 2 ))
    (cd "$dir" && pgbench -n -M "$2" -c "$3" -j "$j" -T "$4" -l -f "$work/$1.sql" "$dsn" >out.txt 2>&1) ||
        { cat "$dir/out.txt" >&2; return 1; }
    local tps; tps=$(awk '/^tps/ {print $3}' "$dir/out.txt")
    cat "$dir"/pgbench_log.* | awk '{print $3/1000}' | sort -n |
        awk -v tps="$tps" '{a[NR]=$1} END {printf "%.1f %.3f %.3f\n", tps, a[int(NR*0.5)+1], a[int(NR*0.99)+1]}'
}

echo "== warm-up =="
"$build/bench_query" run --target "127.0.0.1:${port[query]}" --rpc summary --partitions "$partitions" --seconds 3 --clients 16 >/dev/null
"$build/bench_query" run --target "127.0.0.1:${port[query]}" --rpc list --partitions "$partitions" --seconds 3 --clients 16 >/dev/null
pgb summary prepared 16 3 >/dev/null
pgb list extended 16 3 >/dev/null

echo "== measurements (${secs}s each; the RPC, then pgbench with the same SQL) =="
: >"$work/results.txt"
for rpc in summary list; do
    mode=prepared; [ "$rpc" = list ] && mode=extended
    for c in $clients; do
        line=$("$build/bench_query" run --target "127.0.0.1:${port[query]}" --rpc "$rpc" \
               --partitions "$partitions" --seconds "$secs" --clients "$c")
        echo "$line"
        read -r pq p50 p99 < <(pgb "$rpc" "$mode" "$c" "$secs")
        echo "pgbench script=$rpc mode=$mode clients=$c tps=$pq p50_ms=$p50 p99_ms=$p99"
        q=$(sed -E 's/.*qps=([0-9.]+).*/\1/' <<<"$line")
        q50=$(sed -E 's/.*p50_ms=([0-9.]+).*/\1/' <<<"$line")
        q99=$(sed -E 's/.*p99_ms=([0-9.]+).*/\1/' <<<"$line")
        echo "$rpc $c $q $q50 $q99 $pq $p50 $p99" >>"$work/results.txt"
    done
    # for comparison: blocking client threads (one per client) instead of the async driver
    line=$("$build/bench_query" run --target "127.0.0.1:${port[query]}" --rpc "$rpc" \
           --partitions "$partitions" --seconds "$secs" --clients 64 --driver threads)
    echo "$line"
    echo "$line" >>"$work/threads.txt"
done

echo
echo "== summary (rpc: GetPartitionsSummary | ListPartitions page; raw: pgbench, same SQL) =="
printf '%-8s %7s %10s %8s %8s %10s %8s %8s %7s  %s\n' rpc clients rpc_qps p50_ms p99_ms raw_qps \
    p50_ms p99_ms ratio "targets: ratio >= 0.70; p99 <= 5 ms at 64 clients | issue 17: >= 1.0x, p99 <= raw p99"
while read -r rpc c q q50 q99 pq p50 p99; do
    awk -v rpc="$rpc" -v c="$c" -v q="$q" -v q50="$q50" -v q99="$q99" -v pq="$pq" -v p50="$p50" -v p99="$p99" 'BEGIN {
        r = q / pq
        t = sprintf("ratio %s", r >= 0.7 ? "met" : "MISSED")
        if (c == 64) t = t sprintf(", p99 %s", q99 <= 5 ? "met" : "MISSED")
        t = t sprintf(" | %s", (r >= 1.0 && q99 <= p99) ? "met" : "MISSED")
        printf "%-8s %7s %10.1f %8.3f %8.3f %10.1f %8.3f %8.3f %6.2fx  %s\n", rpc, c, q, q50, q99, pq, p50, p99, r, t }'
done <"$work/results.txt"

echo "threads driver (one blocking client thread per client, 64 clients):"
sed -E 's/^query rpc=([a-z]+) clients=([0-9]+) .*qps=([0-9.]+) p50_ms=([0-9.]+) p99_ms=([0-9.]+).*/  \1 qps=\3 p50_ms=\4 p99_ms=\5/' "$work/threads.txt"

echo
echo "== reference: the RPC runtime's floor (grpc.health.v1 Check on the query service, no database) =="
"$build/bench_query" run --target "127.0.0.1:${port[query]}" --rpc health --partitions "$partitions" \
    --seconds "$(( secs < 5 ? secs : 5 ))" --clients "$(tr ' ' ',' <<<"$clients")"

sleep 2
echo
echo "== idle RSS (VmRSS) =="
printf '%-9s %14s %22s\n' service "after start" "after load + benchmark"
for s in eventlog job graph query; do
    printf '%-9s %14s %22s\n' "$s" "${rss0[$s]}" "$(rss "$s")"
done
echo "machine: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg) (clients, services and PostgreSQL share them)"
