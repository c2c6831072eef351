#!/usr/bin/env bash
# Faults under load: what users see while the worker is killed, Redis and MariaDB restart, the
# SMS provider is down and nginx reloads, with a steady sign-up funnel and count traffic going
# through the gateway the whole time. A benchmark, not a test: it reports, it asserts nothing.
#
#   bench/faults.sh                       # ~5 minutes: 20 s warm-up, 7 faults × (30 s + 10 s calm)
#   FUNNELS_PER_SEC=20 COUNTS_PER_SEC=500 FAULT_SECS=30 CALM_SECS=10 bench/faults.sh
#   FAULTS_ONLY=reload bench/faults.sh    # only the faults whose name contains "reload"
#   FAULTS_ONLY=reload FAULTS_REPEAT=20 FAULT_SECS=3 CALM_SECS=1 bench/faults.sh  # a rare race
#
# It builds release binaries, starts everything on free loopback ports (Redis with its data on
# disk, so a restart keeps it, as `docker-compose restart redis` does; MariaDB; the sms-sandbox;
# the three services; Debian's nginx on the gateway template) and runs tests/examples/faults.rs,
# which drives the load and runs the fault commands below at fixed times. Everything stops and
# is deleted at the end, however the script ends.
#
# Per fault it prints the answers users got from the injection to the end of the calm after
# it, 5xx other than a 503 with Retry-After (goal 0), 503s (goal 0 for restarts; only the
# provider outage may refuse), SMS accepted vs delivered (goal equal), p50/p99 before · during ·
# after, and the time to recover; then overall numbers, extra messages to one mobile (goal 0),
# and one line `faults: N passed, N failed`. Registrations use BCRYPT_COST=10 (override it):
# at the default cost 12 two cores hash about 8 a second, less than the funnel's rate.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# shellcheck source=bench/lib.sh
. bench/lib.sh
need nginx nginx-light; need envsubst gettext-base
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"

bench_init faults
# shellcheck source=bench/stack.sh
. bench/stack.sh
# PROFILE=debug: a quick try of the script itself (the numbers then mean nothing).
stack_build -p tests --example faults
stack_up

# The faults: one small script each, written here with every value filled in, run by the
# driver with `bash -c` at its time. Restarted processes write pid files, so the cleanup below
# stops them too. The worker is restarted at once, as `restart: unless-stopped` would; its
# killed jobs come back after the missed heartbeats. Restarts are SIGTERM, wait, start again
# with the same flags and data, like `docker-compose restart`.
echo "$WORKER_PID" >"$WORK/sms-worker.pid"
echo "$REDIS_PID" >"$WORK/redis.pid"
echo "$DB_PID" >"$WORK/mariadb.pid"
echo "$NGINX_PID" >"$WORK/nginx.pid"
faults_cleanup() {
  local f
  for f in "$WORK"/*.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null; done
  bench_cleanup
}
trap faults_cleanup EXIT
mkdir -p "$WORK/faults"
fault_script() { # name: the script's body comes on stdin
  { echo 'set -eu'; cat; } >"$WORK/faults/$1.sh"
}
# shellcheck disable=SC2016 # the $ in these printf formats belong to the generated scripts
restart() { # name command...: SIGTERM the process in name.pid, wait for it, start the command
  printf 'pid=$(cat %q); kill -TERM "$pid"; while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done\n' \
    "$WORK/$1.pid"
  local name=$1; shift
  printf '%q ' "$@"; printf '>>%q 2>&1 &\necho $! >%q\n' "$WORK/$name.log" "$WORK/$name.pid"
}
# shellcheck disable=SC2016
{
  # SIGKILL is asynchronous: wait until the old process is gone and its port free.
  printf 'pid=$(cat %q); kill -9 "$pid"; while kill -0 "$pid" 2>/dev/null; do sleep 0.02; done\n' \
    "$WORK/sms-worker.pid"
  printf '%q ' "${WORKER_CMD[@]}"
  printf '>>%q 2>&1 &\necho $! >%q\n' "$WORK/sms-worker.log" "$WORK/sms-worker.pid"
} | fault_script worker_kill
restart redis "${REDIS_CMD[@]}" | fault_script redis_restart
restart mariadb "${MARIADB_CMD[@]}" | fault_script mariadb_restart
# shellcheck disable=SC2016
printf 'kill -HUP "$(cat %q)"\n' "$WORK/nginx.pid" | fault_script nginx_reload
# Every provider call answers HTTP 503 for the fault window, then the provider is back.
fault_script provider_outage <<OUTAGE
curl -fs -X POST '$SANDBOX/control/fail' -H 'Content-Type: application/json' \
  -d '{"count":1000000000,"http_status":503}' >/dev/null
sleep ${FAULT_SECS:-30}
curl -fs -X POST '$SANDBOX/control/clear' >/dev/null
OUTAGE
F=$WORK/faults
FAULTS="worker kill -9 (1)=bash $F/worker_kill.sh;worker kill -9 (2)=bash $F/worker_kill.sh"
FAULTS+=";worker kill -9 (3)=bash $F/worker_kill.sh;redis restart=bash $F/redis_restart.sh"
FAULTS+=";mariadb restart=bash $F/mariadb_restart.sh;provider outage=bash $F/provider_outage.sh"
FAULTS+=";nginx reload=bash $F/nginx_reload.sh"
if [ -n "${FAULTS_ONLY:-}" ]; then
  IFS=';' read -r -a every <<<"$FAULTS"
  FAULTS=""
  for f in "${every[@]}"; do
    case "${f%%=*}" in *"$FAULTS_ONLY"*) FAULTS+="${FAULTS:+;}$f" ;; esac
  done
  [ -n "$FAULTS" ] || { echo "FAULTS_ONLY=$FAULTS_ONLY names no fault" >&2; exit 1; }
fi
if [ "${FAULTS_REPEAT:-1}" -gt 1 ]; then
  IFS=';' read -r -a every <<<"$FAULTS"
  FAULTS=""
  for f in "${every[@]}"; do
    for k in $(seq "$FAULTS_REPEAT"); do FAULTS+="${FAULTS:+;}${f%%=*} #$k=${f#*=}"; done
  done
fi

log "raw ceilings (same run): Redis GET, MariaDB point select, nginx static file"
echo "machine: $CORES cores, $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg); BCRYPT_COST=${BCRYPT_COST:-10}"
stack_ceilings
echo "load: ${FUNNELS_PER_SEC:-10} funnels/s (captcha → SMS → code from the inbox → register → count) + ${COUNTS_PER_SEC:-500} count req/s, through the gateway"

log "driving the load; faults at fixed times (about $(( ${WARMUP_SECS:-20} + $(tr -cd ';' <<<"$FAULTS" | wc -c) * (${FAULT_SECS:-30} + ${CALM_SECS:-10}) + ${FAULT_SECS:-30} + ${CALM_SECS:-10} )) s)"
GATEWAY="$GATEWAY" SANDBOX="$SANDBOX" REDIS_URL="$REDIS_URL" \
  FAULTS="$FAULTS" "$BIN/examples/faults" | tee "$WORK/report.md"
