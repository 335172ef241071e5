#!/usr/bin/env bash
# Runs every test of the project on a fresh machine with Rust, Node and Python:
#   1. the gateway's unit and integration tests (cargo test; installs redis-server for
#      the rate-limit tests);
#   2. the demo stack: the task service's own tests, then the end-to-end suite in which
#      a real Better Auth app issues the tokens, Portcullis verifies them and the task
#      service trusts X-User-Id (scripts/test-demo.sh installs what it needs);
#   3. the task app in a real Chromium (tests/browser/run.sh installs Debian's chromium
#      and playwright-core, which drives it and downloads no browser);
#   4. the backend matrix: Django, Express, Go and PHP behind the gateway
#      (scripts/test-backends.sh installs what it needs).
set -euo pipefail
cd "$(dirname "$0")/.."

# The rate-limit tests start a real redis-server (Debian's package).
if ! command -v redis-server >/dev/null 2>&1; then
  # shellcheck source=scripts/apt.sh
  . scripts/apt.sh
  apt_install redis-server || { echo "redis-server is missing (on Debian: apt-get install redis-server)" >&2; exit 1; }
fi

cargo build --locked --bins
cargo test --locked

# The end-to-end suite drives the binary cargo just built.
export PORTCULLIS_BIN="${PORTCULLIS_BIN:-$PWD/target/debug/portcullis}"
scripts/test-demo.sh
tests/browser/run.sh   # the task app in a real Chromium
scripts/test-backends.sh
