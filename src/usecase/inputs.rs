//! The graph's inputs from outside it: each experiment's data files digested (through the
//! persisted stat cache) and fed to salsa, and the recorded snapshot of each API request
//! (fetched on a build's first use). What a plan needs before its keys can be completed.

use std::collections::BTreeMap;

use super::{Failure, Loaded};
use crate::config::ConfigError;
use crate::graph::exec::ExperimentJob;
use crate::graph::{self, DataFile, Database, memo};
use crate::store::{StatCache, Store};
use crate::term;

/// Experiments with their data files fingerprinted (stat cache) and fed to salsa; the data
/// files' fingerprints are added to `watched`. API sources use their recorded snapshot; a
/// request never snapshotted is fetched now when `allow_fetch` (a build), else an error.
pub fn make_jobs<'a>(
    db: &Database,
    store: &Store,
    planned: &'a [Loaded],
    watched: &mut memo::Watched,
    allow_fetch: bool,
) -> Result<Vec<ExperimentJob<'a>>, Failure> {
    let mut errors: Vec<ConfigError> = Vec::new();

    // Data files: digests from the stat cache, fed to salsa as inputs.
    let mut stat_cache = StatCache::load(store);
    if allow_fetch {
        // A build ingests what it hashes now: one read of each new file (`keeping_bytes`).
        stat_cache = stat_cache.keeping_bytes(store);
    }
    let mut jobs_list = Vec::new();
    for Loaded {
        file, parsed, plan, ..
    } in planned
    {
        let mut data_digests = BTreeMap::new();
        let e = &parsed.experiment;
        errors.extend(plan.data_errors.iter().cloned());
        for (i, stage) in plan.stages.iter().enumerate() {
            let graph::StageKind::Ingest { symbol } = &stage.kind else {
                continue;
            };
            let symbol_key = || {
                let index = e.data.symbols.listed().iter().position(|s| s == symbol);
                match index {
                    Some(i) => format!("data.symbols[{i}]"),
                    None => "data.symbols".to_string(),
                }
            };
            if e.data.source == crate::config::SourceKind::Api {
                let req = crate::sources::snapshot::request(e, symbol);
                let record = crate::sources::snapshot::record_path(store, &req);
                let digest = match crate::sources::snapshot::recorded(store, &req) {
                    Some((_, digest)) => Ok(digest),
                    None if allow_fetch => {
                        crate::sources::snapshot::snapshot_for_build(store, e, symbol)
                    }
                    None => Err(format!(
                        "no snapshot of `{symbol}` from the API yet; run `hft fetch` (or `hft \
                         build`, which fetches it once)"
                    )),
                };
                match digest {
                    Ok(digest) => {
                        watched.push((record.clone(), memo::fingerprint(&record)));
                        data_digests.insert(i, vec![digest]);
                    }
                    Err(message) => {
                        let key = symbol_key();
                        errors.push(ConfigError::at(&parsed.locations.find(&key), &key, message));
                    }
                }
                continue;
            }
            let mut digests = Vec::with_capacity(stage.data_files.len());
            for path in &stage.data_files {
                match stat_cache.digest(path) {
                    Ok((digest, fingerprint)) => {
                        watched.push((path.clone(), Some(fingerprint)));
                        let input = DataFile::new(db, path.clone(), digest);
                        digests.push(*input.digest(db));
                    }
                    Err(err) => {
                        let key = symbol_key();
                        let what = match err.kind() {
                            std::io::ErrorKind::NotFound => "does not exist".to_string(),
                            // Already names the path and what is wrong with it.
                            std::io::ErrorKind::InvalidInput => {
                                let message = format!(
                                    "no data file for `{symbol}`: {err} (data.path is `{}`)",
                                    e.data.path
                                );
                                let key = symbol_key();
                                let at = parsed.locations.find(&key);
                                errors.push(ConfigError::at(&at, &key, message));
                                continue;
                            }
                            _ => format!("cannot be read: {err}"),
                        };
                        let message = format!(
                            "no data file for `{symbol}`: {} {what} (data.path is `{}`)",
                            path.display(),
                            e.data.path
                        );
                        errors.push(ConfigError::at(&parsed.locations.find(&key), &key, message));
                    }
                }
            }
            if !stage.data_files.is_empty() {
                data_digests.insert(i, digests);
            }
        }
        jobs_list.push(ExperimentJob {
            file: file.clone(),
            experiment: &parsed.experiment,
            locations: &parsed.locations,
            plan,
            data_digests,
        });
    }
    if let Err(e) = stat_cache.save(store) {
        term::warn(&format!("cannot save the stat cache: {e}"));
    }
    if !errors.is_empty() {
        return Err(Failure::config(&errors));
    }
    Ok(jobs_list)
}
