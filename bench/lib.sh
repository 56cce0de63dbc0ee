# bench/lib.sh - what the benchmark scripts share (sourced, not run).
#
# bench_db NAME: a fresh database bench_NAME_<pid> on DBLD_TEST_PG's server
# (its conninfo in $dsn), a work directory ($work) and the list of processes
# to stop ($pids); on exit the processes are stopped, the database dropped
# (kept with BENCH_KEEP_DB=1) and the directory removed.
bench_db() {
    db="bench_$1_$$"
    dsn="${DBLD_TEST_PG/dbname=postgres/dbname=$db}"
    [ "$dsn" != "$DBLD_TEST_PG" ] || { echo "run_$1.sh: DBLD_TEST_PG must contain dbname=postgres" >&2; exit 2; }
    work=$(mktemp -d)
    pids=()
    trap bench_cleanup EXIT
    psql -q "$DBLD_TEST_PG" -c "CREATE DATABASE $db" >/dev/null
}

bench_cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null || true; done
    if [ "${BENCH_KEEP_DB:-}" = 1 ]; then
        echo "kept database: $dsn"
    else
        psql -q "$DBLD_TEST_PG" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
    fi
    rm -rf "$work"
}

freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# CPU time (user + system, clock ticks) of a process so far; of every
# PostgreSQL process (the backends of this run stay connected through it);
# of this shell's waited-for children (the load client).
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
pg_ticks() { # DBLD_TEST_PG's cluster only (other clusters may share the machine)
    local t=0 p
    [ -n "${pg_main:-}" ] ||
        pg_main=$(head -n1 "$(psql -At "$DBLD_TEST_PG" -c "SHOW data_directory")/postmaster.pid")
    # the postmaster's own and its reaped children's (cutime + cstime: backends
    # and autovacuum workers that ended), then the children still running
    t=$(awk '{print $14 + $15 + $16 + $17}' "/proc/$pg_main/stat" 2>/dev/null || echo 0)
    for p in $(pgrep -P "$pg_main"); do t=$((t + $(cpu_ticks "$p"))); done
    echo "$t"
}
# (the builtin `times` in the calling shell, not in a subshell - call it as
# `child_ticks >FILE`, not `$(child_ticks)`: its second line is the children's
# "user system", e.g. "1m2.345s 0m0.678s")
child_ticks() {
    LC_ALL=C times >"$work/times.txt"
    awk -v hz="$(getconf CLK_TCK)" 'NR == 2 {
        t = 0
        for (i = 1; i <= 2; i++) { split($i, p, /[ms]/); t += p[1] * 60 + p[2] }
        printf "%d\n", t * hz }' "$work/times.txt"
}
