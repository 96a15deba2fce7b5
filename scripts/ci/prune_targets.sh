#!/usr/bin/env bash
# Keeps CI's reused target folders bounded. Cargo never deletes stale artifacts: every change
# to the dependency graph (a vendored crate, a feature, the lockfile) leaves the previous
# build of each changed crate behind, and every run leaves its test binaries. Over many runs
# that filled a CI machine's disk (a link died with SIGBUS, then ENOSPC). So, before a run:
#   - the incremental folders go (CI sets CARGO_INCREMENTAL=0; they only grow);
#   - hft's own artifacts go (its library, binaries and test binaries: they are rebuilt on
#     every run anyway, since the sources changed);
#   - a folder over its size cap, or any folder while the disk is short of space, is emptied
#     and rebuilt from scratch (that costs minutes; a full disk fails the run).
#
#   scripts/ci/prune_targets.sh CAP_GIB DIR [DIR...]
#   HFT_CI_MIN_FREE_GIB   free space below which every folder is emptied (default 20)
set -uo pipefail

cap_gib=${1:?usage: prune_targets.sh CAP_GIB DIR [DIR...]}
shift
min_free_gib=${HFT_CI_MIN_FREE_GIB:-20}

gib_used() { du -s --block-size=1G "$1" 2>/dev/null | cut -f1; }
gib_free() { df --output=avail --block-size=1G "$1" 2>/dev/null | tail -n 1 | tr -d ' '; }

for dir in "$@"; do
    [ -d "$dir" ] || continue
    find "$dir" -maxdepth 3 -type d -name incremental -prune -exec rm -rf {} +
    # Under <profile>/deps/ (and a target triple's): hft's rlib/rmeta and every executable
    # (no extension), which are only ever this workspace's binaries and tests.
    find "$dir" -maxdepth 4 -type f -path '*/deps/*' \( -name 'libhft-*' -o ! -name '*.*' \) \
        -delete
    used=$(gib_used "$dir")
    free=$(gib_free "$dir")
    if [ "${used:-0}" -gt "$cap_gib" ] || [ "${free:-0}" -lt "$min_free_gib" ]; then
        echo "== emptying $dir (${used} GiB, cap ${cap_gib} GiB; ${free} GiB free on disk)"
        rm -rf "$dir"
    else
        echo "== keeping $dir (${used} GiB, cap ${cap_gib} GiB; ${free} GiB free on disk)"
    fi
done
exit 0
