#!/usr/bin/env bash
# hft against the tools of shared/reference/benchmarks.md, on this machine, in this session:
# each peer workload and the matching hft workload (benches/suite.rs) run back to back, and
# every figure is reported as a ratio hft / peer, since shared machines are too noisy for
# absolute figures to mean much across sessions.
#
#   scripts/bench_peers.sh [GROUP...]     # groups: train features hash noop (default: all)
#
# Prints progress on stderr and, on stdout, a markdown section (machine, versions, load,
# the table) to paste into BENCHMARKS.md.
#
# Environment:
#   PEERS_VENV        Python virtual environment of the peers (default /tmp/peers-venv),
#                     created with `pip install torch pandas numpy dvc blake3` when absent.
#                     PyPI's Linux torch wheel is the CUDA build (about 5.6 GB installed with
#                     its nvidia-* dependencies); it trains on the CPU all the same.
#   PEERS_DIR         the peer scripts (default ../shared/bench beside the repository, else
#                     /work/shared/bench)
#   BENCH_WORK        scratch for peer data: the 2M-row CSV, the DVC repository, 1 GiB files
#                     (default /tmp/hft-peers)
#   HFT_BENCH_RUNS    runs per figure, for hft and the peers alike (default 3)
#   HFT_BENCH_NOOP_N  experiment counts of the no-op workloads (default 100,10000)
#   QUIET_MAX_WAIT    seconds to wait for an idle machine (quiet.sh: under QUIET_PCT % busy,
#                     default 10, and no cargo running) before each workload pair and each
#                     dvc_noop.sh block (default here 60; quiet.sh's own default is 900).
#                     Waits that time out are counted in the report: PyTorch's OpenMP threads
#                     collapse on a busy machine (2 threads under load ran 14x slower than 1
#                     here), so a table measured while busy says little.
#   TORCH_STEPS       timed steps of every torch_train.py run (default 200 for the ref rows,
#                     1000 for the tiny ones), for quick checks
#   B3SUM_DIR         folder holding b3sum (default /tmp/b3sum-inst/bin, where this script
#                     installs it with `cargo install b3sum` when it is not on PATH)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${PEERS_VENV:-/tmp/peers-venv}
work=${BENCH_WORK:-/tmp/hft-peers}
runs=${HFT_BENCH_RUNS:-3}
b3dir=${B3SUM_DIR:-/tmp/b3sum-inst/bin}
export HFT_BENCH_RUNS=$runs QUIET_MAX_WAIT=${QUIET_MAX_WAIT:-60}

die() {
    echo "bench_peers: $*" >&2
    exit 1
}
say() { echo "bench_peers: $*" >&2; }

peers=${PEERS_DIR:-}
if [[ -z $peers ]]; then
    for candidate in "$repo/../shared/bench" /work/shared/bench; do
        if [[ -f $candidate/torch_train.py ]]; then
            peers=$(cd "$candidate" && pwd)
            break
        fi
    done
fi
[[ -n $peers && -f $peers/torch_train.py ]] ||
    die "no peer scripts (torch_train.py, pandas_features.py, dvc_noop.sh); set PEERS_DIR"
[[ $runs =~ ^[1-9][0-9]*$ ]] || die "HFT_BENCH_RUNS must be a positive integer (got '$runs')"

