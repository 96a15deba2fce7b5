//! The results table printed after a build: one row per experiment with its headline
//! results.

use crate::term::table;

/// The table printed after a build: one row per experiment with its headline results.
pub fn results_table(
    reports: &[crate::graph::exec::ExperimentReport],
    experiments: &[&crate::config::Experiment],
) -> Vec<String> {
    table(&results_rows(reports, experiments))
}

/// The cells of [`results_table`], header first.
pub fn results_rows(
    reports: &[crate::graph::exec::ExperimentReport],
    experiments: &[&crate::config::Experiment],
) -> Vec<Vec<String>> {
    use crate::graph::exec::StageState;
    let mut rows = vec![
        [
            "experiment",
            "model",
            "optimizer",
            "ran/cached",
            "val loss",
            "dir acc",
            "sharpe",
            "buy&hold",
        ]
        .map(str::to_string)
        .to_vec(),
    ];
    for (r, e) in reports.iter().zip(experiments) {
        let count = |f: fn(&StageState) -> bool| r.stages.iter().filter(|s| f(&s.state)).count();
        let ran = count(|s| matches!(s, StageState::Ran { .. }));
        let cached = count(|s| matches!(s, StageState::Cached));
        let summary = |stage: &str| {
            r.stages
                .iter()
                .find(|s| s.id == stage)
                .and_then(|s| s.record.as_ref())
                .map(|rec| rec.summary.clone())
                .unwrap_or_default()
        };
        let (train, metrics) = (summary("train"), summary("evaluate"));
        let num = |v: &serde_json::Value, fmt: fn(f64) -> String| {
            v.as_f64().map(fmt).unwrap_or_else(|| "-".to_string())
        };
        let val_loss = if train["best_val_loss"].is_null() {
            &train["final_val_loss"]
        } else {
            &train["best_val_loss"]
        };
        rows.push(vec![
            r.name.clone(),
            e.model.kind.clone(),
            e.optimizer.kind.clone(),
            if r.error().is_some() {
                "FAILED".to_string()
            } else {
                format!("{ran}/{cached}")
            },
            num(val_loss, |x| format!("{x:.4}")),
            num(&metrics["price"]["directional_accuracy"], |x| {
                format!("{:.1}%", 100.0 * x)
            }),
            num(&metrics["backtest"]["strategy"]["sharpe"], |x| {
                format!("{x:.2}")
            }),
            num(&metrics["backtest"]["buy_and_hold"]["sharpe"], |x| {
                format!("{x:.2}")
            }),
        ]);
    }
    rows
}
