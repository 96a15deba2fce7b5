//! `hft gc`, `hft cache verify` and `hft cache stats` through the real binary.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use common::Project;

const EXPERIMENT: &str = "\
name: a
seed: 1
data:
  source: synthetic
  symbols: [SYN]
  synthetic: {bars: 300}
  features: [close, log_return, rsi_14]
  sequence_length: 8
  prediction_horizon: 2
model: {type: mlp, hidden_size: 8, num_layers: 1, dropout: 0.0}
optimizer: {type: adamw, lr: 0.001}
training: {max_steps: 4, batch_size: 16, warmup_steps: 1}
";

fn project() -> Project {
    let p = Project::new("cache-admin");
    p.write("experiments/a.yaml", EXPERIMENT);
    p.write(
        "experiments/b.yaml",
        &EXPERIMENT
            .replace("name: a", "name: b")
            .replace("seed: 1", "seed: 2"),
    );
    p
}

/// Every file under the cache with its size (the store lock and writer records aside,
/// which any open touches).
fn files(p: &Project) -> BTreeMap<PathBuf, u64> {
    let root = p.path("cache");
    let mut out = BTreeMap::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let meta = entry.metadata().unwrap();
            let rel = entry.path().strip_prefix(&root).unwrap().to_path_buf();
            if meta.is_dir() {
                dirs.push(entry.path());
            } else if !rel.starts_with("tmp") && !rel.starts_with("locks") {
                out.insert(rel, meta.len());
            }
        }
    }
    out
}

/// Stage keys with an action record.
fn action_keys(p: &Project) -> BTreeSet<String> {
    std::fs::read_dir(p.path("cache/actions"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter_map(|n| n.strip_suffix(".json").map(str::to_string))
        .collect()
}

/// experiment/stage -> key, from hft.lock.
fn locked_keys(p: &Project) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(p.path("hft.lock")).unwrap();
    let lock: toml::Value = toml::from_str(&text).unwrap();
    let mut out = BTreeMap::new();
    for (name, e) in lock["experiments"].as_table().unwrap() {
        for (stage, s) in e["stages"].as_table().unwrap() {
            let key = s["key"].as_str().unwrap().to_string();
            out.insert(format!("{name}/{stage}"), key);
        }
    }
    out
}

fn json(run: &common::Run) -> serde_json::Value {
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}\n{}", run.stdout, run.stderr))
}

fn blob_path(p: &Project, digest: &str) -> PathBuf {
    p.path("cache/objects")
        .join(&digest[..2])
        .join(&digest[2..])
}

