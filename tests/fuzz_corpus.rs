//! Replays every input of the fuzz corpora (`fuzz/corpus/<target>/`) and every crash
//! reproducer (`fuzz/regressions/<target>/`) through the fuzz targets' own bodies
//! (`fuzz/harness.rs`), on the stable toolchain, in plain `cargo test`: what the fuzzer
//! once found stays fixed. `scripts/fuzz.sh` runs the fuzzer itself.

#[path = "../fuzz/harness.rs"]
mod harness;

use std::path::{Path, PathBuf};

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    out.sort();
    out
}

/// Runs `body` on every corpus and regression input of `target`; fails naming each input
/// that panics.
fn replay(target: &'static str, body: fn(&[u8])) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let corpus = files(&root.join("corpus").join(target));
    assert!(!corpus.is_empty(), "no seed corpus in fuzz/corpus/{target}");
    let inputs: Vec<PathBuf> = corpus
        .into_iter()
        .chain(files(&root.join("regressions").join(target)))
        .collect();
    // The CLI parses on the main thread (8 MiB of stack); test threads get 2 MiB.
    let failures = std::thread::Builder::new()
        .stack_size(8 << 20)
        .spawn(move || {
            let mut failures = Vec::new();
            for path in &inputs {
                let bytes = std::fs::read(path).unwrap();
                if std::panic::catch_unwind(|| body(&bytes)).is_err() {
                    failures.push(path.display().to_string());
                }
            }
            eprintln!("{target}: replayed {} inputs", inputs.len());
            failures
        })
        .unwrap()
        .join()
        .unwrap();
    assert!(
        failures.is_empty(),
        "{target}: inputs that panic:\n  {}",
        failures.join("\n  ")
    );
}

#[test]
fn config_corpus_and_regressions() {
    replay("config", harness::config);
}

#[test]
fn csv_corpus_and_regressions() {
    replay("csv", harness::csv);
}

#[test]
fn parquet_corpus_and_regressions() {
    replay("parquet", harness::parquet);
}

#[test]
fn lockfile_corpus_and_regressions() {
    replay("lockfile", harness::lockfile);
}
