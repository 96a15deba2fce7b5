//! A training with more epochs continues from the cached shorter training where the
//! schedule allows, and ends bit-identical to a fresh training in an empty cache: through
//! the real binary, the store and gc.

mod common;

use common::Project;

const EXPERIMENT: &str = "\
name: grow
seed: 3
data:
  source: synthetic
  symbols: [SYN]
  synthetic: {bars: 400}
  features: [close, log_return, rsi_14]
  sequence_length: 8
  prediction_horizon: 2
model: {type: mlp, hidden_size: 8, num_layers: 1, dropout: 0.1}
optimizer: {type: adamw, lr: 0.01}
training: {epochs: 2, batch_size: 32, schedule: constant, warmup_steps: 3}
";

/// The train action record of the last build of `cache` whose key the build printed.
fn train_record(p: &Project, cache: &str, run: &common::Run) -> serde_json::Value {
    let line = run
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("train "))
        .unwrap_or_else(|| panic!("no train line in\n{}", run.stdout));
    let short = line.split_whitespace().nth(2).unwrap();
    for entry in std::fs::read_dir(p.path(&format!("{cache}/actions"))).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(short)
        {
            return serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        }
    }
    panic!("no action record {short} in {cache}");
}

/// `hft build --cache-dir CACHE --set S...` that must succeed.
fn build(p: &Project, cache: &str, sets: &[&str]) -> common::Run {
    let mut args = vec!["build", "--cache-dir", cache];
    for s in sets {
        args.extend(["--set", s]);
    }
    let run = p.hft(&args);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    run
}

/// The digests of the train stage's checkpoint and log.
fn outputs(record: &serde_json::Value) -> [String; 2] {
    ["checkpoint", "log"].map(|o| record["outputs"][o]["digest"].as_str().unwrap().into())
}

/// The epochs a build trained, from its epoch lines (`grow: epoch 3/5 ...`).
fn trained(run: &common::Run) -> Vec<usize> {
    run.stderr
        .lines()
        .filter_map(|l| l.strip_prefix("grow: epoch "))
        .map(|rest| rest.split('/').next().unwrap().parse().unwrap())
        .collect()
}

/// `sets` at `short` epochs, then at `long` in the same cache `cache`, against `long` in an
/// empty one, whose outputs must be the same: the longer training's record and build.
fn grow(
    p: &Project,
    cache: &str,
    sets: &[&str],
    short: usize,
    long: usize,
) -> (serde_json::Value, common::Run) {
    let at = |epochs: usize| {
        let mut all: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        all.push(format!("training.epochs={epochs}"));
        all
    };
    let (s, l) = (at(short), at(long));
    let s: Vec<&str> = s.iter().map(String::as_str).collect();
    let l: Vec<&str> = l.iter().map(String::as_str).collect();
    build(p, cache, &s);
    let run = build(p, cache, &l);
    let record = train_record(p, cache, &run);
    let fresh_cache = format!("fresh-{}-{long}", sets.join(","));
    let fresh_run = build(p, &fresh_cache, &l);
    let fresh = train_record(p, &fresh_cache, &fresh_run);
    assert_eq!(
        fresh["summary"]["continued_from_epoch"],
        serde_json::Value::Null
    );
    assert_eq!(
        outputs(&record),
        outputs(&fresh),
        "{sets:?} {short} -> {long}: the continued training is not the fresh one\n{}",
        run.stderr
    );
    assert_eq!(record["key"], fresh["key"]);
    (record, run)
}

