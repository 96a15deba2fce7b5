//! `hft export`: an experiment's trained model as files other tools read.
//!
//! - `model.safetensors`: every parameter of the weights evaluation uses (the moving
//!   average when trained with one), f32, named by module path (`layers.0.input.weight`);
//!   one metadata key, `hft`, names the model card. Linear weights are `[in, out]`
//!   (`y = x @ W + b`), as burn stores them.
//! - `model.json`: the model card: architecture and every dimension, the ordered input
//!   columns with the feature definitions' version, the relative-price rule and the
//!   normalisation statistics, the target scaling, activation, gate orders and norms, every
//!   tensor's name and shape, the hft version, stage keys, data digests and the metrics.
//! - `config.yaml` (the resolved experiment), `metrics.json` (the evaluate stage's), and
//!   `predictions.csv` (the test split, with ISO 8601 timestamps).
//!
//! Every file is a function of the stage outputs it is made from: exporting twice writes
//! the same bytes. `tests/interop/forward.py` runs an export with numpy alone.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use burn::tensor::Device;
use serde_json::{Value, json};

use super::predict::iso_time;
use super::trained::{Trained, pick, resolve};
use super::{Failure, Outcome, Selection, open_store};
use crate::checkpoint::Checkpoint;
use crate::config::{Experiment, ModelConfig};
use crate::graph::stages::StageKind;
use crate::model::transformer::TransformerOptions;
use crate::model::{self, Dims};

/// Bumped when the card's fields change meaning.
pub const CARD_VERSION: u32 = 1;
/// The files an export writes, in the order written.
pub const FILES: [&str; 5] = [
    "model.safetensors",
    "model.json",
    "config.yaml",
    "metrics.json",
    "predictions.csv",
];

#[derive(Debug, Clone)]
pub struct ExportRequest {
    pub select: Selection,
    pub cache_dir: PathBuf,
    /// Experiment name, or its file.
    pub experiment: String,
    /// The folder written (created if missing).
    pub out_dir: PathBuf,
}

/// What was written.
#[derive(Debug, Clone)]
pub struct Exported {
    pub experiment: String,
    pub dir: PathBuf,
    /// File name and size, in [`FILES`] order.
    pub files: Vec<(String, u64)>,
    pub warnings: Vec<String>,
}

/// Writes the export of one experiment's trained model.
pub fn export(req: &ExportRequest) -> Result<Exported, Failure> {
    let store = open_store(&req.cache_dir)?;
    let (trained, files) = super::survey::survey(&store, &req.select, |store, jobs, reports| {
        let i = pick(&req.experiment, jobs)?;
        let trained = resolve(
            store,
            &jobs[i],
            &reports[i],
            &["dataset", "train", "evaluate"],
        )?;
        let blob = |output: &str| -> Result<Vec<u8>, Failure> {
            trained
                .records
                .get("evaluate")
                .and_then(|r| r.outputs.get(output))
                .and_then(|o| store.get_blob(&o.digest))
                .ok_or_else(|| {
                    Failure::bad_input(format!(
                        "the evaluation of `{}` is missing from the cache; rebuild it with \
                         `hft build {}`",
                        trained.name,
                        trained.file.display()
                    ))
                })
        };
        let metrics = blob("metrics")?;
        let predictions = blob("predictions")?;
        let files = render(&trained, &metrics, &predictions)?;
        Ok((trained, files))
    })??;
    let failed = |path: &Path, e: std::io::Error| Failure {
        outcome: Outcome::StageFailed,
        errors: vec![format!("cannot write {}: {e}", path.display())],
    };
    std::fs::create_dir_all(&req.out_dir).map_err(|e| failed(&req.out_dir, e))?;
    let mut written = Vec::new();
    for (name, bytes) in FILES.iter().zip(&files) {
        let path = req.out_dir.join(name);
        std::fs::write(&path, bytes).map_err(|e| failed(&path, e))?;
        written.push((name.to_string(), bytes.len() as u64));
    }
    Ok(Exported {
        experiment: trained.name.clone(),
        dir: req.out_dir.clone(),
        files: written,
        warnings: trained.warnings,
    })
}

