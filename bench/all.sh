#!/usr/bin/env bash
# Run every benchmark on the local stack; results land in bench/results/<name>-*.json.
# Usage: bench/all.sh [--quick]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/stack.sh up >/dev/null
# shellcheck source=/dev/null
source .stack/env
PY=.venv/bin/python
"$PY" -m bench.latency "$@"
"$PY" -m bench.damage "$@"
"$PY" -m bench.memory "$@"
"$PY" -m bench.demo_timing "$@"
"$PY" -m bench.quality "$@"
"$PY" -m bench.throughput "$@"
# resume_memory.py has no --quick and writes no JSON; its output is kept as text.
recipients=1000000
[[ " $* " == *" --quick "* ]] && recipients=100000
mkdir -p bench/results
"$PY" bench/resume_memory.py --recipients "$recipients" | tee "bench/results/resume_memory-latest.txt"
