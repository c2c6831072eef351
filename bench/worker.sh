#!/usr/bin/env bash
# sms-worker benchmark: jobs/s from the queue to the provider at 0 ms and 200 ms provider
# latency, and push-to-inbox latency when idle (docs/performance.md §1 goals: ≥ 5000 jobs/s, ≥ 150
# jobs/s, idle p99 < 500 ms); then failover with SMS_PROVIDERS=ccp,aliyun: jobs/s with CCP down
# (connection refused, its breaker open) and push-to-inbox p50/p99 before and right after CCP
# starts failing (docs/providers.md §4).
#
#   bench/worker.sh [jobs@0ms=20000] [jobs@200ms=1600] [idle samples=200]
#
# Builds release binaries, starts a private redis-server on a free loopback port (stopped at
# the end), and runs sms-worker/examples/worker_bench.rs, which starts the sms-sandbox
# in-process on another free port and the worker binary against both. Everything stops by itself.
# Environment passed to the worker (e.g. SMS_WORKER_CONCURRENCY=64) is honoured.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# shellcheck source=bench/lib.sh
. bench/lib.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"

bench_init worker
log "cargo build --release (sms-worker + worker_bench)"
cargo build --release --locked -q -p sms-worker --bin sms-worker --example worker_bench
start_redis

echo "machine: $CORES cores, $(uname -r); redis $(redis-server --version | awk '{print $3}')"
echo "raw ceiling, same Redis (redis-benchmark, 32 clients): $(redis-benchmark -p "$REDIS_PORT" -q -c 32 -n 100000 -t lpush 2>/dev/null | tr '\r' '\n' | grep 'per second' | tail -1)"
"$CARGO_TARGET_DIR/release/examples/worker_bench" "$REDIS_PORT" "$CARGO_TARGET_DIR/release/sms-worker" "$@"
