//! Bad configs and bad data: a clear message naming file, line and key, exit code 2,
//! never a panic.

mod common;

use common::{Project, csv_bars};

const GOOD: &str = common::LOCAL_EXPERIMENT;

/// Writes `text` as the only experiment and expects `hft build` to fail with exit code 2
/// and every `needles` in stderr.
fn expect_error(text: &str, needles: &[&str]) {
    let p = Project::with_local_data("errors", text);
    p.hft(&["build"]).assert_user_error(needles);
    assert!(
        p.path("cache/actions").read_dir().unwrap().next().is_none(),
        "nothing built"
    );
}

#[test]
fn good_config_builds() {
    Project::with_local_data("errors", GOOD).build();
}

#[test]
fn unknown_key_suggests_a_fix() {
    expect_error(
        &GOOD.replace("  sequence_length: 5", "  sequence_lenght: 5"),
        &[
            "experiments/exp.yaml:7:3: data.sequence_lenght: unknown field",
            "did you mean `sequence_length`?",
        ],
    );
}

#[test]
fn wrong_type_names_file_line_column_and_key() {
    expect_error(
        &GOOD.replace("sequence_length: 5", "sequence_length: five"),
        &["experiments/exp.yaml:7:3: data.sequence_length: invalid type"],
    );
}

#[test]
fn negative_ratio_is_rejected() {
    expect_error(
        &GOOD.replace(
            "  prediction_horizon: 1",
            "  prediction_horizon: 1\n  split: {train: 1.2, val: -0.1, test: -0.1}",
        ),
        &["experiments/exp.yaml:9:", "data.split.", "between 0 and 1"],
    );
}

#[test]
fn splits_not_summing_to_one_are_rejected() {
    expect_error(
        &GOOD.replace(
            "  prediction_horizon: 1",
            "  prediction_horizon: 1\n  split: {train: 0.5, val: 0.2, test: 0.2}",
        ),
        &["experiments/exp.yaml:9:3: data.split: train + val + test must sum to 1"],
    );
}

#[test]
fn zero_sequence_length_is_rejected() {
    expect_error(
        &GOOD.replace("sequence_length: 5", "sequence_length: 0"),
        &["experiments/exp.yaml:7:3: data.sequence_length: must be between 1 and 100000"],
    );
}

#[test]
fn unknown_feature_is_rejected_with_suggestion() {
    expect_error(
        &GOOD.replace("[close, log_return]", "[close, log_retrun]"),
        &[
            "experiments/exp.yaml:6:",
            "data.features[1]: unknown feature `log_retrun`",
            "did you mean `log_return`?",
        ],
    );
}

#[test]
fn unknown_model_type_is_rejected() {
    expect_error(
        &GOOD.replace("type: mlp", "type: lstmm"),
        &[
            "experiments/exp.yaml:9:",
            "model.type: unknown model type `lstmm`; did you mean `lstm`?",
        ],
    );
}

#[test]
fn yaml_syntax_error_names_the_position() {
    expect_error("data:\n  symbols: [AAA\n", &["experiments/exp.yaml:"]);
}

#[test]
fn non_mapping_document_is_rejected() {
    expect_error(
        "- just\n- a list\n",
        &["experiments/exp.yaml:1:1: an experiment file must be a mapping"],
    );
}

#[test]
fn missing_data_file_is_named() {
    expect_error(
        &GOOD.replace("symbols: [AAA]", "symbols: [AAA, ZZZ]"),
        &[
            "experiments/exp.yaml:5:",
            "data.symbols[1]",
            "no data file for `ZZZ` (looked for ZZZ.csv, ZZZ.parquet",
        ],
    );
}

