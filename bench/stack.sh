# shellcheck shell=bash
# shellcheck disable=SC2034 # the variables set here are read by the scripts that source this file
# The whole process stack of the load scripts (bench/faults.sh, bench/overload.sh), sourced after
# bench/lib.sh and `bench_init`: Redis with an append-only file (so a restart keeps its keys, as
# `docker-compose restart redis` does), MariaDB, the sms-sandbox, the three services (release
# unless PROFILE=debug) and Debian's nginx on the gateway template, all on free loopback ports.
#
# `stack_up` sets GATEWAY (and GATEWAY_PORT), SANDBOX, REDIS_URL, BIN, SERVICE_ENV and the
# REDIS_*/DB_*/NGINX_*/WORKER_* pids, ports and commands a fault script needs. SUT_CPUS (e.g.
# `1`) pins every process of the stack to those CPUs with taskset, so a load driver pinned
# elsewhere does not take their CPU.
#
# Every limit is far above the load (all traffic comes from 127.0.0.1, which the gateway's
# per-client limits exempt); STACK_ENV adds or overrides service variables (`NAME=value`
# words). The gateway is rendered by deploy/nginx/render.sh from this environment, so
# VERIFICATIONS_MAX_CONNS, USERS_MAX_CONNS and REGISTER_MAX_CONNS set here apply to it (its
# defaults otherwise).

stack_build() { # extra cargo arguments (e.g. the driver example)
  PROFILE=${PROFILE:-release}
  log "cargo build --profile $PROFILE (services, sandbox, load driver)"
  cargo build --profile "${PROFILE/debug/dev}" --locked -q -p verifications-svc -p users-svc \
    -p sms-worker --bins -p sms-sandbox --bin sms-sandbox "$@"
  BIN=$CARGO_TARGET_DIR/$PROFILE
}

# The prefixes that pin a stack process (SUT_CPUS) and a load driver (DRIVER_CPUS); empty
# when unset.
stack_pin() { [ -n "${SUT_CPUS:-}" ] && echo "taskset -c $SUT_CPUS"; true; }
driver_pin() { [ -n "${DRIVER_CPUS:-}" ] && echo "taskset -c $DRIVER_CPUS"; true; }

# SUT_CPU_PERCENT (e.g. 20): every process of the stack shares that share of one CPU (a CFS
# quota in a cgroup of its own, 10 ms periods), so a load driver on the other CPUs can offer
# several times the stack's capacity. SERVICES_CPU_PERCENT does the same for the three services
# alone (verifications-svc, users-svc, sms-worker; inside the stack's cgroup when both are set):
# nginx, Redis, MariaDB and the sandbox keep the rest of their CPU, as a production gateway and
# databases have their own cores, so what is measured is the services' capacity and the gateway
# has the CPU to refuse what exceeds it. The cgroups go with the run (stack_remove_cgroup).
cpu_cgroup_root() {
  if [ -d /sys/fs/cgroup/cpu ] && [ -f /sys/fs/cgroup/cpu/cgroup.procs ]; then
    echo /sys/fs/cgroup/cpu
  elif [ -f /sys/fs/cgroup/cgroup.controllers ] && grep -qw cpu /sys/fs/cgroup/cgroup.controllers; then
    echo /sys/fs/cgroup
  else
    echo "SUT_CPU_PERCENT and SERVICES_CPU_PERCENT need the cgroup cpu controller (v1 or v2), not found" >&2
    exit 1
  fi
}
# A cgroup is one scheduling entity with the weight of a single process, so under contention
# (nginx, Redis and MariaDB busy beside it, or a build elsewhere on the machine) it would get
# less than its quota: its weight is raised tenfold, so the quota is what it gets.
cpu_cgroup() { # parent percent: makes the cgroup, prints its path
  local cg=$1/meiduo-bench-$$-$2
  mkdir "$cg"
  if [ -f "$cg/cpu.cfs_quota_us" ]; then
    echo 10000 >"$cg/cpu.cfs_period_us"
    echo $(($2 * 100)) >"$cg/cpu.cfs_quota_us"
    echo 10240 >"$cg/cpu.shares"
  else
    [ "$1" = "$STACK_CGROUP_ROOT" ] || echo +cpu >"$1/cgroup.subtree_control"
    echo "$(($2 * 100)) 10000" >"$cg/cpu.max"
    echo 1000 >"$cg/cpu.weight"
  fi
  echo "$cg"
}
stack_limit_cpu() {
  [ -n "${SUT_CPU_PERCENT:-}${SERVICES_CPU_PERCENT:-}" ] || return 0
  STACK_CGROUP_ROOT=$(cpu_cgroup_root)
  [ -z "${SUT_CPU_PERCENT:-}" ] || STACK_CGROUP=$(cpu_cgroup "$STACK_CGROUP_ROOT" "$SUT_CPU_PERCENT")
  [ -z "${SERVICES_CPU_PERCENT:-}" ] ||
    SERVICES_CGROUP=$(cpu_cgroup "${STACK_CGROUP:-$STACK_CGROUP_ROOT}" "$SERVICES_CPU_PERCENT")
}
# Move this shell (and so what it starts next) into a cgroup; empty: leave it where it is.
enter_cgroup() { [ -z "$1" ] || echo $$ >"$1/cgroup.procs"; }
stack_enter_cgroup() { enter_cgroup "${STACK_CGROUP:-}"; }
stack_leave_cgroup() { enter_cgroup "${STACK_CGROUP_ROOT:-}"; }
# After bench_cleanup stopped the processes: remove the cgroups (the inner one first).
stack_remove_cgroup() {
  local cg
  for cg in "${SERVICES_CGROUP:-}" "${STACK_CGROUP:-}"; do
    [ -z "$cg" ] || rmdir "$cg" 2>/dev/null || true
  done
}

