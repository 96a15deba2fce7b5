//! `hft gc`, `hft cache verify`, `hft cache stats`: the command-line side of [`crate::gc`]
//! (the roots come from the plans and hft.lock), of the store's verify and stats, and of
//! the catalog's stats, with the human formatting (sizes, ages, plurals) they print.

use std::collections::BTreeSet;
use std::path::Path;

use serde::Serialize;

use super::{Common, Outcome, fail, open_existing_store_at, survey_in};
use crate::catalog::{Catalog, CatalogStats};
use crate::gc::{self, GcOptions, GcReason, GcReport};
use crate::lock::{LOCK_FILE, Lockfile};
use crate::store::scan::StoreStats;
use crate::store::verify::{self, VerifyReport};
use crate::store::{KEY_SCHEME, Store, now_unix};
use crate::term;

/// What `hft cache stats` reports: the store's sizes and counts, then the catalog's.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CacheStats {
    #[serde(flatten)]
    pub store: StoreStats,
    #[serde(flatten)]
    pub catalog: CatalogStats,
}

/// `500M`, `20G`, `1.5GiB`, `1048576`: bytes, with binary multiples.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("--max-size `{text}`: expected a size like 500M, 20G or 1048576"))?;
    let unit = unit.trim().to_ascii_uppercase();
    let unit = unit.trim_end_matches("IB").trim_end_matches('B');
    let scale: u64 = match unit {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        other => {
            return Err(format!(
                "--max-size `{text}`: unknown unit `{other}` (use K, M, G or T)"
            ));
        }
    };
    Ok((number * scale as f64) as u64)
}

/// `hft gc`.
pub fn gc(
    common: &Common,
    keep_last: usize,
    max_size: Option<&str>,
    dry_run: bool,
    json: bool,
) -> Outcome {
    let max_size = match max_size.map(parse_size).transpose() {
        Ok(m) => m,
        Err(e) => return fail(&e),
    };
    // gc has the store to itself from before planning on, so no build can add keys
    // between computing the roots and removing what they do not reach.
    let dir = super::cache_dir(common.cache_dir.as_deref());
    let store = match Store::open_exclusive(&dir, std::time::Duration::from_secs(30)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot open the cache for gc: {e}");
            return super::store_error_outcome(&e);
        }
    };
    // Everything the current plans can name a key for is a root, cached or not yet.
    let mut roots: BTreeSet<String> =
        match survey_in(&store, common, |_, _, reports| gc::plan_roots(reports)) {
            Ok(r) => r,
            Err(o) => return o,
        };
    match Lockfile::load(Path::new(LOCK_FILE)) {
        Ok(Some(lock)) => roots.extend(gc::lock_roots(&lock)),
        Ok(None) => {}
        Err(e) => return fail(&e),
    }
    let catalog = Catalog::load(&store);
    let options = GcOptions {
        roots,
        keep_last,
        max_size,
        dry_run,
    };
    match gc::gc(&store, &catalog, &options) {
        Ok(r) => {
            if json {
                println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
            } else {
                term::print_block(&gc_lines(&r));
            }
            Outcome::Ok
        }
        Err(e) => {
            eprintln!("error: gc: {e}");
            Outcome::StageFailed
        }
    }
}

/// `hft cache verify`: exit 1 when anything is corrupt or missing.
pub fn verify(cache_dir: Option<&Path>, json: bool) -> Outcome {
    let store = match open_existing_store_at(cache_dir) {
        Ok(s) => s,
        Err(o) => return o,
    };
    match verify::verify(&store) {
        Ok(r) => {
            if json {
                println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
            } else {
                term::print_block(&verify_lines(&r));
            }
            if r.problems.is_empty() {
                Outcome::Ok
            } else {
                eprintln!(
                    "error: the cache at {} has {} (listed above)",
                    store.root().display(),
                    plural(r.problems.len(), "problem")
                );
                Outcome::StageFailed
            }
        }
        Err(e) => {
            eprintln!("error: cache verify: {e}");
            Outcome::StageFailed
        }
    }
}

/// `hft cache stats`.
pub fn stats(cache_dir: Option<&Path>, json: bool) -> Outcome {
    let store = match open_existing_store_at(cache_dir) {
        Ok(s) => s,
        Err(o) => return o,
    };
    let catalog = Catalog::load(&store);
    let stats = store.stats().map(|store| CacheStats {
        store,
        catalog: catalog.stats(),
    });
    match stats {
        Ok(r) => {
            if json {
                println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
            } else {
                term::print_block(&stats_lines(&r));
            }
            Outcome::Ok
        }
        Err(e) => {
            eprintln!("error: cache stats: {e}");
            Outcome::StageFailed
        }
    }
}

/// Most removed entries listed by [`gc_lines`].
const LISTED: usize = 20;

