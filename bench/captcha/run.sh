#!/usr/bin/env bash
# Attack harness for the image captcha: fresh captchas with their answers from the service's own
# drawing code, then every attack of bench/captcha/attack.py on them. A measurement, not a test.
#
#   bench/captcha/run.sh [--rev REV] [COUNT]      # COUNT defaults to 500
#
# --rev measures the generator of another commit (built in a temporary git worktree, sharing
# target/), e.g. the one before a change. Setup is done here: tesseract from apt if missing, and
# numpy + pillow from PyPI in a virtualenv under target/captcha-venv.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
# shellcheck source=bench/lib.sh
. bench/lib.sh

REV=""
if [ "${1:-}" = "--rev" ]; then REV=$2; shift 2; fi
COUNT=${1:-500}

setup() {
  if ! command -v tesseract >/dev/null; then
    [ "$(id -u)" = 0 ] || { echo "missing tesseract (apt-get install tesseract-ocr)" >&2; exit 1; }
    log "installing tesseract-ocr (apt)"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      tesseract-ocr tesseract-ocr-eng >/dev/null
  fi
  VENV=$ROOT/target/captcha-venv
  if ! "$VENV/bin/python" -c 'import numpy, PIL' 2>/dev/null; then
    log "creating $VENV (numpy, pillow from PyPI)"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q 'numpy>=1.26,<3' 'pillow>=10,<14'
  fi
}

setup
bench_init captcha
SRC=$ROOT
if [ -n "$REV" ]; then
  SRC=$WORK/src
  git worktree add -q --detach "$SRC" "$REV"
  # removed with $WORK by the EXIT trap; prune the worktree entry too
  trap 'git -C "$ROOT" worktree remove --force "$SRC" 2>/dev/null || true; bench_cleanup' EXIT
fi
log "generating $COUNT captchas with the drawing code of ${REV:-the working tree} ($(git -C "$SRC" rev-parse --short HEAD))"
CARGO_TARGET_DIR=$ROOT/target cargo run -q --manifest-path "$SRC/Cargo.toml" -p verifications-svc \
  --example captchas -- "$WORK/set" "$COUNT"
log "attacking them (tesseract $(tesseract --version 2>&1 | head -1 | cut -d' ' -f2))"
"$VENV/bin/python" bench/captcha/attack.py "$WORK/set"
