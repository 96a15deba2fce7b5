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
#                  hft.lock stays as it is), the caches, logs (default: a new temporary
#                  folder; reuse one to re-print the tables without training again)
#   JOBS           hft's -j (default 2)
#
# Each tool's loss is its own (hft: its features and CE + 10 * MSE; the peer: 14 numpy
# features and CE + 0.5 * MSE), so compare each tool's searches with each other, not the
# numbers across tools. Epochs spent are the cost: hft builds trials in parallel (-j), the
# peer trains one after the other, so wall times are not comparable. Each hft search gets a
# cache of its own: with the same seed, random, tpe and asha draw the same first
# configurations, and in one cache asha's last rung can be a hit on random's training.
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
rows=$work/rows.tsv
noise=$work/noise.tsv
: >"$rows"
: >"$noise"
say() { echo "== $*" >&2; }
now() { date +%s.%N; }

# hft: build one search file, then read its trials back.
hft_search() { # dataset method
    local file=benches/search/$1_$2.yaml set=() cache=$work/cache/$1-$2
    [[ $1 == daily ]] && set=(--set "data.path=$data")
    say "hft $2 on $1"
    local t0 t1 times=$work/logs/hft-$1-$2.times
    # A finished build in a reused WORK keeps its first timing (the rebuild is all hits).
    if [[ ! -s $times ]]; then
        t0=$(now)
        (cd "$work/project" && "$hft" build "$file" "${set[@]}" --cache-dir "$cache" -j "$jobs") \
            >"$work/logs/hft-$1-$2.log" 2>&1
        t1=$(now)
        echo "$t0 $t1" >"$times"
    fi
    read -r t0 t1 <"$times"
    (cd "$work/project" && "$hft" search status "$file" "${set[@]}" --cache-dir "$cache" --json) \
        >"$work/logs/hft-$1-$2.json"
    python3 - "$work/logs/hft-$1-$2.json" "$1" "$2" "$t0" "$t1" >>"$rows" <<'EOF'
import json, sys
path, ds, method, t0, t1 = sys.argv[1:]
s = json.load(open(path))[0]
built = [t for t in s["trials"] if t["built"]]
configurations = {json.dumps(t["values"], sort_keys=True) for t in built}
best = min((t["objective"] for t in built if t["objective"] is not None), default=float("nan"))
# Epochs trained (a promoted ASHA trial continues its configuration's shorter training) and
# what every trial would have trained from scratch.
print(f"{ds}\thft\t{method}\t{len(built)}\t{len(configurations)}\t{s['epochs_without_reuse']}"
      f"\t{s['epochs_trained']}\t{best:.4f}\t{float(t1) - float(t0):.0f}")
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

# Seed noise: one configuration near the best, three training seeds, 27 epochs (hft:
# benches/search/*_noise.yaml; the peer: torch_sweep.py, which trains without dropout).
hft_noise() { # dataset
    local file=benches/search/$1_noise.yaml set=() cache=$work/cache/$1-noise
    [[ $1 == daily ]] && set=(--set "data.path=$data")
    say "hft seed noise on $1"
    # `compare` reads the catalog, which names the experiments as built (no --set).
    (cd "$work/project" && "$hft" build "$file" "${set[@]}" --cache-dir "$cache" -j "$jobs") \
        >"$work/logs/hft-$1-noise.log" 2>&1
    (cd "$work/project" && "$hft" compare "$file" --cache-dir "$cache" \
        --metric train.best_val_loss --csv) >"$work/logs/hft-$1-noise.csv"
    python3 - "$work/logs/hft-$1-noise.csv" "$1" hft >>"$noise" <<'EOF'
import csv, statistics, sys
path, ds, tool = sys.argv[1:]
rows = [r for r in csv.DictReader(open(path)) if r["experiment"].startswith(f"search_{ds}_noise")]
xs = [float(r["train.best_val_loss"]) for r in rows]
print(f"{ds}\t{tool}\t{' '.join(f'{x:.4f}' for x in xs)}\t{statistics.stdev(xs):.4f}\t{max(xs) - min(xs):.4f}")
EOF
}
peer_noise() { # dataset csv
    say "torch seed noise on $1"
    local log=$work/logs/torch-$1-noise.log
    if ! grep -q '^total_s=' "$log" 2>/dev/null; then
        (cd "$peers" && "$py" torch_sweep.py "$2" --models lstm --lrs 2e-3 --seeds 1,2,3 \
            --epochs 27 --hidden 128 --threads 1) >"$log" 2>&1
    fi
    python3 - "$log" "$1" optuna >>"$noise" <<'EOF'
import re, statistics, sys
path, ds, tool = sys.argv[1:]
xs = [float(m.group(1)) for l in open(path) if (m := re.search(r" val=([0-9.]+)", l))]
print(f"{ds}\t{tool}\t{' '.join(f'{x:.4f}' for x in xs)}\t{statistics.stdev(xs):.4f}\t{max(xs) - min(xs):.4f}")
EOF
}

planted_csv=$work/planted_ar1.csv
for ds in planted daily; do
    if [[ ${SKIP_HFT:-0} != 1 ]]; then
        for m in random tpe asha; do
            hft_search "$ds" "$m"
        done
        hft_noise "$ds"
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
        peer_noise "$ds" "$csv"
    fi
done

[[ ${SKIP_HFT:-0} == 1 ]] && { cat "$rows" "$noise"; exit 0; }
say "restart checks"
cd "$work/project"
stages_ran() { grep -cE "^  ${1:-[a-z_:A-Z]+} +ran\b" || true; }
# Every search rebuilt: nothing executes.
ran_rebuild=0
for ds in planted daily; do
    set=()
    [[ $ds == daily ]] && set=(--set "data.path=$data")
    for m in random tpe asha; do
        n=$("$hft" build "benches/search/${ds}_$m.yaml" "${set[@]}" --cache-dir "$work/cache/$ds-$m" \
            -j "$jobs" 2>&1 | stages_ran)
        ran_rebuild=$((ran_rebuild + n))
    done
done
# The random search given 4 more trials: its 12 trials are kept and only the new ones train.
sed -i 's/^  trials: 12$/  trials: 16/' benches/search/planted_random.yaml
trained_more=$("$hft" build benches/search/planted_random.yaml --cache-dir "$work/cache/planted-random" \
    -j "$jobs" 2>&1 | stages_ran train)
sed -i 's/^  trials: 16$/  trials: 12/' benches/search/planted_random.yaml
# The planted ASHA search killed mid-way in a fresh cache, then built again: the restart
# trains only the trials not built before the kill (a trial killed in training starts over).
kill_cache=$work/cache/killed-asha
rm -rf "$kill_cache"
"$hft" build benches/search/planted_asha.yaml --cache-dir "$kill_cache" -j "$jobs" >/dev/null 2>&1 &
pid=$!
sleep "${KILL_AFTER:-25}"
kill -TERM "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
built_before=$("$hft" search status benches/search/planted_asha.yaml --cache-dir "$kill_cache" --json |
    python3 -c 'import json, sys; print(sum(t["built"] for t in json.load(sys.stdin)[0]["trials"]))')
trained_after=$("$hft" build benches/search/planted_asha.yaml --cache-dir "$kill_cache" -j "$jobs" 2>&1 |
    stages_ran train)
asha_trials=$(python3 -c 'import json, sys; print(len(json.load(open(sys.argv[1]))[0]["trials"]))' \
    "$work/logs/hft-planted-asha.json")
cd "$root"

echo
echo "| data | tool | method | trials | configurations | epochs from scratch | epochs trained | best val loss | wall s |"
echo "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"
awk -F'\t' '{printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6, $7, $8, $9}' "$rows"
echo
echo "| data | tool | seed noise: best val loss of seeds 1, 2, 3 | std | max - min |"
echo "| --- | --- | --- | ---: | ---: |"
awk -F'\t' '{printf "| %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5}' "$noise"
echo
echo "restart: rebuilding the six searches ran $ran_rebuild stage(s); planted random given 16"
echo "trials instead of 12 trained $trained_more; planted asha killed after ${KILL_AFTER:-25} s with"
echo "$built_before of its $asha_trials trials built, then rebuilt, trained $trained_after"
echo "(logs and cache: $work)"
