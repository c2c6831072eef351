#!/usr/bin/env bash
# users-svc benchmark (goals and numbers: docs/performance.md). Runs once, stops by itself, leaves
# nothing behind.
#
#   bench/users.sh            # release build, own mariadbd + redis-server on free loopback ports
#
# What it measures, all in the same run on the same machine:
#   1. raw ceiling: MariaDB point selects (the count endpoints' query, on the unique index) at 64
#      concurrent connections with `mariadb-slap` (C client, text protocol), 10,000 seeded users;
#   2. GET /usernames/{u}/count/ and GET /mobiles/{m}/count/: `wrk -t2 -c64 -d10s --latency`
#      (the per-IP limit raised to 10^9 so the limiter still runs but never refuses);
#   3. POST /users/ at BCRYPT_COST 10 and 12: `wrk -t2 -c16 -d15s` with bench/users/register.lua
#      (unique username and mobile per request, SMS codes pre-seeded in Redis), 201s per second
#      beside the bcrypt ceiling = cores ÷ one hash time (median of 15 hashes, `--example hash_time`);
#   4. the cost of everything but the hash: at `wrk -c1`, cost 10, the service's mean request time
#      for POST /users/ minus its mean hash time (both from /metrics, before/after difference).
# The service runs with RUST_LOG=warn (no per-request log line) and HTTP_WORKERS = cores.
# COUNT_SECS (10) and REG_SECS (15) shorten the runs for a quick check of the script itself;
# BIN=path benchmarks that users-svc binary instead of the one built here (an A/B comparison of
# two commits' builds; the hash timing is always this tree's).
set -euo pipefail
COUNT_SECS=${COUNT_SECS:-10}
REG_SECS=${REG_SECS:-15}
cd "$(dirname "$0")/.."
ROOT=$PWD

# shellcheck source=bench/lib.sh
. bench/lib.sh
need wrk wrk; need mariadb-slap mariadb-client; need curl curl

bench_init users
log "building release binaries"
cargo build --release -q -p users-svc --bin users-svc --example hash_time
BIN=${BIN:-$ROOT/target/release/users-svc}
HASH_TIME=$ROOT/target/release/examples/hash_time

start_mariadb
start_redis

# --- schema and data -----------------------------------------------------------------------
DATABASE_URL=$DATABASE_URL RUST_LOG=warn "$BIN" migrate
sql meiduo_mall -e "
  SET SESSION max_recursive_iterations = 100000;
  INSERT INTO tb_users (password, username, mobile, date_joined)
  WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < 10000)
  SELECT 'bcrypt_sha256\$x', CONCAT('user', LPAD(n, 5, '0')), CONCAT('150', LPAD(n, 8, '0')), NOW(6) FROM seq"
log "seeded $(sql meiduo_mall -e 'SELECT COUNT(*) FROM tb_users') users"

SVC_PORT=
SVC_PID=
start_service() { # cost
  SVC_PORT=$(free_port)
  bench_bg "$WORK/users-svc-$1.log" env HOST=127.0.0.1 PORT="$SVC_PORT" HTTP_WORKERS="$CORES" \
    RUST_LOG=warn DATABASE_URL="$DATABASE_URL" REDIS_URL="redis://127.0.0.1:$REDIS_PORT/2" \
    JWT_SECRET=bench-secret-0123456789abcdef0123456789 BCRYPT_COST="$1" \
    COUNT_LIMIT_PER_IP_PER_MINUTE=1000000000 "$BIN"
  SVC_PID=$BENCH_LAST_PID
  wait_for curl -fsS "http://127.0.0.1:$SVC_PORT/readyz"
}
stop_service() { kill "$SVC_PID"; wait "$SVC_PID" 2>/dev/null || true; }


# --- 1. raw ceiling ------------------------------------------------------------------------
QUERIES=${SLAP_QUERIES:-320000}
log "raw ceiling: mariadb-slap, 64 connections, $QUERIES point selects"
mariadb-slap --no-defaults --protocol=TCP -h127.0.0.1 -P"$DB_PORT" -uroot --concurrency=64 \
  --iterations=1 --number-of-queries="$QUERIES" --create-schema=meiduo_mall --no-drop \
  --query="SELECT COUNT(*) FROM tb_users WHERE username = 'user04242'" >"$WORK/slap.out" 2>&1
