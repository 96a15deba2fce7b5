//! `hft build`, `hft status` and `hft fetch` on the command line: the arguments turned into
//! a request for `crate::usecase`, and its answer rendered (each experiment's stage lines as
//! it finishes, errors, the results table and the summary, or one JSON document).

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::{Common, Outcome, print_messages, report_failure};
use crate::graph::exec::{ExperimentReport, StageState};
use crate::graph::slurm::SlurmExecutor;
use crate::graph::{self, memo};
use crate::lock::LOCK_FILE;
use crate::term;
use crate::usecase::build::{BuildRequest, BuildResult, Built, StatusRequest, Surveyed, Unchanged};
use crate::usecase::fetch::FetchRequest;
use crate::usecase::text::{experiment_lines, results_table};

/// How `hft build` was asked to run, besides its selection.
#[derive(Debug, Default)]
pub struct BuildArgs {
    pub dry_run: bool,
    pub jobs: Option<usize>,
    pub locked: bool,
    pub json: bool,
    pub until: Option<String>,
    /// `--remote` and `--remote-read-only`.
    pub remote: Option<String>,
    pub remote_read_only: bool,
    /// `--executor slurm`, set up and checked.
    pub executor: Option<SlurmExecutor>,
}

/// `hft build` and `hft build --dry-run`.
pub fn build(common: &Common, args: &BuildArgs) -> Outcome {
    let req = BuildRequest {
        select: common.select.selection(),
        cache_dir: super::cache_dir(common.cache_dir.as_deref()),
        lock_file: PathBuf::from(LOCK_FILE),
        dry_run: args.dry_run,
        jobs: args.jobs,
        locked: args.locked,
        until: args.until.clone(),
        remote: args.remote.clone(),
        remote_read_only: args.remote_read_only,
        executor: args.executor.clone(),
        memo: std::env::var_os(memo::DISABLE_ENV).is_none(),
        answer_from_memo: !args.json,
        index: std::env::var_os(crate::graph::index::DISABLE_ENV).is_none(),
    };
    let (dry_run, json) = (args.dry_run, args.json);
    let quiet = common.quiet || json;
    term::set_quiet(quiet);
    let print = move |r: &ExperimentReport| {
        if !json {
            term::print_block(&experiment_lines(r, dry_run, quiet))
        }
    };
    match crate::usecase::build::build(&req, &print) {
        Err(failure) => report_failure(failure),
        Ok(BuildResult::Unchanged(unchanged)) => print_unchanged(&unchanged, common.quiet),
        Ok(BuildResult::Built(built)) => print_and_exit(built, json),
        Ok(BuildResult::Partial(p)) => print_partial(*p, common.quiet),
    }
}

/// A build of the stale files (their lines printed as they finished), with every other
/// experiment's lines and row from the memo: what building everything prints.
fn print_partial(p: crate::usecase::memos::PartialBuilt, quiet: bool) -> Outcome {
    term::print_blocks(
        p.kept()
            .map(|(verbose, quiet_lines)| if quiet { quiet_lines } else { verbose }),
    );
    let b = &p.built;
    print_messages(&b.messages);
    let results = p.results();
    if !results.is_empty() {
        term::print_block(&[String::new()]);
        term::print_block(&term::table(&results));
    }
    let searches: Vec<String> = b.searches.iter().map(|s| s.summary_line()).collect();
    term::print_block(&searches);
    let c = &b.counts;
    let pulled = match c.pulled {
        0 => String::new(),
        n => format!("{n} pulled, "),
    };
    term::print_block(&[format!(
        "{} experiments: {} stages ran, {pulled}{} cached, {} failed ({})",
        p.kept().count() + b.reports.len(),
        c.ran,
        c.cached + p.kept_stages(),
        c.failed,
        term::duration(p.secs)
    )]);
    let outcome = b.outcome;
    std::mem::forget(p);
    outcome
}

