//! Action records under `actions/`: what executing one stage key produced. A record is
//! only a hit while every blob it names is present; its mtime is its last use.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::{ActionRecord, StageKey, Store};

impl Store {
    /// Where the action record of `key` lives (present or not).
    pub fn action_path(&self, key: &StageKey) -> PathBuf {
        self.root.join("actions").join(format!("{}.json", key.0))
    }

    /// The action record for `key`, if present, parseable, unedited and all its blobs
    /// present.
    pub fn get_action(&self, key: &StageKey) -> Option<ActionRecord> {
        if let Some(record) = self.remembered(key) {
            return Some(record);
        }
        let (bytes, modified) = read_with_mtime(&self.action_path(key)).ok()?;
        let sealed = seal_intact(&bytes);
        if sealed == Some(false) {
            crate::term::warn(&format!(
                "action record {} was changed after it was written (its digest does not \
                 match); treating it as a miss",
                key.short()
            ));
            self.note_damaged();
            return None;
        }
        let parsed = match sealed {
            Some(true) => parse_sealed(&bytes),
            _ => serde_json::from_slice(&bytes).map_err(drop),
        };
        let record: ActionRecord = match parsed {
            Ok(r) => r,
            Err(()) => {
                crate::term::warn(&format!(
                    "action record {} is unreadable; treating as a miss",
                    key.short()
                ));
                return None;
            }
        };
        if record.key != *key {
            return None;
        }
        for (name, out) in &record.outputs {
            if !self.has_blob(out) {
                // Read-only commands see this too: say what is wrong, not what happens next.
                let state = match fs::metadata(self.blob_path(&out.digest)) {
                    Ok(m) => format!("damaged in the store ({} of {} bytes)", m.len(), out.size),
                    Err(_) => "missing from the store".to_string(),
                };
                crate::term::warn(&format!(
                    "output `{name}` of {} ({}) is {state}; `hft build` rebuilds it",
                    record.stage,
                    key.short()
                ));
                self.note_damaged();
                return None;
            }
        }
        // A record used within the last TOUCH_EVERY keeps its mtime: gc's order among
        // those does not matter, and 10,000 experiments' status would pay an open and a
        // utimes per record on every run.
        let recent = modified
            .and_then(|m| SystemTime::now().duration_since(m).ok())
            .is_some_and(|age| age < TOUCH_EVERY);
        if !recent {
            self.touch_action(key);
        }
        self.remember(key, Some((&record, bytes.len() as u64)));
        Some(record)
    }

    fn remembered(&self, key: &StageKey) -> Option<ActionRecord> {
        let hits = self.hits.as_ref()?;
        let hits = hits.lock().unwrap_or_else(|p| p.into_inner());
        hits.get(key).map(|(record, _)| record.clone())
    }

    /// The size of `key`'s record file as this handle read it on a hit (see
    /// [`Store::remembering_hits`]), or as it is now.
    pub fn action_size(&self, key: &StageKey) -> Option<u64> {
        if let Some(hits) = &self.hits {
            let hits = hits.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((_, size)) = hits.get(key) {
                return Some(*size);
            }
        }
        fs::metadata(self.action_path(key)).ok().map(|m| m.len())
    }

    /// Keeps (or, with `None`, drops) the remembered record of `key`.
    fn remember(&self, key: &StageKey, record: Option<(&ActionRecord, u64)>) {
        let Some(hits) = &self.hits else { return };
        let mut hits = hits.lock().unwrap_or_else(|p| p.into_inner());
        match record {
            Some((r, size)) => hits.insert(key.clone(), (r.clone(), size)),
            None => hits.remove(key),
        };
    }

    /// Marks an action record as just used: its mtime is what `gc --max-size` evicts by
    /// (to within [`TOUCH_EVERY`] on a hit).
    /// One open and one utimes, no fsync; a failure (a read-only shared cache) only makes
    /// the entry look older.
    pub fn touch_action(&self, key: &StageKey) {
        let _ = OpenOptions::new()
            .write(true)
            .open(self.action_path(key))
            .and_then(|f| f.set_modified(SystemTime::now()));
    }

    /// Writes `record`, sealed with the digest of its bytes (see [`seal_intact`]).
    pub fn put_action(&self, record: &ActionRecord) -> io::Result<()> {
        self.remember(&record.key, None);
        let bytes = sealed_bytes(record)?;
        self.write_atomic(&self.action_path(&record.key), &bytes, false)
    }

    /// Removes an action record (used when one of its blobs turned out to be corrupt).
    pub fn forget_action(&self, key: &StageKey) {
        self.remember(key, None);
        let _ = fs::remove_file(self.action_path(key));
    }
}

/// How stale a record's last-use time may get before a hit refreshes it.
pub const TOUCH_EVERY: Duration = Duration::from_secs(3600);

/// A file's bytes and mtime, from one open (the mtime from the same `statx` that sizes
/// the read).
fn read_with_mtime(path: &Path) -> io::Result<(Vec<u8>, Option<SystemTime>)> {
    let mut file = File::open(path)?;
    let meta = file.metadata()?;
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.read_to_end(&mut bytes)?;
    Ok((bytes, meta.modified().ok()))
}

/// What precedes the seal in a record file: the last field of the pretty-printed object.
const SEAL_FIELD: &str = ",\n  \"digest\": \"";

