#!/usr/bin/env bash
# The backend matrix: each task API in deploy/backends (Django, Express, Go, PHP) behind
# Portcullis, with tokens from one real Better Auth app (tests/backends).
#   1. scripts/demo-setup.sh --tests   (venv with pytest, the web app's build, the gateway)
#   2. what the backends need: Debian's golang-go, php-cli and php-sqlite3 when missing,
#      then each backend's `run.sh --prepare` (Django's venv, npm ci, go build)
#   3. pytest tests/backends
# Exits non-zero if anything fails, including a pytest run that collects no tests.
#
# Usage: scripts/test-backends.sh [pytest arguments, e.g. -k php]
# Environment: PORTCULLIS_BIN   test this gateway binary (default: target/debug/portcullis,
#                               built here with cargo when unset)
set -uo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BACKENDS_DIR="$REPO_ROOT/deploy/backends"
PY="$REPO_ROOT/.venv/bin/python"

say() { printf '[test-backends] %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

# shellcheck source=scripts/apt.sh
. "$REPO_ROOT/scripts/apt.sh"

started=$SECONDS
if [ -z "${PORTCULLIS_BIN:-}" ]; then
  (cd "$REPO_ROOT" && cargo build --locked --bins) || die "cargo build failed"
  export PORTCULLIS_BIN="$REPO_ROOT/target/debug/portcullis"
fi
"$REPO_ROOT/scripts/demo-setup.sh" --tests || die "demo setup failed"

missing=()
command -v go >/dev/null 2>&1 || missing+=(golang-go)
command -v php >/dev/null 2>&1 || missing+=(php-cli)
if ! command -v php >/dev/null 2>&1 || ! grep -qx pdo_sqlite <<<"$(php -m 2>/dev/null)"; then
  missing+=(php-sqlite3)
fi
if [ "${#missing[@]}" -gt 0 ]; then
  apt_install "${missing[@]}" || die "missing: ${missing[*]} (on Debian: apt-get install ${missing[*]})"
fi

for backend in django express go; do
  say "preparing $backend"
  "$BACKENDS_DIR/$backend/run.sh" --prepare || die "$backend: run.sh --prepare failed"
done
say "ready in $((SECONDS - started))s"

matrix_started=$SECONDS
(cd "$REPO_ROOT/tests/backends" && "$PY" -m pytest -q --durations=5 "$@")
rc=$?
say "backend matrix: exit status $rc after $((SECONDS - matrix_started))s"
case "$rc" in
  0) say "all backend tests passed" ;;
  5) die "the backend matrix collected no tests" ;;
  *) exit 1 ;;
esac