groups=("$@")
if ((${#groups[@]} == 0)); then groups=(train features hash noop); fi
for g in "${groups[@]}"; do
    case $g in train | features | hash | noop) ;; *) die "unknown group '$g' (train features hash noop)" ;; esac
done
wants() {
    local g
    for g in "${groups[@]}"; do [[ $g == "$1" ]] && return 0; done
    return 1
}

# ---- tools -------------------------------------------------------------------------------
command -v python3 >/dev/null || die "python3 is needed (Debian: apt-get install python3 python3-venv)"
/usr/bin/time -f %M -o /dev/null true 2>/dev/null ||
    die "GNU time (/usr/bin/time) is needed for peak RSS: apt-get install time"
command -v cargo >/dev/null || die "cargo is needed to build hft"
command -v git >/dev/null || die "git is needed (dvc_noop.sh builds a git+dvc repository)"

if ! "$venv/bin/python" -c 'import torch, pandas, numpy, blake3, dvc' 2>/dev/null; then
    say "installing the peers into $venv (torch, pandas, numpy, dvc, blake3; ~5.6 GB, CUDA wheels)"
    [[ -x $venv/bin/python ]] || python3 -m venv "$venv" ||
        die "cannot create a virtual environment at $venv (Debian: apt-get install python3-venv)"
    "$venv/bin/pip" install -q --upgrade pip >&2
    "$venv/bin/pip" install -q torch pandas numpy dvc blake3 >&2 ||
        die "pip install torch pandas numpy dvc blake3 failed"
fi
py=$venv/bin/python

if command -v b3sum >/dev/null; then
    b3dir=$(dirname "$(command -v b3sum)")
elif [[ ! -x $b3dir/b3sum ]] && { wants hash || wants noop; }; then
    say "installing b3sum (cargo install b3sum) into $(dirname "$b3dir")"
    CARGO_TARGET_DIR=${TMPDIR:-/tmp}/b3sum-target cargo install -q b3sum --locked \
        --root "$(dirname "$b3dir")" >&2 || die "cargo install b3sum failed"
fi

# OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE, set on some of these machines for old OpenBLAS builds,
# slow a current numpy down: the peers run without them (tests are not affected).
peer_env=(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE)

# ---- hft ---------------------------------------------------------------------------------
say "building hft and the suite (cargo bench --no-run)"
suite=$(cd "$repo" && cargo bench --bench suite --no-run --message-format=json 2>/dev/null |
    python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "suite" and m.get("executable"):
        print(m["executable"])') || true
[[ -n $suite && -x $suite ]] || die "cargo bench --bench suite --no-run failed; run it to see why"
hft_bin=$repo/target/release/hft
[[ -x $hft_bin ]] || die "no $hft_bin after the build"
# The commit the binary was built from (taken now: the tree may move on during the run).
commit=$(git -C "$repo" rev-parse --short HEAD)
if [[ -n $(git -C "$repo" status --porcelain --untracked-files=no 2>/dev/null) ]]; then
    commit="$commit (with uncommitted changes)"
fi
# A private copy: other builds in this tree must not swap the binary between runs.
mkdir -p "$work"
cp "$hft_bin" "$work/hft"
export HFT_BENCH_BIN=$work/hft

hft_tsv=$work/hft.tsv
peers_tsv=$work/peers.tsv
: >"$hft_tsv"
: >"$peers_tsv"
hft_suite() { # hft_suite FILTER... : the suite's workloads, figures appended to $hft_tsv
    HFT_BENCH_TSV=$hft_tsv "$suite" --bench "$@" >&2
}

# A peer figure: id metric value rss_kib runs note.
record() { printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$peers_tsv"; }
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# peer_runs ID METRIC FIELD NOTE CMD... : runs CMD $runs times under GNU time, takes FIELD=X
# from its stdout, records the medians of X and of peak RSS.
peer_runs() {
    local id=$1 metric=$2 field=$3 note=$4 values=() rss=() r out v
    shift 4
    for ((r = 1; r <= runs; r++)); do
        out=$("${peer_env[@]}" /usr/bin/time -f %M -o "$work/rss" "$@" 2>"$work/err") ||
            { cat "$work/err" >&2; die "$id failed: $*"; }
        v=$(tr ' ' '\n' <<<"$out" | sed -n "s/^$field=//p" | tail -n 1)
        [[ -n $v ]] || die "$id: no $field= in the output of $*: $out"
        values+=("$v")
        rss+=("$(tail -n 1 "$work/rss")")
        say "  $id run $r/$runs: $field=$v peak RSS $(tail -n 1 "$work/rss") KiB"
    done
    record "$id" "$metric" "$(printf '%s\n' "${values[@]}" | median)" \
        "$(printf '%s\n' "${rss[@]}" | median)" "$runs" "$note"
}

# shellcheck source=/dev/null
. "$peers/quiet.sh" # wait_quiet, as dvc_noop.sh uses it
waits=0
not_quiet=0
settle() { # before a workload pair: wait for an idle machine, count the times it never came
    local how
    how=$(wait_quiet)
    say "  $how, load $(cut -d' ' -f1-3 /proc/loadavg)"
    waits=$((waits + 1))
    if [[ $how == NOT* ]]; then not_quiet=$((not_quiet + 1)); fi
}

load_before=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- training ----------------------------------------------------------------------------
if wants train; then
    # Same shapes as benches/ref/*.yaml; the tiny rows take 1000 steps so the timing spans
    # a few seconds, like hft's epochs.
    ref_steps=${TORCH_STEPS:-200}
    tiny_steps=${TORCH_STEPS:-1000}
    declare -A torch_args=(
        [lstm-ref]="--model lstm --hidden 128 --layers 2 --seq 60 --horizon 5 --batch 256 --steps $ref_steps"
        [transformer-ref]="--model transformer --hidden 128 --layers 2 --heads 4 --ff 512 --seq 60 --horizon 5 --batch 256 --steps $ref_steps"
        [lstm-tiny]="--model lstm --hidden 64 --layers 2 --seq 20 --horizon 3 --batch 4 --steps $tiny_steps --warmup 50"
        [transformer-tiny]="--model transformer --hidden 64 --layers 2 --heads 4 --seq 20 --horizon 3 --batch 4 --steps $tiny_steps --warmup 50"
    )
    for name in lstm-ref transformer-ref lstm-tiny transformer-tiny; do
        say "== $name: PyTorch, then hft"
        settle
        # shellcheck disable=SC2086 # the arguments are meant to split
        peer_runs "torch-$name" samples/s samples_per_s "torch_train.py ${torch_args[$name]}" \
            "$py" "$peers/torch_train.py" ${torch_args[$name]} --threads 2
        hft_suite "train/$name"
    done
fi

# ---- feature pipeline --------------------------------------------------------------------
if wants features; then
    say "== features: pandas, then hft, on the same 2M-row CSV"
    csv=$work/ohlcv-2M.csv
    if [[ ! -s $csv ]]; then
        "${peer_env[@]}" "$py" "$peers/pandas_features.py" gen "$csv" --rows 2000000
    fi
    settle
    cat "$csv" >/dev/null # both start with the CSV in the page cache
    peer_runs pandas-features rows/s rows_per_s "pandas_features.py run --materialize" \
        "$py" "$peers/pandas_features.py" run "$csv" --materialize
    HFT_BENCH_FEATURES_CSV=$csv hft_suite features
fi

# ---- no-op builds and hashing: dvc_noop.sh, then hft -------------------------------------
if wants hash || wants noop; then
    say "== DVC and hashing peers (dvc_noop.sh, REPS=$runs, QUIET_MAX_WAIT=$QUIET_MAX_WAIT)"
    VENV=$venv B="$work/dvc-bench" REPS=$runs B3SUM_DIR=$b3dir \
        "${peer_env[@]}" bash "$peers/dvc_noop.sh" >&2 || die "dvc_noop.sh failed"
    timings=$work/dvc-bench.timings.tsv
    # dvc_noop.sh's labels -> peer ids (wall seconds -> ms).
    while read -r label id note; do
        if grep -q "^$label	" "$timings"; then
            record "$id" ms \
                "$(awk -F'\t' -v l="$label" '$1 == l { print $2 * 1000 }' "$timings" | median)" \
                "$(awk -F'\t' -v l="$label" '$1 == l { print $3 }' "$timings" | median)" \
                "$(grep -c "^$label	" "$timings")" "${note//_/ }"
        fi
    done <<'EOF'
repro_noop dvc-repro-noop dvc_repro,_100_stages,_nothing_changed
status_clean dvc-status dvc_status,_100_stages
repro_one_chain_10_stages dvc-repro-one-chain dvc_repro_after_a_param_change,_10_stages
b3sum_1GiB b3sum b3sum_1_GiB,_page_cache_warm
b3sum_1thread_1GiB b3sum-1t b3sum_--num-threads_1,_1_GiB,_page_cache_warm
md5sum_1GiB md5sum md5sum_1_GiB
dvc_add_1GiB_cold_cache dvc-add-cold dvc_add_1_GiB,_empty_DVC_cache
dvc_add_1GiB_again_no_change dvc-add-unchanged dvc_add_1_GiB,_unchanged
EOF
    # b3sum off disk, to set beside hft's page-cache-dropped figure (needs root).
    if [[ -x $b3dir/b3sum && -f $work/dvc-bench/big.bin ]] &&
        sync && { echo 3 >/proc/sys/vm/drop_caches; } 2>/dev/null; then
        cold=()
        for ((r = 1; r <= runs; r++)); do
            sync && echo 3 >/proc/sys/vm/drop_caches
            start=$(date +%s%N)
            "$b3dir/b3sum" "$work/dvc-bench/big.bin" >/dev/null
            cold+=($((($(date +%s%N) - start) / 1000)))
        done
        record b3sum-cold-disk ms "$(printf '%s\n' "${cold[@]}" | median | awk '{ print $1 / 1000 }')" \
            - "$runs" "b3sum 1 GiB, page cache dropped"
    fi
    rm -f "$work/dvc-bench/big.bin"
    if wants hash; then
        settle
        hft_suite hash
    fi
    if wants noop; then
        settle
        hft_suite noop
    fi
fi

load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- the report --------------------------------------------------------------------------
versions=$("$py" - <<'EOF'
import platform, torch, pandas, numpy
from importlib.metadata import version
print(f"Python {platform.python_version()}, PyTorch {torch.__version__}, pandas {pandas.__version__}, "
      f"numpy {numpy.__version__}, DVC {version('dvc')}")
EOF
)
b3v=$("$b3dir/b3sum" --version 2>/dev/null || echo "b3sum not installed")

echo "### Results, $(date -u '+%Y-%m-%d %H:%M UTC')"
echo
echo "- hft: built from commit $commit, $("$HFT_BENCH_BIN" --version)"
echo "- machine: $(nproc) CPUs, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1), $(free -g | awk '/^Mem:/ { print $2 }') GiB"
echo "- peers: $versions, $b3v"
echo "- load average (1, 5, 15 min): $load_before before, $load_after after"
echo "- machine idle (under ${QUIET_PCT}% busy, no cargo) before $((waits - not_quiet)) of $waits workloads, waiting at most ${QUIET_MAX_WAIT} s each"
echo "- median of $runs runs per figure ($((runs > 10 ? runs : 10)) for no-op builds and status); peak RSS from GNU time"
echo
python3 "$repo/scripts/bench_table.py" "$hft_tsv" "$peers_tsv"
