//! `hft report`: one self-contained HTML file with inline SVG plots.
//!
//! The document loads nothing: CSS is inline, there are no scripts, and the plots are SVG
//! drawn by plotters (its SVG backend writes `<text>` elements, so no font files are needed:
//! the browser draws the labels). Every piece of user text (experiment names, file paths,
//! config values) is escaped. The output depends only on the input, so a report of the same
//! builds is the same file.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use plotters::backend::SVGBackend;
use plotters::prelude::*;

use crate::config::{EvaluationConfig, Signal};

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
    /// The evaluate stage's `predictions` blob (CSV bytes); `None` if not built.
    pub predictions: Option<Vec<u8>>,
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
    metrics_section(&mut html, experiments);
    config_diff_section(&mut html, experiments);
    for (i, e) in experiments.iter().enumerate() {
        experiment_section(&mut html, i, e);
    }
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
td code, th code { font-size: 0.85rem; }
.plots { display: grid; grid-template-columns: repeat(auto-fit, minmax(360px, 1fr)); gap: 1rem; }
figure { margin: 0; border: 1px solid #e4e4e4; border-radius: 4px; padding: 0.5rem; }
figure svg { width: 100%; height: auto; display: block; }
figcaption { font-size: 0.85rem; color: #444; margin-top: 0.3rem; }
.not-built { color: #999; font-style: italic; padding: 3rem 0; text-align: center; }
details { margin-top: 0.8rem; }
</style>
</head>
<body>
"#;

/// Escapes text for element content and quoted attribute values.
fn escape(text: &str) -> String {
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

// ---------------------------------------------------------------------------------------
// metrics table

#[derive(Clone, Copy)]
enum Format {
    Fixed(usize),
    Scientific,
    Percent,
    SignedPercent,
}

#[derive(Clone, Copy, PartialEq)]
enum Better {
    Lower,
    Higher,
    /// A reference figure (buy-and-hold): nothing to rank.
    Neither,
}

struct Column {
    title: &'static str,
    /// The first key an experiment has is shown.
    keys: &'static [&'static str],
    format: Format,
    better: Better,
}

const COLUMNS: &[Column] = &[
    Column {
        title: "val loss",
        keys: &["train.best_val_loss", "train.final_val_loss"],
        format: Format::Fixed(4),
        better: Better::Lower,
    },
    Column {
        title: "MSE",
        keys: &["price.mse"],
        format: Format::Scientific,
        better: Better::Lower,
    },
    Column {
        title: "dir. acc.",
        keys: &["price.directional_accuracy"],
        format: Format::Percent,
        better: Better::Higher,
    },
    Column {
        title: "action acc.",
        keys: &["action.accuracy"],
        format: Format::Percent,
        better: Better::Higher,
    },
    Column {
        title: "return",
        keys: &["backtest.strategy.total_return"],
        format: Format::SignedPercent,
        better: Better::Higher,
    },
    Column {
        title: "Sharpe",
        keys: &["backtest.strategy.sharpe"],
        format: Format::Fixed(2),
        better: Better::Higher,
    },
    Column {
        title: "max drawdown",
        keys: &["backtest.strategy.max_drawdown"],
        format: Format::Percent,
        better: Better::Lower,
    },
    Column {
        title: "buy&amp;hold return",
        keys: &["backtest.buy_and_hold.total_return"],
        format: Format::SignedPercent,
        better: Better::Neither,
    },
    Column {
        title: "buy&amp;hold Sharpe",
        keys: &["backtest.buy_and_hold.sharpe"],
        format: Format::Fixed(2),
        better: Better::Neither,
    },
];

impl Column {
    fn value(&self, e: &ReportExperiment) -> Option<f64> {
        self.keys
            .iter()
            .find_map(|k| e.metrics.get(*k).copied())
            .filter(|v| v.is_finite())
    }

    fn format(&self, v: f64) -> String {
        match self.format {
            Format::Fixed(decimals) => format!("{v:.decimals$}"),
            Format::Scientific => format!("{v:.3e}"),
            Format::Percent => format!("{:.1}%", 100.0 * v),
            Format::SignedPercent => format!("{:+.2}%", 100.0 * v),
        }
    }

    /// The best value among the experiments, when there are at least two to compare.
    fn best(&self, experiments: &[ReportExperiment]) -> Option<f64> {
        let values: Vec<f64> = experiments.iter().filter_map(|e| self.value(e)).collect();
        if values.len() < 2 {
            return None;
        }
        match self.better {
            Better::Lower => values.into_iter().reduce(f64::min),
            Better::Higher => values.into_iter().reduce(f64::max),
            Better::Neither => None,
        }
    }
}

fn metrics_section(html: &mut String, experiments: &[ReportExperiment]) {
    html.push_str("<section id=\"metrics\">\n<h2>Metrics</h2>\n");
    if experiments.is_empty() {
        html.push_str("<p>No experiments.</p>\n</section>\n");
        return;
    }
    html.push_str(
        "<p class=\"meta\">Test split; returns and Sharpe from the backtest, best of each \
         column in bold.</p>\n<div class=\"scroll\"><table class=\"metrics\">\n<tr>\
         <th>experiment</th><th>model</th><th>optimizer</th>",
    );
    for c in COLUMNS {
        let _ = write!(html, "<th>{}</th>", c.title);
    }
    html.push_str("</tr>\n");
    let best: Vec<Option<f64>> = COLUMNS.iter().map(|c| c.best(experiments)).collect();
    for (i, e) in experiments.iter().enumerate() {
        let _ = write!(
            html,
            "<tr><td><a href=\"#exp-{i}\" title=\"{}\">{}</a></td><td>{}</td><td>{}</td>",
            escape(&e.file),
            escape(&e.name),
            escape(&e.model),
            escape(&e.optimizer)
        );
        for (c, best) in COLUMNS.iter().zip(&best) {
            match c.value(e) {
                Some(v) => {
                    let class = if Some(v) == *best { "num best" } else { "num" };
                    let _ = write!(html, "<td class=\"{class}\">{}</td>", c.format(v));
                }
                None => html.push_str("<td class=\"num\">-</td>"),
            }
        }
        html.push_str("</tr>\n");
    }
    html.push_str("</table></div>\n</section>\n");
}

// ---------------------------------------------------------------------------------------
// config diff

/// Keys that name or describe an experiment rather than configure it.
const NOT_CONFIG: &[&str] = &["name", "description"];

/// The config leaves whose values are not the same in every experiment (a leaf one
/// experiment lacks counts as different), with each experiment's value, in key order.
fn config_diff(experiments: &[ReportExperiment]) -> Vec<(&str, Vec<Option<&str>>)> {
    let keys: BTreeSet<&str> = experiments
        .iter()
        .flat_map(|e| e.config.keys().map(String::as_str))
        .filter(|k| !NOT_CONFIG.contains(k))
        .collect();
    keys.into_iter()
        .filter_map(|key| {
            let values: Vec<Option<&str>> = experiments
                .iter()
                .map(|e| e.config.get(key).map(String::as_str))
                .collect();
            let differs = values.windows(2).any(|w| w[0] != w[1]);
            differs.then_some((key, values))
        })
        .collect()
}

/// A config value (JSON text) for display: strings without their quotes.
fn display_value(json: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(json) {
        Ok(serde_json::Value::String(s)) => s,
        _ => json.to_string(),
    }
}

fn config_diff_section(html: &mut String, experiments: &[ReportExperiment]) {
    html.push_str("<section id=\"config-diff\">\n<h2>Config differences</h2>\n");
    if experiments.len() < 2 {
        html.push_str("<p>One experiment: nothing to compare.</p>\n</section>\n");
        return;
    }
    let diff = config_diff(experiments);
    if diff.is_empty() {
        html.push_str("<p>The experiments share every config value.</p>\n</section>\n");
        return;
    }
    html.push_str(
        "<p class=\"meta\">Only the resolved config values that differ between \
         experiments.</p>\n<div class=\"scroll\"><table class=\"config-diff\">\n<tr><th>key</th>",
    );
    for e in experiments {
        let _ = write!(html, "<th>{}</th>", escape(&e.name));
    }
    html.push_str("</tr>\n");
    for (key, values) in diff {
        let _ = write!(html, "<tr><td><code>{}</code></td>", escape(key));
        for v in values {
            let text = v.map_or_else(|| "-".to_string(), display_value);
            let _ = write!(html, "<td>{}</td>", escape(&text));
        }
        html.push_str("</tr>\n");
    }
    html.push_str("</table></div>\n</section>\n");
}

// ---------------------------------------------------------------------------------------
// per experiment

fn experiment_section(html: &mut String, index: usize, e: &ReportExperiment) {
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

    let predictions = e.predictions.as_deref().map(parse_predictions);
    let evaluation = evaluation_config(&e.config);
    let equity = predictions.as_ref().map(|rows| {
        let rows = rows.as_ref().map_err(Clone::clone)?;
        equity_plot(&equity_curves(rows, &evaluation), &evaluation)
    });
    figure(
        html,
        "equity",
        "Equity on the test split: strategy against buy-and-hold",
        equity,
    );
    let scatter = predictions.as_ref().map(|rows| {
        let rows = rows.as_ref().map_err(Clone::clone)?;
        scatter_plot(rows)
    });
    figure(
        html,
        "scatter",
        "Predicted against actual next-bar return (r1) per test window",
        scatter,
    );
    html.push_str("</div>\n");

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

/// A drawn plot: its SVG and a caption line about what it shows.
struct Plot {
    svg: String,
    note: String,
}

/// One plot's figure: `None` when the stage it needs is not built, `Err` when its input
/// could not be read or drawn (shown instead of the plot).
fn figure(html: &mut String, kind: &str, caption: &str, plot: Option<Result<Plot, String>>) {
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

// ---------------------------------------------------------------------------------------
// data

/// Per-epoch losses from a train log (`epochs[].{epoch, train_loss, val_loss}`). Read from
/// the JSON rather than `TrainLog` because the stored log drops the wall-clock fields.
#[derive(Debug, Default, PartialEq)]
struct LossCurves {
    train: Vec<(f64, f64)>,
    val: Vec<(f64, f64)>,
    best: Option<(f64, f64)>,
}

impl LossCurves {
    fn from_log(log: &serde_json::Value) -> LossCurves {
        let mut curves = LossCurves::default();
        let epochs = log["epochs"].as_array().map_or(&[][..], Vec::as_slice);
        for (i, entry) in epochs.iter().enumerate() {
            let epoch = entry["epoch"].as_f64().unwrap_or((i + 1) as f64);
            let finite = |key: &str| entry[key].as_f64().filter(|v| v.is_finite());
            if let Some(loss) = finite("train_loss") {
                curves.train.push((epoch, loss));
            }
            if let Some(loss) = finite("val_loss") {
                curves.val.push((epoch, loss));
            }
        }
        curves.best = log["best_epoch"]
            .as_f64()
            .and_then(|best| curves.val.iter().copied().find(|(e, _)| *e == best));
        curves
    }
}

/// One row of the predictions CSV, as far as the report needs it.
#[derive(Debug, Clone, PartialEq)]
struct PredictionRow {
    symbol: String,
    timestamp: i64,
    pred_r1: f32,
    actual_r1: f32,
    /// 0 buy, 1 hold, 2 sell (the argmax of the action head).
    action: u8,
}

/// Parses `eval::predictions_csv` output (only the columns the plots use).
fn parse_predictions(bytes: &[u8]) -> Result<Vec<PredictionRow>, String> {
    let mut reader = csv::ReaderBuilder::new().from_reader(bytes);
    let headers = reader
        .headers()
        .map_err(|e| format!("unreadable predictions: {e}"))?
        .clone();
    let column = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| format!("unreadable predictions: no `{name}` column"))
    };
    let (symbol, timestamp, pred, actual, action) = (
        column("symbol")?,
        column("timestamp")?,
        column("pred_r1")?,
        column("actual_r1")?,
        column("action")?,
    );
    let mut rows = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let line = i + 2;
        let record = record.map_err(|e| format!("unreadable predictions: {e}"))?;
        let field = |c: usize| record.get(c).unwrap_or("");
        let bad = |c: usize| {
            format!(
                "unreadable predictions: line {line}: bad `{}` value `{}`",
                headers.get(c).unwrap_or("?"),
                field(c)
            )
        };
        rows.push(PredictionRow {
            symbol: field(symbol).to_string(),
            timestamp: field(timestamp).parse().map_err(|_| bad(timestamp))?,
            pred_r1: field(pred).parse().map_err(|_| bad(pred))?,
            actual_r1: field(actual).parse().map_err(|_| bad(actual))?,
            action: match field(action) {
                "buy" => 0,
                "hold" => 1,
                "sell" => 2,
                _ => return Err(bad(action)),
            },
        });
    }
    Ok(rows)
}

/// The evaluation settings from the resolved config leaves (`evaluation.*`), defaults for
/// what is missing or unreadable, so the curve uses what the evaluate stage used.
fn evaluation_config(config: &BTreeMap<String, String>) -> EvaluationConfig {
    let mut section = serde_json::Map::new();
    for (key, value) in config {
        if let Some(field) = key.strip_prefix("evaluation.")
            && let Ok(v) = serde_json::from_str(value)
        {
            section.insert(field.to_string(), v);
        }
    }
    serde_json::from_value(serde_json::Value::Object(section)).unwrap_or_default()
}

/// Equity of the strategy and of buy-and-hold after each portfolio bar of the test split,
/// computed as the evaluate stage's backtest (`eval::portfolio`) computes its total return.
#[derive(Debug, Default, PartialEq)]
struct EquityCurves {
    /// The portfolio's bar times (window end, Unix seconds), ascending.
    timestamps: Vec<i64>,
    strategy: Vec<f64>,
    buy_and_hold: Vec<f64>,
}

/// The position the evaluate stage takes on a window (`eval::metrics`).
fn position(row: &PredictionRow, signal: Signal) -> f64 {
    match signal {
        Signal::Action => 1.0 - f64::from(row.action),
        Signal::Price => {
            if row.pred_r1 > 0.0 {
                1.0
            } else if row.pred_r1 < 0.0 {
                -1.0
            } else {
                0.0
            }
        }
    }
}

fn equity_curves(rows: &[PredictionRow], evaluation: &EvaluationConfig) -> EquityCurves {
    // Symbol indices in order of first appearance: the CSV names symbols, the backtest
    // groups by index.
    let mut names: Vec<&str> = Vec::new();
    let symbols: Vec<u32> = rows
        .iter()
        .map(|r| match names.iter().position(|n| *n == r.symbol) {
            Some(i) => i as u32,
            None => {
                names.push(&r.symbol);
                (names.len() - 1) as u32
            }
        })
        .collect();
    let timestamps: Vec<i64> = rows.iter().map(|r| r.timestamp).collect();
    let returns: Vec<f64> = rows.iter().map(|r| f64::from(r.actual_r1)).collect();
    let strategy: Vec<f64> = rows
        .iter()
        .map(|r| position(r, evaluation.signal))
        .collect();
    let hold = vec![1.0; rows.len()];
    let cost = evaluation.cost_bps;
    let (times, strategy_bars, _) =
        crate::eval::portfolio_bars(&symbols, &timestamps, &strategy, &returns, cost);
    let (_, hold_bars, _) =
        crate::eval::portfolio_bars(&symbols, &timestamps, &hold, &returns, cost);
    EquityCurves {
        timestamps: times,
        strategy: compound(&strategy_bars),
        buy_and_hold: compound(&hold_bars),
    }
}

fn compound(bars: &[f64]) -> Vec<f64> {
    let mut equity = 1.0;
    bars.iter()
        .map(|r| {
            equity *= 1.0 + r;
            equity
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// plots

const SIZE: (u32, u32) = (480, 320);
const BLUE_: RGBColor = RGBColor(31, 119, 180);
const ORANGE: RGBColor = RGBColor(255, 127, 14);
const GREEN_: RGBColor = RGBColor(44, 160, 44);
const GREY: RGBColor = RGBColor(120, 120, 120);
const RED_: RGBColor = RGBColor(214, 39, 40);
const FONT: &str = "sans-serif";

fn draw_err(e: impl std::fmt::Display) -> String {
    format!("plot failed: {e}")
}

/// `[min, max]` of the values widened by 5% each side (a unit around a single value), so
/// no point sits on the frame and a flat series still has a range.
fn padded(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold(None, |acc: Option<(f64, f64)>, v| match acc {
            None => Some((v, v)),
            Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
        })?;
    let span = hi - lo;
    let pad = if span > 0.0 {
        0.05 * span
    } else {
        0.5 * lo.abs().max(1e-3)
    };
    Some((lo - pad, hi + pad))
}

/// Decimals that tell apart ticks about a fifth of `span` apart.
fn decimals(span: f64) -> usize {
    if !(span.is_finite() && span > 0.0) {
        return 2;
    }
    (-(span / 5.0).log10()).ceil().clamp(0.0, 8.0) as usize
}

fn loss_plot(curves: &LossCurves) -> Result<Plot, String> {
    let Some((x0, x1)) = padded(curves.train.iter().chain(&curves.val).map(|p| p.0)) else {
        return Err("no epochs logged".to_string());
    };
    let Some((y0, y1)) = padded(curves.train.iter().chain(&curves.val).map(|p| p.1)) else {
        return Err("no epochs logged".to_string());
    };
    let y_decimals = decimals(y1 - y0);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(46)
            .y_label_area_size(66)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(draw_err)?;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .y_desc("loss")
            .x_labels(8)
            .x_label_formatter(&|x| {
                // Epochs are whole numbers: label only those.
                if (x - x.round()).abs() < 1e-9 {
                    format!("{}", x.round() as i64)
                } else {
                    String::new()
                }
            })
            .y_label_formatter(&|y| format!("{y:.y_decimals$}"))
            .label_style((FONT, 17))
            .axis_desc_style((FONT, 17))
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(draw_err)?;
        for (points, color, label) in [
            (&curves.train, BLUE_, "train"),
            (&curves.val, ORANGE, "validation"),
        ] {
            if points.is_empty() {
                continue;
            }
            chart
                .draw_series(
                    LineSeries::new(points.iter().copied(), color.stroke_width(2)).point_size(2),
                )
                .map_err(draw_err)?
                .label(label)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                });
        }
        if let Some(best) = curves.best {
            chart
                .draw_series(std::iter::once(Circle::new(
                    best,
                    5,
                    GREEN_.stroke_width(2),
                )))
                .map_err(draw_err)?
                .label("best validation")
                .legend(|(x, y)| Circle::new((x + 9, y), 4, GREEN_.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(GREY.mix(0.5))
            .label_font((FONT, 16))
            .draw()
            .map_err(draw_err)?;
        root.present().map_err(draw_err)?;
    }
    let note = match (curves.train.last(), curves.val.last()) {
        (Some(t), Some(v)) => format!(
            "{} epochs; last train loss {:.4}, last validation loss {:.4}",
            curves.train.len(),
            t.1,
            v.1
        ),
        (Some(t), None) => format!(
            "{} epochs; last train loss {:.4}; no validation windows",
            curves.train.len(),
            t.1
        ),
        _ => format!("{} epochs", curves.val.len()),
    };
    Ok(Plot { svg, note })
}

/// Unix seconds as a date (a time of day too when the bars are intraday).
fn time_label(secs: f64, intraday: bool) -> String {
    let format = if intraday {
        "%Y-%m-%d %H:%M"
    } else {
        "%Y-%m-%d"
    };
    chrono::DateTime::from_timestamp(secs.round() as i64, 0)
        .map_or_else(|| format!("{secs}"), |t| t.format(format).to_string())
}

fn equity_plot(curves: &EquityCurves, evaluation: &EvaluationConfig) -> Result<Plot, String> {
    let times = &curves.timestamps;
    let (Some(&first), Some(&last)) = (times.first(), times.last()) else {
        return Err("no test windows".to_string());
    };
    // Bar i's return is earned from its window's end to the next bar: equity starts at 1 at
    // the first bar and reaches its i-th value one bar later (the last one a spacing on).
    let step = match times.len() {
        0 | 1 => 86_400,
        n => (times[n - 1] - times[n - 2]).max(1),
    };
    let xs: Vec<f64> = times
        .iter()
        .chain(std::iter::once(&(last + step)))
        .map(|&t| t as f64)
        .collect();
    let line = |equity: &[f64]| -> Vec<(f64, f64)> {
        xs.iter()
            .copied()
            .zip(std::iter::once(1.0).chain(equity.iter().copied()))
            .collect()
    };
    let (strategy, hold) = (line(&curves.strategy), line(&curves.buy_and_hold));
    let (x0, x1) = (first as f64, (last + step) as f64);
    let Some((y0, y1)) = padded(strategy.iter().chain(&hold).map(|p| p.1)) else {
        return Err("no finite equity values".to_string());
    };
    let intraday = times.windows(2).any(|w| (w[1] - w[0]) < 86_400);
    let y_decimals = decimals(y1 - y0);
    let signal = match evaluation.signal {
        Signal::Action => "action",
        Signal::Price => "price",
    };
    // Both curves start at 1 on the left; the legend goes in the left corner they move away
    // from (the top when they end up, the bottom when they end down).
    let end = |line: &[(f64, f64)]| line.last().map_or(1.0, |p| p.1);
    let rises = end(&strategy) + end(&hold) >= 2.0;
    let legend_corner = if rises {
        SeriesLabelPosition::UpperLeft
    } else {
        SeriesLabelPosition::LowerLeft
    };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .margin_right(44)
            .x_label_area_size(46)
            .y_label_area_size(66)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(draw_err)?;
        chart
            .configure_mesh()
            .x_desc("test split")
            .y_desc("equity")
            .x_labels(3)
            .x_label_formatter(&|x| {
                // A label centred near the right edge would be cut off by the frame.
                if *x > x1 - 0.12 * (x1 - x0) {
                    String::new()
                } else {
                    time_label(*x, intraday)
                }
            })
            .y_label_formatter(&|y| format!("{y:.y_decimals$}"))
            .label_style((FONT, 17))
            .axis_desc_style((FONT, 17))
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(draw_err)?;
        chart
            .draw_series(LineSeries::new([(x0, 1.0), (x1, 1.0)], GREY.mix(0.4)))
            .map_err(draw_err)?;
        chart
            .draw_series(LineSeries::new(hold, GREY.stroke_width(2)))
            .map_err(draw_err)?
            .label("buy & hold")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], GREY.stroke_width(2)));
        chart
            .draw_series(LineSeries::new(strategy, BLUE_.stroke_width(2)))
            .map_err(draw_err)?
            .label(format!("strategy ({signal} signal)"))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLUE_.stroke_width(2)));
        chart
            .configure_series_labels()
            .position(legend_corner)
            .background_style(WHITE.mix(0.85))
            .border_style(GREY.mix(0.5))
            .label_font((FONT, 16))
            .draw()
            .map_err(draw_err)?;
        root.present().map_err(draw_err)?;
    }
    let total = |equity: &[f64]| equity.last().map_or(0.0, |e| e - 1.0);
    let note = format!(
        "{} bars, {} bps per unit traded; strategy {:+.2}%, buy-and-hold {:+.2}%",
        times.len(),
        evaluation.cost_bps,
        100.0 * total(&curves.strategy),
        100.0 * total(&curves.buy_and_hold)
    );
    Ok(Plot { svg, note })
}

