//! Action records under `actions/`: what executing one stage key produced. A record is
//! only a hit while every blob it names is present; its mtime is its last use.

use std::fs::{self, OpenOptions};
use std::io;
use std::path::PathBuf;
use std::time::SystemTime;

use super::{ActionRecord, StageKey, Store};

impl Store {
    /// Where the action record of `key` lives (present or not).
    pub fn action_path(&self, key: &StageKey) -> PathBuf {
        self.root.join("actions").join(format!("{}.json", key.0))
    }

    /// The action record for `key`, if present, parseable and all its blobs present.
    pub fn get_action(&self, key: &StageKey) -> Option<ActionRecord> {
        let bytes = fs::read(self.action_path(key)).ok()?;
        let record: ActionRecord = match serde_json::from_slice(&bytes) {
            Ok(r) => r,
            Err(_) => {
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
                crate::term::warn(&format!(
                    "output `{name}` of {} ({}) is missing from the store; rebuilding",
                    record.stage,
                    key.short()
                ));
                return None;
            }
        }
        self.touch_action(key);
        Some(record)
    }

    /// Marks an action record as just used: its mtime is what `gc --max-size` evicts by.
    /// One open and one utimes, no fsync; a failure (a read-only shared cache) only makes
    /// the entry look older.
    pub fn touch_action(&self, key: &StageKey) {
        let _ = OpenOptions::new()
            .write(true)
            .open(self.action_path(key))
            .and_then(|f| f.set_modified(SystemTime::now()));
    }

    pub fn put_action(&self, record: &ActionRecord) -> io::Result<()> {
        let bytes = serde_json::to_vec_pretty(record).map_err(io::Error::other)?;
        self.write_atomic(&self.action_path(&record.key), &bytes, false)
    }

    /// Removes an action record (used when one of its blobs turned out to be corrupt).
    pub fn forget_action(&self, key: &StageKey) {
        let _ = fs::remove_file(self.action_path(key));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::temp_store;
    use std::collections::BTreeMap;
    use std::fs::File;
    use std::time::Duration;

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
                summary: serde_json::Value::Null,
                hft_version: "test".to_string(),
                wall_ms: 0,
                created: 0,
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
        fs::remove_dir_all(dir).unwrap();
    }
}
