//! `hft report`: one self-contained HTML file with inline SVG plots.
//!
//! The document loads nothing: CSS and JavaScript are inline, and the plots are SVG drawn
//! by plotters (its SVG backend writes `<text>` elements, so no font files are needed: the
//! browser draws the labels) or, for the interactive views, by the page's script from JSON
//! embedded in the page. Every piece of user text (experiment names, file paths, config
//! values) is escaped. The output depends only on the input, so a report of the same builds
//! is the same file.
//!
//! This file assembles the page; [`runs`](super::runs) gathers each experiment's figures,
//! [`tables`](super::tables) writes the runs and config tables, [`data`](super::data) reads
//! the stored results, [`plots`](super::plots), [`time_plots`](super::time_plots) and
//! [`symbols`](super::symbols) draw them, [`interactive`](super::interactive) writes the
//! views the script draws.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::chart::Plot;
use super::data::{LossCurves, equity_curves, horizon_stats};
use super::interactive;
use super::plots::{calibration_plot, fold_plot, horizon_plot, loss_plot, scatter_plot};
use super::runs::{Run, runs};
use super::sweep::sweeps;
use super::symbols::symbols_section;
use super::tables::{config_diff_section, display_value, fold_table, metrics_section};
use super::time_plots::{drawdown_plot, equity_plot};
use crate::eval::overfitting::{parse_fold_returns, sweep_pbo};

/// What the report shows of one experiment, gathered by the CLI from the store.
#[derive(Debug, Clone, Default)]
pub struct ReportExperiment {
    pub name: String,
    pub file: String,
    pub model: String,
    pub optimizer: String,
    /// Every resolved config leaf (`optimizer.lr` -> `0.001`, values as JSON text).
    pub config: BTreeMap<String, String>,
    /// Numeric results, as in the catalog (`backtest.strategy.sharpe`, `train.best_val_loss`).
    pub metrics: BTreeMap<String, f64>,
    /// The train stage's `log` blob, parsed (`train::TrainLog` as JSON); `None` if not built.
    pub train_log: Option<serde_json::Value>,
    /// The evaluate stage's `predictions` blob (CSV bytes), or with walk-forward the
    /// `walk_forward` stage's (every fold's test windows); `None` if not built.
    pub predictions: Option<Vec<u8>>,
    /// With walk-forward, the `walk_forward` stage's per-fold figures
    /// (`walk_forward.per_fold` of its metrics); `None` otherwise.
    pub folds: Option<Vec<serde_json::Value>>,
    /// The `walk_forward` stage's `folds` output (JSON bytes: each fold's strategy returns,
    /// for the PBO section); `None` without walk-forward.
    pub folds_blob: Option<Vec<u8>>,
}

/// The whole HTML document.
///
/// A missing or unreadable train log or predictions blob shows as a note in place of its
/// plots; it never fails the report.
pub fn render(experiments: &[ReportExperiment]) -> Result<String, String> {
    let mut html = String::with_capacity(64 * 1024);
    html.push_str(HEAD);
    let count = match experiments.len() {
        1 => "1 experiment".to_string(),
        n => format!("{n} experiments"),
    };
    let _ = writeln!(html, "<h1>hft report</h1>\n<p class=\"sub\">{count}</p>");
    let (runs, groups) = runs(experiments);
    let sweeps = sweeps(&runs);
    metrics_section(&mut html, &runs, &groups);
    interactive::loss_section(&mut html, &runs);
    interactive::sweep_sections(&mut html, &runs, &sweeps);
    pbo_section(&mut html, experiments);
    config_diff_section(&mut html, experiments);
    for run in &runs {
        experiment_section(&mut html, run);
    }
    interactive::data_and_script(&mut html, &runs, &sweeps);
    html.push_str("</body>\n</html>\n");
    Ok(html)
}

