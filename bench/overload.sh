#!/usr/bin/env bash
# Overload: each endpoint at 2× and 5× its own capacity. Beyond capacity a client must get only
# 429/503 with Retry-After (no other 5xx, no request left hanging), the answered requests must
# stay at ≥ 90% of capacity (goodput), and their latency must stay bounded. A benchmark, not a
# test: it reports, it asserts nothing.
#
#   bench/overload.sh                                   # ~3 minutes
#   ENDPOINTS=counts,register FACTORS=2,5,10 LOAD_SECS=20 bench/overload.sh
#
# The stack of bench/stack.sh (release build, everything on free loopback ports), laid out as
# production has it: on a machine with two or more cores the stack is pinned to the last core
# and the load driver (tests/examples/overload.rs) to the others, and the three services share
# SERVICES_CPU_PERCENT (default 15) of the stack's core under a CFS quota, while nginx, Redis,
# MariaDB and the sandbox keep the rest of it. So the capacity measured is the services', the
# gateway has CPU of its own to refuse what exceeds it (`*_MAX_CONNS`, before proxying), and one
# core of driver can offer 5× that capacity. SUT_CPUS and DRIVER_CPUS override the pinning
# (SUT_CPUS= DRIVER_CPUS=, empty, turns it off), SERVICES_CPU_PERCENT= (empty) lifts the quota,
# SUT_CPU_PERCENT puts the whole stack under one. The driver first measures its own ceiling
# (nginx's cheapest answer), then each endpoint's capacity with a closed loop, then offers
# FACTORS × that rate open-loop from a fixed set of keep-alive connections (requests due on a
# fixed schedule, latency counted from the due time). See the driver's header for every knob;
# the services run with their defaults (MAX_IN_FLIGHT, HASH_MAX_WAIT_MS,
# CAPTCHA_RENDER_WAIT_MS) unless STACK_ENV says otherwise, the gateway with
# render.sh's `*_MAX_CONNS` unless they are set. Last line: `overload: N passed, N failed`.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# shellcheck source=bench/lib.sh
. bench/lib.sh
need nginx nginx-light; need envsubst gettext-base; need taskset util-linux
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"

bench_init overload
# shellcheck source=bench/stack.sh
. bench/stack.sh
if [ "$CORES" -ge 2 ]; then
  SUT_CPUS=${SUT_CPUS-$((CORES - 1))}
  DRIVER_CPUS=${DRIVER_CPUS-0-$((CORES - 2))}
fi
# 15% of a core: at 5× their capacity the refusals, the proxying, Redis and MariaDB then still
# fit in the rest of the stack's core (at 25%, by nginx's ~25 µs a request, they would need about
# all of it on counts; bench/RESULTS.md).
SERVICES_CPU_PERCENT=${SERVICES_CPU_PERCENT-15}
# The gateway's bound for verifications-svc, below its capacity here (about 750 captchas/s at
# 15%) × CAPTCHA_RENDER_WAIT_MS (250): with render.sh's 256, more requests reach the service
# than it can draw within that wait, and it refuses them itself, after the proxy hop and the
# parsing the gateway's refusal saves, on the CPU the capacity needs (bench/RESULTS.md). A whole
# core draws about ten times as many, for which 256 is right.
export VERIFICATIONS_MAX_CONNS=${VERIFICATIONS_MAX_CONNS:-64}
# One HTTP worker per core the stack has.
HTTP_WORKERS=${HTTP_WORKERS:-$(taskset -c "${SUT_CPUS:-0-$((CORES - 1))}" nproc)}
stack_build -p tests --example overload
trap 'bench_cleanup; stack_remove_cgroup' EXIT
stack_up

echo "machine: $CORES cores, $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg); stack on CPUs ${SUT_CPUS:-all} (whole stack quota: ${SUT_CPU_PERCENT:-none}), the three services under a quota of ${SERVICES_CPU_PERCENT:-no}% of one CPU (HTTP_WORKERS=$HTTP_WORKERS), nginx/Redis/MariaDB/sandbox beside them without one; driver on ${DRIVER_CPUS:-all}; gateway max_conns verifications/users/register $(grep -o 'max_conns=[0-9]*' "$WORK/nginx/meiduo.conf" | cut -d= -f2 | paste -sd/); BCRYPT_COST=${BCRYPT_COST:-10}"
stack_ceilings
read -r -a dpin <<<"$(driver_pin)"
GATEWAY="$GATEWAY" REDIS_URL="$REDIS_URL" "${dpin[@]}" "$BIN/examples/overload" | tee "$WORK/report.md"
