#!/usr/bin/env bash
# Faults under load: what users see while the worker is killed, Redis and MariaDB restart, the
# SMS provider is down and nginx reloads, with a steady sign-up funnel and count traffic going
# through the gateway the whole time. A benchmark, not a test: it reports, it asserts nothing.
#
#   bench/faults.sh                       # ~5 minutes: 20 s warm-up, 7 faults × (30 s + 10 s calm)
#   FUNNELS_PER_SEC=20 COUNTS_PER_SEC=500 FAULT_SECS=30 CALM_SECS=10 bench/faults.sh
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
need nginx nginx-light; need envsubst gettext-base; need wrk wrk; need mariadb-slap mariadb-client
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"

bench_init faults
# PROFILE=debug: a quick try of the script itself (the numbers then mean nothing).
PROFILE=${PROFILE:-release}
log "cargo build --profile $PROFILE (services, sandbox, load driver)"
cargo build --profile "${PROFILE/debug/dev}" --locked -q -p verifications-svc -p users-svc \
  -p sms-worker --bins -p sms-sandbox --bin sms-sandbox -p tests --example faults
BIN=$CARGO_TARGET_DIR/$PROFILE

# Redis with an append-only file, so a restart finds its keys (codes, flags, the queue) again.
REDIS_PORT=$(free_port)
mkdir -p "$WORK/redis"
REDIS_CMD=(redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$WORK/redis" --appendonly yes
  --appendfsync everysec --save '')
bench_bg "$WORK/redis.log" "${REDIS_CMD[@]}"
REDIS_PID=$BENCH_LAST_PID
wait_for redis-cli -p "$REDIS_PORT" ping
start_mariadb

SANDBOX_PORT=$(free_port)
SANDBOX="http://127.0.0.1:$SANDBOX_PORT"
CCP=(CCP_ACCOUNT_SID=8a216da8000000000000000000000001 CCP_AUTH_TOKEN=0123456789abcdef0123456789abcdef
  CCP_APP_ID=8a216da8000000000000000000000002)
bench_bg "$WORK/sandbox.log" env "${CCP[@]}" PORT="$SANDBOX_PORT" RUST_LOG=warn "$BIN/sms-sandbox"
wait_for curl -fs "$SANDBOX/messages"

# Every limit far above the load: all traffic comes from 127.0.0.1.
BIG=1000000000
SERVICE_ENV=(
  HOST=127.0.0.1 HTTP_WORKERS="$CORES" RUST_LOG="${RUST_LOG:-warn}" "${CCP[@]}"
  REDIS_URL="redis://127.0.0.1:$REDIS_PORT/2" QUEUE_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/3"
  DATABASE_URL="$DATABASE_URL" JWT_SECRET=bench-secret-0123456789abcdef0123456789
  BCRYPT_COST="${BCRYPT_COST:-10}" SMS_PROVIDER=ccp CCP_BASE_URL="$SANDBOX"
  "SMS_SEND_LIMIT_PER_IP_PER_HOUR=$BIG" "SMS_SEND_LIMIT_PER_MOBILE_PER_DAY=$BIG"
  "COUNT_LIMIT_PER_IP_PER_MINUTE=$BIG" "CAPTCHA_FAILURES_PER_IP_PER_HOUR=$BIG"
  "CAPTCHA_ISSUE_LIMIT_PER_IP_PER_MINUTE=$BIG" "SMS_BUDGET_PER_MINUTE=$BIG" "SMS_BUDGET_PER_HOUR=$BIG"
  "SMS_BUDGET_PER_DAY=$BIG" "SMS_SEND_LIMIT_PER_PREFIX_PER_HOUR=$BIG"
  "SMS_SEND_LIMIT_PER_SUBNET_PER_HOUR=$BIG" "REGISTER_WRONG_CODES_PER_IP_PER_HOUR=$BIG"
)
VER_PORT=$(free_port); USERS_PORT=$(free_port); WORKER_PORT=$(free_port)
service_up() { # name port: sets SVC_PID
  bench_bg "$WORK/$1.log" env "${SERVICE_ENV[@]}" PORT="$2" "$BIN/$1"
  SVC_PID=$BENCH_LAST_PID
  wait_for curl -fs "http://127.0.0.1:$2/healthz"
}
service_up verifications-svc "$VER_PORT"
service_up users-svc "$USERS_PORT"
service_up sms-worker "$WORKER_PORT"; WORKER_PID=$SVC_PID

