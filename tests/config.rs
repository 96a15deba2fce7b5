//! Templates, overrides, provenance and sweeps through the real binary.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use common::Project;

/// Runs hft in the repository itself (templates and examples as shipped).
fn hft_in_repo(args: &[&str]) -> common::Run {
    let out = Command::new(env!("CARGO_BIN_EXE_hft"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    common::Run::from(out)
}

fn yaml_files(dir: &Path) -> Vec<std::path::PathBuf> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .map(|e| e.unwrap().into_path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect()
}

#[test]
fn every_template_resolves_and_is_used_by_an_example() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut used = BTreeSet::new();
    let examples: Vec<_> = yaml_files(&root.join("experiments"))
        .into_iter()
        .chain(yaml_files(&root.join("examples")))
        .collect();
    for file in &examples {
        let rel = file.strip_prefix(root).unwrap().to_str().unwrap();
        let run = hft_in_repo(&["config", "show", rel]);
        assert_eq!(run.code, 0, "{rel}: {}", run.stderr);
        for line in run.stdout.lines() {
            if let Some(origin) = line.split("# ").nth(1)
                && origin.starts_with("templates/")
            {
                used.insert(origin.split(':').next().unwrap().to_string());
            }
        }
    }
    for template in yaml_files(&root.join("templates")) {
        let rel = template
            .strip_prefix(root)
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            used.contains(&rel),
            "{rel} is used by no example experiment"
        );
    }
}

const TEMPLATE: &str = "\
data:
  source: synthetic
  symbols: [SYN]
  synthetic: {bars: 300}
  features: [close, log_return]
  sequence_length: 8
  prediction_horizon: 2
model: {type: mlp, hidden_size: 4, num_layers: 1, dropout: 0.0}
training: {max_steps: 3, batch_size: 16, warmup_steps: 1}
";

fn project(experiment: &str) -> Project {
    let p = Project::new("config");
    p.write("templates/tiny.yaml", TEMPLATE);
    p.write("experiments/exp.yaml", experiment);
    p
}

