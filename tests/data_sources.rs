//! Data sources through the real binary: the local layouts (`SYMBOL.csv`, `train/` +
//! `test/`, dated exports), `symbols: all`, ambiguity errors, date filters, several symbols
//! (per-symbol metrics, symbol id), intraday bars and planted synthetic signals.

mod common;

use common::{Project, csv_bars, shared_data};

/// An experiment over `symbols` (a YAML value) with `extra` lines appended under `data:`.
fn experiment(symbols: &str, extra: &str) -> String {
    format!(
        "name: exp\n\
         data:\n  source: local\n  path: trainingdata\n  symbols: {symbols}\n  \
         features: [close, log_return]\n  sequence_length: 5\n  prediction_horizon: 1\n{extra}\
         model: {{type: mlp, hidden_size: 4, num_layers: 1}}\n\
         training: {{max_steps: 2, batch_size: 8}}\n"
    )
}

fn show(p: &Project) -> serde_json::Value {
    let run = p.hft(&["show", "exp", "--json"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    serde_json::from_str(&run.stdout).unwrap()
}

fn stage<'a>(doc: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    doc["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .unwrap_or_else(|| panic!("no stage {id} in {doc}"))
}

fn ingest_rows(doc: &serde_json::Value, symbol: &str) -> u64 {
    let s = stage(doc, &format!("ingest:{symbol}"));
    s["summary"]["rows"]
        .as_u64()
        .unwrap_or_else(|| panic!("no rows in {s}"))
}

fn digest(doc: &serde_json::Value, id: &str, output: &str) -> String {
    stage(doc, id)["outputs"][output]["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The header and rows `from..to` of a CSV.
fn rows(csv: &str, from: usize, to: usize) -> String {
    let lines: Vec<&str> = csv.lines().collect();
    let mut out = format!("{}\n", lines[0]);
    for l in &lines[1 + from..1 + to] {
        out.push_str(l);
        out.push('\n');
    }
    out
}

#[test]
fn train_and_test_files_are_one_series() {
    let whole = csv_bars(150, 1);
    let a = Project::new("layout-whole");
    a.write("trainingdata/AAA.csv", &whole);
    a.write("experiments/exp.yaml", &experiment("[AAA]", ""));
    a.build();
    let b = Project::new("layout-split");
    b.write("trainingdata/train/AAA.csv", &rows(&whole, 0, 100));
    b.write("trainingdata/test/AAA.csv", &rows(&whole, 100, 150));
    b.write("experiments/exp.yaml", &experiment("[AAA]", ""));
    b.build();
    let (da, db) = (show(&a), show(&b));
    assert_eq!(ingest_rows(&db, "AAA"), 150);
    // Same bars, same dataset: the layout is not part of any key.
    assert_eq!(
        digest(&da, "ingest:AAA", "bars"),
        digest(&db, "ingest:AAA", "bars")
    );
    assert_eq!(
        digest(&da, "dataset", "dataset"),
        digest(&db, "dataset", "dataset")
    );
}

#[test]
fn newest_dated_export_wins_and_a_new_one_rebuilds() {
    let p = Project::new("layout-dated");
    p.write("trainingdata/AAA-2024-01-02.csv", &csv_bars(100, 1));
    p.write("trainingdata/AAA-2024-02-01.csv", &csv_bars(120, 1));
    p.write("experiments/exp.yaml", &experiment("[AAA]", ""));
    p.build();
    assert_eq!(ingest_rows(&show(&p), "AAA"), 120);
    // A newer export appears: the no-op memo must notice the folder changed.
    p.write("trainingdata/AAA-2024-03-01.csv", &csv_bars(130, 1));
    let run = p.build();
    assert!(
        run.ran().contains(&"exp/ingest:AAA".to_string()),
        "{}",
        run.stdout
    );
    assert_eq!(ingest_rows(&show(&p), "AAA"), 130);
}

#[test]
fn two_candidate_files_are_an_error_naming_both() {
    let p = Project::new("layout-ambiguous");
    p.write("trainingdata/AAA.csv", &csv_bars(100, 1));
    p.write("trainingdata/train/AAA.csv", &csv_bars(100, 1));
    p.write("experiments/exp.yaml", &experiment("[AAA]", ""));
    let run = p.hft(&["build"]);
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    for needle in [
        "experiments/exp.yaml:5:",
        "data.symbols[0]",
        "two candidate data files for `AAA`",
        "AAA.csv",
        "train/AAA.csv",
    ] {
        assert!(
            run.stderr.contains(needle),
            "`{needle}` in:\n{}",
            run.stderr
        );
    }
    let missing = Project::new("layout-missing");
    missing.write("trainingdata/AAA.csv", &csv_bars(100, 1));
    missing.write("experiments/exp.yaml", &experiment("[AAA, BBB]", ""));
    let run = missing.hft(&["build"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("data.symbols[1]"), "{}", run.stderr);
    assert!(
        run.stderr.contains("no data file for `BBB`"),
        "{}",
        run.stderr
    );
}

#[test]
fn symbols_all_takes_every_symbol_found_and_follows_new_files() {
    let p = Project::new("layout-all");
    p.write("trainingdata/AAA.csv", &csv_bars(100, 1));
    p.write("trainingdata/BBB-2024-01-02.csv", &csv_bars(100, 2));
    p.write("trainingdata/README.md", "not data");
    p.write("experiments/exp.yaml", &experiment("all", ""));
    let run = p.build();
    let ran = run.ran();
    assert!(ran.contains(&"exp/ingest:AAA".to_string()), "{ran:?}");
    assert!(ran.contains(&"exp/ingest:BBB".to_string()), "{ran:?}");
    p.write("trainingdata/CCC.csv", &csv_bars(100, 3));
    let run = p.build();
    let cached = run.with_state("cached");
    assert!(
        cached.contains(&"exp/ingest:AAA".to_string()),
        "{}",
        run.stdout
    );
    assert!(
        cached.contains(&"exp/ingest:BBB".to_string()),
        "{}",
        run.stdout
    );
    assert!(run.ran().contains(&"exp/ingest:CCC".to_string()));
    // Metrics per symbol beside the pooled ones.
    let doc = show(&p);
    let per = &doc["metrics"]["per_symbol"];
    for s in ["AAA", "BBB", "CCC"] {
        assert!(per[s]["price"]["mse"].is_number(), "{s}: {per}");
        assert!(per[s]["windows"].as_u64().unwrap() > 0);
    }
    let total: u64 = ["AAA", "BBB", "CCC"]
        .iter()
        .map(|s| per[s]["windows"].as_u64().unwrap())
        .sum();
    assert_eq!(doc["metrics"]["windows"].as_u64().unwrap(), total);

    let empty = Project::new("layout-all-empty");
    empty.write("trainingdata/README.md", "nothing");
    empty.write("experiments/exp.yaml", &experiment("all", ""));
    let run = empty.hft(&["build"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("`all` found no data files"),
        "{}",
        run.stderr
    );
}

#[test]
fn date_filters_cut_bars_and_rerun_only_from_ingest() {
    let p = Project::new("filters");
    p.write("trainingdata/AAA.csv", &csv_bars(400, 1)); // 2015-01-01 onwards, every day
    p.write("experiments/exp.yaml", &experiment("[AAA]", ""));
    p.build();
    assert_eq!(ingest_rows(&show(&p), "AAA"), 400);
    p.write(
        "experiments/exp.yaml",
        &experiment("[AAA]", "  start: 2015-02-01\n  end: 2015-10-31\n"),
    );
    let run = p.build();
    assert!(run.ran().contains(&"exp/ingest:AAA".to_string()));
    // 2015-02-01 ..= 2015-10-31: 273 days.
    assert_eq!(ingest_rows(&show(&p), "AAA"), 273);

    for (extra, needle) in [
        (
            "  start: 2015-13-01\n",
            "data.start: `2015-13-01` is not a date",
        ),
        (
            "  start: 2015-03-01\n  end: 2015-02-01\n",
            "data.end: 2015-02-01 is before data.start",
        ),
        ("  start: 2030-01-01\n", "2030-01-01"),
    ] {
        p.write("experiments/exp.yaml", &experiment("[AAA]", extra));
        let run = p.hft(&["build"]);
        assert_eq!(run.code, 2, "{extra}: {}", run.stderr);
        assert!(
            run.stderr.contains(needle),
            "`{needle}` in:\n{}",
            run.stderr
        );
        assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    }
}

#[test]
fn symbol_id_adds_inputs_and_changes_only_the_dataset_on() {
    let p = Project::new("symbol-id");
    p.write("trainingdata/AAA.csv", &csv_bars(120, 1));
    p.write("trainingdata/BBB.csv", &csv_bars(120, 2));
    p.write("experiments/exp.yaml", &experiment("[AAA, BBB]", ""));
    p.build();
    let before = show(&p);
    assert_eq!(stage(&before, "dataset")["summary"]["num_features"], 2);
    p.write(
        "experiments/exp.yaml",
        &experiment("[AAA, BBB]", "  symbol_id: true\n"),
    );
    let run = p.build();
    let mut ran = run.ran();
    ran.sort();
    assert_eq!(
        ran,
        ["exp/dataset", "exp/evaluate", "exp/init", "exp/train"],
        "{}",
        run.stdout
    );
    assert_eq!(stage(&show(&p), "dataset")["summary"]["num_features"], 4);
}

#[test]
fn intraday_bars_respect_sessions_and_annualise_by_the_bar() {
    let Some(data) = shared_data() else {
        eprintln!("skipped: ../shared/data is not here");
        return;
    };
    let p = Project::new("intraday");
    let csv = std::fs::read_to_string(data.join("intraday/IDX-5min-2006.csv")).unwrap();
    p.write("trainingdata/IDX.csv", &csv);
    p.write("experiments/exp.yaml", &experiment("[IDX]", ""));
    p.build();
    let crossing = show(&p);
    // Five-minute bars over a ~6.5-hour session, 252 sessions a year.
    let bpy = crossing["metrics"]["backtest"]["bars_per_year"]
        .as_f64()
        .unwrap();
    assert!((bpy - 252.0 * 78.0).abs() < 1.0, "{bpy}");
    p.write(
        "experiments/exp.yaml",
        &experiment("[IDX]", "  cross_sessions: false\n"),
    );
    p.build();
    let inside = show(&p);
    let train = |d: &serde_json::Value| stage(d, "dataset")["summary"]["train"].as_u64().unwrap();
    assert!(
        train(&inside) < train(&crossing),
        "{} vs {}",
        train(&inside),
        train(&crossing)
    );
    // Nothing before the dataset re-ran: ingest and features are shared.
    assert_eq!(
        digest(&inside, "features", "features"),
        digest(&crossing, "features", "features")
    );
}

#[test]
fn appending_bars_computes_features_for_the_tail_only() {
    let full = csv_bars(3010, 4);
    let exp = experiment("[AAA]", "").replace(
        "features: [close, log_return]",
        "features: [close, volume, log_return, ma_20, ema_10, rsi_14, macd, bb_position, volatility]",
    );
    let p = Project::new("incremental");
    p.write("trainingdata/AAA.csv", &rows(&full, 0, 3000));
    p.write("experiments/exp.yaml", &exp);
    p.build();
    let first = stage(&show(&p), "features")["summary"].clone();
    assert_eq!(first["computed_rows"], first["rows"], "{first}");

    // Ten bars appended: only their feature rows are computed.
    let started = std::time::Instant::now();
    p.write("trainingdata/AAA.csv", &rows(&full, 0, 3010));
    let run = p.build();
    let secs = started.elapsed().as_secs_f64();
    assert!(
        run.ran().contains(&"exp/features".to_string()),
        "{}",
        run.stdout
    );
    let grown = show(&p);
    let summary = &stage(&grown, "features")["summary"];
    assert_eq!(summary["computed_rows"], 10, "{summary}");
    eprintln!("append 10 bars to 3000: whole build {secs:.2}s, features {summary}");

    // The result is exactly a from-scratch build's.
    let scratch = Project::new("incremental-scratch");
    scratch.write("trainingdata/AAA.csv", &rows(&full, 0, 3010));
    scratch.write("experiments/exp.yaml", &exp);
    scratch.build();
    let fresh = show(&scratch);
    assert_eq!(
        stage(&fresh, "features")["summary"]["computed_rows"],
        summary["rows"]
    );
    for (id, output) in [("features", "features"), ("dataset", "dataset")] {
        assert_eq!(
            digest(&grown, id, output),
            digest(&fresh, id, output),
            "{id}"
        );
    }

    // A changed old bar is not an append: everything is computed again.
    let mut changed = rows(&full, 0, 3010);
    let first_row = changed.lines().nth(1).unwrap().to_string();
    let (head, _volume) = first_row.rsplit_once(',').unwrap();
    changed = changed.replacen(&first_row, &format!("{head},123"), 1);
    p.write("trainingdata/AAA.csv", &changed);
    p.build();
    let redone = show(&p);
    let s = &stage(&redone, "features")["summary"];
    assert_eq!(s["computed_rows"], s["rows"], "{s}");
}

/// A synthetic experiment over one symbol with `signal` lines under `data.synthetic:`.
fn synthetic(signal: &str) -> String {
    format!(
        "name: exp\n\
         data:\n  source: synthetic\n  symbols: [AR]\n  synthetic:\n    bars: 300\n{signal}  \
         features: [log_return]\n  sequence_length: 5\n  prediction_horizon: 1\n\
         model: {{type: mlp, hidden_size: 4, num_layers: 1}}\n\
         training: {{max_steps: 2, batch_size: 8}}\n"
    )
}

#[test]
fn planted_signals_change_the_bars_and_bad_ones_name_the_key() {
    let p = Project::new("planted");
    p.write("experiments/exp.yaml", &synthetic(""));
    p.build();
    let plain = digest(&show(&p), "ingest:AR", "bars");
    p.write(
        "experiments/exp.yaml",
        &synthetic(
            "    signal: {ar: [0.3], noise: 0.01, seasonal: {period: 5, amplitude: 0.002}}\n",
        ),
    );
    let run = p.build();
    assert!(run.ran().contains(&"exp/ingest:AR".to_string()));
    let doc = show(&p);
    assert_ne!(digest(&doc, "ingest:AR", "bars"), plain);
    assert_eq!(ingest_rows(&doc, "AR"), 300);
    // Without the signal the old bars come back from the cache.
    p.write("experiments/exp.yaml", &synthetic(""));
    p.build();
    assert_eq!(digest(&show(&p), "ingest:AR", "bars"), plain);

    for (signal, needle) in [
        ("{ar: [0.7, 0.4], noise: 0.01}", "data.synthetic.signal.ar"),
        ("{ar: [0.3], noise: 0}", "data.synthetic.signal.noise"),
        (
            "{noise: 0.01, seasonal: {period: 1, amplitude: 0.01}}",
            "data.synthetic.signal.seasonal.period",
        ),
    ] {
        p.write(
            "experiments/exp.yaml",
            &synthetic(&format!("    signal: {signal}\n")),
        );
        let run = p.hft(&["build"]);
        assert_eq!(run.code, 2, "{signal}: {}", run.stderr);
        assert!(
            run.stderr.contains(needle),
            "`{needle}` in:\n{}",
            run.stderr
        );
        assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    }
}
