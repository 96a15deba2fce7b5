//! `hft audit`: re-execute stages bypassing the cache and compare with what was recorded.
//!
//! Each audited stage runs again from its recorded inputs (the dependency outputs in the
//! store), in memory; nothing it produces replaces a cache entry. Its output digests are
//! compared with the action record (or, with `--locked`, with `hft.lock`) under a tolerance
//! class. A differing output is kept: its blobs go into the store and the key's audit record
//! (`audits/<key>.json`) lists every output ever seen for it, so non-determinism is on record;
//! downstream keys keep using the recorded digests, so no build mixes the two.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::graph::exec::{self, ExperimentJob, ExperimentReport};
use crate::graph::stages::StageInputs;
use crate::lock::Lockfile;
use crate::store::{ActionRecord, Digest, PinKind, Store};

/// How equal a re-executed output must be to pass.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "class", content = "value", rename_all = "snake_case")]
pub enum Tolerance {
    /// Identical bytes (the default on CPU, where hft is deterministic).
    Bitwise,
    /// Float tensors within N units in the last place; other outputs bitwise.
    Ulp(u64),
    /// Numbers within an absolute epsilon (for non-deterministic GPU backends).
    Metric(f64),
}

impl Tolerance {
    pub fn parse(text: &str) -> Result<Tolerance, String> {
        match text.split_once(':') {
            None if text == "bitwise" => Ok(Tolerance::Bitwise),
            Some(("ulp", n)) => n
                .parse()
                .map(Tolerance::Ulp)
                .map_err(|_| format!("ulp:{n}: expected a whole number")),
            Some(("metric", eps)) => match eps.parse::<f64>() {
                Ok(e) if e.is_finite() && e >= 0.0 => Ok(Tolerance::Metric(e)),
                _ => Err(format!("metric:{eps}: expected a number >= 0")),
            },
            _ => Err(format!(
                "tolerance `{text}`: expected bitwise, ulp:N or metric:EPS"
            )),
        }
    }

    pub fn label(&self) -> String {
        match self {
            Tolerance::Bitwise => "bitwise".to_string(),
            Tolerance::Ulp(n) => format!("ulp:{n}"),
            Tolerance::Metric(e) => format!("metric:{e}"),
        }
    }
}

/// The outcome of auditing one stage.
#[derive(Debug, Clone, Serialize)]
pub struct StageAudit {
    pub experiment: String,
    pub stage: String,
    pub key: String,
    pub tolerance: String,
    /// `pass`, `diverged` or `error`.
    pub status: String,
    /// For a divergence: which output, which tensor or metric, by how much.
    pub detail: String,
    pub secs: f64,
}

