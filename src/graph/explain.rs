//! Why a stage must run: its config, version and input facts against what the last build
//! (or the lock) recorded, naming keys and the lines that set them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::StageSpec;
use super::exec::{BuildRecord, ExperimentJob, StageSnapshot};
use crate::store::StageKey;

/// Why `spec` (whose key is known and not cached) must run.
pub(super) fn explain(
    spec: &StageSpec,
    key: &StageKey,
    inputs: &[(String, String)],
    job: &ExperimentJob,
    previous: Option<&BuildRecord>,
) -> String {
    let Some(prev) = previous.and_then(|p| p.stages.iter().find(|s| s.id == spec.id)) else {
        return "never built".to_string();
    };
    if prev.key == *key {
        return "its outputs are gone from the cache (deleted or corrupt)".to_string();
    }
    let mut reasons = explain_config(spec, job, previous);
    for (name, value) in inputs {
        let before = prev.inputs.iter().find(|(n, _)| n == name).map(|(_, v)| v);
        if before != Some(value) {
            let file_index = match name.strip_prefix("data_file") {
                Some("") => Some(0),
                Some(n) => n.strip_prefix('.').and_then(|i| i.parse::<usize>().ok()),
                None => None,
            };
            reasons.push(if let Some(i) = file_index {
                let file = spec
                    .data_files
                    .get(i)
                    .map_or(Path::new("?"), PathBuf::as_path);
                format!("data file {} changed", file.display())
            } else if name == "snapshot" {
                "API snapshot refreshed (hft fetch)".to_string()
            } else if before.is_none() {
                format!("input {name} added")
            } else {
                format!("input {name} changed")
            });
        }
    }
    let names = |v: &[(String, String)]| v.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    let (now, before) = (names(inputs), names(&prev.inputs));
    for gone in before.iter().filter(|n| !now.contains(n)) {
        reasons.push(format!("input {gone} removed"));
    }
    if reasons.is_empty() && now != before {
        reasons.push(format!(
            "inputs reordered: [{}] -> [{}]",
            before.join(", "),
            now.join(", ")
        ));
    }
    if reasons.is_empty() {
        reasons.push("its key changed".to_string());
    }
    reasons.join("; ")
}

/// Config and version differences against the last build, naming keys and positions.
pub(super) fn explain_config(
    spec: &StageSpec,
    job: &ExperimentJob,
    previous: Option<&BuildRecord>,
) -> Vec<String> {
    match previous.and_then(|p| p.stages.iter().find(|s| s.id == spec.id)) {
        Some(prev) => explain_config_change(spec, job, prev),
        None => vec![],
    }
}

/// Config and version differences between a recorded stage and the current one:
/// `optimizer.lr 0.001 -> 0.002 (experiments/a.yaml:7)`.
pub fn explain_config_change(
    spec: &StageSpec,
    job: &ExperimentJob,
    prev: &StageSnapshot,
) -> Vec<String> {
    let mut reasons = Vec::new();
    if prev.version != spec.version {
        reasons.push(format!(
            "stage version {} -> {}",
            prev.version, spec.version
        ));
    }
    let before: serde_json::Value = serde_json::from_str(&prev.config).unwrap_or_default();
    let after: serde_json::Value = serde_json::from_str(&spec.config).unwrap_or_default();
    let leaves = |v: &serde_json::Value| -> BTreeMap<String, String> {
        crate::config::json_leaves(v, false)
            .into_iter()
            .map(|(k, v)| (k, v.to_string()))
            .collect()
    };
    let (a, b) = (leaves(&before), leaves(&after));
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    for k in keys {
        let (old, new) = (a.get(k), b.get(k));
        if old != new {
            let origin = job.locations.find(k);
            let show = |v: Option<&String>| v.cloned().unwrap_or_else(|| "(unset)".to_string());
            reasons.push(format!("{k} {} -> {} ({origin})", show(old), show(new)));
        }
    }
    reasons
}
