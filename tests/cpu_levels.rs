//! `tests/cpu_levels/`: seven tiny experiments that between them run every model type,
//! optimizer family, several schedules, bf16, EMA weights, dropout, every feature and a
//! walk-forward evaluation. Its `hft.lock` was written on an AVX-512 machine; building it
//! with `--locked` from an empty cache must reproduce every key and output bit for bit.
//! Here that checks this CPU; CI builds the same project under qemu's `qemu64` (x86-64-v1,
//! no FMA) and `Haswell` (v3: AVX2 + FMA) CPUs as well (scripts/ci/cpu_levels.sh).

use std::path::Path;
use std::process::Command;

#[test]
fn the_cpu_levels_project_reproduces_its_lock() {
    let project = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cpu_levels");
    let cache = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hft"))
        .current_dir(&project)
        .args([
            "build",
            "experiments/",
            "--locked",
            "--quiet",
            "--cache-dir",
        ])
        .arg(cache.path())
        .env("HFT_NO_MEMO", "1")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // Every experiment was built, none skipped.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("7 experiments: 26 stages ran"), "{stdout}");
}
