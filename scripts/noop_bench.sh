#!/usr/bin/env bash
# Wall time of a no-op `hft build`, measured as a whole process (start-up, parsing, planning,
# cache look-ups, exit), for the report issue 2 asks for.
#
#   scripts/noop_bench.sh [HFT_BINARY] [N] [K]
#
#   HFT_BINARY  the hft binary (default target/release/hft)
#   N           generated experiment files (default 100)
#   K           timed no-op builds per project (default 10)
#
# Environment: HFT_BENCH_JOBS=J passes `-j J` to every build (default: hft's own default,
# the number of CPUs); HFT_BENCH_KEEP=1 keeps the scratch folder and prints its path.
#
# Two projects, each in a scratch folder with its own cache/: N generated experiments on
# the synthetic source (distinct synthetic seeds, so every experiment has its own stages and
# cache entries), and a copy of the bundled experiments/. Each gets one full build (timed
# once, for information), then K no-op `hft build -q` runs, each checked to have executed
# no stage. Prints min and median wall time in ms, and peak RSS when /usr/bin/time exists.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
hft=${1:-$repo/target/release/hft}
n=${2:-100}
k=${3:-10}

die() {
    echo "noop_bench: $*" >&2
    exit 1
}

[[ $n =~ ^[1-9][0-9]*$ ]] || die "N must be a positive integer (got '$n')"
[[ $k =~ ^[1-9][0-9]*$ ]] || die "K must be a positive integer (got '$k')"
[[ -x $hft ]] || die "no executable hft binary at $hft (build it: cargo build --release)"
hft=$(cd "$(dirname "$hft")" && pwd)/$(basename "$hft")
[[ -d $repo/experiments ]] || die "no bundled experiments/ folder under $repo"

# The scratch projects must use their own cache/, whatever the caller's environment says.
unset HFT_CACHE_DIR

jobs_args=()
if [[ -n ${HFT_BENCH_JOBS:-} ]]; then
    jobs_args=(-j "$HFT_BENCH_JOBS")
fi

scratch=$(mktemp -d "${TMPDIR:-/tmp}/hft-noop-bench.XXXXXX")
cleanup() {
    if [[ ${HFT_BENCH_KEEP:-0} == 1 ]]; then
        echo "scratch kept: $scratch"
    else
        rm -rf "$scratch"
    fi
}
trap cleanup EXIT

gnu_time=""
if [[ -x /usr/bin/time ]] && /usr/bin/time -f '%M' true >/dev/null 2>&1; then
    gnu_time=/usr/bin/time
fi

now_ns() { date +%s%N; }

# ms with one decimal from a nanosecond count.
ms() { awk -v ns="$1" 'BEGIN { printf "%.1f", ns / 1e6 }'; }

# Runs `hft build -q` in the current folder; fails loudly (with hft's output) unless it
# exits 0. Output goes to $scratch/last.out / last.err for the caller to inspect.
hft_build() {
    if ! "$hft" build -q ${jobs_args[@]+"${jobs_args[@]}"} >"$scratch/last.out" 2>"$scratch/last.err"; then
        echo "--- hft build failed in $PWD; stdout:" >&2
        cat "$scratch/last.out" >&2
        echo "--- stderr:" >&2
        cat "$scratch/last.err" >&2
        exit 1
    fi
}

# The last line of a build is "E experiments: R stages ran, C cached, F failed (T)".
check_noop() {
    local summary
    summary=$(tail -n 1 "$scratch/last.out")
    if [[ ! $summary =~ :\ 0\ stages\ ran,\ [0-9]+\ cached,\ 0\ failed ]]; then
        echo "--- expected a no-op build in $PWD, got: $summary" >&2
        cat "$scratch/last.out" >&2
        exit 1
    fi
}

# bench LABEL DIR: one full build, then K timed no-op builds in DIR.
bench() {
    local label=$1 dir=$2
    cd "$dir"
    local t0 t1
    t0=$(now_ns)
    hft_build
    t1=$(now_ns)
    local first_ns=$((t1 - t0)) first_summary
    first_summary=$(tail -n 1 "$scratch/last.out")

    local times=() i
    for ((i = 0; i < k; i++)); do
        t0=$(now_ns)
        hft_build
        t1=$(now_ns)
        check_noop
        times+=($((t1 - t0)))
    done
    local noop_summary
    noop_summary=$(tail -n 1 "$scratch/last.out")

    local sorted min median
    sorted=$(printf '%s\n' "${times[@]}" | sort -n)
    min=$(head -n 1 <<<"$sorted")
    median=$(awk '{ v[NR] = $1 } END {
        if (NR % 2) printf "%d", v[(NR + 1) / 2];
        else printf "%d", (v[NR / 2] + v[NR / 2 + 1]) / 2 }' <<<"$sorted")

    local rss="n/a (/usr/bin/time not installed)"
    if [[ -n $gnu_time ]]; then
        # Peak RSS of three more no-op builds (GNU time's %M, in KiB); the largest is shown.
        local max_kib=0 kib
        for ((i = 0; i < 3; i++)); do
            kib=$("$gnu_time" -f '%M' -o "$scratch/rss" "$hft" build -q ${jobs_args[@]+"${jobs_args[@]}"} \
                >"$scratch/last.out" 2>"$scratch/last.err" && cat "$scratch/rss") ||
                die "hft build under /usr/bin/time failed: $(cat "$scratch/last.err")"
            check_noop
            if ((kib > max_kib)); then max_kib=$kib; fi
        done
        rss="$(awk -v k="$max_kib" 'BEGIN { printf "%.1f", k / 1024 }') MiB"
    fi

    printf '%s\n' "$label"
    printf '  first build:  %s ms   (%s)\n' "$(ms "$first_ns")" "$first_summary"
    printf '  no-op build:  min %s ms   median %s ms   over %d runs   (%s)\n' \
        "$(ms "$min")" "$(ms "$median")" "$k" "$noop_summary"
    printf '  peak RSS:     %s\n' "$rss"
    cd - >/dev/null
}

# --- project 1: N generated experiments ----------------------------------------------
gen=$scratch/generated
mkdir -p "$gen/experiments"
for ((i = 0; i < n; i++)); do
    cat >"$gen/experiments/gen_$(printf '%04d' "$i").yaml" <<EOF
# Generated by scripts/noop_bench.sh: a distinct synthetic series per file.
description: no-op benchmark experiment $i
seed: 42
data:
  source: synthetic
  symbols: [SYNA]
  synthetic: {bars: 300, seed: $i}
  sequence_length: $((10 + i % 5))
  prediction_horizon: 2
model: {type: mlp, hidden_size: 4, num_layers: 1, dropout: 0.0}
training: {max_steps: 2, batch_size: 8, warmup_steps: 1}
EOF
done

# --- project 2: the bundled examples -----------------------------------------------------
bundled=$scratch/bundled
mkdir -p "$bundled"
cp -R "$repo/experiments" "$bundled/experiments"
[ -d "$repo/templates" ] && cp -R "$repo/templates" "$bundled/templates"
n_bundled=$(find "$bundled/experiments" -type f \( -name '*.yaml' -o -name '*.yml' \) | wc -l)

echo "hft:     $hft ($("$hft" --version 2>/dev/null || echo '?'), built $(date -r "$hft" '+%F %T'))"
echo "machine: $(nproc) CPUs; jobs: ${HFT_BENCH_JOBS:-hft default}; K=$k timed no-op runs each"
echo
bench "$n generated experiments (synthetic, 300 bars each)" "$gen"
bench "bundled experiments/ ($n_bundled files)" "$bundled"
