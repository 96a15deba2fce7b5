//! Which files under `data.path` hold a symbol's bars (`data.source: local`).
//!
//! Layouts, for a symbol `S` (extensions `.csv`, `.parquet`, `.pq`):
//!
//! - `S.csv` (or `S.parquet`): one file.
//! - `train/S.csv` and/or `test/S.csv`: both read, concatenated in time order.
//! - dated exports `S-YYYY-MM-DD.csv`: the newest date wins.
//!
//! Two candidates for one symbol (`S.csv` beside `S.parquet`, or `S.csv` beside
//! `train/S.csv`, or two files of one date) are an error listing both: hft never guesses
//! which file a user meant. This module only looks at a listing of names (the graph takes
//! it from the folder), so it is pure and the listing can be a salsa input.
//!
//! Names no one means as data are not in the listing: macOS resource forks (`._AAPL.csv`),
//! editor and office lock files (`.#AAPL.csv`, `~$AAPL.csv`) and other hidden files. A
//! folder with a data file's name (`AAPL.csv/`) is listed with a trailing `/`, so that the
//! error for its symbol says it is a folder.

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDate;

/// File extensions read as data, lowercase.
pub const DATA_EXTENSIONS: &[&str] = &["csv", "parquet", "pq"];

/// Subfolders of `data.path` searched for split files, in concatenation order.
pub const SPLIT_FOLDERS: &[&str] = &["train", "test"];

/// One symbol's files, relative to `data.path` (`train/AAPL.csv`), in reading order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SymbolFiles {
    pub symbol: String,
    pub files: Vec<String>,
}

/// How one name of the listing can hold a symbol's bars.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Candidate {
    Direct(String),
    Split(Vec<String>),
    Dated(NaiveDate, String),
}

impl Candidate {
    fn files(&self) -> Vec<String> {
        match self {
            Candidate::Direct(f) | Candidate::Dated(_, f) => vec![f.clone()],
            Candidate::Split(files) => files.clone(),
        }
    }
}

/// Whether a file name is one no one means as data: hidden files, macOS resource forks
/// (`._NAME`), editor lock files (`.#NAME`) and office lock files (`~$NAME`).
fn is_junk(name: &str) -> bool {
    name.starts_with('.') || name.starts_with("~$")
}

/// `(stem, extension)` of a data file name, or `None` for any other file.
fn data_stem(name: &str) -> Option<&str> {
    if is_junk(name) || name.ends_with('/') {
        return None;
    }
    let (stem, ext) = name.rsplit_once('.')?;
    DATA_EXTENSIONS
        .contains(&ext.to_ascii_lowercase().as_str())
        .then_some(stem)
        .filter(|s| !s.is_empty())
}

/// `S-YYYY-MM-DD` -> (`S`, date).
fn dated(stem: &str) -> Option<(&str, NaiveDate)> {
    let cut = stem.len().checked_sub(11)?;
    let (symbol, rest) = (stem.get(..cut)?, stem.get(cut..)?);
    let date = rest.strip_prefix('-')?;
    let d = NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?;
    (!symbol.is_empty()).then_some((symbol, d))
}

/// Every way the listing can provide `symbol`, one candidate per layout; the newest dated
/// export stands for all dated ones, unless two files share that date.
fn candidates(listing: &[String], symbol: &str) -> Vec<Vec<Candidate>> {
    let mut direct = Vec::new();
    let mut split: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut dated_files: Vec<(NaiveDate, String)> = Vec::new();
    for name in listing {
        let (folder, file) = match name.split_once('/') {
            Some((folder, file)) => (Some(folder), file),
            None => (None, name.as_str()),
        };
        let Some(stem) = data_stem(file) else {
            continue;
        };
        match folder {
            None if stem == symbol => direct.push(Candidate::Direct(name.clone())),
            None => {
                if let Some((s, d)) = dated(stem)
                    && s == symbol
                {
                    dated_files.push((d, name.clone()));
                }
            }
            Some(f) if SPLIT_FOLDERS.contains(&f) && stem == symbol => {
                split.entry(f).or_default().push(name.clone());
            }
            Some(_) => {}
        }
    }
    let mut layouts = Vec::new();
    if !direct.is_empty() {
        layouts.push(direct);
    }
    if !split.is_empty() {
        // Two files in one split folder (train/S.csv and train/S.parquet) are ambiguous.
        if let Some(files) = split.values().find(|f| f.len() > 1) {
            layouts.push(files.iter().cloned().map(Candidate::Direct).collect());
        } else {
            let files = SPLIT_FOLDERS
                .iter()
                .filter_map(|f| split.get(f).and_then(|v| v.first().cloned()))
                .collect();
            layouts.push(vec![Candidate::Split(files)]);
        }
    }
    if let Some(newest) = dated_files.iter().map(|(d, _)| *d).max() {
        layouts.push(
            dated_files
                .into_iter()
                .filter(|(d, _)| *d == newest)
                .map(|(d, f)| Candidate::Dated(d, f))
                .collect(),
        );
    }
    layouts
}

