//! When the catalog is compacted, and checking that cheaply: a build that adds rows would
//! otherwise re-read the whole catalog (54 MB at 10,000 experiments) to find it need not.
//!
//! After a full check that left the catalog as it was, `catalog.check.json` records what it
//! found (rows, rows a compaction would keep) and the catalog's fingerprint after the
//! append. Each later append under the catalog's lock that finds the catalog at that
//! fingerprint adds its rows to the count and records the new fingerprint; any other change
//! (another hft, an edit, a compaction) breaks the chain and the next append checks in full.
//!
//! Why counting is enough: one appended row adds one row the compaction keeps (the newest of
//! its experiment) and can drop at most two (the row its experiment's history no longer
//! reaches, and the previous newest row of its trial), so after `a` rows the catalog has
//! `rows + a` rows of which at least `kept - a` stay. Compaction needs rows >= 2 kept + 100,
//! which cannot hold while `3a < 2 kept + 100 - rows`.

use std::collections::BTreeMap;
use std::fs;
use std::io;

use serde::{Deserialize, Serialize};

use super::{BUILDS_FILE, BuildEntry, CatalogRow, HISTORY, ROWS_FILE, read_lines, trials};
use crate::store::{Fingerprint, Store};

/// The sidecar beside `catalog.jsonl`.
pub const CHECK_FILE: &str = "catalog.check.json";

#[derive(Debug, Serialize, Deserialize)]
struct Check {
    /// Rows (that parse) and rows a compaction would keep, at the last full check.
    rows: usize,
    kept: usize,
    /// Rows appended since.
    appended: usize,
    /// The catalog's fingerprint after the last append counted.
    after: Fingerprint,
}

/// Compacts the catalog if that would at least halve it (see [`compact`]); `before` is the
/// catalog's fingerprint before this build appended `appended` rows (under the lock).
pub fn compact_if_needed(
    store: &Store,
    before: Option<Fingerprint>,
    appended: usize,
) -> io::Result<()> {
    let rows_path = store.root().join(ROWS_FILE);
    let check_path = store.root().join(CHECK_FILE);
    let after = fs::metadata(&rows_path).map(|m| Fingerprint::of(&m))?;
    let known = fs::read(&check_path)
        .ok()
        .and_then(|b| serde_json::from_slice::<Check>(&b).ok())
        .filter(|c| before.as_ref() == Some(&c.after));
    if let Some(c) = known {
        let appended = c.appended + appended;
        let needed = (2 * c.kept + 100).saturating_sub(c.rows);
        if 3 * appended < needed {
            let check = Check {
                appended,
                after,
                ..c
            };
            return write_check(store, &check);
        }
    }
    match compact(store)? {
        // Left as it was: the counts start here.
        Some((rows, kept)) => write_check(
            store,
            &Check {
                rows,
                kept,
                appended: 0,
                after,
            },
        ),
        // Rewritten: the next append checks in full.
        None => match fs::remove_file(&check_path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        },
    }
}

fn write_check(store: &Store, check: &Check) -> io::Result<()> {
    let bytes = serde_json::to_vec(check).map_err(io::Error::other)?;
    store.write_disposable(&store.root().join(CHECK_FILE), &bytes)
}

/// Rewrites the catalog keeping the last [`HISTORY`] rows of each experiment, the newest row
/// of every trial (a distinct evaluation on a dataset: the trial count of the deflated
/// Sharpe ratio must not shrink), and the last 1000 build entries; only when that would at
/// least halve it. Returns the rows and the rows it would keep when it left them as they were.
fn compact(store: &Store) -> io::Result<Option<(usize, usize)>> {
    let rows: Vec<CatalogRow> = read_lines(&store.root().join(ROWS_FILE));
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    let mut trials_seen = std::collections::HashSet::new();
    let mut keep = vec![false; rows.len()];
    for (i, r) in rows.iter().enumerate().rev() {
        let n = seen.entry(r.id.as_str()).or_default();
        *n += 1;
        let newest_of_trial = trials::trial_id(r).is_some_and(|t| trials_seen.insert(t));
        keep[i] = *n <= HISTORY || newest_of_trial;
    }
    let kept = keep.iter().filter(|k| **k).count();
    if rows.len() < 2 * kept + 100 {
        return Ok(Some((rows.len(), kept)));
    }
    let mut text = String::new();
    for (r, _) in rows.iter().zip(&keep).filter(|(_, k)| **k) {
        text.push_str(&serde_json::to_string(r).map_err(io::Error::other)?);
        text.push('\n');
    }
    store.write_atomic(&store.root().join(ROWS_FILE), text.as_bytes(), false)?;
    let builds: Vec<BuildEntry> = read_lines(&store.root().join(BUILDS_FILE));
    if builds.len() > 2000 {
        let mut text = String::new();
        for b in &builds[builds.len() - 1000..] {
            text.push_str(&serde_json::to_string(b).map_err(io::Error::other)?);
            text.push('\n');
        }
        store.write_atomic(&store.root().join(BUILDS_FILE), text.as_bytes(), false)?;
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{Catalog, append};

    fn rows_of(store: &Store) -> usize {
        Catalog::load(store).rows.len()
    }

    #[test]
    fn the_counted_check_compacts_when_the_full_one_would() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let entry = BuildEntry::for_test(1, 0);
        // One experiment's history: compaction is due once 2 * 10 + 100 rows are there.
        for at in 0..119 {
            append(&store, &[CatalogRow::for_test("a", at, &[])], &entry).unwrap();
        }
        assert_eq!(rows_of(&store), 119);
        assert!(store.root().join(CHECK_FILE).exists());
        append(&store, &[CatalogRow::for_test("a", 119, &[])], &entry).unwrap();
        assert_eq!(
            rows_of(&store),
            HISTORY,
            "compacted at 120 rows, as in full"
        );
    }

    #[test]
    fn a_catalog_changed_behind_the_counts_is_checked_in_full() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let entry = BuildEntry::for_test(1, 0);
        append(&store, &[CatalogRow::for_test("a", 0, &[])], &entry).unwrap();
        // Another hft appends 200 rows without counting them.
        let mut text = fs::read_to_string(store.root().join(ROWS_FILE)).unwrap();
        for at in 1..200 {
            text.push_str(&serde_json::to_string(&CatalogRow::for_test("a", at, &[])).unwrap());
            text.push('\n');
        }
        fs::write(store.root().join(ROWS_FILE), text).unwrap();
        append(&store, &[CatalogRow::for_test("b", 0, &[])], &entry).unwrap();
        assert_eq!(rows_of(&store), HISTORY + 1);
    }
}
