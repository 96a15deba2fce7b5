//! The `train` stage: one training loop for every model and optimizer.
//!
//! Deterministic on CPU: every random draw is a pure function of `(seed, step)` or
//! `(seed, epoch)` (shuffling uses its own splitmix64 stream, dropout re-seeds burn's RNG each
//! step), parameter ids come from module paths, the optimizer record is re-packed in name
//! order, and nothing wall-clock dependent enters the checkpoint. The same inputs give
//! bit-identical checkpoint bytes whatever the number of threads (flex runs its parallel ops
//! on the current rayon pool; none of the ops used here splits a reduction by thread count).
//!
//! burn's RNG is process-global, so a training holds `model::rng_lock` from start to end:
//! trainings and initialisations in one process run one at a time. Loading and evaluating
//! draw nothing and may run beside them.

use std::time::Instant;

use burn::optim::OptimizerRecord;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Bytes, Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::config::{ModelConfig, OptimizerConfig, TrainingConfig};
use crate::data::{Dataset, Split};
use crate::model::{self, Dims, Forecast, ModelError, Net};
use crate::optim::{self, OptimError};

/// Reported after every optimizer step, for progress bars.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    /// 1-based.
    pub epoch: usize,
    pub epochs: usize,
    /// Steps done so far (1 after the first).
    pub step: usize,
    pub total_steps: usize,
    /// This step's batch loss.
    pub loss: f64,
    /// Train windows per second so far in this epoch.
    pub samples_per_sec: f64,
    /// Set on the one report made after each epoch's validation.
    pub finished_epoch: Option<EpochLog>,
}

/// One line of the training log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochLog {
    /// 1-based.
    pub epoch: usize,
    /// Optimizer steps done at the end of the epoch.
    pub step: usize,
    /// Mean batch loss over the epoch, weighted by batch size (dropout on).
    pub train_loss: f64,
    /// Mean loss over the validation windows (dropout off); `None` when there are none.
    pub val_loss: Option<f64>,
    /// Learning rate of the epoch's last step.
    pub lr: f64,
    /// Wall-clock throughput of the epoch's training steps (not in the checkpoint).
    pub samples_per_sec: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainLog {
    pub epochs: Vec<EpochLog>,
    pub total_steps: usize,
    /// The epoch with the lowest validation loss (earliest on ties), and that loss.
    pub best_epoch: Option<usize>,
    pub best_val_loss: Option<f64>,
    /// Validation loss of the final weights, the ones in the checkpoint.
    pub final_val_loss: Option<f64>,
}

pub struct TrainOutput {
    /// [`Checkpoint::encode`] bytes of the final state.
    pub checkpoint: Vec<u8>,
    pub log: TrainLog,
}

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Optimizer(#[from] OptimError),
    #[error("training config: {0}")]
    Config(String),
    #[error(
        "training diverged at epoch {epoch}, step {step}: {what}; \
         try a lower optimizer.lr or a training.grad_clip"
    )]
    Diverged {
        epoch: usize,
        step: usize,
        what: String,
    },
}

/// Everything needed to use or resume a trained model.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    pub meta: CheckpointMeta,
    /// burnpack module record (as in a weights blob).
    pub weights: Vec<u8>,
    /// burnpack record of the optimizer state, tensors in name order.
    pub optimizer: Vec<u8>,
}

/// The checkpoint's `META` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    pub model: String,
    pub optimizer: String,
    pub dims: Dims,
    /// Optimizer steps taken.
    pub step: usize,
    /// Epochs completed (the last may be partial when `max_steps` ends it).
    pub epochs: usize,
    /// The whole RNG state: shuffling and dropout are pure functions of (seed, step/epoch).
    pub seed: u64,
    /// Train-split standard deviation of each horizon's return; the price head predicts
    /// returns divided by these.
    pub target_std: Vec<f32>,
}

const CHECKPOINT_MAGIC: &[u8; 8] = b"HFT-CKPT";

