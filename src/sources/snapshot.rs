//! API sources (`data.source: api`): provider responses snapshotted into the store.
//!
//! A snapshot is the canonical CSV of one request's bars (`sources::api::fetch`), stored as a
//! blob, plus a record `builds/snapshot-<request>.json` naming it. The request id hashes
//! what decides the response (provider, base URL, symbol, interval, start, end), never
//! credentials or timeouts. The snapshot's digest is the ingest stage's input, so:
//!
//! - a build uses the recorded snapshot and never goes to the network when one exists
//!   (offline rebuilds, bit-identical results);
//! - the first build of a request fetches it once;
//! - `hft fetch` fetches again and replaces the record: if the provider's bars changed,
//!   the snapshot digest changes and ingest and everything after it re-run.
//!
//! gc keeps snapshot blobs while their record exists: they are data, not derived.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::Experiment;
use crate::sources::api::{self, ApiRequest};
use crate::store::{Digest, PinKind, Store, now_unix};

/// `builds/snapshot-<id>.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotRecord {
    /// The snapshot blob (canonical CSV).
    pub digest: String,
    pub symbol: String,
    /// The first request's URL, without credentials.
    pub url: String,
    pub rows: usize,
    pub pages: usize,
    /// Unix seconds.
    pub fetched_at: u64,
}

/// The request `e` makes for `symbol`.
pub fn request(e: &Experiment, symbol: &str) -> ApiRequest {
    let d = &e.data;
    let date = |s: &Option<String>| {
        s.as_deref()
            .and_then(|s| chrono::NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").ok())
    };
    ApiRequest {
        provider: d.api.provider,
        base_url: d.api.base_url().trim_end_matches('/').to_string(),
        symbol: symbol.to_string(),
        start: date(&d.start),
        end: date(&d.end),
        interval: d.api.interval.trim().to_string(),
        timeout: Duration::from_secs_f64(d.api.timeout_secs),
        retries: d.api.retries,
        backoff: Duration::from_millis(500),
    }
}

/// The record name of a request: what decides its response, and nothing else.
pub fn record_id(req: &ApiRequest) -> String {
    let text = format!(
        "snapshot v1\0{:?}\0{}\0{}\0{}\0{:?}\0{:?}",
        req.provider, req.base_url, req.symbol, req.interval, req.start, req.end
    );
    PinKind::Snapshot.record_id(&Digest::of(text.as_bytes()).short())
}

/// The path of a request's record (the no-op memo watches it: `hft fetch` rewrites it).
pub fn record_path(store: &Store, req: &ApiRequest) -> std::path::PathBuf {
    store
        .root()
        .join("builds")
        .join(format!("{}.json", record_id(req)))
}

/// The recorded snapshot of a request, if its record and blob are both there.
pub fn recorded(store: &Store, req: &ApiRequest) -> Option<(SnapshotRecord, Digest)> {
    let record: SnapshotRecord = store.get_build_record(&record_id(req))?;
    let digest = Digest::from_hex(&record.digest)?;
    store
        .blob_path(&digest)
        .is_file()
        .then_some((record, digest))
}

/// For a build: the recorded snapshot's digest, or (first use) a fresh fetch.
pub fn snapshot_for_build(store: &Store, e: &Experiment, symbol: &str) -> Result<Digest, String> {
    let req = request(e, symbol);
    if let Some((_, digest)) = recorded(store, &req) {
        return Ok(digest);
    }
    refresh(store, &req)
        .map(|(record, _)| record)
        .and_then(|r| Digest::from_hex(&r.digest).ok_or_else(|| "bad snapshot digest".to_string()))
}

/// Fetches `req` now and records the snapshot. Returns the record and whether the bars
/// differ from the snapshot recorded before (`true` when there was none).
pub fn refresh(store: &Store, req: &ApiRequest) -> Result<(SnapshotRecord, bool), String> {
    let env = |name: &str| std::env::var(name).ok();
    let snapshot = api::fetch(req, &env).map_err(|e| e.to_string())?;
    let before = recorded(store, req).map(|(_, d)| d);
    let blob = store.put_blob(&snapshot.csv).map_err(|e| {
        format!(
            "cannot store the snapshot of {} in {}: {e}",
            req.symbol,
            store.root().display()
        )
    })?;
    let record = SnapshotRecord {
        digest: blob.digest.to_hex(),
        symbol: req.symbol.clone(),
        url: snapshot.url,
        rows: snapshot.rows,
        pages: snapshot.pages,
        fetched_at: now_unix(),
    };
    store
        .put_build_record(&record_id(req), &record)
        .map_err(|e| {
            format!(
                "cannot record the snapshot of {} in {}: {e}",
                req.symbol,
                store.root().display()
            )
        })?;
    Ok((record, before != Some(blob.digest)))
}
