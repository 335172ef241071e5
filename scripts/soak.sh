#!/usr/bin/env bash
# The soak test: SECONDS (default 1800) of mixed load against the release binary, with
# key rotations and JWKS outages. Fails on any wrong answer (a 200 for the wrong user or
# for a token that must be refused, a refusal of a token that must pass), on RSS or file
# descriptors that grow, on requests left in flight. Writes soak/out/soak.csv,
# soak/out/soak.png, soak/out/summary.md and soak/out/summary.json. See soak/README.md.
#
#   scripts/soak.sh          # 30 minutes
#   scripts/soak.sh 60       # the CI version
#   scripts/soak.sh 60 --seed 42 --rate 800    # extra flags go to the driver
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-1800}"
case "$seconds" in
  '' | *[!0-9]*) echo "usage: scripts/soak.sh [SECONDS] [driver flags...]" >&2; exit 2 ;;
esac
shift $(( $# > 0 ? 1 : 0 ))

start=$SECONDS
cargo build --release --locked
cargo build --release --locked --manifest-path soak/Cargo.toml --target-dir soak/target
echo "soak: builds took $((SECONDS - start))s"

revision="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
if ! git diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null; then
  revision="$revision+uncommitted"
fi

status=0
SOAK_REVISION="$revision" soak/target/release/soak \
  --duration "$seconds" \
  --gateway "${CARGO_TARGET_DIR:-target}/release/portcullis" \
  --out soak/out \
  "$@" || status=$?
echo "soak: finished in $((SECONDS - start))s (exit $status)"
exit "$status"
