#!/usr/bin/env bash
# verifications-svc benchmark (goals and numbers: docs/performance.md). Runs once, stops by
# itself, leaves nothing behind.
#
#   bench/verifications.sh     # release build, own redis-server on a free loopback port
#
# What it measures, all in the same run on the same machine:
#   1. raw ceiling: `redis-benchmark -c 64 -t set,get` against the same redis-server;
#   2. captcha draw + PNG encode time per image (release, one core, the `captcha_timing` test);
#   3. GET /image_codes/{uuid}/: `wrk -t2 -c64 -d10s --latency`, a fresh UUID per request
#      (bench/verifications/image_codes.lua): the issuance script (count + SETEX), then the
#      drawing on the HTTP worker's thread;
#   4. GET /sms_codes/{mobile}/: same wrk settings, a fresh mobile per request and a captcha
#      pre-seeded as img_{id} (bench/verifications/sms_codes.lua), so every request takes the
#      full success path: one Lua script (captcha GETDEL + compare, flag, limits, code), then
#      the apalis push.
#      The abuse limits and the global budget are raised to 10^9 so every counter still runs
#      but never refuses. Redis's own count of each command per request is printed with it.
# The service runs with RUST_LOG=warn (no per-request log line) and HTTP_WORKERS = cores; the
# verify codes live in db 2 and the queue in db 3 of the benchmark's redis-server.
# Beside throughput, the service's and Redis's CPU time per request (utime + stime from /proc,
# over each wrk run): on a shared machine, where other work changes req/s a lot, it is the
# steadier number to compare two builds by.
# SECS (10) shortens the wrk runs for a quick check of the script itself; BIN=path benchmarks
# that binary instead of building one (an A/B comparison of two commits' builds).
set -euo pipefail
SECS=${SECS:-10}
cd "$(dirname "$0")/.."
ROOT=$PWD

# shellcheck source=bench/lib.sh
. bench/lib.sh
need wrk wrk; need redis-benchmark redis-tools; need curl curl; need python3 python3

bench_init verifications
LOAD_BEFORE=$(cut -d' ' -f1 /proc/loadavg)
if [ -z "${BIN:-}" ]; then
  log "building the release binary"
  cargo build --release -q -p verifications-svc --bin verifications-svc
  BIN=$ROOT/target/release/verifications-svc
fi

start_redis

# --- 1. raw ceiling ------------------------------------------------------------------------
log "raw ceiling: redis-benchmark -c 64 -n 400000 -t set,get"
redis-benchmark -p "$REDIS_PORT" -c 64 -n 400000 -t set,get -q --csv >"$WORK/redis-benchmark.csv" 2>/dev/null
rb() { awk -F'"' -v t="$1" '$2 == t { printf "%.0f", $4 }' "$WORK/redis-benchmark.csv"; }
SET_RPS=$(rb SET)
GET_RPS=$(rb GET)
redis-cli -p "$REDIS_PORT" flushall >/dev/null

# --- 2. captcha draw + encode ----------------------------------------------------------------
# (of the source tree: skipped when BIN names a binary built elsewhere)
CAPTCHA="not measured (BIN given)"
if [ "$BIN" = "$ROOT/target/release/verifications-svc" ]; then
  log "captcha draw + encode (release, captcha_timing)"
  CAPTCHA=$(cargo test --release -q -p verifications-svc --lib captcha_timing -- --ignored --nocapture 2>/dev/null |
    sed -n 's/^captcha draw+encode: //p')
fi

# --- the service ---------------------------------------------------------------------------
SVC_PORT=$(free_port)
bench_bg "$WORK/verifications-svc.log" env HOST=127.0.0.1 PORT="$SVC_PORT" HTTP_WORKERS="$CORES" \
  RUST_LOG=warn REDIS_URL="redis://127.0.0.1:$REDIS_PORT/2" QUEUE_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/3" \
  SMS_SEND_LIMIT_PER_MOBILE_PER_DAY=1000000000 SMS_SEND_LIMIT_PER_IP_PER_HOUR=1000000000 \
  SMS_SEND_LIMIT_PER_PREFIX_PER_HOUR=1000000000 SMS_SEND_LIMIT_PER_SUBNET_PER_HOUR=1000000000 \
  SMS_BUDGET_PER_MINUTE=1000000000 SMS_BUDGET_PER_HOUR=1000000000 SMS_BUDGET_PER_DAY=1000000000 \
  CAPTCHA_FAILURES_PER_IP_PER_HOUR=1000000000 CAPTCHA_ISSUE_LIMIT_PER_IP_PER_MINUTE=1000000000 "$BIN"
SVC_PID=$BENCH_LAST_PID
wait_for curl -fsS "http://127.0.0.1:$SVC_PORT/readyz"
RSS_IDLE=$(awk '/VmRSS/ { print $2 }' "/proc/$SVC_PID/status")

total() { awk '/requests in/ { print $1 }' "$1"; }
# CPU time (utime + stime, clock ticks) of a process so far.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
# µs of CPU per request of a process between two tick readings, over the requests of a wrk run.
cpu_per_request() { # ticks_before ticks_after wrk_output
  awk -v t=$(($2 - $1)) -v n="$(total "$3")" -v hz="$(getconf CLK_TCK)" \
    'BEGIN { printf "%.0f", t * 1e6 / hz / n }'
}

# --- 3. /image_codes/ ------------------------------------------------------------------------
log "GET /image_codes/{uuid}/: wrk -t2 -c64 -d${SECS}s"
read -r SVC0 REDIS0 < <(echo "$(cpu_ticks "$SVC_PID") $(cpu_ticks "$REDIS_PID")")
wrk -t2 -c64 -d"${SECS}s" --latency -s bench/verifications/image_codes.lua \
  "http://127.0.0.1:$SVC_PORT" >"$WORK/wrk-image.out"
