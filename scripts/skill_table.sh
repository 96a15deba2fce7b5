#!/usr/bin/env bash
# The skill table of BENCHMARKS.md: every model preset (mlp, lstm, gru, transformer, dit)
# on planted AR(1) returns and on each real daily file, against persistence and the oracle.
#
#   scripts/skill_table.sh [DATA_DIR] [HFT]
#
# DATA_DIR holds AAPL, GOOGL, MSFT, NVDA and ORCL daily files (default ../shared/data/daily,
# given to the experiments as data.path from the command line); HFT is the binary (default
# target/release/hft). Builds benches/skill/planted/ and benches/skill/daily/ into
# $HFT_CACHE_DIR (default cache/), then prints the markdown table (scripts/skill_table.py).
# About an hour of CPU on one core at the presets' sizes; a second run is all cache hits.
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-../shared/data/daily}
hft=${2:-target/release/hft}
cache=${HFT_CACHE_DIR:-cache}
"$hft" build benches/skill/planted/ --cache-dir "$cache" >&2
"$hft" build benches/skill/daily/ --set "data.path=$data" --cache-dir "$cache" >&2
python3 scripts/skill_table.py "$hft" "$cache" "$data"
