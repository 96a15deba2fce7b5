//! The wgpu backend through the real binary (`cargo test --features wgpu --test gpu`, which
//! builds the binary with the same features): a tiny mlp and a tiny lstm train with
//! `training.device: wgpu`, their loss falls, evaluation writes metrics, and two runs into
//! empty caches agree within a tolerance (GPU results need not be bitwise). CI runs it on
//! lavapipe, Mesa's software Vulkan, so the GPU code path runs without a GPU
//! (`scripts/ci/wgpu.sh`).
#![cfg(feature = "wgpu")]

mod common;

use common::Project;
use serde_json::Value;

/// Small enough for a software Vulkan device (10-150x slower than flex).
const EXPERIMENT: &str = concat!(
    "name: exp\n",
    "seed: 11\n",
    common::synthetic_data!(),
    "model: {type: MODEL, hidden_size: 8, num_layers: 1, dropout: 0.0}\n",
    "optimizer: {type: adamw, lr: 0.01}\n",
    "training: {epochs: 4, batch_size: 32, warmup_steps: 0, device: wgpu}\n",
    "evaluation: {cost_bps: 5.0}\n",
);

/// The JSON blob `output` of the action record of `stage` in `cache`.
fn output(p: &Project, cache: &str, stage: &str, output: &str) -> Value {
    let record = std::fs::read_dir(p.path(&format!("{cache}/actions")))
        .unwrap()
        .map(|e| {
            serde_json::from_slice::<Value>(&std::fs::read(e.unwrap().path()).unwrap()).unwrap()
        })
        .find(|r| r["stage"] == stage)
        .unwrap_or_else(|| panic!("no {stage} record in {cache}"));
    let digest = record["outputs"][output]["digest"].as_str().unwrap();
    let blob = std::fs::read(p.path(&format!(
        "{cache}/objects/{}/{}",
        &digest[..2],
        &digest[2..]
    )))
    .unwrap();
    serde_json::from_slice(&blob).unwrap()
}

/// `hft build` into `cache`, which must succeed.
fn build(p: &Project, cache: &str) {
    // The Vulkan loader wants a runtime folder; any writable one will do.
    let runtime = p.path("xdg-runtime");
    std::fs::create_dir_all(&runtime).unwrap();
    let run = p.hft_env(
        &["build", "-q", "--cache-dir", cache],
        &[("XDG_RUNTIME_DIR", runtime.to_str().unwrap())],
    );
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
}

/// The leaves of two metric JSON trees differ by at most `tolerance` (relative, with an
/// absolute floor of `tolerance` near zero); anything but numbers must be equal.
fn assert_close(a: &Value, b: &Value, path: &str, tolerance: f64) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            assert_eq!(x.len(), y.len(), "{path}");
            for (key, value) in x {
                assert_close(value, &y[key], &format!("{path}/{key}"), tolerance);
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            assert_eq!(x.len(), y.len(), "{path}");
            for (i, (u, v)) in x.iter().zip(y).enumerate() {
                assert_close(u, v, &format!("{path}/{i}"), tolerance);
            }
        }
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            assert!(
                (x - y).abs() <= tolerance * x.abs().max(y.abs()).max(1.0),
                "{path}: {x} vs {y}"
            );
        }
        _ => assert_eq!(a, b, "{path}"),
    }
}

#[test]
fn tiny_models_train_and_evaluate_on_wgpu() {
    for model in ["mlp", "lstm"] {
        let p = Project::new("gpu");
        p.write("experiments/exp.yaml", &EXPERIMENT.replace("MODEL", model));
        build(&p, "one");
        let log = output(&p, "one", "train", "log");
        let epochs = log["epochs"].as_array().unwrap();
        assert_eq!(epochs.len(), 4, "{model}: {log}");
        let loss = |e: &Value| e["train_loss"].as_f64().unwrap();
        let (first, last) = (loss(&epochs[0]), loss(&epochs[epochs.len() - 1]));
        assert!(
            first.is_finite() && last < first,
            "{model}: loss {first} -> {last}"
        );
        let metrics = output(&p, "one", "evaluate", "metrics");
        for path in [
            "/price/mse",
            "/price/directional_accuracy",
            "/action/accuracy",
            "/backtest/strategy/sharpe",
        ] {
            assert!(
                metrics.pointer(path).is_some(),
                "{model}: metrics lack {path}"
            );
        }

        // A second run from an empty cache: the same results within float tolerance.
        build(&p, "two");
        let log_two = output(&p, "two", "train", "log");
        for (e, (a, b)) in epochs
            .iter()
            .zip(log_two["epochs"].as_array().unwrap())
            .enumerate()
        {
            for field in ["train_loss", "val_loss"] {
                let path = format!("{model}: epoch {} {field}", e + 1);
                assert_close(&a[field], &b[field], &path, 1e-3);
            }
        }
        let again = output(&p, "two", "evaluate", "metrics");
        for path in ["/price/mse", "/price/mae", "/action/accuracy"] {
            let (a, b) = (
                &metrics.pointer(path).unwrap(),
                &again.pointer(path).unwrap(),
            );
            assert_close(a, b, path, 1e-3);
        }
    }
}