fn flip_a_byte(path: &Path) {
    let mut perms = std::fs::metadata(path).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(path, perms).unwrap();
    let mut bytes = std::fs::read(path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn gc_removes_only_unreachable_entries_and_the_next_build_still_hits() {
    let p = project();
    p.build();
    let first_lock = locked_keys(&p);
    let before_edit = action_keys(&p);

    p.write(
        "experiments/a.yaml",
        &EXPERIMENT.replace("lr: 0.001", "lr: 0.004"),
    );
    let rebuilt = p.build();
    let mut ran = rebuilt.ran();
    ran.sort();
    assert_eq!(ran, ["a/evaluate", "a/train"], "{}", rebuilt.stdout);
    let lock = locked_keys(&p);
    let current: BTreeSet<&String> = lock.values().collect();
    // The old train and evaluate of `a`: in the store, reached by nothing current.
    let stale: BTreeSet<String> = before_edit
        .iter()
        .filter(|k| !current.contains(k))
        .cloned()
        .collect();
    let expected: BTreeSet<String> = ["a/train", "a/evaluate"]
        .iter()
        .map(|s| first_lock[*s].clone())
        .collect();
    assert_eq!(stale, expected);

    // The catalog still remembers the first build of `a`: --keep-last keeps it.
    let kept = p.hft(&["gc", "--dry-run", "--keep-last", "2", "--json"]);
    assert_eq!(kept.code, 0, "{}", kept.stderr);
    assert_eq!(json(&kept)["actions_removed"], 0, "{}", kept.stdout);

    let snapshot = files(&p);
    let dry = p.hft(&["gc", "--dry-run"]);
    assert_eq!(dry.code, 0, "{}\n{}", dry.stdout, dry.stderr);
    assert!(
        dry.stdout.contains("would remove 2 action records"),
        "{}",
        dry.stdout
    );
    let dry_json = p.hft(&["gc", "--dry-run", "--json"]);
    let report = json(&dry_json);
    assert_eq!(report["dry_run"], true);
    assert_eq!(report["actions_removed"], 2, "{}", dry_json.stdout);
    assert!(report["bytes_freed"].as_u64().unwrap() > 0);
    assert_eq!(files(&p), snapshot, "a dry run deletes nothing");

    let gc = p.hft(&["gc", "--json"]);
    assert_eq!(gc.code, 0, "{}\n{}", gc.stdout, gc.stderr);
    assert_eq!(
        json(&gc)["bytes_freed"],
        json(&dry_json)["bytes_freed"],
        "frees what the dry run announced"
    );
    let left = action_keys(&p);
    assert!(left.is_disjoint(&stale), "{left:?}");
    for key in &current {
        assert!(left.contains(*key), "reachable {key} was removed");
    }

    let verify = p.hft(&["cache", "verify"]);
    assert_eq!(verify.code, 0, "{}\n{}", verify.stdout, verify.stderr);

    let again = p.build();
    assert!(again.ran().is_empty(), "{}", again.stdout);
    assert!(!again.with_state("cached").is_empty(), "{}", again.stdout);
}

#[test]
fn verify_names_a_planted_corruption_and_stats_show_the_hit_rate() {
    let p = project();
    p.build();
    p.build();
    let clean = p.hft(&["cache", "verify", "--json"]);
    assert_eq!(clean.code, 0, "{}\n{}", clean.stdout, clean.stderr);
    assert!(json(&clean)["blobs_checked"].as_u64().unwrap() > 0);

    let text = std::fs::read_to_string(p.path("hft.lock")).unwrap();
    let lock: toml::Value = toml::from_str(&text).unwrap();
    let digest = lock["experiments"]["a"]["stages"]["train"]["outputs"]["checkpoint"]
        .as_str()
        .unwrap_or_else(|| panic!("no checkpoint output in hft.lock:\n{text}"))
        .to_string();
    let blob = blob_path(&p, &digest);
    flip_a_byte(&blob);

    let run = p.hft(&["cache", "verify"]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    let named = format!("objects/{}/{}", &digest[..2], &digest[2..]);
    assert!(run.stdout.contains(&named), "{}", run.stdout);
    let report = json(&p.hft(&["cache", "verify", "--json"]));
    assert_eq!(report["corrupt_blobs"], 1);
    assert!(blob.exists(), "verify changes nothing");

    let stats = p.hft(&["cache", "stats", "--json"]);
    assert_eq!(stats.code, 0, "{}", stats.stderr);
    let s = json(&stats);
    assert_eq!(s["recent_builds"].as_array().unwrap().len(), 2);
    assert!(s["blobs"].as_u64().unwrap() > 0 && s["actions"].as_u64().unwrap() > 0);
    assert_eq!(s["catalog_experiments"], 2);
    // The second build hit everything; the first only what `b` shares with `a`.
    let builds = s["recent_builds"].as_array().unwrap();
    assert!(
        builds[0]["hit_rate"].as_f64().unwrap() < 1.0,
        "{}",
        stats.stdout
    );
    assert_eq!(builds[1]["hit_rate"], 1.0);
    let count = |what: &str| -> f64 { builds.iter().map(|b| b[what].as_f64().unwrap()).sum() };
    let rate = count("cached") / (count("cached") + count("ran"));
    assert!((s["hit_rate"].as_f64().unwrap() - rate).abs() < 1e-12);
}

/// A folder that is not an hft store is never used as one: its files (a `tmp/` among them,
/// which a store's start-up would clean) survive every command; a store written before the
/// marker is adopted; a read-only command on a mistyped path creates nothing.
#[test]
fn foreign_folders_are_refused_and_left_alone() {
    let p = project();
    p.write("notes/tmp/draft.tmp", "my notes");
    p.write("notes/objects/keep.txt", "mine");
    for args in [
        vec!["build", "-q", "--cache-dir", "notes"],
        vec!["status", "--cache-dir", "notes"],
        vec!["cache", "stats", "--cache-dir", "notes"],
    ] {
        let run = p.hft(&args);
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert!(
            run.stderr.contains("notes is not an hft cache"),
            "{}",
            run.stderr
        );
    }
    assert_eq!(
        std::fs::read_to_string(p.path("notes/tmp/draft.tmp")).unwrap(),
        "my notes"
    );
    assert!(!p.path("notes/HFT-STORE").exists());

    let run = p.hft(&["cache", "verify", "--cache-dir", "cahce"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        !p.path("cahce").exists(),
        "a read-only command created the folder"
    );

    // A store from before the marker: adopted, and its results still hit.
    assert_eq!(p.hft(&["build", "-q"]).code, 0);
    std::fs::remove_file(p.path("cache/HFT-STORE")).unwrap();
    let again = p.hft(&["build", "--json"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(p.path("cache/HFT-STORE").is_file());
    assert_eq!(json(&again)["ran"], 0, "{}", again.stdout);
}
