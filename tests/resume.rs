//! Interrupted trainings resume from their last checkpoint and end bit-identical to a
//! training never interrupted.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Project;

const TINY: &str = "\
name: tiny
data:
  source: synthetic
  symbols: [S1, S2]
  synthetic: {bars: 300}
  features: [close, log_return, rsi_14]
  sequence_length: 10
  prediction_horizon: 2
model: {type: lstm, hidden_size: 8, num_layers: 1, dropout: 0.1}
training: {max_steps: 40, batch_size: 16, warmup_steps: 2, checkpoint_every: 5}
";

/// The train action record's checkpoint digest.
fn checkpoint_digest(p: &Project) -> String {
    for entry in std::fs::read_dir(p.path("cache/actions")).unwrap() {
        let record: serde_json::Value =
            serde_json::from_slice(&std::fs::read(entry.unwrap().path()).unwrap()).unwrap();
        if let Some(d) = record["outputs"]["checkpoint"]["digest"].as_str() {
            return d.to_string();
        }
    }
    panic!("no train action record");
}

/// The step of the saved partial checkpoint, if any.
fn partial_step(p: &Project) -> Option<u64> {
    for entry in std::fs::read_dir(p.path("cache/builds")).ok()? {
        let path = entry.ok()?.path();
        let name = path.file_name()?.to_str()?;
        if name.starts_with("partial-") && name.ends_with(".json") {
            let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
            return v["step"].as_u64();
        }
    }
    None
}

#[test]
fn killed_trainings_resume_to_the_uninterrupted_checkpoint() {
    let reference = Project::new("resume-ref");
    reference.write("experiments/tiny.yaml", TINY);
    reference.build();
    let want = checkpoint_digest(&reference);
    assert_eq!(
        partial_step(&reference),
        None,
        "success removes the partial record"
    );

    let p = Project::new("resume");
    p.write("experiments/tiny.yaml", TINY);
    // SIGKILL each build as soon as it has saved a checkpoint beyond the last one seen.
    let mut kills = 0u64;
    let mut last = None;
    for _ in 0..20 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_hft"))
            .args(["build", "-j", "1"])
            .current_dir(&p.dir)
            .env_remove("HFT_CACHE_DIR")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        let finished = loop {
            if child.try_wait().unwrap().is_some() {
                break true;
            }
            let step = partial_step(&p);
            if step.is_some() && step != last {
                last = step;
                break false;
            }
            assert!(started.elapsed() < Duration::from_secs(120), "build hangs");
            std::thread::sleep(Duration::from_millis(2));
        };
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        if finished {
            break;
        }
        kills += 1;
        if kills == 3 {
            break;
        }
    }
    assert!(kills >= 1, "no kill landed mid-training");
    // A build started from scratch would save step 5 again: each one resumed instead.
    assert!(
        last.unwrap() >= 5 * kills,
        "killed {kills} times, last at {last:?}"
    );
    let last = p.build();
    if last.ran().iter().any(|s| s.ends_with("/train")) {
        assert!(
            last.stderr.contains("resuming from the checkpoint of step"),
            "{}",
            last.stderr
        );
    }
    assert_eq!(checkpoint_digest(&p), want, "resumed after {kills} kills");
    assert_eq!(partial_step(&p), None, "success removes the partial record");
    // The resumable checkpoints go with it: every blob left is an output of a record.
    for project in [&reference, &p] {
        assert_eq!(
            orphan_checkpoints(project),
            Vec::<String>::new(),
            "{}",
            project.dir.display()
        );
    }
}

/// Checkpoint blobs under `cache/objects` that no action record names (the features'
/// pinned state blobs are not checkpoints).
fn orphan_checkpoints(p: &Project) -> Vec<String> {
    let mut named = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(p.path("cache/actions")).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        let record: serde_json::Value = serde_json::from_str(&text).unwrap();
        for out in record["outputs"].as_object().unwrap().values() {
            named.insert(out["digest"].as_str().unwrap().to_string());
        }
    }
    let mut left = Vec::new();
    for shard in std::fs::read_dir(p.path("cache/objects")).unwrap() {
        let shard = shard.unwrap();
        let prefix = shard.file_name().to_string_lossy().into_owned();
        for blob in std::fs::read_dir(shard.path()).unwrap() {
            let blob = blob.unwrap();
            let digest = format!("{prefix}{}", blob.file_name().to_string_lossy());
            let checkpoint = std::fs::read(blob.path()).unwrap().starts_with(b"HFT-CKPT");
            if checkpoint && !named.contains(&digest) {
                left.push(digest);
            }
        }
    }
    left
}
