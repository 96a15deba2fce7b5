//! The catalogue of malformed input (issue 11, "Reliability"): one table of bad configs,
//! data files, lockfiles, cache entries and command lines, each run through the real
//! binary and each expected to fail with exit code 2 and a message naming the file, the
//! line and the column or key. A second table holds the real-world shapes that must be
//! accepted (BOM, CRLF, blank trailing lines, US dates, descending dates, damaged cache
//! entries that are recovered from).
//!
//! Every case also checks that nothing panicked and, unless the case executes stages
//! before failing, that no action record appeared in the store.
//!
//! A case marked `known_bug` documents behaviour that is wrong today in code owned
//! elsewhere: it is run, and the test fails if it starts passing, so that the marker is
//! removed once the bug is fixed (a strict "expected failure").

mod common;

use std::collections::BTreeMap;

use common::{Project, csv_bars};

/// The one experiment of every case unless the case rewrites it.
const GOOD: &str = "\
name: exp
data:
  source: local
  path: trainingdata
  symbols: [AAA]
  features: [close, log_return]
  sequence_length: 5
  prediction_horizon: 1
model: {type: mlp, hidden_size: 4, num_layers: 1}
training: {max_steps: 2, batch_size: 8}
";

const EXPERIMENT: &str = "experiments/exp.yaml";
const DATA: &str = "trainingdata/AAA.csv";
const LOCK: &str = "hft.lock";
const BARS: usize = 120;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Config,
    Data,
    Lockfile,
    Cache,
    CommandLine,
}

/// A rewrite of a file's text, applied after the prebuild.
type Edit = fn(&str) -> String;

