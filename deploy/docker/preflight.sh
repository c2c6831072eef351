#!/usr/bin/env bash
# Compose's `preflight` one-shot (deploy/compose.yaml), in the sms-worker image: the workers start
# only if it exits 0. Outside development the SMS provider must be a real one over TLS: a worker
# pointed at the sandbox (or at any http:// URL) would "send" codes nobody receives, or send the
# account's signature in clear. ALLOW_SANDBOX_PROVIDER=1 (deploy/dev.env only) permits both.
set -euo pipefail
url="${CCP_BASE_URL:-}"
if [ "${ALLOW_SANDBOX_PROVIDER:-0}" = 1 ]; then
  echo "preflight: development: SMS provider $url allowed (ALLOW_SANDBOX_PROVIDER=1)"
  exit 0
fi
case "$url" in
  *sms-sandbox* | *127.0.0.1* | *localhost*)
    echo "preflight: CCP_BASE_URL=$url is the development sandbox; set the provider's https:// URL (deploy/README.md, production)" >&2
    exit 1 ;;
  https://*) ;;
  *)
    echo "preflight: CCP_BASE_URL=$url is not https://; the provider must be reached over TLS" >&2
    exit 1 ;;
esac
for name in CCP_ACCOUNT_SID CCP_AUTH_TOKEN CCP_APP_ID; do
  if [ -z "${!name:-}" ]; then
    echo "preflight: $name is empty" >&2
    exit 1
  fi
done
echo "preflight: SMS provider $url"
