#!/usr/bin/env bash
# deploy/k8s validates offline against the Kubernetes API's Go types
# (deploy/k8s/check, built by ./dev deps into .dev/tools/bin/k8s-check): the
# manifests pass; copies with a misspelled field, a wrong type, a bad
# quantity or a grace period shorter than shutdown_grace_ms fail, each with
# a message naming the problem; and the ConfigMap's databuild.yaml loads in
# the real graph service (which starts and reports its 3 jobs).
set -euo pipefail
src=${DBLD_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
bin=${DBLD_BIN_DIR:-$src/build}
check=${DBLD_TOOLS_BIN:-$src/.dev/tools/bin}/k8s-check
[ -x "$check" ] || { echo "SKIPPED: $check not built (./dev deps builds it when Go is present)"; exit 77; }

tmp=$(mktemp -d)
pid=""
cleanup() { [ -z "$pid" ] || kill "$pid" 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
fail=0
bad() { echo "FAIL: $*"; fail=1; }

"$check" "$src"/deploy/k8s/*.yaml || bad "the manifests in deploy/k8s do not validate"

# expect_failure NAME FILE SED-SCRIPT PATTERN: the mutated copy must fail naming PATTERN
expect_failure() {
    local name=$1 file=$2 script=$3 pattern=$4 out
    rm -rf "$tmp/m" && mkdir "$tmp/m" && cp "$src"/deploy/k8s/*.yaml "$tmp/m/"
    sed -i "$script" "$tmp/m/$file"
    cmp -s "$tmp/m/$file" "$src/deploy/k8s/$file" && { bad "$name: the edit changed nothing"; return; }
    if out=$("$check" "$tmp"/m/*.yaml 2>&1); then
        bad "$name: the checker accepted it"
    elif grep -q -- "$pattern" <<<"$out"; then
        echo "ok: $name: $(grep -- "$pattern" <<<"$out" | head -n1)"
    else
        bad "$name: the error does not say \"$pattern\": $out"
    fi
}
expect_failure "misspelled field" graph.yaml 's/^  replicas: 2/  replicaz: 2/' 'unknown field "replicaz"'
expect_failure "wrong type" query.yaml 's/^  replicas: 2/  replicas: two/' 'spec.replicas of type int32'
expect_failure "bad quantity" eventlog.yaml '0,/memory: 128Mi/s//memory: 128 megabytes/' 'quantities must match'
expect_failure "misspelled probe" job.yaml '0,/readinessProbe:/s//readinesProbe:/' 'unknown field "readinesProbe"'
expect_failure "short grace period" job.yaml 's/terminationGracePeriodSeconds: 15/terminationGracePeriodSeconds: 5/' \
    'does not cover job.shutdown_grace_ms'
expect_failure "unknown kind" configmap.yaml 's/^kind: ConfigMap/kind: ConfigMapp/' 'unknown apiVersion/kind'

# The ConfigMap's config in the real service.
"$check" --print-config "$src/deploy/k8s/configmap.yaml" >"$tmp/databuild.yaml"
env -u DATABUILD_POSTGRES_DSN DATABUILD_GRAPH_LISTEN=127.0.0.1:0 DATABUILD_EVENTLOG_ADDR=127.0.0.1:1 \
    "$bin/databuild-graph" --config "$tmp/databuild.yaml" 2>"$tmp/graph.log" &
pid=$!
started=""
for _ in $(seq 1 100); do
    started=$(grep '"msg":"started"' "$tmp/graph.log" || true)
    [ -n "$started" ] || ! kill -0 "$pid" 2>/dev/null && break
    sleep 0.1
done
if grep -q '"jobs":"3"' <<<"$started"; then
    echo "ok: the ConfigMap's databuild.yaml loads: $started"
else
    bad "databuild-graph did not start with the ConfigMap's config and its 3 jobs: $(cat "$tmp/graph.log")"
fi
kill -TERM "$pid" 2>/dev/null || true
wait "$pid" || bad "databuild-graph exited $? on SIGTERM"
pid=""

[ $fail = 0 ] && echo "PASSED"
exit $fail