#[test]
fn a_longer_training_continues_from_the_shorter_one_bit_for_bit() {
    let p = Project::new("continue");
    p.write("experiments/grow.yaml", EXPERIMENT);
    for select in ["best_val", "last"] {
        let set = format!("training.select={select}");
        let (record, run) = grow(&p, "cache", &[&set], 2, 5);
        assert_eq!(trained(&run), [3, 4, 5], "{}", run.stderr);
        assert!(
            run.stderr
                .contains("grow: continued from the 2-epoch training (epochs 2 -> 5)"),
            "{}",
            run.stderr
        );
        assert!(
            run.stdout.contains("(continued from epoch 2)"),
            "{}",
            run.stdout
        );
        assert_eq!(record["summary"]["continued_from_epoch"], 2);
        assert_eq!(record["summary"]["steps"], 45);
        // The log holds every epoch, as the fresh one's does.
        let log = std::fs::read(p.path(&format!("cache/objects/{}", {
            let d = outputs(&record)[1].clone();
            format!("{}/{}", &d[..2], &d[2..])
        })))
        .unwrap();
        let log: serde_json::Value = serde_json::from_slice(&log).unwrap();
        assert_eq!(log["epochs"].as_array().unwrap().len(), 5);
        assert_eq!(log["total_steps"], 45);
    }
    // The longest below wins: 5 -> 7 trains epochs 6 and 7 only.
    let (record, run) = grow(&p, "cache", &["training.select=last"], 5, 7);
    assert_eq!(trained(&run), [6, 7], "{}", run.stderr);
    assert_eq!(record["summary"]["continued_from_epoch"], 5);

    // A schedule shaped by the run's length retrains, and is still right.
    let (record, run) = grow(&p, "cache", &["training.schedule=warmup_cosine"], 2, 4);
    assert_eq!(trained(&run), [1, 2, 3, 4], "{}", run.stderr);
    assert_eq!(
        record["summary"]["continued_from_epoch"],
        serde_json::Value::Null
    );
    assert!(!run.stderr.contains("continued from"), "{}", run.stderr);

    // The store stays verifiable, and gc collects a continuation with its training: with
    // only the 7-epoch `last` training current, every other training and state goes.
    let verify = p.hft(&["cache", "verify", "--cache-dir", "cache"]);
    assert_eq!(verify.code, 0, "{}\n{}", verify.stdout, verify.stderr);
    let continuations = || {
        std::fs::read_dir(p.path("cache/builds"))
            .unwrap()
            .filter(|e| {
                let name = e.as_ref().unwrap().file_name();
                name.to_string_lossy().starts_with("continuation-")
            })
            .count()
    };
    // best_val 2, 5; last 2, 5, 7; warmup_cosine 2, 4.
    assert_eq!(continuations(), 7);
    // hft.lock holds the last build's keys (a fresh cosine one): roots too.
    std::fs::remove_file(p.path("hft.lock")).unwrap();
    let gc = p.hft(&[
        "gc",
        "--cache-dir",
        "cache",
        "--set",
        "training.select=last",
        "--set",
        "training.epochs=7",
    ]);
    assert_eq!(gc.code, 0, "{}\n{}", gc.stdout, gc.stderr);
    assert_eq!(continuations(), 1, "{}", gc.stdout);
    let verify = p.hft(&["cache", "verify", "--cache-dir", "cache"]);
    assert_eq!(verify.code, 0, "{}\n{}", verify.stdout, verify.stderr);
    let again = build(&p, "cache", &["training.select=last", "training.epochs=7"]);
    assert_eq!(again.ran(), Vec::<String>::new(), "{}", again.stdout);
}

/// Early stopping: the longer training stops where a fresh one does, whether the shorter
/// one stopped before it, asked to stop after its last epoch, or ran on.
#[test]
fn a_continued_training_stops_early_where_a_fresh_one_does() {
    let p = Project::new("continue-stop");
    p.write("experiments/grow.yaml", EXPERIMENT);
    let patience = "training.patience=1";
    let (record, run) = grow(&p, "cache", &[patience], 2, 8);
    let stopped = record["summary"]["stopped_early"].as_u64().unwrap() as usize;
    assert!(stopped > 2, "{}", run.stderr);
    let expected: Vec<usize> = (3..=stopped).collect();
    assert_eq!(trained(&run), expected, "{}", run.stderr);
    // From the 8-epoch training, which stopped early: nothing left to train.
    let (record, run) = grow(&p, "cache", &[patience], 8, 12);
    assert_eq!(trained(&run), Vec::<usize>::new(), "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!(
            "continued from the 8-epoch training (epochs {stopped} -> 12)"
        )) && run.stderr.contains(&format!(
            "early stopping ended it after epoch {stopped}, and so ends this training"
        )),
        "{}",
        run.stderr
    );
    assert_eq!(record["summary"]["stopped_early"], stopped);
    // From a training whose last epoch is the stop: early stopping asked to stop after it,
    // which only a longer run does.
    let (record, run) = grow(&p, "cache-at-stop", &[patience], stopped, 20);
    assert_eq!(trained(&run), Vec::<usize>::new(), "{}", run.stderr);
    assert_eq!(record["summary"]["stopped_early"], stopped);
    // From one before the stop: the epochs up to it.
    let (_, run) = grow(&p, "cache-before-stop", &[patience], stopped - 1, 20);
    assert_eq!(trained(&run), [stopped], "{}", run.stderr);
}

