#!/bin/sh
# The one renderer of the nginx templates, used by `deploy/dev up`, `deploy/checks`, the
# end-to-end tests and the gateway container (from the official image's /docker-entrypoint.d/).
# envsubst replaces ONLY each template's own variables, so every other `$name` stays an nginx
# variable; every variable must be set and not empty (NGINX_USER may be empty).
#
#   render.sh [gateway [OUT]]   meiduo.conf.template: LISTEN VERIFICATIONS_UPSTREAM USERS_UPSTREAM
#                               WEB_ROOT, REAL_IP_FROM if set, and VERIFICATIONS_MAX_CONNS,
#                               USERS_MAX_CONNS, REGISTER_MAX_CONNS (requests in flight to one
#                               server; default 256 each, 0 = no bound) (the container runs it
#                               with no argument)
#   render.sh local OUT         local.conf.template, the main config outside a container:
#                               NGINX_DIR NGINX_USER NGINX_WORKERS NGINX_CONNECTIONS
#
# MEIDUO_TEMPLATE and MEIDUO_CONF_OUT give the gateway template and output where they are not
# beside this script (the container). Fails if a `${NAME}` is left in the output: the template
# uses a variable this script does not render.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
kind=${1:-gateway}
case "$kind" in
  gateway)
    template=${MEIDUO_TEMPLATE:-$here/meiduo.conf.template}
    out=${2:-${MEIDUO_CONF_OUT:-}}
    required="LISTEN VERIFICATIONS_UPSTREAM USERS_UPSTREAM WEB_ROOT VERIFICATIONS_MAX_CONNS USERS_MAX_CONNS REGISTER_MAX_CONNS"
    # The gateway's load shedding (the upstreams' comment in the template says how to size it).
    : "${VERIFICATIONS_MAX_CONNS:=256}" "${USERS_MAX_CONNS:=256}" "${REGISTER_MAX_CONNS:=256}"
    for name in VERIFICATIONS_MAX_CONNS USERS_MAX_CONNS REGISTER_MAX_CONNS; do
      eval "value=\$$name"
      case "$value" in
        '' | *[!0-9]*)
          echo "$0: $name=$value is not a whole number" >&2
          exit 2
          ;;
      esac
      export "${name?}"
    done
    optional="MEIDUO_REAL_IP"
    # REAL_IP_FROM: the CIDRs (comma or space separated) of trusted proxies in front of the
    # gateway; each becomes a set_real_ip_from line. Only address characters are accepted.
    MEIDUO_REAL_IP=""
    for cidr in $(printf '%s' "${REAL_IP_FROM:-}" | tr ',' ' '); do
      case "$cidr" in
        *[!0-9A-Fa-f.:/]*)
          echo "$0: REAL_IP_FROM: $cidr is not an address or a CIDR" >&2
          exit 2
          ;;
      esac
      MEIDUO_REAL_IP="${MEIDUO_REAL_IP}set_real_ip_from $cidr;
"
    done
    if [ -n "$MEIDUO_REAL_IP" ]; then
      MEIDUO_REAL_IP="${MEIDUO_REAL_IP}real_ip_header X-Forwarded-For;
real_ip_recursive on;"
    fi
    export MEIDUO_REAL_IP
    ;;
  local)
    template=$here/local.conf.template
    out=${2:-}
    required="NGINX_DIR NGINX_WORKERS NGINX_CONNECTIONS"
    optional="NGINX_USER"
    ;;
  *)
    echo "usage: $0 [gateway [OUT]] | local OUT" >&2
    exit 2
    ;;
esac
[ -n "$out" ] || { echo "$0: no output file for the $kind config" >&2; exit 2; }
shell_format=""
for name in $required; do
  eval "value=\${$name:-}"
  if [ -z "$value" ]; then
    echo "$0: $name is empty; the $kind config cannot be rendered without it" >&2
    exit 1
  fi
  shell_format="$shell_format \${$name}"
done
for name in $optional; do shell_format="$shell_format \${$name}"; done
envsubst "$shell_format" <"$template" >"$out"
# shellcheck disable=SC2016 # a literal ${NAME}, searched for, not expanded
if grep -n '\${[A-Z_][A-Z0-9_]*}' "$out" >&2; then
  echo "$0: $template uses variables beyond$shell_format (lines above)" >&2
  exit 1
fi
echo "$0: rendered $template to $out" >&2