stack_up() {
  stack_limit_cpu
  stack_enter_cgroup
  stack_processes
  stack_leave_cgroup
}

stack_processes() {
  local pin
  read -r -a pin <<<"$(stack_pin)"
  need redis-server redis-server; need redis-cli redis-tools
  REDIS_PORT=$(free_port)
  mkdir -p "$WORK/redis"
  # The one Redis configuration (deploy/redis/redis.conf), plus an append-only file.
  REDIS_CMD=("${pin[@]}" redis-server "$ROOT/deploy/redis/redis.conf" --port "$REDIS_PORT"
    --dir "$WORK/redis" --appendonly yes --appendfsync everysec)
  bench_bg "$WORK/redis.log" "${REDIS_CMD[@]}"
  REDIS_PID=$BENCH_LAST_PID
  wait_for redis-cli -p "$REDIS_PORT" ping
  start_mariadb
  [ -n "${SUT_CPUS:-}" ] && taskset -a -p -c "$SUT_CPUS" "$DB_PID" >/dev/null
  MARIADB_CMD=("${pin[@]}" "${MARIADB_CMD[@]}")

  SANDBOX_PORT=$(free_port)
  SANDBOX="http://127.0.0.1:$SANDBOX_PORT"
  local ccp=(CCP_ACCOUNT_SID=8a216da8000000000000000000000001
    CCP_AUTH_TOKEN=0123456789abcdef0123456789abcdef CCP_APP_ID=8a216da8000000000000000000000002)
  bench_bg "$WORK/sandbox.log" env "${ccp[@]}" PORT="$SANDBOX_PORT" RUST_LOG=warn "${pin[@]}" \
    "$BIN/sms-sandbox"
  wait_for curl -fs "$SANDBOX/messages"

  local big=1000000000 extra=()
  read -r -a extra <<<"${STACK_ENV:-}"
  REDIS_URL="redis://127.0.0.1:$REDIS_PORT/2"
  SERVICE_ENV=(
    HOST=127.0.0.1 HTTP_WORKERS="${HTTP_WORKERS:-$CORES}" RUST_LOG="${RUST_LOG:-warn}" "${ccp[@]}"
    REDIS_URL="$REDIS_URL" QUEUE_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/3"
    DATABASE_URL="$DATABASE_URL" JWT_SECRET=bench-secret-0123456789abcdef0123456789
    BCRYPT_COST="${BCRYPT_COST:-10}" SMS_PROVIDER=ccp CCP_BASE_URL="$SANDBOX"
    "SMS_SEND_LIMIT_PER_IP_PER_HOUR=$big" "SMS_SEND_LIMIT_PER_MOBILE_PER_DAY=$big"
    "COUNT_LIMIT_PER_IP_PER_MINUTE=$big" "CAPTCHA_FAILURES_PER_IP_PER_HOUR=$big"
    "CAPTCHA_ISSUE_LIMIT_PER_IP_PER_MINUTE=$big" "SMS_BUDGET_PER_MINUTE=$big"
    "SMS_BUDGET_PER_HOUR=$big" "SMS_BUDGET_PER_DAY=$big" "SMS_SEND_LIMIT_PER_PREFIX_PER_HOUR=$big"
    "SMS_SEND_LIMIT_PER_SUBNET_PER_HOUR=$big" "REGISTER_WRONG_CODES_PER_IP_PER_HOUR=$big"
    "${extra[@]}"
  )
  VER_PORT=$(free_port); USERS_PORT=$(free_port); WORKER_PORT=$(free_port)
  WORKER_CMD=(env "${SERVICE_ENV[@]}" PORT="$WORKER_PORT" "${pin[@]}" "$BIN/sms-worker")
  enter_cgroup "${SERVICES_CGROUP:-}"
  stack_service verifications-svc "$VER_PORT"; VER_PID=$SVC_PID
  stack_service users-svc "$USERS_PORT"; USERS_PID=$SVC_PID
  stack_service sms-worker "$WORKER_PORT"; WORKER_PID=$SVC_PID
  [ -z "${SERVICES_CGROUP:-}" ] || enter_cgroup "${STACK_CGROUP:-$STACK_CGROUP_ROOT}"

  GATEWAY_PORT=$(free_port)
  GATEWAY="http://127.0.0.1:$GATEWAY_PORT"
  mkdir -p "$WORK/nginx"
  LISTEN=127.0.0.1:$GATEWAY_PORT VERIFICATIONS_UPSTREAM=127.0.0.1:$VER_PORT \
    USERS_UPSTREAM=127.0.0.1:$USERS_PORT WEB_ROOT="$ROOT/deploy/web" \
    sh deploy/nginx/render.sh gateway "$WORK/nginx/meiduo.conf" 2>/dev/null
  local nginx_user=""; [ "$(id -u)" = 0 ] && nginx_user="user root;"
  NGINX_DIR="$WORK/nginx" NGINX_USER="$nginx_user" NGINX_WORKERS="${NGINX_WORKERS:-1}" \
    NGINX_CONNECTIONS=8192 sh deploy/nginx/render.sh local "$WORK/nginx/nginx.conf" 2>/dev/null
  bench_bg "$WORK/nginx.log" "${pin[@]}" nginx -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/error.log"
  NGINX_PID=$BENCH_LAST_PID
  wait_for curl -fs "$GATEWAY/"
}

