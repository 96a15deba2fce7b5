#!/usr/bin/env bash
# `hft compare` over N experiments (default 10000): a catalog of N real-shaped rows (copied
# from one real build, each with its own name, file and learning rate) and N experiment
# files, then the median wall time of `hft compare --sort ... --filter ...` over R runs.
#   scripts/compare_bench.sh target/release/hft [N] [R]
set -euo pipefail
hft=$(realpath "${1:-target/release/hft}")
n=${2:-10000}
runs=${3:-10}
work=$(mktemp -d)
trap '[ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT; echo "work: $work"
cd "$(dirname "$0")/.."
"$hft" build experiments/quick_test.yaml --quiet --cache-dir "$work/seed" >/dev/null
cd "$work"
python3 - "$n" <<'PY'
import json, os, sys
n = int(sys.argv[1])
row = json.loads(open("seed/catalog.jsonl").read().splitlines()[-1])
os.makedirs("exps", exist_ok=True)
os.makedirs("cache", exist_ok=True)
with open("cache/catalog.jsonl", "w") as out:
    for i in range(n):
        name = f"exp{i:05d}"
        path = f"exps/{name}.yaml"
        open(path, "w").write(f"name: {name}\n")
        r = dict(row, id=name, name=name, file=path)
        r["config"] = dict(row["config"], **{"optimizer.lr": str(1e-4 * (1 + i % 97)), "name": json.dumps(name)})
        r["metrics"] = dict(row["metrics"], **{"backtest.strategy.sharpe": (i * 7919 % 1000) / 500 - 1})
        out.write(json.dumps(r) + "\n")
print(f"catalog: {os.path.getsize('cache/catalog.jsonl') / 2**20:.1f} MiB, {n} rows")
PY
times=()
for _ in $(seq "$runs"); do
    start=$(date +%s%N)
    "$hft" compare exps --cache-dir cache --sort backtest.strategy.sharpe --reverse \
        --filter 'optimizer.lr>0.002' --csv >/dev/null
    times+=($(( ($(date +%s%N) - start) / 1000000 )))
done
sorted=$(printf '%s\n' "${times[@]}" | sort -n)
echo "compare over $n experiments: median $(echo "$sorted" | sed -n "$(( (runs + 1) / 2 ))p") ms, min $(echo "$sorted" | head -1) ms ($runs runs)"
/usr/bin/time -f "peak RSS %M KiB" "$hft" compare exps --cache-dir cache --csv >/dev/null
