#!/usr/bin/env bash
# Runs the Express task API on 127.0.0.1:${PORT:-8000}. The first run installs the
# locked dependencies (npm ci) into node_modules here. Needs Node.js 18 or newer.
# Usage: run.sh [--prepare]   (--prepare: install and exit)
set -euo pipefail
cd "$(dirname "$0")"
want="$(sha256sum <package-lock.json | cut -d' ' -f1)"
if ! grep -qx "$want" node_modules/.lock.sha256 2>/dev/null; then
  echo "[express] installing dependencies (npm ci)" >&2
  npm ci --no-audit --no-fund --loglevel=error >&2
  printf '%s\n' "$want" >node_modules/.lock.sha256
fi
[ "${1:-}" = --prepare ] && exit 0
exec node server.js
