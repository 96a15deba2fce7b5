//! Stage keys: what a stage's outputs are a pure function of.
//!
//! A key is `KEY_SCHEME-<blake3>` (`StageKey::compute`: the scheme, then every part below
//! prefixed by its length as a little-endian u64), over, in this order:
//!
//! 1. the stage's name (`ingest`, `features`, `dataset`, `init`, `train`, `evaluate`);
//! 2. its version for the experiment, as a little-endian u32 (`Stage::version`: bumped when
//!    the code would produce other outputs from equal inputs; train and evaluate take the
//!    version of the model implementation they run, so a kernel change re-runs that model's
//!    stages only);
//! 3. the canonical JSON of exactly the config subtree it reads (`Stage::config`), rooted at
//!    the experiment's top-level keys (`config::canonical_json`: keys sorted at every level,
//!    no whitespace, shortest round-trip numbers, -0.0 as 0.0), options added after the first
//!    release left out at their defaults;
//! 4. its input facts, each as a name then a value, in order (`Stage::key_inputs`, then
//!    [`source_facts`]):
//!    - by default `<dep stage id>.<output>` and the hex digest of every output of every
//!      dependency (evaluate leaves out train's `log`; init keys on the dataset's shape,
//!      `dataset.num_features`, `dataset.sequence_length`, `dataset.prediction_horizon`,
//!      from its summary, not on its values);
//!    - for an ingest, the digest of its source: `data_file` (one file), `data_file.0`,
//!      `data_file.1`, ... (train/ then test/), or `snapshot` (an API source).
//!
//! Nothing else goes in: not file paths, not the experiment's name, not wall-clock facts,
//! not the hft version. The facts are recorded (build record, `hft.lock`) so that a key
//! can be recomputed ([`key_from_inputs`]) and a change explained (`graph::explain`).
//!
//! Stages are keyed by upstream *output digests*, not upstream keys: a stage re-run that
//! produces the same bytes (a comment in a config, a reordered key) stops the cascade.

use super::StageSpec;
use crate::store::{ActionRecord, Digest, StageKey};

/// The key facts of an ingest stage's source: `data_file` (one file), `data_file.0`,
/// `data_file.1`, ... (train/ then test/), or `snapshot` (an API source).
pub fn source_facts(spec: &StageSpec, digests: &[Digest]) -> Vec<(String, String)> {
    let name = |i: usize| match (spec.data_files.len(), spec.data_files.is_empty()) {
        (_, true) => "snapshot".to_string(),
        (1, _) => "data_file".to_string(),
        _ => format!("data_file.{i}"),
    };
    digests
        .iter()
        .enumerate()
        .map(|(i, d)| (name(i), d.to_hex()))
        .collect()
}

/// The key of a stage given its dependencies' records (and data file digest), with the
/// input facts that went into it.
pub fn stage_key(
    spec: &StageSpec,
    deps: &[&ActionRecord],
    data: &[Digest],
) -> (StageKey, Vec<(String, String)>) {
    let mut inputs = spec.kind.key_inputs(deps);
    inputs.extend(source_facts(spec, data));
    (key_from_inputs(spec, &inputs), inputs)
}

/// The key of a stage from its config and input facts (`hft build --locked` recomputes keys
/// from the facts recorded in the lock).
pub fn key_from_inputs(spec: &StageSpec, inputs: &[(String, String)]) -> StageKey {
    key_from_parts(spec.kind.name(), spec.version, &spec.config, inputs)
}

/// The key of a stage named `name` at `version` reading `config` (canonical JSON), with its
/// input facts: what a lock entry's key must be (the lock's own consistency check).
pub fn key_from_parts(
    name: &str,
    version: u32,
    config: &str,
    inputs: &[(String, String)],
) -> StageKey {
    let version = version.to_le_bytes();
    let mut parts: Vec<&[u8]> = vec![name.as_bytes(), &version, config.as_bytes()];
    for (name, value) in inputs {
        parts.push(name.as_bytes());
        parts.push(value.as_bytes());
    }
    StageKey::compute(&parts)
}