/// The files of `symbol`: `Err` says why there is no single answer.
pub fn resolve(listing: &[String], symbol: &str) -> Result<SymbolFiles, String> {
    let layouts = candidates(listing, symbol);
    let all: Vec<Candidate> = layouts.iter().flatten().cloned().collect();
    let folders: Vec<&str> = listing
        .iter()
        .filter_map(|n| n.strip_suffix('/'))
        .filter(|n| {
            let file = n.rsplit('/').next().unwrap_or(n);
            data_stem(file).is_some_and(|stem| stem == symbol)
        })
        .collect();
    match all.as_slice() {
        [] if !folders.is_empty() => Err(format!(
            "`{}` is a folder, not a data file; the data of `{symbol}` is a file such as \
             {symbol}.csv or {symbol}.parquet",
            folders.join("`, `")
        )),
        [] => Err(format!(
            "no data file for `{symbol}` (looked for {symbol}.csv, {symbol}.parquet, \
             train/{symbol}.csv with test/{symbol}.csv, and {symbol}-YYYY-MM-DD.csv)"
        )),
        [one] => Ok(SymbolFiles {
            symbol: symbol.to_string(),
            files: one.files(),
        }),
        many => {
            let names: Vec<String> = many.iter().map(|c| c.files().join(" + ")).collect();
            Err(format!(
                "two candidate data files for `{symbol}`: {}; remove or rename all but one",
                names.join(" and ")
            ))
        }
    }
}

/// Every symbol the listing has files for (`data.symbols: all`), sorted.
pub fn all_symbols(listing: &[String]) -> Vec<String> {
    let mut out = BTreeSet::new();
    for name in listing {
        let (folder, file) = match name.split_once('/') {
            Some((folder, file)) => (Some(folder), file),
            None => (None, name.as_str()),
        };
        let Some(stem) = data_stem(file) else {
            continue;
        };
        let symbol = match folder {
            None => dated(stem).map_or(stem, |(s, _)| s),
            Some(f) if SPLIT_FOLDERS.contains(&f) => stem,
            Some(_) => continue,
        };
        if crate::config::is_symbol(symbol) {
            out.insert(symbol.to_string());
        }
    }
    out.into_iter().collect()
}

