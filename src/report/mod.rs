//! What a build tells the user: warnings, per-stage lines, the results table.
//!
//! Everything goes through here so that parallel stages never interleave half lines.

pub mod html;

use std::io::Write;
use std::sync::Mutex;

static OUTPUT: Mutex<()> = Mutex::new(());

/// A warning on stderr (corrupt blob, unreadable record, ...): the build continues.
pub fn warn(message: &str) {
    let _guard = OUTPUT.lock();
    let _ = writeln!(std::io::stderr(), "warning: {message}");
}

/// Prints a block of lines to stdout at once.
pub fn print_block(lines: &[String]) {
    let _guard = OUTPUT.lock();
    let mut out = std::io::stdout().lock();
    for line in lines {
        let _ = writeln!(out, "{line}");
    }
}

/// Formats a duration for stage lines: `0.012s`, `3.4s`, `2m05s`.
pub fn duration(secs: f64) -> String {
    if secs < 1.0 {
        format!("{secs:.3}s")
    } else if secs < 60.0 {
        format!("{secs:.1}s")
    } else {
        let m = (secs / 60.0).floor();
        format!("{}m{:02}s", m as u64, (secs - m * 60.0).round() as u64)
    }
}

/// Whether progress goes to a live bar (a terminal, not `--quiet`) or to plain lines.
static QUIET: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, std::sync::atomic::Ordering::Relaxed);
}

fn live_progress() -> bool {
    use std::io::IsTerminal;
    !QUIET.load(std::sync::atomic::Ordering::Relaxed) && std::io::stderr().is_terminal()
}

/// Progress of one training run: a bar (epoch, step, loss, samples/s, ETA) on a terminal;
/// one line per epoch in CI or with `--quiet`.
pub struct TrainingProgress {
    label: String,
    bar: Option<indicatif::ProgressBar>,
}

impl TrainingProgress {
    pub fn new(label: &str, total_steps: u64) -> TrainingProgress {
        let bar = live_progress().then(|| {
            let bar = indicatif::ProgressBar::new(total_steps);
            let style = indicatif::ProgressStyle::with_template(
                "{prefix} [{bar:30}] {pos}/{len} steps {msg} ETA {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> ");
            bar.set_style(style);
            bar.set_prefix(label.to_string());
            bar
        });
        TrainingProgress {
            label: label.to_string(),
            bar,
        }
    }

    /// After each optimizer step.
    pub fn step(&self, epoch: usize, step: u64, total_steps: u64, loss: f64, samples_per_sec: f64) {
        if let Some(bar) = &self.bar {
            bar.set_length(total_steps);
            bar.set_position(step);
            bar.set_message(format!(
                "epoch {epoch} loss {loss:.4} {samples_per_sec:.0} samples/s"
            ));
        }
    }

    /// After each epoch's validation.
    pub fn epoch(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(format!("{}: {line}", self.label)),
            None => print_err_line(&format!("{}: {line}", self.label)),
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

fn print_err_line(line: &str) {
    let _guard = OUTPUT.lock();
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Renders rows as an aligned text table (first row is the header).
pub fn table(rows: &[Vec<String>]) -> Vec<String> {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    rows.iter()
        .map(|r| {
            r.iter()
                .zip(&widths)
                .map(|(cell, w)| format!("{cell:<w$}"))
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_string()
        })
        .collect()
}

/// The table printed after a build: one row per experiment with its headline results.
pub fn results_table(
    reports: &[crate::graph::exec::ExperimentReport],
    experiments: &[&crate::config::Experiment],
) -> Vec<String> {
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
    table(&rows)
}