/// `hft status`: the dry run of `hft build`.
pub fn status(common: &Common, json: bool, verbose: bool) -> Outcome {
    let req = StatusRequest {
        select: common.select.selection(),
        cache_dir: super::cache_dir(common.cache_dir.as_deref()),
    };
    let quiet = common.quiet || json;
    term::set_quiet(quiet);
    let print = move |r: &ExperimentReport| {
        if json {
            return;
        }
        if quiet {
            term::print_block(&experiment_lines(r, true, quiet))
        } else {
            term::print_block(&crate::usecase::text::status_lines(r, verbose))
        }
    };
    if json {
        return match crate::usecase::build::status(&req, &print) {
            Err(failure) => report_failure(failure),
            Ok(built) => print_and_exit(built, json),
        };
    }
    match crate::usecase::build::status_memoized(&req, &print) {
        Err(failure) => report_failure(failure),
        Ok(Surveyed::Built(built)) => print_and_exit(built, json),
        Ok(Surveyed::Unchanged(u)) => {
            let m = &u.memo;
            term::print_blocks(m.experiments.iter().map(|e| memo_lines(e, quiet, verbose)));
            term::print_block(&m.notes);
            term::print_block(&[format!(
                "{} experiments: 0 stages would run, {} up to date ({})",
                m.experiments.len(),
                m.stages(),
                term::duration(u.secs)
            )]);
            std::mem::forget(u);
            Outcome::Ok
        }
        Ok(Surveyed::Partial(p)) => {
            term::print_blocks(p.kept().map(|e| memo_lines(e, quiet, verbose)));
            for r in &p.built.reports {
                print(r);
            }
            let b = &p.built;
            print_messages(&b.messages);
            let searches: Vec<String> = b.searches.iter().map(|s| s.summary_line()).collect();
            term::print_block(&searches);
            term::print_block(&[format!(
                "{} experiments: {} stages would run, {} up to date ({})",
                p.kept().count() + b.reports.len(),
                b.counts.stale,
                p.kept().map(|e| e.stages).sum::<usize>() + b.counts.cached,
                term::duration(p.secs)
            )]);
            let outcome = b.outcome;
            std::mem::forget(p);
            outcome
        }
    }
}

/// An experiment's lines from the status memo, as `-q` / `-v` ask.
fn memo_lines(e: &crate::usecase::status_memo::Entry, quiet: bool, verbose: bool) -> &[String] {
    let i = match (quiet, verbose) {
        (true, _) => 2,
        (false, true) => 1,
        (false, false) => 0,
    };
    e.lines.get(i).map_or(&[], Vec::as_slice)
}

/// [`print_built`], then leaves the reports to the process's exit: freeing 10,000
/// experiments' reports one allocation at a time took a tenth of a large status.
fn print_and_exit(b: Built, json: bool) -> Outcome {
    let outcome = print_built(&b, json);
    std::mem::forget(b);
    outcome
}

/// Everything after the stage lines: errors, then the results table and the summary, or the
/// JSON document.
fn print_built(b: &Built, json: bool) -> Outcome {
    print_messages(&b.messages);
    let c = &b.counts;
    if json {
        let doc = serde_json::json!({
            "dry_run": b.dry_run,
            "experiments": b.reports.iter().map(report_json).collect::<Vec<_>>(),
            "ran": c.ran,
            "cached": c.cached,
            "pulled": c.pulled,
            "stale": c.stale,
            "failed": c.failed,
            "secs": b.secs,
        });
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        return b.outcome;
    }
    let summary = if b.dry_run {
        format!(
            "{} experiments: {} stages would run, {} up to date ({})",
            b.reports.len(),
            c.stale,
            c.cached,
            term::duration(b.secs)
        )
    } else {
        let pulled = match c.pulled {
            0 => String::new(),
            n => format!("{n} pulled, "),
        };
        format!(
            "{} experiments: {} stages ran, {pulled}{} cached, {} failed ({})",
            b.reports.len(),
            c.ran,
            c.cached,
            c.failed,
            term::duration(b.secs)
        )
    };
    if !b.dry_run
        && b.reports.iter().any(|r| {
            r.stages
                .iter()
                .any(|s| s.id == "evaluate" || s.id == "walk_forward")
        })
    {
        let experiments: Vec<&crate::config::Experiment> = b.experiments.iter().collect();
        term::print_block(&[String::new()]);
        term::print_block(&results_table(&b.reports, &experiments));
    }
    let searches: Vec<String> = b.searches.iter().map(|s| s.summary_line()).collect();
    term::print_block(&searches);
    term::print_block(&[summary]);
    if let Some(((pulled, pulled_bytes), (pushed, pushed_bytes))) = b.transferred
        && !b.dry_run
    {
        term::print_block(&[format!(
            "remote cache: pulled {pulled} objects ({}), pushed {pushed} ({})",
            super::housekeeping::human_bytes(pulled_bytes),
            super::housekeeping::human_bytes(pushed_bytes)
        )]);
    }
    b.outcome
}