/// Audits the given stages (`only` filters by stage name) of experiments already built.
pub fn audit(
    store: &Store,
    jobs: &[&ExperimentJob],
    reports: &[ExperimentReport],
    only: Option<&str>,
    lock: Option<&Lockfile>,
    tolerance_for: &dyn Fn(&str) -> Tolerance,
) -> Vec<StageAudit> {
    let mut out = Vec::new();
    for (job, report) in jobs.iter().zip(reports) {
        for (i, spec) in report.plan.stages.iter().enumerate() {
            if only.is_some_and(|o| o != spec.kind.name() && o != spec.id) {
                continue;
            }
            let stage = &report.stages[i];
            let tolerance = tolerance_for(spec.kind.name());
            let mut result = StageAudit {
                experiment: report.name.clone(),
                stage: spec.id.clone(),
                key: stage.key.as_ref().map(|k| k.0.clone()).unwrap_or_default(),
                tolerance: tolerance.label(),
                status: "error".to_string(),
                detail: String::new(),
                secs: 0.0,
            };
            let Some(record) = &stage.record else {
                result.detail = "not built (or not cached): run `hft build` first".to_string();
                out.push(result);
                continue;
            };
            let expected: BTreeMap<String, String> = match lock {
                Some(l) => match l
                    .experiments
                    .get(&report.name)
                    .and_then(|e| e.stages.get(&spec.id))
                {
                    Some(s) => s.outputs.clone(),
                    None => {
                        result.detail = "not in hft.lock".to_string();
                        out.push(result);
                        continue;
                    }
                },
                None => record
                    .outputs
                    .iter()
                    .map(|(n, o)| (n.clone(), o.digest.to_hex()))
                    .collect(),
            };
            let deps: Vec<&ActionRecord> = spec
                .deps
                .iter()
                .filter_map(|&d| report.stages.get(d).and_then(|s| s.record.as_ref()))
                .collect();
            let inputs = StageInputs {
                experiment: job.experiment,
                store,
                deps,
                data_files: &spec.data_files,
                data_digests: job.data_digests.get(&i).map_or(&[][..], Vec::as_slice),
                // Audit re-executes from scratch, never from a saved checkpoint.
                key: None,
            };
            let started = std::time::Instant::now();
            let output = exec::execute_isolated(&spec.kind, &inputs);
            result.secs = started.elapsed().as_secs_f64();
            let output = match output {
                Ok(o) => o,
                Err(e) => {
                    result.detail = format!("re-execution failed: {e}");
                    out.push(result);
                    continue;
                }
            };
            let mut differences = Vec::new();
            for (name, r) in &output.passed {
                let want = expected.get(name);
                if want != Some(&r.digest.to_hex()) {
                    differences.push(format!(
                        "output `{name}`: passes on input blob {}, the record names {}",
                        r.digest.to_hex(),
                        want.map(String::as_str).unwrap_or("(none)")
                    ));
                }
            }
            for (name, bytes) in &output.blobs {
                let now = Digest::of(bytes);
                let want = expected.get(name);
                if want == Some(&now.to_hex()) {
                    continue;
                }
                let old = want
                    .and_then(|w| Digest::from_hex(w))
                    .and_then(|d| store.get_blob(&d));
                match old {
                    Some(old) => {
                        if let Some(detail) = compare(name, &old, bytes, tolerance) {
                            differences.push(detail);
                            record_divergence(store, record, name, bytes);
                        }
                    }
                    None => {
                        differences.push(format!(
                            "output `{name}`: recorded blob {} is not in the store",
                            want.map(String::as_str).unwrap_or("(none)")
                        ));
                    }
                }
            }
            if differences.is_empty() {
                result.status = "pass".to_string();
            } else {
                result.status = "diverged".to_string();
                result.detail = differences.join("; ");
            }
            out.push(result);
        }
    }
    out
}

/// Keeps a re-execution's differing output: its blob in the store and a line in the key's
/// audit record.
fn record_divergence(store: &Store, record: &ActionRecord, name: &str, bytes: &[u8]) {
    let Ok(blob) = store.put_blob(bytes) else {
        return;
    };
    let id = &record.key.0;
    let mut seen: BTreeMap<String, Vec<String>> =
        store.get_pin_record(PinKind::Audit, id).unwrap_or_default();
    let list = seen.entry(name.to_string()).or_default();
    for d in [
        record.outputs.get(name).map(|o| o.digest.to_hex()),
        Some(blob.digest.to_hex()),
    ]
    .into_iter()
    .flatten()
    {
        if !list.contains(&d) {
            list.push(d);
        }
    }
    let _ = store.put_pin_record(PinKind::Audit, id, &seen);
}

/// Why `new` is not an acceptable reproduction of `old` under `tolerance`; `None` if it is.
pub fn compare(name: &str, old: &[u8], new: &[u8], tolerance: Tolerance) -> Option<String> {
    if let (Ok(a), Ok(b)) = (
        safetensors::SafeTensors::deserialize(old),
        safetensors::SafeTensors::deserialize(new),
    ) {
        return compare_tensors(name, &a, &b, tolerance);
    }
    if let (Ok(a), Ok(b)) = (
        serde_json::from_slice::<serde_json::Value>(old),
        serde_json::from_slice::<serde_json::Value>(new),
    ) {
        return compare_json(name, &a, &b, tolerance);
    }
    if let (Some(a), Some(b)) = (params(old), params(new)) {
        return compare_params(name, &a, &b, tolerance);
    }
    if old == new {
        return None;
    }
    let at = old
        .iter()
        .zip(new)
        .position(|(x, y)| x != y)
        .unwrap_or(old.len().min(new.len()));
    Some(format!(
        "output `{name}`: bytes differ from offset {at} ({} vs {} bytes)",
        old.len(),
        new.len()
    ))
}

