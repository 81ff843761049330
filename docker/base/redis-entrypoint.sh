#!/bin/sh
# As the official image does: `redis-server ARGS` runs with protected mode off (no config file, so
# Redis would otherwise refuse every client that is not on loopback); any other command runs as given.
set -e
if [ "${1:-}" = redis-server ]; then
  shift
  exec redis-server --protected-mode no "$@"
fi
exec "$@"