/// One row of a table: what to write, what to run, what must come out.
struct Case {
    kind: Kind,
    name: &'static str,
    /// Run `hft build` first (for cases that damage a real lock or store).
    prebuild: bool,
    /// Applied after the prebuild: (path, rewrite of its text).
    edits: Vec<(&'static str, Edit)>,
    /// Store folders whose every file is overwritten with garbage after the prebuild.
    damaged: Vec<&'static str>,
    /// Store folders whose every file is rewritten after the prebuild.
    rewrites: Vec<(&'static str, Edit)>,
    /// Written over the base project: (path, bytes).
    writes: Vec<(String, Vec<u8>)>,
    args: Vec<&'static str>,
    env: Vec<(&'static str, &'static str)>,
    code: i32,
    /// Each must appear in stderr (case-insensitively for data cases, whose wording is
    /// being reworked: their needles are the stable parts, file, line and column).
    needles: Vec<String>,
    /// Stages execute before the failure (data errors found while ingesting or windowing);
    /// otherwise no action record may appear.
    executes: bool,
    known_bug: Option<&'static str>,
}

fn case(kind: Kind, name: &'static str, args: &[&'static str]) -> Case {
    Case {
        kind,
        name,
        prebuild: false,
        edits: Vec::new(),
        damaged: Vec::new(),
        rewrites: Vec::new(),
        writes: Vec::new(),
        args: args.to_vec(),
        env: Vec::new(),
        code: 2,
        needles: Vec::new(),
        executes: false,
        known_bug: None,
    }
}

impl Case {
    fn write(mut self, path: &str, bytes: impl AsRef<[u8]>) -> Case {
        self.writes
            .push((path.to_string(), bytes.as_ref().to_vec()));
        self
    }
    fn config(self, text: impl AsRef<[u8]>) -> Case {
        self.write(EXPERIMENT, text)
    }
    /// The base experiment with `from` replaced by `to` (which must occur).
    fn config_replace(self, from: &str, to: &str) -> Case {
        assert!(GOOD.contains(from), "{}: `{from}` not in GOOD", self.name);
        let text = GOOD.replace(from, to);
        self.config(text)
    }
    /// The base experiment with `tail` appended.
    fn config_plus(self, tail: &str) -> Case {
        self.config(format!("{GOOD}{tail}"))
    }
    fn data(self, text: impl AsRef<[u8]>) -> Case {
        self.write(DATA, text)
    }
    fn prebuilt(mut self) -> Case {
        self.prebuild = true;
        self
    }
    fn edit(mut self, path: &'static str, f: Edit) -> Case {
        self.edits.push((path, f));
        self
    }
    fn damage(mut self, folder: &'static str) -> Case {
        self.damaged.push(folder);
        self
    }
    fn rewrite_all(mut self, folder: &'static str, f: Edit) -> Case {
        self.rewrites.push((folder, f));
        self
    }
    fn env(mut self, key: &'static str, value: &'static str) -> Case {
        self.env.push((key, value));
        self
    }
    fn code(mut self, code: i32) -> Case {
        self.code = code;
        self
    }
    fn expect(mut self, needles: &[&str]) -> Case {
        self.needles.extend(needles.iter().map(|n| n.to_string()));
        self
    }
    fn executes(mut self) -> Case {
        self.executes = true;
        self
    }
    /// No case is marked today; kept for the next bug found in code owned elsewhere.
    #[allow(dead_code)]
    fn known_bug(mut self, why: &'static str) -> Case {
        self.known_bug = Some(why);
        self
    }
}

// ---------------------------------------------------------------------------------------
// data files

/// The base data file's lines (header first, no trailing empty line).
fn bar_lines() -> Vec<String> {
    csv_bars(BARS, 3).lines().map(str::to_string).collect()
}

fn join(lines: &[String], ending: &str) -> String {
    let mut s = lines.join(ending);
    s.push_str(ending);
    s
}

/// The base data with field `column` (0 = Date ... 5 = Volume) of data row `row` set to
/// `value`: that row is on line `row + 2` of the file.
fn with_field(row: usize, column: usize, value: &str) -> String {
    let mut lines = bar_lines();
    let mut fields: Vec<String> = lines[row + 1].split(',').map(str::to_string).collect();
    fields[column] = value.to_string();
    lines[row + 1] = fields.join(",");
    join(&lines, "\n")
}

/// The base data with every line passed through `f` (header included).
fn map_lines(f: impl Fn(usize, &str) -> String) -> Vec<String> {
    bar_lines()
        .iter()
        .enumerate()
        .map(|(i, l)| f(i, l))
        .collect()
}

fn us_date(iso: &str) -> String {
    let mut parts = iso.split('-');
    let (y, m, d) = (parts.next(), parts.next(), parts.next());
    format!("{}/{}/{}", m.unwrap(), d.unwrap(), y.unwrap())
}

/// Rows with the date written `MM/DD/YYYY`.
fn us_dated() -> Vec<String> {
    map_lines(|i, l| match l.split_once(',') {
        Some((date, rest)) if i > 0 => format!("{},{rest}", us_date(date)),
        _ => l.to_string(),
    })
}

/// Newest first, as many exports are.
fn descending(lines: Vec<String>) -> Vec<String> {
    let mut rows = lines;
    rows[1..].reverse();
    rows
}

/// An Investing.com-style export: BOM, every field quoted, US dates, newest first, CRLF.
fn investing_export() -> String {
    let quoted: Vec<String> = descending(us_dated())
        .iter()
        .map(|l| {
            l.split(',')
                .map(|f| format!("\"{f}\""))
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect();
    format!("\u{feff}{}", join(&quoted, "\r\n"))
}

/// The base bars rewritten row by row: `row(i, [date, open, high, low, close, volume])`
/// after `header` (a header of several lines, or none, is fine).
fn rows_as(header: &str, row: impl Fn(usize, &[&str]) -> String) -> String {
    let mut out = header.to_string();
    for (i, line) in bar_lines()[1..].iter().enumerate() {
        let f: Vec<&str> = line.split(',').collect();
        out.push_str(&row(i, &f));
        out.push('\n');
    }
    out
}

/// Unix seconds of midnight of an ISO date.
fn unix(date: &str) -> i64 {
    chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d")
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
        .timestamp()
}

// ---------------------------------------------------------------------------------------
// configs

fn billion_laughs() -> String {
    let mut text = String::from("a0: &a0 [lol]\n");
    for i in 1..10 {
        let refs = vec![format!("*a{}", i - 1); 10].join(", ");
        text.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
    }
    text
}

/// The table of malformed input: every case must fail with exit code 2.
fn malformed() -> Vec<Case> {
    use Kind::*;
    let build: &[&str] = &["build", "-j", "2"];
    let mut chain = case(Config, "template_chain_too_deep", build)
        .config(format!("extends: templates/t0.yaml\n{GOOD}"))
        .write("templates/t20.yaml", "seed: 1\n")
        .expect(&[
            "templates/t15.yaml:1:",
            "extends: template chain deeper than 16",
        ]);
    for i in 0..20 {
        chain = chain.write(
            &format!("templates/t{i}.yaml"),
            format!("extends: templates/t{}.yaml\n", i + 1),
        );
    }
    vec![
        // ---- experiment configs: YAML syntax
        case(Config, "yaml_unclosed_bracket", build)
            .config("data:\n  symbols: [AAA\n")
            .expect(&["experiments/exp.yaml:2:12: unclosed bracket"]),
        case(Config, "yaml_tab_indentation", build)
            .config("name: exp\ndata:\n\tsource: local\n")
            .expect(&["experiments/exp.yaml:3:2: tabs disallowed"]),
        case(Config, "yaml_duplicate_key", build)
            .config_plus("seed: 1\nseed: 2\n")
            .expect(&["experiments/exp.yaml:12:1: duplicate mapping key: seed"]),
        case(Config, "yaml_two_documents", build)
            .config_plus("---\nseed: 2\n")
            .expect(&["experiments/exp.yaml:11:1:", "more than one YAML document"]),
        case(Config, "yaml_not_a_mapping", build)
            .config("- just\n- a list\n")
            .expect(&["experiments/exp.yaml:1:1: an experiment file must be a mapping"]),
        case(Config, "yaml_not_utf8", build)
            .config(b"name: exp\nseed: \xff\xfe\n")
            .expect(&["experiments/exp.yaml:2:7: not UTF-8", "save the file as UTF-8"]),
        // ---- unknown keys, with did-you-mean
        case(Config, "unknown_top_level_key", build)
            .config_replace("training:", "trainig:")
            .expect(&[
                "experiments/exp.yaml:10:1: trainig: unknown field",
                "did you mean `training`?",
            ]),
        case(Config, "unknown_nested_key", build)
            .config_replace("  sequence_length: 5", "  sequence_lenght: 5")
            .expect(&[
                "experiments/exp.yaml:7:3: data.sequence_lenght: unknown field",
                "did you mean `sequence_length`?",
            ]),
        case(Config, "unknown_key_in_flow_mapping", build)
            .config_replace("hidden_size: 4", "hiden_size: 4")
            .expect(&[
                "experiments/exp.yaml:9:20: model.hiden_size: unknown field",
                "did you mean `hidden_size`?",
            ]),
        // ---- wrong types
        case(Config, "string_for_integer", build)
            .config_replace("sequence_length: 5", "sequence_length: five")
            .expect(&["experiments/exp.yaml:7:3: data.sequence_length: invalid type"]),
        case(Config, "quoted_number_for_integer", build)
            .config_replace("sequence_length: 5", "sequence_length: \"5\"")
            .expect(&["experiments/exp.yaml:7:3: data.sequence_length: invalid type: string"]),
        case(Config, "scalar_for_list", build)
            .config_replace("symbols: [AAA]", "symbols: AAA")
            .expect(&[
                "experiments/exp.yaml:5:3: data.symbols:",
                "expected a list of symbols (`[AAA]`) or `all`, got `AAA`",
            ]),
        case(Config, "boolean_looking_ticker", build)
            .config_replace("symbols: [AAA]", "symbols: [AAA, ON]")
            .expect(&[
                "experiments/exp.yaml:5:18: data.symbols[1]: invalid type: boolean",
                "quote the value",
            ]),
        case(Config, "null_section", build)
            .config_replace(
                "model: {type: mlp, hidden_size: 4, num_layers: 1}",
                "model: ~",
            )
            .expect(&["experiments/exp.yaml:9:1: model: invalid type: null"]),
        case(Config, "negative_seed", build)
            .config_plus("seed: -1\n")
            .expect(&["experiments/exp.yaml:11:1: seed: invalid value: integer `-1`"]),
        // ---- out-of-range values, NaN and infinity
        case(Config, "zero_sequence_length", build)
            .config_replace("sequence_length: 5", "sequence_length: 0")
            .expect(&[
                "experiments/exp.yaml:7:3: data.sequence_length: must be between 1 and 100000",
            ]),
        case(Config, "huge_prediction_horizon", build)
            .config_replace("prediction_horizon: 1", "prediction_horizon: 1000000000")
            .expect(&[
                "experiments/exp.yaml:8:3: data.prediction_horizon: must be between 1 and 10000",
            ]),
        case(Config, "zero_batch_size", build)
            .config_replace("batch_size: 8", "batch_size: 0")
            .expect(&["experiments/exp.yaml:10:26: training.batch_size: must be between 1 and 1048576 (got 0)"]),
        case(Config, "negative_learning_rate", build)
            .config_plus("optimizer: {type: adamw, lr: -1}\n")
            .expect(&[
                "experiments/exp.yaml:11:26: optimizer.lr: must be a positive number (got -1)",
            ]),
        case(Config, "dropout_above_one", build)
            .config_replace("num_layers: 1}", "num_layers: 1, dropout: 1.5}")
            .expect(&["experiments/exp.yaml:9:51: model.dropout: must be in [0, 1) (got 1.5)"]),
        case(Config, "splits_not_summing_to_one", build)
            .config_replace(
                "  prediction_horizon: 1",
                "  prediction_horizon: 1\n  split: {train: 0.5, val: 0.2, test: 0.2}",
            )
            .expect(&["experiments/exp.yaml:9:3: data.split: train + val + test must sum to 1"]),
        case(Config, "nan_learning_rate", build)
            .config_plus("optimizer: {type: adamw, lr: .nan}\n")
            .expect(&["experiments/exp.yaml:11:30: `.nan` is not a finite number"]),
        case(Config, "infinite_learning_rate", build)
            .config_plus("optimizer: {type: adamw, lr: .inf}\n")
            .expect(&["experiments/exp.yaml:11:30: `.inf` is not a finite number"]),
        case(Config, "float_overflow", build)
            .config_plus("optimizer: {type: adamw, lr: 1e400}\n")
            .expect(&["experiments/exp.yaml:11:30: `1e400` is not a finite number"]),
        // ---- unknown names
        case(Config, "unknown_model", build)
            .config_replace("type: mlp", "type: lstmm")
            .expect(&[
                "experiments/exp.yaml:9:",
                "model.type: unknown model type `lstmm`; did you mean `lstm`?",
            ]),
        case(Config, "unknown_optimizer", build)
            .config_plus("optimizer: {type: adamm}\n")
            .expect(&[
                "experiments/exp.yaml:11:13: optimizer.type: unknown optimizer `adamm`; did you mean `adamw`?",
            ]),
        case(Config, "unknown_feature", build)
            .config_replace("[close, log_return]", "[close, log_retrun]")
            .expect(&[
                "experiments/exp.yaml:6:",
                "data.features[1]: unknown feature `log_retrun`",
                "did you mean `log_return`?",
            ]),
        case(Config, "unknown_data_source", build)
            .config_replace("source: local", "source: lcoal")
            .expect(&[
                "experiments/exp.yaml:3:3: data.source: unknown variant `lcoal`",
                "did you mean `local`?",
            ]),
        case(Config, "symbol_with_a_path", build)
            .config_replace("symbols: [AAA]", "symbols: [../AAA]")
            .expect(&["experiments/exp.yaml:5:13: data.symbols[0]: `../AAA` is not a symbol"]),
        case(Config, "no_symbols", build)
            .config_replace("symbols: [AAA]", "symbols: []")
            .expect(&["experiments/exp.yaml:5:3: data.symbols: needs at least one symbol"]),
        // ---- options owned by another type, backends not built
        case(Config, "option_of_another_optimizer", build)
            .config_plus("optimizer: {type: sgd, muon: {momentum: 0.9}}\n")
            .expect(&[
                "experiments/exp.yaml:11:24: optimizer.muon: settings of `muon`, but optimizer.type is `sgd`",
                "remove them or set type: muon",
            ]),
        case(Config, "option_of_another_schedule", build)
            .config_replace(
                "training: {max_steps: 2, batch_size: 8}",
                "training: {max_steps: 2, batch_size: 8, schedule: warmup_cosine, one_cycle: {pct_start: 0.3}}",
            )
            .expect(&[
                "experiments/exp.yaml:10:66: training.one_cycle: settings of schedule `one_cycle`",
            ]),
        case(Config, "option_of_another_model", build)
            .config_replace("num_layers: 1}", "num_layers: 1, dit: {samples: 8}}")
            .expect(&[
                "experiments/exp.yaml:9:51: model.dit: read by dit, not by mlp; \
                 remove it or set model.type",
            ]),
        case(Config, "option_of_another_model_type_flat", build)
            .config_replace("num_layers: 1}", "num_layers: 1, num_heads: 2}")
            .expect(&[
                "experiments/exp.yaml:9:51: model.num_heads: read by transformer and dit, \
                 not by mlp; remove it or set model.type",
            ]),
        case(Config, "device_not_built", build)
            .config_replace(
                "training: {max_steps: 2, batch_size: 8}",
                "training: {max_steps: 2, device: cuda}",
            )
            .expect(&[
                "experiments/exp.yaml:10:",
                "training.device: `cuda` needs the `cuda` backend",
            ]),
        // ---- extends / templates
        case(Config, "missing_template", build)
            .config_plus("extends: templates/nope.yaml\n")
            .expect(&[
                "experiments/exp.yaml:11:1: extends: cannot read template templates/nope.yaml",
            ]),
        case(Config, "template_cycle", build)
            .config_plus("extends: templates/a.yaml\n")
            .write("templates/a.yaml", "extends: templates/b.yaml\n")
            .write("templates/b.yaml", "extends: templates/a.yaml\n")
            .expect(&[
                "templates/b.yaml:1:1: extends: template cycle: experiments/exp.yaml -> templates/a.yaml -> templates/b.yaml -> templates/a.yaml",
            ]),
        case(Config, "extends_not_a_path", build)
            .config_plus("extends: 5\n")
            .expect(&[
                "experiments/exp.yaml:11:1: extends: must be a template path or a list of them",
            ]),
        case(Config, "template_with_a_syntax_error", build)
            .config_plus("extends: templates/t.yaml\n")
            .write("templates/t.yaml", "model: {type: mlp\n")
            .expect(&["templates/t.yaml:1:8: unclosed bracket"]),
        chain,
        case(Config, "template_outside_the_project", build)
            .config_plus("extends: ../../etc/passwd\n")
            .expect(&[
                "experiments/exp.yaml:11:",
                "extends: template ../../etc/passwd is outside the project directory",
            ]),
        case(Config, "data_path_outside_the_project", build)
            .config_replace("path: trainingdata", "path: ../../etc")
            .expect(&[
                "experiments/exp.yaml:4:3: data.path: `../../etc` is outside the project directory",
                "--set data.path=../../etc",
            ]),
        // ---- matrix
        case(Config, "matrix_axis_not_a_list", build)
            .config_plus("matrix:\n  model.hidden_size: 64\n")
            .expect(&[
                "experiments/exp.yaml:12:3: matrix.model.hidden_size: must be a non-empty list of values",
            ]),
        case(Config, "matrix_not_a_mapping", build)
            .config_plus("matrix: [1, 2]\n")
            .expect(&["experiments/exp.yaml:11:1: matrix: must map key paths to lists of values"]),
        case(Config, "matrix_all_excluded", build)
            .config_plus(
                "matrix:\n  model.hidden_size: [4]\n  exclude:\n    - model.hidden_size: 4\n",
            )
            .expect(&["experiments/exp.yaml:11:1: matrix: expands to no experiments"]),
        case(Config, "matrix_too_many_points", build)
            .config_plus(&format!(
                "matrix:\n  seed: [{0}]\n  training.max_steps: [{0}]\n  model.hidden_size: [{0}]\n",
                (1..=11).map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
            ))
            .expect(&[
                "experiments/exp.yaml:11:1: matrix: expands to more than 1024 experiments",
            ]),
        case(Config, "matrix_unknown_key", build)
            .config_plus("matrix:\n  model.hiden_size: [4, 8]\n")
            .expect(&[
                "experiments/exp.yaml:12:22: model.hiden_size: unknown field",
                "did you mean `hidden_size`?",
            ]),
        case(Config, "matrix_value_out_of_range", build)
            .config_plus("matrix:\n  model.hidden_size: [4, 0]\n")
            .expect(&["experiments/exp.yaml:12:26: model.hidden_size: must be between 1 and 65536 (got 0)"]),
        case(Config, "matrix_include_not_a_list", build)
            .config_plus("matrix:\n  model.hidden_size: [4]\n  include: 5\n")
            .expect(&[
                "experiments/exp.yaml:13:3: matrix.include: must be a list of {path: value} maps",
            ]),
        // ---- hostile documents
        case(Config, "billion_laughs", build)
            .config_plus(&billion_laughs())
            .expect(&[
                "experiments/exp.yaml:",
                "YAML too large or too complex: aliases expand to more than 10000 values",
            ]),
        case(Config, "nested_too_deep", build)
            .config_plus(&format!(
                "description: {}1{}\n",
                "[".repeat(40),
                "]".repeat(40)
            ))
            .expect(&["experiments/exp.yaml:11:", "nested deeper than 32 levels"]),
        case(Config, "file_too_large", build)
            .config_plus(&format!("# {}\n", "x".repeat(1 << 20)))
            .expect(&[
                "experiments/exp.yaml:1:1: file is 1048",
                "config files are limited to 1048576 bytes",
            ]),
        case(Config, "duplicate_experiment_names", build)
            .write("experiments/copy.yaml", GOOD)
            .expect(&["experiment name `exp` is also used by"]),
        // ---- data files (stable fragments only: file, line, column)
        case(Data, "header_narrower_than_rows", build)
            .data(join(
                &map_lines(|i, l| {
                    if i == 0 {
                        "Date,Open,High,Low,Close".to_string()
                    } else {
                        l.to_string()
                    }
                }),
                "\n",
            ))
            .expect(&["trainingdata/AAA.csv:2:", "header"]),
        case(Data, "row_wider_than_header", build)
            .data({
                let mut lines = bar_lines();
                lines[10].push_str(",extra");
                join(&lines, "\n")
            })
            .expect(&["trainingdata/AAA.csv:11:", "header"]),
        case(Data, "dollar_prefixed_price", build)
            .data(with_field(9, 4, "$95.22"))
            .expect(&["trainingdata/AAA.csv:11:", "close", "$95.22"]),
        case(Data, "dollar_prefixed_everywhere", build)
            .data(join(
                &map_lines(|i, l| {
                    if i == 0 {
                        return l.to_string();
                    }
                    let f: Vec<&str> = l.split(',').collect();
                    format!("{},${},${},${},${},{}", f[0], f[1], f[2], f[3], f[4], f[5])
                }),
                "\n",
            ))
            .expect(&["trainingdata/AAA.csv:2:", "open"]),
        case(Data, "quoted_thousands_separator", build)
            .data(with_field(9, 4, "\"1,234.50\""))
            .expect(&["trainingdata/AAA.csv:11:", "close", "1,234.50"]),
        case(Data, "thousands_separator_in_volume", build)
            .data(with_field(0, 5, "\"1,000,000\""))
            .expect(&["trainingdata/AAA.csv:2:", "volume"]),
        case(Data, "nan_price", build)
            .data(with_field(9, 4, "NaN"))
            .expect(&["trainingdata/AAA.csv:11:", "close", "nan"]),
        case(Data, "infinite_price", build)
            .data(with_field(9, 4, "inf"))
            .expect(&["trainingdata/AAA.csv:11:", "close", "inf"]),
        case(Data, "negative_price", build)
            .data(with_field(9, 4, "-5.0"))
            .expect(&["trainingdata/AAA.csv:11:", "close", "-5"]),
        case(Data, "high_below_low", build)
            .data({
                let mut lines = bar_lines();
                let mut f: Vec<String> = lines[10].split(',').map(str::to_string).collect();
                f.swap(2, 3);
                lines[10] = f.join(",");
                join(&lines, "\n")
            })
            .expect(&["trainingdata/AAA.csv:11:", "high"]),
        case(Data, "negative_volume", build)
            .data(with_field(9, 5, "-10"))
            .expect(&["trainingdata/AAA.csv:11:", "volume"]),
        case(Data, "empty_price", build)
            .data(with_field(9, 4, ""))
            .expect(&["trainingdata/AAA.csv:11:", "close"]),
        case(Data, "text_price", build)
            .data(with_field(9, 4, "abc"))
            .expect(&["trainingdata/AAA.csv:11:", "close", "abc"]),
        case(Data, "duplicate_dates", build)
            .data({
                let day = bar_lines()[10].split(',').next().unwrap().to_string();
                with_field(10, 0, &day)
            })
            .expect(&["trainingdata/AAA.csv:12:", "date", "line 11"]),
        case(Data, "unparseable_date", build)
            .data(with_field(9, 0, "2015-13-45"))
            .expect(&["trainingdata/AAA.csv:11:", "date", "2015-13-45"]),
        case(Data, "unterminated_quote", build)
            .data({
                let mut lines = bar_lines();
                lines[10] = lines[10].replacen(',', ",\"", 1);
                join(&lines, "\n")
            })
            .expect(&["trainingdata/AAA.csv:11:"]),
        case(Data, "empty_file", build)
            .data("")
            .expect(&["trainingdata/AAA.csv:1:", "empty"]),
        case(Data, "header_only", build)
            .data("Date,Open,High,Low,Close,Volume\n")
            .expect(&["trainingdata/AAA.csv:1:", "row"]),
        case(Data, "missing_close_column", build)
            .data(join(
                &map_lines(|_, l| {
                    let f: Vec<&str> = l.split(',').collect();
                    format!("{},{},{},{},{}", f[0], f[1], f[2], f[3], f[5])
                }),
                "\n",
            ))
            .expect(&["trainingdata/AAA.csv:1:", "close"]),
        case(Data, "binary_garbage", build)
            .data(b"\x00\x01\x02garbage\xff\xfe\n\"unterminated")
            .expect(&["trainingdata/AAA.csv:1:"]),
        case(Data, "fewer_bars_than_one_window", build)
            .data(join(&bar_lines()[..5], "\n"))
            .expect(&["dataset", "sequence_length", "AAA"])
            .executes(),
        case(Data, "too_few_bars_for_the_test_split", build)
            .data(join(&bar_lines()[..11], "\n"))
            .expect(&["test split"])
            .executes(),
        case(Data, "missing_data_file", build)
            .config_replace("symbols: [AAA]", "symbols: [AAA, ZZZ]")
            .expect(&[
                "experiments/exp.yaml:5:",
                "data.symbols[1]",
                "no data file for `ZZZ` (looked for ZZZ.csv, ZZZ.parquet",
                "in data.path `trainingdata`",
            ]),
        case(Data, "missing_data_folder", build)
            .config_replace("path: trainingdata", "path: nodata")
            .expect(&[
                "experiments/exp.yaml:4:3: data.path: the folder `nodata` does not exist",
            ]),
        // ---- data in the formats people download (issue 19): never silently wrong, and
        // a file that cannot be read names the setting that would read it
        case(Data, "eight_digits_that_are_no_date_in_timestamp", build)
            .data(rows_as("timestamp,Open,High,Low,Close,Volume\n", |i, f| {
                format!("1999{:02}{:02},{}", 13 + i % 80, 1 + i % 28, f[1..].join(","))
            }))
            .expect(&["trainingdata/AAA.csv:2:", "column 'timestamp'", "data.format.date"]),
        case(Data, "two_digit_years", build)
            .data(rows_as("Date,Open,High,Low,Close,Volume\n", |_, f| {
                let us = us_date(f[0]);
                format!("{}{},{}", &us[..us.len() - 4], &us[us.len() - 2..], f[1..].join(","))
            }))
            .expect(&["trainingdata/AAA.csv:2:", "two-digit year", "%m/%d/%y"]),
        case(Data, "absurd_high_price", build)
            .data(with_field(9, 2, "1e308"))
            .expect(&["trainingdata/AAA.csv:11:", "column 'high'", "not a plausible price"]),
        case(Data, "vanishing_low_price", build)
            .data(with_field(9, 3, "1e-300"))
            .expect(&["trainingdata/AAA.csv:11:", "column 'low'", "not a plausible price"]),
        case(Data, "absurd_volume", build)
            .data(with_field(9, 5, "1e300"))
            .expect(&["trainingdata/AAA.csv:11:", "column 'volume'", "not plausible"]),
        case(Data, "currency_prefix_names_the_setting", build)
            .data(rows_as("Date,Open,High,Low,Close,Volume\n", |_, f| {
                format!("{},${},${},${},${},{}", f[0], f[1], f[2], f[3], f[4], f[5])
            }))
            .expect(&[
                "trainingdata/AAA.csv:2:",
                "data.format.currency: \"$\"",
                "every one of the first 20 data rows",
            ]),
        case(Data, "quoted_decimal_commas", build)
            .data(rows_as("Date,Open,High,Low,Close,Volume\n", |_, f| {
                let q = |x: &str| format!("\"{}\"", x.replace('.', ","));
                format!("{},{},{},{},{},{}", f[0], q(f[1]), q(f[2]), q(f[3]), q(f[4]), f[5])
            }))
            .expect(&["trainingdata/AAA.csv:2:", "data.format.decimal: \",\""]),
        case(Data, "header_short_of_one_column_names_the_fix", build)
            .data(rows_as("Date,Open,High,Low,Close\n", |_, f| f.join(",")))
            .expect(&[
                "trainingdata/AAA.csv:2:",
                "fix the header (a name missing or one too many)",
                "data.columns",
                "every one of the first 20 data rows",
            ]),
        case(Data, "utf16_truncated", build)
            .data({
                let mut b = vec![0xFF, 0xFE];
                for u in csv_bars(BARS, 3).encode_utf16() {
                    b.extend(u.to_le_bytes());
                }
                b.push(b'x');
                b
            })
            .expect(&["trainingdata/AAA.csv:1:", "UTF-16", "odd number of bytes"]),
        case(Data, "first_line_is_data", build)
            .data(join(&bar_lines()[1..], "\n"))
            .expect(&["trainingdata/AAA.csv:1:", "looks like data", "data.format.header"]),
        case(Data, "unknown_header_names", build)
            .data(rows_as("Datum;Eroeffnung;Hoch;Tief;Schluss;Umsatz\n", |_, f| f.join(";")))
            .expect(&["trainingdata/AAA.csv:1:", "semicolon-separated", "data.columns"]),
        case(Data, "data_columns_names_a_missing_column", build)
            .config_replace(
                "  prediction_horizon: 1",
                "  prediction_horizon: 1\n  columns: {close: Schluss}",
            )
            .expect(&["trainingdata/AAA.csv:1:", "data.columns.close names a column"]),
        case(Data, "data_file_is_a_folder", build)
            .config_replace("symbols: [AAA]", "symbols: [AAA, BBB]")
            .write("trainingdata/BBB.csv/readme.txt", "not data")
            .expect(&["experiments/exp.yaml:5:", "`BBB.csv` is a folder, not a data file"]),
        case(Data, "yfinance_several_tickers_in_one_file", build)
            .data(rows_as(
                "Price,Close,Close,High,High,Low,Low,Open,Open,Volume,Volume\n\
                 Ticker,AAA,BBB,AAA,BBB,AAA,BBB,AAA,BBB,AAA,BBB\nDate,,,,,,,,,,\n",
                |_, f| {
                    format!(
                        "{0},{4},{4},{2},{2},{3},{3},{1},{1},{5},{5}",
                        f[0], f[1], f[2], f[3], f[4], f[5]
                    )
                },
            ))
            .expect(&["trainingdata/AAA.csv:1:", "yfinance download of 2 tickers"]),
        case(Data, "intraday_times_lost", build)
            .data(rows_as("Date,Open,High,Low,Close,Volume\n", |i, f| {
                let day = bar_lines()[1 + i / 6].split(',').next().unwrap().to_string();
                format!("{day},{}", f[1..].join(","))
            }))
            .expect(&["trainingdata/AAA.csv:3:", "duplicate timestamp", "times of day"]),
        case(Config, "data_columns_position_zero", build)
            .config_replace(
                "  prediction_horizon: 1",
                "  prediction_horizon: 1\n  columns: {close: 0}",
            )
            .expect(&["experiments/exp.yaml:", "data.columns.close: positions count from 1"]),
        case(Config, "data_format_named_time_zone", build)
            .config_replace(
                "  prediction_horizon: 1",
                "  prediction_horizon: 1\n  format: {time_zone: Europe/Berlin}",
            )
            .expect(&["experiments/exp.yaml:", "data.format.time_zone:", "fixed offset"]),
        case(Config, "data_format_bad_delimiter", build)
            .config_replace(
                "  prediction_horizon: 1",
                "  prediction_horizon: 1\n  format: {delimiter: ab}",
            )
            .expect(&["experiments/exp.yaml:", "data.format.delimiter:"]),
        case(Config, "data_format_date_without_a_day", build)
            .config_replace(
                "  prediction_horizon: 1",
                "  prediction_horizon: 1\n  format: {date: \"%H:%M\"}",
            )
            .expect(&["experiments/exp.yaml:", "data.format.date:", "a year, a month and a day"]),
        // ---- lockfiles
        case(Lockfile, "lock_not_toml", &["build", "--locked"])
            .write(LOCK, "this is = = not toml\n")
            .expect(&["hft.lock:1:6:", "delete it and run `hft build`"]),
        case(Lockfile, "lock_wrong_version", &["build", "--locked"])
            .prebuilt()
            .edit(LOCK, |t| t.replacen("version = 1", "version = 99", 1))
            .expect(&["hft.lock:3:1: version: lock version 99 is not 1"]),
        case(Lockfile, "lock_wrong_version_plain_build", build)
            .prebuilt()
            .edit(LOCK, |t| t.replacen("version = 1", "version = 99", 1))
            .expect(&[
                "hft.lock:3:1: version: lock version 99 is not 1",
                "delete it and run `hft build`",
            ]),
        case(Lockfile, "lock_truncated", &["build", "--locked"])
            .prebuilt()
            .edit(LOCK, |t| t[..t.len() / 2].to_string())
            .expect(&["hft.lock:", "delete it and run `hft build`"]),
        case(Lockfile, "lock_truncated_audit", &["audit", "--locked"])
            .prebuilt()
            .edit(LOCK, |t| t[..t.len() / 2].to_string())
            .expect(&["hft.lock:", "delete it and run `hft build`"]),
        case(Lockfile, "lock_missing_table", &["build", "--locked"])
            .write(LOCK, "version = 1\n")
            .expect(&["hft.lock:1:1: missing field `environment`"]),
        case(Lockfile, "lock_wrong_type", &["audit", "--locked"])
            .write(LOCK, "version = \"one\"\n")
            .expect(&["hft.lock:1:11: invalid type: string \"one\""]),
        case(Lockfile, "lock_not_utf8", &["build", "--locked"])
            .write(LOCK, b"version = 1\n\xff\xfe\n")
            .expect(&["hft.lock:2:1: not UTF-8"]),
        case(Lockfile, "lock_merge_conflict", &["build", "--locked"])
            .prebuilt()
            .edit(LOCK, |t| {
                t.replacen("[environment]", "<<<<<<< HEAD\n[environment]", 1)
            })
            .expect(&["hft.lock:5:1: merge conflict markers"]),
        case(Lockfile, "lock_is_a_folder", &["build", "--locked"])
            .write("hft.lock/keep", "")
            .expect(&["cannot read hft.lock"]),
        case(Lockfile, "lock_missing", &["build", "--locked"])
            .expect(&["--locked: there is no hft.lock; run `hft build` first"]),
        case(Lockfile, "lock_missing_audit", &["audit", "--locked"])
            .expect(&["--locked: there is no hft.lock"]),
        case(Lockfile, "lock_config_edited_by_hand", &["build", "--locked"])
            .prebuilt()
            .edit(LOCK, |t| t.replacen("\"hidden_size\":4", "\"hidden_size\":5", 1))
            .expect(&["hft.lock:", "its key is not the key of its version, config and inputs"]),
        case(Lockfile, "lock_version_edited_by_hand", &["audit", "--locked"])
            .prebuilt()
            .edit(LOCK, |t| t.replacen("version = 2\n", "version = 7\n", 1))
            .expect(&["hft.lock:", "the entry was edited by hand"]),
        case(Lockfile, "lock_digest_not_hex", &["build", "--locked"])
            .prebuilt()
            .edit(LOCK, |t| {
                let at = t.find("dataset = \"").unwrap() + "dataset = \"".len();
                format!("{}zz{}", &t[..at], &t[at + 2..])
            })
            .expect(&["hft.lock:", "is not a blake3 digest (64 hex digits)"]),
        case(Lockfile, "lock_data_digest_edited", &["build", "--locked"])
            .prebuilt()
            .edit(LOCK, |t| {
                let at = t.find("\"trainingdata/AAA.csv\" = \"").unwrap()
                    + "\"trainingdata/AAA.csv\" = \"".len();
                let old = &t[at..at + 64];
                let flipped = if old.starts_with('0') { "1" } else { "0" };
                format!("{}{flipped}{}", &t[..at], &t[at + 1..])
            })
            .expect(&["data file trainingdata/AAA.csv: its digest is", "hft.lock's [data] has"]),
        case(Lockfile, "lock_key_would_change", &["build", "--locked"])
            .prebuilt()
            .edit(EXPERIMENT, |t| t.replace("hidden_size: 4", "hidden_size: 8"))
            .expect(&[
                "--locked: exp/train: key would change from the lock: model.hidden_size 4 -> 8 (experiments/exp.yaml:9)",
            ]),
        case(Config, "data_path_is_a_file", build)
            .config_replace("path: trainingdata", "path: trainingdata/AAA.csv")
            .expect(&["`trainingdata/AAA.csv` is a file, not a folder", "data.path: trainingdata with symbols: [AAA]"]),
        // ---- small things a hostile user tried
        case(Config, "experiment_file_empty", build)
            .config("# nothing here yet\n\n")
            .expect(&["experiments/exp.yaml:1:1: the file is empty"]),
        case(Config, "name_with_a_newline", build)
            .config_replace("name: exp", "name: \"two\\nlines\"")
            .expect(&["name: must be one line of printable text"]),
        case(Config, "seed_two_to_the_64", build)
            .config_plus("seed: 18446744073709551616\n")
            .expect(&["seed: 1.8446744073709552e+19 is out of range: a whole number from 0 to 18446744073709551615"]),
        case(CommandLine, "set_a_matrix", &["build", "--set", "matrix.model.hidden_size=8"])
            .expect(&["--set matrix.model.hidden_size=8: matrix.model.hidden_size: a matrix cannot come from the command line"]),
        case(CommandLine, "set_an_unknown_key_names_the_set", &["build", "--set", "model.nosuch=8"])
            .expect(&["--set model.nosuch=8: model.nosuch: unknown field `nosuch`"]),
        case(Cache, "compare_unknown_metric", &["compare", "--metric", "nosuch"])
            .prebuilt()
            .expect(&["--metric nosuch: no experiment has this metric"]),
        // ---- sizes that would exhaust the machine
        case(Config, "hidden_size_absurd", build)
            .config_replace("hidden_size: 4", "hidden_size: 100000000")
            .expect(&["experiments/exp.yaml:9", "model.hidden_size", "between 1 and 65536"]),
        case(Config, "num_layers_absurd", build)
            .config_replace("num_layers: 1", "num_layers: 100000")
            .expect(&["model.num_layers", "between 1 and 1024"]),
        case(Config, "ff_size_absurd", build)
            .config_replace("type: mlp", "type: transformer, num_heads: 2, ff_size: 4611686018427387904")
            .expect(&["model.ff_size", "between 1 and 1048576"]),
        case(Config, "epochs_absurd", build)
            .config_replace("max_steps: 2", "epochs: 100000000000, patience: 3")
            .expect(&["training.epochs", "at most 1000000"]),
        case(Config, "max_steps_absurd", build)
            .config_replace("max_steps: 2", "max_steps: 1000000000000, patience: 3")
            .expect(&["training.max_steps", "between 1 and 1000000000"]),
        case(Config, "max_steps_u64_max", build)
            .config_replace("max_steps: 2", "max_steps: 18446744073709551615")
            .expect(&["training.max_steps"]),
        case(Config, "batch_size_absurd", build)
            .config_replace("batch_size: 8", "batch_size: 1000000000")
            .expect(&["training.batch_size", "between 1 and 1048576"]),
        case(Config, "model_too_big_for_memory", build)
            .config_replace("hidden_size: 4, num_layers: 1", "hidden_size: 60000, num_layers: 8")
            .executes()
            .expect(&["exp/init", "would need about", "of memory available"]),
        // ---- cache entries
        case(Cache, "cache_dir_is_a_file", &["build", "--cache-dir", "cfile"])
            .write("cfile", "not a folder\n")
            .expect(&["cfile is a file, not a folder"]),
        case(Cache, "cache_env_is_a_file", build)
            .env("HFT_CACHE_DIR", "cfile")
            .write("cfile", "not a folder\n")
            .expect(&["cfile is a file, not a folder"]),
        case(Cache, "cache_objects_is_a_file", build)
            .write("cache/objects", "not a folder\n")
            .expect(&["cache/objects is a file, not a folder"]),
        case(Cache, "cache_verify_on_a_file", &["cache", "verify", "--cache-dir", "cfile"])
            .write("cfile", "not a folder\n")
            .expect(&["cfile is a file, not a folder"]),
        case(Cache, "cache_dir_is_the_project_folder", &["status", "--cache-dir", "."])
            .expect(&["is not an hft cache (no HFT-STORE file) and is not empty"]),
        case(Cache, "cache_dir_is_a_data_folder", &["build", "--cache-dir", "trainingdata"])
            .expect(&["trainingdata is not an hft cache"]),
        case(Cache, "cache_env_is_empty", build)
            .env("HFT_CACHE_DIR", "")
            .expect(&["the cache path is empty (is HFT_CACHE_DIR set to an empty value?)"]),
        case(Cache, "cache_verify_on_a_mistyped_folder", &["cache", "verify", "--cache-dir", "cahce"])
            .expect(&["there is no cache at cahce"]),
        case(Cache, "cache_of_a_newer_format", build)
            .write("cache/HFT-STORE", "hft store, format 9\n")
            .expect(&["a store format this hft", "does not know"]),
        case(Cache, "compare_sort_by_unknown_metric", &["compare", "--sort", "nosuch.metric"])
            .prebuilt()
            .expect(&[
                "--sort nosuch.metric: no experiment has this value; metrics: train.selected_val_loss, skill.pooled",
            ]),
        case(Cache, "compare_filter_value_not_a_number", &["compare", "--filter", "backtest.strategy.sharpe>abc"])
            .prebuilt()
            .expect(&["--filter", "abc"]),
        case(Cache, "audit_unknown_stage", &["audit", "--stage", "trian"])
            .prebuilt()
            .expect(&["no stage matched"]),
        case(Cache, "gc_unknown_size_unit", &["gc", "--max-size", "12Q"])
            .prebuilt()
            .expect(&["--max-size `12Q`: unknown unit `Q` (use K, M, G or T)"]),
        // ---- command lines
        case(CommandLine, "unknown_flag", &["build", "--frobnicate"])
            .expect(&["unexpected argument '--frobnicate'"]),
        case(CommandLine, "unknown_subcommand", &["biuld"])
            .expect(&["unrecognized subcommand 'biuld'", "similar subcommand exists: 'build'"]),
        case(CommandLine, "set_without_equals", &["build", "--set", "model.hidden_size"])
            .expect(&["--set model.hidden_size: expected PATH=VALUE"]),
        case(CommandLine, "set_empty_key", &["build", "--set", "=3"])
            .expect(&["--set =3: not a key path like optimizer.lr"]),
        case(CommandLine, "set_unknown_key", &["build", "--set", "model.hiden_size=8"])
            .expect(&[
                "--set model.hiden_size=8: model.hiden_size: unknown field",
                "did you mean `hidden_size`?",
            ]),
        case(CommandLine, "set_wrong_type", &["build", "--set", "training.max_steps=lots"])
            .expect(&["--set training.max_steps=lots: training.max_steps: invalid type"]),
        case(CommandLine, "set_bad_yaml", &["build", "--set", "model.hidden_size=[1"])
            .expect(&["--set model.hidden_size=[1: model.hidden_size: unclosed bracket"]),
        case(CommandLine, "set_through_a_scalar", &["build", "--set", "model.type.x=1"])
            .expect(&["--set model.type.x=1: model.type.x: cannot set `model.type.x`: `model.type` is not a mapping"]),
        case(CommandLine, "set_out_of_range", &["build", "--set", "data.sequence_length=0"])
            .expect(&["--set data.sequence_length=0", "data.sequence_length: must be between 1 and 100000"]),
        case(CommandLine, "filter_without_equals", &["build", "--filter", "model.type"])
            .expect(&["--filter model.type: expected PATH=VALUE"]),
        case(CommandLine, "filter_matches_nothing", &["build", "--filter", "model.type=lstm"])
            .expect(&["no experiment matches the filters"]),
        case(CommandLine, "until_unknown_stage", &["build", "--until", "trian"])
            .expect(&["invalid value 'trian' for '--until <STAGE>'", "'train'"]),
        case(CommandLine, "tolerance_not_a_number", &["audit", "--tolerance", "ulp:x"])
            .expect(&["--tolerance: ulp:x: expected a whole number"]),
        case(CommandLine, "tolerance_unknown_class", &["audit", "--tolerance", "bogus"])
            .expect(&["--tolerance: tolerance `bogus`: expected bitwise, ulp:N or metric:EPS"]),
        case(CommandLine, "tolerance_unknown_stage", &["audit", "--tolerance", "trian=ulp:4"])
            .prebuilt()
            .expect(&["--tolerance", "trian"]),
        case(CommandLine, "jobs_zero", &["build", "-j", "0"])
            .expect(&["-j"]),
        case(CommandLine, "jobs_not_a_number", &["build", "-j", "many"])
            .expect(&["invalid value 'many' for '--jobs <JOBS>'"]),
        case(CommandLine, "jobs_negative", &["build", "-j", "-1"])
            .expect(&["unexpected argument '-1'"]),
        case(CommandLine, "completions_unknown_shell", &["completions", "tcsh"])
            .expect(&["invalid value 'tcsh' for '<SHELL>'"]),
        case(CommandLine, "path_does_not_exist", &["build", "nope/"])
            .expect(&["nope/: no such file or directory"]),
        case(CommandLine, "path_not_an_experiment", &["build", "notes.txt"])
            .write("notes.txt", "just some notes\n")
            .expect(&["notes.txt:1:1: an experiment file must be a mapping"]),
        case(CommandLine, "new_with_a_path_for_a_name", &["new", "../evil"])
            .write("templates/default.yaml", "seed: 1\n")
            .expect(&["`../evil` is not a file-friendly name"]),
        case(CommandLine, "show_unknown_experiment", &["show", "nosuch"])
            .expect(&["no experiment named `nosuch`"]),
        case(CommandLine, "config_show_unknown_experiment", &["config", "show", "nosuch"])
            .expect(&["no experiment named `nosuch`"]),
        case(CommandLine, "compare_filter_without_operator", &["compare", "--filter", "sharpe"])
            .expect(&["--filter `sharpe`: expected KEY OP VALUE"]),
        case(CommandLine, "gc_negative_keep_last", &["gc", "--keep-last", "-3"])
            .expect(&["unexpected argument '-3'"]),
    ]
}

/// Real-world shapes that must build (exit 0), and damaged cache entries that a build
/// recovers from.
fn accepted() -> Vec<Case> {
    use Kind::*;
    let build: &[&str] = &["build", "-j", "2"];
    vec![
        case(CommandLine, "jobs_100000", &["build", "-q", "-j", "100000"])
            .expect(&["-j 100000: building at most 1 experiment(s) at a time"]),
        case(Data, "byte_order_mark", build).data(format!("\u{feff}{}", csv_bars(BARS, 3))),
        case(Data, "windows_line_endings", build).data(join(&bar_lines(), "\r\n")),
        case(Data, "bom_and_windows_line_endings", build)
            .data(format!("\u{feff}{}", join(&bar_lines(), "\r\n"))),
        case(Data, "blank_trailing_lines", build).data(format!("{}\n\n\n", csv_bars(BARS, 3))),
        case(Data, "no_final_newline", build).data(bar_lines().join("\n")),
        case(Data, "us_dates", build).data(join(&us_dated(), "\n")),
        // Descending dates get a note in a parallel change: only the exit code is stable.
        case(Data, "descending_dates", build).data(join(&descending(bar_lines()), "\n")),
        case(Data, "investing_com_export", build).data(investing_export()),
        case(Data, "lower_case_header", build).data(join(
            &map_lines(|i, l| {
                if i == 0 {
                    l.to_lowercase()
                } else {
                    l.to_string()
                }
            }),
            "\n",
        )),
        case(Data, "extra_adj_close_column", build).data(join(
            &map_lines(|i, l| {
                let close = l.split(',').nth(4).unwrap_or_default();
                if i == 0 {
                    format!("{l},Adj Close")
                } else {
                    format!("{l},{close}")
                }
            }),
            "\n",
        )),
        // ---- the formats people download (issue 19), recognised by their headers
        case(Data, "semicolon_separated_decimal_point", build)
            .data(join(&map_lines(|_, l| l.replace(',', ";")), "\n")),
        case(Data, "semicolons_with_decimal_commas", build)
            .data(rows_as("Date;Open;High;Low;Close;Volume\n", |_, f| {
                f.join(";").replace('.', ",")
            })),
        case(Data, "nasdaq_export", build).data(rows_as(
            "Date,Close/Last,Volume,Open,High,Low\n",
            |_, f| {
                format!(
                    "{},${},{},${},${},${}",
                    us_date(f[0]),
                    f[4],
                    f[5],
                    f[1],
                    f[2],
                    f[3]
                )
            },
        )),
        case(Data, "yfinance_three_header_rows", build).data(rows_as(
            "Price,Close,High,Low,Open,Volume\nTicker,AAA,AAA,AAA,AAA,AAA\nDate,,,,,\n",
            |_, f| format!("{},{},{},{},{},{}", f[0], f[4], f[2], f[3], f[1], f[5]),
        )),
        case(Data, "binance_klines_headerless", build).data(rows_as("", |_, f| {
            let ms = unix(f[0]) * 1000;
            format!(
                "{ms},{},{},{},{},{},{},1.0,10,1.0,1.0,0",
                f[1],
                f[2],
                f[3],
                f[4],
                f[5],
                ms + 86_399_999
            )
        })),
        case(Data, "binance_klines_open_time_header", build).data(rows_as(
            "open_time,open,high,low,close,volume,close_time\n",
            |_, f| {
                let ms = unix(f[0]) * 1000;
                format!("{ms},{},{ms}", f[1..].join(","))
            },
        )),
        case(Data, "stooq_bulk_file", build).data(rows_as(
            "<TICKER>,<PER>,<DATE>,<TIME>,<OPEN>,<HIGH>,<LOW>,<CLOSE>,<VOL>,<OPENINT>\n",
            |_, f| {
                format!(
                    "AAA.US,D,{},000000,{},0",
                    f[0].replace('-', ""),
                    f[1..].join(",")
                )
            },
        )),
        case(Data, "investing_com_price_and_vol_suffixes", build).data(rows_as(
            "\"Date\",\"Price\",\"Open\",\"High\",\"Low\",\"Vol.\",\"Change %\"\n",
            |_, f| {
                let v: f64 = f[5].parse().unwrap();
                format!(
                    "\"{}\",\"{}\",\"{}\",\"{}\",\"{}\",\"{}M\",\"0.50%\"",
                    us_date(f[0]),
                    f[4],
                    f[1],
                    f[2],
                    f[3],
                    v / 1e6
                )
            },
        )),
        case(Data, "mt5_tab_separated", build).data(rows_as(
            "<DATE>\t<TIME>\t<OPEN>\t<HIGH>\t<LOW>\t<CLOSE>\t<TICKVOL>\t<VOL>\t<SPREAD>\n",
            |_, f| {
                format!(
                    "{}\t00:00:00\t{}\t{}\t{}\t{}\t100\t{}\t3",
                    f[0].replace('-', "."),
                    f[1],
                    f[2],
                    f[3],
                    f[4],
                    f[5]
                )
            },
        )),
        case(Data, "intraday_header_without_time", build)
            .data(rows_as("Date,Open,High,Low,Close,Volume\n", |_, f| {
                format!("{},09:30,{}", f[0], f[1..].join(","))
            })),
        case(Data, "utf16_with_bom", build).data({
            let mut b = vec![0xFF, 0xFE];
            for u in csv_bars(BARS, 3).encode_utf16() {
                b.extend(u.to_le_bytes());
            }
            b
        }),
        case(Data, "float_unix_seconds", build)
            .data(rows_as("timestamp,Open,High,Low,Close,Volume\n", |_, f| {
                format!("{}.0,{}", unix(f[0]), f[1..].join(","))
            })),
        case(Data, "yyyymmdd_in_timestamp_column", build)
            .data(rows_as("timestamp,Open,High,Low,Close,Volume\n", |_, f| {
                format!("{},{}", f[0].replace('-', ""), f[1..].join(","))
            })),
        case(Data, "two_digit_years_with_declared_pivot", build)
            .config_replace(
                "  prediction_horizon: 1",
                "  prediction_horizon: 1\n  format: {date: \"%m/%d/%y\"}",
            )
            .data(rows_as("Date,Open,High,Low,Close,Volume\n", |_, f| {
                let us = us_date(f[0]);
                format!(
                    "{}{},{}",
                    &us[..us.len() - 4],
                    &us[us.len() - 2..],
                    f[1..].join(",")
                )
            })),
        case(Data, "declared_columns_and_format", build)
            .config_replace(
                "  prediction_horizon: 1",
                "  prediction_horizon: 1\n  columns: {date: Datum, open: 2, high: Hoch, low: Tief, \
                 close: Schluss, volume: Umsatz}\n  format: {delimiter: \"|\", date: \"%d.%m.%Y\", \
                 time_zone: \"+01:00\"}",
            )
            .data(rows_as(
                "Datum|Eroeffnung|Hoch|Tief|Schluss|Umsatz\n",
                |_, f| {
                    let d = chrono::NaiveDate::parse_from_str(f[0], "%Y-%m-%d").unwrap();
                    format!("{}|{}", d.format("%d.%m.%Y"), f[1..].join("|"))
                },
            )),
        case(Data, "unadjusted_split_warns", build)
            .data(rows_as("Date,Open,High,Low,Close,Volume\n", |i, f| {
                let x = |s: &str| {
                    let v: f64 = s.parse().unwrap();
                    format!("{:.4}", if i >= 60 { v * 4.0 } else { v })
                };
                format!(
                    "{},{},{},{},{},{}",
                    f[0],
                    x(f[1]),
                    x(f[2]),
                    x(f[3]),
                    x(f[4]),
                    f[5]
                )
            }))
            .expect(&["trainingdata/AAA.csv:62:", "unadjusted split", "Adj Close"]),
        case(Data, "symbols_all_skips_junk_files", build)
            .config_replace("symbols: [AAA]", "symbols: all")
            .write("trainingdata/._AAA.csv", b"\x00\x05\x16\x07Mac OS X")
            .write("trainingdata/~$AAA.csv", "lock")
            .write("trainingdata/.#AAA.csv", "lock"),
        case(
            Config,
            "junk_files_beside_experiments",
            &["build", "-j", "2", "experiments"],
        )
        .write("experiments/._exp.yaml", b"\x00\x05\x16\x07Mac OS X")
        .write("experiments/~$exp.yaml", "lock: [unclosed"),
        case(Cache, "unreadable_action_records", build)
            .prebuilt()
            .damage("cache/actions")
            .expect(&["is unreadable; treating as a miss"]),
        case(Cache, "corrupt_blobs", build)
            .prebuilt()
            .damage("cache/objects")
            .expect(&["is damaged in the store", "`hft build` rebuilds it"]),
        case(Cache, "edited_action_records_rebuild", build)
            .prebuilt()
            .rewrite_all("cache/actions", |t| {
                t.replace("\"summary\": {", "\"summary\": {\"edited\": 1,")
            })
            .expect(&["was changed after it was written"]),
        case(Cache, "garbage_stat_cache", build)
            .prebuilt()
            .edit("cache/statcache.json", |_| "{{{ not json".to_string()),
        case(Cache, "torn_catalog_line", &["compare"])
            .prebuilt()
            .edit("cache/catalog.jsonl", |t| format!("{t}{{\"id\": \"tor"))
            .edit("cache/builds.jsonl", |t| format!("{t}[1")),
        case(Cache, "garbage_build_records", &["status"])
            .prebuilt()
            .damage("cache/builds"),
    ]
    .into_iter()
    .map(|c| c.code(0))
    .collect()
}

/// Overwrites every file under `dir` (recursively) with bytes that are not what was stored.
/// Damaged caches that commands must report, exit 1, instead of printing stale results.
fn damaged() -> Vec<Case> {
    use Kind::*;
    vec![
        case(
            Cache,
            "edited_action_record_fails_verify",
            &["cache", "verify"],
        )
        .prebuilt()
        .rewrite_all("cache/actions", |t| {
            t.replace("\"summary\": {", "\"summary\": {\"edited\": 1,")
        })
        .code(1)
        .expect(&["problems (listed above)"]),
        case(
            Cache,
            "report_over_damaged_blobs",
            &["report", "-o", "r.html"],
        )
        .prebuilt()
        .damage("cache/objects")
        .code(1)
        .expect(&[
            "is damaged in the store",
            "cached stage result(s) are damaged",
        ]),
    ]
}

fn damage_every_file(dir: &std::path::Path, bytes: &[u8]) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            damage_every_file(&path, bytes);
        } else {
            std::fs::write(&path, bytes).unwrap();
        }
    }
}

