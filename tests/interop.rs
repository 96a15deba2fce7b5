//! Proof that an export runs outside hft: tiny mlp, lstm, gru and transformer models are
//! trained, exported, and `tests/interop/forward.py` (numpy only) reproduces `hft predict`'s
//! forecasts from `model.safetensors`, `model.json` and the bars' feature rows to 1e-5.
//!
//! Needs `python3` with numpy (CI installs Debian's python3-numpy in `.ci/run`): without
//! them this test fails, it does not skip.

mod common;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use common::{Project, csv_bars};

/// Two symbols, a price-level feature (relative to the window's close), a return and an
/// oscillator; a few optimizer steps.
fn experiment(name: &str, model: &str) -> String {
    format!(
        "name: {name}
data:
  source: local
  path: trainingdata
  symbols: [AAA, BBB]
  symbol_id: {}
  features: [close, log_return, rsi_14]
  sequence_length: 6
  prediction_horizon: 2
model: {model}
training: {{max_steps: 4, batch_size: 16}}
",
        name == "transformer_pooled"
    )
}

const MODELS: [(&str, &str); 5] = [
    ("mlp", "{type: mlp, hidden_size: 8, num_layers: 2}"),
    ("lstm", "{type: lstm, hidden_size: 8, num_layers: 2}"),
    ("gru", "{type: gru, hidden_size: 8, num_layers: 2}"),
    (
        "transformer",
        "{type: transformer, hidden_size: 8, num_layers: 2, num_heads: 2}",
    ),
    (
        "transformer_pooled",
        "{type: transformer, hidden_size: 8, num_layers: 1, num_heads: 2, pooling: attention, positions: learned}",
    ),
];

/// Appends the feature rows of `bars` (hft's own feature code) as `forward.py` reads them:
/// `symbol,timestamp,close,<features>`, floats in shortest round-trip form.
fn append_rows(out: &mut String, bars: &hft::data::Bars, symbol: &str, names: &[String]) {
    let table = hft::data::features::compute(bars, symbol, names).unwrap();
    for (r, ts) in table.timestamps.iter().enumerate() {
        let _ = write!(out, "{symbol},{ts},{}", table.close[r]);
        for v in &table.values[r * names.len()..(r + 1) * names.len()] {
            let _ = write!(out, ",{v}");
        }
        out.push('\n');
    }
}

/// The feature rows `forward.py` reads, of both symbols.
fn features_csv(p: &Project, names: &[String]) -> String {
    let mut out = format!("symbol,timestamp,close,{}\n", names.join(","));
    for symbol in ["AAA", "BBB"] {
        let path = p.path(&format!("trainingdata/{symbol}.csv"));
        let bytes = std::fs::read(&path).unwrap();
        let bars = hft::data::ingest::parse_csv(&path, &bytes).unwrap();
        append_rows(&mut out, &bars, symbol, names);
    }
    out
}

/// `(symbol, unix seconds)` -> `pred_r*`, `p_*` values of a forecasts CSV.
fn values(csv: &str, iso: bool) -> BTreeMap<(String, i64), Vec<f64>> {
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let keep: Vec<usize> = (0..header.len())
        .filter(|&i| header[i].starts_with("pred_r") || header[i].starts_with("p_"))
        .collect();
    lines
        .map(|l| {
            let cells: Vec<&str> = l.split(',').collect();
            let ts = if iso {
                chrono::DateTime::parse_from_rfc3339(cells[1])
                    .unwrap()
                    .timestamp()
            } else {
                cells[1].parse().unwrap()
            };
            let v = keep.iter().map(|&i| cells[i].parse().unwrap()).collect();
            ((cells[0].to_string(), ts), v)
        })
        .collect()
}

/// The first Python with numpy among `$HFT_PYTHON`, `python3` on PATH and Debian's
/// `/usr/bin/python3` (what `.ci/run` installs python3-numpy into, while a version manager's
/// `python3` may come first on PATH). None is a failure, not a skip.
fn python() -> String {
    let candidates = std::env::var("HFT_PYTHON")
        .ok()
        .into_iter()
        .chain(["python3".to_string(), "/usr/bin/python3".to_string()]);
    for candidate in candidates {
        let has_numpy = Command::new(&candidate)
            .args(["-c", "import numpy"])
            .output()
            .is_ok_and(|o| o.status.success());
        if has_numpy {
            return candidate;
        }
    }
    panic!(
        "the interop test needs python3 with numpy (Debian: apt-get install python3-numpy; \
         or set HFT_PYTHON)"
    );
}

