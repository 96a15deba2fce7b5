//! The fetch use case (`hft fetch`): every API request of the selected experiments
//! downloaded again and its snapshot replaced (each request once, even when several
//! experiments share it).

use std::path::PathBuf;

use super::select::load_experiments;
use super::{Failure, Message, Outcome, Selection, open_store};
use crate::graph::Database;

/// What `hft fetch` fetches.
#[derive(Debug, Clone)]
pub struct FetchRequest {
    pub select: Selection,
    pub cache_dir: PathBuf,
}

/// One request fetched: its symbol and snapshot.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub symbol: String,
    pub record: crate::sources::snapshot::SnapshotRecord,
    /// Whether the bars differ from the previous snapshot.
    pub changed: bool,
}

/// Every request's result, in selection order; `messages` holds the requests that failed.
#[derive(Debug)]
pub struct FetchReport {
    pub outcome: Outcome,
    pub fetched: Vec<Fetched>,
    pub messages: Vec<Message>,
}

pub fn fetch(req: &FetchRequest) -> Result<FetchReport, Failure> {
    let store = open_store(&req.cache_dir)?;
    let db = Database::default();
    let planned = load_experiments(&db, &req.select)?;
    let mut seen = std::collections::BTreeSet::new();
    let mut report = FetchReport {
        outcome: Outcome::Ok,
        fetched: Vec::new(),
        messages: Vec::new(),
    };
    for l in &planned {
        let e = &l.parsed.experiment;
        if e.data.source != crate::config::SourceKind::Api {
            continue;
        }
        for symbol in e.data.symbols.listed() {
            let req = crate::sources::snapshot::request(e, symbol);
            if !seen.insert(crate::sources::snapshot::record_id(&req)) {
                continue;
            }
            match crate::sources::snapshot::refresh(&store, &req) {
                Ok((record, changed)) => report.fetched.push(Fetched {
                    symbol: symbol.clone(),
                    record,
                    changed,
                }),
                Err(message) => {
                    report.messages.push(Message::Error(format!(
                        "{}: {symbol}: {message}",
                        l.plan.name
                    )));
                    report.outcome = report.outcome.worst(Outcome::StageFailed);
                }
            }
        }
    }
    if seen.is_empty() {
        return Err(Failure::bad_input(
            "no experiment with `data.source: api` among the selected ones",
        ));
    }
    Ok(report)
}
