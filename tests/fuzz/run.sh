#!/usr/bin/env bash
# run.sh - run one libFuzzer target of tests/fuzz (see README.md).
#
#   run.sh smoke    BUILD_DIR TARGET SECONDS   ctest's fuzz/TARGET: the repo corpus
#                                              (read-only) plus SECONDS of fuzzing
#                                              from seed DBLD_FUZZ_SEED (default 1);
#                                              new inputs go to a temp dir
#   run.sh campaign BUILD_DIR TARGET SECONDS OUT_DIR
#                                              ./dev fuzz: the corpus grows in
#                                              OUT_DIR/TARGET/corpus, crashes land in
#                                              OUT_DIR/TARGET/crashes, the log in
#                                              OUT_DIR/TARGET/log
#
# Every corpus input runs first: an input in tests/fuzz/corpus/TARGET that
# crashes (a regression input whose fix was lost) fails at once. Options:
# tests/fuzz/TARGET.dict (a dictionary) and tests/fuzz/TARGET.options (extra
# libFuzzer flags, one per line). Exit status: 0, or libFuzzer's (a crash,
# leak, timeout or failed property).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mode=${1:?mode} build=${2:?build dir} target=${3:?target} seconds=${4:?seconds}
bin=$build/$target
[ -x "$bin" ] || { echo "run.sh: $bin is not built (./dev build --fuzz builds it)" >&2; exit 1; }
seeds=$HERE/corpus/$target
[ -d "$seeds" ] || { echo "run.sh: no corpus $seeds" >&2; exit 1; }

flags=(-max_total_time="$seconds" -timeout=30 -rss_limit_mb=2560 -print_final_stats=1
       -detect_leaks=1)
[ -f "$HERE/$target.dict" ] && flags+=(-dict="$HERE/$target.dict")
if [ -f "$HERE/$target.options" ]; then
    while read -r opt; do
        case $opt in '' | '#'*) ;; *) flags+=("$opt") ;; esac
    done <"$HERE/$target.options"
fi
# A smaller quarantine than ASan's 256 MiB: the targets allocate much and free
# at once; with the default most of the time goes to page faults.
export ASAN_OPTIONS=${ASAN_OPTIONS:-quarantine_size_mb=16:malloc_context_size=10:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export LC_ALL=C # rxoverlap models the C locale, as the services run

case $mode in
smoke)
    work=$(mktemp -d "${TMPDIR:-/tmp}/dbld-fuzz-$target.XXXXXX")
    trap 'rm -rf "$work"' EXIT
    mkdir -p "$work/corpus" "$build/fuzz-crashes/$target"
    # A fixed seed: the mutations follow one sequence, so a red CI run
    # reproduces and comes from the change, not from where a random walk
    # went that day (exploring is `./dev fuzz`, which draws a seed).
    flags+=(-seed="${DBLD_FUZZ_SEED:-1}")
    rc=0
    "$bin" "${flags[@]}" -artifact_prefix="$build/fuzz-crashes/$target/" \
        "$work/corpus" "$seeds" >"$work/log" 2>&1 || rc=$?
    grep -E '^(#[0-9]+ +DONE|stat::|INFO: seed corpus)' "$work/log" || true
    if [ $rc != 0 ]; then
        tail -n 60 "$work/log"
        echo "fuzz/$target FAILED (exit $rc); the input is in $build/fuzz-crashes/$target/" >&2
    fi
    exit $rc
    ;;
campaign)
    out=${5:?out dir}/$target
    mkdir -p "$out/corpus" "$out/crashes"
    rc=0
    "$bin" "${flags[@]}" -artifact_prefix="$out/crashes/" "$out/corpus" "$seeds" \
        >"$out/log" 2>&1 || rc=$?
    exit $rc
    ;;
*)
    echo "run.sh: unknown mode $mode" >&2
    exit 2
    ;;
esac
