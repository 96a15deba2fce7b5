//! Continuations: a finished training's final resumable state (`HFT-RSUM`: weights,
//! optimizer state, best epoch, early stopping, the cursor after its last epoch), kept so
//! that the same training with more epochs continues from it instead of from epoch 0.
//!
//! A continuation is found by a *prefix key*: the train key's parts (stage name and
//! version, its config, its input digests) with `training.epochs` left out of the config,
//! and the epochs it ran to (`builds/continuation-<prefix>-<epochs>.json`, a
//! [`PinKind::Continuation`] record naming the state's blob and the training's key, with
//! which gc keeps or collects it). A training of `E` epochs continues from the one of the
//! most epochs below `E` whose steps all had the rates they have at `E`
//! ([`crate::train::may_continue`]): the result is the fresh `E`-epoch training's, bit for
//! bit, checkpoint and log alike. Audits (no key) never continue and keep nothing.

use serde::{Deserialize, Serialize};

use super::Stage;
use super::train::Train;
use crate::config::{Experiment, canonical_json};
use crate::data::Dataset;
use crate::graph::key::key_from_parts;
use crate::store::{ActionRecord, Digest, PinKind, StageKey, Store};

/// The body of a continuation record.
#[derive(Serialize, Deserialize)]
struct Record {
    /// The stage key of the training that wrote it (gc keeps it while that key lives).
    key: String,
    /// `training.epochs` of that training.
    epochs: usize,
    /// The epochs it ran (fewer when early stopping ended it) and its optimizer steps.
    last_epoch: usize,
    step: usize,
    /// The `HFT-RSUM` blob.
    digest: String,
}

/// A shorter training's final state to continue from.
pub struct Found {
    /// Its `training.epochs`, and the epochs it ran.
    pub epochs: usize,
    pub last_epoch: usize,
    pub bytes: Vec<u8>,
}

/// Whether a training of `e` keeps and looks for continuations: not with `max_steps`,
/// which makes its length independent of `training.epochs`.
pub fn applies(e: &Experiment) -> bool {
    e.training.max_steps.is_none()
}

/// The key of everything `train`'s key holds but `training.epochs`.
pub fn prefix_key(train: &Train, e: &Experiment, deps: &[&ActionRecord]) -> StageKey {
    let mut config = train.config(e);
    if let Some(training) = config
        .get_mut("training")
        .and_then(serde_json::Value::as_object_mut)
    {
        training.remove("epochs");
    }
    let name = format!("{} without epochs", train.name());
    key_from_parts(
        &name,
        train.version(e),
        &canonical_json(&config),
        &train.key_inputs(deps),
    )
}

/// The continuation of the most epochs below `e`'s that a training of `e` may continue
/// from, with its blob verified; `None` when there is none.
pub fn find(store: &Store, prefix: &StageKey, e: &Experiment, data: &Dataset) -> Option<Found> {
    let ids = store
        .pin_record_ids(PinKind::Continuation, &format!("{prefix}-"))
        .ok()?;
    let mut records: Vec<(String, Record)> = ids
        .into_iter()
        .filter_map(|id| {
            let record = store.get_pin_record::<Record>(PinKind::Continuation, &id)?;
            Some((id, record))
        })
        .filter(|(id, r)| {
            // The name says the epochs; a body that says otherwise is not used.
            id.rsplit_once('-').map(|(_, n)| n) == Some(r.epochs.to_string().as_str())
                && r.epochs < e.training.epochs
                && r.last_epoch <= r.epochs
        })
        .collect();
    records.sort_by_key(|(_, r)| std::cmp::Reverse(r.epochs));
    records.into_iter().find_map(|(_, r)| {
        if !crate::train::may_continue(data, e.optimizer.lr, &e.training, r.step) {
            return None;
        }
        let bytes = store.get_blob(&Digest::from_hex(&r.digest)?)?;
        Some(Found {
            epochs: r.epochs,
            last_epoch: r.last_epoch,
            bytes,
        })
    })
}

/// Keeps the final state `bytes` of the training under `key` (of `epochs` epochs, which ran
/// `last_epoch` epochs and `step` steps) as the continuation of its prefix key. A failure
/// costs only a later continuation: the training's outputs do not depend on it.
pub fn keep(
    store: &Store,
    prefix: &StageKey,
    key: &StageKey,
    (epochs, last_epoch, step): (usize, usize, usize),
    bytes: &[u8],
) -> std::io::Result<()> {
    let blob = store.put_blob(bytes)?;
    let record = Record {
        key: key.0.clone(),
        epochs,
        last_epoch,
        step,
        digest: blob.digest.to_hex(),
    };
    store.put_pin_record(
        PinKind::Continuation,
        &format!("{prefix}-{epochs}"),
        &record,
    )
}
