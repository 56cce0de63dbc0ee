#!/usr/bin/env bash
# make-tokens.sh DIR - the bearer tokens of the compose deployment
# (compose/databuild.yaml's shared.auth): DIR/services.token (what the
# services send each other) and DIR/operators.token (reader + writer, for the
# host's CLI and grpcurl). Existing non-empty files are kept. The services run
# as uid/gid 10001 in their containers and read DIR through a read-only bind
# mount: as root the files are given to group 10001 with mode 0640 (DIR 0750);
# as another user they cannot be, and are made readable by everyone on this
# machine instead (a warning says so).
set -euo pipefail
dir=${1:?usage: make-tokens.sh DIR}
gid=${DATABUILD_CONTAINER_GID:-10001}
mkdir -p "$dir"
for t in services operators; do
    [ -s "$dir/$t.token" ] || (umask 077 && openssl rand -hex 32 >"$dir/$t.token")
done
if [ "$(id -u)" = 0 ]; then
    chgrp "$gid" "$dir" "$dir"/services.token "$dir"/operators.token
    chmod 0750 "$dir"
    chmod 0640 "$dir"/services.token "$dir"/operators.token
else
    echo "make-tokens.sh: not root: $dir/*.token made readable by every user (the containers' uid $gid must read them)" >&2
    chmod 0755 "$dir"
    chmod 0644 "$dir"/services.token "$dir"/operators.token
fi
