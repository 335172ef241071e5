#!/usr/bin/env bash
# Builds every fuzz target in fuzz/ and runs each for SECONDS (default 60), starting from
# the committed seeds in fuzz/corpus/<target>. Prints the executions per target and
# exits non-zero if any target crashed (the input is kept in fuzz/artifacts/<target>/).
#
#   scripts/fuzz.sh [SECONDS]
#
# cargo-fuzz drives libFuzzer with nightly-only rustc flags (-Zsanitizer=address, ...);
# RUSTC_BOOTSTRAP=1 lets the stable toolchain accept them. Inputs the fuzzer finds go to
# fuzz/target/corpus/<target> (ignored by git), so repeated runs build on each other.
set -euo pipefail
cd "$(dirname "$0")/.."

secs="${1:-60}"
if ! [[ "$secs" =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: scripts/fuzz.sh [SECONDS]" >&2
    exit 2
fi

CARGO_FUZZ_VERSION=0.13.2
if [[ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]]; then
    echo "installing cargo-fuzz $CARGO_FUZZ_VERSION"
    cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi

export RUSTC_BOOTSTRAP=1
start=$SECONDS
cargo fuzz build
echo "fuzz targets built in $((SECONDS - start))s"

logs=fuzz/target/logs
mkdir -p "$logs"
failed=()
summary=()
for target in $(cargo fuzz list); do
    work="fuzz/target/corpus/$target"
    mkdir -p "$work"
    args=(-max_total_time="$secs" -timeout=10 -print_final_stats=1)
    if [[ -f "fuzz/dicts/$target.dict" ]]; then
        args+=(-dict="fuzz/dicts/$target.dict")
    fi
    echo "== $target: ${secs}s"
    status=0
    cargo fuzz run "$target" "$work" "fuzz/corpus/$target" -- "${args[@]}" \
        >"$logs/$target.log" 2>&1 || status=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$logs/$target.log" | tail -n1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$logs/$target.log" | tail -n1)
    line=$(printf '%-12s %12s executions %8s/s' "$target" "${execs:-?}" "${rate:-?}")
    if [[ $status -eq 0 ]]; then
        summary+=("$line  ok")
    else
        failed+=("$target")
        summary+=("$line  CRASH (exit $status)")
        echo "-- $target failed; the end of $logs/$target.log:" >&2
        tail -n 40 "$logs/$target.log" >&2
    fi
done

echo
echo "fuzzing summary (${secs}s per target, logs in $logs):"
printf '  %s\n' "${summary[@]}"
echo "total time $((SECONDS - start))s"
if ((${#failed[@]} > 0)); then
    echo "crashed: ${failed[*]} (inputs in fuzz/artifacts/<target>/)" >&2
    exit 1
fi