IMG_CPU="$(cpu_per_request "$SVC0" "$(cpu_ticks "$SVC_PID")" "$WORK/wrk-image.out") us service, $(cpu_per_request "$REDIS0" "$(cpu_ticks "$REDIS_PID")" "$WORK/wrk-image.out") us Redis"

# --- 4. /sms_codes/ --------------------------------------------------------------------------
# Enough captchas for 2 wrk threads at 15,000 req/s each for the whole run.
STRIDE=$((15000 * SECS))
log "seeding $((2 * STRIDE)) captchas (img_{id} = ACDE, 600 s)"
awk -v n=$((2 * STRIDE)) 'BEGIN { for (i = 0; i < n; i++)
  printf "SETEX img_00000000-0000-4000-8000-%012d 600 ACDE\r\n", i }' |
  redis-cli -p "$REDIS_PORT" -n 2 --pipe >"$WORK/seed.log"
log "GET /sms_codes/{mobile}/: wrk -t2 -c64 -d${SECS}s"
redis-cli -p "$REDIS_PORT" config resetstat >/dev/null
read -r SVC0 REDIS0 < <(echo "$(cpu_ticks "$SVC_PID") $(cpu_ticks "$REDIS_PID")")
STRIDE=$STRIDE wrk -t2 -c64 -d"${SECS}s" --latency -s bench/verifications/sms_codes.lua \
  "http://127.0.0.1:$SVC_PORT" >"$WORK/wrk-sms.out"
SMS_CPU="$(cpu_per_request "$SVC0" "$(cpu_ticks "$SVC_PID")" "$WORK/wrk-sms.out") us service, $(cpu_per_request "$REDIS0" "$(cpu_ticks "$REDIS_PID")" "$WORK/wrk-sms.out") us Redis"
# What Redis ran for each /sms_codes/ request, from its own counters (INFO commandstats; the
# commands a script runs are counted beside the script's EVALSHA): which command a change of
# CPU per request comes from, without a profiler.
SMS_COMMANDS=$(redis-cli -p "$REDIS_PORT" info commandstats | tr -d '\r' |
  awk -F'[:,=]' -v n="$(total "$WORK/wrk-sms.out")" '/^cmdstat_/ && $3 >= n / 2 {
    sub("cmdstat_", "", $1); printf "%s%s %.1f (%.1f us)", sep, $1, $3 / n, $5 / n; sep = ", " }')
RSS_LOAD=$(awk '/VmRSS/ { print $2 }' "/proc/$SVC_PID/status")
JOBS=$(redis-cli -p "$REDIS_PORT" -n 3 --scan --pattern '*:data' | head -1 |
  xargs -r redis-cli -p "$REDIS_PORT" -n 3 hlen)
SMS_OK=$(( $(total "$WORK/wrk-sms.out") - $(non2xx "$WORK/wrk-sms.out") ))

# --- report --------------------------------------------------------------------------------
read -r IMG_RPS IMG_P50 IMG_P99 < <(wrk_summary "$WORK/wrk-image.out")
read -r SMS_RPS SMS_P50 SMS_P99 < <(wrk_summary "$WORK/wrk-sms.out")
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f%%", 100 * a / b }'; }
# The ceiling is the better of SET and GET: on a shared machine one of the two runs can be slowed
# by a neighbour, and the lower one would flatter the service.
CEILING=$(( SET_RPS > GET_RPS ? SET_RPS : GET_RPS ))
echo
echo "verifications-svc, $CORES cores (load average $LOAD_BEFORE before, $(cut -d' ' -f1 /proc/loadavg) after), wrk -t2 -c64 -d${SECS}s, redis-server on loopback ($(date -u +%FT%TZ))"
printf '| %-34s | %9s | %8s | %8s | %-13s |\n' "what" "req/s" "p50 ms" "p99 ms" "vs ceiling"
printf '|%s|%s|%s|%s|%s|\n' "------------------------------------" "-----------" "----------" "----------" "---------------"
printf '| %-34s | %9s | %8s | %8s | %-13s |\n' "redis-benchmark SET (64 clients)" "$SET_RPS" "" "" "$(ratio "$SET_RPS" "$CEILING")"
printf '| %-34s | %9s | %8s | %8s | %-13s |\n' "redis-benchmark GET (64 clients)" "$GET_RPS" "" "" "$(ratio "$GET_RPS" "$CEILING")"
printf '| %-34s | %9s | %8s | %8s | %-13s |\n' "GET /image_codes/{uuid}/" "$IMG_RPS" "$IMG_P50" "$IMG_P99" "$(ratio "$IMG_RPS" "$CEILING")"
printf '| %-34s | %9s | %8s | %8s | %-13s |\n' "GET /sms_codes/{mobile}/ (success)" "$SMS_RPS" "$SMS_P50" "$SMS_P99" "$(ratio "$SMS_RPS" "$CEILING")"
echo
echo "captcha draw + PNG encode: $CAPTCHA (one core, release)"
echo "CPU per request: image_codes $IMG_CPU; sms_codes $SMS_CPU"
echo "Redis commands per sms_codes request, calls (their time): $SMS_COMMANDS"
echo "non-2xx answers: image_codes $(non2xx "$WORK/wrk-image.out"), sms_codes $(non2xx "$WORK/wrk-sms.out")"
echo "sms_codes: $SMS_OK answered 200, $JOBS jobs in the queue (requests in flight when wrk stopped add a few)"
echo "RSS: $((RSS_IDLE / 1024)) MiB idle, $((RSS_LOAD / 1024)) MiB after load"