#[test]
fn duplicate_experiment_names_are_rejected() {
    let p = Project::with_local_data("errors", GOOD);
    std::fs::rename(p.path("experiments/exp.yaml"), p.path("experiments/a.yaml")).unwrap();
    p.write("experiments/b.yaml", GOOD);
    let run = p.hft(&["build"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("experiment name `exp` is also used by"),
        "{}",
        run.stderr
    );
}

#[test]
fn no_experiments_is_an_error() {
    let p = Project::new("errors");
    let run = p.hft(&["build"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("no experiment files"), "{}", run.stderr);
}

/// A CSV row that breaks an OHLC rule fails ingest with the file, line and column.
#[test]
fn bad_csv_row_is_named() {
    let p = Project::new("errors");
    let csv = csv_bars(120, 3);
    let mut lines: Vec<String> = csv.lines().map(str::to_string).collect();
    let mut fields: Vec<String> = lines[17].split(',').map(str::to_string).collect();
    fields[2] = "0.5".to_string(); // high below open and close
    lines[17] = fields.join(",");
    p.write("trainingdata/AAA.csv", &(lines.join("\n") + "\n"));
    p.write("experiments/exp.yaml", GOOD);
    let run = p.hft(&["build"]);
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("AAA.csv:18"), "{}", run.stdout);
    assert!(run.stdout.to_lowercase().contains("high"), "{}", run.stdout);
    assert!(!run.stderr.contains("panicked"));
}

#[test]
fn garbage_files_never_panic() {
    let p = Project::new("errors");
    p.write(
        "trainingdata/AAA.csv",
        "\u{0}\u{1}not,a,csv\n\"unterminated",
    );
    p.write("experiments/exp.yaml", GOOD);
    let run = p.hft(&["build"]);
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    assert!(!run.stderr.contains("panicked"));
    p.write("experiments/exp.yaml", "{{{{[[[[: : :\n\t\u{7}");
    let run = p.hft(&["build"]);
    assert_eq!(run.code, 2);
    assert!(!run.stderr.contains("panicked"));
}

/// Values out of range, one key at a time: each names its key and the rule it breaks (the
/// validation paths of `config/sections.rs` and `config/mod.rs` that the coverage run
/// found untested).
#[test]
fn out_of_range_values_name_the_key_and_the_rule() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "symbols: [AAA]",
            "symbols: [AAA, AAA]",
            "data.symbols[1]: `AAA` is listed twice",
        ),
        (
            "symbols: [AAA]",
            "symbols: []",
            "data.symbols: needs at least one symbol",
        ),
        (
            "[close, log_return]",
            "[close, close]",
            "data.features[1]: `close` is listed twice",
        ),
        (
            "features: [close, log_return]",
            "features: []",
            "data.features: needs at least one feature",
        ),
        (
            "  source: local\n  path: trainingdata\n",
            "  source: synthetic\n  synthetic: {bars: 5}\n",
            "data.synthetic.bars: must be at least 10",
        ),
        (
            "num_layers: 1}",
            "num_layers: 0}",
            "model.num_layers: must be between 1 and 1024 (got 0)",
        ),
        (
            "max_steps: 2,",
            "max_steps: 0,",
            "training.max_steps: must be between 1 and 1000000000 (got 0)",
        ),
        (
            "batch_size: 8}",
            "batch_size: 8, grad_clip: -1}",
            "training.grad_clip: must be >= 0 (0 disables clipping)",
        ),
        (
            "batch_size: 8}",
            "batch_size: 8, label_smoothing: 1.0}",
            "training.label_smoothing: must be in [0, 1)",
        ),
        (
            "batch_size: 8}",
            "batch_size: 8, patience: 0}",
            "training.patience: must be at least 1",
        ),
        (
            "batch_size: 8}\n",
            "batch_size: 8}\nevaluation: {cost_bps: -1}\n",
            "evaluation.cost_bps: must be >= 0",
        ),
        (
            "batch_size: 8}\n",
            "batch_size: 8}\noptimizer: {type: adamw, lr: 0.001, weight_decay: -1}\n",
            "optimizer.weight_decay: must be >= 0",
        ),
    ];
    for (from, to, needle) in cases {
        assert!(GOOD.contains(from), "{from}");
        expect_error(&GOOD.replace(from, to), &["experiments/exp.yaml:", needle]);
    }
}