/// The bytes of every file of [`FILES`], in order.
pub fn render(
    trained: &Trained,
    metrics: &[u8],
    predictions: &[u8],
) -> Result<Vec<Vec<u8>>, Failure> {
    let stage_failed = |m: String| Failure {
        outcome: Outcome::StageFailed,
        errors: vec![m],
    };
    let e = &trained.experiment;
    let ckpt = Checkpoint::decode(&trained.checkpoint)
        .map_err(|err| stage_failed(format!("the checkpoint of `{}`: {err}", trained.name)))?;
    let h = &trained.header;
    let dims = Dims {
        num_features: h.feature_names.len(),
        sequence_length: h.sequence_length,
        horizon: h.prediction_horizon,
    };
    let net = model::load(&e.model, dims, ckpt.eval_weights(), &Device::flex())
        .map_err(|err| stage_failed(format!("loading the model of `{}`: {err}", trained.name)))?;
    let values = net.flat_params();
    let mut tensors = Vec::new();
    for p in net.params() {
        let data: Vec<f32> = values
            .get(&p.id)
            .map(|t| t.clone().into_data().iter::<f32>().collect())
            .unwrap_or_default();
        if data.len() != p.shape.iter().product::<usize>() {
            return Err(stage_failed(format!(
                "parameter {} has {} values for shape {:?}",
                p.path,
                data.len(),
                p.shape
            )));
        }
        tensors.push((p.path, p.shape, data));
    }
    let weights = safetensors_bytes(&tensors)
        .map_err(|err| stage_failed(format!("writing model.safetensors: {err}")))?;
    let metrics_value: Value = serde_json::from_slice(metrics).unwrap_or(Value::Null);
    let card = model_card(trained, &ckpt, &tensors, metrics_value);
    let card = serde_json::to_vec_pretty(&card).unwrap_or_default();
    let config =
        config_yaml(e).map_err(|err| stage_failed(format!("writing config.yaml: {err}")))?;
    Ok(vec![
        weights,
        card,
        config.into_bytes(),
        metrics.to_vec(),
        iso_predictions(predictions).into_bytes(),
    ])
}

type NamedTensor = (String, Vec<usize>, Vec<f32>);

/// Plain safetensors: f32 little-endian tensors by name, one metadata key.
fn safetensors_bytes(tensors: &[NamedTensor]) -> Result<Vec<u8>, String> {
    use safetensors::tensor::{Dtype, TensorView};
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, shape, _), b)| {
            TensorView::new(Dtype::F32, shape.clone(), b)
                .map(|v| (name.clone(), v))
                .map_err(|e| e.to_string())
        })
        .collect::<Result<Vec<_>, String>>()?;
    // One key: a HashMap of several would not keep its order.
    let meta = HashMap::from([("hft".to_string(), "see model.json".to_string())]);
    safetensors::tensor::serialize(views, Some(meta)).map_err(|e| e.to_string())
}