/// The named f32 parameters of a weights or checkpoint blob (burnpack records inside our
/// container), so a divergence names the first differing parameter.
fn params(blob: &[u8]) -> Option<Vec<(String, Vec<f64>)>> {
    let burnpack: Vec<u8> = match crate::train::Checkpoint::decode(blob) {
        Ok(c) => c.weights,
        Err(_) => crate::model::read_weights(blob).ok()?.1.to_vec(),
    };
    let reader =
        burn_pack::Reader::from_bytes(burn::tensor::Bytes::from_bytes_vec(burnpack)).ok()?;
    let names: Vec<String> = reader
        .tensor_names()
        .iter()
        .map(|n| n.to_string())
        .collect();
    names
        .into_iter()
        .map(|n| {
            let data = reader.tensor_data(&n).ok()?;
            let values = data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64)
                .collect();
            Some((n, values))
        })
        .collect()
}

fn compare_params(
    name: &str,
    a: &[(String, Vec<f64>)],
    b: &[(String, Vec<f64>)],
    tolerance: Tolerance,
) -> Option<String> {
    for (pa, pb) in a.iter().zip(b) {
        if pa.0 != pb.0 || pa.1.len() != pb.1.len() {
            return Some(format!(
                "output `{name}`: parameter `{}` vs `{}` (different structure)",
                pa.0, pb.0
            ));
        }
        if let Some(detail) = float_diff(&pa.1, &pb.1, true, tolerance) {
            return Some(format!("output `{name}`: parameter `{}` {detail}", pa.0));
        }
    }
    (a.len() != b.len()).then(|| {
        format!(
            "output `{name}`: parameter count {} vs {}",
            a.len(),
            b.len()
        )
    })
}

/// `first differs at element i; max abs diff ...` when `p` and `q` differ beyond `tolerance`.
fn float_diff(p: &[f64], q: &[f64], f32_width: bool, tolerance: Tolerance) -> Option<String> {
    let (mut max_abs, mut max_rel, mut max_ulp, mut first) = (0.0f64, 0.0f64, 0u64, None);
    for (i, (u, v)) in p.iter().zip(q).enumerate() {
        if u.to_bits() == v.to_bits() {
            continue;
        }
        first.get_or_insert(i);
        let d = (u - v).abs();
        max_abs = max_abs.max(d);
        max_rel = max_rel.max(d / u.abs().max(v.abs()).max(f64::MIN_POSITIVE));
        max_ulp = max_ulp.max(ulps(*u, *v, f32_width));
    }
    let first = first?;
    let within = match tolerance {
        Tolerance::Bitwise => false,
        Tolerance::Ulp(n) => max_ulp <= n,
        Tolerance::Metric(eps) => max_abs <= eps,
    };
    (!within).then(|| {
        format!(
            "first differs at element {first}; max abs diff {max_abs:e}, max rel diff {max_rel:e}, \
             max {max_ulp} ulp"
        )
    })
}

fn floats(view: &safetensors::tensor::TensorView) -> Option<Vec<f64>> {
    use safetensors::Dtype;
    let data = view.data();
    match view.dtype() {
        Dtype::F32 => Some(
            data.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64)
                .collect(),
        ),
        Dtype::F64 => Some(
            data.chunks_exact(8)
                .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                .collect(),
        ),
        _ => None,
    }
}

