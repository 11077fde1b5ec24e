#!/usr/bin/env bash
# The one test command, from a fresh machine to a verdict:
#
#   ./scripts/test.sh [pytest args...]
#
# 1. creates .venv (Python >= 3.11) if missing and installs '.[dev]' into it
#    (again whenever pyproject.toml changes);
# 1b. installs promtool and chromium (Debian's packages) if missing, for the alert rules and
#     the status page's browser test;
# 2. starts the local Kafka + Redis stack (scripts/stack.sh up) and exports
#    SENDGUARD_KAFKA_BOOTSTRAP_SERVERS / SENDGUARD_REDIS_URL;
# 3. runs ruff check, mypy and pytest (all of them, even after a failure);
# 4. stops the stack it started (set SENDGUARD_KEEP_STACK=1 to keep it).
#
# Exit status: that of the first failing step, else 0.
# A stack that was already running before this script started is left running.
# To use your own Kafka/Redis, see SENDGUARD_EXTERNAL_STACK in scripts/stack.sh.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 1
VENV="$ROOT/.venv"

section() { printf '\n==== %s ====\n' "$*"; }
fail() { printf 'test.sh: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- python env
pick_python() {
  local cand
  for cand in ${SENDGUARD_PYTHON:-} python3.13 python3.12 python3.11 python3; do
    command -v "$cand" >/dev/null 2>&1 || continue
    if "$cand" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      command -v "$cand"
      return 0
    fi
  done
  return 1
}

section "python environment (.venv)"
if [[ ! -x "$VENV/bin/python" ]]; then
  PY="$(pick_python)" || fail "need Python >= 3.11 (set SENDGUARD_PYTHON to its path)"
  echo "creating .venv with $PY ($("$PY" --version 2>&1))"
  if ! "$PY" -m venv "$VENV"; then
    # Debian's python3 lacks ensurepip until python3-venv is installed.
    rm -rf "$VENV"
    if command -v apt-get >/dev/null && [[ "$(id -u)" -eq 0 ]]; then
      DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null ||
        fail "could not install python3-venv"
      "$PY" -m venv "$VENV" || fail "could not create .venv"
    else
      fail "could not create .venv (install python3-venv)"
    fi
  fi
fi
"$VENV/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
  fail ".venv has Python $("$VENV/bin/python" --version 2>&1); need >= 3.11 (remove .venv to rebuild)"
export VIRTUAL_ENV="$VENV"
export PATH="$VENV/bin:$PATH"
export PIP_DISABLE_PIP_VERSION_CHECK=1

# Reinstall only when the project metadata changed (the install is editable).
STAMP="$VENV/.sendguard-install-stamp"
want="$(cat pyproject.toml 2>/dev/null | sha256sum | cut -d' ' -f1) $(python --version 2>&1)"
if [[ ! -f "$STAMP" || "$(cat "$STAMP")" != "$want" ]] ||
  ! python -c 'import importlib.metadata as m; m.distribution("sendguard")' 2>/dev/null; then
  echo "pip install -e '.[dev]'"
  python -m pip install -q -e '.[dev]' || fail "pip install failed"
  echo "$want" >"$STAMP"
else
  echo "dependencies up to date ($(python --version 2>&1))"
fi

# ---------------------------------------------------------------- tools
section "tools (promtool, chromium)"
# The alert rules are checked by the real promtool (Debian's prometheus package) and the status
# page by a real headless Chromium (Debian's chromium).
missing=()
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
if [[ ${#missing[@]} -gt 0 ]]; then
  if command -v apt-get >/dev/null && [[ "$(id -u)" -eq 0 ]]; then
    echo "apt-get install ${missing[*]}"
    { DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"; } \
      >/dev/null || fail "could not install ${missing[*]}"
  else
    fail "missing tools: install Debian's ${missing[*]}"
  fi
fi
echo "promtool: $(promtool --version 2>&1 | head -1); $(chromium --version 2>/dev/null)"

# ---------------------------------------------------------------- stack
section "stack (Kafka + Redis)"
STACK_STARTED=0
cleanup() {
  if [[ "$STACK_STARTED" -eq 1 ]]; then
    if [[ "${SENDGUARD_KEEP_STACK:-0}" == 1 ]]; then
      printf '\ntest.sh: stack left running (SENDGUARD_KEEP_STACK=1): eval "$(scripts/stack.sh env)"; scripts/stack.sh down\n'
    else
      "$ROOT/scripts/stack.sh" down >/dev/null 2>&1 || true
    fi
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if "$ROOT/scripts/stack.sh" status >/dev/null 2>&1; then
  echo "using the stack that is already running (it will be left running)"
else
  STACK_STARTED=1
fi
"$ROOT/scripts/stack.sh" up >/dev/null || fail "the stack did not start"
eval "$("$ROOT/scripts/stack.sh" env)" || fail "could not read the stack env"
echo "SENDGUARD_KAFKA_BOOTSTRAP_SERVERS=$SENDGUARD_KAFKA_BOOTSTRAP_SERVERS"
echo "SENDGUARD_REDIS_URL=$SENDGUARD_REDIS_URL"

# ---------------------------------------------------------------- checks
FIRST_FAILURE=0
SUMMARY=()
run_step() {
  local name="$1" start=$SECONDS rc
  shift
  section "$name"
  "$@"
  rc=$?
  if [[ "$rc" -eq 0 ]]; then
    SUMMARY+=("$name ok ($((SECONDS - start))s)")
  else
    SUMMARY+=("$name FAILED rc=$rc ($((SECONDS - start))s)")
    [[ "$FIRST_FAILURE" -ne 0 ]] || FIRST_FAILURE=$rc
  fi
}

run_step "ruff check" ruff check .
run_step "mypy" mypy
run_step "pytest" pytest "$@"

printf '\ntest.sh: %s\n' "$(IFS=';'; echo "${SUMMARY[*]}" | sed 's/;/; /g')"
exit "$FIRST_FAILURE"