fn scatter_plot(rows: &[PredictionRow]) -> Result<Plot, String> {
    let points: Vec<(f64, f64)> = rows
        .iter()
        .map(|r| (f64::from(r.actual_r1), f64::from(r.pred_r1)))
        .filter(|(a, p)| a.is_finite() && p.is_finite())
        .collect();
    // One range for both axes, so y = x is the diagonal and a timid model looks timid.
    let Some((lo, hi)) = padded(points.iter().flat_map(|&(a, p)| [a, p])) else {
        return Err("no test windows".to_string());
    };
    let pct_decimals = decimals(100.0 * (hi - lo));
    let pct = |v: &f64| format!("{:.pct_decimals$}%", 100.0 * v);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .margin_right(24)
            .x_label_area_size(46)
            .y_label_area_size(70)
            .build_cartesian_2d(lo..hi, lo..hi)
            .map_err(draw_err)?;
        chart
            .configure_mesh()
            .x_desc("actual r1")
            .y_desc("predicted r1")
            .x_labels(6)
            .y_labels(6)
            .x_label_formatter(&pct)
            .y_label_formatter(&pct)
            .label_style((FONT, 17))
            .axis_desc_style((FONT, 17))
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(draw_err)?;
        chart
            .draw_series(
                points
                    .iter()
                    .map(|&p| Circle::new(p, 3, BLUE_.mix(0.5).filled())),
            )
            .map_err(draw_err)?
            .label("test window")
            .legend(|(x, y)| Circle::new((x + 9, y), 3, BLUE_.mix(0.6).filled()));
        chart
            .draw_series(LineSeries::new([(lo, lo), (hi, hi)], RED_.stroke_width(1)))
            .map_err(draw_err)?
            .label("y = x")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], RED_.stroke_width(1)));
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(GREY.mix(0.5))
            .label_font((FONT, 16))
            .draw()
            .map_err(draw_err)?;
        root.present().map_err(draw_err)?;
    }
    let note = match correlation(&points) {
        Some(c) => format!("{} windows; correlation {c:.3}", points.len()),
        None => format!("{} windows", points.len()),
    };
    Ok(Plot { svg, note })
}

