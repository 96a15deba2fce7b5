#!/usr/bin/env bash
# CI's bounded fuzzing: every cargo-fuzz target of fuzz/ for HFT_CI_FUZZ_SECONDS each
# (default 30), the instrumented build included, within HFT_CI_FUZZ_BUDGET seconds in all
# (default 900). A crash fails CI (its reproducer is left under fuzz/regressions/); running
# out of budget (a cold instrumented build of burn is the slow part) or a machine without
# cargo-fuzz only warns: the corpora and reproducers are replayed by `cargo test` anyway.
set -uo pipefail
cd "$(dirname "$0")/../.."

seconds="${HFT_CI_FUZZ_SECONDS:-30}"
budget="${HFT_CI_FUZZ_BUDGET:-900}"
tools="${HFT_CI_TOOLS:-$HOME/.cache/hft-ci-tools}"
export PATH="$tools/bin:$PATH"
export HFT_FUZZ_SANITIZER="${HFT_FUZZ_SANITIZER:-none}"
# A hang is an input over a minute: a 4.7 KB Parquet file declaring millions of RLE rows
# takes 1.2 s in release and over 10 s in the instrumented build, which is not a hang.
export HFT_FUZZ_TIMEOUT="${HFT_FUZZ_TIMEOUT:-60}"

started=$(date +%s)
if ! command -v cargo-fuzz >/dev/null; then
    echo "== installing cargo-fuzz into $tools"
    if ! cargo install cargo-fuzz --locked --root "$tools" >/tmp/hft-cargo-fuzz-install.log 2>&1; then
        tail -n 20 /tmp/hft-cargo-fuzz-install.log
        echo "warning: cargo-fuzz could not be installed; fuzzing skipped" >&2
        exit 0
    fi
fi
left=$((budget - ($(date +%s) - started)))
echo "== fuzzing: ${seconds}s per target, ${left}s of budget left"
timeout --kill-after=30 "$left" scripts/fuzz.sh "$seconds"
status=$?
case $status in
    0) ;;
    1) echo "fuzzing found a crash: see above" >&2; exit 1 ;;
    124|137) echo "warning: the fuzzing budget (${budget}s) ran out before every target ran" >&2 ;;
    *) echo "warning: the fuzz build failed (exit $status); fuzzing skipped" >&2 ;;
esac
exit 0
