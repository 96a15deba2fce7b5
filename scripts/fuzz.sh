#!/usr/bin/env bash
# Runs every cargo-fuzz target of fuzz/ for a bounded time and reports what each did.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]      (default: 60 s; all targets)
#
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`) and the nightly toolchain; without
# nightly, the stable toolchain is used with RUSTC_BOOTSTRAP=1 (what cargo-fuzz needs of
# nightly are the -Z sanitizer flags, which stable has behind that switch).
# Each target starts from its committed corpus (fuzz/corpus/<target>/) and its crash
# reproducers (fuzz/regressions/<target>/); inputs the fuzzer finds go to a scratch folder,
# so the committed corpus only changes when you merge new inputs in on purpose
# (`cargo +nightly fuzz cmin <target>`). A crash, an out-of-memory (over -rss_limit_mb) or a
# timeout (one input over -timeout seconds) is copied to fuzz/regressions/<target>/, where
# tests/fuzz_corpus.rs replays it in plain `cargo test` from then on, and makes the script
# exit 1 after the remaining targets have run.
#
# Environment:
#   HFT_FUZZ_SANITIZER   address (default) or none: ASan finds memory errors in unsafe code
#                        (ours has none; dependencies have some) at ~2x the run time.
#   HFT_FUZZ_TARGET_DIR  where fuzz builds go (default ~/.cache/hft-fuzz-target): outside the
#                        repository, since instrumented builds of burn & co. are large.
#   HFT_FUZZ_RSS_MB      memory limit per target process (default 2048).
#   HFT_FUZZ_TIMEOUT     seconds one input may take before it counts as a hang (default 10;
#                        a small Parquet file can declare millions of RLE-encoded rows, which
#                        an instrumented debug-assertion build decodes slowly).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-60}"
shift || true
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -lt 1 ]; then
    echo "usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]" >&2
    exit 2
fi
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(config csv parquet lockfile)
fi
sanitizer="${HFT_FUZZ_SANITIZER:-address}"
rss_mb="${HFT_FUZZ_RSS_MB:-2048}"
input_timeout="${HFT_FUZZ_TIMEOUT:-10}"
export CARGO_TARGET_DIR="${HFT_FUZZ_TARGET_DIR:-$HOME/.cache/hft-fuzz-target}"

if ! command -v cargo-fuzz >/dev/null; then
    echo "cargo-fuzz is not installed: cargo install cargo-fuzz --locked" >&2
    exit 2
fi

if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    toolchain=+nightly
else
    toolchain=+stable
    export RUSTC_BOOTSTRAP=1
fi

# Debug assertions on: integer overflow is a crash here, as it is in `cargo test`.
fuzz_flags=(--sanitizer "$sanitizer" --debug-assertions)

build_started=$(date +%s)
# Always every target, the same way: a build of one target differs enough from a build of
# all of them to recompile half the dependency tree when alternating.
if ! cargo "$toolchain" fuzz build "${fuzz_flags[@]}" >"${TMPDIR:-/tmp}/hft-fuzz-build.log" 2>&1; then
    tail -n 40 "${TMPDIR:-/tmp}/hft-fuzz-build.log" >&2
    echo "fuzz build failed" >&2
    exit 2
fi
build_seconds=$(($(date +%s) - build_started))
bin_dir="$CARGO_TARGET_DIR/$(rustc "$toolchain" -vV | sed -n 's/^host: //p')/release"

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
failed=()
summary=()
for t in "${targets[@]}"; do
    mkdir -p "$scratch/$t/corpus" "$scratch/$t/artifacts"
    dirs=("$scratch/$t/corpus" "fuzz/corpus/$t")
    if [ -d "fuzz/regressions/$t" ]; then
        dirs+=("fuzz/regressions/$t")
    fi
    log="$scratch/$t.log"
    started=$(date +%s)
    echo "== fuzz $t: ${seconds}s (sanitizer: $sanitizer)"
    status=0
    # Hard stop well after -max_total_time: loading the corpus and the final report take
    # seconds, a hung input is reported by -timeout long before this.
    # The built binary itself (what `cargo fuzz run` would start), so nothing is rebuilt here.
    ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_odr_violation=0" \
        timeout --kill-after=10 $((seconds + 120)) \
        "$bin_dir/$t" "${dirs[@]}" \
        -max_total_time="$seconds" -timeout="$input_timeout" -rss_limit_mb="$rss_mb" \
        -artifact_prefix="$scratch/$t/artifacts/" -print_final_stats=1 \
        >"$log" 2>&1 || status=$?
    elapsed=$(($(date +%s) - started))
    stat() { sed -n "s/^stat::$1: *//p" "$log" | tail -n 1; }
    execs=$(stat number_of_executed_units)
    rate=$(stat average_exec_per_sec)
    new=$(stat new_units_added)
    rss=$(stat peak_rss_mb)
    found=("$scratch/$t/artifacts/"*)
    if [ -e "${found[0]}" ]; then
        mkdir -p "fuzz/regressions/$t"
        for f in "${found[@]}"; do
            cp "$f" "fuzz/regressions/$t/"
            echo "   reproducer: fuzz/regressions/$t/$(basename "$f")"
        done
    fi
    if [ "$status" -ne 0 ] || [ -e "${found[0]}" ]; then
        result="FAILED (exit $status)"
        failed+=("$t")
        grep -E -A 25 "panicked at|ERROR: libFuzzer|==ERROR|SUMMARY" "$log" | head -n 60 || tail -n 40 "$log"
    else
        result="ok"
    fi
    line=$(printf '%-9s %12s %9s %6s %7s %8s  %s' "$t" "${execs:-?}" "${rate:-?}" \
        "${new:-?}" "${rss:-?}" "${elapsed}s" "$result")
    echo "$line"
    summary+=("$line")
done

echo
echo "fuzzing: ${seconds}s per target, sanitizer $sanitizer, build ${build_seconds}s"
printf '%-9s %12s %9s %6s %7s %8s  %s\n' target executions "exec/s" "new" "rss MB" time result
for line in "${summary[@]}"; do
    echo "$line"
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "crashes in: ${failed[*]} (reproducers under fuzz/regressions/; commit them with the fix)" >&2
    exit 1
fi
