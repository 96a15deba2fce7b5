//! `hft build --executor slurm` against a real Slurm (`scripts/ci/slurm.sh` starts a
//! one-node cluster on loopback), and `hft exec-stage`, the command its jobs run.
//!
//! The tests that need Slurm skip, saying so, where `sinfo` is missing or no node is idle.

mod common;

use std::collections::BTreeMap;
use std::process::Command;

use common::Project;

/// A 2-point sweep over `optimizer.lr`: a tiny mlp on synthetic bars.
const SWEEP: &str = "\
name: sweep
data:
  source: synthetic
  symbols: [SYN]
  synthetic: {bars: 300}
  features: [close, log_return, rsi_14]
  sequence_length: 8
  prediction_horizon: 2
model: {type: mlp}
optimizer: {type: adamw, lr: 0.001}
training:
  max_steps: 6
  batch_size: 16
  warmup_steps: 1
  resources: {cpus: 1, mem: 500M, time: \"10:00\"}
matrix:
  optimizer.lr: [0.001, 0.002]
";

/// Whether a Slurm with an idle node answers here; says why not when it does not.
fn slurm_ready() -> bool {
    let out = Command::new("sinfo").args(["-h", "-o", "%t"]).output();
    match out {
        Err(_) => {
            eprintln!("skipped: `sinfo` is not on PATH (scripts/ci/slurm.sh starts a Slurm)");
            false
        }
        Ok(o) => {
            let states = String::from_utf8_lossy(&o.stdout);
            // Busy (another test's jobs) is as good as idle: the node is up.
            let idle = states.lines().any(|l| {
                // A suffix (`idle*`: not responding, `idle~`: powered off) is not up.
                matches!(
                    l.trim(),
                    "idle" | "mix" | "mixed" | "alloc" | "allocated" | "comp"
                )
            });
            if !idle {
                eprintln!(
                    "skipped: no Slurm node up (sinfo says `{}`; scripts/ci/slurm.sh starts one)",
                    states.trim()
                );
            }
            idle
        }
    }
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}):\n{text}"))
}

/// (experiment, stage) -> the stage's JSON object from `hft build --json`.
fn stages(doc: &serde_json::Value) -> BTreeMap<(String, String), serde_json::Value> {
    let mut out = BTreeMap::new();
    for e in doc["experiments"].as_array().unwrap() {
        for s in e["stages"].as_array().unwrap() {
            let key = (
                e["name"].as_str().unwrap().to_string(),
                s["id"].as_str().unwrap().to_string(),
            );
            out.insert(key, s.clone());
        }
    }
    out
}

/// The train key of each experiment from `hft build --dry-run --json`.
fn keys(p: &Project, args: &[&str]) -> BTreeMap<(String, String), serde_json::Value> {
    let mut all = vec!["build", "--dry-run", "--json"];
    all.extend_from_slice(args);
    let run = p.hft(&all);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    stages(&json(&run.stdout))
        .into_iter()
        .map(|(k, s)| (k, s["key"].clone()))
        .collect()
}

