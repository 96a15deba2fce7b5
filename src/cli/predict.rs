//! Using a trained model: `hft predict` and `hft export` (the use cases are
//! `crate::usecase::predict` and `crate::usecase::export`).

use std::io::{IsTerminal, Write as _};
use std::path::{Path, PathBuf};

use clap::Args;

use super::{Common, Outcome, cache_dir, report_failure};
use crate::term;
use crate::usecase::Selection;
use crate::usecase::export::{ExportRequest, export};
use crate::usecase::predict::{
    PredictRequest, Predicted, forecasts_csv, forecasts_json, iso_time, predict,
};

#[derive(Args, Debug)]
pub struct PredictArgs {
    /// Experiment name, or an experiment file.
    #[arg(add = clap_complete::engine::ArgValueCompleter::new(super::complete::experiment_names))]
    pub experiment: String,
    /// Score this data file or folder instead of the experiment's own source (a file's
    /// name is its symbol: `AAPL.csv`).
    #[arg(long, value_name = "PATH")]
    pub data: Option<PathBuf>,
    /// Score only these symbols (`--symbols AAPL,MSFT`).
    #[arg(long, value_name = "SYMBOLS", value_delimiter = ',')]
    pub symbols: Vec<String>,
    /// Only windows whose last bar is at or after this date (2024-01-31) or time (RFC 3339).
    #[arg(long, value_name = "DATE")]
    pub from: Option<String>,
    /// Only windows whose last bar is at or before this date (the whole day) or time.
    #[arg(long, value_name = "DATE")]
    pub to: Option<String>,
    /// Write the forecasts here (CSV, or JSON with --json) instead of to stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// JSON instead of CSV.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Experiment name, or an experiment file.
    #[arg(add = clap_complete::engine::ArgValueCompleter::new(super::complete::experiment_names))]
    pub experiment: String,
    /// The folder to write (created if missing).
    #[arg(short, long, value_name = "DIR")]
    pub output: PathBuf,
    #[command(flatten)]
    pub common: Common,
}

/// The selection for a one-experiment command: a file given as EXP is searched by itself.
fn selection_for(experiment: &str, common: &Common) -> Selection {
    let mut select = common.select.selection();
    if Path::new(experiment).is_file() && select.paths.is_empty() {
        select.paths = vec![PathBuf::from(experiment)];
    }
    select
}

/// `hft predict`.
pub fn run_predict(args: &PredictArgs) -> Outcome {
    let req = PredictRequest {
        select: selection_for(&args.experiment, &args.common),
        cache_dir: cache_dir(args.common.cache_dir.as_deref()),
        experiment: args.experiment.clone(),
        data: args.data.clone(),
        symbols: args.symbols.clone(),
        from: args.from.clone(),
        to: args.to.clone(),
    };
    let predicted = match predict(&req) {
        Ok(p) => p,
        Err(f) => return report_failure(f),
    };
    for w in &predicted.warnings {
        term::warn(w);
    }
    let text = if args.json {
        let mut doc = serde_json::to_string_pretty(&forecasts_json(&predicted)).unwrap_or_default();
        doc.push('\n');
        doc
    } else {
        forecasts_csv(&predicted.forecasts)
    };
    let n = predicted.forecasts.rows.len();
    let how = if predicted.cached {
        "cached, nothing executed"
    } else {
        "scored"
    };
    match &args.output {
        Some(path) => {
            if let Err(e) = std::fs::write(path, &text) {
                eprintln!("error: cannot write {}: {e}", path.display());
                return Outcome::StageFailed;
            }
            if !args.common.quiet {
                eprintln!(
                    "{}: {n} forecast{} ({how}) -> {}",
                    predicted.experiment,
                    if n == 1 { "" } else { "s" },
                    path.display()
                );
            }
        }
        None if !args.json && std::io::stdout().is_terminal() => {
            term::print_block(&latest_table(&predicted));
            eprintln!(
                "{n} forecast{} ({how}); -o FILE or a pipe gives them all as CSV",
                if n == 1 { "" } else { "s" }
            );
        }
        None => {
            // A closed pipe (`| head`) is the reader's choice, not an error.
            let _ = std::io::stdout().lock().write_all(text.as_bytes());
        }
    }
    Outcome::Ok
}

/// The latest forecast of each symbol, for a terminal.
fn latest_table(p: &Predicted) -> Vec<String> {
    let f = &p.forecasts;
    let mut rows = vec![{
        let mut head = vec!["symbol".to_string(), "bar".to_string(), "close".to_string()];
        head.extend((1..=f.horizon).map(|h| format!("r+{h}")));
        head.extend(["action", "p"].map(str::to_string));
        head
    }];
    let mut seen: Vec<&str> = Vec::new();
    for row in f.rows.iter().rev() {
        if seen.contains(&row.symbol.as_str()) {
            continue;
        }
        seen.push(&row.symbol);
        let probs = row.probabilities();
        let chosen = crate::usecase::predict::ACTIONS
            .iter()
            .position(|a| *a == row.action())
            .unwrap_or(0);
        let mut cells = vec![
            row.symbol.clone(),
            iso_time(row.timestamp),
            format!("{:.4}", row.close),
        ];
        cells.extend(row.returns.iter().map(|r| format!("{:+.3}%", r * 100.0)));
        cells.push(row.action().to_string());
        cells.push(format!("{:.2}", probs[chosen]));
        rows.push(cells);
    }
    rows[1..].reverse();
    term::table(&rows)
}

/// `hft export`.
pub fn run_export(args: &ExportArgs) -> Outcome {
    let req = ExportRequest {
        select: selection_for(&args.experiment, &args.common),
        cache_dir: cache_dir(args.common.cache_dir.as_deref()),
        experiment: args.experiment.clone(),
        out_dir: args.output.clone(),
    };
    match export(&req) {
        Ok(done) => {
            for w in &done.warnings {
                term::warn(w);
            }
            if !args.common.quiet {
                println!("exported {} to {}", done.experiment, done.dir.display());
                for (name, size) in &done.files {
                    println!("  {name} ({size} B)");
                }
            }
            Outcome::Ok
        }
        Err(f) => report_failure(f),
    }
}
