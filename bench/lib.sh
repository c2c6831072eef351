# shellcheck shell=bash
# Shared pieces of the benchmark scripts (sourced, not run): logging, free ports, waiting,
# private throw-away Redis and MariaDB servers on loopback, and wrk output parsing.
#
# A script sources it after `set -euo pipefail`, then calls `bench_init NAME`: that makes
# $WORK (a temp dir) and installs a trap that kills every process registered with `bench_bg`
# and deletes $WORK, however the script ends.

log() { printf '\033[1m[bench]\033[0m %s\n' "$*" >&2; }
need() { command -v "$1" >/dev/null || { echo "missing $1 (apt-get install $2)" >&2; exit 1; }; }

BENCH_PIDS=()
bench_cleanup() {
  local pid
  for pid in "${BENCH_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${BENCH_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
bench_init() { # name
  WORK=$(mktemp -d "/tmp/$1-bench.XXXXXX")
  trap bench_cleanup EXIT
  CORES=$(nproc)
  log "machine: $CORES cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
}
# Run a command in the background, remembered for cleanup; its pid is in $BENCH_LAST_PID.
bench_bg() { # logfile command...
  local logf=$1; shift
  "$@" >"$logf" 2>&1 &
  BENCH_LAST_PID=$!
  BENCH_PIDS+=("$BENCH_LAST_PID")
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_for() { # command... : retry for up to 30 s
  local _
  for _ in $(seq 300); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "timed out waiting for: $*" >&2; exit 1
}

# The repository's root, where the server configurations are (deploy/redis, deploy/mariadb).
BENCH_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# A Redis configured as in the tests (deploy/redis/redis.conf: no persistence, maxmemory with
# noeviction) on a free port: sets REDIS_PORT and REDIS_PID.
start_redis() {
  need redis-server redis-server; need redis-cli redis-tools
  REDIS_PORT=$(free_port)
  bench_bg "$WORK/redis.log" redis-server "$BENCH_ROOT/deploy/redis/redis.conf" --port "$REDIS_PORT" \
    --dir "$WORK"
  # shellcheck disable=SC2034 # read by the scripts that source this file
  REDIS_PID=$BENCH_LAST_PID
  wait_for redis-cli -p "$REDIS_PORT" ping
}

# A MariaDB configured as in the tests (deploy/mariadb/my.cnf with its _throwaway group) with
# an empty `meiduo_mall` database: sets DB_PORT, DB_PID, MARIADB_CMD and DATABASE_URL; `sql`
# runs statements as root.
start_mariadb() {
  need mariadb mariadb-client; need mariadb-install-db mariadb-server
  local mariadbd user_args=()
  local defaults=(--defaults-file="$BENCH_ROOT/deploy/mariadb/my.cnf" --defaults-group-suffix=_throwaway)
  mariadbd=$(command -v mariadbd || echo /usr/sbin/mariadbd)
  [ "$(id -u)" = 0 ] && user_args=(--user=root)
  DB_PORT=$(free_port)
  mariadb-install-db "${defaults[@]}" --datadir="$WORK/data" "${user_args[@]}" >"$WORK/install.log" 2>&1
  # MARIADB_CMD: the exact command, for a script that restarts the server on the same data.
  MARIADB_CMD=("$mariadbd" "${defaults[@]}" --datadir="$WORK/data"
    --socket="$WORK/mariadb.sock" --pid-file="$WORK/mariadbd.pid" --port="$DB_PORT"
    "${user_args[@]}")
  bench_bg "$WORK/mariadb.log" "${MARIADB_CMD[@]}"
  # shellcheck disable=SC2034 # read by the scripts that source this file
  DB_PID=$BENCH_LAST_PID
  wait_for sql -e 'SELECT 1'
  sql -e 'CREATE DATABASE meiduo_mall CHARACTER SET utf8mb4'
  # shellcheck disable=SC2034 # read by the scripts that source this file
  DATABASE_URL="mysql://root@127.0.0.1:$DB_PORT/meiduo_mall"
}
sql() { mariadb --no-defaults --protocol=TCP -h127.0.0.1 -P"$DB_PORT" -uroot --batch --skip-column-names "$@"; }

# wrk latency ("850.00us", "1.20ms", "2.00s") -> milliseconds
ms() { awk '{ v = $1; if (v ~ /us$/) { sub(/us$/, "", v); v /= 1000 } else if (v ~ /ms$/) { sub(/ms$/, "", v) } else if (v ~ /s$/) { sub(/s$/, "", v); v *= 1000 } printf "%.2f", v }'; }
# wrk --latency output file -> "req/s p50 p99" (latencies in ms)
wrk_summary() {
  local out=$1 rps p50 p99
  rps=$(awk '/^Requests\/sec:/ { printf "%.0f", $2 }' "$out")
  p50=$(awk '$1 == "50%" { print $2 }' "$out" | ms)
  p99=$(awk '$1 == "99%" { print $2 }' "$out" | ms)
  echo "$rps $p50 $p99"
}
# Responses wrk counted as errors (non-2xx/3xx), 0 if none.
non2xx() { awk '/Non-2xx or 3xx responses:/ { print $NF }' "$1" | grep . || echo 0; }
# a as a percentage of b
pct() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.0f%%", 100 * a / b; else print "-" }'; }

# Resident memory of a process in MiB: current (VmRSS) or peak (VmHWM).
rss_mib() { awk '/VmRSS/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }
peak_rss_mib() { awk '/VmHWM/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }
