#!/usr/bin/env bash
# `./dev image` builds the images (bootstrapping debian:bookworm when no
# registry has it), and the runtime image is what deploy/README.md promises:
# at most 120 MB, user 10001, no compiler and no package manager, a working
# CLI, and a service that starts from the shipped config with the image's
# environment logs a loopback event-log peer (not the 0.0.0.0 listen
# address) and exits 0 on docker stop (SIGTERM). The fixture of the other
# container tests (they need the images). Skipped (77) without docker.
set -euo pipefail
src=${DBLD_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
command -v docker >/dev/null || { echo "SKIPPED: no docker"; exit 77; }
docker info >/dev/null 2>&1 || { echo "SKIPPED: no docker (the daemon does not answer)"; exit 77; }

"$src/dev" image

fail=0
bad() { echo "FAIL: $*"; fail=1; }
img=databuild:latest
size=$(docker image inspect -f '{{.Size}}' "$img")
echo "runtime image: $((size / 1000000)) MB ($size bytes); demo: $(($(docker image inspect -f '{{.Size}}' databuild-demo:latest) / 1000000)) MB"
[ "$size" -le 120000000 ] || bad "$img is $size bytes, more than 120 MB"
user=$(docker image inspect -f '{{.Config.User}}' "$img")
[ "$user" = 10001:10001 ] || bad "$img runs as \"$user\", not 10001:10001"

cid=$(docker create "$img")
files=$(docker export "$cid" | tar -t)
docker rm "$cid" >/dev/null
for f in usr/bin/gcc usr/bin/cc usr/bin/ld usr/bin/apt-get usr/bin/dpkg usr/bin/make; do
    ! grep -qx "$f" <<<"$files" || bad "$img contains $f"
done
for f in usr/local/bin/databuild-eventlog usr/local/bin/databuild-job usr/local/bin/databuild-graph \
    usr/local/bin/databuild-query usr/local/bin/databuild; do
    grep -qx "$f" <<<"$files" || bad "$img lacks $f"
done
docker run --rm "$img" cli --help >/dev/null || bad "databuild --help fails in $img"

name=dbldt-image-$$-$RANDOM
tokens=$(mktemp -d)
trap 'docker rm -f "$name" >/dev/null 2>&1 || true; rm -rf "$tokens"' EXIT
# The shipped config has token authorization on: without its token files a
# service refuses to start, naming the file.
docker run --rm "$img" job >"$tokens/out" 2>&1 && bad "the job service started without its token files"
grep -q 'could not read token file.*/etc/databuild/tokens/services.token' "$tokens/out" ||
    bad "no token file, but not the error naming it: $(tail -c 400 "$tokens/out")"
"$src/deploy/compose/make-tokens.sh" "$tokens/t"
docker run -d --name "$name" -v "$tokens/t:/etc/databuild/tokens:ro" "$img" job >/dev/null
started=""
for _ in $(seq 1 100); do
    started=$(docker logs "$name" 2>&1 | grep '"msg":"started"' || true)
    [ -n "$started" ] && break
    sleep 0.2
done
echo "job service: $started"
grep -q '"eventlog":"127.0.0.1:7101"' <<<"$started" ||
    bad "the job service's event-log peer is not 127.0.0.1:7101 (log: $(docker logs "$name" 2>&1 | tail -n 3))"
docker stop -t 15 "$name" >/dev/null
code=$(docker inspect -f '{{.State.ExitCode}}' "$name")
[ "$code" = 0 ] || bad "the job service exited $code on docker stop, not 0"

[ $fail = 0 ] && echo "PASSED"
exit $fail