SLAP_SECS=$(awk '/Average number of seconds to run all queries/ { print $(NF-1) }' "$WORK/slap.out")
RAW_QPS=$(awk -v q="$QUERIES" -v s="$SLAP_SECS" 'BEGIN { printf "%.0f", q / s }')

# --- 2. count endpoints --------------------------------------------------------------------
start_service 10
log "count endpoints: wrk -t2 -c64 -d${COUNT_SECS}s"
wrk -t2 -c64 -d"${COUNT_SECS}s" --latency "http://127.0.0.1:$SVC_PORT/usernames/user04242/count/" >"$WORK/wrk-username.out"
wrk -t2 -c64 -d"${COUNT_SECS}s" --latency "http://127.0.0.1:$SVC_PORT/mobiles/15000004242/count/" >"$WORK/wrk-mobile.out"
read -r U_RPS U_P50 U_P99 <<<"$(wrk_summary "$WORK/wrk-username.out")"
read -r M_RPS M_P50 M_P99 <<<"$(wrk_summary "$WORK/wrk-mobile.out")"
U_BAD=$(non2xx "$WORK/wrk-username.out"); M_BAD=$(non2xx "$WORK/wrk-mobile.out")
RSS_MB=$(rss_mib "$SVC_PID")

# --- 3. registration -----------------------------------------------------------------------
seed_codes() { # RESP SET commands for every mobile register.lua can use (2 threads × 6000)
  awk 'BEGIN { for (t = 1; t <= 2; t++) for (i = 1; i <= 6000; i++) {
    k = sprintf("sms_13%d%08d", t, i);
    printf "*5\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$6\r\n123456\r\n$2\r\nEX\r\n$4\r\n3600\r\n", length(k), k } }' |
    redis-cli -p "$REDIS_PORT" -n 2 --pipe >/dev/null
}
declare -A REG_RPS REG_CEIL REG_HASH REG_P50 REG_P99 REG_BAD
for cost in 10 12; do
  [ "$cost" = 10 ] || { stop_service; start_service "$cost"; }
  sql meiduo_mall -e "DELETE FROM tb_users WHERE username LIKE 'bench%'"
  seed_codes
  REG_HASH[$cost]=$("$HASH_TIME" "$cost" 15)
  REG_CEIL[$cost]=$(awk -v c="$CORES" -v h="${REG_HASH[$cost]}" 'BEGIN { printf "%.1f", c * 1000 / h }')
  log "registration at cost $cost (one hash ${REG_HASH[$cost]} ms): wrk -t2 -c16 -d${REG_SECS}s"
  wrk -t2 -c16 -d"${REG_SECS}s" --latency -s bench/users/register.lua "http://127.0.0.1:$SVC_PORT" >"$WORK/wrk-register-$cost.out"
  created=$(awk '/^CREATED/ { print $2 }' "$WORK/wrk-register-$cost.out")
  REG_BAD[$cost]=$(awk '/^CREATED/ { print $4 }' "$WORK/wrk-register-$cost.out")
  REG_RPS[$cost]=$(awk -v n="$created" 'BEGIN { printf "%.1f", n / '"$REG_SECS"' }')
  read -r _ REG_P50[$cost] REG_P99[$cost] <<<"$(wrk_summary "$WORK/wrk-register-$cost.out")"
  if [ "$cost" = 10 ]; then
    # Let the requests still queued from the c16 run finish first: one that registered its
    # user after the DELETE below would make the c1 run's same username a 400 (no hash), and
    # the means below would be over different requests.
    sleep 3
    sql meiduo_mall -e "DELETE FROM tb_users WHERE username LIKE 'bench%'"
    seed_codes
    log "registration overhead: wrk -t1 -c1 -d5s at cost 10"
    curl -fsS "http://127.0.0.1:$SVC_PORT/metrics" >"$WORK/metrics-before"
    wrk -t1 -c1 -d5s --latency -s bench/users/register.lua "http://127.0.0.1:$SVC_PORT" >"$WORK/wrk-register-c1.out"
    curl -fsS "http://127.0.0.1:$SVC_PORT/metrics" >"$WORK/metrics-after"
    C1_MEAN=$(awk '$1 == "Latency" { print $2; exit }' "$WORK/wrk-register-c1.out" | ms)
    # In-service means over the c1 run only (difference of the counters before and after):
    # request time of POST /users/ and time of the hash itself, so machine noise in the hash
    # does not count as overhead.
    mean_ms() { # metric-name-prefix label-filter
      awk -v p="$1" -v f="$2" '
        index($1, p "_sum") == 1 && index($1, f) { s[FILENAME] = $2 }
        index($1, p "_count") == 1 && index($1, f) { c[FILENAME] = $2 }
        END { a = ARGV[1]; b = ARGV[2]; n = c[b] - c[a]; if (n > 0) printf "%.2f", 1000 * (s[b] - s[a]) / n; else print "nan" }
      ' "$WORK/metrics-before" "$WORK/metrics-after"
    }
    SVC_MEAN=$(mean_ms http_request_duration_seconds 'route="/users/"')
    SVC_HASH=$(mean_ms users_password_hash_seconds 'service="users-svc"')
    OVERHEAD=$(awk -v m="$SVC_MEAN" -v h="$SVC_HASH" 'BEGIN { printf "%.2f", m - h }')
    # Every request must have hashed: an answer without a hash would lower the request mean.
    C1_OTHER=$(awk '/^CREATED/ { print $4 }' "$WORK/wrk-register-c1.out")
    [ "$C1_OTHER" = 0 ] || OVERHEAD="not measured ($C1_OTHER answers were not 201)"
  fi
