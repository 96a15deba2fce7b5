#!/usr/bin/env bash
# Issue 23's hyperparameter-search benchmark (BENCHMARKS.md, "Hyperparameter search"): hft's
# `search:` (random, tpe, asha) against Optuna (TPE + successive halving, TPE, random) on a
# planted AR(1) series and on AAPL's daily bars, an lstm searched over lr log-uniform
# [1e-4, 1e-2], hidden in {32, 64, 128}, dropout uniform [0, 0.3], objective the best
# validation loss, up to 27 epochs a trial. Then the restart checks: a rebuild executes
# nothing, and a search given more trials trains only the new ones.
#
#   scripts/search_bench.sh [DATA_DIR] [HFT]
#
# DATA_DIR holds AAPL.csv (default ../shared/data/daily; given to the experiments as
# data.path on the command line); HFT is the binary (default target/release/hft).
# Environment:
#   PEER_PY        python with torch, optuna and numpy (default /tmp/peers-venv/bin/python;
#                  `pip install torch optuna numpy`); PEERS the peers' folder (../shared/bench)
#   SKIP_PEERS=1   hft only; SKIP_HFT=1 the peers only (and no restart checks)
#   WORK           scratch: a copy of templates/ and benches/search/ (so the project's
#                  hft.lock stays as it is), the cache, logs (default: a new temporary folder;
#                  reuse one to re-print the table from the cache)
#   JOBS           hft's -j (default 2)
#
# Each tool's loss is its own (hft: its features and CE + 10 * MSE; the peer: 14 numpy
# features and CE + 0.5 * MSE), so compare each tool's searches with each other, not the
# numbers across tools. Epochs spent are the cost: hft builds trials in parallel (-j), the
# peer trains one after the other, so wall times are not comparable.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
data=$(realpath "${1:-../shared/data/daily}")
hft=$(realpath "${2:-target/release/hft}")
py=${PEER_PY:-/tmp/peers-venv/bin/python}
peers=$(realpath "${PEERS:-../shared/bench}")
jobs=${JOBS:-2}
work=${WORK:-$(mktemp -d -t search-bench.XXXXXX)}
mkdir -p "$work/project/benches" "$work/logs"
rm -rf "$work/project/templates" "$work/project/benches/search"
cp -r templates "$work/project/"
cp -r benches/search "$work/project/benches/"
cache=$work/cache
rows=$work/rows.tsv
: >"$rows"
say() { echo "== $*" >&2; }
now() { date +%s.%N; }

# hft: build one search file, then read its trials back.
hft_search() { # dataset method
    local file=benches/search/$1_$2.yaml set=()
    [[ $1 == daily ]] && set=(--set "data.path=$data")
    say "hft $2 on $1"
    local t0 t1
    t0=$(now)
    (cd "$work/project" && "$hft" build "$file" "${set[@]}" --cache-dir "$cache" -j "$jobs" --quiet) \
        >"$work/logs/hft-$1-$2.log" 2>&1
    t1=$(now)
    (cd "$work/project" && "$hft" search status "$file" "${set[@]}" --cache-dir "$cache" --json) \
        >"$work/logs/hft-$1-$2.json"
    python3 - "$work/logs/hft-$1-$2.json" "$1" "$2" "$t0" "$t1" >>"$rows" <<'EOF'
import json, sys
path, ds, method, t0, t1 = sys.argv[1:]
s = json.load(open(path))[0]
built = [t for t in s["trials"] if t["built"]]
full = 27
budget = lambda t: t["budget"] if t["budget"] is not None else full
# Without reuse every trial trains its budget; with reuse (a longer training continues the
# cached shorter one) a configuration costs its largest budget.
no_reuse = sum(budget(t) for t in built)
largest = {}
for t in built:
    key = json.dumps(t["values"], sort_keys=True)
    largest[key] = max(largest.get(key, 0), budget(t))
best = min((t["objective"] for t in built if t["objective"] is not None), default=float("nan"))
print(f"{ds}\thft\t{method}\t{len(built)}\t{len(largest)}\t{no_reuse}\t{sum(largest.values())}"
      f"\t{best:.4f}\t{float(t1) - float(t0):.0f}")
EOF
}

# The peer: optuna_search.py, one thread (two threads spin on a loaded machine).
peer_search() { # dataset csv label trials sampler pruner
    say "optuna $3 on $1"
    local log=$work/logs/optuna-$1-$3-$4.log
    # A finished log in a reused WORK is read again, not rerun.
    if ! grep -q '^best=' "$log" 2>/dev/null; then
        (cd "$peers" && "$py" optuna_search.py "$2" --model lstm --trials "$4" --epochs 27 \
            --sampler "$5" --pruner "$6" --seed 0 --threads 1) >"$log" 2>&1
    fi
    python3 - "$log" "$1" "$3" "$4" >>"$rows" <<'EOF'
import re, sys
path, ds, label, trials = sys.argv[1:]
last = [l for l in open(path) if l.startswith("best=")][-1]
best = float(re.search(r"best=([-0-9.e]+)", last).group(1))
epochs = int(re.search(r"epochs=(\d+)", last).group(1))
secs = float(re.search(r"total_s=([0-9.]+)", last).group(1))
print(f"{ds}\toptuna\t{label}\t{trials}\t{trials}\t{epochs}\t{epochs}\t{best:.4f}\t{secs:.0f}")
EOF
}

planted_csv=$work/planted_ar1.csv
for ds in planted daily; do
    if [[ ${SKIP_HFT:-0} != 1 ]]; then
        for m in random tpe asha; do
            hft_search "$ds" "$m"
        done
    fi
    if [[ ${SKIP_PEERS:-0} != 1 ]]; then
        csv=$data/AAPL.csv
        if [[ $ds == planted ]]; then
            [[ -s $planted_csv ]] || "$py" benches/search/planted_csv.py "$planted_csv"
            csv=$planted_csv
        fi
        peer_search "$ds" "$csv" random 12 random none
        peer_search "$ds" "$csv" tpe 12 tpe none
        peer_search "$ds" "$csv" tpe+sha 27 tpe sha
    fi
done

[[ ${SKIP_HFT:-0} == 1 ]] && { cat "$rows"; exit 0; }
say "restart checks"
cd "$work/project"
# Every search rebuilt: nothing executes.
rebuilt=$("$hft" build benches/search/planted_*.yaml --cache-dir "$cache" -j "$jobs" 2>&1 &&
    "$hft" build benches/search/daily_*.yaml --set "data.path=$data" --cache-dir "$cache" -j "$jobs" 2>&1)
ran_rebuild=$(grep -cE '^  [a-z_:A-Z]+ +ran\b' <<<"$rebuilt" || true)
# The random search given 4 more trials: its 12 trials are kept and only the new ones train.
sed -i 's/^  trials: 12$/  trials: 16/' benches/search/planted_random.yaml
more=$("$hft" build benches/search/planted_random.yaml --cache-dir "$cache" -j "$jobs" 2>&1)
trained_more=$(grep -cE '^  train +ran\b' <<<"$more" || true)
sed -i 's/^  trials: 16$/  trials: 12/' benches/search/planted_random.yaml
cd "$root"

echo
echo "| data | tool | method | trials | configurations | epochs (no reuse) | epochs (reuse) | best val loss | wall s |"
echo "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"
awk -F'\t' '{printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6, $7, $8, $9}' "$rows"
echo
echo "restart: rebuilding all six searches ran $ran_rebuild stage(s); planted random 12 -> 16 trials trained $trained_more"
echo "(logs and cache: $work)"
