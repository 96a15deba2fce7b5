//! hft.lock, `build --locked` and `hft audit` through the real binary.

mod common;

use common::Project;

const EXPERIMENT: &str = concat!(
    "name: exp\n",
    common::synthetic_data!(),
    "model: {type: lstm, hidden_size: 6, num_layers: 1, dropout: 0.1}\n",
    "optimizer: {type: adamw, lr: 0.001}\n",
    "training: {max_steps: 6, batch_size: 16, warmup_steps: 1}\n",
);

fn built() -> Project {
    let p = Project::new("audit");
    p.write("experiments/exp.yaml", EXPERIMENT);
    p.build();
    p
}

#[test]
fn the_lock_is_written_and_stable_across_empty_caches() {
    let p = built();
    let first = std::fs::read_to_string(p.path("hft.lock")).unwrap();
    for stage in [
        "ingest:SYN",
        "features",
        "dataset",
        "init",
        "train",
        "evaluate",
    ] {
        assert!(
            first.contains(&format!(
                "[experiments.exp.stages.{}]",
                if stage.contains(':') {
                    format!("\"{stage}\"")
                } else {
                    stage.to_string()
                }
            )),
            "{stage} missing:\n{first}"
        );
    }
    assert!(first.contains("backend = \"flex\""));
    std::fs::remove_dir_all(p.path("cache")).unwrap();
    p.build();
    assert_eq!(std::fs::read_to_string(p.path("hft.lock")).unwrap(), first);
}

#[test]
fn locked_builds_fail_before_executing_when_a_key_would_change() {
    let p = built();
    let ok = p.hft(&["build", "--locked"]);
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    p.write(
        "experiments/exp.yaml",
        &EXPERIMENT.replace("lr: 0.001", "lr: 0.004"),
    );
    let run = p.hft(&["build", "--locked"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("exp/train: key would change from the lock: optimizer.lr 0.001 -> 0.004 (experiments/exp.yaml:10)"), "{}", run.stderr);
    assert!(run.ran().is_empty(), "nothing executed");
    let lock_after = std::fs::read_to_string(p.path("hft.lock")).unwrap();
    assert!(
        !lock_after.contains("0.004"),
        "--locked never rewrites the lock"
    );
}

/// `--locked` names each thing the lock lacks or disagrees on, before executing anything:
/// an experiment the lock has never seen, an environment other than the locked one; and
/// `--locked` without a lock says to build first.
#[test]
fn locked_builds_name_what_the_lock_lacks_or_disagrees_on() {
    let p = built();
    p.write(
        "experiments/other.yaml",
        &EXPERIMENT.replace("name: exp", "name: other"),
    );
    let run = p.hft(&["build", "--locked"]);
    run.assert_user_error(&["error: --locked: other: not in hft.lock"]);
    assert!(run.ran().is_empty(), "nothing executed: {}", run.stdout);
    std::fs::remove_file(p.path("experiments/other.yaml")).unwrap();

    let lock = std::fs::read_to_string(p.path("hft.lock")).unwrap();
    assert!(lock.contains("burn = \"0.22\""), "{lock}");
    p.write(
        "hft.lock",
        &lock.replace("burn = \"0.22\"", "burn = \"0.21\""),
    );
    let run = p.hft(&["build", "--locked"]);
    run.assert_user_error(&["error: --locked: the environment differs from the lock's: burn 0.21 in the lock, 0.22 here"]);
    assert!(run.ran().is_empty(), "nothing executed: {}", run.stdout);

    std::fs::remove_file(p.path("hft.lock")).unwrap();
    p.hft(&["build", "--locked"])
        .assert_user_error(&["--locked: there is no hft.lock; run `hft build` first"]);
}

/// A data file edited after the lock was written: `--locked` names the stage and the file.
#[test]
fn locked_builds_name_a_data_file_changed_since_the_lock() {
    let p = Project::with_local_data("audit-data", common::LOCAL_EXPERIMENT);
    p.build();
    p.write("trainingdata/AAA.csv", &common::csv_bars(120, 4));
    let run = p.hft(&["build", "--locked"]);
    run.assert_user_error(&[
        "error: --locked: exp/ingest:AAA: data file ",
        "AAA.csv changed since it was locked",
    ]);
    assert!(run.ran().is_empty(), "nothing executed: {}", run.stdout);
}

/// A tolerance that does not parse is a usage error naming the option.
#[test]
fn audit_rejects_a_bad_tolerance() {
    let p = built();
    p.hft(&["audit", "--tolerance", "metric:-1"])
        .assert_user_error(&["--tolerance: metric:-1: expected a number >= 0"]);
}

#[test]
fn audit_reproduces_every_stage_and_writes_reports() {
    let p = built();
    let run = p.hft(&["audit", "--locked", "--junit", "audit.xml"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("audit: 6 stages reproduced"),
        "{}",
        run.stderr
    );
    let xml = std::fs::read_to_string(p.path("audit.xml")).unwrap();
    assert!(xml.contains("tests=\"6\" failures=\"0\""), "{xml}");
    let json = p.hft(&["audit", "--json", "--stage", "train"]);
    let results: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(results.as_array().unwrap().len(), 1);
    assert_eq!(results[0]["status"], "pass");
    assert_eq!(results[0]["tolerance"], "bitwise");
}

/// Plants a one-ulp change in one float (f32 or f64) of the recorded dataset: the audit must name the
/// dataset stage, the tensor and the size of the difference.
#[test]
fn audit_reports_a_planted_divergence_at_the_right_stage() {
    let p = built();
    let actions = p.path("cache/actions");
    let (path, mut record) = std::fs::read_dir(&actions)
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            let v: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            (path, v)
        })
        .find(|(_, v)| v["stage"] == "dataset")
        .unwrap();
    let digest = record["outputs"]["dataset"]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let mut bytes =
        std::fs::read(p.path(&format!("cache/objects/{}/{}", &digest[..2], &digest[2..]))).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + header_len]).unwrap();
    let (name, info) = header
        .as_object()
        .unwrap()
        .iter()
        .find(|(n, v)| {
            *n != "__metadata__"
                && (v["dtype"] == "F32" || v["dtype"] == "F64")
                && v["data_offsets"][1].as_u64() > v["data_offsets"][0].as_u64()
        })
        .unwrap();
    let start = 8 + header_len + info["data_offsets"][0].as_u64().unwrap() as usize;
    bytes[start] ^= 1; // the lowest mantissa bit of the first element
    let planted = blake3::hash(&bytes).to_hex().to_string();
    let blob = p.path(&format!(
        "cache/objects/{}/{}",
        &planted[..2],
        &planted[2..]
    ));
    std::fs::create_dir_all(blob.parent().unwrap()).unwrap();
    std::fs::write(&blob, &bytes).unwrap();
    record["outputs"]["dataset"]["digest"] = serde_json::Value::String(planted);
    std::fs::write(&path, serde_json::to_vec(&record).unwrap()).unwrap();

    let run = p.hft(&["audit"]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains(&format!("first divergence: exp/dataset: output `dataset`: tensor `{name}` first differs at element 0")),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("max 1 ulp"), "{}", run.stderr);
    // What the audit saw is on record under the key.
    let audits: Vec<_> = std::fs::read_dir(p.path("cache/builds"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("audit-"))
        .collect();
    assert_eq!(audits.len(), 1, "{audits:?}");
    // A bitwise audit fails; one ulp of tolerance on the dataset passes that stage.
    let loose = p.hft(&[
        "audit",
        "--stage",
        "dataset",
        "--tolerance",
        "dataset=ulp:1",
    ]);
    assert_eq!(loose.code, 0, "{}\n{}", loose.stdout, loose.stderr);
}