/// `hft gc`'s summary: what was (or would be) freed, what is left, and why not less.
fn gc_lines(r: &GcReport) -> Vec<String> {
    let verb = if r.dry_run { "would remove" } else { "removed" };
    let mut lines = vec![format!(
        "{verb} {} and {}, {} {}",
        plural(r.actions_removed, "action record"),
        plural(r.blobs_removed, "blob"),
        if r.dry_run { "freeing" } else { "freed" },
        human_bytes(r.bytes_freed)
    )];
    lines.push(format!(
        "store: {} -> {}, keeping {} and {} ({} of the current experiments or hft.lock)",
        human_bytes(r.bytes_before),
        human_bytes(r.bytes_left),
        plural(r.actions_kept, "action record"),
        plural(r.blobs_kept, "blob"),
        r.roots_present
    ));
    if r.memos_removed > 0 {
        lines.push(format!(
            "{verb} {} no run wrote in {} days ({})",
            plural(r.memos_removed, "memo"),
            crate::gc::MEMO_MAX_AGE.as_secs() / 86_400,
            human_bytes(r.memo_bytes_freed)
        ));
    }
    if r.checkpoint_blobs_kept > 0 {
        lines.push(format!(
            "kept {} of unfinished trainings (resumable checkpoints)",
            plural(r.checkpoint_blobs_kept, "blob")
        ));
    }
    if let (true, Some(budget)) = (r.over_budget, r.max_size) {
        lines.push(format!(
            "the store stays above --max-size {}: gc never removes the entries of the \
             current experiments, hft.lock or unfinished trainings, nor the catalog and \
             build records",
            human_bytes(budget)
        ));
    }
    let now = now_unix();
    for entry in r.removed.iter().take(LISTED) {
        let short = &entry.key[..(KEY_SCHEME.len() + 13).min(entry.key.len())];
        let why = match entry.reason {
            GcReason::Unreachable => "unreachable",
            GcReason::LeastRecentlyUsed => "least recently used",
        };
        lines.push(format!(
            "  {verb} {:<12} {short}  {why}, last used {}",
            entry.stage.as_deref().unwrap_or("?"),
            ago(now.saturating_sub(entry.last_used))
        ));
    }
    if r.removed.len() > LISTED {
        lines.push(format!(
            "  … and {} more",
            plural(r.removed.len() - LISTED, "entry")
        ));
    }
    lines
}

/// `hft cache verify`'s output: each problem, then a summary line.
fn verify_lines(r: &VerifyReport) -> Vec<String> {
    let mut lines = r.problems.clone();
    let checked = format!(
        "checked {} ({}) and {}",
        plural(r.blobs_checked, "blob"),
        human_bytes(r.blob_bytes_checked),
        plural(r.actions_checked, "action record")
    );
    if r.is_clean() {
        lines.push(format!("{checked}: no problems"));
    } else {
        let counts = [
            (r.corrupt_blobs, "corrupt"),
            (r.missing_blobs, "missing"),
            (r.size_mismatches, "of the wrong size"),
            (r.bad_actions, "unreadable records"),
            (r.edited_actions, "edited records"),
            (r.stray_files, "stray files"),
        ]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect::<Vec<_>>()
        .join(", ");
        lines.push(format!(
            "{checked}: {} ({counts})",
            plural(r.problems.len(), "problem")
        ));
    }
    lines
}

/// `hft cache stats`'s table: the store, the catalog, then the recent builds.
fn stats_lines(s: &CacheStats) -> Vec<String> {
    let mut lines = vec![
        format!(
            "cache {}: {}",
            s.store.root.display(),
            human_bytes(s.store.bytes)
        ),
        format!(
            "  blobs            {:>8}  {}",
            s.store.blobs,
            human_bytes(s.store.blob_bytes)
        ),
        format!(
            "  action records   {:>8}  {}",
            s.store.actions,
            human_bytes(s.store.action_bytes)
        ),
        format!(
            "  build records    {:>8}  ({} resumable checkpoints, {} continuations)",
            s.store.build_records, s.store.checkpoints, s.store.continuations
        ),
        format!(
            "  catalog rows     {:>8}  ({})",
            s.catalog.catalog_rows,
            plural(s.catalog.catalog_experiments, "experiment")
        ),
    ];
    if s.catalog.recent_builds.is_empty() {
        lines.push("no builds recorded yet".to_string());
        return lines;
    }
    let ran: usize = s.catalog.recent_builds.iter().map(|b| b.ran).sum();
    let cached: usize = s.catalog.recent_builds.iter().map(|b| b.cached).sum();
    let failed: usize = s.catalog.recent_builds.iter().map(|b| b.failed).sum();
    lines.push(format!(
        "last {}: hit rate {} ({ran} ran, {cached} cached, {failed} failed)",
        plural(s.catalog.recent_builds.len(), "build"),
        percent(s.catalog.hit_rate)
    ));
    for b in &s.catalog.recent_builds {
        let at = chrono::DateTime::from_timestamp(b.at as i64, 0)
            .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
            .unwrap_or_else(|| b.at.to_string());
        lines.push(format!(
            "  {at}  hit rate {:>4}  {} ran, {} cached, {} failed, {}, {}",
            percent(b.hit_rate),
            b.ran,
            b.cached,
            b.failed,
            plural(b.experiments, "experiment"),
            crate::term::duration(b.secs)
        ));
    }
    lines
}

