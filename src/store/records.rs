//! Build records under `builds/`: small JSON documents kept by name beside the store proper
//! (what an experiment's last build saw, a resumable checkpoint, a finished training's
//! continuation, an API snapshot, an audit's divergent outputs, a features memo).
//!
//! Most records are opaque to the store, stored and read by the name their writer gives
//! them. The kinds that keep blobs alive are typed here ([`PinKind`]): the store knows
//! their names and which digests they pin, so that gc asks it for [`Pin`]s instead of
//! parsing file names and bodies itself. The typed layer writes the very names and bodies
//! the string layer does, so caches written before it read the same.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::scan::read_dir;
use super::{Digest, Store, is_stage_key};

impl Store {
    fn build_record_path(&self, id: &str) -> PathBuf {
        self.root.join("builds").join(format!("{id}.json"))
    }

    /// Reads a small JSON document stored by name under `builds/`.
    pub fn get_build_record<T: serde::de::DeserializeOwned>(&self, id: &str) -> Option<T> {
        let bytes = fs::read(self.build_record_path(id)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Removes a build record; a missing one is not an error.
    pub fn remove_build_record(&self, id: &str) {
        let _ = fs::remove_file(self.build_record_path(id));
    }

    pub fn put_build_record<T: Serialize>(&self, id: &str, value: &T) -> io::Result<()> {
        let bytes = serde_json::to_vec_pretty(value).map_err(io::Error::other)?;
        self.write_atomic(&self.build_record_path(id), &bytes, false)
    }

    /// [`Store::get_build_record`] of the `kind` record named `id`.
    pub fn get_pin_record<T: serde::de::DeserializeOwned>(
        &self,
        kind: PinKind,
        id: &str,
    ) -> Option<T> {
        self.get_build_record(&kind.record_id(id))
    }

    /// [`Store::put_build_record`] of the `kind` record named `id`. Its body must hold the
    /// digests in the shape [`PinKind::pinned_digests`] reads.
    pub fn put_pin_record<T: Serialize>(
        &self,
        kind: PinKind,
        id: &str,
        value: &T,
    ) -> io::Result<()> {
        self.put_build_record(&kind.record_id(id), value)
    }

    /// [`Store::remove_build_record`] of the `kind` record named `id`: its blobs are no
    /// longer pinned.
    pub fn remove_pin_record(&self, kind: PinKind, id: &str) {
        self.remove_build_record(&kind.record_id(id))
    }

    /// The ids of the `kind` records whose id starts with `prefix`, sorted.
    pub fn pin_record_ids(&self, kind: PinKind, prefix: &str) -> io::Result<Vec<String>> {
        let names = kind.record_id(prefix);
        Ok(self
            .build_record_ids()?
            .into_iter()
            .filter(|name| name.starts_with(&names))
            .filter_map(|name| {
                let (k, id) = PinKind::of_record(&name)?;
                (k == kind && kind.accepts(id)).then(|| id.to_string())
            })
            .collect())
    }

    /// The names of every build record (`builds/<id>.json` -> `<id>`), sorted.
    pub fn build_record_ids(&self) -> io::Result<Vec<String>> {
        Ok(read_dir(&self.root.join("builds"))?
            .iter()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.strip_suffix(".json").map(str::to_string)
            })
            .collect())
    }

    /// Every readable record that pins blobs, in name order. A record that cannot be read
    /// pins nothing (its writers ignore it too); one whose body does not parse is listed
    /// with no digests.
    pub fn pins(&self) -> io::Result<Vec<PinFile>> {
        let mut pins = Vec::new();
        for file in read_dir(&self.root.join("builds"))? {
            let name = file.file_name().to_string_lossy().into_owned();
            let Some((kind, id)) = name
                .strip_suffix(".json")
                .and_then(PinKind::of_record)
                .filter(|(kind, id)| kind.accepts(id))
            else {
                continue;
            };
            let path = file.path();
            let Ok(bytes) = fs::read(&path) else {
                continue;
            };
            let meta = file.metadata().ok();
            pins.push(PinFile {
                pin: Pin {
                    kind,
                    id: id.to_string(),
                    digests: kind.pinned_digests(&bytes),
                    owner: kind.owner(id, &bytes),
                },
                path,
                size: meta.as_ref().map(|m| m.len()).unwrap_or(0),
                mtime: meta.and_then(|m| m.modified().ok()).unwrap_or(UNIX_EPOCH),
            });
        }
        Ok(pins)
    }
}