/// Runs one case in a fresh project; `Err` says what went wrong, with the whole output.
fn run_case(c: &Case) -> Result<(), String> {
    let p = Project::new("catalogue");
    p.write(DATA, &csv_bars(BARS, 3));
    p.write(EXPERIMENT, GOOD);
    if c.prebuild {
        let run = p.hft(&["build", "-q", "-j", "2"]);
        if run.code != 0 {
            return Err(format!(
                "the prebuild failed ({}):\n{}",
                run.code, run.stderr
            ));
        }
    }
    for (path, edit) in &c.edits {
        let text = std::fs::read_to_string(p.path(path)).unwrap();
        p.write(path, &edit(&text));
    }
    for folder in &c.damaged {
        damage_every_file(&p.path(folder), b"{ damaged");
    }
    for (folder, f) in &c.rewrites {
        for entry in std::fs::read_dir(p.path(folder)).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            std::fs::write(&path, f(&text)).unwrap();
        }
    }
    for (path, bytes) in &c.writes {
        p.write_bytes(path, bytes);
    }
    let before = p.action_records();
    let run = p.hft_env(&c.args, &c.env);
    let mut problems = Vec::new();
    if run.stderr.contains("panicked") {
        problems.push("it panicked".to_string());
    }
    if run.code != c.code {
        problems.push(format!("exit code {} (expected {})", run.code, c.code));
    }
    if c.code == 2 && !run.stderr.contains("error") {
        problems.push("no `error` in stderr".to_string());
    }
    let (haystack, fold) = if c.kind == Kind::Data {
        (run.stderr.to_lowercase(), true)
    } else {
        (run.stderr.clone(), false)
    };
    for needle in &c.needles {
        let needle = if fold {
            needle.to_lowercase()
        } else {
            needle.clone()
        };
        if !haystack.contains(&needle) {
            problems.push(format!("stderr lacks `{needle}`"));
        }
    }
    if c.code != 0 && !c.executes {
        let created: Vec<String> = p.action_records().difference(&before).cloned().collect();
        if !created.is_empty() {
            problems.push(format!(
                "input rejected before execution left action records: {created:?}"
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{}\n  command: hft {}\n  stdout:\n{}\n  stderr:\n{}",
            problems.join("; "),
            c.args.join(" "),
            indent(&run.stdout),
            indent(&run.stderr)
        ))
    }
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("    {l}\n"))
        .collect::<String>()
}

