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
