//! `hft gc`, `hft cache verify`, `hft cache stats`: the command-line side of
//! `store::housekeeping` (what is reachable comes from the plans and hft.lock).

use std::collections::BTreeSet;
use std::path::Path;

use super::{Common, Outcome, fail, open_store_at, survey_in};
use crate::catalog::Catalog;
use crate::lock::{LOCK_FILE, Lockfile};
use crate::store::Store;
use crate::store::housekeeping::{self, GcOptions};
use crate::term;

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
    let mut roots: BTreeSet<String> = match survey_in(&store, common, |_, _, reports| {
        reports
            .iter()
            .flat_map(|r| r.stages.iter().filter_map(|s| s.key.as_ref()))
            .map(|k| k.0.clone())
            .collect()
    }) {
        Ok(r) => r,
        Err(o) => return o,
    };
    match Lockfile::load(Path::new(LOCK_FILE)) {
        Ok(Some(lock)) => {
            for e in lock.experiments.values() {
                roots.extend(e.stages.values().map(|s| s.key.clone()));
            }
        }
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
    match housekeeping::gc(&store, &catalog, &options) {
        Ok(r) => {
            if json {
                println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
            } else {
                term::print_block(&r.lines());
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
    let store = match open_store_at(cache_dir) {
        Ok(s) => s,
        Err(o) => return o,
    };
    match housekeeping::verify(&store) {
        Ok(r) => {
            if json {
                println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
            } else {
                term::print_block(&r.lines());
            }
            if r.problems.is_empty() {
                Outcome::Ok
            } else {
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
    let store = match open_store_at(cache_dir) {
        Ok(s) => s,
        Err(o) => return o,
    };
    let catalog = Catalog::load(&store);
    match housekeeping::stats(&store, &catalog) {
        Ok(r) => {
            if json {
                println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
            } else {
                term::print_block(&r.lines());
            }
            Outcome::Ok
        }
        Err(e) => {
            eprintln!("error: cache stats: {e}");
            Outcome::StageFailed
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_size;

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
}
