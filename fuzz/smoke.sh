#!/usr/bin/env bash
# Runs every fuzz target for N seconds (default 30) and fails if any finds a crash.
# Usage: fuzz/smoke.sh [seconds]
set -euo pipefail

secs="${1:-30}"
cd "$(dirname "$0")/.."
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked || cargo install cargo-fuzz
fi

failed=()
for target in $(cargo fuzz list); do
    echo "=== $target (${secs}s)"
    if ! cargo fuzz run "$target" -- -max_total_time="$secs"; then
        failed+=("$target")
    fi
done

if ((${#failed[@]})); then
    echo "crashes in: ${failed[*]} (see fuzz/artifacts/)" >&2
    exit 1
fi
echo "all targets ran ${secs}s without crashes"
