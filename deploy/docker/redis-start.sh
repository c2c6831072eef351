#!/bin/sh
# Redis container entrypoint (deploy/docker/redis.Dockerfile): requires REDIS_PASSWORD and hands
# it to redis-server in a config read from stdin, so it never appears in `ps`. Extra arguments
# (compose's `command`) are redis-server options, e.g. --maxmemory 256mb.
#
# The password goes into the services' redis:// URLs too, so it is limited to characters that
# need no escaping there: letters, digits and . _ ~ -
set -eu
if [ -z "${REDIS_PASSWORD:-}" ]; then
    echo "redis-start: REDIS_PASSWORD is required" >&2
    exit 1
fi
case "$REDIS_PASSWORD" in
    *[!A-Za-z0-9._~-]*)
        echo "redis-start: REDIS_PASSWORD may hold only letters, digits and . _ ~ - (it is part of URLs)" >&2
        exit 1
        ;;
esac
exec redis-server - --dir /data --bind 0.0.0.0 --port 6379 --protected-mode no "$@" <<CONF
requirepass $REDIS_PASSWORD
CONF
