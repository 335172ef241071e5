#!/usr/bin/env bash
# Installs and builds everything the demo stack (deploy/demo) needs:
#   * a Python virtualenv at .venv with the task service's pinned requirements
#   * the web app's npm dependencies (npm ci) and its Next.js production build
#   * the gateway (cargo build --release)
# Each step is skipped when its result is already up to date, so running this
# again is cheap.
#
# Usage: scripts/demo-setup.sh [--tests]
#   --tests   also install the test tooling (pytest, httpx2)
# Environment:
#   PORTCULLIS_BIN   use this gateway binary and skip the cargo build
#   PYTHON           Python interpreter for the virtualenv (default: python3)
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WEB_DIR="$REPO_ROOT/deploy/demo/web"
TASKS_DIR="$REPO_ROOT/deploy/demo/tasks"
VENV_DIR="$REPO_ROOT/.venv"
PYTHON="${PYTHON:-python3}"
WITH_TESTS=0

for arg in "$@"; do
  case "$arg" in
    --tests) WITH_TESTS=1 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "demo-setup: unknown argument: $arg" >&2; exit 2 ;;
  esac
done

export NEXT_TELEMETRY_DISABLED=1

log() { printf '[demo-setup] %s\n' "$*" >&2; }
die() { printf '[demo-setup] error: %s\n' "$*" >&2; exit 1; }

hash_files() { cat "$@" | sha256sum | cut -d' ' -f1; }

# --- system prerequisites ------------------------------------------------------

# shellcheck source=scripts/apt.sh
. "$(dirname "${BASH_SOURCE[0]}")/apt.sh"

require_cmd() {
  command -v "$1" >/dev/null 2>&1 || die "$1 is required ($2)"
}

check_prerequisites() {
  require_cmd node "install Node.js 20.9 or newer"
  require_cmd npm "it comes with Node.js"
  require_cmd "$PYTHON" "install Python 3.10 or newer"
  if [ -z "${PORTCULLIS_BIN:-}" ]; then
    require_cmd cargo "install Rust, or set PORTCULLIS_BIN to a built gateway"
  fi

  local node_major node_minor
  IFS=. read -r node_major node_minor _ <<<"$(node -p 'process.versions.node')"
  if [ "$node_major" -lt 20 ] || { [ "$node_major" -eq 20 ] && [ "$node_minor" -lt 9 ]; }; then
    die "Node.js 20.9 or newer is required (found $(node -v))"
  fi
  "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' \
    || die "Python 3.10 or newer is required (found $("$PYTHON" --version 2>&1))"

  # better-sqlite3 compiles a native module when no prebuilt one can be fetched.
  local missing=()
  command -v make >/dev/null 2>&1 || missing+=(make)
  command -v g++ >/dev/null 2>&1 || command -v c++ >/dev/null 2>&1 || missing+=(g++)
  if [ "${#missing[@]}" -gt 0 ]; then
    apt_install "${missing[@]}" || die "missing: ${missing[*]} (on Debian: apt-get install ${missing[*]})"
  fi
}

# --- steps ---------------------------------------------------------------------------

setup_venv() {
  local reqs=("$TASKS_DIR/requirements.txt")
  [ "$WITH_TESTS" -eq 1 ] && reqs=("$TASKS_DIR/requirements-test.txt" "$TASKS_DIR/requirements.txt")
  local want stamp="$VENV_DIR/.demo-requirements.sha256"
  want="$(hash_files "${reqs[@]}")"
  if [ -x "$VENV_DIR/bin/python" ] && [ -f "$stamp" ] && grep -qx "$want" "$stamp"; then
    log "python venv up to date ($VENV_DIR)"
    return
  fi
  # A venv that already holds the test tooling also serves the demo.
  if [ "$WITH_TESTS" -eq 0 ] && [ -f "$stamp" ] && [ -x "$VENV_DIR/bin/python" ] \
    && grep -qx "$(hash_files "$TASKS_DIR/requirements-test.txt" "$TASKS_DIR/requirements.txt")" "$stamp"; then
    log "python venv up to date ($VENV_DIR)"
    return
  fi
  if [ ! -x "$VENV_DIR/bin/python" ]; then
    log "creating python venv at $VENV_DIR"
    if ! "$PYTHON" -m venv "$VENV_DIR" >/dev/null 2>&1; then
      # Debian ships venv/ensurepip separately (python3-venv).
      rm -rf "$VENV_DIR"
      local pyver
      pyver="$("$PYTHON" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
      apt_install python3-venv "python${pyver}-venv" || die "cannot create a virtualenv (on Debian: apt-get install python3-venv)"
      "$PYTHON" -m venv "$VENV_DIR"
    fi
  fi
  log "installing python requirements: ${reqs[0]#"$REPO_ROOT"/}"
  "$VENV_DIR/bin/python" -m pip install --quiet --disable-pip-version-check -r "${reqs[0]}"
  printf '%s\n' "$want" >"$stamp"
}

setup_node_modules() {
  local want stamp="$WEB_DIR/node_modules/.demo-lock.sha256"
  # The native SQLite module is built for one Node.js ABI; rebuild when it changes.
  want="$(hash_files "$WEB_DIR/package-lock.json" "$WEB_DIR/package.json")-node$(node -p 'process.versions.modules')"
  if [ -f "$stamp" ] && grep -qx "$want" "$stamp"; then
    log "web dependencies up to date"
    return
  fi
  log "installing web dependencies (npm ci; the first run compiles better-sqlite3)"
  (cd "$WEB_DIR" && npm ci --no-audit --no-fund --loglevel=error)
  printf '%s\n' "$want" >"$stamp"
}

build_web() {
  local build_id="$WEB_DIR/.next/BUILD_ID"
  if [ -f "$build_id" ]; then
    local newer
    newer="$(cd "$WEB_DIR" && find app lib public next.config.ts tsconfig.json package.json package-lock.json \
      node_modules/.demo-lock.sha256 -newer "$build_id" -print -quit 2>/dev/null || true)"
    if [ -z "$newer" ]; then
      log "web app build up to date"
      return
    fi
    log "web app changed ($newer), rebuilding"
  else
    log "building the web app (next build)"
  fi
  (cd "$WEB_DIR" && node node_modules/next/dist/bin/next build >"$WEB_DIR/.next-build.log" 2>&1) || {
    cat "$WEB_DIR/.next-build.log" >&2
    die "next build failed"
  }
}

build_gateway() {
  if [ -n "${PORTCULLIS_BIN:-}" ]; then
    [ -x "$PORTCULLIS_BIN" ] || die "PORTCULLIS_BIN=$PORTCULLIS_BIN is not an executable file"
    log "using gateway $PORTCULLIS_BIN"
    return
  fi
  log "building the gateway (cargo build --release)"
  (cd "$REPO_ROOT" && cargo build --release)
}

started=$SECONDS
check_prerequisites
setup_venv
setup_node_modules
build_web
build_gateway
log "ready in $((SECONDS - started))s"