/// What a Slurm job runs, `hft exec-stage`, continues too: the continuation is a store
/// object like any other, and the job's stage is the train stage.
#[test]
fn exec_stage_continues_a_training() {
    let p = Project::new("continue-exec-stage");
    p.write("experiments/grow.yaml", EXPERIMENT);
    build(&p, "cache", &[]);
    // The key is the same in every cache: the fresh build's is the job's.
    let run = build(&p, "fresh", &["training.epochs=5"]);
    let fresh = train_record(&p, "fresh", &run);
    let key = fresh["key"].as_str().unwrap();
    p.write(
        "experiments/grow.yaml",
        &EXPERIMENT.replace("epochs: 2,", "epochs: 5,"),
    );
    let job = p.hft(&[
        "exec-stage",
        "--key",
        key,
        "--file",
        "experiments/grow.yaml",
        "--experiment",
        "grow",
        "--stage",
        "train",
        "--cache-dir",
        "cache",
    ]);
    assert_eq!(job.code, 0, "{}\n{}", job.stdout, job.stderr);
    assert!(
        job.stderr
            .contains("continued from the 2-epoch training (epochs 2 -> 5)"),
        "{}",
        job.stderr
    );
    let record: serde_json::Value = serde_json::from_slice(
        &std::fs::read(p.path(&format!("cache/actions/{key}.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(record["summary"]["continued_from_epoch"], 2);
    assert_eq!(outputs(&record), outputs(&fresh));
}

/// A walk-forward fold's training continues too (`fold_train:K`, its own prefix key).
#[test]
fn fold_trainings_continue() {
    let p = Project::new("continue-folds");
    p.write("trainingdata/AAA.csv", &common::csv_bars(200, 1));
    p.write(
        "experiments/grow.yaml",
        "\
name: wf
seed: 3
data:
  source: local
  path: trainingdata
  symbols: [AAA]
  features: [close, log_return, ma_5]
  sequence_length: 8
  prediction_horizon: 2
model: {type: mlp, hidden_size: 8, num_layers: 1, dropout: 0.0}
training: {epochs: 1, batch_size: 16, schedule: constant, warmup_steps: 1}
evaluation:
  walk_forward: {train_bars: 80, val_bars: 20, test_bars: 20, embargo: 1}
",
    );
    build(&p, "cache", &[]);
    let run = build(&p, "cache", &["training.epochs=3"]);
    let fresh = build(&p, "fresh", &["training.epochs=3"]);
    let folds = |cache: &str| {
        let mut out = std::collections::BTreeMap::new();
        for entry in std::fs::read_dir(p.path(&format!("{cache}/actions"))).unwrap() {
            let record: serde_json::Value =
                serde_json::from_slice(&std::fs::read(entry.unwrap().path()).unwrap()).unwrap();
            let stage = record["stage"].as_str().unwrap().to_string();
            if stage.starts_with("fold_train:") {
                out.entry(stage).or_insert_with(Vec::new).push(record);
            }
        }
        out
    };
    let (continued, from_scratch) = (folds("cache"), folds("fresh"));
    assert!(from_scratch.len() >= 2, "{}", fresh.stdout);
    for (stage, fresh) in &from_scratch {
        let [fresh] = fresh.as_slice() else {
            panic!("{stage}: {fresh:?}")
        };
        let record = continued[stage]
            .iter()
            .find(|r| r["key"] == fresh["key"])
            .unwrap_or_else(|| panic!("{stage}: no 3-epoch record"));
        assert_eq!(outputs(record), outputs(fresh), "{stage}");
        assert_eq!(record["summary"]["continued_from_epoch"], 1, "{stage}");
        let fold = stage.trim_start_matches("fold_train:");
        assert!(
            run.stderr.contains(&format!(
                "wf fold {fold}: continued from the 1-epoch training (epochs 1 -> 3)"
            )),
            "{}",
            run.stderr
        );
    }
}
