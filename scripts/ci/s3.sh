#!/usr/bin/env bash
# The S3-compatible server of tests/remote_cache.rs (s3s-fs, on loopback, started by the test
# itself). Source it from CI: `source scripts/ci/s3.sh`. Installs s3s-fs once into
# ~/.cache/hft-ci-tools (outside the repository, reused by later runs) and exports
# HFT_S3S_FS, the path the test looks for. 0.14.1 is the newest s3s-fs that builds with
# rustc 1.95; a first install takes about 3 minutes on 2 cores.
hft_s3s_root="${HFT_CI_TOOLS:-$HOME/.cache/hft-ci-tools}/s3s-fs-0.14.1"
if [ ! -x "$hft_s3s_root/bin/s3s-fs" ]; then
    echo "installing s3s-fs 0.14.1 into $hft_s3s_root" >&2
    # Its own target folder: never the CI's, whose locked dependency set it would disturb.
    CARGO_TARGET_DIR="$hft_s3s_root/target" \
        cargo install --quiet s3s-fs@0.14.1 --features binary --root "$hft_s3s_root"
    rm -rf "$hft_s3s_root/target"
fi
export HFT_S3S_FS="$hft_s3s_root/bin/s3s-fs"
unset hft_s3s_root