fn python_forward(export: &Path, features: &Path) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/forward.py");
    let out = Command::new(python())
        .arg(&script)
        .arg(export)
        .arg(features)
        .output()
        .unwrap_or_else(|e| panic!("python3 is needed for the interop test (with numpy): {e}"));
    assert!(
        out.status.success(),
        "forward.py failed (python3 with numpy is needed):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn numpy_reproduces_hft_predict_from_the_export() {
    let p = Project::new("interop");
    p.write("trainingdata/AAA.csv", &csv_bars(160, 3));
    p.write("trainingdata/BBB.csv", &csv_bars(160, 8));
    for (name, model) in MODELS {
        p.write(
            &format!("experiments/{name}.yaml"),
            &experiment(name, model),
        );
    }
    p.build();
    let names: Vec<String> = ["close", "log_return", "rsi_14"].map(String::from).to_vec();
    p.write("features.csv", &features_csv(&p, &names));
    for (name, _) in MODELS {
        let export = p.hft(&["export", name, "-o", &format!("export-{name}")]);
        assert_eq!(export.code, 0, "{name}: {}", export.stderr);
        let predict = p.hft(&["predict", name, "-o", &format!("{name}.csv")]);
        assert_eq!(predict.code, 0, "{name}: {}", predict.stderr);
        let hft = values(
            &std::fs::read_to_string(p.path(&format!("{name}.csv"))).unwrap(),
            true,
        );
        let numpy = values(
            &python_forward(&p.path(&format!("export-{name}")), &p.path("features.csv")),
            false,
        );
        assert_eq!(hft.len(), numpy.len(), "{name}: windows scored");
        // Relative to each column's scale: a return near 0 has no relative digits to keep.
        let width = hft.values().next().unwrap().len();
        let scale: Vec<f64> = (0..width)
            .map(|c| {
                hft.values()
                    .map(|v| v[c].abs())
                    .fold(0.0, f64::max)
                    .max(1e-12)
            })
            .collect();
        let (mut worst, mut pure) = (0f64, 0f64);
        for (key, ours) in &hft {
            let theirs = &numpy[key];
            for c in 0..width {
                let err = (ours[c] - theirs[c]).abs() / ours[c].abs().max(scale[c]);
                worst = worst.max(err);
                pure = pure.max((ours[c] - theirs[c]).abs() / ours[c].abs().max(1e-30));
                assert!(
                    err <= 1e-5,
                    "{name} {key:?} column {c}: hft {} numpy {} ({err:e})",
                    ours[c],
                    theirs[c]
                );
            }
        }
        eprintln!(
            "{name}: {} windows, largest difference {worst:.1e} of the column scale, {pure:.1e} of the value",
            hft.len()
        );
    }
}

/// For `scripts/predict_bench.py`: the feature rows `forward.py` and the PyTorch peer read,
/// of every CSV in `HFT_BENCH_DATA` (its stem the symbol) under the comma-separated
/// `HFT_BENCH_FEATURES`, written to `HFT_BENCH_OUT`.
#[test]
#[ignore = "a benchmark helper: needs HFT_BENCH_DATA, HFT_BENCH_FEATURES, HFT_BENCH_OUT"]
fn bench_feature_rows() {
    let var = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} is not set"));
    let dir = std::path::PathBuf::from(var("HFT_BENCH_DATA"));
    let names: Vec<String> = var("HFT_BENCH_FEATURES")
        .split(',')
        .map(str::to_string)
        .collect();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "csv"))
        .collect();
    files.sort();
    let mut out = format!("symbol,timestamp,close,{}\n", names.join(","));
    for path in files {
        let symbol = path.file_stem().unwrap().to_string_lossy().into_owned();
        let bytes = std::fs::read(&path).unwrap();
        let bars = hft::data::ingest::parse_csv(&path, &bytes).unwrap();
        append_rows(&mut out, &bars, &symbol, &names);
    }
    std::fs::write(var("HFT_BENCH_OUT"), out).unwrap();
}
