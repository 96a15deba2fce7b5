//! Per-symbol panels of a multi-symbol experiment: the evaluation's per-symbol metrics
//! (`per_symbol.SYMBOL.*` of `metrics.json`) in a table, and each symbol's equity curve
//! against its own buy-and-hold.

use std::fmt::Write as _;

use super::data::{Predictions, by_symbol, equity_curves};
use super::html::{escape, figure};
use super::runs::Run;
use super::time_plots::equity_plot;

/// Equity panels drawn per experiment at most; the table lists every symbol.
pub(super) const MAX_PANELS: usize = 12;

/// `(title, metric under per_symbol.SYMBOL., format)`.
const FIGURES: &[(&str, &str, Format)] = &[
    ("windows", "windows", Format::Count),
    ("MSE", "price.mse", Format::Scientific),
    ("skill", "skill.pooled", Format::Fixed3),
    ("dir. acc.", "price.directional_accuracy", Format::Percent),
    (
        "return",
        "backtest.strategy.total_return",
        Format::SignedPercent,
    ),
    ("Sharpe", "backtest.strategy.sharpe", Format::Fixed2),
    (
        "max drawdown",
        "backtest.strategy.max_drawdown",
        Format::Percent,
    ),
    ("trades", "backtest.strategy.trades", Format::Count),
    ("band coverage", "price.band.coverage", Format::Percent),
    (
        "buy&amp;hold return",
        "backtest.buy_and_hold.total_return",
        Format::SignedPercent,
    ),
];

#[derive(Clone, Copy)]
enum Format {
    Count,
    Fixed2,
    Fixed3,
    Scientific,
    Percent,
    SignedPercent,
}

fn format(v: f64, f: Format) -> String {
    match f {
        Format::Count => format!("{v:.0}"),
        Format::Fixed2 => format!("{v:.2}"),
        Format::Fixed3 => format!("{v:.3}"),
        Format::Scientific => format!("{v:.3e}"),
        Format::Percent => format!("{:.1}%", 100.0 * v),
        Format::SignedPercent => format!("{:+.2}%", 100.0 * v),
    }
}

/// The section, for predictions of two or more symbols; nothing for one (the experiment's
/// own plots are that symbol's).
pub(super) fn symbols_section(html: &mut String, run: &Run, predictions: &Predictions) {
    let symbols = by_symbol(&predictions.rows);
    if symbols.len() < 2 {
        return;
    }
    let open = if symbols.len() <= 4 { " open" } else { "" };
    let _ = writeln!(
        html,
        "<details class=\"symbols\"{open}><summary>Per symbol ({} symbols)</summary>",
        symbols.len()
    );
    // Only the figures some symbol has (the band only for probabilistic models).
    let value = |symbol: &str, key: &str| {
        run.metrics
            .get(&format!("per_symbol.{symbol}.{key}"))
            .copied()
            .filter(|v| v.is_finite())
    };
    let shown: Vec<&(&str, &str, Format)> = FIGURES
        .iter()
        .filter(|(_, key, _)| symbols.iter().any(|(s, _)| value(s, key).is_some()))
        .collect();
    if shown.is_empty() {
        html.push_str(
            "<p class=\"meta\">The evaluation recorded no per-symbol metrics (an older \
             build); the panels below are computed from the predictions.</p>\n",
        );
    } else {
        html.push_str(
            "<div class=\"scroll\"><table class=\"metrics per-symbol\">\n<tr><th>symbol</th>",
        );
        for (title, _, _) in &shown {
            let _ = write!(html, "<th>{title}</th>");
        }
        html.push_str("</tr>\n");
        for (symbol, _) in &symbols {
            let _ = write!(html, "<tr><td>{}</td>", escape(symbol));
            for (_, key, f) in &shown {
                match value(symbol, key) {
                    Some(v) => {
                        let _ = write!(html, "<td class=\"num\">{}</td>", format(v, *f));
                    }
                    None => html.push_str("<td class=\"num\">-</td>"),
                }
            }
            html.push_str("</tr>\n");
        }
        html.push_str("</table></div>\n");
    }
    html.push_str("<div class=\"plots\">\n");
    for (symbol, rows) in symbols.iter().take(MAX_PANELS) {
        let plot = equity_plot(&equity_curves(rows, &run.evaluation), &run.evaluation);
        let caption = format!("{symbol}: equity against its buy-and-hold");
        figure(html, "symbol-equity", &caption, Some(plot));
    }
    html.push_str("</div>\n");
    if symbols.len() > MAX_PANELS {
        let _ = writeln!(
            html,
            "<p class=\"meta\">Panels for the first {MAX_PANELS} of {} symbols; the table \
             has them all.</p>",
            symbols.len()
        );
    }
    html.push_str("</details>\n");
}
