//! The cache on awkward filesystems: a full disk, a read-only mount, a filesystem other
//! than the project's. Each gives a clear error or works, and leaves the cache consistent.
//!
//! These tests mount tmpfs file systems, so they need root (CAP_SYS_ADMIN). Without it they
//! fail saying so, unless `HFT_SKIP_PRIVILEGED=1` is set, which skips them with a note.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Project, Run};

const HFT: &str = env!("CARGO_BIN_EXE_hft");

/// A tmpfs mounted for one test; unmounted when dropped (before the project folder goes).
struct Mount {
    dir: PathBuf,
}

impl Mount {
    /// Mounts a tmpfs of `size` at `dir`. `None`: mounting is not permitted here and
    /// `HFT_SKIP_PRIVILEGED=1` asks to skip (the caller returns); without it, panics.
    fn tmpfs(dir: &Path, size: &str) -> Option<Mount> {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output();
        let why = match out {
            Ok(o) if o.status.success() => {
                return Some(Mount {
                    dir: dir.to_path_buf(),
                });
            }
            Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_string(),
            Err(e) => format!("cannot run mount: {e}"),
        };
        if std::env::var("HFT_SKIP_PRIVILEGED").as_deref() == Ok("1") {
            eprintln!(
                "note: skipped: this test needs root (CAP_SYS_ADMIN) to mount a tmpfs ({why})"
            );
            return None;
        }
        panic!(
            "this test needs root (CAP_SYS_ADMIN) to mount a tmpfs at {}: {why}\n\
             run it as root, or set HFT_SKIP_PRIVILEGED=1 to skip it",
            dir.display()
        );
    }

