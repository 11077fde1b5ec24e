#!/usr/bin/env bash
# Run every benchmark on the local stack; results land in bench/results/<name>-*.json.
# Usage: bench/all.sh [--quick]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/stack.sh up >/dev/null
# shellcheck source=/dev/null
source .stack/env
PY=.venv/bin/python
"$PY" -m bench.throughput "$@"
"$PY" -m bench.quality "$@"
# Not written yet: latency, damage, memory, resume, demo timing (see docs/BENCHMARKS.md).
