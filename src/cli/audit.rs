//! `hft audit` on the command line: the arguments turned into a request for
//! `crate::usecase::audit`, the results shown as a table or JSON (and JUnit XML when asked).

use std::path::PathBuf;

use super::{Common, Outcome, fail, report_failure};
use crate::lock::LOCK_FILE;
use crate::term;
use crate::usecase::audit::AuditRequest;

/// What `hft audit` was asked for, besides its selection.
pub struct AuditArgs {
    pub stage: Option<String>,
    pub sample: Option<usize>,
    pub locked: bool,
    pub tolerance: Vec<String>,
    pub json: bool,
    pub junit: Option<PathBuf>,
}

/// `hft audit`: exit 0 when every audited stage reproduces, 1 when one diverges or fails.
pub fn audit(common: &Common, args: &AuditArgs) -> Outcome {
    let req = AuditRequest {
        select: common.select.selection(),
        cache_dir: super::cache_dir(common.cache_dir.as_deref()),
        lock_file: PathBuf::from(LOCK_FILE),
        stage: args.stage.clone(),
        sample: args.sample,
        locked: args.locked,
        tolerance: args.tolerance.clone(),
    };
    let results = match crate::usecase::audit::audit(&req) {
        Ok(r) => r,
        Err(failure) => return report_failure(failure),
    };
    if let Some(path) = &args.junit
        && let Err(e) = std::fs::write(path, crate::audit::junit(&results))
    {
        term::warn(&format!("cannot write {}: {e}", path.display()));
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&results).unwrap_or_default()
        );
    } else {
        let mut rows = vec![vec![
            "experiment".to_string(),
            "stage".to_string(),
            "tolerance".to_string(),
            "result".to_string(),
            "detail".to_string(),
        ]];
        for r in &results {
            rows.push(vec![
                r.experiment.clone(),
                r.stage.clone(),
                r.tolerance.clone(),
                r.status.clone(),
                r.detail.clone(),
            ]);
        }
        term::print_block(&term::table(&rows));
    }
    let bad: Vec<&crate::audit::StageAudit> =
        results.iter().filter(|r| r.status != "pass").collect();
    if let Some(first) = bad.iter().find(|r| r.status == "diverged") {
        eprintln!(
            "error: first divergence: {}/{}: {}",
            first.experiment, first.stage, first.detail
        );
    }
    if results.is_empty() {
        return fail("no stage matched");
    }
    if bad.is_empty() {
        eprintln!("audit: {} stages reproduced", results.len());
        Outcome::Ok
    } else {
        eprintln!(
            "audit: {} of {} stages did not reproduce",
            bad.len(),
            results.len()
        );
        Outcome::StageFailed
    }
}
