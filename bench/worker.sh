#!/usr/bin/env bash
# sms-worker benchmark: jobs/s from the queue to the provider at 0 ms and 200 ms provider
# latency, and push-to-inbox latency when idle (DESIGN §6 goals: ≥ 5000 jobs/s, ≥ 150 jobs/s,
# idle p99 < 500 ms).
#
#   bench/worker.sh [jobs@0ms=20000] [jobs@200ms=1600] [idle samples=200]
#
# Builds release binaries, starts a private redis-server on a free loopback port (stopped at
# the end), and runs sms-worker/examples/worker_bench.rs, which starts the sms-sandbox
# in-process on another free port and the worker binary against both. Everything stops by itself.
# Environment passed to the worker (e.g. SMS_WORKER_CONCURRENCY=64) is honoured.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"

echo "[bench] cargo build --release (sms-worker + worker_bench)" >&2
cargo build --release --locked -p sms-worker --bin sms-worker --example worker_bench >&2

REDIS_SERVER="$(command -v redis-server || echo /usr/bin/redis-server)"
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
DIR="$(mktemp -d /tmp/meiduo-bench-worker.XXXXXX)"
"$REDIS_SERVER" --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
  --dir "$DIR" --loglevel warning >"$DIR/redis.log" 2>&1 &
REDIS_PID=$!
cleanup() { kill "$REDIS_PID" 2>/dev/null || true; wait "$REDIS_PID" 2>/dev/null || true; rm -rf "$DIR"; }
trap cleanup EXIT
for _ in $(seq 100); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.05; done

echo "machine: $(nproc) cores, $(uname -r); redis $("$REDIS_SERVER" --version | awk '{print $3}')"
echo "raw ceiling, same Redis (redis-benchmark, 32 clients): $(redis-benchmark -p "$PORT" -q -c 32 -n 100000 -t lpush 2>/dev/null | tr '\r' '\n' | grep 'per second' | tail -1)"
"$CARGO_TARGET_DIR/release/examples/worker_bench" "$PORT" "$CARGO_TARGET_DIR/release/sms-worker" "$@"