/// The record's file: its pretty JSON without `digest`, then `digest`, the blake3 of those
/// bytes, as the last field. The digest is of bytes, not of parsed values, because a parsed
/// float may differ from the written one in its last bit.
fn sealed_bytes(record: &ActionRecord) -> io::Result<Vec<u8>> {
    let unsealed = ActionRecord {
        digest: None,
        ..record.clone()
    };
    let mut bytes = serde_json::to_vec_pretty(&unsealed).map_err(io::Error::other)?;
    if !bytes.ends_with(b"\n}") {
        return Err(io::Error::other("an action record is not a JSON object"));
    }
    let digest = super::Digest::of(&bytes).to_hex();
    bytes.truncate(bytes.len() - 2);
    bytes.extend_from_slice(format!("{SEAL_FIELD}{digest}\"\n}}").as_bytes());
    Ok(bytes)
}

/// Where a sealed record's `summary` starts and what follows it: [`sealed_bytes`] writes the
/// fields in declaration order, pretty-printed, so these two lines (two spaces in, newlines
/// never inside a JSON string) bound the summary's text and nothing else.
const SUMMARY_FIELD: &str = "\n  \"summary\": ";
const AFTER_SUMMARY: &str = ",\n  \"hft_version\": ";

/// A sealed record with its summary left as text (parsed on first use, see
/// [`super::Summary`]): the rest of the record parses with `null` in its place.
fn parse_sealed(bytes: &[u8]) -> Result<ActionRecord, ()> {
    let text = std::str::from_utf8(bytes).map_err(drop)?;
    // `summary` follows the outputs; `hft_version` and three short fields end the record.
    let bounds = text.find(SUMMARY_FIELD).and_then(|at| {
        let start = at + SUMMARY_FIELD.len();
        text.rfind(AFTER_SUMMARY)
            .filter(|&end| end >= start)
            .map(|end| (start, end))
    });
    let Some((start, end)) = bounds else {
        return serde_json::from_slice(bytes).map_err(drop);
    };
    let rest = [&text[..start], "null", &text[end..]].concat();
    let mut record: ActionRecord = serde_json::from_str(&rest).map_err(drop)?;
    record.summary = super::Summary::from_json_text(&text[start..end]);
    Ok(record)
}

/// Whether a record file is as [`sealed_bytes`] wrote it: `None` when it has no seal
/// (written before records were sealed, or the seal itself was removed).
pub(crate) fn seal_intact(bytes: &[u8]) -> Option<bool> {
    let text = std::str::from_utf8(bytes).ok()?;
    let at = text.rfind(SEAL_FIELD)?;
    let digest = text[at + SEAL_FIELD.len()..].strip_suffix("\"\n}")?;
    // The unsealed bytes are the text before the seal, then "\n}": hashed in place.
    let mut unsealed = blake3::Hasher::new();
    unsealed.update(&bytes[..at]).update(b"\n}");
    Some(unsealed.finalize().to_hex().as_str() == digest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::temp_store;
    use std::collections::BTreeMap;

    #[test]
    fn a_record_is_sealed_and_an_edit_breaks_the_seal() {
        let (_dir, store) = temp_store();
        let key = StageKey::compute(&[b"sealed"]);
        let record = ActionRecord {
            key: key.clone(),
            stage: "evaluate".into(),
            outputs: BTreeMap::new(),
            // A float whose parse may differ in its last bit: the seal is over bytes.
            summary: serde_json::json!({"sharpe": 0.1 + 0.2, "n": 3}).into(),
            hft_version: "0".into(),
            wall_ms: 1,
            created: 0,
            digest: None,
        };
        store.put_action(&record).unwrap();
        let bytes = fs::read(store.action_path(&key)).unwrap();
        assert_eq!(seal_intact(&bytes), Some(true));
        // The summary is kept as text until asked for, and is then the value written.
        let eager: ActionRecord = serde_json::from_slice(&bytes).unwrap();
        let lazy = store.get_action(&key).unwrap();
        assert_eq!(lazy, eager);
        assert_eq!(lazy.summary["n"], 3);
        assert_eq!(
            sealed_bytes(&lazy).unwrap(),
            bytes,
            "written back byte for byte"
        );
        let edited = String::from_utf8(bytes.clone())
            .unwrap()
            .replace("\"n\": 3", "\"n\": 4");
        assert_eq!(seal_intact(edited.as_bytes()), Some(false));
        fs::write(store.action_path(&key), &edited).unwrap();
        assert!(
            store.get_action(&key).is_none(),
            "an edited record is a miss"
        );
        assert_eq!(store.damaged_records(), 1);
        // A record from before seals: accepted as it is.
        let unsealed = serde_json::to_vec_pretty(&record).unwrap();
        assert_eq!(seal_intact(&unsealed), None);
        fs::write(store.action_path(&key), &unsealed).unwrap();
        assert!(store.get_action(&key).is_some());
    }

    #[test]
    fn a_cache_hit_marks_the_action_record_used() {
        let (dir, store) = temp_store();
        let out = store.put_blob(b"out").unwrap();
        let key = StageKey::compute(&[b"touch"]);
        store
            .put_action(&ActionRecord {
                key: key.clone(),
                stage: "features".to_string(),
                outputs: BTreeMap::from([("bars".to_string(), out)]),
                summary: serde_json::Value::Null.into(),
                hft_version: "test".to_string(),
                wall_ms: 0,
                created: 0,
                digest: None,
            })
            .unwrap();
        let path = store.action_path(&key);
        let old = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(old)
            .unwrap();
        assert!(store.get_action(&key).is_some());
        let used = fs::metadata(&path).unwrap().modified().unwrap();
        assert!(used > old + Duration::from_secs(3600), "{used:?}");
        // Used a minute ago: a hit leaves the mtime as it is (no write per status).
        let recent = SystemTime::now() - Duration::from_secs(60);
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(recent)
            .unwrap();
        assert!(store.get_action(&key).is_some());
        assert_eq!(fs::metadata(&path).unwrap().modified().unwrap(), recent);
        fs::remove_dir_all(dir).unwrap();
    }
}
