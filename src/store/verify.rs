//! `hft cache verify`: re-hashes every blob and checks every action record against the
//! blobs it names. It reads only, so it may run beside builds.

use std::collections::BTreeMap;
use std::fs;
use std::io;

use rayon::prelude::*;
use serde::Serialize;

use super::scan::BlobFile;
use super::{Digest, Store, hash_file};

#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyReport {
    pub blobs_checked: usize,
    pub blob_bytes_checked: u64,
    pub actions_checked: usize,
    /// Blobs whose bytes do not hash to their name (or that cannot be read).
    pub corrupt_blobs: usize,
    /// Action record outputs whose blob is absent.
    pub missing_blobs: usize,
    /// Action record outputs whose blob has another size than recorded.
    pub size_mismatches: usize,
    /// Action records that do not parse or whose key is not their file name.
    pub bad_actions: usize,
    /// Action records changed after they were written (their digest does not match).
    pub edited_actions: usize,
    /// Files under `objects/` or `actions/` whose names the store never writes.
    pub stray_files: usize,
    /// Problems, one line each, naming the file (`corrupt blob /…/objects/1a/2b…: …`).
    pub problems: Vec<String>,
}

impl VerifyReport {
    /// Nothing corrupt, missing, mismatched, unreadable or stray.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Re-hashes every blob (in parallel) and checks every action record against the blobs it
/// names. Changes nothing, so it may run beside builds.
pub fn verify(store: &Store) -> io::Result<VerifyReport> {
    let blobs = store.scan_blobs()?;
    let actions = store.scan_actions()?;
    let mut report = VerifyReport {
        blobs_checked: blobs.files.len(),
        blob_bytes_checked: blobs.files.values().map(|b| b.size).sum(),
        actions_checked: actions.files.len(),
        stray_files: blobs.strays.len() + actions.strays.len(),
        ..VerifyReport::default()
    };
    for path in blobs.strays.iter().chain(&actions.strays) {
        report.problems.push(format!(
            "stray file {}: not a name the store writes",
            path.display()
        ));
    }

    // Who uses each blob, to say what a corruption breaks.
    let mut users: BTreeMap<Digest, String> = BTreeMap::new();
    for (key, action) in &actions.files {
        let record = match &action.record {
            Ok(record) => record,
            Err(e) => {
                report.bad_actions += 1;
                report.problems.push(format!(
                    "unreadable action record {}: {e}",
                    action.path.display()
                ));
                continue;
            }
        };
        if record.key.0 != *key {
            report.bad_actions += 1;
            report.problems.push(format!(
                "action record {} holds the record of another key ({})",
                action.path.display(),
                record.key
            ));
            continue;
        }
        if action.sealed == Some(false) {
            report.edited_actions += 1;
            report.problems.push(format!(
                "action record {} was changed after it was written (its digest does not match \
                 its content): builds treat it as a miss; `hft gc` or a rebuild replaces it",
                action.path.display()
            ));
        }
        for (name, out) in &record.outputs {
            users
                .entry(out.digest)
                .or_insert_with(|| format!("output `{name}` of {} {}", record.stage, key));
            let path = store.blob_path(&out.digest);
            // Looked up now rather than in the scan: a concurrent build may have written
            // this record's blobs after the scan listed objects/.
            match fs::metadata(&path) {
                Ok(meta) if meta.len() == out.size => {}
                Ok(meta) => {
                    report.size_mismatches += 1;
                    report.problems.push(format!(
                        "blob {} has size {}, but action record {} records {} for output \
                         `{name}` of {}",
                        path.display(),
                        meta.len(),
                        action.path.display(),
                        out.size,
                        record.stage
                    ));
                }
                Err(_) => {
                    report.missing_blobs += 1;
                    report.problems.push(format!(
                        "missing blob {}: output `{name}` of {} in action record {}",
                        path.display(),
                        record.stage,
                        action.path.display()
                    ));
                }
            }
        }
    }

    // Blobs kept by build records (resumable checkpoints, continuations, snapshots, audits).
    for file in store.pins()? {
        for digest in &file.pin.digests {
            users.entry(*digest).or_insert_with(|| {
                format!("the blob of {}-{}", file.pin.kind.prefix(), file.pin.id)
            });
        }
    }

    let corrupt: Vec<(&Digest, &BlobFile, String)> = blobs
        .files
        .par_iter()
        .filter_map(|(digest, blob)| match hash_file(&blob.path) {
            Ok(actual) if actual == *digest => None,
            Ok(actual) => Some((
                digest,
                blob,
                format!("its bytes hash to {}", actual.short()),
            )),
            // Removed since the scan (a build discarding a corrupt blob): nothing to check.
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => Some((digest, blob, format!("cannot read it: {e}"))),
        })
        .collect();
    for (digest, blob, why) in corrupt {
        report.corrupt_blobs += 1;
        let used = users
            .get(digest)
            .map(|u| format!(" (used as {u})"))
            .unwrap_or_default();
        report
            .problems
            .push(format!("corrupt blob {}: {why}{used}", blob.path.display()));
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{StageKey, test_action as action};
    use std::time::Duration;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_exclusive(dir.path(), Duration::ZERO).unwrap();
        (dir, store)
    }

    fn writable(path: &std::path::Path) {
        let mut perms = fs::metadata(path).unwrap().permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        perms.set_readonly(false);
        fs::set_permissions(path, perms).unwrap();
    }

    #[test]
    fn verify_finds_corrupt_missing_and_stray_files_and_changes_nothing() {
        let (_dir, store) = store();
        action(&store, "features", &[b"fine"]);
        action(&store, "train", &[b"flipped"]);
        action(&store, "evaluate", &[b"lost"]);
        assert!(verify(&store).unwrap().is_clean());

        let flipped = store.blob_path(&Digest::of(b"flipped"));
        writable(&flipped);
        fs::write(&flipped, b"flipper").unwrap();
        fs::remove_file(store.blob_path(&Digest::of(b"lost"))).unwrap();
        fs::write(store.root().join("objects/stray.txt"), b"?").unwrap();
        fs::write(store.root().join("actions/k1-nothex.json"), b"{").unwrap();

        let report = verify(&store).unwrap();
        assert!(!report.is_clean());
        assert_eq!(report.blobs_checked, 2);
        assert_eq!(report.actions_checked, 3);
        assert_eq!(
            (
                report.corrupt_blobs,
                report.missing_blobs,
                report.stray_files
            ),
            (1, 1, 2)
        );
        let text = report.problems.join("\n");
        assert!(
            text.contains(&format!("corrupt blob {}", flipped.display())),
            "{text}"
        );
        assert!(text.contains("output `out0` of train"), "{text}");
        assert!(text.contains("missing blob"), "{text}");
        assert!(flipped.exists(), "verify removes nothing");
    }

    #[test]
    fn verify_reports_unreadable_and_misfiled_records() {
        let (_dir, store) = store();
        let a = action(&store, "features", &[b"a"]);
        let b = action(&store, "features", &[b"b"]);
        fs::copy(store.action_path(&a), store.action_path(&b)).unwrap();
        let bad = StageKey::compute(&[b"bad"]);
        fs::write(store.action_path(&bad), b"{\"key\":").unwrap();
        let report = verify(&store).unwrap();
        assert_eq!(report.bad_actions, 2, "{:?}", report.problems);
        let text = report.problems.join("\n");
        assert!(text.contains(&store.action_path(&bad).display().to_string()));
        assert!(text.contains("another key"));
    }
}
