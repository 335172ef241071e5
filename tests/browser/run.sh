#!/usr/bin/env bash
# The browser suite: the demo task app in a real Chromium from Debian's `chromium`
# package, driven by playwright-core (which downloads no browser), against the Next.js
# production build, the task service and the Portcullis binary on free loopback ports.
#
# Installs what it needs: chromium (apt-get, when /usr/bin/chromium is missing), the
# demo stack (scripts/demo-setup.sh) and playwright-core (npm ci in this folder).
# On failure, screenshots, console logs and the stack's logs are saved under
# tests/browser/artifacts/ (the path is printed). Exits non-zero if a test fails.
#
# Usage: tests/browser/run.sh
# Environment: PORTCULLIS_BIN   gateway binary (default target/debug/portcullis)
#              CHROMIUM_BIN     browser binary (default /usr/bin/chromium)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$HERE/../.." && pwd)"
export PORTCULLIS_BIN="${PORTCULLIS_BIN:-$REPO_ROOT/target/debug/portcullis}"
export CHROMIUM_BIN="${CHROMIUM_BIN:-/usr/bin/chromium}"

say() { printf '[test-browser] %s\n' "$*" >&2; }

if [ ! -x "$CHROMIUM_BIN" ]; then
  # shellcheck source=scripts/apt.sh
  . "$REPO_ROOT/scripts/apt.sh"
  apt_install chromium || { say "no $CHROMIUM_BIN, and Debian's chromium could not be installed"; exit 1; }
fi

"$REPO_ROOT/scripts/demo-setup.sh" --tests

stamp="$HERE/node_modules/.browser-lock.sha256"
want="$(cat "$HERE/package-lock.json" | sha256sum | cut -d' ' -f1)"
if ! { [ -f "$stamp" ] && grep -qx "$want" "$stamp"; }; then
  say "installing playwright-core (npm ci)"
  (cd "$HERE" && npm ci --no-audit --no-fund --loglevel=error)
  printf '%s\n' "$want" >"$stamp"
fi

rm -rf "$HERE/artifacts/"*/
say "running the browser suite ($("$CHROMIUM_BIN" --version 2>/dev/null || echo chromium))"
cd "$HERE"
# One file, one stack, tests in order; the spec reporter ends with the totals.
node --test --test-concurrency=1 --test-reporter=spec tasks.test.mjs
