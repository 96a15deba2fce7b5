//! The audit use case (`hft audit`): the selected experiments' built stages re-executed off
//! the cache and compared with what was recorded (or with `hft.lock`), under a tolerance
//! class per stage. The comparisons themselves are `crate::audit`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::inputs::make_jobs;
use super::select::load_experiments;
use super::{Failure, Selection, open_store};
use crate::audit::{StageAudit, Tolerance};
use crate::graph::exec::{self, ExperimentJob};
use crate::graph::{self, Database};
use crate::lock::{LOCK_FILE, Lockfile};

/// What `hft audit` audits.
#[derive(Debug, Clone)]
pub struct AuditRequest {
    pub select: Selection,
    pub cache_dir: PathBuf,
    /// The lockfile compared with when `locked`.
    pub lock_file: PathBuf,
    /// Only this stage (`train`, `ingest:AAPL`, ...).
    pub stage: Option<String>,
    /// N experiments picked deterministically (spread over the name order).
    pub sample: Option<usize>,
    /// Compare with the lockfile instead of the cache's records.
    pub locked: bool,
    /// Tolerance classes, for every stage (`ulp:4`) or one (`train=ulp:4`).
    pub tolerance: Vec<String>,
}

/// The tolerance of every stage and of the named ones, from `--tolerance` arguments.
fn tolerances(args: &[String]) -> Result<(Tolerance, BTreeMap<String, Tolerance>), String> {
    let mut default_tolerance = Tolerance::Bitwise;
    let mut per_stage: BTreeMap<String, Tolerance> = BTreeMap::new();
    for t in args {
        let parsed = match t.split_once('=') {
            Some((stage, _)) if !graph::STAGE_ORDER.contains(&stage.trim()) => {
                let hint =
                    match crate::config::did_you_mean(stage, graph::STAGE_ORDER.iter().copied()) {
                        Some(best) => format!("did you mean `{best}`?"),
                        None => format!("stages are {}", graph::STAGE_ORDER.join(", ")),
                    };
                Err(format!("`{t}`: no stage `{stage}`; {hint}"))
            }
            Some((stage, class)) => Tolerance::parse(class).map(|c| {
                per_stage.insert(stage.trim().to_string(), c);
            }),
            None => Tolerance::parse(t).map(|c| default_tolerance = c),
        };
        parsed.map_err(|e| format!("--tolerance: {e}"))?;
    }
    Ok((default_tolerance, per_stage))
}

/// Each audited stage's result (empty when no stage matched).
pub fn audit(req: &AuditRequest) -> Result<Vec<StageAudit>, Failure> {
    let (default_tolerance, per_stage) = tolerances(&req.tolerance).map_err(Failure::bad_input)?;
    let store = open_store(&req.cache_dir)?;
    let db = Database::default();
    let planned = load_experiments(&db, &req.select)?;
    let (planned, _) = super::search::replay(&db, &store, planned)?;
    let jobs_list = make_jobs(&db, &store, &planned, &mut Vec::new(), false)?;
    let lock = if req.locked {
        match Lockfile::load(&req.lock_file) {
            Ok(Some(l)) => Some(l),
            Ok(None) => {
                return Err(Failure::bad_input(format!(
                    "--locked: there is no {LOCK_FILE}"
                )));
            }
            Err(e) => return Err(Failure::bad_input(e)),
        }
    } else {
        None
    };
    // A deterministic sample spread over the name order.
    let mut chosen: Vec<&ExperimentJob> = jobs_list.iter().collect();
    chosen.sort_by(|a, b| a.plan.name.cmp(&b.plan.name));
    if let Some(n) = req.sample.filter(|&n| n > 0 && n < chosen.len()) {
        let step = chosen.len() as f64 / n as f64;
        chosen = (0..n).map(|i| chosen[(i as f64 * step) as usize]).collect();
    }
    // Look every stage up (no execution) to find the recorded outputs and their inputs.
    let owned: Vec<ExperimentJob> = chosen
        .iter()
        .map(|j| ExperimentJob {
            file: j.file.clone(),
            experiment: j.experiment,
            locations: j.locations,
            plan: j.plan,
            data_digests: j.data_digests.clone(),
        })
        .collect();
    let reports = exec::run_all(&store, &owned, 1, true, &|_| {});
    let tolerance_for = |stage: &str| *per_stage.get(stage).unwrap_or(&default_tolerance);
    Ok(crate::audit::audit(
        &store,
        &chosen,
        &reports,
        req.stage.as_deref(),
        lock.as_ref(),
        &tolerance_for,
    ))
}
