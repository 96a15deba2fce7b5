//! The report's interactive views: the loss curves of every run on one chart with a toggle
//! per run, and for each sweep a scatter of every swept value against a chosen metric and a
//! parallel-coordinates view. This file writes their controls and the JSON they are drawn
//! from; `report.js`, inlined at the end of the page, draws them as SVG and makes the runs
//! table sortable and filterable. Nothing is fetched: the data and the script are in the
//! page.

use std::fmt::Write as _;

use super::data::LossCurves;
use super::html::escape;
use super::runs::Run;
use super::sweep::Sweep;
use super::tables::COLUMNS;

/// The script, kept in its own file for reading; it contains no `//`, so the page has no
/// scheme-relative reference even by accident.
const SCRIPT: &str = include_str!("report.js");

/// Run colours (matplotlib's tab10), repeated past ten runs.
const PALETTE: [&str; 10] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
];

pub(super) fn color(run: usize) -> &'static str {
    PALETTE[run % PALETTE.len()]
}

/// The metric a sweep's views show first: the first of these the sweep's runs have.
const DEFAULT_METRICS: [&str; 3] = ["skill", "val loss", "Sharpe"];

fn swatch(run: usize) -> String {
    format!(
        "<span class=\"swatch\" style=\"background:{}\"></span>",
        color(run)
    )
}

pub(super) fn loss_section(html: &mut String, runs: &[Run]) {
    let with: Vec<&Run> = runs.iter().filter(|r| r.e.train_log.is_some()).collect();
    if with.is_empty() {
        return;
    }
    html.push_str(
        "<section id=\"loss-overlay\">\n<h2>Loss curves</h2>\n<p class=\"meta\">Every \
         trained run's loss per epoch on one chart. Tick a run to show or hide it; the \
         colours are the runs table's.</p>\n<p class=\"controls\"><label>Curves \
         <select id=\"loss-curves\"><option value=\"val\">validation</option>\
         <option value=\"train\">train</option><option value=\"both\">both (train \
         dashed)</option></select></label><label><input type=\"checkbox\" id=\"loss-log\"> \
         log scale</label></p>\n<div class=\"toggles\" id=\"loss-toggles\">\n",
    );
    for r in with {
        let _ = writeln!(
            html,
            "<label><input type=\"checkbox\" class=\"run-toggle\" data-run=\"{}\" checked>{}{}</label>",
            r.index,
            swatch(r.index),
            escape(&r.e.name)
        );
    }
    html.push_str(
        "</div>\n<div class=\"js-plot\" id=\"loss-chart\"><p class=\"not-built\">This \
         chart is drawn by the page's script.</p></div>\n</section>\n",
    );
}

pub(super) fn sweep_sections(html: &mut String, runs: &[Run], sweeps: &[Sweep]) {
    if sweeps.is_empty() {
        return;
    }
    html.push_str(
        "<section id=\"sweeps\">\n<h2>Sweeps</h2>\n<p class=\"meta\">Runs of one experiment \
         file that differ by their matrix values (or search trials): each swept value \
         against the chosen metric, then every run as a line across all swept values and \
         the metric (parallel coordinates; darker is better). Categorical values are \
         spaced evenly; values spanning a factor of 20 or more are on a log scale.</p>\n",
    );
    for (i, s) in sweeps.iter().enumerate() {
        let _ = write!(
            html,
            "<div class=\"sweep\" data-sweep=\"{i}\">\n<h3>{}</h3>\n<p class=\"meta\">{} runs; \
             swept: {}</p>\n<p class=\"controls\"><label>Metric <select class=\"sweep-metric\">",
            escape(&s.title),
            s.points.len(),
            escape(&s.keys.join(", "))
        );
        // The metrics some run of the sweep has (runs are indexed by position).
        let has = |c: usize| {
            s.points.iter().any(|(run, _)| {
                runs.get(*run)
                    .is_some_and(|r| COLUMNS[c].value(r).is_some())
            })
        };
        let available: Vec<usize> = (0..COLUMNS.len()).filter(|&c| has(c)).collect();
        let chosen = DEFAULT_METRICS
            .iter()
            .find_map(|t| available.iter().copied().find(|&c| COLUMNS[c].title == *t))
            .or(available.first().copied());
        for c in &available {
            let selected = if Some(*c) == chosen { " selected" } else { "" };
            let _ = write!(
                html,
                "<option value=\"{c}\"{selected}>{}</option>",
                COLUMNS[*c].title
            );
        }
        html.push_str(
            "</select></label></p>\n<div class=\"sweep-grid js-plot sweep-scatters\"></div>\n\
             <div class=\"js-plot sweep-parallel\"></div>\n</div>\n",
        );
    }
    html.push_str("</section>\n");
}

