//! The survey `status`, `ls`, `show`, `explain`, `report` and `gc` share: the selected
//! experiments planned against the store and classified (cached, stale and why) without
//! executing anything.

use super::inputs::make_jobs;
use super::select::load_experiments;
use super::{Failure, Selection};
use crate::graph::Database;
use crate::graph::exec::{self, ExperimentJob, ExperimentReport};
use crate::store::Store;

/// Plans the selected experiments against `store` without executing anything and hands the
/// plans and their dry-run reports to `f` (the plans borrow from this call's database).
pub fn survey<R>(
    store: &Store,
    select: &Selection,
    f: impl FnOnce(&Store, &[ExperimentJob], &[ExperimentReport]) -> R,
) -> Result<R, Failure> {
    let db = Database::default();
    let planned = load_experiments(&db, select)?;
    let (planned, _) = super::search::replay(&db, store, planned)?;
    let jobs = make_jobs(&db, store, &planned, &mut Vec::new(), false)?;
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let reports = exec::run_all(store, &jobs, threads, true, &|_| {});
    Ok(f(store, &jobs, &reports))
}
