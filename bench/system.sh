#!/usr/bin/env bash
# Start-up time and memory of every service (docs/performance.md §1: start-up < 200 ms; < 30 MiB RSS
# idle, < 100 MiB under load). Runs once, stops by itself, leaves nothing behind.
#
#   bench/system.sh            # release build, own redis-server + mariadbd on free loopback ports
#
# For each service, in the same run:
#   start-up   from exec to the first 200 from /healthz (curl polled every few ms, so the number
#              includes up to one poll interval; users-svc includes its migration check);
#   idle RSS   VmRSS one second after start-up;
#   load       `wrk -t2 -c64 -d${SECS}s` on its busiest endpoint (verifications-svc: captchas,
#              users-svc: the username count; sms-worker: none here, see bench/worker.sh);
#   peak RSS   VmHWM after the load: the most resident memory the process ever had.
set -euo pipefail
SECS=${SECS:-10}
cd "$(dirname "$0")/.."
ROOT=$PWD
# shellcheck source=bench/lib.sh
. bench/lib.sh
need wrk wrk; need curl curl

bench_init system
log "building release binaries"
cargo build --release -q -p verifications-svc -p users-svc -p sms-worker --bins
BIN=$ROOT/target/release

start_redis
start_mariadb
COMMON_ENV=(
  HOST=127.0.0.1 HTTP_WORKERS="$CORES" RUST_LOG=warn
  REDIS_URL="redis://127.0.0.1:$REDIS_PORT/2" QUEUE_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/3"
  DATABASE_URL="$DATABASE_URL" JWT_SECRET=bench-secret-0123456789abcdef0123456789
  COUNT_LIMIT_PER_IP_PER_MINUTE=1000000000 SMS_PROVIDER=log
)
env "${COMMON_ENV[@]}" "$BIN/users-svc" migrate >"$WORK/migrate.log" 2>&1

now_ms() { echo $(($(date +%s%N) / 1000000)); }
# Start a service and wait for /healthz: sets SVC_PID, SVC_PORT, STARTUP_MS.
start_service() { # name
  SVC_PORT=$(free_port)
  local t0
  t0=$(now_ms)
  bench_bg "$WORK/$1.log" env "${COMMON_ENV[@]}" PORT="$SVC_PORT" "$BIN/$1"
  SVC_PID=$BENCH_LAST_PID
  local i
  for i in $(seq 3000); do
    curl -fs -o /dev/null "http://127.0.0.1:$SVC_PORT/healthz" && break
    [ "$i" = 3000 ] && { echo "$1 did not answer /healthz" >&2; exit 1; }
    sleep 0.002
  done
  STARTUP_MS=$(($(now_ms) - t0))
}

ROWS=()
measure() { # name [path [wrk script]]: no path = idle only
  local name=$1 path=${2:-} script=${3:-}
  start_service "$name"
  sleep 1
  local idle peak rps="-" p99="-" args=()
  idle=$(rss_mib "$SVC_PID")
  if [ -n "$path" ]; then
    [ -n "$script" ] && args=(-s "$script")
    wrk -t2 -c64 -d"${SECS}s" --latency "${args[@]}" "http://127.0.0.1:$SVC_PORT$path" >"$WORK/wrk-$name.out"
    read -r rps _ p99 <<<"$(wrk_summary "$WORK/wrk-$name.out")"
  fi
  peak=$(peak_rss_mib "$SVC_PID")
  ROWS+=("$(printf '| %-17s | %10s | %9s | %9s | %8s | %8s |' "$name" "$STARTUP_MS" "$idle" "$peak" "$rps" "$p99")")
  kill "$SVC_PID"
  wait "$SVC_PID" 2>/dev/null || true
}

log "verifications-svc: captchas under load"
measure verifications-svc / bench/verifications/image_codes.lua
log "users-svc: username counts under load"
sql meiduo_mall -e "INSERT INTO tb_users (password, username, mobile, date_joined)
  VALUES ('bcrypt_sha256\$x', 'user00001', '15000000001', NOW(6))"
measure users-svc /usernames/user00001/count/
log "sms-worker: idle (its load is bench/worker.sh)"
measure sms-worker

echo
echo "start-up and memory (goals: start-up < 200 ms, idle < 30 MiB, peak < 100 MiB)"
echo "| service           | start-up ms | idle MiB | peak MiB | req/s    | p99 ms   |"
echo "|-------------------|------------:|---------:|---------:|---------:|---------:|"
printf '%s\n' "${ROWS[@]}"