/// A build that changed one experiment splices it into the lock this hft last wrote; the
/// text is what writing the whole lock gives. A lock edited outside hft (its digest is not
/// the one hft kept) is parsed in full again: a malformed one is still an error before
/// anything executes, a valid one is rewritten as the full path writes it.
#[test]
fn a_spliced_lock_is_the_lock_written_whole() {
    let mlp = |name: &str, seed: u32| {
        format!(
            "name: {name}\nseed: {seed}\n{}model: {{type: mlp, hidden_size: 4, num_layers: 1}}\n\
             training: {{max_steps: 1, batch_size: 8}}\n",
            common::synthetic_data!()
        )
    };
    let p = Project::new("audit-splice");
    for (name, seed) in [("a", 1), ("b", 2), ("c.d", 3)] {
        p.write(&format!("experiments/{name}.yaml"), &mlp(name, seed));
    }
    p.build();
    let lock = || std::fs::read_to_string(p.path("hft.lock")).unwrap();
    // The lock written whole from what the cache holds (every stage cached).
    let whole = || {
        let spliced = lock();
        std::fs::remove_file(p.path("hft.lock")).unwrap();
        p.build();
        assert_eq!(lock(), spliced, "spliced and whole locks differ");
    };
    p.write("experiments/b.yaml", &mlp("b", 9));
    assert_eq!(p.build().ran().len(), 3, "init, train and evaluate of b");
    assert!(lock().contains("\"seed\":9"));
    whole();
    std::fs::remove_file(p.path("experiments/c.d.yaml")).unwrap();
    p.write("experiments/a.yaml", &mlp("a", 5));
    p.build();
    assert!(!lock().contains("experiments.\"c.d\""), "{}", lock());
    whole();

    // Edited outside hft: a comment is dropped by the next build, which parses it in full.
    let written = lock();
    p.write("hft.lock", &format!("{written}# a note\n"));
    p.write("experiments/a.yaml", &mlp("a", 6));
    p.build();
    assert!(!lock().contains("# a note") && lock().contains("\"seed\":6"));
    whole();
    let broken = lock().replacen("version = 1", "version = [", 1);
    p.write("hft.lock", &broken);
    p.write("experiments/a.yaml", &mlp("a", 7));
    let run = p.hft(&["build"]);
    run.assert_user_error(&["hft.lock:6:1: missing comma"]);
    assert!(run.ran().is_empty(), "nothing executed: {}", run.stdout);
}
