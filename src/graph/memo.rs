//! The no-op build memo: a build that changes nothing is answered without parsing a config,
//! planning, hashing or reading the lockfile.
//!
//! After a build in which every stage ended built, hft writes `memo/<invocation>.json`:
//! every file and folder the outcome depends on (experiment files, the folders searched for
//! them, templates, data files, `hft.lock`, the hft binary itself) with its stat
//! fingerprint, every action record and blob the build ended with (path and size), and what
//! a no-op build prints. The next build with the same invocation (working directory,
//! selection, overrides, filters, `--until`, cache) stats those paths; if every fingerprint
//! and size is unchanged, it prints the memo and stops. Anything else (an edit, a new file
//! in a searched folder, a touched template, a blob removed by gc or found corrupt) takes the
//! normal path, which rewrites the memo.
//!
//! Racy fingerprints: a file changed twice within one timestamp tick can keep its mtime
//! and ctime. So a memo is not written when a watched path changed within
//! [`RACY_WINDOW_MS`] of the moment its fingerprint was taken; the next build takes the
//! normal path and writes it then (git's "racily clean" rule).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::store::{Fingerprint, Store};

/// Paths and their fingerprints (`None`: the path did not exist).
pub type Watched = Vec<(PathBuf, Option<Fingerprint>)>;

/// Set (to anything) to skip the memo: every build plans in full.
pub const DISABLE_ENV: &str = "HFT_NO_MEMO";

/// Fingerprints this close (or closer) to the build's start are not trusted.
pub const RACY_WINDOW_MS: i128 = 20;
const MEMO_VERSION: u32 = 1;

impl Memo {
    pub const VERSION: u32 = MEMO_VERSION;
}

/// What a no-op build of one invocation looks like.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Memo {
    pub version: u32,
    /// Watched paths and their fingerprints; `None`: the path did not exist.
    pub watched: Watched,
    /// Store entries (relative to the store root) and their sizes.
    pub entries: Vec<(String, u64)>,
    /// Per experiment, the lines a no-op build prints: (verbose, quiet).
    pub experiments: Vec<(Vec<String>, Vec<String>)>,
    /// The results table's cells (header first); empty when no experiment evaluates.
    pub results: Vec<Vec<String>>,
    pub stages: usize,
    /// Lines printed after the results table (each search's line).
    #[serde(default)]
    pub notes: Vec<String>,
}

/// The memo's file name for one invocation: a digest of everything besides files that
/// decides what a build does.
pub fn invocation_id(parts: &[String]) -> String {
    context_digest(MEMO_VERSION, parts)
}

/// A short digest of the invocation's context: `version`, hft's version, the binary's stat
/// fingerprint (a rebuilt hft is another context), the working directory and `parts`.
/// Shared by the memo and the per-file index, which both key on it.
pub fn context_digest(version: u32, parts: &[String]) -> String {
    let exe = std::env::current_exe()
        .ok()
        .and_then(|p| std::fs::metadata(p).ok())
        .map(|m| format!("{:?}", Fingerprint::of(&m)))
        .unwrap_or_default();
    let cwd = std::env::current_dir()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let mut text = format!("{version}\0{}\0{exe}\0{cwd}", env!("CARGO_PKG_VERSION"));
    for p in parts {
        text.push('\0');
        text.push_str(p);
    }
    crate::store::Digest::of(text.as_bytes()).short()
}

fn memo_path(store: &Store, id: &str) -> PathBuf {
    store.root().join("memo").join(format!("{id}.json"))
}

/// The stat fingerprint of `path` now (`None` if it does not exist).
pub fn fingerprint(path: &Path) -> Option<Fingerprint> {
    std::fs::metadata(path).ok().map(|m| Fingerprint::of(&m))
}

/// The memo of this invocation, if every watched path and store entry is as it was.
pub fn check(store: &Store, id: &str) -> Option<Memo> {
    let bytes = std::fs::read(memo_path(store, id)).ok()?;
    let memo: Memo = serde_json::from_slice(&bytes).ok()?;
    if memo.version != MEMO_VERSION || !unchanged(store, &memo.watched, &memo.entries) {
        return None;
    }
    Some(memo)
}

