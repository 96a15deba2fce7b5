//! Killed and concurrent builds: the store never holds a partial or corrupt entry, and a
//! stage key never executes twice at once.

mod common;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::Project;

/// Enough synthetic data that a build takes a noticeable moment, so kills land mid-build.
const BIG: &str = "\
name: big
data:
  source: synthetic
  symbols: [S1, S2, S3, S4]
  synthetic: {bars: 20000}
  features: [close, log_return, ma_50, ema_20, rsi_14, macd_signal, bb_position, volatility_ratio]
  sequence_length: 20
  prediction_horizon: 3
model: {type: mlp, hidden_size: 4, num_layers: 1, dropout: 0.0}
training: {max_steps: 2, batch_size: 8, warmup_steps: 1}
";

/// Every action record points at blobs that exist and hash to their names.
fn assert_store_consistent(p: &Project) {
    let actions = p.path("cache/actions");
    for entry in std::fs::read_dir(&actions).unwrap() {
        let path = entry.unwrap().path();
        let record: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).expect("action record parses");
        for (name, out) in record["outputs"].as_object().unwrap() {
            let hex = out["digest"].as_str().unwrap();
            let blob = p.path(&format!("cache/objects/{}/{}", &hex[..2], &hex[2..]));
            let bytes = std::fs::read(&blob)
                .unwrap_or_else(|_| panic!("{} output {name}: blob missing", path.display()));
            assert_eq!(
                blake3::hash(&bytes).to_hex().as_str(),
                hex,
                "blob {name} corrupt"
            );
        }
    }
}

/// stage -> key of every stage, from a build's output.
fn keys(run: &common::Run) -> BTreeMap<String, String> {
    run.stdout
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let (stage, _state, key) = (w.next()?, w.next()?, w.next()?);
            key.starts_with("k1-")
                .then(|| (stage.to_string(), key.to_string()))
        })
        .collect()
}

#[test]
fn killed_builds_leave_no_partial_entries_and_the_next_build_matches() {
    let reference = Project::new("crash-ref");
    reference.write("experiments/big.yaml", BIG);
    let expected = keys(&reference.build());

    let p = Project::new("crash");
    p.write("experiments/big.yaml", BIG);
    // Seeded kill points (ms after start), spread over ingest, features and dataset.
    let mut state: u64 = 0x5eed;
    for round in 0..8 {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let delay = 5 + (state >> 33) % 400;
        let mut child = Command::new(env!("CARGO_BIN_EXE_hft"))
            .args(["build", "-q"])
            .current_dir(&p.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        assert_store_consistent(&p);
        if round % 2 == 1 {
            // Wipe some progress so later rounds kill earlier stages again.
            let _ = std::fs::remove_dir_all(p.path("cache/actions"));
        }
    }
    let run = p.build();
    assert_store_consistent(&p);
    let partial: Vec<_> = std::fs::read_dir(p.path("cache/tmp"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(
        partial.is_empty(),
        "partial writes were cleaned up: {partial:?}"
    );
    assert_eq!(
        keys(&run),
        expected,
        "same keys and digests as a build never killed"
    );
}

#[test]
fn concurrent_builds_run_each_stage_once() {
    let p = Project::new("concurrent");
    p.write("experiments/a.yaml", &BIG.replace("name: big", "name: a"));
    p.write(
        "experiments/b.yaml",
        &BIG.replace("name: big", "name: b")
            .replace("hidden_size: 4", "hidden_size: 5"),
    );
    let children: Vec<_> = (0..3)
        .map(|_| {
            Command::new(env!("CARGO_BIN_EXE_hft"))
                .args(["build", "-j", "2"])
                .current_dir(&p.dir)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut ran: BTreeMap<String, usize> = BTreeMap::new();
    let mut results = Vec::new();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let run = common::Run::from(out);
        for line in run.stdout.lines() {
            let mut w = line.split_whitespace();
            if let (Some(_), Some("ran"), Some(key)) = (w.next(), w.next(), w.next()) {
                *ran.entry(key.to_string()).or_default() += 1;
            }
        }
        results.push(keys(&run));
    }
    assert!(!ran.is_empty());
    for (key, n) in &ran {
        assert_eq!(*n, 1, "stage {key} executed {n} times");
    }
    assert!(results.windows(2).all(|w| w[0] == w[1]), "all builds agree");
    assert_store_consistent(&p);
}