/// Units in the last place between two floats of the tensor's own width.
fn ulps(a: f64, b: f64, f32_width: bool) -> u64 {
    if f32_width {
        let (x, y) = (a as f32, b as f32);
        // Map the sign-magnitude bits onto a line where adjacent floats are adjacent.
        let key = |v: f32| {
            let bits = v.to_bits() as i32 as i64;
            if bits < 0 {
                i32::MIN as i64 - bits
            } else {
                bits
            }
        };
        key(x).abs_diff(key(y))
    } else {
        let key = |v: f64| {
            let bits = v.to_bits() as i64;
            if bits < 0 {
                i64::MIN.wrapping_sub(bits)
            } else {
                bits
            }
        };
        key(a).abs_diff(key(b))
    }
}

fn compare_tensors(
    name: &str,
    a: &safetensors::SafeTensors,
    b: &safetensors::SafeTensors,
    tolerance: Tolerance,
) -> Option<String> {
    let mut names: Vec<String> = a.names().into_iter().map(|s| s.to_string()).collect();
    names.sort();
    let b_names: Vec<String> = b.names().into_iter().map(|s| s.to_string()).collect();
    if let Some(n) = b_names.iter().find(|n| !names.contains(n)) {
        return Some(format!("output `{name}`: tensor `{n}` is new"));
    }
    for n in &names {
        let (Ok(x), Ok(y)) = (a.tensor(n), b.tensor(n)) else {
            return Some(format!("output `{name}`: tensor `{n}` is missing"));
        };
        if x.data() == y.data() && x.shape() == y.shape() && x.dtype() == y.dtype() {
            continue;
        }
        if x.shape() != y.shape() || x.dtype() != y.dtype() {
            return Some(format!(
                "output `{name}`: tensor `{n}` changed shape or type ({:?} {:?} -> {:?} {:?})",
                x.dtype(),
                x.shape(),
                y.dtype(),
                y.shape()
            ));
        }
        let (Some(p), Some(q)) = (floats(&x), floats(&y)) else {
            return Some(format!(
                "output `{name}`: tensor `{n}` differs (non-float values)"
            ));
        };
        let f32_width = x.dtype() == safetensors::Dtype::F32;
        if let Some(detail) = float_diff(&p, &q, f32_width, tolerance) {
            return Some(format!("output `{name}`: tensor `{n}` {detail}"));
        }
    }
    None
}

fn compare_json(
    name: &str,
    a: &serde_json::Value,
    b: &serde_json::Value,
    tolerance: Tolerance,
) -> Option<String> {
    let x = crate::config::json_leaves(a, true);
    let y = crate::config::json_leaves(b, true);
    let y: BTreeMap<String, serde_json::Value> = y.into_iter().collect();
    let mut diffs = Vec::new();
    for (path, old) in &x {
        let new = y.get(path);
        if new == Some(old) {
            continue;
        }
        match (old.as_f64(), new.and_then(|n| n.as_f64())) {
            (Some(o), Some(n)) => {
                let within = matches!(tolerance, Tolerance::Metric(eps) if (o - n).abs() <= eps);
                if !within {
                    diffs.push(format!("{path} {o} -> {n} (by {:e})", n - o));
                }
            }
            _ => diffs.push(format!(
                "{path} {old} -> {}",
                new.map(|n| n.to_string())
                    .unwrap_or_else(|| "(missing)".to_string())
            )),
        }
    }
    if diffs.is_empty() {
        return None;
    }
    let mut s = format!("output `{name}`: ");
    let _ = write!(s, "{}", diffs.join(", "));
    Some(s)
}