const HEAD: &str = r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>hft report</title>
<style>
body { font-family: system-ui, sans-serif; margin: 1.5rem 2rem; color: #222; background: #fff; }
h1 { margin-bottom: 0.2rem; }
h2 { margin-top: 2rem; border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; }
.sub, .meta { color: #666; margin-top: 0; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: 0.9rem; }
th, td { border: 1px solid #ddd; padding: 0.25rem 0.5rem; text-align: left; }
td { white-space: nowrap; }
th { background: #f4f4f4; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.best { font-weight: bold; background: #eef7ee; }
td.no-skill { color: #b00020; }
td code, th code { font-size: 0.85rem; }
.plots { display: grid; grid-template-columns: repeat(auto-fit, minmax(360px, 1fr)); gap: 1rem; }
figure { margin: 0; border: 1px solid #e4e4e4; border-radius: 4px; padding: 0.5rem; }
figure svg { width: 100%; height: auto; display: block; }
figcaption { font-size: 0.85rem; color: #444; margin-top: 0.3rem; }
.not-built { color: #999; font-style: italic; padding: 3rem 0; text-align: center; }
details { margin-top: 0.8rem; }
table.runs th[data-type] { cursor: pointer; user-select: none; }
table.runs th[aria-sort="ascending"]::after { content: " \25B2"; }
table.runs th[aria-sort="descending"]::after { content: " \25BC"; }
table.runs tr.group th { text-align: left; background: #e9eef6; font-weight: normal; }
.swatch { display: inline-block; width: 0.7rem; height: 0.7rem; border-radius: 2px; margin-right: 0.35rem; vertical-align: baseline; }
.controls { margin: 0.4rem 0; }
.controls label { margin-right: 0.8rem; white-space: nowrap; }
.toggles { display: flex; flex-wrap: wrap; gap: 0.2rem 0.9rem; font-size: 0.9rem; margin: 0.4rem 0; }
.js-plot svg { width: 100%; height: auto; display: block; }
.sweep-grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(320px, 1fr)); gap: 1rem; }
.js-plot text { font-family: system-ui, sans-serif; font-size: 12px; fill: #333; }
.symbols table { margin-bottom: 0.8rem; }
</style>
</head>
<body>
"#;

/// Escapes text for element content and quoted attribute values.
pub(super) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}

/// The probability of backtest overfitting of the reported experiments as a sweep, when
/// some have walk-forward folds: one sentence (the figures `hft compare --pbo` prints).
fn pbo_section(html: &mut String, experiments: &[ReportExperiment]) {
    let with: Vec<(&ReportExperiment, &Vec<u8>)> = experiments
        .iter()
        .filter_map(|e| Some((e, e.folds_blob.as_ref()?)))
        .collect();
    if with.is_empty() {
        return;
    }
    html.push_str("<section id=\"pbo\">\n<h2>Probability of backtest overfitting</h2>\n");
    let folds: Result<Vec<_>, String> = with
        .iter()
        .map(|(e, b)| parse_fold_returns(b).map_err(|err| format!("{}: {err}", e.name)))
        .collect();
    match folds.and_then(|f| sweep_pbo(&f)) {
        Ok(p) => {
            let _ = writeln!(
                html,
                "<p>{}.</p>\n<p class=\"meta\">Combinatorially symmetric cross-validation \
                 (Bailey, Borwein, López de Prado and Zhu, 2017) over the walk-forward folds' \
                 strategy returns, the experiments as trials: the share of splits of the folds \
                 into halves in which the best experiment in-sample ranks at or below the \
                 median out of sample. Near 0, picking the best carries over; near 0.5, it is \
                 picking noise.{}</p>",
                escape(&p.sentence()),
                p.fold_note()
                    .map(|n| format!(" Note: {}.", escape(&n)))
                    .unwrap_or_default()
            );
        }
        Err(why) => {
            let _ = writeln!(html, "<p>{}</p>", escape(&why));
        }
    }
    if with.len() < experiments.len() {
        let _ = writeln!(
            html,
            "<p class=\"meta\">Without walk-forward folds, not counted: {}.</p>",
            escape(
                &experiments
                    .iter()
                    .filter(|e| e.folds_blob.is_none())
                    .map(|e| e.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        );
    }
    html.push_str("</section>\n");
}

// ---------------------------------------------------------------------------------------
// per experiment

fn experiment_section(html: &mut String, run: &Run) {
    let (index, e) = (run.index, run.e);
    let _ = writeln!(
        html,
        "<section class=\"experiment\" id=\"exp-{index}\">\n<h2>{}</h2>\n\
         <p class=\"meta\">{} &middot; model {} &middot; optimizer {}</p>\n<div class=\"plots\">",
        escape(&e.name),
        escape(&e.file),
        escape(&e.model),
        escape(&e.optimizer)
    );
    let loss = e
        .train_log
        .as_ref()
        .map(|log| loss_plot(&LossCurves::from_log(log)));
    figure(html, "loss", "Training and validation loss per epoch", loss);

    let predictions = run
        .predictions
        .as_ref()
        .map(|p| p.as_ref().map_err(Clone::clone));
    let evaluation = &run.evaluation;
    let equity = predictions
        .clone()
        .map(|p| equity_plot(&equity_curves(&p?.rows, evaluation), evaluation));
    figure(
        html,
        "equity",
        "Equity on the test split: strategy against buy-and-hold",
        equity,
    );
    let drawdown = predictions
        .clone()
        .map(|p| drawdown_plot(&equity_curves(&p?.rows, evaluation)));
    figure(
        html,
        "drawdown",
        "Drawdown on the test split: how far each equity curve is below its peak",
        drawdown,
    );
    let scatter = predictions.clone().map(|p| scatter_plot(&p?.rows));
    figure(
        html,
        "scatter",
        "Predicted against actual next-bar return (r1) per test window",
        scatter,
    );
    let stats = predictions.clone().map(|p| p.map(horizon_stats));
    figure(
        html,
        "horizon",
        "Skill against persistence at every horizon step (r1 the next bar)",
        stats.as_ref().map(|s| horizon_plot(s.as_ref()?)),
    );
    // A probabilistic model's band: observed coverage against the nominal.
    if let (Some(Ok(p)), Some(Ok(s))) = (&predictions, &stats)
        && let Some(levels) = p.band_levels
    {
        figure(
            html,
            "calibration",
            "Calibration of the forecast band: observed against nominal coverage per step",
            Some(calibration_plot(&s.coverage, levels)),
        );
    }
    if let Some(folds) = &e.folds {
        let points: Vec<(f64, Option<f64>, Option<f64>)> = folds
            .iter()
            .map(|f| {
                let index = f["index"].as_f64().unwrap_or(0.0);
                (index, f["skill"].as_f64(), f["ridge_skill"].as_f64())
            })
            .collect();
        figure(
            html,
            "folds",
            "Skill against persistence per walk-forward fold (out of sample)",
            Some(fold_plot(&points)),
        );
    }
    html.push_str("</div>\n");
    if let Some(folds) = &e.folds {
        fold_table(html, folds);
    }
    if let Some(Ok(p)) = &predictions {
        symbols_section(html, run, p);
    }

    let _ = write!(
        html,
        "<details><summary>Resolved config ({} values)</summary>\n\
         <div class=\"scroll\"><table class=\"config\">\n",
        e.config.len()
    );
    for (key, value) in &e.config {
        let _ = writeln!(
            html,
            "<tr><td><code>{}</code></td><td>{}</td></tr>",
            escape(key),
            escape(&display_value(value))
        );
    }
    html.push_str("</table></div>\n</details>\n</section>\n");
}

/// One plot's figure: `None` when the stage it needs is not built, `Err` when its input
/// could not be read or drawn (shown instead of the plot).
pub(super) fn figure(
    html: &mut String,
    kind: &str,
    caption: &str,
    plot: Option<Result<Plot, String>>,
) {
    match plot {
        Some(Ok(plot)) => {
            let svg = plot
                .svg
                // Inline SVG in HTML needs no namespace declaration; dropping it keeps the
                // document free of any URL.
                .replacen(" xmlns=\"http://www.w3.org/2000/svg\"", "", 1)
                .replacen(
                    "<svg ",
                    &format!("<svg role=\"img\" aria-label=\"{}\" ", escape(caption)),
                    1,
                );
            let _ = writeln!(
                html,
                "<figure class=\"plot {kind}\">\n{svg}<figcaption>{}. {}</figcaption>\n</figure>",
                escape(caption),
                escape(&plot.note)
            );
        }
        other => {
            let why = match other {
                Some(Err(err)) => err,
                _ => "not built".to_string(),
            };
            let _ = writeln!(
                html,
                "<figure class=\"plot-missing {kind}\"><div class=\"not-built\">{}</div>\
                 <figcaption>{}</figcaption></figure>",
                escape(&why),
                escape(caption)
            );
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::report::data::parse_predictions;

    pub(in crate::report) const CSV: &str = "\
symbol,timestamp,pred_r1,pred_r2,actual_r1,actual_r2,logit_buy,logit_hold,logit_sell,action,label
AAA,100,0.01,0.0,0.02,0.01,2,0,0,buy,buy
BBB,100,-0.02,0.0,0.01,0.0,0,0,2,sell,buy
AAA,200,-0.005,0.0,-0.03,0.0,0,0,2,sell,sell
BBB,200,0.0,0.0,0.04,0.0,0,2,0,hold,buy
AAA,300,0.02,0.0,0.01,0.0,2,0,0,buy,buy
";

    pub(in crate::report) fn experiment(name: &str, lr: &str) -> ReportExperiment {
        let log = serde_json::json!({
            "epochs": [
                {"epoch": 1, "step": 4, "train_loss": 1.2, "val_loss": 1.1, "lr": 0.001},
                {"epoch": 2, "step": 8, "train_loss": 0.9, "val_loss": 1.0, "lr": 0.001},
                {"epoch": 3, "step": 12, "train_loss": 0.8, "val_loss": null, "lr": 0.001},
            ],
            "total_steps": 12,
            "best_epoch": 2,
            "best_val_loss": 1.0,
            "final_val_loss": 1.0,
        });
        ReportExperiment {
            name: name.to_string(),
            file: format!("experiments/{name}.yaml"),
            model: "mlp".to_string(),
            optimizer: "adamw".to_string(),
            config: BTreeMap::from([
                ("name".to_string(), format!("\"{name}\"")),
                ("description".to_string(), format!("\"about {name}\"")),
                ("optimizer.lr".to_string(), lr.to_string()),
                ("optimizer.type".to_string(), "\"adamw\"".to_string()),
                ("evaluation.cost_bps".to_string(), "10.0".to_string()),
                ("evaluation.signal".to_string(), "\"action\"".to_string()),
            ]),
            metrics: BTreeMap::from([
                ("backtest.strategy.sharpe".to_string(), 1.25),
                ("price.mse".to_string(), 0.0004),
            ]),
            train_log: Some(log),
            predictions: Some(CSV.as_bytes().to_vec()),
            folds: None,
            folds_blob: None,
        }
    }

    /// Whatever could make a browser fetch something: URLs (also scheme-relative ones),
    /// `src` attributes, a script that is not inline, stylesheet links, CSS `url()` and
    /// `@import`.
    pub(in crate::report) fn external_references(html: &str) -> Vec<&str> {
        let lower = html.to_ascii_lowercase();
        let mut found: Vec<&str> = [
            "http://", "https://", "//", "src=", "<link", "url(", "@import",
        ]
        .into_iter()
        .filter(|needle| lower.contains(needle))
        .collect();
        let script_tags = lower.match_indices("<script").map(|(i, _)| &lower[i..]);
        if script_tags
            .map(|tag| tag.split('>').next().unwrap_or(tag))
            .any(|tag| tag.contains("src") || tag.contains("import"))
        {
            found.push("<script src");
        }
        found
    }

    /// The plots drawn by plotters (the script's own SVG is not counted).
    pub(in crate::report) fn plotter_svgs(html: &str) -> usize {
        html.matches("<svg role=\"img\"").count()
    }

    #[test]
    fn a_report_is_self_contained_with_its_plots_per_experiment() {
        let html = render(&[experiment("a", "0.001"), experiment("b", "0.01")]).unwrap();
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert_eq!(external_references(&html), Vec::<&str>::new());
        for kind in ["loss", "equity", "drawdown", "scatter", "horizon"] {
            let figures = html
                .matches(&format!("<figure class=\"plot {kind}\">"))
                .count();
            assert_eq!(figures, 2, "{kind}");
        }
        // Two symbols each: a panel per symbol, and no band (no calibration plot).
        assert_eq!(
            html.matches("<figure class=\"plot symbol-equity\">")
                .count(),
            4
        );
        assert!(html.contains("<summary>Per symbol (2 symbols)</summary>"));
        assert!(!html.contains("plot calibration"));
        assert_eq!(plotter_svgs(&html), 14);
        // The plots carry their text as SVG text (no font files needed).
        assert!(html.contains(">\nepoch\n</text>"), "axis label missing");
        assert!(html.contains("validation"));
        // Metrics: present values formatted, missing ones as "-".
        assert!(html.contains(">1.25<"));
        assert!(html.contains("<td class=\"num\">-</td>"));
    }

    #[test]
    fn walk_forward_experiments_get_a_fold_plot_and_table() {
        let mut e = experiment("wf", "0.001");
        e.folds = Some(vec![
            serde_json::json!({"index": 0, "test": [1_699_920_000, 1_700_784_000], "windows": 20,
                "mse": 0.0004, "persistence_mse": 0.0005, "skill": 0.2, "ridge_skill": 0.1,
                "directional_accuracy": 0.55, "sharpe": 1.0}),
            serde_json::json!({"index": 1, "test": [1_700_950_400, 1_701_814_400], "windows": 20,
                "mse": 0.0006, "persistence_mse": 0.0005, "skill": -0.2, "ridge_skill": null,
                "directional_accuracy": 0.45, "sharpe": -0.5}),
        ]);
        let html = render(&[e, experiment("plain", "0.01")]).unwrap();
        assert_eq!(html.matches("<figure class=\"plot folds\">").count(), 1);
        assert!(html.contains("the model is worse than persistence in 1 of them"));
        assert_eq!(html.matches("<table class=\"metrics folds\">").count(), 1);
        assert!(
            html.contains("<td>2023-11-14</td><td>2023-11-24</td>"),
            "dates"
        );
        assert!(html.contains("<td class=\"num no-skill\">-0.2000 (no skill)</td>"));
        assert_eq!(external_references(&html), Vec::<&str>::new());
    }

    #[test]
    fn user_text_is_escaped() {
        let mut e = experiment("<script>alert('x')</script>", "0.001");
        e.file = "a&b\".yaml".to_string();
        e.model = "<b>".to_string();
        e.config
            .insert("data.path".to_string(), "\"</td><img src=x>\"".to_string());
        let mut other = experiment("plain", "0.002");
        other
            .config
            .insert("data.path".to_string(), "\"data\"".to_string());
        let html = render(&[e, other]).unwrap();
        assert!(!html.contains("<script>"), "{html}");
        assert!(!html.contains("<img"));
        assert!(!html.contains("<b>"));
        assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
        assert!(html.contains("a&amp;b&quot;.yaml"));
        assert!(html.contains("&lt;/td&gt;&lt;img src=x&gt;"));
        assert_eq!(escape("<&>\"'"), "&lt;&amp;&gt;&quot;&#39;");
    }

    #[test]
    fn missing_stages_show_not_built_and_bad_inputs_a_reason() {
        let mut e = experiment("bare", "0.001");
        e.train_log = None;
        e.predictions = None;
        e.metrics.clear();
        let mut broken = experiment("broken", "0.001");
        broken.predictions = Some(b"symbol,timestamp\nAAA,1\n".to_vec());
        broken.train_log = Some(serde_json::json!({"epochs": "nonsense"}));
        let html = render(&[e, broken]).unwrap();
        assert_eq!(
            html.matches("<div class=\"not-built\">not built</div>")
                .count(),
            5
        );
        assert!(html.contains("no `pred_r1` column"));
        assert!(html.contains("no epochs logged"));
        assert_eq!(plotter_svgs(&html), 0);
        assert_eq!(external_references(&html), Vec::<&str>::new());

        let rows = parse_predictions(b"symbol,timestamp,pred_r1,actual_r1,action\nA,x,0,0,buy\n");
        assert!(
            rows.unwrap_err()
                .contains("line 2: bad `timestamp` value `x`")
        );

        assert!(render(&[]).unwrap().contains("No experiments."));
    }

    #[test]
    fn a_sweep_with_walk_forward_folds_gets_a_pbo_sentence() {
        use crate::eval::overfitting::tests::{blob, returns};
        let without = render(&[experiment("a", "0.001"), experiment("b", "0.01")]).unwrap();
        assert!(!without.contains("id=\"pbo\""));
        let mut experiments: Vec<ReportExperiment> = (0..4)
            .map(|t| {
                let mut e = experiment(&format!("lr{t}"), "0.001");
                let folds: Vec<_> = (0..6).map(|f| (f, returns(t, f, 0.004))).collect();
                e.folds_blob = Some(blob(&folds));
                e
            })
            .collect();
        experiments.push(experiment("plain", "0.1"));
        let html = render(&experiments).unwrap();
        let section = html.split("<section id=\"pbo\">").nth(1).unwrap();
        let section = section.split("</section>").next().unwrap();
        assert!(
            section.contains("<p>PBO 0.00 over 4 trials, 6 folds, 20 combinations"),
            "{section}"
        );
        assert!(section.contains("not counted: plain."), "{section}");
        // One experiment with folds: no sweep, said so.
        let one = render(&experiments[3..]).unwrap();
        assert!(one.contains("at least two experiments with walk-forward folds (found 1)"));
    }
}