impl Checkpoint {
    /// Layout: the container of `model/blob.rs` with magic `HFT-CKPT` and sections `META`
    /// (JSON [`CheckpointMeta`]), `WGTS` (weights) and `OPTM` (optimizer state).
    pub fn encode(&self) -> Vec<u8> {
        // A struct of strings, numbers and finite floats: serialisation cannot fail.
        let meta = serde_json::to_vec(&self.meta).unwrap_or_default();
        model::encode_blob(
            CHECKPOINT_MAGIC,
            &[
                (*b"META", &meta),
                (*b"WGTS", &self.weights),
                (*b"OPTM", &self.optimizer),
            ],
        )
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, ModelError> {
        let sections = model::decode_blob(bytes, CHECKPOINT_MAGIC, "checkpoint")?;
        let meta: CheckpointMeta = serde_json::from_slice(sections.get(b"META")?)
            .map_err(|e| ModelError::Blob(format!("checkpoint header is unreadable: {e}")))?;
        if meta.target_std.len() != meta.dims.horizon {
            return Err(ModelError::Blob(format!(
                "checkpoint has {} target scales for a horizon of {}",
                meta.target_std.len(),
                meta.dims.horizon
            )));
        }
        Ok(Checkpoint {
            meta,
            weights: sections.get(b"WGTS")?.to_vec(),
            optimizer: sections.get(b"OPTM")?.to_vec(),
        })
    }
}

/// Trains from `init_weights` (an [`model::init_weights`] blob) and returns the final
/// checkpoint and the log. Validation runs after every epoch.
pub fn train(
    dataset: &Dataset,
    model_cfg: &ModelConfig,
    opt: &OptimizerConfig,
    tcfg: &TrainingConfig,
    seed: u64,
    init_weights: &[u8],
    progress: &mut dyn FnMut(&Progress),
) -> Result<TrainOutput, TrainError> {
    check_training_config(tcfg)?;
    let dims = Dims::of(dataset);
    model::check_split(&dataset.train, dims, "train")?;
    model::check_split(&dataset.val, dims, "val")?;
    let n = dataset.train.n;
    if n == 0 {
        return Err(ModelError::Data("the train split has no windows".into()).into());
    }
    let (init_meta, init_record) = model::read_weights(init_weights)?;
    init_meta.expect(&model_cfg.kind, dims)?;

    let steps_per_epoch = n.div_ceil(tcfg.batch_size);
    let total_steps = tcfg
        .max_steps
        .unwrap_or(tcfg.epochs.saturating_mul(steps_per_epoch));
    if total_steps == 0 {
        return Err(TrainError::Config(
            "nothing to train: set epochs or max_steps".into(),
        ));
    }
    let epochs = total_steps.div_ceil(steps_per_epoch);
    let targets = Targets {
        std: target_std(&dataset.train, dims.horizon),
        smoothing: tcfg.label_smoothing,
        price_weight: tcfg.price_weight,
    };

    let _rng = model::rng_lock();
    let device = Device::flex().autodiff();
    let mut net = model::load(model_cfg, dims, init_record, &device)?;
    let mut optim = optim::build(opt, &net.params())?;

    let mut log = TrainLog {
        epochs: Vec::with_capacity(epochs),
        total_steps,
        best_epoch: None,
        best_val_loss: None,
        final_val_loss: None,
    };
    let mut step = 0;
    for epoch in 1..=epochs {
        let diverged = |what: String, step: usize| TrainError::Diverged { epoch, step, what };
        let order = permutation(n, stream(seed, SHUFFLE_STREAM, epoch as u64));
        let started = Instant::now();
        let (mut loss_sum, mut seen, mut lr) = (0.0, 0usize, 0.0);
        for indices in order.chunks(tcfg.batch_size) {
            if step == total_steps {
                break;
            }
            device.seed(stream(seed, DROPOUT_STREAM, step as u64));
            let batch = Batch::gather(&dataset.train, indices, dims, &targets, &device);
            let loss = targets.loss(net.forward(batch.x), batch.y, batch.q);
            let value = f64::from(loss.clone().into_scalar::<f32>());
            if !value.is_finite() {
                return Err(diverged(format!("the loss is {value}"), step + 1));
            }
            let mut grads = net.gradients(loss.backward());
            let norm = net.clip_grad_norm(&mut grads, tcfg.grad_clip);
            if !norm.is_finite() {
                return Err(diverged(format!("the gradient norm is {norm}"), step + 1));
            }
            lr = optim::lr_at(
                step,
                total_steps,
                tcfg.warmup_steps,
                opt.lr,
                tcfg.min_lr_ratio,
            );
            net = net.step(&mut optim, lr, grads);
            step += 1;
            loss_sum += value * indices.len() as f64;
            seen += indices.len();
            progress(&Progress {
                epoch,
                epochs,
                step,
                total_steps,
                loss: value,
                samples_per_sec: per_sec(seen, started),
                finished_epoch: None,
            });
        }
        let samples_per_sec = per_sec(seen, started);
        let val_loss = mean_loss(net.as_ref(), &dataset.val, dims, &targets)?;
        if let Some(v) = val_loss.filter(|v| !v.is_finite()) {
            return Err(diverged(format!("the validation loss is {v}"), step));
        }
        if let Some(v) = val_loss
            && log.best_val_loss.is_none_or(|best| v < best)
        {
            log.best_epoch = Some(epoch);
            log.best_val_loss = Some(v);
        }
        log.final_val_loss = val_loss;
        let entry = EpochLog {
            epoch,
            step,
            train_loss: loss_sum / seen.max(1) as f64,
            val_loss,
            lr,
            samples_per_sec,
        };
        progress(&Progress {
            epoch,
            epochs,
            step,
            total_steps,
            loss: entry.train_loss,
            samples_per_sec,
            finished_epoch: Some(entry.clone()),
        });
        log.epochs.push(entry);
    }

    if let Some(path) = net.non_finite_param() {
        return Err(TrainError::Diverged {
            epoch: epochs,
            step,
            what: format!("parameter `{path}` is not finite"),
        });
    }
    let checkpoint = Checkpoint {
        meta: CheckpointMeta {
            model: model_cfg.kind.clone(),
            optimizer: opt.kind.clone(),
            dims,
            step,
            epochs,
            seed,
            target_std: targets.std,
        },
        weights: net.weights()?,
        optimizer: optimizer_bytes(&optim)?,
    };
    Ok(TrainOutput {
        checkpoint: checkpoint.encode(),
        log,
    })
}

fn check_training_config(t: &TrainingConfig) -> Result<(), TrainError> {
    let problem = if t.batch_size == 0 {
        "batch_size must be at least 1"
    } else if !(0.0..1.0).contains(&t.label_smoothing) {
        "label_smoothing must be in [0, 1)"
    } else if !(t.price_weight.is_finite() && t.price_weight >= 0.0) {
        "price_weight must be a finite number >= 0"
    } else if !(t.grad_clip.is_finite() && t.grad_clip >= 0.0) {
        "grad_clip must be a finite number >= 0"
    } else if !(0.0..=1.0).contains(&t.min_lr_ratio) {
        "min_lr_ratio must be in [0, 1]"
    } else {
        return Ok(());
    };
    Err(TrainError::Config(problem.into()))
}

/// The optimizer state as burnpack bytes with tensors in name order (burn writes them in
/// hash-map order; reading a pack back yields name order).
fn optimizer_bytes(optim: &burn::optim::ModuleOptimizer) -> Result<Vec<u8>, ModelError> {
    let fail = |e: burn::store::RecordError| {
        ModelError::Blob(format!("cannot serialise the optimizer state: {e}"))
    };
    let bytes = optim.into_bytes().map_err(fail)?;
    let sorted = OptimizerRecord::from_bytes(bytes).map_err(fail)?;
    Ok(sorted.into_bytes().map_err(fail)?.to_vec())
}

/// Reads an optimizer record written by [`train`] (for resuming and for checks).
pub fn read_optimizer(bytes: &[u8]) -> Result<OptimizerRecord, ModelError> {
    OptimizerRecord::from_bytes(Bytes::from_bytes_vec(bytes.to_vec()))
        .map_err(|e| ModelError::Blob(format!("optimizer state is unreadable: {e}")))
}

/// How labels and returns become loss targets.
struct Targets {
    std: Vec<f32>,
    smoothing: f64,
    price_weight: f64,
}

impl Targets {
    /// Cross-entropy of the action head against label-smoothed targets `q`, plus
    /// `price_weight` times the MSE of the price head against scaled returns `y`.
    fn loss(&self, out: Forecast, y: Tensor<2>, q: Tensor<2>) -> Tensor<1> {
        let ce = (log_softmax(out.action, 1) * q).sum_dim(1).mean().neg();
        let mse = (out.price - y).square().mean();
        ce + mse.mul_scalar(self.price_weight)
    }
}

/// Standard deviation of each horizon's train returns; 1 where it is 0 or undefined, so
/// scaling never divides by zero.
fn target_std(split: &Split, horizon: usize) -> Vec<f32> {
    (0..horizon)
        .map(|h| {
            let values = split
                .y
                .iter()
                .skip(h)
                .step_by(horizon)
                .map(|&v| f64::from(v));
            let n = split.n as f64;
            let mean = values.clone().sum::<f64>() / n;
            let var = values.map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
            let std = var.sqrt();
            if std.is_finite() && std > 1e-12 {
                std as f32
            } else {
                1.0
            }
        })
        .collect()
}

/// A batch on the device: windows, scaled returns, smoothed label distributions.
struct Batch {
    x: Tensor<3>,
    y: Tensor<2>,
    q: Tensor<2>,
}

impl Batch {
    fn gather(
        split: &Split,
        indices: &[usize],
        dims: Dims,
        targets: &Targets,
        device: &Device,
    ) -> Batch {
        let p = dims.horizon;
        let mut y = Vec::with_capacity(indices.len() * p);
        let mut q = Vec::with_capacity(indices.len() * 3);
        let eps = targets.smoothing as f32;
        for &i in indices {
            let row = &split.y[i * p..(i + 1) * p];
            y.extend(row.iter().zip(&targets.std).map(|(v, s)| v / s));
            let label = usize::from(split.action[i]);
            q.extend((0..3).map(|c| eps / 3.0 + if c == label { 1.0 - eps } else { 0.0 }));
        }
        let b = indices.len();
        Batch {
            x: model::windows(split, indices, dims, device),
            y: Tensor::from_data(TensorData::new(y, [b, p]), device),
            q: Tensor::from_data(TensorData::new(q, [b, 3]), device),
        }
    }
}

/// Mean loss over a split with dropout off; `None` for an empty split.
fn mean_loss(
    net: &dyn Net,
    split: &Split,
    dims: Dims,
    targets: &Targets,
) -> Result<Option<f64>, TrainError> {
    if split.n == 0 {
        return Ok(None);
    }
    let net = net.inference();
    let device = Device::flex();
    let all: Vec<usize> = (0..split.n).collect();
    let mut sum = 0.0;
    for indices in all.chunks(model::INFERENCE_BATCH) {
        let batch = Batch::gather(split, indices, dims, targets, &device);
        let loss = targets.loss(net.forward(batch.x), batch.y, batch.q);
        sum += f64::from(loss.into_scalar::<f32>()) * indices.len() as f64;
    }
    Ok(Some(sum / split.n as f64))
}

fn per_sec(samples: usize, since: Instant) -> f64 {
    samples as f64 / since.elapsed().as_secs_f64().max(1e-9)
}

const SHUFFLE_STREAM: u64 = 1;
const DROPOUT_STREAM: u64 = 2;

/// A seed for draw `index` of stream `stream`, independent across streams and indices.
fn stream(seed: u64, stream: u64, index: u64) -> u64 {
    let mut s = SplitMix64(seed ^ stream.wrapping_mul(0xA076_1D64_78BD_642F));
    s.0 ^= s.next().wrapping_add(index);
    s.next()
}

/// A seeded permutation of `0..n` (Fisher-Yates).
fn permutation(n: usize, seed: u64) -> Vec<usize> {
    let mut rng = SplitMix64(seed);
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        // Multiply-shift maps 64 random bits onto 0..=i without modulo bias worth noticing.
        let j = ((u128::from(rng.next()) * (i as u128 + 1)) >> 64) as usize;
        order.swap(i, j);
    }
    order
}

