#!/usr/bin/env bash
# Tests the demo stack:
#   1. scripts/demo-setup.sh --tests   (venv, npm ci, next build, cargo build --release)
#   2. the task service's own tests     (deploy/demo/tasks/tests, real SQLite files)
#   3. the end-to-end suite             (tests/e2e: real Next.js + Better Auth, Portcullis,
#                                        task service on free loopback ports)
# Exits non-zero if anything fails, including a pytest run that collects no tests.
#
# Usage: scripts/test-demo.sh [pytest arguments for the e2e suite, e.g. -k rotation]
# Environment: PORTCULLIS_BIN   test this gateway binary instead of target/release/portcullis
set -uo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="$REPO_ROOT/.venv/bin/python"

say() { printf '[test-demo] %s\n' "$*" >&2; }

"$REPO_ROOT/scripts/demo-setup.sh" --tests || { say "setup failed"; exit 1; }

failures=()

run_pytest() { # label dir pytest-args...
  local label="$1" dir="$2"
  shift 2
  local started=$SECONDS rc
  say "running $label"
  (cd "$dir" && "$PY" -m pytest "$@")
  rc=$?
  say "$label: exit status $rc after $((SECONDS - started))s"
  case "$rc" in
    0) ;;
    5) say "$label: no tests were collected"; failures+=("$label (no tests collected)") ;;
    *) failures+=("$label (pytest exit status $rc)") ;;
  esac
}

run_pytest "task service tests" "$REPO_ROOT/deploy/demo/tasks" -q
run_pytest "end-to-end tests" "$REPO_ROOT/tests/e2e" -q --durations=5 "$@"

if [ "${#failures[@]}" -gt 0 ]; then
  say "FAILED: ${failures[*]}"
  exit 1
fi
say "all demo tests passed"