/// The test-split predictions CSV with its Unix `timestamp` column as ISO 8601.
fn iso_predictions(csv: &[u8]) -> String {
    let text = String::from_utf8_lossy(csv);
    let mut out = String::with_capacity(text.len() + text.len() / 4);
    for (i, line) in text.lines().enumerate() {
        let mut cells: Vec<String> = line.split(',').map(str::to_string).collect();
        if i > 0
            && let Some(ts) = cells.get_mut(1)
            && let Ok(t) = ts.parse::<i64>()
        {
            *ts = iso_time(t);
        }
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    out
}

/// The model card (`model.json`).
fn model_card(
    trained: &Trained,
    ckpt: &Checkpoint,
    tensors: &[NamedTensor],
    metrics: Value,
) -> Value {
    let e = &trained.experiment;
    let h = &trained.header;
    let warm_up = crate::data::dataset::inference::base_features(h)
        .iter()
        .filter_map(|n| crate::data::features::lookback(n))
        .max()
        .unwrap_or(0);
    let data_digests: BTreeMap<String, String> = trained
        .outputs
        .iter()
        .filter(|(id, _)| id.starts_with("ingest:") || *id == "features" || *id == "dataset")
        .flat_map(|(id, outs)| {
            outs.iter()
                .map(move |(n, d)| (format!("{id}.{n}"), d.clone()))
        })
        .collect();
    json!({
        "card_version": CARD_VERSION,
        "hft_version": env!("CARGO_PKG_VERSION"),
        "experiment": trained.name,
        "model": architecture(&e.model, h.feature_names.len(), h.sequence_length, h.prediction_horizon),
        "inputs": {
            "features": h.feature_names,
            "feature_definitions": "shared/reference/features.md, src/data/features/definitions.rs",
            "feature_definitions_version": StageKind::Features.version(e),
            "warm_up_bars": warm_up,
            "sequence_length": h.sequence_length,
            "symbols": h.symbols,
            "symbol_id": h.feature_names.iter().any(|n| n.starts_with("symbol=")),
            "cross_sessions": e.data.cross_sessions,
            "relative": h.relative,
            "norm_mean": h.norm_mean,
            "norm_std": h.norm_std,
            "window": "rows t-S+1..=t of the feature table, oldest first, [S, k]; columns in \
                       `features` order; `symbol=NAME` columns are 1 on that symbol's rows, 0 \
                       elsewhere",
            "normalise": "in f64: v = x / close[t] - 1 where relative[c] (close[t] the \
                          window's last close), else x; then (v - norm_mean[c]) / norm_std[c], \
                          cast to f32",
        },
        "outputs": {
            "price": {
                "shape": [h.prediction_horizon],
                "target_std": ckpt.meta.target_std,
                "meaning": "returns r_h = C[t+h] / C[t] - 1, h = 1..=horizon: the price head's \
                            output times target_std[h-1]; price level = close[t] * (1 + r_h)",
            },
            "action": {
                "classes": ["buy", "hold", "sell"],
                "meaning": "logits; probabilities are their softmax, the action their argmax \
                            (the first on ties)",
                "action_threshold": e.data.action_threshold,
            },
        },
        "tensors": tensors.iter().map(|(n, s, _)| json!({"name": n, "shape": s, "dtype": "F32"})).collect::<Vec<_>>(),
        "weights": if ckpt.ema.is_some() { "exponential moving average" } else { "trained" },
        "training": {
            "steps": ckpt.meta.step,
            "epochs": ckpt.meta.epochs,
            "seed": ckpt.meta.seed,
            "optimizer": ckpt.meta.optimizer,
            "ema_decay": ckpt.meta.ema_decay,
        },
        "stage_keys": trained.keys,
        "data_digests": data_digests,
        "checkpoint_digest": trained.checkpoint_digest.to_hex(),
        "metrics": metrics,
    })
}

/// Everything a reimplementation of the forward pass needs to know about `cfg`.
fn architecture(
    cfg: &ModelConfig,
    features: usize,
    sequence_length: usize,
    horizon: usize,
) -> Value {
    let linear = "y = x @ weight + bias, weight [in, out]";
    let gelu = "exact GELU: x * 0.5 * (1 + erf(x / sqrt(2)))";
    let heads = "price and action heads, each hidden (Linear d->d), GELU, out (Linear d->horizon \
                 or d->3), on the summary vector h [batch, d]";
    let mut v = json!({
        "type": cfg.kind,
        "hidden_size": cfg.hidden_size,
        "num_layers": cfg.num_layers,
        "num_features": features,
        "sequence_length": sequence_length,
        "horizon": horizon,
        "dropout": cfg.dropout,
        "dropout_at_inference": false,
        "linear": linear,
        "activation": gelu,
        "heads": heads,
        "options": cfg.key_value(),
    });
    let forward = match cfg.kind.as_str() {
        "mlp" => json!(
            "h = x.reshape(batch, S * k); for each layers.i: h = gelu(layers.i(h)); then the heads"
        ),
        "lstm" => {
            v["gate_order"] = json!(["input", "forget", "cell", "output"]);
            json!(
                "per layer, from h = c = 0: g = x_t @ input.weight + input.bias + h @ \
                 hidden.weight (hidden has no bias), split in four [i, f, c~, o]; c = sigmoid(f) \
                 * c + sigmoid(i) * tanh(c~); h = sigmoid(o) * tanh(c); a layer's hidden states \
                 are the next layer's inputs; the top layer's last h feeds the heads"
            )
        }
        "gru" => {
            v["gate_order"] = json!(["reset", "update", "candidate"]);
            json!(
                "per layer, from h = 0 (PyTorch nn.GRU equations): a = x_t @ input.weight + \
                 input.bias, b = h @ hidden.weight + hidden.bias, each split in three [r, z, \
                 n]; r = sigmoid(a_r + b_r); z = sigmoid(a_z + b_z); n = tanh(a_n + r * b_n); h \
                 = (1 - z) * n + z * h; the top layer's last h feeds the heads"
            )
        }
        "transformer" | "dit" => {
            let o: TransformerOptions = model::registry::options_of(cfg).unwrap_or_default();
            v["num_heads"] = json!(o.num_heads);
            v["ff_size"] = json!(o.ff_size(cfg));
            v["pooling"] = json!(o.pooling);
            v["positions"] = json!(o.positions);
            v["layer_norm_epsilon"] = json!(1e-5);
            v["layer_norm"] = json!(
                "(x - mean) / sqrt(var + eps) * gamma + beta over the last axis, var the \
                 population variance"
            );
            v["sinusoidal_positions"] = json!(
                "pe[pos, c] = sin(pos / 10000^(2i/d)) for even c = 2i, cos(pos / \
                 10000^(2i/d)) for odd c = 2i+1, computed in f64, cast to f32"
            );
            json!(
                "h = x @ input.weight + input.bias + positions (pos_embedding when learned); \
                 per encoder.layers.i (pre-norm): h = h + mha(norm_2(h)); h = h + \
                 pwff.linear_outer(gelu(pwff.linear_inner(norm_1(h)))); mha: q, k, v = \
                 query, key, value linears, split into num_heads heads of d/num_heads, \
                 softmax(q k^T / sqrt(d/num_heads)) v, heads concatenated, output linear; then \
                 h = norm(h); pooling: last step, mean over steps, or attention (scores = h @ \
                 pool_query / sqrt(d), softmax over steps, weighted sum); then the heads"
            )
        }
        _ => json!("see src/model"),
    };
    if cfg.kind == "dit" {
        v["note"] = json!(
            "dit's point forecast and actions are the price and action heads on the context \
             (the transformer text describes its encoder); its band comes from seeded DDIM \
             sampling of the denoiser (src/model/dit.rs)"
        );
    }
    v["forward"] = forward;
    v
}

/// The resolved experiment as `hft export` writes it to `config.yaml`.
pub fn config_yaml(e: &Experiment) -> Result<String, String> {
    serde_saphyr::to_string(e).map_err(|err| err.to_string())
}
