//! The status memo: `hft status` of a project where every stage is up to date, answered
//! without planning, reading 30,000 action records or checking their seals.
//!
//! A status that found every stage cached (no warning, no damaged record) writes
//! `memo/<invocation>.json` (the no-op memo's name with `status` added): every file and
//! folder its answer depends on, as the no-op memo watches them, plus each action record
//! it read with its full stat fingerprint (an edit that keeps the size changes its ctime),
//! each blob's size, and the lines it printed. The next status stats those paths; if all
//! are unchanged it prints the lines. Anything else takes the normal path.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::text::{experiment_lines, status_lines};
use crate::graph::exec::{ExperimentReport, StageState};
use crate::graph::memo::{self, Watched};
use crate::store::{StageKey, Store};

const VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
pub struct StatusMemo {
    version: u32,
    /// Watched paths (the selection, templates, data files and folders, action records)
    /// with their fingerprints.
    watched: Watched,
    /// Blobs (relative to the store root) and their sizes.
    blobs: Vec<(String, u64)>,
    /// The action records among `watched` (their keys), to refresh gc's order of use.
    records: Vec<String>,
    /// Per experiment: (its lines, with -v, with -q).
    pub experiments: Vec<(Vec<String>, Vec<String>, Vec<String>)>,
    /// Lines after the experiments (each search's line).
    pub notes: Vec<String>,
    /// Stages, all up to date.
    pub stages: usize,
}

/// The memo's id for a status of `parts` (the no-op memo's invocation parts).
pub fn id(parts: &[String]) -> String {
    let mut parts = parts.to_vec();
    parts.push(format!("status-memo={VERSION}"));
    memo::invocation_id(&parts)
}

fn path(store: &Store, id: &str) -> PathBuf {
    store.root().join("memo").join(format!("{id}.json"))
}

/// The memo, if every watched path and blob is as it was. A hit counts as a use of each
/// record for gc (as a status's read does): a record last used over an hour ago is touched,
/// which leaves this memo stale, so the next status plans in full and writes it again.
pub fn check(store: &Store, id: &str) -> Option<StatusMemo> {
    let bytes = std::fs::read(path(store, id)).ok()?;
    let m: StatusMemo = serde_json::from_slice(&bytes).ok()?;
    if m.version != VERSION {
        return None;
    }
    if !memo::unchanged(store, &m.watched, &m.blobs) {
        return None;
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_nanos() as i128;
    let every = crate::store::TOUCH_EVERY.as_nanos() as i128;
    let records: std::collections::BTreeSet<PathBuf> = m
        .records
        .iter()
        .map(|k| store.action_path(&StageKey(k.clone())))
        .collect();
    for (p, fp) in &m.watched {
        if let Some(fp) = fp
            && now - fp.mtime_ns >= every
            && records.contains(p)
            && let Some(key) = p.file_stem().and_then(|s| s.to_str())
        {
            store.touch_action(&StageKey(key.to_string()));
        }
    }
    Some(m)
}

/// Writes the memo of a status that found every stage of `reports` up to date; `watched`
/// is what its answer read besides the store. Nothing when a stage is not cached or a
/// fingerprint is too recent to trust (see [`memo::is_racy`]).
pub fn save(
    store: &Store,
    id: &str,
    reports: &[ExperimentReport],
    mut watched: Watched,
    notes: Vec<String>,
    started_ns: i128,
) {
    let all_cached = reports.iter().all(|r| {
        r.stages
            .iter()
            .all(|s| matches!(s.state, StageState::Cached) && s.record.is_some())
    });
    if !all_cached || memo::is_racy(&watched, started_ns) {
        memo::forget(store, id);
        return;
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut blobs = Vec::new();
    let mut records = Vec::new();
    for s in reports.iter().flat_map(|r| &r.stages) {
        let Some(record) = &s.record else { continue };
        if !seen.insert(record.key.0.clone()) {
            continue;
        }
        let action = store.action_path(&record.key);
        watched.push((action.clone(), memo::fingerprint(&action)));
        records.push(record.key.0.clone());
        for out in record.outputs.values() {
            if let Ok(rel) = store.blob_path(&out.digest).strip_prefix(store.root()) {
                blobs.push((rel.display().to_string(), out.size));
            }
        }
    }
    blobs.sort();
    blobs.dedup();
    let m = StatusMemo {
        version: VERSION,
        watched,
        blobs,
        records,
        experiments: reports
            .iter()
            .map(|r| {
                (
                    status_lines(r, false),
                    status_lines(r, true),
                    experiment_lines(r, true, true),
                )
            })
            .collect(),
        notes,
        stages: reports.iter().map(|r| r.stages.len()).sum(),
    };
    let written = std::fs::create_dir_all(store.root().join("memo")).and_then(|_| {
        let bytes = serde_json::to_vec(&m).map_err(std::io::Error::other)?;
        store.write_atomic(&path(store, id), &bytes, false)
    });
    if written.is_err() {
        memo::forget(store, id);
    }
}

/// A status answered from its memo.
#[derive(Debug)]
pub struct StatusUnchanged {
    pub memo: StatusMemo,
    pub secs: f64,
}

impl StatusUnchanged {
    pub fn new(memo: StatusMemo, started: Instant) -> StatusUnchanged {
        StatusUnchanged {
            memo,
            secs: started.elapsed().as_secs_f64(),
        }
    }
}