stack_service() { # name port: sets SVC_PID
  local pin
  read -r -a pin <<<"$(stack_pin)"
  bench_bg "$WORK/$1.log" env "${SERVICE_ENV[@]}" PORT="$2" "${pin[@]}" "$BIN/$1"
  SVC_PID=$BENCH_LAST_PID
  wait_for curl -fs "http://127.0.0.1:$2/healthz"
}

# The raw ceilings of this run, on the same machine and pinning: Redis GET, a MariaDB point
# select, an nginx static file. Prints one line.
stack_ceilings() {
  need wrk wrk; need mariadb-slap mariadb-client
  local pin dpin redis_raw slap_secs static_rps static_p99
  read -r -a pin <<<"$(stack_pin)"
  read -r -a dpin <<<"$(driver_pin)"
  redis_raw=$("${pin[@]}" redis-benchmark -p "$REDIS_PORT" -q -c 32 -n 100000 -t get 2>/dev/null |
    tr '\r' '\n' | grep 'per second' | tail -1)
  "${pin[@]}" mariadb-slap --no-defaults --protocol=TCP -h127.0.0.1 -P"$DB_PORT" -uroot \
    --concurrency=64 --iterations=1 --number-of-queries=64000 --create-schema=meiduo_mall \
    --no-drop --query="SELECT COUNT(*) FROM tb_users WHERE username = 'nobody'" \
    >"$WORK/slap.out" 2>&1
  slap_secs=$(awk '/Average number of seconds to run all queries/ { print $(NF-1) }' "$WORK/slap.out")
  "${dpin[@]}" wrk -t2 -c64 -d5s --latency "$GATEWAY/" >"$WORK/wrk-static.out"
  read -r static_rps _ static_p99 <<<"$(wrk_summary "$WORK/wrk-static.out")"
  echo "raw ceilings: redis-benchmark GET c32: ${redis_raw:-?}; MariaDB point select c64: $(awk -v s="$slap_secs" 'BEGIN { printf "%.0f", 64000 / s }') q/s; nginx static file wrk c64: $static_rps req/s (p99 $static_p99 ms)"
}