/// Pearson correlation; `None` when either side is constant or there are under two points.
fn correlation(points: &[(f64, f64)]) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let n = points.len() as f64;
    let (mx, my) = points
        .iter()
        .fold((0.0, 0.0), |(sx, sy), (x, y)| (sx + x / n, sy + y / n));
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (x, y) in points {
        sxy += (x - mx) * (y - my);
        sxx += (x - mx).powi(2);
        syy += (y - my).powi(2);
    }
    (sxx > 0.0 && syy > 0.0).then(|| sxy / (sxx * syy).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CSV: &str = "\
symbol,timestamp,pred_r1,pred_r2,actual_r1,actual_r2,logit_buy,logit_hold,logit_sell,action,label
AAA,100,0.01,0.0,0.02,0.01,2,0,0,buy,buy
BBB,100,-0.02,0.0,0.01,0.0,0,0,2,sell,buy
AAA,200,-0.005,0.0,-0.03,0.0,0,0,2,sell,sell
BBB,200,0.0,0.0,0.04,0.0,0,2,0,hold,buy
AAA,300,0.02,0.0,0.01,0.0,2,0,0,buy,buy
";

    fn experiment(name: &str, lr: &str) -> ReportExperiment {
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
        }
    }

    /// Whatever could make a browser fetch something: URLs (also scheme-relative ones),
    /// `src` attributes, scripts, stylesheet links, CSS `url()` and `@import`.
    fn external_references(html: &str) -> Vec<&str> {
        let lower = html.to_ascii_lowercase();
        [
            "http://", "https://", "//", "src=", "<script", "<link", "url(", "@import",
        ]
        .into_iter()
        .filter(|needle| lower.contains(needle))
        .collect()
    }

    #[test]
    fn a_report_is_self_contained_with_three_plots_per_experiment() {
        let html = render(&[experiment("a", "0.001"), experiment("b", "0.01")]).unwrap();
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert_eq!(external_references(&html), Vec::<&str>::new());
        for kind in ["loss", "equity", "scatter"] {
            let figures = html
                .matches(&format!("<figure class=\"plot {kind}\">"))
                .count();
            assert_eq!(figures, 2, "{kind}");
        }
        assert_eq!(html.matches("<svg ").count(), 6);
        assert_eq!(html.matches("</svg>").count(), 6);
        // The plots carry their text as SVG text (no font files needed).
        assert!(html.contains(">\nepoch\n</text>"), "axis label missing");
        assert!(html.contains("validation"));
        // Metrics: present values formatted, missing ones as "-".
        assert!(html.contains(">1.25<"));
        assert!(html.contains("<td class=\"num\">-</td>"));
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
    fn config_diff_lists_only_differing_keys() {
        let a = experiment("a", "0.001");
        let mut b = experiment("b", "0.01");
        b.config
            .insert("training.patience".to_string(), "3".to_string());
        let c = experiment("c", "0.001");
        let experiments = [a, b, c];
        let diff = config_diff(&experiments);
        let keys: Vec<&str> = diff.iter().map(|(k, _)| *k).collect();
        // `name` and `description` differ too, but they are not config.
        assert_eq!(keys, ["optimizer.lr", "training.patience"]);
        assert_eq!(diff[0].1, [Some("0.001"), Some("0.01"), Some("0.001")]);
        assert_eq!(diff[1].1, [None, Some("3"), None]);

        let html = render(&experiments).unwrap();
        let section = html
            .split("<section id=\"config-diff\">")
            .nth(1)
            .and_then(|s| s.split("</section>").next())
            .unwrap();
        assert!(section.contains("<code>optimizer.lr</code>"));
        assert!(section.contains("<code>training.patience</code>"));
        assert!(!section.contains("optimizer.type"));
        assert!(!section.contains("about a"));

        let same = render(&[experiment("a", "0.001"), experiment("b", "0.001")]).unwrap();
        assert!(same.contains("share every config value"));
        assert_eq!(display_value("\"adamw\""), "adamw");
        assert_eq!(display_value("[1,2]"), "[1,2]");
    }

    #[test]
    fn equity_curve_ends_at_the_backtest_total_return() {
        let rows = parse_predictions(CSV.as_bytes()).unwrap();
        assert_eq!(rows.len(), 5);
        assert_eq!(rows[1].action, 2);
        let evaluation = evaluation_config(&experiment("a", "0.001").config);
        assert_eq!(evaluation.cost_bps, 10.0);
        assert_eq!(evaluation.signal, Signal::Action);
        let curves = equity_curves(&rows, &evaluation);
        assert_eq!(curves.timestamps, [100, 200, 300]);

        // By hand, at 10 bps (0.001 per unit of position change):
        // AAA positions +1, -1, +1 on 2%, -3%, 1%: 0.02 - 0.001, 0.03 - 0.002, 0.01 - 0.002.
        // BBB positions -1, 0 on 1%, 4%: -0.01 - 0.001, 0 - 0.001.
        // Portfolio: t100 mean(0.019, -0.011), t200 mean(0.028, -0.001), t300 0.008.
        let bars = [(0.019 - 0.011) / 2.0, (0.028 - 0.001) / 2.0, 0.008];
        let by_hand: f64 = bars.iter().map(|r| 1.0 + r).product();
        let end = *curves.strategy.last().unwrap();
        assert!((end - by_hand).abs() < 1e-7, "{end} vs {by_hand}");

        // And exactly what the evaluate stage reports (same f32 inputs, same operations).
        let symbols = [0, 1, 0, 1, 0];
        let timestamps: Vec<i64> = rows.iter().map(|r| r.timestamp).collect();
        let returns: Vec<f64> = rows.iter().map(|r| f64::from(r.actual_r1)).collect();
        let positions = [1.0, -1.0, -1.0, 0.0, 1.0];
        let stats =
            crate::eval::portfolio(&symbols, &timestamps, &positions, &returns, 10.0, 252.0);
        assert!((end - (1.0 + stats.total_return)).abs() < 1e-9);
        let hold = crate::eval::portfolio(&symbols, &timestamps, &[1.0; 5], &returns, 10.0, 252.0);
        let hold_end = *curves.buy_and_hold.last().unwrap();
        assert!((hold_end - (1.0 + hold.total_return)).abs() < 1e-9);

        // The price signal takes sign(pred_r1): +1, -1, -1, 0, +1 here.
        let by_price = equity_curves(
            &rows,
            &EvaluationConfig {
                signal: Signal::Price,
                cost_bps: 0.0,
            },
        );
        let stats = crate::eval::portfolio(
            &symbols,
            &timestamps,
            &[1.0, -1.0, -1.0, 0.0, 1.0],
            &returns,
            0.0,
            252.0,
        );
        let end = *by_price.strategy.last().unwrap();
        assert!((end - (1.0 + stats.total_return)).abs() < 1e-9);
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
            3
        );
        assert!(html.contains("no `pred_r1` column"));
        assert!(html.contains("no epochs logged"));
        assert!(!html.contains("<svg"));
        assert_eq!(external_references(&html), Vec::<&str>::new());

        let rows = parse_predictions(b"symbol,timestamp,pred_r1,actual_r1,action\nA,x,0,0,buy\n");
        assert!(
            rows.unwrap_err()
                .contains("line 2: bad `timestamp` value `x`")
        );

        assert!(render(&[]).unwrap().contains("No experiments."));
    }

    #[test]
    fn loss_curves_skip_missing_validation_and_find_the_best_epoch() {
        let curves = LossCurves::from_log(experiment("a", "0").train_log.as_ref().unwrap());
        assert_eq!(curves.train, [(1.0, 1.2), (2.0, 0.9), (3.0, 0.8)]);
        assert_eq!(curves.val, [(1.0, 1.1), (2.0, 1.0)]);
        assert_eq!(curves.best, Some((2.0, 1.0)));
    }

    #[test]
    fn best_values_are_marked_per_column() {
        let a = experiment("a", "0.001");
        let mut b = experiment("b", "0.01");
        b.metrics
            .insert("backtest.strategy.sharpe".to_string(), 2.5);
        b.metrics.insert("price.mse".to_string(), 0.0009);
        let html = render(&[a, b]).unwrap();
        assert!(html.contains("<td class=\"num best\">2.50</td>"));
        assert!(html.contains("<td class=\"num best\">4.000e-4</td>"));
        assert!(html.contains("<td class=\"num\">1.25</td>"));
    }
}
