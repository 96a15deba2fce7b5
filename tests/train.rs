//! The training stages through the real binary: determinism, what re-runs after which
//! edit, failures that cache nothing, and the results table.

mod common;

use common::Project;

const EXPERIMENT: &str = "\
name: exp
seed: 3
data:
  source: synthetic
  symbols: [SYN]
  synthetic: {bars: 400}
  features: [close, log_return, rsi_14]
  sequence_length: 8
  prediction_horizon: 2
model: {type: lstm, hidden_size: 8, num_layers: 2, dropout: 0.1}
optimizer: {type: adamw, lr: 0.001}
training: {epochs: 2, batch_size: 16, warmup_steps: 2}
evaluation: {cost_bps: 5.0}
";

fn project(text: &str) -> Project {
    let p = Project::new("train");
    p.write("experiments/exp.yaml", text);
    p
}

/// Output digests of every train action in the store: checkpoint and log.
fn train_outputs(p: &Project, cache: &str) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(p.path(&format!("{cache}/actions"))).unwrap() {
        let record: serde_json::Value =
            serde_json::from_slice(&std::fs::read(entry.unwrap().path()).unwrap()).unwrap();
        if record["stage"] == "train" {
            for name in ["checkpoint", "log"] {
                out.push(
                    record["outputs"][name]["digest"]
                        .as_str()
                        .unwrap()
                        .to_string(),
                );
            }
        }
    }
    out
}

fn build_with_threads(p: &Project, cache: &str, threads: &str) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hft"))
        .args(["build", "-q", "--cache-dir", cache])
        .current_dir(&p.dir)
        .env("RAYON_NUM_THREADS", threads)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn checkpoints_are_bit_identical_across_caches_and_thread_counts() {
    for model in ["mlp", "lstm", "transformer"] {
        let p = project(&EXPERIMENT.replace("type: lstm", &format!("type: {model}")));
        build_with_threads(&p, "one", "1");
        build_with_threads(&p, "two", "2");
        build_with_threads(&p, "again", "2");
        let (one, two, again) = (
            train_outputs(&p, "one"),
            train_outputs(&p, "two"),
            train_outputs(&p, "again"),
        );
        assert_eq!(one.len(), 2, "{model}");
        assert_eq!(one, two, "{model}: 1 vs 2 threads");
        assert_eq!(two, again, "{model}: two empty caches");
    }
}

fn reruns_after(edit: (&str, &str)) -> Vec<String> {
    let p = project(EXPERIMENT);
    p.build();
    p.write("experiments/exp.yaml", &EXPERIMENT.replace(edit.0, edit.1));
    let mut ran = p.build().ran();
    ran.sort();
    ran
}

#[test]
fn learning_rate_reruns_train_and_evaluate() {
    assert_eq!(
        reruns_after(("lr: 0.001", "lr: 0.002")),
        ["exp/evaluate", "exp/train"]
    );
}

#[test]
fn cost_reruns_evaluate_only() {
    assert_eq!(
        reruns_after(("cost_bps: 5.0", "cost_bps: 10")),
        ["exp/evaluate"]
    );
}

#[test]
fn hidden_size_reruns_init_train_and_evaluate() {
    assert_eq!(
        reruns_after(("hidden_size: 8", "hidden_size: 12")),
        ["exp/evaluate", "exp/init", "exp/train"]
    );
}

#[test]
fn settings_of_other_model_types_are_errors() {
    // num_heads is a transformer setting; this experiment trains an LSTM.
    let p = project(&EXPERIMENT.replace("dropout: 0.1}", "dropout: 0.1, num_heads: 2}"));
    let run = p.hft(&["build"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("model.num_heads: read by transformer and dit, not by lstm"),
        "{}",
        run.stderr
    );
}

#[test]
fn diverged_training_fails_its_stage_and_caches_nothing() {
    let p = project(
        &EXPERIMENT
            .replace("lr: 0.001", "lr: 1.0e30")
            .replace("warmup_steps: 2}", "warmup_steps: 0, grad_clip: 0}"),
    );
    let run = p.hft(&["build"]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("exp/train"), "{}", run.stderr);
    assert!(run.stderr.contains("diverged"), "{}", run.stderr);
    assert!(
        train_outputs(&p, "cache").is_empty(),
        "nothing cached for train"
    );
    let states = run.states();
    assert_eq!(
        states[&("exp".to_string(), "evaluate".to_string())],
        "skipped"
    );
}

#[test]
fn build_prints_results_and_stores_metrics() {
    let p = project(EXPERIMENT);
    let run = p.build();
    let header = run
        .stdout
        .lines()
        .find(|l| l.starts_with("experiment "))
        .unwrap_or_else(|| panic!("no results table:\n{}", run.stdout));
    for column in [
        "model",
        "optimizer",
        "ran/cached",
        "val loss",
        "dir acc",
        "sharpe",
        "buy&hold",
    ] {
        assert!(header.contains(column), "{header}");
    }
    let row = run
        .stdout
        .lines()
        .find(|l| l.starts_with("exp ") && l.contains("adamw"))
        .unwrap();
    assert!(
        row.contains("lstm") && row.contains("adamw") && row.contains("6/0"),
        "{row}"
    );
    // The metrics blob is versioned JSON with every figure the issue names.
    let metrics = std::fs::read_dir(p.path("cache/actions"))
        .unwrap()
        .map(|e| {
            serde_json::from_slice::<serde_json::Value>(&std::fs::read(e.unwrap().path()).unwrap())
                .unwrap()
        })
        .find(|r| r["stage"] == "evaluate")
        .unwrap();
    let digest = metrics["outputs"]["metrics"]["digest"].as_str().unwrap();
    let blob =
        std::fs::read(p.path(&format!("cache/objects/{}/{}", &digest[..2], &digest[2..]))).unwrap();
    let m: serde_json::Value = serde_json::from_slice(&blob).unwrap();
    assert_eq!(m["metrics_version"], 4);
    for path in [
        "/price/mse",
        "/price/mae",
        "/price/directional_accuracy",
        "/price/persistence_mse",
        "/action/accuracy",
        "/action/predicted/hold",
        "/backtest/strategy/sharpe",
        "/backtest/strategy/max_drawdown",
        "/backtest/strategy/trades",
        "/backtest/buy_and_hold/total_return",
    ] {
        assert!(m.pointer(path).is_some(), "metrics lack {path}: {m}");
    }
    // Epoch lines are printed when not on a terminal.
    assert!(run.stderr.contains("exp: epoch 2/2"), "{}", run.stderr);
}