/// `812 B`, `3.4 KiB`, `1.2 GiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn percent(rate: Option<f64>) -> String {
    rate.map(|r| format!("{:.0}%", r * 100.0))
        .unwrap_or_else(|| "-".to_string())
}

fn plural(n: usize, what: &str) -> String {
    match (n, what.strip_suffix('y')) {
        (1, _) => format!("1 {what}"),
        (_, Some(stem)) => format!("{n} {stem}ies"),
        _ => format!("{n} {what}s"),
    }
}

fn ago(secs: u64) -> String {
    match secs {
        0..60 => "just now".to_string(),
        60..3600 => format!("{}m ago", secs / 60),
        3600..86_400 => format!("{}h ago", secs / 3600),
        _ => format!("{}d ago", secs / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{BuildEntry, CatalogRow, RECENT_BUILDS};
    use crate::store::test_action;

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("500M"), Ok(500 << 20));
        assert_eq!(parse_size("20G"), Ok(20 << 30));
        assert_eq!(parse_size("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_size("2kb"), Ok(2048));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("5X").is_err());
    }

    #[test]
    fn sizes_print_in_binary_units() {
        assert_eq!(human_bytes(812), "812 B");
        assert_eq!(human_bytes(3 << 20), "3.0 MiB");
    }

    #[test]
    fn gc_says_what_it_would_remove_and_when_it_stays_above_the_budget() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_exclusive(dir.path(), std::time::Duration::ZERO).unwrap();
        let kept = test_action(&store, "features", &[b"kept", b"shared"]);
        test_action(&store, "train", &[b"gone", b"shared"]);
        store.put_blob(b"orphan").unwrap();
        let options = GcOptions {
            roots: BTreeSet::from([kept.0.clone()]),
            dry_run: true,
            ..GcOptions::default()
        };
        let dry = gc::gc(&store, &Catalog::default(), &options).unwrap();
        let lines = gc_lines(&dry);
        assert!(lines[0].starts_with("would remove 1 action record and 2 blobs"));
        assert!(
            lines
                .iter()
                .any(|l| l.contains("train") && l.contains("unreachable"))
        );
        let over = gc::gc(
            &store,
            &Catalog::default(),
            &GcOptions {
                max_size: Some(1),
                dry_run: false,
                ..options
            },
        )
        .unwrap();
        assert!(over.over_budget);
        assert!(gc_lines(&over).iter().any(|l| l.contains("stays above")));
    }

    #[test]
    fn verify_sums_up_its_problems() {
        let clean = VerifyReport {
            blobs_checked: 2,
            blob_bytes_checked: 2048,
            actions_checked: 1,
            ..VerifyReport::default()
        };
        assert_eq!(
            verify_lines(&clean),
            vec!["checked 2 blobs (2.0 KiB) and 1 action record: no problems"]
        );
        let bad = VerifyReport {
            corrupt_blobs: 1,
            stray_files: 1,
            problems: vec!["corrupt blob x".to_string(), "stray file y".to_string()],
            ..clean
        };
        assert_eq!(
            verify_lines(&bad).last().map(String::as_str),
            Some(
                "checked 2 blobs (2.0 KiB) and 1 action record: 2 problems (1 corrupt, 1 stray \
                 files)"
            )
        );
    }

    #[test]
    fn stats_print_the_hit_rate_of_recent_builds() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        test_action(&store, "features", &[b"x", b"y"]);
        let mut builds = vec![BuildEntry::for_test(100, 0)];
        builds.extend((0..RECENT_BUILDS).map(|i| BuildEntry::for_test(1, i % 2 * 2)));
        let catalog = Catalog {
            rows: vec![CatalogRow::for_test("a", 1, &[])],
            builds,
        };
        let stats = CacheStats {
            store: store.stats().unwrap(),
            catalog: catalog.stats(),
        };
        let lines = stats_lines(&stats);
        assert!(
            lines.iter().any(|l| l.contains("hit rate 50%")),
            "{lines:?}"
        );
        assert!(
            lines[1].contains("blobs") && lines[1].contains("2 B"),
            "{lines:?}"
        );
        // The JSON keeps the field order `cache stats --json` always had.
        let json = serde_json::to_string_pretty(&stats).unwrap();
        let at = |k: &str| json.find(&format!("\"{k}\":")).unwrap();
        let order = ["root", "bytes", "checkpoints", "catalog_rows", "hit_rate"];
        assert!(order.windows(2).all(|w| at(w[0]) < at(w[1])), "{json}");
        let empty = CacheStats {
            store: store.stats().unwrap(),
            catalog: Catalog::default().stats(),
        };
        assert_eq!(
            stats_lines(&empty).last().unwrap(),
            "no builds recorded yet"
        );
    }
}
