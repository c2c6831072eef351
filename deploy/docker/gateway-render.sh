#!/bin/sh
# Gateway container start-up (run by the official nginx image's entrypoint from
# /docker-entrypoint.d/): render the meiduo template exactly as `deploy/dev up` does, with
# envsubst limited to the five variables, into the folder nginx.conf includes inside http {}.
# Runs as the non-root nginx user, so conf.d is owned by it (see gateway.Dockerfile).
set -eu
# Overridable so deploy/checks can run this very script outside the container.
template="${MEIDUO_TEMPLATE:-/etc/meiduo/meiduo.conf.template}"
out="${MEIDUO_CONF_OUT:-/etc/nginx/conf.d/meiduo.conf}"
for name in LISTEN VERIFICATIONS_UPSTREAM USERS_UPSTREAM WEB_ROOT SANDBOX_UPSTREAM; do
    eval "value=\${$name:-}"
    if [ -z "$value" ]; then
        echo "$0: $name is empty; the gateway cannot start without it" >&2
        exit 1
    fi
done
envsubst '${LISTEN} ${VERIFICATIONS_UPSTREAM} ${USERS_UPSTREAM} ${WEB_ROOT} ${SANDBOX_UPSTREAM}' \
    <"$template" >"$out"
echo "$0: rendered $template to $out (listen $LISTEN; verifications $VERIFICATIONS_UPSTREAM; users $USERS_UPSTREAM)"