/// Whether every watched path has its fingerprint and every store entry (relative to the
/// store root) its size.
pub fn unchanged(
    store: &Store,
    watched: &[(PathBuf, Option<Fingerprint>)],
    entries: &[(String, u64)],
) -> bool {
    use rayon::prelude::*;
    watched
        .par_iter()
        .all(|(path, fp)| fingerprint(path) == *fp)
        && entries.par_iter().all(|(rel, size)| {
            std::fs::metadata(store.root().join(rel)).is_ok_and(|m| m.len() == *size)
        })
}

/// Whether any fingerprint is too recent to be trusted (see the module docs).
pub fn is_racy(watched: &[(PathBuf, Option<Fingerprint>)], started_ns: i128) -> bool {
    let window = RACY_WINDOW_MS * 1_000_000;
    watched.iter().any(|(_, fp)| {
        fp.as_ref()
            .is_some_and(|f| f.mtime_ns.max(f.ctime_ns) >= started_ns - window)
    })
}

/// Writes the memo (errors only cost the next no-op its speed).
pub fn save(store: &Store, id: &str, memo: &Memo) {
    let path = memo_path(store, id);
    let written = std::fs::create_dir_all(store.root().join("memo")).and_then(|_| {
        let bytes = serde_json::to_vec(memo).map_err(std::io::Error::other)?;
        store.write_disposable(&path, &bytes)
    });
    // A read-only (shared) cache serves hits without a memo.
    if let Err(e) = written
        && e.kind() != std::io::ErrorKind::ReadOnlyFilesystem
    {
        crate::term::warn(&format!("cannot write the no-op memo: {e}"));
    }
}

/// Drops the memo of this invocation (a build that did not end fully built).
pub fn forget(store: &Store, id: &str) {
    let _ = std::fs::remove_file(memo_path(store, id));
}

/// Now, in nanoseconds since the Unix epoch (the clock file timestamps use).
pub fn now_ns() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_fingerprint_is_racy_and_an_old_one_is_not() {
        let now = now_ns();
        let fp = |t: i128| Fingerprint {
            size: 1,
            mtime_ns: t,
            ctime_ns: t,
            inode: 1,
        };
        let old = vec![(PathBuf::from("a"), Some(fp(now - 1_000_000_000)))];
        assert!(!is_racy(&old, now));
        let fresh = vec![(PathBuf::from("a"), Some(fp(now - 1_000_000)))];
        assert!(is_racy(&fresh, now));
        assert!(!is_racy(&[(PathBuf::from("gone"), None)], now));
    }

    #[test]
    fn a_memo_is_used_only_while_every_path_and_entry_is_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("cache")).unwrap();
        let file = dir.path().join("exp.yaml");
        std::fs::write(&file, "name: a\n").unwrap();
        let blob = store.put_blob(b"output").unwrap();
        let rel = store
            .blob_path(&blob.digest)
            .strip_prefix(store.root())
            .unwrap()
            .display()
            .to_string();
        let memo = Memo {
            version: MEMO_VERSION,
            watched: vec![
                (file.clone(), fingerprint(&file)),
                (dir.path().join("absent.yaml"), None),
            ],
            entries: vec![(rel, 6)],
            experiments: vec![],
            results: vec![],
            notes: vec![],
            stages: 1,
        };
        save(&store, "x", &memo);
        assert!(check(&store, "x").is_some());
        assert!(check(&store, "y").is_none(), "another invocation");
        // A file appearing where none was invalidates it.
        std::fs::write(dir.path().join("absent.yaml"), "").unwrap();
        assert!(check(&store, "x").is_none());
        std::fs::remove_file(dir.path().join("absent.yaml")).unwrap();
        assert!(check(&store, "x").is_some());
        // An edit of a watched file invalidates it.
        std::fs::write(&file, "name: b\n").unwrap();
        assert!(check(&store, "x").is_none());
        save(
            &store,
            "x",
            &Memo {
                watched: vec![(file.clone(), fingerprint(&file))],
                ..memo
            },
        );
        assert!(check(&store, "x").is_some());
        // So does a missing blob.
        std::fs::remove_file(store.blob_path(&blob.digest)).unwrap();
        assert!(check(&store, "x").is_none());
    }
}
