#!/usr/bin/env bash
# Container HEALTHCHECK for the Rust services: `GET $HEALTH_PATH` (the image sets /readyz: healthy
# means ready to serve) on the service's own port must answer 200. Plain bash (/dev/tcp), so the
# runtime image needs no curl.
#   healthcheck [path]     path defaults to $HEALTH_PATH, else /healthz; the port is $PORT.
set -uo pipefail
path="${1:-${HEALTH_PATH:-/healthz}}"
port="${PORT:?PORT is not set}"
exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' "$path" >&3
IFS= read -r -t 3 status <&3 || exit 1
# "HTTP/1.1 200 OK\r"
[[ "$status" == HTTP/1.?\ 200\ * ]]