/// The output of a no-op build, replayed from its memo.
fn print_unchanged(u: &Unchanged, quiet: bool) -> Outcome {
    term::print_blocks(u.experiments.iter().map(|(verbose, quiet_lines)| {
        if quiet {
            quiet_lines.as_slice()
        } else {
            verbose.as_slice()
        }
    }));
    if !u.results.is_empty() {
        term::print_block(&[String::new()]);
        term::print_block(&term::table(&u.results));
    }
    term::print_block(&u.notes);
    for w in &u.warnings {
        term::warn(w);
    }
    term::print_block(&[format!(
        "{} experiments: 0 stages ran, {} cached, 0 failed ({}; nothing changed since the last build)",
        u.experiments.len(),
        u.stages,
        term::duration(u.secs)
    )]);
    Outcome::Ok
}

/// One experiment of `hft build --json` / `hft status --json`.
fn report_json(r: &ExperimentReport) -> serde_json::Value {
    let stages: Vec<serde_json::Value> = r
        .stages
        .iter()
        .map(|s| {
            let (state, detail) = match &s.state {
                StageState::Cached if s.pulled => ("pulled", None),
                StageState::Cached => ("cached", None),
                StageState::Ran { secs } => ("ran", Some(serde_json::json!(secs))),
                StageState::Stale { reason } => ("stale", Some(serde_json::json!(reason))),
                StageState::Skipped => ("skipped", None),
                StageState::Failed(e) => ("failed", Some(serde_json::json!(e.to_string()))),
            };
            let mut v = serde_json::json!({
                "id": s.id,
                "state": state,
                "key": s.key.as_ref().map(|k| k.0.clone()),
                "outputs": s.record.as_ref().map(|rec| rec.outputs.iter().map(|(n, o)| (n.clone(), o.digest.to_hex())).collect::<BTreeMap<_, _>>()),
            });
            let name = match state {
                "ran" => "secs",
                "stale" => "reason",
                _ => "error",
            };
            if let Some(d) = detail {
                v[name] = d;
            }
            if let Some(job) = s.key.as_ref().and_then(graph::slurm::job_of) {
                v["slurm_job"] = serde_json::json!(job);
            }
            v
        })
        .collect();
    serde_json::json!({
        "name": r.name,
        "file": r.file.display().to_string(),
        "stages": stages,
    })
}

/// `hft fetch`: every API request of the selected experiments fetched again.
pub fn fetch(common: &Common) -> Outcome {
    let req = FetchRequest {
        select: common.select.selection(),
        cache_dir: super::cache_dir(common.cache_dir.as_deref()),
    };
    let report = match crate::usecase::fetch::fetch(&req) {
        Ok(r) => r,
        Err(failure) => return report_failure(failure),
    };
    print_messages(&report.messages);
    if !common.quiet {
        let lines: Vec<String> = report
            .fetched
            .iter()
            .map(|f| {
                format!(
                    "{:<10} {} rows, {} page{}, {}  {}",
                    f.symbol,
                    f.record.rows,
                    f.record.pages,
                    if f.record.pages == 1 { "" } else { "s" },
                    if f.changed {
                        "new snapshot"
                    } else {
                        "unchanged"
                    },
                    f.record.url
                )
            })
            .collect();
        term::print_block(&lines);
    }
    report.outcome
}
