#!/bin/sh
# Container entrypoint: the first argument picks the process.
#   eventlog | job | graph | query [args...]  run that service with $DATABUILD_CONFIG
#   cli [args...]                             run the databuild command
# The service replaces this shell (exec), so it is PID 1 and gets SIGTERM
# directly for its graceful shutdown.
set -eu
config=${DATABUILD_CONFIG:-/etc/databuild/databuild.yaml}
cmd=${1:-help}
[ $# -gt 0 ] && shift
case $cmd in
eventlog | job | graph | query)
    exec "/usr/local/bin/databuild-$cmd" --config "$config" "$@" ;;
cli)
    exec /usr/local/bin/databuild --config "$config" "$@" ;;
*)
    echo "usage: <image> eventlog|job|graph|query [--help] | cli <databuild args>" >&2
    [ "$cmd" = help ] || [ "$cmd" = --help ] && exit 0
    echo "databuild-entrypoint: unknown process \"$cmd\"" >&2
    exit 2 ;;
esac
