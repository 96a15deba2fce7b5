//! Hyperparameter search (`search:`) as build targets: trials are experiments named like
//! matrix points, a rebuilt or extended search executes only what it has not built, the
//! same seed proposes the same trials at any `-j`, ASHA promotes the best of each rung, and
//! the lock records the trials so `--locked` builds reproduce them.

mod common;

use common::Project;

/// A tiny MLP on generated bars; `{search}` is the search block.
fn experiment(search: &str) -> String {
    format!(
        "name: s
seed: 5
data:
  source: synthetic
  symbols: [SYN]
  synthetic: {{bars: 260}}
  features: [close, log_return, ma_5]
  sequence_length: 8
  prediction_horizon: 2
model: {{type: mlp, hidden_size: 8, num_layers: 1, dropout: 0.0}}
optimizer: {{type: adamw, lr: 0.001}}
training: {{epochs: 2, batch_size: 32, warmup_steps: 0, schedule: constant}}
search:
{search}"
    )
}

const RANDOM: &str = "  method: random
  trials: 3
  seed: 1
  space:
    optimizer.lr: {log_uniform: [1.0e-4, 1.0e-2]}
    model.hidden_size: {choice: [4, 8]}
";

fn trial_names(run: &common::Run) -> Vec<String> {
    let mut names: Vec<String> = run
        .states()
        .keys()
        .filter(|(_, stage)| stage == "train")
        .map(|(e, _)| e.clone())
        .collect();
    names.sort();
    names
}