/// splitmix64 (Steele, Lea, Flood 2014): tiny, fast, and fully specified here, so shuffles
/// never change with a dependency upgrade.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::tests::cfg;
    use burn::optim::GradientsParams;

    /// A learnable toy dataset: 4 steps of 3 features, horizon 2, two symbols alternating,
    /// returns driven by the last step's first feature.
    pub(crate) fn toy_dataset(sizes: [usize; 3], seed: u64) -> Dataset {
        toy_windows(sizes, 4, 3, seed)
    }

    pub(crate) fn toy_windows(sizes: [usize; 3], seq: usize, k: usize, seed: u64) -> Dataset {
        let p = 2;
        let mut rng = SplitMix64(seed);
        let mut unit = move || (rng.next() >> 11) as f32 / (1u64 << 53) as f32 * 2.0 - 1.0;
        let mut split = |n: usize| {
            let mut s = Split {
                n,
                ..Split::default()
            };
            for i in 0..n {
                let window: Vec<f32> = (0..seq * k).map(|_| unit()).collect();
                let signal = window[(seq - 1) * k];
                let r1 = 0.02 * signal;
                s.y.extend([r1, 0.03 * signal + 0.002 * unit()]);
                s.x.extend(window);
                s.action.push(if r1 > 0.01 {
                    0
                } else if r1 < -0.01 {
                    2
                } else {
                    1
                });
                s.symbol.push((i % 2) as u32);
                s.timestamp.push(1_700_000_000 + (i / 2) as i64 * 86_400);
            }
            s
        };
        Dataset {
            symbols: vec!["AAA".into(), "BBB".into()],
            feature_names: (0..k).map(|i| format!("f{i}")).collect(),
            sequence_length: seq,
            prediction_horizon: p,
            bar_seconds: 86_400,
            norm_mean: vec![0.0; k],
            norm_std: vec![1.0; k],
            train: split(sizes[0]),
            val: split(sizes[1]),
            test: split(sizes[2]),
        }
    }

    pub(crate) fn opt(lr: f64) -> OptimizerConfig {
        OptimizerConfig {
            lr,
            weight_decay: 0.0,
            ..OptimizerConfig::default()
        }
    }

    pub(crate) fn tcfg(epochs: usize, batch_size: usize) -> TrainingConfig {
        TrainingConfig {
            epochs,
            max_steps: None,
            batch_size,
            warmup_steps: 0,
            min_lr_ratio: 1.0,
            grad_clip: 1.0,
            label_smoothing: 0.1,
            price_weight: 0.5,
        }
    }

    /// Trains `model` from fresh seeded weights.
    pub(crate) fn run(
        data: &Dataset,
        model: &ModelConfig,
        opt: &OptimizerConfig,
        t: &TrainingConfig,
        seed: u64,
    ) -> Result<TrainOutput, TrainError> {
        let dims = Dims::of(data);
        let init = model::init_weights(
            model,
            seed,
            dims.num_features,
            dims.sequence_length,
            dims.horizon,
        )?;
        train(data, model, opt, t, seed, &init, &mut |_| {})
    }

    fn quiet(kind: &str) -> ModelConfig {
        ModelConfig {
            dropout: 0.0,
            num_layers: 1,
            ..cfg(kind)
        }
    }

    #[test]
    fn each_model_trains_and_its_loss_falls() {
        let data = toy_dataset([64, 16, 8], 1);
        for kind in model::MODEL_NAMES {
            let out = run(&data, &quiet(kind), &opt(1e-2), &tcfg(10, 16), 3).unwrap();
            let log = &out.log;
            let (first, last) = (&log.epochs[0], &log.epochs[9]);
            assert!(last.train_loss < 0.8 * first.train_loss, "{kind}: {log:#?}");
            assert_eq!((log.total_steps, last.step), (40, 40));
            assert!(log.best_epoch.is_some() && log.final_val_loss == last.val_loss);
        }
    }

    /// Every parameter gets a non-zero gradient from the first batch, and a handful of
    /// windows can be fitted almost exactly.
    #[test]
    fn each_model_overfits_a_handful_of_windows() {
        let data = toy_dataset([4, 0, 0], 2);
        let dims = Dims::of(&data);
        for kind in model::MODEL_NAMES {
            let model_cfg = quiet(kind);
            let device = Device::flex().autodiff();
            let net = model::build(&model_cfg, dims, 1, &device).unwrap();
            let targets = Targets {
                std: target_std(&data.train, 2),
                smoothing: 0.0,
                price_weight: 0.5,
            };
            let batch = Batch::gather(&data.train, &[0, 1, 2, 3], dims, &targets, &device);
            let loss = targets.loss(net.forward(batch.x), batch.y, batch.q);
            let grads = net.gradients(loss.backward());
            for p in net.params() {
                let norm = grad_norm(&grads, &p);
                assert!(norm > 0.0, "{kind}: no gradient reaches {}", p.path);
            }

            let t = TrainingConfig {
                label_smoothing: 0.0,
                grad_clip: 0.0,
                ..tcfg(150, 4)
            };
            let out = run(&data, &model_cfg, &opt(1e-2), &t, 5).unwrap();
            let last = out.log.epochs.last().unwrap().train_loss;
            assert!(last < 0.02, "{kind}: final loss {last}");
        }
    }

    fn grad_norm(grads: &GradientsParams, p: &crate::model::ParamMeta) -> f64 {
        fn sq<const D: usize>(g: Option<Tensor<D>>) -> f64 {
            g.map_or(0.0, |g| g.into_data().iter::<f64>().map(|v| v * v).sum())
        }
        match p.rank {
            1 => sq(grads.get::<1>(p.id)),
            2 => sq(grads.get::<2>(p.id)),
            _ => sq(grads.get::<3>(p.id)),
        }
    }

    #[test]
    fn training_is_bit_identical_across_runs_and_thread_counts() {
        let data = toy_dataset([24, 8, 0], 3);
        let in_pool = |threads: usize, kind: &str| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let t = TrainingConfig {
                max_steps: Some(7),
                warmup_steps: 2,
                min_lr_ratio: 0.1,
                ..tcfg(1, 8)
            };
            pool.install(|| run(&data, &cfg(kind), &opt(1e-2), &t, 9))
                .unwrap()
                .checkpoint
        };
        for kind in model::MODEL_NAMES {
            let one = in_pool(1, kind);
            assert_eq!(one, in_pool(1, kind), "{kind}: two runs differ");
            assert_eq!(one, in_pool(2, kind), "{kind}: 1 and 2 threads differ");
        }
    }

    /// Big enough for flex to run matmuls on several threads (batched attention products
    /// and the feed-forward gemm pass its parallel thresholds).
    #[test]
    fn a_parallel_sized_transformer_is_thread_count_independent() {
        let data = toy_windows([64, 0, 0], 32, 4, 6);
        let model_cfg = ModelConfig {
            hidden_size: 64,
            ..cfg("transformer")
        };
        let t = TrainingConfig {
            max_steps: Some(2),
            ..tcfg(1, 64)
        };
        let in_pool = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| run(&data, &model_cfg, &opt(1e-3), &t, 2))
                .unwrap()
                .checkpoint
        };
        assert!(in_pool(1) == in_pool(2), "1 and 2 threads differ");
    }

    #[test]
    fn checkpoint_records_the_final_state() {
        let data = toy_dataset([20, 4, 0], 4);
        let t = TrainingConfig {
            max_steps: Some(7),
            ..tcfg(99, 8)
        };
        let init = model::init_weights(&cfg("mlp"), 11, 3, 4, 2).unwrap();
        let mut calls = Vec::new();
        let mut epoch_ends = 0;
        let out = train(
            &data,
            &cfg("mlp"),
            &opt(1e-3),
            &t,
            11,
            &init,
            &mut |p| match p.finished_epoch {
                Some(_) => epoch_ends += 1,
                None => calls.push((p.epoch, p.step)),
            },
        )
        .unwrap();
        assert_eq!(calls.len(), 7);
        assert_eq!(calls.last(), Some(&(3, 7)));
        assert_eq!(epoch_ends, 3, "one report after each epoch's validation");
        let ckpt = Checkpoint::decode(&out.checkpoint).unwrap();
        assert_eq!(
            (ckpt.meta.step, ckpt.meta.epochs, ckpt.meta.seed),
            (7, 3, 11)
        );
        assert_eq!(out.log.epochs.len(), 3);
        assert_eq!(ckpt.meta.target_std.len(), 2);
        assert!(!read_optimizer(&ckpt.optimizer).unwrap().is_empty());
        assert_eq!(Checkpoint::decode(&ckpt.encode()).unwrap(), ckpt);
        assert!(Checkpoint::decode(&out.checkpoint[1..]).is_err());
    }

    #[test]
    fn bad_inputs_are_clear_errors() {
        let mut data = toy_dataset([8, 0, 0], 5);
        data.train.y[3] = f32::NAN;
        let err = run(&data, &cfg("mlp"), &opt(1e-3), &tcfg(1, 8), 1)
            .err()
            .unwrap();
        assert!(
            err.to_string().contains("diverged at epoch 1, step 1"),
            "{err}"
        );

        // An update that overflows f32 leaves infinite weights after the last step.
        let data = toy_dataset([8, 0, 0], 5);
        let t = TrainingConfig {
            max_steps: Some(1),
            grad_clip: 0.0,
            ..tcfg(1, 8)
        };
        let err = run(&data, &cfg("mlp"), &opt(1e39), &t, 1).err().unwrap();
        assert!(err.to_string().contains("is not finite"), "{err}");

        let other = model::init_weights(&cfg("lstm"), 1, 3, 4, 2).unwrap();
        let err = train(
            &data,
            &cfg("mlp"),
            &opt(1e-3),
            &tcfg(1, 8),
            1,
            &other,
            &mut |_| {},
        );
        assert!(
            err.err()
                .unwrap()
                .to_string()
                .contains("built for a `lstm`")
        );

        let mut short = toy_dataset([8, 0, 0], 5);
        short.train.x.pop();
        let err = run(&short, &cfg("mlp"), &opt(1e-3), &tcfg(1, 8), 1)
            .err()
            .unwrap();
        assert!(err.to_string().contains("`x` has 95 values"), "{err}");

        let empty = toy_dataset([0, 0, 0], 5);
        assert!(run(&empty, &cfg("mlp"), &opt(1e-3), &tcfg(1, 8), 1).is_err());
    }

    #[test]
    fn permutation_is_seeded_and_complete() {
        let a = permutation(50, 7);
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
        assert_eq!(a, permutation(50, 7));
        assert_ne!(a, permutation(50, 8));
        assert_ne!(stream(1, SHUFFLE_STREAM, 0), stream(1, DROPOUT_STREAM, 0));
        assert_ne!(stream(1, SHUFFLE_STREAM, 0), stream(1, SHUFFLE_STREAM, 1));
    }
}