/// The names under `dir` that layouts look at: data files in it and in its split folders
/// (`train/AAPL.csv`), sorted. A missing folder lists nothing.
pub fn list_folder(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut scan = |sub: Option<&str>| {
        let path = match sub {
            Some(s) => dir.join(s),
            None => dir.to_path_buf(),
        };
        let Ok(entries) = std::fs::read_dir(&path) else {
            return;
        };
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            let name = entry.file_name().to_string_lossy().into_owned();
            if data_stem(&name).is_none() {
                continue;
            }
            let shown = if kind.is_dir() {
                format!("{name}/")
            } else if kind.is_file() || kind.is_symlink() {
                name
            } else {
                continue;
            };
            out.push(match sub {
                Some(s) => format!("{s}/{shown}"),
                None => shown,
            });
        }
    };
    scan(None);
    for f in SPLIT_FOLDERS {
        scan(Some(f));
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn one_file_per_layout() {
        let l = listing(&["AAPL.csv", "GOOG.parquet", "README.md", "notes.txt"]);
        assert_eq!(resolve(&l, "AAPL").unwrap().files, ["AAPL.csv"]);
        assert_eq!(resolve(&l, "GOOG").unwrap().files, ["GOOG.parquet"]);
        let err = resolve(&l, "MSFT").unwrap_err();
        assert!(err.contains("no data file for `MSFT`"), "{err}");
    }

    #[test]
    fn train_and_test_are_read_in_that_order() {
        let l = listing(&["test/AAPL.csv", "train/AAPL.csv"]);
        assert_eq!(
            resolve(&l, "AAPL").unwrap().files,
            ["train/AAPL.csv", "test/AAPL.csv"]
        );
        let only_train = listing(&["train/AAPL.parquet"]);
        assert_eq!(
            resolve(&only_train, "AAPL").unwrap().files,
            ["train/AAPL.parquet"]
        );
    }

    #[test]
    fn newest_dated_export_wins() {
        let l = listing(&[
            "AAPL-2024-01-31.csv",
            "AAPL-2024-03-01.csv",
            "AAPL-2023-12-29.csv",
            "BRK-B-2024-01-02.csv",
        ]);
        assert_eq!(resolve(&l, "AAPL").unwrap().files, ["AAPL-2024-03-01.csv"]);
        assert_eq!(
            resolve(&l, "BRK-B").unwrap().files,
            ["BRK-B-2024-01-02.csv"]
        );
        assert_eq!(all_symbols(&l), ["AAPL", "BRK-B"]);
    }

    #[test]
    fn two_candidates_are_an_error_naming_both() {
        for (names, a, b) in [
            (
                &["AAPL.csv", "AAPL.parquet"][..],
                "AAPL.csv",
                "AAPL.parquet",
            ),
            (
                &["AAPL.csv", "train/AAPL.csv"][..],
                "AAPL.csv",
                "train/AAPL.csv",
            ),
            (
                &["AAPL-2024-01-02.csv", "AAPL-2024-01-02.parquet"][..],
                "AAPL-2024-01-02.csv",
                "AAPL-2024-01-02.parquet",
            ),
            (
                &["AAPL.csv", "AAPL-2024-01-02.csv"][..],
                "AAPL.csv",
                "AAPL-2024-01-02.csv",
            ),
            (
                &["train/AAPL.csv", "train/AAPL.pq"][..],
                "train/AAPL.csv",
                "train/AAPL.pq",
            ),
        ] {
            let err = resolve(&listing(names), "AAPL").unwrap_err();
            assert!(err.contains("two candidate data files"), "{err}");
            assert!(err.contains(a) && err.contains(b), "{err}");
        }
    }

    #[test]
    fn all_symbols_covers_every_layout() {
        let l = listing(&[
            "AAPL.csv",
            "train/MSFT.csv",
            "test/MSFT.csv",
            "NVDA-2024-01-02.parquet",
            "bad name!.csv",
            "other/IGNORED.csv",
        ]);
        assert_eq!(all_symbols(&l), ["AAPL", "MSFT", "NVDA"]);
    }

    #[test]
    fn junk_files_are_not_data_and_folders_are_named() {
        let l = listing(&[
            "AAPL.csv",
            "._AAPL.csv",
            "._MSFT.csv",
            ".#NVDA.csv",
            "~$TSLA.csv",
            ".hidden.csv",
            "train/._AMD.csv",
            "IBM.csv/",
        ]);
        assert_eq!(all_symbols(&l), ["AAPL"]);
        assert_eq!(resolve(&l, "AAPL").unwrap().files, ["AAPL.csv"]);
        assert!(resolve(&l, "MSFT").unwrap_err().contains("no data file"));
        let err = resolve(&l, "IBM").unwrap_err();
        assert!(
            err.starts_with("`IBM.csv` is a folder, not a data file"),
            "{err}"
        );
    }

    #[test]
    fn lists_a_folder_with_its_split_folders() {
        let dir = std::env::temp_dir().join(format!("hft-layout-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("train")).unwrap();
        for f in [
            "A.csv",
            "b.txt",
            "train/A.csv",
            "C.PARQUET",
            "._A.csv",
            "~$C.csv",
        ] {
            std::fs::write(dir.join(f), "x").unwrap();
        }
        std::fs::create_dir_all(dir.join("D.csv")).unwrap();
        assert_eq!(
            list_folder(&dir),
            ["A.csv", "C.PARQUET", "D.csv/", "train/A.csv"]
        );
        assert!(list_folder(&dir.join("missing")).is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
