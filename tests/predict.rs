//! `hft predict` and `hft export` through the binary: forecasts of the latest bars that agree
//! with the evaluation where both score a window, appended bars scored without retraining,
//! the second scoring of the same bars executing nothing, the user errors (exit 2, nothing
//! written), and exports that are the same bytes twice.

mod common;

use std::collections::BTreeMap;

use common::{LOCAL_EXPERIMENT, Project, csv_bars};

/// A CSV's rows by `(symbol, timestamp)`, its first two columns.
type Rows = BTreeMap<(String, String), Vec<String>>;

/// `(symbol, timestamp)` -> the cells of a CSV with that key in its first two columns.
fn by_key(csv: &str) -> (Vec<String>, Rows) {
    let mut lines = csv.lines();
    let header = lines
        .next()
        .unwrap()
        .split(',')
        .map(str::to_string)
        .collect();
    let rows = lines
        .map(|l| {
            let cells: Vec<String> = l.split(',').map(str::to_string).collect();
            ((cells[0].clone(), cells[1].clone()), cells)
        })
        .collect();
    (header, rows)
}

fn column(header: &[String], name: &str) -> usize {
    header.iter().position(|h| h == name).unwrap()
}

#[test]
fn predict_scores_every_window_like_the_evaluation_and_caches() {
    let p = Project::with_local_data("predict-basic", LOCAL_EXPERIMENT);
    p.build();
    let run = p.hft(&["predict", "exp", "-o", "out.csv"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("scored"), "{}", run.stderr);
    let text = std::fs::read_to_string(p.path("out.csv")).unwrap();
    let (header, rows) = by_key(&text);
    assert_eq!(
        header[..5],
        ["symbol", "timestamp", "close", "pred_r1", "pred_price1"]
    );
    assert_eq!(header[5..], ["p_buy", "p_hold", "p_sell", "action"]);
    // 120 bars, one of log_return's warm-up, windows of 5: every window, the latest too.
    assert_eq!(rows.len(), 120 - 1 - 5 + 1);
    let last = text.lines().last().unwrap();
    assert!(last.starts_with("AAA,2015-04-30T00:00:00Z,"), "{last}");

    // Where the evaluation scored a window (the test split), the forecast is the same.
    let export = p.hft(&["export", "exp", "-o", "export"]);
    assert_eq!(export.code, 0, "{}", export.stderr);
    let evaluated = std::fs::read_to_string(p.path("export/predictions.csv")).unwrap();
    let (eval_header, eval_rows) = by_key(&evaluated);
    assert!(eval_rows.len() > 5);
    let (ours, theirs) = (column(&header, "pred_r1"), column(&eval_header, "pred_r1"));
    for (key, cells) in &eval_rows {
        let mine = &rows[key];
        let (a, b): (f32, f32) = (mine[ours].parse().unwrap(), cells[theirs].parse().unwrap());
        assert!(
            (a - b).abs() <= 1e-6 * b.abs().max(1e-3),
            "{key:?}: {a} vs {b}"
        );
        let probs: f32 = (5..8).map(|i| mine[i].parse::<f32>().unwrap()).sum();
        assert!((probs - 1.0).abs() < 1e-5);
    }

    // The same bars again: read back, nothing executed, the same bytes.
    let again = p.hft(&["predict", "exp", "-o", "again.csv"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(
        again.stderr.contains("cached, nothing executed"),
        "{}",
        again.stderr
    );
    assert_eq!(std::fs::read_to_string(p.path("again.csv")).unwrap(), text);

    // --from/--to choose windows by their last bar; --json is one document.
    let json = p.hft(&["predict", "exp", "--from", "2015-04-29", "--json"]);
    assert_eq!(json.code, 0, "{}", json.stderr);
    let doc: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let forecasts = doc["forecasts"].as_array().unwrap();
    assert_eq!(forecasts.len(), 2);
    assert_eq!(forecasts[1]["timestamp"], "2015-04-30T00:00:00Z");
    assert!(forecasts[1]["prices"][0].as_f64().unwrap() > 0.0);
    assert!(["buy", "hold", "sell"].contains(&forecasts[1]["action"].as_str().unwrap()));
}

#[test]
fn appended_bars_are_scored_with_the_trained_model_without_retraining() {
    let p = Project::with_local_data("predict-append", LOCAL_EXPERIMENT);
    p.build();
    let before = p.action_records();
    // csv_bars is sequential: 130 bars are the same 120 and 10 more.
    p.write("trainingdata/AAA.csv", &csv_bars(130, 3));
    let run = p.hft(&["predict", "exp", "-o", "out.csv"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("changed since it was trained"),
        "{}",
        run.stderr
    );
    let text = std::fs::read_to_string(p.path("out.csv")).unwrap();
    assert_eq!(text.lines().count(), 1 + 130 - 1 - 5 + 1);
    assert!(
        text.lines()
            .last()
            .unwrap()
            .starts_with("AAA,2015-05-10T00:00:00Z,")
    );
    // Nothing was trained: the only new record is the forecasts'.
    let after = p.action_records();
    assert_eq!(after.len(), before.len() + 1, "{after:?}");
    let status = p.hft(&["status"]);
    assert!(status.stdout.contains("stale"), "{}", status.stdout);

    // Another file of bars, named for its symbol.
    p.write("new/AAA.csv", &csv_bars(40, 9));
    let other = p.hft(&["predict", "exp", "--data", "new/AAA.csv", "-o", "new.csv"]);
    assert_eq!(other.code, 0, "{}", other.stderr);
    let text = std::fs::read_to_string(p.path("new.csv")).unwrap();
    assert_eq!(text.lines().count(), 1 + 40 - 1 - 5 + 1);
}

#[test]
fn user_errors_exit_2_and_write_nothing() {
    let p = Project::with_local_data("predict-errors", LOCAL_EXPERIMENT);
    let not_built = p.hft(&["predict", "exp", "-o", "out.csv"]);
    not_built.assert_user_error(&["`exp` is not built", "hft build"]);
    let export = p.hft(&["export", "exp", "-o", "export"]);
    export.assert_user_error(&["not built"]);
    assert!(!p.path("export").exists());
    p.build();

    p.write("few/AAA.csv", &csv_bars(5, 1));
    let few = p.hft(&["predict", "exp", "--data", "few/AAA.csv", "-o", "out.csv"]);
    few.assert_user_error(&[
        "5 bars",
        "at least 6",
        "1 bars of feature warm-up",
        "window of 5",
    ]);

    let unknown = p.hft(&["predict", "nope"]);
    unknown.assert_user_error(&["no experiment named `nope`"]);
    let dates = p.hft(&["predict", "exp", "--from", "soon"]);
    dates.assert_user_error(&["--from soon"]);

    // Settings the model was not trained with.
    p.write(
        "experiments/exp.yaml",
        &LOCAL_EXPERIMENT.replace("[close, log_return]", "[close, log_return, rsi_14]"),
    );
    let features = p.hft(&["predict", "exp", "-o", "out.csv"]);
    features.assert_user_error(&["other settings", "data.features", "rsi_14"]);
    assert!(!p.path("out.csv").exists());
}

#[test]
fn symbols_without_an_id_are_refused_and_exports_are_byte_stable() {
    let p = Project::with_local_data(
        "predict-ids",
        &LOCAL_EXPERIMENT.replace("symbols: [AAA]", "symbols: [AAA, BBB]\n  symbol_id: true"),
    );
    p.write("trainingdata/BBB.csv", &csv_bars(120, 5));
    p.build();
    p.write("other/CCC.csv", &csv_bars(60, 2));
    let run = p.hft(&["predict", "exp", "--data", "other/CCC.csv", "-o", "out.csv"]);
    run.assert_user_error(&["'CCC' has no id", "AAA, BBB"]);
    assert!(!p.path("out.csv").exists());
    let both = p.hft(&["predict", "exp", "-o", "out.csv"]);
    assert_eq!(both.code, 0, "{}", both.stderr);
    let text = std::fs::read_to_string(p.path("out.csv")).unwrap();
    assert!(text.contains("\nBBB,") && text.contains("\nAAA,"));
    let one = p.hft(&["predict", "exp", "--symbols", "BBB", "-o", "bbb.csv"]);
    assert_eq!(one.code, 0, "{}", one.stderr);
    let text = std::fs::read_to_string(p.path("bbb.csv")).unwrap();
    assert!(text.contains("\nBBB,") && !text.contains("\nAAA,"));
    p.hft(&["predict", "exp", "--symbols", "ZZZ"])
        .assert_user_error(&["--symbols ZZZ", "AAA, BBB"]);

    for dir in ["one", "two"] {
        let run = p.hft(&["export", "exp", "-o", dir]);
        assert_eq!(run.code, 0, "{}", run.stderr);
    }
    for file in [
        "model.safetensors",
        "model.json",
        "config.yaml",
        "metrics.json",
        "predictions.csv",
    ] {
        let a = std::fs::read(p.path(&format!("one/{file}"))).unwrap();
        let b = std::fs::read(p.path(&format!("two/{file}"))).unwrap();
        assert!(
            !a.is_empty() && a == b,
            "{file} differs between two exports"
        );
    }
    let card: serde_json::Value =
        serde_json::from_slice(&std::fs::read(p.path("one/model.json")).unwrap()).unwrap();
    assert_eq!(
        card["inputs"]["features"],
        serde_json::json!(["close", "log_return", "symbol=AAA", "symbol=BBB"])
    );
    assert_eq!(card["model"]["type"], "mlp");
    assert_eq!(card["inputs"]["relative"][0], true);
    assert_eq!(
        card["outputs"]["price"]["target_std"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert!(
        card["stage_keys"]["train"]
            .as_str()
            .unwrap()
            .starts_with("k1-")
    );
    assert!(card["metrics"]["price"].is_object());
    let names: Vec<&str> = card["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"layers.0.weight") && names.contains(&"heads.action.out.bias"));
    let config = std::fs::read_to_string(p.path("one/config.yaml")).unwrap();
    assert!(config.contains("symbol_id: true"), "{config}");
    let csv = std::fs::read_to_string(p.path("one/predictions.csv")).unwrap();
    assert!(csv.lines().nth(1).unwrap().contains("T00:00:00Z"), "{csv}");
}

/// The use case as a library: a request in, forecasts out; the second request for the same
/// bars is answered from the store with the same values.
#[test]
fn the_use_case_answers_without_the_binary() {
    use hft::usecase::Selection;
    use hft::usecase::predict::{PredictRequest, predict};
    let p = Project::with_local_data("predict-usecase", LOCAL_EXPERIMENT);
    p.build();
    let req = PredictRequest {
        select: Selection {
            paths: vec![p.path("experiments/exp.yaml")],
            overrides: vec![format!("data.path={}", p.path("trainingdata").display())],
            filters: vec![],
        },
        cache_dir: p.path("cache"),
        experiment: "exp".to_string(),
        data: None,
        symbols: vec![],
        from: Some("2015-04-01".to_string()),
        to: None,
    };
    let first = predict(&req).unwrap();
    assert!(!first.cached && first.warnings.is_empty());
    assert_eq!((first.model.as_str(), first.forecasts.horizon), ("mlp", 1));
    assert_eq!(first.forecasts.rows.len(), 30);
    let second = predict(&req).unwrap();
    assert!(second.cached);
    assert_eq!((second.forecasts, second.key), (first.forecasts, first.key));
    let mut later = req.clone();
    later.from = Some("2015-04-30".to_string());
    assert_eq!(predict(&later).unwrap().forecasts.rows.len(), 1);
}