/// A JUnit XML report: one test suite, one test case per audited stage.
pub fn junit(results: &[StageAudit]) -> String {
    fn esc(s: &str) -> String {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    }
    let failures = results.iter().filter(|r| r.status == "diverged").count();
    let errors = results.iter().filter(|r| r.status == "error").count();
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        xml,
        "<testsuite name=\"hft audit\" tests=\"{}\" failures=\"{failures}\" errors=\"{errors}\">",
        results.len()
    );
    for r in results {
        let _ = write!(
            xml,
            "  <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\">",
            esc(&r.experiment),
            esc(&r.stage),
            r.secs
        );
        match r.status.as_str() {
            "diverged" => {
                let _ = write!(
                    xml,
                    "<failure message=\"diverged ({})\">{}</failure>",
                    esc(&r.tolerance),
                    esc(&r.detail)
                );
            }
            "error" => {
                let _ = write!(xml, "<error message=\"{}\"/>", esc(&r.detail));
            }
            _ => {}
        }
        xml.push_str("</testcase>\n");
    }
    xml.push_str("</testsuite>\n");
    xml
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tolerances_parse() {
        assert_eq!(Tolerance::parse("bitwise").unwrap(), Tolerance::Bitwise);
        assert_eq!(Tolerance::parse("ulp:4").unwrap(), Tolerance::Ulp(4));
        assert_eq!(
            Tolerance::parse("metric:1e-6").unwrap(),
            Tolerance::Metric(1e-6)
        );
        assert!(Tolerance::parse("ulp:x").is_err());
        assert!(Tolerance::parse("loose").is_err());
    }

    fn tensors(values: &[f32]) -> Vec<u8> {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let view = safetensors::tensor::TensorView::new(
            safetensors::Dtype::F32,
            vec![values.len()],
            &bytes,
        )
        .unwrap();
        safetensors::serialize([("w".to_string(), view)], None).unwrap()
    }

    #[test]
    fn tensor_differences_name_the_tensor_and_size() {
        let a = tensors(&[1.0, 2.0, 3.0]);
        let b = tensors(&[1.0, 2.0 + f32::EPSILON * 2.0, 3.0]);
        let msg = compare("dataset", &a, &b, Tolerance::Bitwise).unwrap();
        assert!(
            msg.contains("tensor `w` first differs at element 1"),
            "{msg}"
        );
        assert!(msg.contains("max 1 ulp"), "{msg}");
        assert!(compare("dataset", &a, &b, Tolerance::Ulp(1)).is_none());
        assert!(compare("dataset", &a, &b, Tolerance::Metric(1e-3)).is_none());
        assert!(compare("dataset", &a, &a, Tolerance::Bitwise).is_none());
    }

    #[test]
    fn weight_differences_name_the_parameter() {
        let cfg = crate::config::ModelConfig {
            kind: "mlp".to_string(),
            hidden_size: 4,
            num_layers: 1,
            ..Default::default()
        };
        let a = crate::model::init_weights(&cfg, 1, 3, 4, 2).unwrap();
        let b = crate::model::init_weights(&cfg, 2, 3, 4, 2).unwrap();
        assert!(compare("weights", &a, &a, Tolerance::Bitwise).is_none());
        let msg = compare("weights", &a, &b, Tolerance::Bitwise).unwrap();
        assert!(msg.starts_with("output `weights`: parameter `"), "{msg}");
        assert!(
            msg.contains("first differs at element 0; max abs diff"),
            "{msg}"
        );
    }

    #[test]
    fn metric_differences_name_the_metric() {
        let a = br#"{"price": {"mse": 0.5}, "windows": 3}"#;
        let b = br#"{"price": {"mse": 0.5000001}, "windows": 3}"#;
        let msg = compare("metrics", a, b, Tolerance::Bitwise).unwrap();
        assert!(msg.contains("price.mse 0.5 -> 0.5000001"), "{msg}");
        assert!(compare("metrics", a, b, Tolerance::Metric(1e-6)).is_none());
    }

    #[test]
    fn junit_escapes_and_counts() {
        let r = StageAudit {
            experiment: "e[a=<1>]".to_string(),
            stage: "train".to_string(),
            key: "k1-x".to_string(),
            tolerance: "bitwise".to_string(),
            status: "diverged".to_string(),
            detail: "a & b".to_string(),
            secs: 0.5,
        };
        let xml = junit(&[r]);
        assert!(xml.contains("failures=\"1\""));
        assert!(xml.contains("e[a=&lt;1&gt;]") && xml.contains("a &amp; b"));
    }
}