#[test]
fn config_show_names_where_every_value_came_from() {
    let p = project("extends: templates/tiny.yaml\nseed: 5\nmodel: {hidden_size: 6}\n");
    let run = p.hft(&["config", "show", "exp", "--set", "optimizer.lr=0.02"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let line = |key: &str| {
        run.stdout
            .lines()
            .find(|l| l.starts_with(&format!("{key}:")))
            .unwrap_or_else(|| panic!("no {key} in\n{}", run.stdout))
            .to_string()
    };
    assert!(
        line("seed").ends_with("# experiments/exp.yaml:2"),
        "{}",
        line("seed")
    );
    assert!(line("model.hidden_size").contains("# experiments/exp.yaml:3"));
    assert!(
        line("model.type").contains("# templates/tiny.yaml:8"),
        "{}",
        line("model.type")
    );
    assert!(
        line("optimizer.lr").contains("0.02")
            && line("optimizer.lr").contains("# --set optimizer.lr=0.02")
    );
    assert!(line("evaluation.cost_bps").ends_with("# default"));
}

/// `config show` prints what the selected types read, their defaults filled in, and
/// nothing of the other types; a setting of another type is an error naming its owners.
#[test]
fn config_show_prints_the_options_of_the_selected_types() {
    let p = project("extends: templates/tiny.yaml\nmodel: {type: transformer, num_heads: 2}\n");
    let run = p.hft(&["config", "show", "exp", "--set", "optimizer.type=lion"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let line = |key: &str| {
        run.stdout
            .lines()
            .find(|l| l.starts_with(&format!("{key}:")))
            .unwrap_or_else(|| panic!("no {key} in\n{}", run.stdout))
            .to_string()
    };
    assert!(line("model.num_heads").contains("# experiments/exp.yaml:2"));
    let pooling = line("model.pooling");
    assert!(
        pooling.contains("\"last\"") && pooling.ends_with("# default"),
        "{pooling}"
    );
    assert!(line("optimizer.lion.betas").contains("[0.9,0.99]"));
    assert!(!run.stdout.contains("optimizer.betas"), "{}", run.stdout);
    let plain = p.hft(&["config", "show", "exp", "--set", "model.type=mlp"]);
    assert_eq!(plain.code, 2, "{}", plain.stdout);
    assert!(
        plain.stderr.contains(
            "experiments/exp.yaml:2:28: model.num_heads: read by transformer and dit, not by mlp"
        ),
        "{}",
        plain.stderr
    );
}

#[test]
fn overrides_rerun_what_they_change_and_bad_ones_are_clear_errors() {
    let p = project("extends: templates/tiny.yaml\n");
    p.build();
    let run = p.hft(&["build", "--set", "optimizer.lr=0.005"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let mut ran = run.ran();
    ran.sort();
    assert_eq!(ran, ["exp/evaluate", "exp/train"]);

    let bad = p.hft(&["build", "--set", "optimizer.lrate=1"]);
    assert_eq!(bad.code, 2);
    assert!(
        bad.stderr
            .contains("--set optimizer.lrate=1: optimizer.lrate: unknown field"),
        "{}",
        bad.stderr
    );
    assert!(bad.stderr.contains("did you mean `lr`?"), "{}", bad.stderr);
    let bad = p.hft(&["build", "--set", "training.batch_size=big"]);
    assert_eq!(bad.code, 2);
    assert!(
        bad.stderr
            .contains("--set training.batch_size=big: training.batch_size: invalid type"),
        "{}",
        bad.stderr
    );
    let bad = p.hft(&["build", "--set", "model.hidden_size"]);
    assert_eq!(bad.code, 2);
    assert!(bad.stderr.contains("expected PATH=VALUE"), "{}", bad.stderr);
}

#[test]
fn template_cycles_and_missing_templates_are_errors_naming_the_chain() {
    let p = project("extends: templates/a.yaml\n");
    p.write("templates/a.yaml", "extends: templates/b.yaml\n");
    p.write("templates/b.yaml", "extends: templates/a.yaml\n");
    let run = p.hft(&["build"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("template cycle: experiments/exp.yaml -> templates/a.yaml -> templates/b.yaml -> templates/a.yaml"),
        "{}",
        run.stderr
    );
    p.write("templates/b.yaml", "extends: templates/gone.yaml\n");
    let run = p.hft(&["build"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("templates/b.yaml:1:"), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("cannot read template templates/gone.yaml"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_sweep_shares_stages_and_resumes_with_only_the_missing_points() {
    let sweep = "\
extends: templates/tiny.yaml
name: sw
matrix:
  optimizer.lr: [0.001, 0.002, 0.003]
  model.hidden_size: [4, 8]
";
    let p = project(sweep);
    // Half the sweep first (as a build killed halfway would leave it).
    let first = p.hft(&["build", "--filter", "model.hidden_size=4"]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    let built_first: BTreeSet<String> = first.ran().into_iter().collect();
    assert_eq!(
        built_first
            .iter()
            .filter(|s| s.ends_with("/dataset"))
            .count(),
        1
    );
    let full = p.build();
    let names: BTreeSet<String> = full.states().keys().map(|(e, _)| e.clone()).collect();
    assert_eq!(names.len(), 6, "{names:?}");
    assert!(names.contains("sw[optimizer.lr=0.002,model.hidden_size=8]"));
    let ran = full.ran();
    assert!(
        ran.iter().all(|s| s.contains("hidden_size=8")),
        "only missing points run: {ran:?}"
    );
    // One dataset for all six: the data stages ran once, in the first build.
    assert!(
        !ran.iter()
            .any(|s| s.ends_with("/dataset") || s.ends_with("/features"))
    );
    // One init per width: the three learning rates share it.
    assert_eq!(
        ran.iter().filter(|s| s.ends_with("/init")).count(),
        1,
        "{ran:?}"
    );
    assert!(p.build().ran().is_empty());
}

#[test]
fn a_sweep_built_in_parallel_gives_the_sequential_results() {
    // Trainings without dropout run beside each other, each on its share of the cores;
    // those with dropout take burn's RNG in turn. Either way, the same bits as one at a time.
    let sweep = "\
extends: templates/tiny.yaml
name: par
matrix:
  seed: [1, 2, 3]
  model.dropout: [0.0, 0.2]
  model.type: [mlp, lstm]
";
    let p = project(sweep);
    let one = p.hft(&["build", "-j", "1", "--cache-dir", "one"]);
    assert_eq!(one.code, 0, "{}", one.stderr);
    assert_eq!(one.states().len(), 12 * 6, "{}", one.stdout);
    // The lock the sequential build wrote: every key and output digest.
    let four = p.hft(&["build", "-j", "4", "--locked", "--cache-dir", "four"]);
    assert_eq!(four.code, 0, "{}\n{}", four.stdout, four.stderr);
    assert!(four.ran().iter().any(|s| s.ends_with("/train")));
}

#[test]
fn hft_new_writes_a_buildable_experiment_from_a_template() {
    let p = project("extends: templates/tiny.yaml\n");
    let run = p.hft(&["new", "fresh", "--template", "tiny"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let text = std::fs::read_to_string(p.path("experiments/fresh.yaml")).unwrap();
    assert!(text.contains("extends: templates/tiny.yaml"), "{text}");
    let run = p.hft(&["build", "experiments/fresh.yaml"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let again = p.hft(&["new", "fresh", "--template", "tiny"]);
    assert_eq!(again.code, 2);
    assert!(again.stderr.contains("already exists"));
    let typo = p.hft(&["new", "other", "--template", "tinny"]);
    assert_eq!(typo.code, 2);
    assert!(
        typo.stderr.contains("did you mean `tiny`?"),
        "{}",
        typo.stderr
    );
}

#[test]
fn a_killed_sweep_resumes_without_redoing_finished_points() {
    use std::io::{BufRead, BufReader};
    let sweep = "\
extends: templates/tiny.yaml
name: sw
matrix:
  model.hidden_size: [4, 8, 12, 16]
";
    let p = project(sweep);
    let mut child = Command::new(env!("CARGO_BIN_EXE_hft"))
        .args(["build", "-q", "-j", "1"])
        .current_dir(&p.dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait for the first finished point, then SIGKILL the build.
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    let mut finished = String::new();
    while reader.read_line(&mut line).unwrap() > 0 {
        if line.contains(" ran of ") {
            finished = line.split(" (").next().unwrap().to_string();
            break;
        }
        line.clear();
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(!finished.is_empty(), "no point finished before the kill");
    let resumed = p.build();
    let states = resumed.states();
    for ((experiment, stage), state) in &states {
        if *experiment == finished {
            assert_eq!(
                state, "cached",
                "{experiment}/{stage} re-ran after the kill"
            );
        }
    }
    assert_eq!(
        states.keys().map(|(e, _)| e).collect::<BTreeSet<_>>().len(),
        4
    );
}