    /// `mount -o remount,OPTIONS`.
    fn remount(&self, options: &str) {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,{options}")])
            .arg(&self.dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "remount,{options} {}: {}",
            self.dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            // Busy (a process still has a file open): detach it now, free it when unused.
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}

fn hft(dir: &Path, args: &[&str]) -> Run {
    let out = Command::new(HFT)
        .args(args)
        .current_dir(dir)
        .env_remove("HFT_CACHE_DIR")
        .env_remove("HFT_NO_MEMO")
        .output()
        .unwrap();
    Run::from(out)
}

/// `hft cache verify` of `cache` must find nothing wrong.
fn assert_verified(p: &Project, cache: &Path) {
    let run = hft(
        &p.dir,
        &["cache", "verify", "--cache-dir", cache.to_str().unwrap()],
    );
    assert_eq!(
        run.code,
        0,
        "cache verify of {}:\n{}\n{}",
        cache.display(),
        run.stdout,
        run.stderr
    );
}

/// (experiment/stage) -> (state, key, outputs) from `hft build --json`.
fn stages(run: &Run) -> BTreeMap<String, (String, String, String)> {
    let doc: serde_json::Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("--json output: {e}\n{}\n{}", run.stdout, run.stderr));
    let mut out = BTreeMap::new();
    for e in doc["experiments"].as_array().unwrap() {
        for s in e["stages"].as_array().unwrap() {
            out.insert(
                format!(
                    "{}/{}",
                    e["name"].as_str().unwrap(),
                    s["id"].as_str().unwrap()
                ),
                (
                    s["state"].as_str().unwrap().to_string(),
                    s["key"].to_string(),
                    s["outputs"].to_string(),
                ),
            );
        }
    }
    out
}

fn states(run: &Run) -> BTreeSet<String> {
    stages(run)
        .into_values()
        .map(|(state, _, _)| state)
        .collect()
}

/// The `error:` line of a build that filled the disk.
fn full_disk_error(run: &Run) -> String {
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    run.stderr
        .lines()
        .find(|l| l.starts_with("error:") && l.contains("No space left on device"))
        .unwrap_or_else(|| panic!("no error names the full disk:\n{}", run.stderr))
        .to_string()
}

fn names_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// About 2 MB of outputs: two series of synthetic bars, their features and a dataset over
/// them.
fn big(name: &str, hidden: usize) -> String {
    format!(
        "\
name: {name}
data:
  source: synthetic
  symbols: [S1, S2]
  synthetic: {{bars: 4000}}
  features: [close, log_return, ma_50, ema_20, rsi_14, macd_signal, bb_position, volatility_ratio]
  sequence_length: 16
  prediction_horizon: 3
model: {{type: mlp, hidden_size: {hidden}, num_layers: 1, dropout: 0.0}}
training: {{max_steps: 4, batch_size: 16, warmup_steps: 1}}
"
    )
}

#[test]
fn a_full_disk_fails_the_build_clearly_and_leaves_the_cache_consistent() {
    let p = Project::new("fs-full");
    p.write("experiments/big.yaml", &big("big", 8));
    let cache = p.path("full-cache");
    let Some(mount) = Mount::tmpfs(&cache, "1M") else {
        return;
    };
    let dir = cache.to_str().unwrap();

    let run = hft(&p.dir, &["build", "-j", "1", "--cache-dir", dir]);
    assert_eq!(
        run.code, 1,
        "a full disk fails the stage (exit 1):\n{}\n{}",
        run.stdout, run.stderr
    );
    let error = full_disk_error(&run);
    assert!(
        error.contains(&format!("{dir}/")),
        "the error names the file in the cache it was writing: {error}"
    );
    // Nothing half-written under objects/ or actions/; tmp/ is cleared by the next open.
    assert_verified(&p, &cache);
    let left = names_in(&cache.join("tmp"));
    assert!(left.is_empty(), "tmp/ after the next open: {left:?}");

    // With room again, the same cache completes the build.
    mount.remount("size=64M");
    let run = hft(&p.dir, &["build", "-j", "1", "--json", "--cache-dir", dir]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        states(&run).contains("cached"),
        "what was stored before the disk filled is reused: {:?}",
        stages(&run)
    );
    assert_verified(&p, &cache);
}

/// Stages whose outputs are large enough (8 MiB and more) to be stored in the background
/// while the next stage runs: one symbol's features and dataset are about 8.8 MB each.
fn large(name: &str) -> String {
    format!(
        "\
name: {name}
data:
  source: synthetic
  symbols: [S1]
  synthetic: {{bars: 110000}}
  features: [close, log_return, ma_50, ema_20, rsi_14, macd_signal, bb_position, volatility_ratio]
  sequence_length: 16
  prediction_horizon: 3
model: {{type: mlp, hidden_size: 4, num_layers: 1, dropout: 0.0}}
"
    )
}

#[test]
fn a_full_disk_under_a_background_write_fails_that_stage_and_keeps_the_cache_consistent() {
    let p = Project::new("fs-full-held");
    p.write("experiments/large.yaml", &large("large"));
    let cache = p.path("full-held-cache");
    // Room for the bars (5.3 MB), not for the features written behind the dataset stage.
    let Some(mount) = Mount::tmpfs(&cache, "10M") else {
        return;
    };
    let dir = cache.to_str().unwrap();
    let until = ["build", "--until", "dataset", "--cache-dir", dir];

    let run = hft(&p.dir, &until);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    let error = full_disk_error(&run);
    assert!(
        error.contains("features") && error.contains("cannot store outputs"),
        "the stage whose outputs could not be written fails: {error}"
    );
    // The dataset passes the features blob on as its rows: its record waits for that
    // write (or finds it failed) and is not written either.
    assert!(
        run.stderr
            .lines()
            .any(|l| l.starts_with("error: large/dataset:") && l.contains("not")),
        "the dataset, whose rows are that blob, fails too:\n{}\n{}",
        run.stdout,
        run.stderr
    );
    assert_verified(&p, &cache);
    assert!(
        names_in(&cache.join("tmp"))
            .iter()
            .all(|n| !n.ends_with(".tmp")),
        "no partial blob is left after the next open"
    );

    // With room again: the bars stored before the disk filled are reused, the rest runs.
    mount.remount("size=64M");
    let mut json = until.to_vec();
    json.push("--json");
    let run = hft(&p.dir, &json);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let got = stages(&run);
    let state = |id: &str| got[&format!("large/{id}")].0.clone();
    assert_eq!(state("ingest:S1"), "cached", "{got:?}");
    assert_eq!(state("features"), "ran", "{got:?}");
    assert_eq!(state("dataset"), "ran", "{got:?}");
    assert_verified(&p, &cache);
    // And nothing is left to run.
    let again = hft(&p.dir, &json);
    assert_eq!(states(&again), BTreeSet::from(["cached".to_string()]));
}

#[test]
fn a_read_only_cache_serves_hits_and_refuses_to_build_clearly() {
    let p = Project::new("fs-readonly");
    p.write("experiments/a.yaml", &big("a", 8));
    p.write("experiments/b.yaml", &big("b", 12));
    let cache = p.path("ro-cache");
    let Some(mount) = Mount::tmpfs(&cache, "64M") else {
        return;
    };
    let dir = cache.to_str().unwrap();
    let built = hft(
        &p.dir,
        &["build", "--json", "--cache-dir", dir, "experiments/a.yaml"],
    );
    assert_eq!(built.code, 0, "{}", built.stderr);
    // Again, so that the no-op memo of this invocation is written.
    assert_eq!(
        hft(&p.dir, &["build", "--cache-dir", dir, "experiments/a.yaml"]).code,
        0
    );

    mount.remount("ro");
    assert!(
        std::fs::write(cache.join("probe"), b"x").is_err(),
        "the cache is read-only now (even for root)"
    );

    // Everything cached: reading a shared read-only cache is a valid use.
    let hit = hft(
        &p.dir,
        &["build", "--json", "--cache-dir", dir, "experiments/a.yaml"],
    );
    assert_eq!(
        hit.code, 0,
        "a fully cached build needs no writes:\n{}",
        hit.stderr
    );
    assert_eq!(
        states(&hit),
        BTreeSet::from(["cached".to_string()]),
        "{:?}",
        stages(&hit)
    );
    let results = |r: &Run| -> BTreeMap<String, (String, String)> {
        stages(r)
            .into_iter()
            .map(|(k, (_, key, outputs))| (k, (key, outputs)))
            .collect()
    };
    assert_eq!(results(&hit), results(&built));
    let memo = hft(&p.dir, &["build", "--cache-dir", dir, "experiments/a.yaml"]);
    assert_eq!(memo.code, 0, "{}", memo.stderr);
    let status = hft(
        &p.dir,
        &["status", "--cache-dir", dir, "experiments/a.yaml"],
    );
    assert_eq!(status.code, 0, "{}", status.stderr);
    assert_verified(&p, &cache);

    // A build that must run stages fails at the first, naming the cache.
    let miss = hft(&p.dir, &["build", "--cache-dir", dir, "experiments/b.yaml"]);
    assert_eq!(
        miss.code, 1,
        "a build needing to write fails:\n{}\n{}",
        miss.stdout, miss.stderr
    );
    assert!(!miss.stderr.contains("panicked"), "{}", miss.stderr);
    let error = miss
        .stderr
        .lines()
        .find(|l| l.starts_with("error:") && l.contains("Read-only file system"))
        .unwrap_or_else(|| panic!("no error says the cache is read-only:\n{}", miss.stderr));
    assert!(
        error.contains(&format!("the cache at {dir} is not writable")),
        "{error}"
    );

    // Writable again: the cache is intact and the build completes.
    mount.remount("rw");
    assert_verified(&p, &cache);
    let run = hft(
        &p.dir,
        &["build", "--json", "--cache-dir", dir, "experiments/b.yaml"],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_verified(&p, &cache);
}

#[test]
fn a_cache_on_another_filesystem_builds_and_hits() {
    let p = Project::new("fs-other");
    p.write("trainingdata/AAA.csv", &common::csv_bars(400, 1));
    p.write("trainingdata/BBB.csv", &common::csv_bars(400, 2));
    p.write(
        "experiments/exp.yaml",
        "\
name: exp
data:
  source: local
  path: trainingdata
  symbols: [AAA, BBB]
  features: [close, log_return, ma_5, rsi_14]
  sequence_length: 10
  prediction_horizon: 2
model: {type: mlp, hidden_size: 8, num_layers: 1, dropout: 0.0}
training: {max_steps: 4, batch_size: 16, warmup_steps: 1}
",
    );
    let cache = p.path("tmpfs-cache");
    let Some(_mount) = Mount::tmpfs(&cache, "64M") else {
        return;
    };
    let dev = |path: &Path| std::fs::metadata(path).unwrap().dev();
    assert_ne!(
        dev(&cache),
        dev(&p.path("trainingdata/AAA.csv")),
        "the cache is on another filesystem than the project"
    );
    let dir = cache.to_str().unwrap();

    let first = hft(&p.dir, &["build", "--json", "--cache-dir", dir]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert_eq!(states(&first), BTreeSet::from(["ran".to_string()]));
    let again = hft(&p.dir, &["build", "--json", "--cache-dir", dir]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(
        states(&again),
        BTreeSet::from(["cached".to_string()]),
        "{:?}",
        stages(&again)
    );
    let keys = |r: &Run| -> Vec<(String, String)> {
        stages(r)
            .into_values()
            .map(|(_, key, outputs)| (key, outputs))
            .collect()
    };
    assert_eq!(keys(&again), keys(&first));
    // A touched data file is re-hashed across the filesystems and still hits.
    let csv = p.path("trainingdata/AAA.csv");
    std::fs::write(&csv, std::fs::read(&csv).unwrap()).unwrap();
    let touched = hft(&p.dir, &["build", "--json", "--cache-dir", dir]);
    assert_eq!(touched.code, 0, "{}", touched.stderr);
    assert_eq!(states(&touched), BTreeSet::from(["cached".to_string()]));
    // The same experiments in the project's own cache give the same keys and digests.
    let local = hft(&p.dir, &["build", "--json"]);
    assert_eq!(local.code, 0, "{}", local.stderr);
    assert_eq!(keys(&local), keys(&first));

    assert_verified(&p, &cache);
    let partial: Vec<String> = names_in(&cache.join("tmp"))
        .into_iter()
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(partial.is_empty(), "{partial:?}");
    assert!(
        names_in(&p.dir).iter().all(|n| !n.ends_with(".tmp")),
        "no temporary file left in the project"
    );
}