GATEWAY_PORT=$(free_port)
mkdir -p "$WORK/nginx"
LISTEN=127.0.0.1:$GATEWAY_PORT VERIFICATIONS_UPSTREAM=127.0.0.1:$VER_PORT \
  USERS_UPSTREAM=127.0.0.1:$USERS_PORT WEB_ROOT="$ROOT/deploy/web" \
  sh deploy/nginx/render.sh gateway "$WORK/nginx/meiduo.conf" 2>/dev/null
NGINX_USER=""; [ "$(id -u)" = 0 ] && NGINX_USER="user root;"
NGINX_DIR="$WORK/nginx" NGINX_USER="$NGINX_USER" NGINX_WORKERS=1 NGINX_CONNECTIONS=4096 \
  sh deploy/nginx/render.sh local "$WORK/nginx/nginx.conf" 2>/dev/null
bench_bg "$WORK/nginx.log" nginx -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/error.log"
NGINX_PID=$BENCH_LAST_PID
wait_for curl -fs "http://127.0.0.1:$GATEWAY_PORT/"

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
  printf '%q ' env "${SERVICE_ENV[@]}" PORT="$WORKER_PORT" "$BIN/sms-worker"
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

log "raw ceilings (same run): Redis GET, MariaDB point select, nginx static file"
REDIS_RAW=$(redis-benchmark -p "$REDIS_PORT" -q -c 32 -n 100000 -t get 2>/dev/null | tr '\r' '\n' | grep 'per second' | tail -1)
mariadb-slap --no-defaults --protocol=TCP -h127.0.0.1 -P"$DB_PORT" -uroot --concurrency=64 \
  --iterations=1 --number-of-queries=64000 --create-schema=meiduo_mall --no-drop \
  --query="SELECT COUNT(*) FROM tb_users WHERE username = 'nobody'" >"$WORK/slap.out" 2>&1
SLAP_SECS=$(awk '/Average number of seconds to run all queries/ { print $(NF-1) }' "$WORK/slap.out")
wrk -t2 -c64 -d5s --latency "http://127.0.0.1:$GATEWAY_PORT/" >"$WORK/wrk-static.out"
read -r STATIC_RPS _ STATIC_P99 <<<"$(wrk_summary "$WORK/wrk-static.out")"
echo "machine: $CORES cores, $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg); BCRYPT_COST=${BCRYPT_COST:-10}"
echo "raw ceilings: redis-benchmark GET c32: ${REDIS_RAW:-?}; MariaDB point select c64: $(awk -v s="$SLAP_SECS" 'BEGIN { printf "%.0f", 64000 / s }') q/s; nginx static file wrk c64: $STATIC_RPS req/s (p99 $STATIC_P99 ms)"
echo "load: ${FUNNELS_PER_SEC:-10} funnels/s (captcha → SMS → code from the inbox → register → count) + ${COUNTS_PER_SEC:-500} count req/s, through the gateway"

log "driving the load; faults at fixed times (about $(( ${WARMUP_SECS:-20} + 7 * (${FAULT_SECS:-30} + ${CALM_SECS:-10}) )) s)"
GATEWAY="http://127.0.0.1:$GATEWAY_PORT" SANDBOX="$SANDBOX" REDIS_URL="redis://127.0.0.1:$REDIS_PORT/2" \
  FAULTS="$FAULTS" "$BIN/examples/faults" | tee "$WORK/report.md"
