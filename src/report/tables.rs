//! The report's tables: the metrics of every experiment side by side (best of each column
//! marked) and the config values that differ between experiments.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use super::html::{ReportExperiment, escape};
use super::runs::{ANNUALISED_RETURN, Groups, Run, TURNOVER};
use crate::eval::deflated::{DSR_METRIC, DSR_TRIALS_METRIC};

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

pub(super) struct Column {
    pub(super) title: &'static str,
    /// The first key an experiment has is shown.
    pub(super) keys: &'static [&'static str],
    format: Format,
    better: Better,
}

pub(super) const COLUMNS: &[Column] = &[
    Column {
        title: "val loss",
        // The selected epoch's loss (the weights evaluated); older records kept the last
        // epoch's weights, whose loss is `final_val_loss`.
        keys: &["train.selected_val_loss", "train.final_val_loss"],
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
        title: "skill",
        keys: &["skill.pooled"],
        format: Format::Fixed(3),
        better: Better::Higher,
    },
    Column {
        title: "persistence MSE",
        keys: &["price.persistence_mse"],
        format: Format::Scientific,
        better: Better::Neither,
    },
    Column {
        title: "ridge MSE",
        keys: &["baselines.ridge.mse"],
        format: Format::Scientific,
        better: Better::Neither,
    },
    Column {
        title: "ridge skill",
        keys: &["baselines.ridge.skill.pooled"],
        format: Format::Fixed(3),
        better: Better::Neither,
    },
    Column {
        title: "ridge dir. acc.",
        keys: &["baselines.ridge.directional_accuracy"],
        format: Format::Percent,
        better: Better::Neither,
    },
    Column {
        title: "always-up dir. acc.",
        keys: &["baselines.buy_and_hold.directional_accuracy"],
        format: Format::Percent,
        better: Better::Neither,
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
        // Derived by the report (`data::annualised_return`) from the total return, the bars
        // and the bars per year.
        title: "annualised return",
        keys: &[ANNUALISED_RETURN],
        format: Format::SignedPercent,
        better: Better::Higher,
    },
    Column {
        title: "trades",
        keys: &["backtest.strategy.trades"],
        format: Format::Fixed(0),
        better: Better::Neither,
    },
    Column {
        // Derived by the report (`data::turnover`) from the predictions.
        title: "turnover",
        keys: &[TURNOVER],
        format: Format::Fixed(3),
        better: Better::Neither,
    },
    Column {
        title: "Sharpe",
        keys: &["backtest.strategy.sharpe"],
        format: Format::Fixed(2),
        better: Better::Higher,
    },
    Column {
        // Derived by the CLI from the catalog: deflated by the trials on the dataset.
        title: "deflated Sharpe (N trials)",
        keys: &[DSR_METRIC],
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
        // `dit`'s 10%-90% band (eval::BAND_LEVELS): calibrated at 80%.
        title: "band coverage (nominal 80%)",
        keys: &["price.band.coverage"],
        format: Format::Percent,
        better: Better::Neither,
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
    pub(super) fn value(&self, run: &Run) -> Option<f64> {
        self.keys
            .iter()
            .find_map(|k| run.metrics.get(*k).copied())
            .filter(|v| v.is_finite())
    }

    /// Whether a higher value is better (`Some(true)`), a lower one, or neither.
    pub(super) fn higher_is_better(&self) -> Option<bool> {
        match self.better {
            Better::Higher => Some(true),
            Better::Lower => Some(false),
            Better::Neither => None,
        }
    }

    fn format(&self, v: f64) -> String {
        match self.format {
            Format::Fixed(decimals) => format!("{v:.decimals$}"),
            Format::Scientific => format!("{v:.3e}"),
            Format::Percent => format!("{:.1}%", 100.0 * v),
            Format::SignedPercent => format!("{:+.2}%", 100.0 * v),
        }
    }

    /// The best value among `runs` (one dataset's), when there are at least two to
    /// compare. A strategy that never traded has no drawdown to be best at.
    fn best(&self, runs: &[&Run]) -> Option<f64> {
        let traded = |r: &&&Run| {
            !self.keys.contains(&"backtest.strategy.max_drawdown")
                || r.metrics.get("backtest.strategy.trades") != Some(&0.0)
        };
        let values: Vec<f64> = runs
            .iter()
            .filter(traded)
            .filter_map(|r| self.value(r))
            .collect();
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

/// The runs table: one row per run, grouped by dataset ("best" in bold within a group),
/// sortable by a click on a header and filtered by the text box (`report.js`). Each cell
/// keeps its exact value in `data-v` for sorting; `data-search` holds what the filter
/// matches besides the row's text (file, the config values that differ between runs).
pub(super) fn metrics_section(html: &mut String, runs: &[Run], groups: &Groups) {
    html.push_str("<section id=\"metrics\">\n<h2>Runs</h2>\n");
    if runs.is_empty() {
        html.push_str("<p>No experiments.</p>\n</section>\n");
        return;
    }
    html.push_str(
        "<p class=\"meta\">Test split; returns and Sharpe from the backtest, best of each \
         column in bold among the runs on the same data. Skill is 1 - MSE / persistence MSE (persistence predicts no move); \
         a negative skill is marked (no skill). Ridge: a linear baseline on the flattened \
         window, fit on train, its strength chosen on val. Turnover: the mean absolute change \
         of position per bar (a flip from long to short is 2). Band coverage: the share of \
         actual returns inside a probabilistic model's 10%-90% band. Deflated Sharpe: the probability \
         that the strategy's true Sharpe ratio beats the best of N trials' by luck, N the \
         evaluations the catalog has seen on the same dataset. Click a column's header to \
         sort by it (again to reverse).</p>\n\
         <p class=\"controls\"><label>Filter <input id=\"run-filter\" type=\"search\" \
         placeholder=\"name, model, key=value\" autocomplete=\"off\"></label> \
         <span id=\"run-count\"></span></p>\n\
         <div class=\"scroll\"><table class=\"metrics runs\">\n<thead><tr>\
         <th data-type=\"text\">experiment</th><th data-type=\"text\">model</th>\
         <th data-type=\"text\">optimizer</th>",
    );
    for c in COLUMNS {
        let _ = write!(html, "<th data-type=\"num\">{}</th>", c.title);
    }
    html.push_str("</tr></thead>\n");
    let differing = differing_config(runs);
    for (g, label) in groups.labels.iter().enumerate() {
        let members: Vec<&Run> = runs.iter().filter(|r| r.group == g).collect();
        let best: Vec<Option<f64>> = COLUMNS.iter().map(|c| c.best(&members)).collect();
        let _ = writeln!(html, "<tbody data-group=\"{g}\">");
        if !label.is_empty() {
            let _ = writeln!(
                html,
                "<tr class=\"group\"><th colspan=\"{}\">data: {}</th></tr>",
                COLUMNS.len() + 3,
                escape(label)
            );
        }
        for run in members {
            run_row(html, run, &best, &differing);
        }
        html.push_str("</tbody>\n");
    }
    html.push_str("</table></div>\n</section>\n");
}

/// The config keys whose values differ between runs (what a `key=value` filter matches).
fn differing_config(runs: &[Run]) -> Vec<String> {
    let keys: BTreeSet<&String> = runs.iter().flat_map(|r| r.e.config.keys()).collect();
    keys.into_iter()
        .filter(|k| !NOT_CONFIG.contains(&k.as_str()))
        .filter(|k| {
            runs.windows(2)
                .any(|w| w[0].e.config.get(*k) != w[1].e.config.get(*k))
        })
        .cloned()
        .collect()
}

fn run_row(html: &mut String, run: &Run, best: &[Option<f64>], differing: &[String]) {
    let e = run.e;
    let mut search = e.file.clone();
    for k in differing {
        if let Some(v) = e.config.get(k) {
            let _ = write!(search, " {k}={}", display_value(v));
        }
    }
    let _ = write!(
        html,
        "<tr class=\"run\" data-run=\"{}\" data-search=\"{}\"><td data-v=\"{}\">\
         <span class=\"swatch\" style=\"background:{}\"></span><a href=\"#exp-{}\" title=\"{}\">{}</a></td>\
         <td>{}</td><td>{}</td>",
        run.index,
        escape(&search),
        escape(&e.name),
        super::interactive::color(run.index),
        run.index,
        escape(&e.file),
        escape(&e.name),
        escape(&e.model),
        escape(&e.optimizer)
    );
    for (c, best) in COLUMNS.iter().zip(best) {
        match c.value(run) {
            Some(v) => {
                let mut class = if Some(v) == *best { "num best" } else { "num" }.to_string();
                let mut text = c.format(v);
                // A negative skill: worse than predicting no move.
                if c.title.ends_with("skill") && v < 0.0 {
                    class.push_str(" no-skill");
                    text.push_str(" (no skill)");
                }
                if c.keys == [DSR_METRIC]
                    && let Some(n) = run.metrics.get(DSR_TRIALS_METRIC)
                {
                    let _ = write!(text, " (N={n})");
                }
                let _ = write!(html, "<td class=\"{class}\" data-v=\"{v:e}\">{text}</td>");
            }
            None => html.push_str("<td class=\"num\">-</td>"),
        }
    }
    html.push_str("</tr>\n");
}

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
pub(super) fn display_value(json: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(json) {
        Ok(serde_json::Value::String(s)) => s,
        _ => json.to_string(),
    }
}

pub(super) fn config_diff_section(html: &mut String, experiments: &[ReportExperiment]) {
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
/// The per-fold figures of a walk-forward experiment; a negative skill is marked.
pub(super) fn fold_table(html: &mut String, folds: &[serde_json::Value]) {
    html.push_str(
        "<div class=\"scroll\"><table class=\"metrics folds\">\n<tr><th>fold</th>\
         <th>test from</th><th>test to</th><th>windows</th><th>MSE</th>\
         <th>persistence MSE</th><th>skill</th><th>ridge skill</th><th>dir. acc.</th>\
         <th>Sharpe</th></tr>\n",
    );
    for f in folds {
        let day = |i: usize| {
            f["test"][i]
                .as_i64()
                .map(crate::term::date)
                .unwrap_or_default()
        };
        let num = |k: &str| match f[k].as_f64() {
            Some(x) if k.ends_with("skill") && x < 0.0 => {
                format!("<td class=\"num no-skill\">{x:.4} (no skill)</td>")
            }
            Some(x) => format!("<td class=\"num\">{x:.4}</td>"),
            None => "<td class=\"num\">-</td>".to_string(),
        };
        let _ = writeln!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td>{}{}{}{}{}{}</tr>",
            f["index"],
            escape(&day(0)),
            escape(&day(1)),
            f["windows"],
            num("mse"),
            num("persistence_mse"),
            num("skill"),
            num("ridge_skill"),
            num("directional_accuracy"),
            num("sharpe"),
        );
    }
    html.push_str("</table></div>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::html::tests::experiment;

    /// The page without the attributes the script reads (`data-v`, `data-type`), so the
    /// assertions read as the table looks.
    fn render(experiments: &[ReportExperiment]) -> Result<String, String> {
        let html = crate::report::html::render(experiments)?;
        let mut out = String::with_capacity(html.len());
        let mut rest = html.as_str();
        while let Some(at) = [" data-v=\"", " data-type=\""]
            .iter()
            .filter_map(|a| rest.find(a).map(|i| (i, a.len())))
            .min()
        {
            out.push_str(&rest[..at.0]);
            let after = &rest[at.0 + at.1..];
            rest = after.split_once('"').map_or("", |(_, tail)| tail);
        }
        out.push_str(rest);
        Ok(out)
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

    #[test]
    fn trades_and_the_annualised_return_are_in_the_metrics_table() {
        let mut a = experiment("a", "0.001");
        for (k, v) in [
            ("backtest.strategy.total_return", 0.21),
            ("backtest.strategy.bars", 504.0),
            ("backtest.bars_per_year", 252.0),
            ("backtest.strategy.trades", 12.0),
        ] {
            a.metrics.insert(k.to_string(), v);
        }
        let html = render(&[a]).unwrap();
        // Two years of bars at +21%: +10% a year.
        assert!(html.contains("<td class=\"num\">+10.00%</td>"), "{html}");
        assert!(html.contains("<td class=\"num\">12</td>"));
        assert!(html.contains("<th>annualised return</th><th>trades</th>"));
    }

    #[test]
    fn best_is_marked_among_experiments_on_the_same_data_that_traded() {
        let mut a = experiment("a", "0.001");
        a.metrics
            .insert("backtest.strategy.max_drawdown".to_string(), 0.10);
        a.metrics
            .insert("backtest.strategy.trades".to_string(), 4.0);
        let mut b = experiment("b", "0.01");
        b.metrics
            .insert("backtest.strategy.max_drawdown".to_string(), 0.0);
        b.metrics
            .insert("backtest.strategy.trades".to_string(), 0.0);
        b.metrics
            .insert("backtest.strategy.sharpe".to_string(), 9.0);
        let mut c = experiment("c", "0.01");
        c.metrics
            .insert("backtest.strategy.max_drawdown".to_string(), 0.20);
        c.metrics
            .insert("backtest.strategy.trades".to_string(), 3.0);
        // Another symbol: its Sharpe is not compared with the others'.
        let mut d = experiment("d", "0.01");
        d.config
            .insert("data.symbols".to_string(), "[\"MSFT\"]".to_string());
        d.metrics
            .insert("backtest.strategy.sharpe".to_string(), 50.0);
        let html = render(&[a, b, c, d]).unwrap();
        // The 0% drawdown of a strategy that never traded is not "best"; 10% is.
        assert!(html.contains("<td class=\"num best\">10.0%</td>"), "{html}");
        assert!(!html.contains("<td class=\"num best\">0.0%</td>"));
        // b's Sharpe is the best on its data; d is alone on its data: nothing to rank.
        assert!(html.contains("<td class=\"num best\">9.00</td>"));
        assert!(html.contains("<td class=\"num\">50.00</td>"));
    }

    #[test]
    fn skill_and_baselines_are_in_the_metrics_table_negative_skill_marked() {
        let mut a = experiment("a", "0.001");
        a.metrics.insert("skill.pooled".to_string(), -0.25);
        a.metrics
            .insert("baselines.ridge.skill.pooled".to_string(), 0.01);
        a.metrics.insert("baselines.ridge.mse".to_string(), 2e-4);
        let mut b = experiment("b", "0.01");
        b.metrics.insert("skill.pooled".to_string(), 0.125);
        let html = render(&[a, b]).unwrap();
        let section = html
            .split("<section id=\"metrics\">")
            .nth(1)
            .and_then(|s| s.split("</section>").next())
            .unwrap();
        for title in [
            "<th>skill</th>",
            "<th>ridge MSE</th>",
            "<th>ridge skill</th>",
        ] {
            assert!(section.contains(title), "{title}");
        }
        assert!(section.contains("<td class=\"num no-skill\">-0.250 (no skill)</td>"));
        assert!(section.contains("<td class=\"num best\">0.125</td>"));
        assert!(section.contains(">0.010</td>"));
    }

    #[test]
    fn the_deflated_sharpe_shows_its_trial_count() {
        let mut a = experiment("a", "0.001");
        a.metrics.insert(DSR_METRIC.to_string(), 0.9);
        a.metrics.insert(DSR_TRIALS_METRIC.to_string(), 3.0);
        let b = experiment("b", "0.01");
        let html = render(&[a, b]).unwrap();
        assert!(html.contains("<th>deflated Sharpe (N trials)</th>"));
        // One experiment has it: nothing to rank.
        assert!(html.contains("<td class=\"num\">0.90 (N=3)</td>"), "{html}");
    }
}