done
stop_service

# --- report --------------------------------------------------------------------------------
echo
echo "users-svc benchmark ($(date -u +%Y-%m-%dT%H:%MZ), $CORES cores, release, RUST_LOG=warn)"
printf '%-44s %12s %9s %9s %10s %8s\n' "item" "req/s" "p50 ms" "p99 ms" "vs ceiling" "non-2xx"
printf '%-44s %12s %9s %9s %10s %8s\n' "MariaDB point select, mariadb-slap c64 (raw)" "$RAW_QPS" "-" "-" "100%" "-"
printf '%-44s %12s %9s %9s %10s %8s\n' "GET /usernames/{u}/count/ wrk c64" "$U_RPS" "$U_P50" "$U_P99" "$(pct "$U_RPS" "$RAW_QPS")" "$U_BAD"
printf '%-44s %12s %9s %9s %10s %8s\n' "GET /mobiles/{m}/count/ wrk c64" "$M_RPS" "$M_P50" "$M_P99" "$(pct "$M_RPS" "$RAW_QPS")" "$M_BAD"
for cost in 10 12; do
  printf '%-44s %12s %9s %9s %10s %8s\n' "bcrypt ceiling cost $cost ($CORES cores / ${REG_HASH[$cost]} ms)" "${REG_CEIL[$cost]}" "-" "-" "100%" "-"
  printf '%-44s %12s %9s %9s %10s %8s\n' "POST /users/ cost $cost wrk c16 (201s/s)" "${REG_RPS[$cost]}" "${REG_P50[$cost]}" "${REG_P99[$cost]}" "$(pct "${REG_RPS[$cost]}" "${REG_CEIL[$cost]}")" "${REG_BAD[$cost]}"
done
echo "registration without the hash at c1, cost 10: ${OVERHEAD} ms (in-service mean ${SVC_MEAN} ms - in-service hash mean ${SVC_HASH} ms; wrk mean ${C1_MEAN} ms)"
echo "users-svc RSS after the count runs: ${RSS_MB} MiB"
echo "goals: counts >= 15000 req/s, >= 50% of raw, p99 < 5 ms; registration >= 90% of the ceiling; overhead < 3 ms"