#[test]
fn a_sweep_trains_as_slurm_jobs_with_the_results_of_a_local_build() {
    if !slurm_ready() {
        return;
    }
    let p = Project::new("slurm-sweep");
    p.write("experiments/sweep.yaml", SWEEP);
    let slurm = p.hft(&[
        "build",
        "--executor",
        "slurm",
        "-j",
        "2",
        "--json",
        "--cache-dir",
        "shared-cache",
    ]);
    assert_eq!(slurm.code, 0, "{}\n{}", slurm.stdout, slurm.stderr);
    let local = p.hft(&["build", "-j", "2", "--json", "--cache-dir", "local-cache"]);
    assert_eq!(local.code, 0, "{}\n{}", local.stdout, local.stderr);
    let (on_slurm, here) = (stages(&json(&slurm.stdout)), stages(&json(&local.stdout)));
    assert_eq!(on_slurm.len(), 12);
    let mut job_ids = Vec::new();
    for (id, stage) in &on_slurm {
        let twin = &here[id];
        assert_eq!(stage["key"], twin["key"], "{id:?}");
        assert_eq!(stage["outputs"], twin["outputs"], "{id:?}: outputs differ");
        assert!(twin.get("slurm_job").is_none());
        if id.1 == "train" {
            assert_eq!(stage["state"], "ran", "{id:?}");
            let job = stage["slurm_job"]
                .as_u64()
                .unwrap_or_else(|| panic!("{stage}"));
            let key = stage["key"].as_str().unwrap();
            let log = p.path(&format!("shared-cache/slurm/{key}-{job}.log"));
            let text = std::fs::read_to_string(&log).unwrap();
            assert!(text.contains("/train: stored k1-"), "{text}");
            assert!(
                slurm
                    .stderr
                    .contains(&format!("submitted as Slurm job {job}"))
            );
            job_ids.push(job);
        } else {
            assert!(stage.get("slurm_job").is_none(), "{id:?} ran on Slurm");
        }
    }
    assert_eq!(job_ids.len(), 2);
    assert_ne!(job_ids[0], job_ids[1]);

    // The text report names the job; a second build finds everything cached.
    let again = p.hft(&[
        "build",
        "--executor",
        "slurm",
        "--cache-dir",
        "shared-cache",
    ]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(again.ran().is_empty(), "{}", again.stdout);
    assert!(!again.stderr.contains("submitted"), "{}", again.stderr);

    // With `evaluate` on Slurm too, in a fresh cache, the text lines name each job.
    let both = p.hft(&[
        "build",
        "--executor",
        "slurm",
        "--slurm-stages",
        "train,evaluate",
        "--cache-dir",
        "other-cache",
    ]);
    assert_eq!(both.code, 0, "{}\n{}", both.stdout, both.stderr);
    let on_jobs: Vec<&str> = both
        .stdout
        .lines()
        .filter(|l| l.contains("(slurm job "))
        .collect();
    assert_eq!(on_jobs.len(), 4, "{}", both.stdout);
    assert_eq!(
        on_jobs
            .iter()
            .filter(|l| l.trim().starts_with("evaluate"))
            .count(),
        2
    );
}

#[test]
fn a_search_runs_its_trials_as_slurm_jobs_and_proposes_what_a_local_build_does() {
    if !slurm_ready() {
        return;
    }
    let p = Project::new("slurm-search");
    let search = SWEEP.replace(
        "matrix:\n  optimizer.lr: [0.001, 0.002]\n",
        "search:\n  method: tpe\n  trials: 4\n  batch: 2\n  startup: 2\n  seed: 1\n  \
         space:\n    optimizer.lr: {log_uniform: [1.0e-4, 1.0e-2]}\n",
    );
    p.write("experiments/search.yaml", &search);
    let slurm = p.hft(&[
        "build",
        "--executor",
        "slurm",
        "-j",
        "2",
        "--json",
        "--cache-dir",
        "shared-cache",
    ]);
    assert_eq!(slurm.code, 0, "{}\n{}", slurm.stdout, slurm.stderr);
    let local = p.hft(&["build", "--json", "--cache-dir", "local-cache"]);
    assert_eq!(local.code, 0, "{}\n{}", local.stdout, local.stderr);
    let (on_slurm, here) = (stages(&json(&slurm.stdout)), stages(&json(&local.stdout)));
    let trainings: Vec<&(String, String)> = on_slurm
        .keys()
        .filter(|(_, stage)| stage == "train")
        .collect();
    assert_eq!(trainings.len(), 4, "{}", slurm.stdout);
    for (id, stage) in &on_slurm {
        let twin = &here[id];
        assert_eq!(stage["outputs"], twin["outputs"], "{id:?}: outputs differ");
        if id.1 == "train" {
            assert!(stage["slurm_job"].as_u64().is_some(), "{stage}");
        }
    }
}

#[test]
fn two_one_cpu_trainings_run_as_jobs_at_the_same_time() {
    if !slurm_ready() {
        return;
    }
    // Long enough (a few seconds each) for `squeue` to see both running.
    let p = Project::new("slurm-overlap");
    p.write(
        "experiments/sweep.yaml",
        &SWEEP.replace("max_steps: 6", "max_steps: 400"),
    );
    let mut build = p.spawn_quiet(&["build", "--executor", "slurm", "-j", "2"]);
    let mut most_running = 0;
    let started = std::time::Instant::now();
    while build.try_wait().unwrap().is_none() {
        let out = Command::new("squeue")
            .args(["-h", "-t", "RUNNING", "-o", "%i"])
            .output()
            .unwrap();
        let running = String::from_utf8_lossy(&out.stdout).lines().count();
        most_running = most_running.max(running);
        assert!(started.elapsed().as_secs() < 600, "the build did not end");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(build.wait().unwrap().success());
    assert!(
        most_running >= 2,
        "two 1-CPU jobs never ran together (at most {most_running}): does the node give each \
         job the whole node's memory? (DefMemPerCPU in scripts/ci/slurm.sh)"
    );
}

#[test]
fn a_failed_job_is_reported_with_its_id_and_log_and_caches_nothing() {
    if !slurm_ready() {
        return;
    }
    let p = Project::new("slurm-fail");
    // Diverges inside the job: the job's hft exits 1.
    p.write(
        "experiments/sweep.yaml",
        &SWEEP.replace("lr: [0.001, 0.002]", "lr: [1.0e30]"),
    );
    let run = p.hft(&["build", "--executor", "slurm"]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("FAILED   Slurm job "), "{}", run.stdout);
    // The log's tail once, with the error, not again in the stage line.
    assert!(!run.stdout.contains("    | "), "{}", run.stdout);
    assert!(
        run.stderr.contains("FAILED (exit code 1:0)"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("training diverged"), "{}", run.stderr);
    assert!(run.stderr.contains("    | error: "), "{}", run.stderr);
    let records = p.action_records();
    assert_eq!(
        records.len(),
        4,
        "only the data stages and init: {records:?}"
    );

    // A job cancelled while it runs is reported as such, with its log.
    let p = Project::new("slurm-cancel");
    p.write("experiments/sweep.yaml", &SWEEP.replace(", 0.002]", "]"));
    let fake = p.path("cancel-self.sh");
    std::fs::write(
        &fake,
        "#!/bin/sh\necho about to cancel\nscancel \"$SLURM_JOB_ID\"\nsleep 60\n",
    )
    .unwrap();
    Command::new("chmod").arg("+x").arg(&fake).status().unwrap();
    let fake = fake.display().to_string();
    let run = p.hft_env(
        &["build", "--executor", "slurm"],
        &[("HFT_SLURM_EXE", fake.as_str())],
    );
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("CANCELLED"), "{}", run.stderr);
    assert!(
        run.stderr.contains("    | about to cancel"),
        "{}",
        run.stderr
    );
    assert!(
        !p.action_records().iter().any(|r| {
            let text = std::fs::read_to_string(p.path(&format!("cache/actions/{r}"))).unwrap();
            text.contains("\"stage\": \"train\"") || text.contains("\"stage\":\"train\"")
        }),
        "a train record was stored"
    );
}

#[test]
fn exec_stage_executes_only_the_key_it_recomputes() {
    let p = Project::new("exec-stage");
    p.write("experiments/sweep.yaml", SWEEP);
    let data = p.hft(&["build", "--until", "init"]);
    assert_eq!(data.code, 0, "{}", data.stderr);
    let key_of = |name: &str| {
        keys(&p, &[])[&(name.to_string(), "train".to_string())]
            .as_str()
            .unwrap()
            .to_string()
    };
    let point = "sweep[optimizer.lr=0.001]";
    let key = key_of(point);
    let cache = p.path("cache").display().to_string();
    let exec = |key: &str, extra: &[&str]| {
        let mut args = vec![
            "exec-stage",
            "--key",
            key,
            "--file",
            "experiments/sweep.yaml",
            "--experiment",
            point,
            "--stage",
            "train",
            "--cache-dir",
            &cache,
        ];
        args.extend_from_slice(extra);
        p.hft(&args)
    };
    let before = p.action_records();

    // A key the job does not compute (the config changed after submission): refused.
    let wrong = exec("k1-0000", &[]);
    assert_eq!(wrong.code, 2, "{}\n{}", wrong.stdout, wrong.stderr);
    assert!(
        wrong.stderr.contains("the key computed here is"),
        "{}",
        wrong.stderr
    );
    assert!(
        wrong.stderr.contains("nothing executed"),
        "{}",
        wrong.stderr
    );
    let changed = exec(&key, &["--set", "training.max_steps=7"]);
    assert_eq!(changed.code, 2, "{}", changed.stderr);
    assert_eq!(p.action_records(), before);

    // The right key: executed and stored; the build then finds it cached.
    let ran = exec(&key, &[]);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    assert!(
        ran.stdout.contains(&format!("stored {key}")),
        "{}",
        ran.stdout
    );
    assert!(p.path(&format!("cache/actions/{key}.json")).exists());
    let again = exec(&key, &[]);
    assert_eq!(again.code, 0);
    assert!(
        again.stdout.contains("already in the cache"),
        "{}",
        again.stdout
    );
    let build = p.hft(&["build"]);
    assert_eq!(build.code, 0, "{}", build.stderr);
    let states = build.states();
    assert_eq!(states[&(point.to_string(), "train".to_string())], "cached");

    // Upstream stages missing from the store: the job says the cache is not shared.
    let empty = p.path("empty-cache").display().to_string();
    let lost = p.hft(&[
        "exec-stage",
        "--key",
        &key,
        "--file",
        "experiments/sweep.yaml",
        "--experiment",
        point,
        "--stage",
        "train",
        "--cache-dir",
        &empty,
    ]);
    assert_eq!(lost.code, 1, "{}", lost.stderr);
    assert!(
        lost.stderr.contains("are not in the cache"),
        "{}",
        lost.stderr
    );
}

#[test]
fn resources_do_not_change_any_key_and_are_checked() {
    let p = Project::new("slurm-resources");
    p.write("experiments/sweep.yaml", SWEEP);
    let with = keys(&p, &[]);
    let without = keys(&p, &["--set", "training.resources=null"]);
    let other = keys(
        &p,
        &[
            "--set",
            "training.resources={cpus: 8, gpus: 2, partition: gpu}",
        ],
    );
    assert_eq!(with.len(), 12);
    assert_eq!(with, without);
    assert_eq!(with, other);

    // YAML integers are minutes and megabytes, as sbatch reads them.
    let numbers = keys(
        &p,
        &[
            "--set",
            "training.resources.time=30",
            "--set",
            "training.resources.mem=4096",
        ],
    );
    assert_eq!(with, numbers);
    let bad = p.hft(&["build", "--set", "training.resources.time=1.5"]);
    assert_eq!(bad.code, 2);
    assert!(bad.stderr.contains("or a whole number"), "{}", bad.stderr);
    let bad = p.hft(&["build", "--set", "training.resources.time=2h"]);
    assert_eq!(bad.code, 2);
    assert!(
        bad.stderr.contains("training.resources.time"),
        "{}",
        bad.stderr
    );
    let bad = p.hft(&["build", "--set", "training.resources.gpu=1"]);
    assert_eq!(bad.code, 2);
    assert!(bad.stderr.contains("gpu"), "{}", bad.stderr);
}

#[test]
fn an_unknown_executor_is_bad_input() {
    let p = Project::new("slurm-executor");
    p.write("experiments/sweep.yaml", SWEEP);
    let run = p.hft_env(&["build"], &[("HFT_EXECUTOR", "kubernetes")]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("HFT_EXECUTOR=`kubernetes`"),
        "{}",
        run.stderr
    );
    let run = p.hft(&["build", "--executor", "pbs"]);
    assert_eq!(run.code, 2);
}