/// The kinds of build record that keep blobs alive, each under its own name prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PinKind {
    /// `partial-<stage key>`: a resumable training checkpoint, `{"digest": <hex>, ..}`.
    Checkpoint,
    /// `snapshot-<request>`: a recorded API response (data, not derived),
    /// `{"digest": <hex>, ..}`.
    Snapshot,
    /// `audit-<stage key>`: the differing outputs re-executions of a key produced,
    /// `{<output>: [<hex>, ..]}`.
    Audit,
    /// `continuation-<prefix key>-<epochs>`: the final resumable state of a finished
    /// training, found by the key of everything it read but its epochs, from which the same
    /// training with more epochs continues; `{"key": <its stage key>, "digest": <hex>, ..}`.
    Continuation,
}

impl PinKind {
    pub const ALL: [PinKind; 4] = [
        PinKind::Checkpoint,
        PinKind::Snapshot,
        PinKind::Audit,
        PinKind::Continuation,
    ];

    /// The name prefix of its records (before the `-`).
    pub fn prefix(self) -> &'static str {
        match self {
            PinKind::Checkpoint => "partial",
            PinKind::Snapshot => "snapshot",
            PinKind::Audit => "audit",
            PinKind::Continuation => "continuation",
        }
    }

    /// The build record name of its record `id`: `partial-k1-…`, `audit-k1-…`.
    pub fn record_id(self, id: &str) -> String {
        format!("{}-{id}", self.prefix())
    }

    /// The kind and id of a build record name, by its prefix alone.
    pub fn of_record(record_id: &str) -> Option<(PinKind, &str)> {
        PinKind::ALL.into_iter().find_map(|kind| {
            record_id
                .strip_prefix(kind.prefix())
                .and_then(|rest| rest.strip_prefix('-'))
                .map(|id| (kind, id))
        })
    }

    /// Whether `id` is a name this kind's writers give: checkpoints and audits belong to
    /// a well-formed stage key, continuations to a prefix key (of the same form) and a
    /// number of epochs; snapshots are named by their request.
    pub fn accepts(self, id: &str) -> bool {
        match self {
            PinKind::Checkpoint | PinKind::Audit => is_stage_key(id),
            PinKind::Continuation => id.rsplit_once('-').is_some_and(|(prefix, epochs)| {
                is_stage_key(prefix)
                    && !epochs.is_empty()
                    && epochs.bytes().all(|b| b.is_ascii_digit())
            }),
            PinKind::Snapshot => true,
        }
    }

    /// The stage key whose cache entry a record belongs to, if any: an audit's is its id,
    /// a continuation's the training that wrote it (its body's `key`; none when the body
    /// does not say). Checkpoints and snapshots live by their record alone.
    pub fn owner(self, id: &str, body: &[u8]) -> Option<String> {
        #[derive(Deserialize)]
        struct Owned {
            key: String,
        }
        match self {
            PinKind::Audit => Some(id.to_string()),
            PinKind::Continuation => serde_json::from_slice::<Owned>(body)
                .ok()
                .map(|o| o.key)
                .filter(|k| is_stage_key(k)),
            PinKind::Checkpoint | PinKind::Snapshot => None,
        }
    }

    /// The blobs a record of this kind pins, read from its JSON body. A body that does not
    /// parse, or digests that are not blake3 hex, pin nothing.
    pub fn pinned_digests(self, body: &[u8]) -> Vec<Digest> {
        /// A checkpoint or snapshot body; only the blob matters here.
        #[derive(Deserialize)]
        struct OneBlob {
            digest: String,
        }
        match self {
            PinKind::Checkpoint | PinKind::Snapshot | PinKind::Continuation => {
                serde_json::from_slice::<OneBlob>(body)
                    .ok()
                    .and_then(|r| Digest::from_hex(&r.digest))
                    .into_iter()
                    .collect()
            }
            PinKind::Audit => serde_json::from_slice::<BTreeMap<String, Vec<String>>>(body)
                .map(|seen| {
                    seen.values()
                        .flatten()
                        .filter_map(|d| Digest::from_hex(d))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

/// One build record that pins blobs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pin {
    pub kind: PinKind,
    /// The record's name without its kind's prefix (a stage key, a request id).
    pub id: String,
    pub digests: Vec<Digest>,
    /// The stage key whose cache entry it belongs to ([`PinKind::owner`]).
    pub owner: Option<String>,
}

/// A [`Pin`] as found on disk.
#[derive(Clone, Debug)]
pub struct PinFile {
    pub pin: Pin,
    pub path: PathBuf,
    pub size: u64,
    pub mtime: SystemTime,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{StageKey, temp_store};

    #[test]
    fn typed_records_keep_the_names_and_bodies_of_the_string_layer() {
        let (dir, store) = temp_store();
        let key = StageKey::compute(&[b"unfinished"]);
        let blob = store.put_blob(b"checkpoint").unwrap();
        let body = serde_json::json!({"step": 4, "digest": blob.digest.to_hex()});
        store
            .put_pin_record(PinKind::Checkpoint, &key.0, &body)
            .unwrap();
        let written = store.get_build_record::<serde_json::Value>(&format!("partial-{key}"));
        assert_eq!(written, Some(body.clone()));
        assert_eq!(
            store.get_pin_record::<serde_json::Value>(PinKind::Checkpoint, &key.0),
            Some(body)
        );
        let audit = serde_json::json!({"weights": [blob.digest.to_hex(), "not hex"]});
        store
            .put_build_record(&format!("audit-{key}"), &audit)
            .unwrap();
        store.put_build_record("snapshot-abc", &"torn").unwrap();
        store.put_build_record("audit-not-a-key", &audit).unwrap();
        store.put_build_record("features-123", &audit).unwrap();
        let pins: Vec<Pin> = store.pins().unwrap().into_iter().map(|p| p.pin).collect();
        assert_eq!(
            pins,
            vec![
                Pin {
                    kind: PinKind::Audit,
                    id: key.0.clone(),
                    digests: vec![blob.digest],
                    owner: Some(key.0.clone()),
                },
                Pin {
                    kind: PinKind::Checkpoint,
                    id: key.0.clone(),
                    digests: vec![blob.digest],
                    owner: None,
                },
                Pin {
                    kind: PinKind::Snapshot,
                    id: "abc".to_string(),
                    digests: vec![],
                    owner: None,
                },
            ]
        );
        assert_eq!(store.build_record_ids().unwrap().len(), 5);
        store.remove_pin_record(PinKind::Checkpoint, &key.0);
        assert_eq!(store.pins().unwrap().len(), 2);
        assert_eq!(
            PinKind::of_record("partial-x"),
            Some((PinKind::Checkpoint, "x"))
        );
        assert_eq!(PinKind::of_record("partialx"), None);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn continuations_are_found_by_prefix_and_belong_to_the_training_that_wrote_them() {
        let (dir, store) = temp_store();
        let prefix = StageKey::compute(&[b"everything but the epochs"]);
        let other = StageKey::compute(&[b"another training"]);
        let trained = StageKey::compute(&[b"the 3-epoch training"]);
        let blob = store.put_blob(b"final state").unwrap();
        let body = serde_json::json!({"key": trained.0, "digest": blob.digest.to_hex()});
        for id in [
            format!("{prefix}-3"),
            format!("{prefix}-12"),
            format!("{other}-3"),
        ] {
            store
                .put_pin_record(PinKind::Continuation, &id, &body)
                .unwrap();
        }
        // Not a name its writers give: neither found nor pinning.
        store
            .put_build_record(&format!("continuation-{prefix}-x"), &body)
            .unwrap();
        assert_eq!(
            store
                .pin_record_ids(PinKind::Continuation, &format!("{prefix}-"))
                .unwrap(),
            vec![format!("{prefix}-12"), format!("{prefix}-3")]
        );
        let pins: Vec<Pin> = store.pins().unwrap().into_iter().map(|p| p.pin).collect();
        assert_eq!(pins.len(), 3);
        assert!(pins.iter().all(|p| p.kind == PinKind::Continuation
            && p.digests == [blob.digest]
            && p.owner.as_deref() == Some(trained.0.as_str())));
        assert_eq!(
            PinKind::Continuation.owner("x", b"{\"key\": \"k1-no\"}"),
            None
        );
        fs::remove_dir_all(dir).unwrap();
    }
}