#[test]
fn a_random_search_builds_its_trials_once_and_more_trials_build_only_the_new() {
    let p = Project::new("search-random");
    p.write("experiments/s.yaml", &experiment(RANDOM));
    let first = p.build();
    let names = trial_names(&first);
    assert_eq!(names.len(), 3, "{}", first.stdout);
    for n in &names {
        assert!(n.starts_with("s[model.hidden_size="), "{n}");
        assert!(n.contains(",optimizer.lr="), "{n}");
    }
    assert!(
        first
            .stdout
            .contains("search s: 3 trial(s) built, 6 epochs trained, complete; best"),
        "{}",
        first.stdout
    );
    // The lock records every trial.
    let lock = std::fs::read_to_string(p.path("hft.lock")).unwrap();
    for n in &names {
        assert!(lock.contains(n.as_str()), "{n} not in the lock");
    }
    // Rebuilt: nothing runs.
    let again = p.hft(&["build", "-j", "2"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(again.ran().is_empty(), "{:?}", again.ran());
    // Two more trials: the first three are the same and only the new ones train.
    p.write(
        "experiments/s.yaml",
        &experiment(&RANDOM.replace("trials: 3", "trials: 5")),
    );
    let more = p.build();
    let trained: Vec<String> = more
        .ran()
        .into_iter()
        .filter(|s| s.ends_with("/train"))
        .collect();
    assert_eq!(trained.len(), 2, "{trained:?}");
    let all = trial_names(&more);
    assert!(names.iter().all(|n| all.contains(n)), "{all:?}");

    // `search status` lists them with their objective and the best.
    let status = p.hft(&["search", "status", "experiments/s.yaml"]);
    assert_eq!(status.code, 0, "{}", status.stderr);
    assert!(
        status.stdout.contains("5 built, complete"),
        "{}",
        status.stdout
    );
    assert!(
        status.stdout.contains("train.selected_val_loss"),
        "{}",
        status.stdout
    );
    assert!(status.stdout.contains(", best"), "{}", status.stdout);
    // --locked in a fresh cache reproduces the same trials.
    let locked = p.hft(&["build", "--locked", "--cache-dir", "fresh"]);
    assert_eq!(locked.code, 0, "{}\n{}", locked.stdout, locked.stderr);
    let audit = p.hft(&["audit", "--locked"]);
    assert_eq!(audit.code, 0, "{}\n{}", audit.stdout, audit.stderr);
}

const TPE: &str = "  method: tpe
  trials: 6
  batch: 2
  startup: 2
  seed: 3
  space:
    optimizer.lr: {log_uniform: [1.0e-4, 1.0e-1]}
    model.hidden_size: {int: [2, 12]}
";

#[test]
fn tpe_proposes_the_same_trials_at_any_jobs_and_resumes_where_it_stopped() {
    let a = Project::new("search-tpe-a");
    a.write("experiments/s.yaml", &experiment(TPE));
    let one = a.hft(&["build", "-j", "1"]);
    assert_eq!(one.code, 0, "{}", one.stderr);
    let names = trial_names(&one);
    assert_eq!(names.len(), 6, "{}", one.stdout);

    // Built in two steps (4 trials, then 6) at another -j: the same six trials, and the
    // second step trains only the last round.
    let b = Project::new("search-tpe-b");
    b.write(
        "experiments/s.yaml",
        &experiment(&TPE.replace("trials: 6", "trials: 4")),
    );
    let first = b.hft(&["build", "-j", "3"]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert_eq!(trial_names(&first).len(), 4);
    b.write("experiments/s.yaml", &experiment(TPE));
    let second = b.hft(&["build", "-j", "3"]);
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert_eq!(trial_names(&second), names);
    let trained = second
        .ran()
        .into_iter()
        .filter(|s| s.ends_with("/train"))
        .count();
    assert_eq!(trained, 2, "{}", second.stdout);

    // A dry run of a search cut short shows the round that would run next.
    let c = Project::new("search-tpe-c");
    c.write("experiments/s.yaml", &experiment(TPE));
    let status = c.hft(&["status"]);
    assert_eq!(status.code, 0, "{}", status.stderr);
    let st = c.hft(&["search", "status"]);
    assert!(
        st.stdout.contains("0 built, 2 trial(s) to build next"),
        "{}",
        st.stdout
    );
}

#[test]
fn asha_promotes_the_best_configurations_to_larger_budgets() {
    let p = Project::new("search-asha");
    let asha = "  method: asha
  trials: 4
  seed: 2
  asha: {min: 1, max: 4, reduction: 2}
  space:
    optimizer.lr: {log_uniform: [1.0e-4, 1.0e-1]}
";
    p.write("experiments/s.yaml", &experiment(asha));
    let run = p.build();
    let names = trial_names(&run);
    let at = |b: u64| {
        names
            .iter()
            .filter(|n| n.ends_with(&format!(",training.epochs={b}]")))
            .count()
    };
    assert_eq!((at(1), at(2), at(4)), (4, 2, 1), "{names:?}");
    // A promoted trial continues from its shorter training (constant schedule): epochs
    // trained 4 x 1 + 2 x (2 - 1) + (4 - 2) = 8, against 4 + 4 + 4 = 12 retrained.
    assert!(
        run.stdout.contains("(continued from epoch"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("8 epochs trained (12 without reuse)"),
        "{}",
        run.stdout
    );
    let status = p.hft(&["search", "status", "--json"]);
    assert_eq!(status.code, 0, "{}", status.stderr);
    let doc: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(doc[0]["epochs_trained"], 8);
    let states: Vec<&str> = doc[0]["trials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["state"].as_str().unwrap())
        .collect();
    assert_eq!(
        states.iter().filter(|s| **s == "pruned at 1").count(),
        2,
        "{states:?}"
    );
    assert_eq!(
        states.iter().filter(|s| **s == "promoted").count(),
        3,
        "{states:?}"
    );
    assert_eq!(
        states
            .iter()
            .filter(|s| s.starts_with("final rung"))
            .count(),
        1,
        "{states:?}"
    );
    // The promoted rung-1 trials are the two best of rung 0.
    let trials = doc[0]["trials"].as_array().unwrap();
    let mut rung0: Vec<(f64, String)> = trials
        .iter()
        .filter(|t| t["rung"] == 0)
        .map(|t| (t["objective"].as_f64().unwrap(), t["values"].to_string()))
        .collect();
    rung0.sort_by(|a, b| a.0.total_cmp(&b.0));
    let rung1: Vec<String> = trials
        .iter()
        .filter(|t| t["rung"] == 1)
        .map(|t| t["values"].to_string())
        .collect();
    assert!(
        rung0[..2].iter().all(|(_, v)| rung1.contains(v)),
        "{rung0:?} {rung1:?}"
    );
}

#[test]
fn search_errors_name_the_file_and_key() {
    let p = Project::new("search-errors");
    p.write(
        "experiments/s.yaml",
        &experiment(
            "  method: random\n  trials: 2\n  space:\n    optimizer.lr: {log_uniform: [0, 1]}\n",
        ),
    );
    p.hft(&["build"])
        .assert_user_error(&["s.yaml:", "search.space.optimizer.lr", "positive"]);
    p.write(
        "experiments/s.yaml",
        &experiment("  method: random\n  trials: 2\n  space:\n    model.nosuch: {int: [1, 3]}\n"),
    );
    p.hft(&["build"]).assert_user_error(&["nosuch"]);
    p.write(
        "experiments/s.yaml",
        &experiment(
            "  method: random\n  trials: 1\n  objective: sharpee\n  space:\n    optimizer.lr: {uniform: [0.001, 0.01]}\n",
        ),
    );
    p.hft(&["build"])
        .assert_user_error(&["search.objective", "sharpee"]);
}
