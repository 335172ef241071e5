#!/usr/bin/env bash
# The Portcullis benchmark (see bench/README.md). Installs what it needs, builds the
# gateway (release), then runs bench/harness.py.
#
#   bench/run.sh             full run (~20 min): bench/RESULTS.md, results.png, results.json
#   bench/run.sh --smoke     10 s of load, one scenario, Portcullis (debug build) only;
#                            exit 0 when the harness works, whatever the figures
#   bench/run.sh --rev REV   measure a committed revision, built apart from the working tree
#   bench/run.sh --rev REV --rerun-noisy   re-measure only the runs marked noisy or failed
#
# PORTCULLIS_BIN=path measures that binary instead of building. Every other option goes
# to bench/harness.py (--only SCENARIOS, --contenders NAMES, --duration S, --help).
set -euo pipefail
caller_dir=$PWD
cd "$(dirname "$0")/.."
root=$PWD
export PATH="$PATH:/usr/sbin:/sbin"

BENCH_COMMAND="bench/run.sh${*:+ $*}"
smoke=0
rev=
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --smoke) smoke=1; args+=("$1") ;;
        --rev) rev="$2"; shift ;;
        --rev=*) rev="${1#--rev=}" ;;
        -h | --help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { print substr($0, 3) }' "$0"; exit 0 ;;
        *) args+=("$1") ;;
    esac
    shift
done

say() { echo "[bench] $*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# System packages: wrk, nginx (the shared upstream and the nginx contender), curl,
# taskset, redis-server (the shared rate-limit scenario), Python's venv; Node for the full run's Node contender.
need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || need+=(nginx-light)
command -v curl >/dev/null || need+=(curl)
command -v taskset >/dev/null || need+=(util-linux)
command -v redis-server >/dev/null || need+=(redis-server)
python3 -c 'import ensurepip' 2>/dev/null || need+=(python3-venv)
if [ $smoke = 0 ] && ! command -v node >/dev/null; then need+=(nodejs npm); fi
if [ ${#need[@]} -gt 0 ]; then
    say "installing ${need[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

# Python packages, into bench/.venv (git-ignored), reinstalled when the pins change.
venv=bench/.venv
req=bench/requirements.txt
[ $smoke = 1 ] && req=bench/requirements-smoke.txt
stamp="$venv/.installed-$(cat "$req" bench/requirements-smoke.txt | sha256sum | cut -c1-16)"
if [ ! -e "$stamp" ]; then
    say "installing Python packages ($req) into $venv"
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$req"
    touch "$stamp"
fi

# The Node contender's packages, from the committed lockfile.
if [ $smoke = 0 ]; then
    lock_sum=$(sha256sum bench/node/package-lock.json | cut -c1-16)
    if [ ! -e "bench/node/node_modules/.installed-$lock_sum" ]; then
        say "installing the Node gateway's packages (npm ci)"
        (cd bench/node && npm ci --no-audit --no-fund --loglevel=error)
        touch "bench/node/node_modules/.installed-$lock_sum"
    fi
fi

# The gateway.
if [ -n "${PORTCULLIS_BIN:-}" ]; then
    bin=$(cd "$caller_dir" && realpath "$PORTCULLIS_BIN")
    desc="$PORTCULLIS_BIN"
elif [ -n "$rev" ]; then
    sha=$(git rev-parse --verify "$rev^{commit}")
    cache=bench/.cache/rev
    if [ "$(cat "$cache/built" 2>/dev/null)" != "$sha" ]; then
        say "building $rev ($sha) in $cache"
        rm -rf "$cache/src"
        mkdir -p "$cache/src"
        git archive "$sha" | tar -x -C "$cache/src"
        (cd "$cache/src" && CARGO_TARGET_DIR="$root/$cache/target" cargo build --release --locked)
        echo "$sha" >"$cache/built"
    fi
    bin=$cache/target/release/portcullis
    desc=$(git rev-parse --short "$sha")
elif [ $smoke = 1 ]; then
    # The smoke checks the harness, not speed: the debug build CI already has will do.
    say "building the working tree (cargo build)"
    cargo build --locked --bins
    bin=target/debug/portcullis
    desc="$(git rev-parse --short HEAD) (debug build)"
else
    say "building the working tree (cargo build --release)"
    cargo build --release --locked
    bin=target/release/portcullis
    desc=$(git rev-parse --short HEAD)
    [ -z "$(git status --porcelain -- src Cargo.toml Cargo.lock)" ] || desc="$desc+changes"
fi

export BENCH_COMMAND
ulimit -n 200000 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
exec "$venv/bin/python" bench/harness.py --portcullis "$bin" --portcullis-rev "$desc" ${args[@]+"${args[@]}"}