/// Runs every case (in parallel: each is a few processes) and fails naming every case that
/// did not behave, plus every `known_bug` case that now passes.
fn run_table(cases: &[Case]) {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 4);
    let chunk = cases.len().div_ceil(threads).max(1);
    let results: Vec<(usize, Result<(), String>)> = std::thread::scope(|s| {
        let handles: Vec<_> = cases
            .chunks(chunk)
            .enumerate()
            .map(|(n, part)| {
                s.spawn(move || {
                    part.iter()
                        .enumerate()
                        .map(|(i, c)| (n * chunk + i, run_case(c)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let mut failures = Vec::new();
    for (i, result) in results {
        let c = &cases[i];
        match (result, c.known_bug) {
            (Ok(()), None) => {}
            (Err(e), None) => failures.push(format!("case `{}` ({:?}): {e}", c.name, c.kind)),
            (Ok(()), Some(why)) => failures.push(format!(
                "case `{}` passes now: remove its known_bug marker ({why})",
                c.name
            )),
            (Err(e), Some(why)) if e.contains("it panicked") => {
                failures.push(format!("case `{}` ({why}): {e}", c.name))
            }
            (Err(e), Some(why)) => eprintln!(
                "known bug, case `{}`: {}\n  {why}",
                c.name,
                e.lines().next().unwrap_or_default()
            ),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

fn per_kind(cases: &[Case]) -> BTreeMap<Kind, usize> {
    let mut counts = BTreeMap::new();
    for c in cases.iter().filter(|c| c.known_bug.is_none()) {
        *counts.entry(c.kind).or_default() += 1;
    }
    counts
}

#[test]
fn damaged_caches_are_reported_with_exit_1() {
    let cases = damaged();
    assert!(cases.iter().all(|c| c.code == 1));
    run_table(&cases);
}

#[test]
fn malformed_input_is_exit_2_with_a_located_message() {
    let cases = malformed();
    let mut names = std::collections::BTreeSet::new();
    for c in &cases {
        assert!(names.insert(c.name), "duplicate case name `{}`", c.name);
        assert_eq!(c.code, 2, "case `{}`: malformed input is exit 2", c.name);
    }
    let counts = per_kind(&cases);
    eprintln!("malformed cases (known bugs excluded): {counts:?}");
    assert!(
        counts.values().sum::<usize>() >= 45,
        "the catalogue must keep at least 45 passing malformed cases: {counts:?}"
    );
    run_table(&cases);
}

#[test]
fn real_world_shapes_and_damaged_cache_entries_build() {
    let cases = accepted();
    eprintln!("accepted cases: {:?}", per_kind(&cases));
    run_table(&cases);
}

/// A data file that is a link to `/dev/zero` would be read forever: it is refused by what
/// it is, before anything reads it.
#[cfg(unix)]
#[test]
fn a_data_file_linked_to_a_device_is_refused() {
    let p = Project::new("catalogue-dev-zero");
    p.write(EXPERIMENT, GOOD);
    std::fs::create_dir_all(p.path("trainingdata")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", p.path(DATA)).unwrap();
    let run = p.hft(&["build"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("is not a regular file"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("experiments/exp.yaml:5"),
        "{}",
        run.stderr
    );
}

/// Emacs's lock file beside an experiment is a dangling link (`.#exp.yaml` ->
/// `user@host.pid`): the build skips it instead of failing to follow it.
#[cfg(unix)]
#[test]
fn an_editor_lock_link_beside_an_experiment_is_skipped() {
    let p = Project::new("catalogue-lock-link");
    p.write(EXPERIMENT, GOOD);
    p.write(DATA, &csv_bars(BARS, 3));
    std::os::unix::fs::symlink(
        "user@host.4242:1700000000",
        p.path("experiments/.#exp.yaml"),
    )
    .unwrap();
    let run = p.hft(&["build", "-q", "experiments"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
}