/// The data the script draws from, and the script.
pub(super) fn data_and_script(html: &mut String, runs: &[Run], sweeps: &[Sweep]) {
    let runs_json: Vec<serde_json::Value> = runs
        .iter()
        .map(|r| {
            let curves =
                r.e.train_log
                    .as_ref()
                    .map(LossCurves::from_log)
                    .unwrap_or_default();
            let pairs = |points: &[(f64, f64)]| -> Vec<[f64; 2]> {
                points.iter().map(|&(x, y)| [x, y]).collect()
            };
            serde_json::json!({
                "name": r.e.name,
                "color": color(r.index),
                "group": r.group,
                "train": pairs(&curves.train),
                "val": pairs(&curves.val),
                "m": COLUMNS.iter().map(|c| c.value(r)).collect::<Vec<_>>(),
            })
        })
        .collect();
    let metrics: Vec<serde_json::Value> = COLUMNS
        .iter()
        .map(|c| {
            serde_json::json!({
                "title": c.title.replace("&amp;", "&"),
                "higher": c.higher_is_better(),
            })
        })
        .collect();
    let sweeps_json: Vec<serde_json::Value> = sweeps
        .iter()
        .map(|s| {
            serde_json::json!({
                "title": s.title,
                "keys": s.keys,
                "points": s.points.iter().map(|(run, values)| serde_json::json!({
                    "run": run,
                    "values": values,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let data = serde_json::json!({
        "runs": runs_json,
        "metrics": metrics,
        "sweeps": sweeps_json,
    });
    let _ = write!(
        html,
        "<script type=\"application/json\" id=\"hft-data\">{}</script>\n\
         <script id=\"hft-script\">\n{SCRIPT}</script>\n",
        json_for_script(&data)
    );
}

/// JSON safe inside a `<script>` element and free of `//`: `<`, `>`, `&` and `/` escaped
/// (each only occurs inside strings, where the escape means the same character).
fn json_for_script(value: &serde_json::Value) -> String {
    let text = value.to_string();
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '/' => out.push_str("\\/"),
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::html::render;
    use crate::report::html::tests::{CSV, experiment};

    /// The JSON the page embeds for its script.
    fn embedded(html: &str) -> serde_json::Value {
        let json = html
            .split("<script type=\"application/json\" id=\"hft-data\">")
            .nth(1)
            .and_then(|s| s.split("</script>").next())
            .expect("embedded data");
        serde_json::from_str(json).expect("valid JSON")
    }

    #[test]
    fn the_runs_table_is_grouped_by_data_sortable_and_filterable() {
        let a = experiment("a", "0.001");
        let mut b = experiment("b", "0.01");
        b.config
            .insert("data.symbols".to_string(), "[\"MSFT\"]".to_string());
        let html = render(&[a, b]).unwrap();
        assert!(html.contains("<input id=\"run-filter\" type=\"search\""));
        assert_eq!(html.matches("<tbody data-group=").count(), 2);
        let span = COLUMNS.len() + 3;
        assert!(html.contains(&format!("<th colspan=\"{span}\">data: symbols=-</th>")));
        assert!(html.contains(&format!(
            "<th colspan=\"{span}\">data: symbols=[&quot;MSFT&quot;]</th>"
        )));
        // Sortable: exact values beside the formatted ones; headers typed.
        assert!(html.contains("<td class=\"num\" data-v=\"1.25e0\">1.25</td>"));
        assert!(html.contains("<th data-type=\"num\">Sharpe</th>"));
        // Filterable by the config values that differ (and the file).
        assert!(html.contains(
            "data-search=\"experiments/b.yaml data.symbols=[&quot;MSFT&quot;] optimizer.lr=0.01\""
        ));
        assert!(html.contains("<script id=\"hft-script\">"));
    }

    #[test]
    fn loss_curves_and_a_sweep_are_drawn_from_embedded_data() {
        let experiments: Vec<_> = ["0.001", "0.01", "0.1"]
            .into_iter()
            .map(|lr| {
                let mut e = experiment(&format!("lr[optimizer.lr={lr}]"), lr);
                e.file = "experiments/lr.yaml".into();
                e
            })
            .chain([experiment("other", "0.1")])
            .collect();
        let html = render(&experiments).unwrap();
        assert_eq!(html.matches("class=\"run-toggle\"").count(), 4);
        assert!(html.contains("<div class=\"js-plot\" id=\"loss-chart\">"));
        let sweeps = html
            .split("<section id=\"sweeps\">")
            .nth(1)
            .expect("sweeps");
        assert!(sweeps.contains("<h3>experiments/lr.yaml: lr</h3>"));
        assert!(sweeps.contains("3 runs; swept: optimizer.lr"));
        // The fixture has no skill or val loss: Sharpe is shown first; only the metrics
        // the runs have are offered.
        let sharpe = COLUMNS.iter().position(|c| c.title == "Sharpe").unwrap();
        let mse = COLUMNS.iter().position(|c| c.title == "MSE").unwrap();
        assert!(sweeps.contains(&format!(
            "<option value=\"{sharpe}\" selected>Sharpe</option>"
        )));
        assert!(sweeps.contains(&format!("<option value=\"{mse}\">MSE</option>")));
        assert!(!sweeps.contains(">skill</option>"));

        let data = embedded(&html);
        assert_eq!(
            data["runs"][0]["val"],
            serde_json::json!([[1.0, 1.1], [2.0, 1.0]])
        );
        assert_eq!(data["runs"][0]["m"][sharpe], serde_json::json!(1.25));
        assert_eq!(data["runs"][3]["name"], "other");
        assert_eq!(data["metrics"][sharpe]["higher"], true);
        assert_eq!(
            data["sweeps"][0]["keys"],
            serde_json::json!(["optimizer.lr"])
        );
        assert_eq!(
            data["sweeps"][0]["points"][2],
            serde_json::json!({"run": 2, "values": [0.1]})
        );
        // `other` is no matrix point: one sweep.
        assert_eq!(sweeps.matches("data-sweep=").count(), 1);
    }

    #[test]
    fn a_band_gets_its_calibration_plot_and_coverage_column() {
        // The fixture with a 10%-90% band around each prediction.
        let mut lines = CSV.lines();
        let mut csv = lines
            .next()
            .unwrap()
            .replace("actual_r1", "q10_r1,q10_r2,q90_r1,q90_r2,actual_r1");
        csv.push('\n');
        for line in lines {
            let f: Vec<&str> = line.split(',').collect();
            csv.push_str(&format!(
                "{},{},{},-0.03,-0.03,0.03,0.03,{}\n",
                f[0],
                f[1],
                f[2..4].join(","),
                f[4..].join(",")
            ));
        }
        let mut e = experiment("dit", "0.001");
        e.predictions = Some(csv.into_bytes());
        e.metrics.insert("price.band.coverage".to_string(), 0.9);
        let html = render(&[e]).unwrap();
        assert_eq!(
            html.matches("<figure class=\"plot calibration\">").count(),
            1
        );
        assert!(html.contains("nominal 80%"));
        // r1's actual returns: 0.02, 0.01, -0.03, 0.04, 0.01: the 0.04 is outside.
        assert!(html.contains("holds 90.0% of actual returns"), "{html}");
        assert!(html.contains("<th data-type=\"num\">band coverage (nominal 80%)</th>"));
        assert!(html.contains(">90.0%</td>"));
    }

    #[test]
    fn embedded_json_cannot_close_its_script_or_hold_a_url() {
        let v = serde_json::json!({"name": "</script><b>x</b> http://a.b/c & d"});
        let text = json_for_script(&v);
        assert!(!text.contains('<') && !text.contains("//") && !text.contains('&'));
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn the_script_has_nothing_a_browser_would_fetch() {
        assert_eq!(
            crate::report::html::tests::external_references(SCRIPT),
            Vec::<&str>::new()
        );
        assert!(!SCRIPT.to_ascii_lowercase().contains("</script"));
    }
}
