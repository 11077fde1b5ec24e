#!/usr/bin/env bash
# The main job on embedded defaults, from a fresh machine:
#
#   ./scripts/demo.sh [sendguard demo options...]
#
# creates .venv (Python >= 3.11) if missing, installs sendguard into it, and runs
# `sendguard demo`: a seeded, realistic stream of delivery events replayed through the
# worker's detection on an embedded store (no Kafka or Redis needed). Pause commands and
# status changes are printed as JSON lines on stdout, the per-campaign summary on stderr.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv"

if [[ ! -x "$VENV/bin/python" ]]; then
  PY=""
  for cand in ${SENDGUARD_PYTHON:-} python3.13 python3.12 python3.11 python3; do
    if command -v "$cand" >/dev/null 2>&1 &&
      "$cand" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      PY="$(command -v "$cand")"
      break
    fi
  done
  [[ -n "$PY" ]] || { echo "demo.sh: need Python >= 3.11" >&2; exit 1; }
  "$PY" -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c 'import processor.cli' 2>/dev/null; then
  echo "demo.sh: installing sendguard into .venv" >&2
  PIP_DISABLE_PIP_VERSION_CHECK=1 "$VENV/bin/python" -m pip install -q -e .
fi
exec "$VENV/bin/sendguard" demo "$@"
