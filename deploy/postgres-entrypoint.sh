#!/bin/sh
# Entrypoint of deploy/Dockerfile.postgres: create the cluster on first start
# (empty $PGDATA), then run postgres as PID 1. Needs POSTGRES_PASSWORD.
set -eu
: "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD (the password of $POSTGRES_USER)}"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    pw=$(mktemp)
    printf '%s\n' "$POSTGRES_PASSWORD" >"$pw"
    initdb -D "$PGDATA" -U "$POSTGRES_USER" --pwfile="$pw" -A scram-sha-256 \
        --encoding=UTF8 --locale=C >/dev/null
    rm -f "$pw"
    cat >>"$PGDATA/postgresql.conf" <<CONF
listen_addresses = '*'
unix_socket_directories = '/tmp'
max_connections = 200
CONF
    echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
    echo "CREATE DATABASE \"$POSTGRES_DB\"" | postgres --single -D "$PGDATA" postgres >/dev/null
    echo "postgres-entrypoint: created the cluster and database $POSTGRES_DB" >&2
fi
exec postgres -D "$PGDATA"
