#!/usr/bin/env bash
# The same bits on every x86-64 level (ARCHITECTURE.md): runs hft under qemu's user-mode
# emulator as an x86-64-v1 CPU (`qemu64`: SSE2, no FMA) and a v3 one (`Haswell`: AVX2 + FMA),
# both at once, and requires what this (v4, AVX-512) machine computed, bit for bit:
#   1. tests/same_bits.rs (every op family the stages run, forward and backward);
#   2. tests/cpu_levels/ built with --locked from an empty cache (seven tiny experiments:
#      every model, optimizer family, feature, bf16, EMA, walk-forward);
#   3. the bundled examples (experiments/) with --locked from an empty cache, quick_test
#      first, within HFT_CI_CPU_LEVELS_BUDGET seconds (default 600) for the examples.
# A difference fails. Steps 1 and 2 always run to the end (about 40 s under qemu64, 70 s
# under Haswell); an example the budget leaves no time for is named in a warning. `--all`
# builds every example whatever the time. The examples are sized for this: with these debug
# binaries, both CPUs at once on two cores, qemu64 finished all four in 146 s and Haswell
# three of them in 187 s after 40 s of steps 1 and 2, transformer_synthetic needing about
# 200 s more (emulated FMA dominates: qemu runs each through softfloat, 100 to 250 times
# slower than native). The release binary: 2m17s and 5m18s for all four.
# The binaries are the debug build `cargo test` made (hft's own code unoptimised, its
# dependencies at opt-level 3): the same source as the release binary, and the check costs
# no release build.
set -uo pipefail
cd "$(dirname "$0")/../.."

budget="${HFT_CI_CPU_LEVELS_BUDGET:-600}"
all=false
[ "${1:-}" = "--all" ] && all=true
target="${CARGO_TARGET_DIR:-target}"

if ! command -v qemu-x86_64 >/dev/null; then
    echo "== installing qemu-user"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-user >/dev/null ||
        { echo "qemu-user could not be installed: the CPU-level check cannot run" >&2; exit 1; }
fi

cargo build --locked --quiet || exit 1
case $target in
    /*) hft="$target/debug/hft" ;;
    *) hft="$PWD/$target/debug/hft" ;;
esac
same_bits=$(cargo test --locked --test same_bits --no-run --message-format=json 2>/dev/null |
    grep '"name":"same_bits"' | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -1)
[ -x "$hft" ] && [ -x "$same_bits" ] || { echo "no hft or same_bits binary" >&2; exit 1; }

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
started=$(date +%s)

# Runs a binary as CPU $1 within $2 seconds (or `none`). qemu warns once per CPUID feature
# its TCG lacks (hle, rtm, ... for Haswell): not ours, filtered out.
emulate() {
    local cpu=$1 limit=$2
    shift 2
    local run=(qemu-x86_64 -cpu "$cpu" "$@")
    [ "$limit" = none ] || run=(timeout --kill-after=10 "$limit" "${run[@]}")
    HFT_NO_MEMO=1 NO_COLOR=1 "${run[@]}" 2>&1 | grep -v "TCG doesn't support"
    return "${PIPESTATUS[0]}"
}

# One CPU's checks; its log is printed when both are done. Exit 0 ok, 1 a difference.
level() {
    local cpu=$1 t0 status e left
    echo "== $cpu: tests/same_bits.rs"
    emulate "$cpu" none "$same_bits" --test-threads 1 || return 1
    echo "== $cpu: tests/cpu_levels --locked"
    t0=$(date +%s)
    (cd tests/cpu_levels &&
        emulate "$cpu" none "$hft" build experiments/ --locked --quiet \
            --cache-dir "$scratch/$cpu-levels") ||
        return 1
    echo "== $cpu: tests/cpu_levels: $(($(date +%s) - t0))s"
    for e in quick_test mlp_baseline lstm_synthetic transformer_synthetic; do
        left=$((started + budget - $(date +%s)))
        if ! $all && [ "$left" -le 0 ]; then
            echo "warning: $cpu: no budget left for experiments/$e.yaml (HFT_CI_CPU_LEVELS_BUDGET=${budget}s)" >&2
            continue
        fi
        echo "== $cpu: experiments/$e.yaml --locked"
        t0=$(date +%s)
        $all && left=none
        emulate "$cpu" "$left" "$hft" build "experiments/$e.yaml" --locked --quiet \
            --cache-dir "$scratch/$cpu"
        status=$?
        case $status in
            0) echo "== $cpu: experiments/$e.yaml: $(($(date +%s) - t0))s" ;;
            124 | 137)
                echo "warning: $cpu: the budget (${budget}s) ran out in experiments/$e.yaml" >&2
                ;;
            *) return 1 ;;
        esac
    done
}

level qemu64 >"$scratch/qemu64.log" 2>&1 &
v1=$!
level Haswell >"$scratch/Haswell.log" 2>&1 &
v3=$!
wait $v1
s1=$?
wait $v3
s3=$?
cat "$scratch/qemu64.log" "$scratch/Haswell.log"
echo "== CPU levels: $(($(date +%s) - started))s"
if [ $s1 -ne 0 ] || [ $s3 -ne 0 ]; then
    echo "results differ under an emulated CPU (qemu64: exit $s1, Haswell: exit $s3)" >&2
    exit 1
fi
