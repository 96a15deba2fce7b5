//! The `train` stage: one training loop for every model and optimizer.
//!
//! Deterministic on CPU: every random draw is a pure function of `(seed, step)` or
//! `(seed, epoch)` (shuffling uses its own splitmix64 stream; dropout and a diffusion model's
//! training noise re-seed burn's RNG each micro-batch), parameter ids come from module paths,
//! the optimizer record is re-packed in name order, and nothing wall-clock dependent enters
//! the checkpoint. The same inputs give bit-identical checkpoint bytes whatever the number of
//! threads (flex runs its parallel ops on the current rayon pool; none of the ops used here
//! splits a reduction by thread count; Shampoo's norms and eigendecompositions run on the
//! host in a fixed order). This holds in every precision; GPU backends are not covered.
//!
//! Features on top of the plain loop: gradient accumulation, the schedules of
//! [`optim::schedule`], early stopping, an exponential moving average of the weights, and
//! reduced precision (bf16/f16 working copies of f32 master weights, f16 loss scaling).
//!
//! burn's RNG is process-global, so a training that draws from it (dropout above 0, the
//! diffusion noise of `dit`) holds `model::rng_lock` from start to end: such trainings and
//! initialisations in one process run one at a time. Trainings that draw nothing, loading
//! and evaluating run beside them, each training on the cores `graph::exec` gives it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use burn::optim::{GradientsParams, OptimizerRecord};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Bytes, DType, Device, FloatDType, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::config::sections::{Backend, Devices, Precision};
use crate::config::{ModelConfig, OptimizerConfig, TrainingConfig};
use crate::data::{Dataset, Split};
use crate::model::{self, Dims, Forecast, ModelError, Net, PriceTerm, TrainForecast};
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
    /// Optimizer steps planned (the schedule's length); fewer run when early stopping ends
    /// the run or f16 skips steps (see the last epoch's `step`).
    pub total_steps: usize,
    /// The epoch with the lowest validation loss (earliest on ties), and that loss.
    pub best_epoch: Option<usize>,
    pub best_val_loss: Option<f64>,
    /// Validation loss of the final weights, the ones in the checkpoint (the moving average
    /// with `ema_decay`).
    pub final_val_loss: Option<f64>,
    /// The epoch after which early stopping ended the run, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_early: Option<usize>,
    /// f16 steps skipped because the scaled gradients overflowed (the loss scale halves).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub skipped_steps: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
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
    #[error("interrupted at step {0}; checkpoint saved, run the build again to resume")]
    Interrupted(usize),
    #[error("resumable checkpoint: {0}")]
    Resume(String),
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
    /// burnpack module record of the moving-average weights (with `ema_decay`); evaluation
    /// uses these when present.
    pub ema: Option<Vec<u8>>,
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
    /// The moving-average decay, when the checkpoint carries averaged weights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ema_decay: Option<f64>,
}

const CHECKPOINT_MAGIC: &[u8; 8] = b"HFT-CKPT";

impl Checkpoint {
    /// Layout: the container of `model/blob.rs` with magic `HFT-CKPT` and sections `META`
    /// (JSON [`CheckpointMeta`]), `WGTS` (weights), `OPTM` (optimizer state) and, with a
    /// moving average, `EMAW` (its weights).
    pub fn encode(&self) -> Vec<u8> {
        // A struct of strings, numbers and finite floats: serialisation cannot fail.
        let meta = serde_json::to_vec(&self.meta).unwrap_or_default();
        let mut sections: Vec<([u8; 4], &[u8])> = vec![
            (*b"META", &meta),
            (*b"WGTS", &self.weights),
            (*b"OPTM", &self.optimizer),
        ];
        if let Some(ema) = &self.ema {
            sections.push((*b"EMAW", ema));
        }
        model::encode_blob(CHECKPOINT_MAGIC, &sections)
    }

    /// The weights evaluation uses: the moving average when there is one.
    pub fn eval_weights(&self) -> &[u8] {
        self.ema.as_deref().unwrap_or(&self.weights)
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
        let ema = match meta.ema_decay {
            Some(_) => Some(sections.get(b"EMAW")?.to_vec()),
            None => None,
        };
        Ok(Checkpoint {
            meta,
            weights: sections.get(b"WGTS")?.to_vec(),
            optimizer: sections.get(b"OPTM")?.to_vec(),
            ema,
        })
    }
}

/// Set by the Ctrl-C handler: a training with a [`Resume`] sink saves a checkpoint and stops
/// with [`TrainError::Interrupted`] after its current step.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);
/// Whether a training that can stop cleanly is running; without one, Ctrl-C exits at once.
pub static RESUMABLE_RUNNING: AtomicBool = AtomicBool::new(false);

/// Mid-run checkpoints for [`train_resumable`].
pub struct Resume<'a> {
    /// Bytes once given to `save`: the run continues from there.
    pub from: Option<Vec<u8>>,
    /// Receives `(step, bytes)` every `training.checkpoint_every` optimizer steps and when
    /// interrupted.
    pub save: &'a mut dyn FnMut(usize, Vec<u8>) -> Result<(), String>,
}

/// Where a resumable checkpoint left off, beyond weights, optimizer state and moving
/// average. Floats are kept as bits: JSON need not round-trip them exactly.
#[derive(Debug, Serialize, Deserialize)]
struct Cursor {
    /// The epoch in progress (1-based) and the next optimizer-step group in its shuffle,
    /// which is a pure function of (seed, epoch).
    epoch: usize,
    group: usize,
    loss_sum: u64,
    seen: usize,
    lr: u64,
    /// `(epoch, step, train_loss, val_loss, lr, samples_per_sec)` of finished epochs.
    epochs: Vec<(usize, usize, u64, Option<u64>, u64, u64)>,
    best_epoch: Option<usize>,
    best_val_loss: Option<u64>,
    final_val_loss: Option<u64>,
    skipped_steps: usize,
    stopping: (Option<u64>, usize),
    plateau: (u64, Option<u64>, usize),
    loss_scale: (u64, usize),
}

const RESUME_MAGIC: &[u8; 8] = b"HFT-RSUM";

fn bits(v: Option<f64>) -> Option<u64> {
    v.map(f64::to_bits)
}

fn unbits(v: Option<u64>) -> Option<f64> {
    v.map(f64::from_bits)
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
    train_resumable(
        dataset,
        model_cfg,
        opt,
        tcfg,
        seed,
        init_weights,
        progress,
        None,
    )
}

/// [`train`], optionally continuing from and saving resumable checkpoints: a resumed run
/// ends bit-identical to an uninterrupted one.
///
/// One optimizer step sums the gradients of `grad_accum_steps` micro-batches of `batch_size`
/// windows, each micro-batch's mean loss weighted by its share of the step's windows, so it
/// equals one batch of all of them; the schedule, `max_steps` and the log count optimizer
/// steps. With `ema_decay`, validation (and so early stopping and `plateau`) reads the
/// moving-average weights, which the checkpoint carries beside the raw ones.
#[allow(clippy::too_many_arguments)]
pub fn train_resumable(
    dataset: &Dataset,
    model_cfg: &ModelConfig,
    opt: &OptimizerConfig,
    tcfg: &TrainingConfig,
    seed: u64,
    init_weights: &[u8],
    progress: &mut dyn FnMut(&Progress),
    mut resume: Option<Resume>,
) -> Result<TrainOutput, TrainError> {
    tcfg.validate()
        .map_err(|(key, message)| TrainError::Config(format!("{key}: {message}")))?;
    let dims = Dims::of(dataset);
    model::check_split(&dataset.train, dims, "train")?;
    model::check_split(&dataset.val, dims, "val")?;
    let n = dataset.train.n;
    if n == 0 {
        return Err(ModelError::Data("the train split has no windows".into()).into());
    }
    let (init_meta, init_record) = model::read_weights(init_weights)?;
    init_meta.expect(&model_cfg.kind, dims)?;

    let accum = tcfg.grad_accum_steps;
    let steps_per_epoch = n.div_ceil(tcfg.batch_size).div_ceil(accum);
    let total_steps = tcfg
        .max_steps
        .unwrap_or(tcfg.epochs.saturating_mul(steps_per_epoch));
    if total_steps == 0 {
        return Err(TrainError::Config(
            "nothing to train: set epochs or max_steps".into(),
        ));
    }
    let epochs = total_steps.div_ceil(steps_per_epoch);
    let mut schedule = optim::Scheduler::new(opt.lr, tcfg, total_steps);
    if dataset.val.n == 0 {
        let needs = if schedule.needs_validation() {
            Some("training.schedule: plateau")
        } else if tcfg.patience.is_some() {
            Some("training.patience (early stopping)")
        } else {
            None
        };
        if let Some(what) = needs {
            return Err(TrainError::Config(format!(
                "{what} needs a validation loss, but the val split has no windows"
            )));
        }
    }
    let targets = Targets {
        std: target_std(&dataset.train, dims.horizon),
        smoothing: tcfg.label_smoothing,
        price_weight: tcfg.price_weight,
    };

    let compute = open_device(tcfg)?;
    // Only a training that draws random numbers (dropout, diffusion noise) needs burn's
    // process-global RNG to itself; the others run beside each other (parallel sweeps).
    let draws = model::draws_while_training(model_cfg);
    let _rng = draws.then(model::rng_lock);
    let device = compute.device.clone().autodiff();
    // The devices after the first of `training.devices`; empty on one device.
    let shard_devices: Vec<Device> = compute
        .further
        .iter()
        .map(|d| d.clone().autodiff())
        .collect();
    let mut net = model::load(model_cfg, dims, init_record, &device)?;
    let mut optim = optim::build(opt, &net.params())?;
    let mut ema = tcfg.ema_decay.map(|decay| (net.inference(), decay));

    let mut log = TrainLog {
        epochs: Vec::with_capacity(epochs),
        total_steps,
        best_epoch: None,
        best_val_loss: None,
        final_val_loss: None,
        stopped_early: None,
        skipped_steps: 0,
    };
    let mut loss_scale = LossScale::new(compute.dtype);
    let mut stopping = EarlyStopping::default();
    let mut step = 0;
    let mut epochs_done = 0;
    let mut cursor = None;
    if let Some(bytes) = resume.as_mut().and_then(|r| r.from.take()) {
        let bad = |e: String| TrainError::Resume(e);
        let sections = model::decode_blob(&bytes, RESUME_MAGIC, "resumable checkpoint")?;
        let ckpt = Checkpoint::decode(sections.get(b"CKPT")?)?;
        let c: Cursor = serde_json::from_slice(sections.get(b"CURS")?)
            .map_err(|e| bad(format!("unreadable cursor: {e}")))?;
        let m = &ckpt.meta;
        if (
            m.model.as_str(),
            m.optimizer.as_str(),
            m.dims,
            m.seed,
            m.ema_decay,
        ) != (&model_cfg.kind, &opt.kind, dims, seed, tcfg.ema_decay)
        {
            return Err(bad("it belongs to another run".into()));
        }
        net = model::load(model_cfg, dims, &ckpt.weights, &device)?;
        optim = optim
            .from_bytes(Bytes::from_bytes_vec(ckpt.optimizer))
            .map_err(|e| bad(format!("optimizer state: {e}")))?;
        if let (Some(bytes), Some(decay)) = (&ckpt.ema, tcfg.ema_decay) {
            ema = Some((
                model::load(model_cfg, dims, bytes, &device)?.inference(),
                decay,
            ));
        }
        step = m.step;
        epochs_done = m.epochs;
        log.epochs = c
            .epochs
            .iter()
            .map(|&(epoch, step, train_loss, val_loss, lr, sps)| EpochLog {
                epoch,
                step,
                train_loss: f64::from_bits(train_loss),
                val_loss: unbits(val_loss),
                lr: f64::from_bits(lr),
                samples_per_sec: f64::from_bits(sps),
            })
            .collect();
        log.best_epoch = c.best_epoch;
        log.best_val_loss = unbits(c.best_val_loss);
        log.final_val_loss = unbits(c.final_val_loss);
        log.skipped_steps = c.skipped_steps;
        stopping = EarlyStopping {
            best: unbits(c.stopping.0),
            bad_epochs: c.stopping.1,
        };
        schedule.set_state(
            f64::from_bits(c.plateau.0),
            unbits(c.plateau.1),
            c.plateau.2,
        );
        loss_scale.scale = f64::from_bits(c.loss_scale.0);
        loss_scale.clean_steps = c.loss_scale.1;
        cursor = Some(c);
    }
    let every = tcfg.checkpoint_every.filter(|&k| k > 0);
    let _running = resume.is_some().then(RunningGuard::new);
    for epoch in cursor.as_ref().map_or(1, |c| c.epoch)..=epochs {
        let diverged = |what: String, step: usize| TrainError::Diverged { epoch, step, what };
        let order = permutation(n, stream(seed, SHUFFLE_STREAM, epoch as u64));
        let micro_batches: Vec<&[usize]> = order.chunks(tcfg.batch_size).collect();
        let started = Instant::now();
        let (mut loss_sum, mut seen, mut lr) = (0.0, 0usize, 0.0);
        let mut first_group = 0;
        if let Some(c) = cursor.take() {
            (loss_sum, seen, lr) = (f64::from_bits(c.loss_sum), c.seen, f64::from_bits(c.lr));
            first_group = c.group;
        }
        for (g, group) in micro_batches.chunks(accum).enumerate().skip(first_group) {
            if step == total_steps {
                break;
            }
            let windows: usize = group.iter().map(|b| b.len()).sum();
            let mut grads: Option<GradientsParams> = None;
            let mut step_loss = 0.0;
            // Reduced precision: a working copy of the f32 master weights in that format,
            // made once per optimizer step (the weights do not change between micro-batches).
            let working = compute.dtype.map(|dtype| net.cast(dtype));
            let forward_net = working.as_deref().unwrap_or(net.as_ref());
            // Data parallel: a replica of the weights on every further device, made once
            // per optimizer step like the working copy.
            let replicas = replicate(net.as_ref(), model_cfg, dims, &shard_devices, compute.dtype)?;
            let mut shards: Vec<(&dyn Net, &Device)> = vec![(forward_net, &device)];
            shards.extend(replicas.iter().map(|r| r.as_ref()).zip(&shard_devices));
            for (j, indices) in group.iter().enumerate() {
                // Dropout draws are a function of the micro-batch; with one micro-batch per
                // step, of the step, as before accumulation existed.
                let micro = (step * accum + j) as u64;
                let dropout = stream(seed, DROPOUT_STREAM, micro);
                // Seeding is drawing's business: a training that draws nothing must not
                // reseed the RNG under one that does (it does not hold the lock).
                if draws {
                    device.seed(dropout);
                    for (k, further) in shard_devices.iter().enumerate() {
                        further.seed(stream(dropout, SHARD_STREAM, k as u64 + 1));
                    }
                }
                let micro_batch = MicroBatch {
                    split: &dataset.train,
                    indices,
                    dims,
                    targets: &targets,
                    dtype: compute.dtype,
                    step_windows: windows,
                    loss_scale: loss_scale.scale,
                };
                let (share_of_loss, more) = micro_batch
                    .gradients(net.as_ref(), &shards)
                    .map_err(|value| diverged(format!("the loss is {value}"), step + 1))?;
                grads = Some(match grads {
                    Some(sum) => net.add_gradients(sum, more),
                    None => more,
                });
                step_loss += share_of_loss;
            }
            drop(shards);
            drop(replicas);
            drop(working);
            let Some(mut grads) = grads else { continue };
            let norm = net.clip_grad_norm(&mut grads, tcfg.grad_clip);
            if !norm.is_finite() {
                if loss_scale.back_off() {
                    log.skipped_steps += 1;
                    continue;
                }
                return Err(diverged(format!("the gradient norm is {norm}"), step + 1));
            }
            loss_scale.grow();
            lr = schedule.lr(step);
            net = net.step(&mut optim, lr, grads);
            if let Some((average, decay)) = ema.take() {
                ema = Some((average.ema_step(net.as_ref(), decay), decay));
            }
            step += 1;
            loss_sum += step_loss * windows as f64;
            seen += windows;
            progress(&Progress {
                epoch,
                epochs,
                step,
                total_steps,
                loss: step_loss,
                samples_per_sec: per_sec(seen, started),
                finished_epoch: None,
            });
            let interrupted = resume.is_some() && INTERRUPTED.load(Ordering::SeqCst);
            if let Some(r) = resume.as_mut()
                && (interrupted || every.is_some_and(|k| step % k == 0))
            {
                let cursor = Cursor {
                    epoch,
                    group: g + 1,
                    loss_sum: loss_sum.to_bits(),
                    seen,
                    lr: lr.to_bits(),
                    epochs: log
                        .epochs
                        .iter()
                        .map(|l| {
                            let sps = l.samples_per_sec.to_bits();
                            let v = bits(l.val_loss);
                            (
                                l.epoch,
                                l.step,
                                l.train_loss.to_bits(),
                                v,
                                l.lr.to_bits(),
                                sps,
                            )
                        })
                        .collect(),
                    best_epoch: log.best_epoch,
                    best_val_loss: bits(log.best_val_loss),
                    final_val_loss: bits(log.final_val_loss),
                    skipped_steps: log.skipped_steps,
                    stopping: (bits(stopping.best), stopping.bad_epochs),
                    plateau: {
                        let (scale, best, bad) = schedule.state();
                        (scale.to_bits(), bits(best), bad)
                    },
                    loss_scale: (loss_scale.scale.to_bits(), loss_scale.clean_steps),
                };
                let ckpt = Checkpoint {
                    meta: CheckpointMeta {
                        model: model_cfg.kind.clone(),
                        optimizer: opt.kind.clone(),
                        dims,
                        step,
                        epochs: epochs_done,
                        seed,
                        target_std: targets.std.clone(),
                        ema_decay: tcfg.ema_decay,
                    },
                    weights: net.weights()?,
                    optimizer: optimizer_bytes(&optim)?,
                    ema: ema.as_ref().map(|(a, _)| a.weights()).transpose()?,
                };
                // A struct of numbers: serialisation cannot fail.
                let cursor = serde_json::to_vec(&cursor).unwrap_or_default();
                let sections: [([u8; 4], &[u8]); 2] =
                    [(*b"CKPT", &ckpt.encode()), (*b"CURS", &cursor)];
                (r.save)(step, model::encode_blob(RESUME_MAGIC, &sections))
                    .map_err(TrainError::Resume)?;
                if interrupted {
                    return Err(TrainError::Interrupted(step));
                }
            }
        }
        epochs_done = epoch;
        let samples_per_sec = per_sec(seen, started);
        let evaluated = ema
            .as_ref()
            .map_or(net.as_ref(), |(average, _)| average.as_ref());
        let val_loss = mean_loss(evaluated, &dataset.val, dims, &targets, &compute.device)?;
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
        schedule.end_epoch(val_loss);
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
        if let (Some(patience), Some(v)) = (tcfg.patience, val_loss)
            && stopping.should_stop(v, patience, tcfg.min_delta())
            && epoch < epochs
        {
            log.stopped_early = Some(epoch);
            break;
        }
    }

    if let Some(path) = net.non_finite_param() {
        return Err(TrainError::Diverged {
            epoch: epochs_done,
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
            epochs: epochs_done,
            seed,
            target_std: targets.std,
            ema_decay: tcfg.ema_decay,
        },
        weights: net.weights()?,
        optimizer: optimizer_bytes(&optim)?,
        ema: ema.map(|(average, _)| average.weights()).transpose()?,
    };
    Ok(TrainOutput {
        checkpoint: checkpoint.encode(),
        log,
    })
}

/// Marks a resumable training as running, so Ctrl-C asks it to stop instead of exiting.
struct RunningGuard;

impl RunningGuard {
    fn new() -> RunningGuard {
        RESUMABLE_RUNNING.store(true, Ordering::SeqCst);
        RunningGuard
    }
}

impl Drop for RunningGuard {
    fn drop(&mut self) {
        RESUMABLE_RUNNING.store(false, Ordering::SeqCst);
    }
}

/// The device a run computes on and the float format of its forward and backward passes
/// (`None`: f32 throughout).
struct Compute {
    /// Without autodiff; training adds it. The first of `training.devices`: it holds the
    /// master weights and the optimizer, and validates.
    device: Device,
    /// The other devices of `training.devices` (data parallel); empty on one device.
    further: Vec<Device>,
    dtype: Option<FloatDType>,
}

/// Opens `training.device` (and every device of `training.devices`) and checks it can
/// compute in `training.precision`. Backends missing from this build are config errors (the
/// loader reports them before anything runs); this repeats the check for configs built in
/// code.
fn open_device(t: &TrainingConfig) -> Result<Compute, TrainError> {
    let config = |(key, message): (String, String)| TrainError::Config(format!("{key}: {message}"));
    let backend = t.backend().map_err(config)?;
    let (device, further) = if t.devices == Devices::default() {
        // One device: exactly the device `training.device` names.
        (open_backend(backend, None)?, Vec::new())
    } else {
        let indices = t.devices.indices();
        let available = device_count(backend)?;
        if let Some(&missing) = indices.iter().find(|&&i| i >= available) {
            return Err(TrainError::Config(format!(
                "training.devices: asks for {} device {missing}, but this machine has {available}                  {} device(s) (indices 0..{available}); list fewer devices",
                backend.kind(),
                backend.kind(),
            )));
        }
        let mut opened = indices
            .iter()
            .map(|&i| open_backend(backend, Some(i)))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter();
        let Some(first) = opened.next() else {
            return Err(TrainError::Config(
                "training.devices: must name at least one device".into(),
            ));
        };
        (first, opened.collect())
    };
    let dtype = match t.precision {
        Precision::F32 => None,
        Precision::Bf16 => Some(FloatDType::BF16),
        Precision::F16 => Some(FloatDType::F16),
    };
    if let Some(dtype) = dtype
        && (!backend.trains_in(t.precision)
            || !std::iter::once(&device)
                .chain(&further)
                .all(|d| d.supports_dtype(DType::from(dtype))))
    {
        return Err(TrainError::Config(format!(
            "training.precision: the {} device cannot compute in {}; use f32",
            t.device,
            t.precision.name()
        )));
    }
    Ok(Compute {
        device,
        further,
        dtype,
    })
}

/// Device `index` of `backend` (`None`: the one `training.device` names).
fn open_backend(backend: Backend, index: Option<usize>) -> Result<Device, TrainError> {
    let _ = index;
    Ok(match backend {
        Backend::Cpu => Device::flex(),
        #[cfg(feature = "wgpu")]
        Backend::Wgpu => match index {
            None => Device::wgpu(burn::tensor::DeviceKind::DefaultDevice),
            // wgpu's own numbering is per adapter type: take the index-th adapter listed.
            Some(i) => wgpu_devices()?.into_iter().nth(i).ok_or_else(|| {
                TrainError::Config(format!("training.devices: no wgpu device {i}"))
            })?,
        },
        #[cfg(feature = "cuda")]
        Backend::Cuda(named) => Device::cuda(index.unwrap_or(named)),
        #[allow(unreachable_patterns)]
        other => {
            return Err(TrainError::Config(format!(
                "training.device: the {kind} backend is not compiled into this build; rebuild \
                 with `--features {kind}`",
                kind = other.kind(),
            )));
        }
    })
}

/// How many devices `backend` has on this machine. Enumerating a GPU runtime without a
/// driver can panic inside it: that is an error here, not a crash.
fn device_count(backend: Backend) -> Result<usize, TrainError> {
    let listed = std::panic::catch_unwind(|| -> Result<usize, TrainError> {
        Ok(match backend {
            Backend::Cpu => 1,
            #[cfg(feature = "wgpu")]
            Backend::Wgpu => wgpu_devices()?.len(),
            #[cfg(feature = "cuda")]
            Backend::Cuda(_) => Device::enumerate(burn::tensor::DeviceType::Cuda).len(),
            #[allow(unreachable_patterns)]
            _ => 0,
        })
    });
    listed.unwrap_or_else(|_| {
        Err(TrainError::Config(format!(
            "training.devices: listing the {} devices failed (no driver or no device?)",
            backend.kind()
        )))
    })
}

#[cfg(feature = "wgpu")]
fn wgpu_devices() -> Result<Vec<Device>, TrainError> {
    Ok(Device::enumerate(burn::tensor::DeviceType::Wgpu)
        .into_iter()
        .collect())
}

/// A replica of `net`'s weights on each of `devices` (with autodiff), in `dtype` when set:
/// each data-parallel shard differentiates on its own device. The parameter ids are the
/// master's (path ids), so shard gradients add up under the master's ids.
fn replicate(
    net: &dyn Net,
    model_cfg: &ModelConfig,
    dims: Dims,
    devices: &[Device],
    dtype: Option<FloatDType>,
) -> Result<Vec<Box<dyn Net>>, TrainError> {
    if devices.is_empty() {
        return Ok(Vec::new());
    }
    // `Net` moves between devices through its byte-stable record: loading draws nothing.
    let weights = net.weights()?;
    devices
        .iter()
        .map(|device| {
            let replica = model::load(model_cfg, dims, &weights, device)?.with_path_ids();
            Ok(match dtype {
                Some(dtype) => replica.cast(dtype),
                None => replica,
            })
        })
        .collect()
}

/// One micro-batch of an optimizer step, and what its loss is weighted by.
struct MicroBatch<'a> {
    split: &'a Split,
    indices: &'a [usize],
    dims: Dims,
    targets: &'a Targets,
    /// The forward pass's float format (`None`: f32).
    dtype: Option<FloatDType>,
    /// Windows in the whole optimizer step (all its micro-batches).
    step_windows: usize,
    loss_scale: f64,
}

impl MicroBatch<'_> {
    /// The micro-batch's share of the step loss and its gradients, on the first shard's
    /// device. The windows are split into one contiguous shard per `(net, device)` (fewer
    /// when there are fewer windows); each shard's mean loss is weighted by its share of the
    /// step's windows before `backward`, so the summed shard gradients (the all-reduce) are
    /// the average over all windows: the full-batch gradient up to float summation order.
    /// With one shard this is exactly the single-device computation. `Err` holds a
    /// non-finite loss.
    fn gradients(
        &self,
        master: &dyn Net,
        shards: &[(&dyn Net, &Device)],
    ) -> Result<(f64, GradientsParams), f64> {
        // Only a data-parallel step moves gradients between devices.
        let params = if shards.len() > 1 {
            master.params()
        } else {
            Vec::new()
        };
        let per_shard = self.indices.len().div_ceil(shards.len().max(1)).max(1);
        let mut total: Option<(f64, GradientsParams)> = None;
        for (k, (indices, &(net, device))) in self.indices.chunks(per_shard).zip(shards).enumerate()
        {
            let batch = Batch::gather(self.split, indices, self.dims, self.targets, device);
            let x = match self.dtype {
                Some(dtype) => batch.x.cast(dtype),
                None => batch.x,
            };
            // The loss is computed in f32 whatever the precision of the forward pass.
            let out = to_f32(net.train_forward(x, batch.y.clone()), self.dtype);
            let loss = self.targets.train_loss(out, batch.y, batch.q);
            let value = f64::from(loss.clone().into_scalar::<f32>());
            if !value.is_finite() {
                return Err(value);
            }
            let share = indices.len() as f64 / self.step_windows as f64;
            let weight = share * self.loss_scale;
            let loss = if weight == 1.0 {
                loss
            } else {
                loss.mul_scalar(weight)
            };
            let mut more = net.gradients(loss.backward());
            if self.dtype.is_some() {
                more = master.cast_gradients(more, FloatDType::F32, 1.0 / self.loss_scale);
            }
            if k > 0 {
                // All-reduce onto the first device, where the optimizer steps.
                if let Some(&(_, first)) = shards.first() {
                    more = move_gradients(more, &params, first);
                }
            }
            total = Some(match total {
                Some((sum, grads)) => (sum + value * share, master.add_gradients(grads, more)),
                None => (value * share, more),
            });
        }
        Ok(total.unwrap_or_else(|| (0.0, GradientsParams::new())))
    }
}

/// `grads` with every parameter's gradient moved to `device`.
fn move_gradients(
    mut grads: GradientsParams,
    params: &[model::ParamMeta],
    device: &Device,
) -> GradientsParams {
    fn moved<const D: usize>(
        grads: &mut GradientsParams,
        id: burn::module::ParamId,
        device: &Device,
    ) {
        if let Some(g) = grads.remove::<D>(id) {
            grads.register::<D>(id, g.to_device(device));
        }
    }
    for p in params {
        match p.rank {
            1 => moved::<1>(&mut grads, p.id, device),
            2 => moved::<2>(&mut grads, p.id, device),
            3 => moved::<3>(&mut grads, p.id, device),
            4 => moved::<4>(&mut grads, p.id, device),
            5 => moved::<5>(&mut grads, p.id, device),
            _ => moved::<6>(&mut grads, p.id, device),
        }
    }
    grads
}

/// A model's training outputs in f32, for the loss.
fn to_f32(out: TrainForecast, dtype: Option<FloatDType>) -> TrainForecast {
    if dtype.is_none() {
        return out;
    }
    let f32 = |t: Tensor<2>| t.cast(FloatDType::F32);
    TrainForecast {
        action: f32(out.action),
        price: match out.price {
            PriceTerm::Forecast(p) => PriceTerm::Forecast(f32(p)),
            PriceTerm::Loss(l) => PriceTerm::Loss(l.cast(FloatDType::F32)),
        },
    }
}

/// Dynamic loss scaling for f16, whose range is too small for raw gradients: the loss is
/// multiplied by `scale` before the backward pass and the gradients divided by it after.
/// An overflow halves the scale and skips the step; 2000 clean steps in a row double it.
/// Other precisions use a fixed scale of 1, and an overflow is a divergence.
#[derive(Debug)]
struct LossScale {
    dynamic: bool,
    scale: f64,
    clean_steps: usize,
}

impl LossScale {
    const INITIAL: f64 = 65_536.0;
    const GROWTH_INTERVAL: usize = 2000;

    fn new(dtype: Option<FloatDType>) -> LossScale {
        let dynamic = dtype == Some(FloatDType::F16);
        LossScale {
            dynamic,
            scale: if dynamic { Self::INITIAL } else { 1.0 },
            clean_steps: 0,
        }
    }

    /// After an overflow: whether to skip the step and retry at half the scale (`false`:
    /// the overflow is a divergence).
    fn back_off(&mut self) -> bool {
        if !self.dynamic || self.scale <= 1.0 {
            return false;
        }
        self.scale /= 2.0;
        self.clean_steps = 0;
        true
    }

    fn grow(&mut self) {
        if !self.dynamic {
            return;
        }
        self.clean_steps += 1;
        if self.clean_steps == Self::GROWTH_INTERVAL {
            self.scale = (self.scale * 2.0).min(Self::INITIAL * 256.0);
            self.clean_steps = 0;
        }
    }
}

/// Early stopping on the validation loss: stop once `patience` epochs in a row failed to
/// beat the best loss so far by more than `min_delta`.
#[derive(Debug, Default)]
struct EarlyStopping {
    best: Option<f64>,
    bad_epochs: usize,
}

impl EarlyStopping {
    fn should_stop(&mut self, val_loss: f64, patience: usize, min_delta: f64) -> bool {
        match self.best {
            Some(best) if val_loss >= best - min_delta => {
                self.bad_epochs += 1;
                self.bad_epochs >= patience
            }
            _ => {
                self.best = Some(val_loss);
                self.bad_epochs = 0;
                false
            }
        }
    }
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

    /// [`loss`](Targets::loss) of a training pass: the price term is the squared error of
    /// a point forecast, or the model's own loss (a diffusion model's noise error).
    fn train_loss(&self, out: TrainForecast, y: Tensor<2>, q: Tensor<2>) -> Tensor<1> {
        let ce = (log_softmax(out.action, 1) * q).sum_dim(1).mean().neg();
        let price = match out.price {
            PriceTerm::Forecast(p) => (p - y).square().mean(),
            PriceTerm::Loss(l) => l,
        };
        ce + price.mul_scalar(self.price_weight)
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

/// Mean loss over a split with dropout off, in f32 on `device`; `None` for an empty split.
fn mean_loss(
    net: &dyn Net,
    split: &Split,
    dims: Dims,
    targets: &Targets,
    device: &Device,
) -> Result<Option<f64>, TrainError> {
    if split.n == 0 {
        return Ok(None);
    }
    let net = net.inference();
    let all: Vec<usize> = (0..split.n).collect();
    let mut sum = 0.0;
    for indices in all.chunks(model::INFERENCE_BATCH) {
        let batch = Batch::gather(split, indices, dims, targets, device);
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
/// Dropout seeds of the further devices of a data-parallel step, from the micro-batch's.
const SHARD_STREAM: u64 = 3;

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
    use crate::model::tests::{cfg, label, pools_mean, variants};
    use crate::optim::OPTIMIZER_NAMES;

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
            batch_size,
            warmup_steps: Some(0),
            min_lr_ratio: Some(1.0),
            ..TrainingConfig::default()
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

    fn quiet(m: ModelConfig) -> ModelConfig {
        ModelConfig {
            dropout: 0.0,
            num_layers: 1,
            ..m
        }
    }

    #[test]
    fn each_model_trains_and_its_loss_falls() {
        let data = toy_dataset([64, 16, 8], 1);
        for m in variants() {
            let out = run(&data, &quiet(m.clone()), &opt(1e-2), &tcfg(10, 16), 3).unwrap();
            let log = &out.log;
            let (first, last) = (&log.epochs[0], &log.epochs[9]);
            let name = label(&m);
            assert!(last.train_loss < 0.8 * first.train_loss, "{name}: {log:#?}");
            assert_eq!((log.total_steps, last.step), (40, 40));
            assert!(log.best_epoch.is_some() && log.final_val_loss == last.val_loss);
        }
    }

    /// A learning rate each optimizer makes progress with on the toy problem.
    fn optimizer(kind: &str) -> OptimizerConfig {
        let lr = match kind {
            "sgd" => 0.1,
            "lion" => 5e-3,
            "muon" => 3e-2,
            _ => 1e-2,
        };
        OptimizerConfig {
            kind: kind.to_string(),
            lr,
            weight_decay: 0.01,
            ..OptimizerConfig::default()
        }
    }

    /// The old system's `test_all_optimizers`, for real: every model with every optimizer
    /// trains, its loss falls, and two runs (on 1 and 2 threads) give identical bytes.
    #[test]
    fn every_model_with_every_optimizer_trains_deterministically() {
        let data = toy_dataset([24, 8, 0], 7);
        let t = TrainingConfig {
            warmup_steps: Some(2),
            min_lr_ratio: Some(0.5),
            ..tcfg(10, 8)
        };
        let in_pool = |threads: usize, m: &ModelConfig, o: &OptimizerConfig| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| run(&data, m, o, &t, 5))
        };
        let mut slow = Vec::new();
        // Every model type; the transformer's pooling and position variants are covered by
        // the per-model tests.
        let models = model::MODEL_NAMES.iter().map(|kind| cfg(kind));
        for m in models {
            let m = quiet(m);
            for kind in OPTIMIZER_NAMES {
                let name = format!("{} + {kind}", label(&m));
                let o = optimizer(kind);
                let one = in_pool(1, &m, &o).unwrap_or_else(|e| panic!("{name}: {e}"));
                let log = &one.log;
                let (first, last) = (&log.epochs[0], &log.epochs[log.epochs.len() - 1]);
                if last.train_loss >= 0.9 * first.train_loss {
                    slow.push(format!(
                        "{name}: loss {:.4} -> {:.4}",
                        first.train_loss, last.train_loss
                    ));
                }
                let ckpt = Checkpoint::decode(&one.checkpoint).unwrap();
                assert_eq!(ckpt.meta.optimizer, *kind);
                assert!(
                    !read_optimizer(&ckpt.optimizer).unwrap().is_empty(),
                    "{name}"
                );
                let two = in_pool(2, &m, &o).unwrap();
                assert!(
                    one.checkpoint == two.checkpoint,
                    "{name}: 1 and 2 threads differ"
                );
            }
        }
        assert!(
            slow.is_empty(),
            "the loss hardly fell:\n{}",
            slow.join("\n")
        );
    }

    /// Every parameter gets a non-zero gradient from the training objective (after three
    /// steps: adaLN-Zero layers pass no gradient until their zero weights have moved), and
    /// a handful of windows can be fitted almost exactly: the forecast of the trained model
    /// (for `dit`, the mean of its samples) on them has a loss near zero.
    #[test]
    fn each_model_overfits_a_handful_of_windows() {
        let data = toy_dataset([4, 0, 0], 2);
        let dims = Dims::of(&data);
        let targets = Targets {
            std: target_std(&data.train, 2),
            smoothing: 0.0,
            price_weight: 0.5,
        };
        for m in variants() {
            let kind = label(&m);
            let model_cfg = quiet(m);
            let device = Device::flex().autodiff();
            let mut net = model::build(&model_cfg, dims, 1, &device).unwrap();
            let mut optim = optim::build(&opt(1e-2), &net.params()).unwrap();
            let batch = Batch::gather(&data.train, &[0, 1, 2, 3], dims, &targets, &device);
            // Dropout and diffusion noise draw from burn's process-wide RNG: hold its lock
            // (after `build`, which takes it too) so parallel tests keep their draws.
            let rng = model::rng_lock();
            for step in 0..4 {
                device.seed(step);
                let out = net.train_forward(batch.x.clone(), batch.y.clone());
                let loss = targets.train_loss(out, batch.y.clone(), batch.q.clone());
                let grads = net.gradients(loss.backward());
                if step == 3 {
                    for p in net.params() {
                        let norm = grad_norm(&grads, &p);
                        assert!(norm > 0.0, "{kind}: no gradient reaches {}", p.path);
                    }
                }
                net = net.step(&mut optim, 1e-2, grads);
            }
            drop(rng);

            // A diffusion model learns the mean only through noise-prediction errors at
            // random noise levels: it needs more steps, and its forecast is an average of
            // samples, not an exact fit.
            let (epochs, tolerance) = if model_cfg.kind == "dit" {
                (400, 0.05)
            } else {
                (150, 0.02)
            };
            // The default sampler: the tests' few samples and steps average too coarsely.
            let model_cfg = crate::model::tests::default_sampler(model_cfg);
            let t = TrainingConfig {
                label_smoothing: 0.0,
                grad_clip: 0.0,
                ..tcfg(epochs, 4)
            };
            let out = run(&data, &model_cfg, &opt(1e-2), &t, 5).unwrap();
            let ckpt = Checkpoint::decode(&out.checkpoint).unwrap();
            let trained = model::load(&model_cfg, dims, &ckpt.weights, &Device::flex()).unwrap();
            let fit = mean_loss(
                trained.as_ref(),
                &data.train,
                dims,
                &targets,
                &Device::flex(),
            )
            .unwrap()
            .unwrap();
            assert!(fit < tolerance, "{kind}: loss on the fitted windows {fit}");
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

    /// A gradient as flat f32 values, for comparing two gradient sets.
    fn flat_grad(grads: &GradientsParams, p: &crate::model::ParamMeta) -> Vec<f32> {
        fn values<const D: usize>(g: Option<Tensor<D>>) -> Vec<f32> {
            g.map_or_else(Vec::new, |g| g.into_data().iter::<f32>().collect())
        }
        match p.rank {
            1 => values(grads.get::<1>(p.id)),
            2 => values(grads.get::<2>(p.id)),
            _ => values(grads.get::<3>(p.id)),
        }
    }

    /// The data-parallel gradient path, run with N logical shards on one flex device (the
    /// config refuses N > 1 on cpu; the arithmetic is the same on any device): weights
    /// replicated through `replicate`, shard gradients moved and summed, equal the
    /// full-batch gradient within float tolerance. One shard is bit-identical to the
    /// single-device computation written out (forward, loss, backward on the whole batch).
    #[test]
    fn sharded_gradients_average_to_the_full_batch_gradient() {
        let data = toy_dataset([11, 0, 0], 5);
        let dims = Dims::of(&data);
        let targets = Targets {
            std: target_std(&data.train, 2),
            smoothing: 0.1,
            price_weight: 0.5,
        };
        // 11 windows: shards of uneven sizes (6 + 5, 4 + 4 + 3, ...).
        let indices: Vec<usize> = (0..11).collect();
        for kind in ["mlp", "lstm"] {
            let model_cfg = quiet(cfg(kind));
            let device = Device::flex().autodiff();
            let net = model::build(&model_cfg, dims, 7, &device).unwrap();
            let params = net.params();
            let micro = MicroBatch {
                split: &data.train,
                indices: &indices,
                dims,
                targets: &targets,
                dtype: None,
                step_windows: indices.len(),
                loss_scale: 1.0,
            };
            let batch = Batch::gather(&data.train, &indices, dims, &targets, &device);
            let out = net.train_forward(batch.x, batch.y.clone());
            let loss = targets.train_loss(out, batch.y, batch.q);
            let value = f64::from(loss.clone().into_scalar::<f32>());
            let full = net.gradients(loss.backward());

            let (one_value, one) = micro
                .gradients(net.as_ref(), &[(net.as_ref(), &device)])
                .unwrap();
            assert_eq!(one_value.to_bits(), value.to_bits(), "{kind}");
            for p in &params {
                let (a, b) = (flat_grad(&one, p), flat_grad(&full, p));
                assert!(!a.is_empty(), "{kind}: no gradient for {}", p.path);
                let same = a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits());
                assert!(
                    same,
                    "{kind}: one shard differs from one device at {}",
                    p.path
                );
            }

            for n in [2, 3, 4, 11] {
                let further = vec![Device::flex().autodiff(); n - 1];
                let replicas = replicate(net.as_ref(), &model_cfg, dims, &further, None).unwrap();
                let mut shards: Vec<(&dyn Net, &Device)> = vec![(net.as_ref(), &device)];
                shards.extend(replicas.iter().map(|r| r.as_ref()).zip(&further));
                let (sharded_value, sharded) = micro.gradients(net.as_ref(), &shards).unwrap();
                assert!(
                    (sharded_value - value).abs() <= 1e-6 * value.abs(),
                    "{kind}, {n} shards: loss {sharded_value} vs {value}"
                );
                for p in &params {
                    let (a, b) = (flat_grad(&sharded, p), flat_grad(&full, p));
                    assert_eq!(a.len(), b.len(), "{kind}, {n} shards: {}", p.path);
                    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-3);
                    let worst = a
                        .iter()
                        .zip(&b)
                        .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
                    assert!(
                        worst <= 1e-5 * scale,
                        "{kind}, {n} shards: {} differs by {worst} (scale {scale})",
                        p.path
                    );
                }
            }
        }
    }

    /// `training.devices` > 1 on the one-device cpu backend never reaches the loop.
    #[test]
    fn several_devices_on_cpu_are_a_config_error() {
        let data = toy_dataset([8, 0, 0], 1);
        let t = TrainingConfig {
            devices: Devices::Count(2),
            ..tcfg(1, 4)
        };
        let Err(err) = run(&data, &quiet(cfg("mlp")), &opt(1e-2), &t, 1) else {
            panic!("two devices on cpu trained");
        };
        assert!(matches!(err, TrainError::Config(_)), "{err}");
        assert!(err.to_string().contains("training.devices"), "{err}");
    }

    #[test]
    fn training_is_bit_identical_across_runs_and_thread_counts() {
        let data = toy_dataset([24, 8, 0], 3);
        let in_pool = |threads: usize, m: &ModelConfig| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let t = TrainingConfig {
                max_steps: Some(7),
                warmup_steps: Some(2),
                min_lr_ratio: Some(0.1),
                ..tcfg(1, 8)
            };
            pool.install(|| run(&data, m, &opt(1e-2), &t, 9))
                .unwrap()
                .checkpoint
        };
        for m in variants() {
            let kind = label(&m);
            let one = in_pool(1, &m);
            assert_eq!(one, in_pool(1, &m), "{kind}: two runs differ");
            assert_eq!(one, in_pool(2, &m), "{kind}: 1 and 2 threads differ");
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

    /// Every parameter of a checkpoint's `weights` (or `ema`) record, flattened, by path.
    fn params_of(
        model_cfg: &ModelConfig,
        data: &Dataset,
        record: &[u8],
    ) -> Vec<(String, Vec<f32>)> {
        let net = model::load(model_cfg, Dims::of(data), record, &Device::flex()).unwrap();
        let values = net.flat_params();
        net.params()
            .into_iter()
            .map(|p| {
                let v = values[&p.id].clone().into_data().iter::<f32>().collect();
                (p.path, v)
            })
            .collect()
    }

    fn max_abs_diff(a: &[(String, Vec<f32>)], b: &[(String, Vec<f32>)]) -> f32 {
        a.iter()
            .zip(b)
            .flat_map(|((pa, va), (pb, vb))| {
                assert_eq!(pa, pb);
                va.iter().zip(vb).map(|(x, y)| (x - y).abs())
            })
            .fold(0.0, f32::max)
    }

    /// Two micro-batches of 8 per step match one batch of 16: same loss, same weights, up
    /// to float rounding; the schedule counts optimizer steps.
    #[test]
    fn gradient_accumulation_matches_one_big_batch() {
        let data = toy_dataset([40, 8, 0], 12);
        for m in [cfg("mlp"), cfg("lstm")] {
            let m = quiet(m);
            let big = TrainingConfig {
                warmup_steps: Some(2),
                min_lr_ratio: Some(0.1),
                grad_clip: 0.0,
                ..tcfg(2, 16)
            };
            let small = TrainingConfig {
                batch_size: 8,
                grad_accum_steps: 2,
                ..big.clone()
            };
            let a = run(&data, &m, &opt(1e-2), &big, 4).unwrap();
            let b = run(&data, &m, &opt(1e-2), &small, 4).unwrap();
            // 40 windows: steps of 16, 16 and 8 windows per epoch, either way.
            assert_eq!((a.log.total_steps, b.log.total_steps), (6, 6));
            for (x, y) in a.log.epochs.iter().zip(&b.log.epochs) {
                assert_eq!((x.step, x.lr), (y.step, y.lr));
                assert!((x.train_loss - y.train_loss).abs() < 1e-5, "{x:?} vs {y:?}");
                let (vx, vy) = (x.val_loss.unwrap(), y.val_loss.unwrap());
                assert!((vx - vy).abs() < 1e-5, "{vx} vs {vy}");
            }
            let (ca, cb) = (
                Checkpoint::decode(&a.checkpoint).unwrap(),
                Checkpoint::decode(&b.checkpoint).unwrap(),
            );
            let diff = max_abs_diff(
                &params_of(&m, &data, &ca.weights),
                &params_of(&m, &data, &cb.weights),
            );
            assert!(diff < 1e-5, "{}: weights differ by {diff}", m.kind);
            assert!(
                a.checkpoint != b.checkpoint,
                "accumulation changed nothing at all?"
            );
        }
    }

    #[test]
    fn early_stopping_stops_after_patience_epochs_without_improvement() {
        let data = toy_dataset([24, 8, 0], 13);
        // A rate too small to move the validation loss by min_delta: epoch 1 sets the best,
        // epochs 2 and 3 fail to beat it, patience 2 stops after epoch 3 of 20.
        let t = TrainingConfig {
            patience: Some(2),
            min_delta: Some(0.01),
            ..tcfg(20, 8)
        };
        let out = run(&data, &cfg("mlp"), &opt(1e-7), &t, 2).unwrap();
        assert_eq!(out.log.stopped_early, Some(3));
        assert_eq!(out.log.epochs.len(), 3);
        let ckpt = Checkpoint::decode(&out.checkpoint).unwrap();
        assert_eq!((ckpt.meta.epochs, ckpt.meta.step), (3, 9));
        // A run that keeps improving does not stop.
        let t = TrainingConfig {
            patience: Some(2),
            ..tcfg(4, 8)
        };
        let out = run(&data, &quiet(cfg("mlp")), &opt(1e-2), &t, 2).unwrap();
        assert_eq!((out.log.stopped_early, out.log.epochs.len()), (None, 4));
    }

    #[test]
    fn ema_weights_differ_from_raw_and_are_the_ones_evaluated() {
        let data = toy_dataset([24, 8, 6], 14);
        let m = cfg("mlp");
        let decay = 0.9;
        // One step: the average is exactly decay * init + (1 - decay) * raw.
        let one = TrainingConfig {
            max_steps: Some(1),
            ema_decay: Some(decay),
            ..tcfg(1, 8)
        };
        let out = run(&data, &m, &opt(1e-2), &one, 6).unwrap();
        let ckpt = Checkpoint::decode(&out.checkpoint).unwrap();
        let init = model::init_weights(&m, 6, 3, 4, 2).unwrap();
        let (_, init) = model::read_weights(&init).unwrap();
        let (init, raw, ema) = (
            params_of(&m, &data, init),
            params_of(&m, &data, &ckpt.weights),
            params_of(&m, &data, ckpt.ema.as_deref().unwrap()),
        );
        let mut worst = 0.0f64;
        for ((i, r), e) in init.iter().zip(&raw).zip(&ema) {
            for ((a, b), c) in i.1.iter().zip(&r.1).zip(&e.1) {
                let want = decay * f64::from(*a) + (1.0 - decay) * f64::from(*b);
                worst = worst.max((want - f64::from(*c)).abs());
            }
        }
        assert!(worst < 1e-6, "average off by {worst}");

        let t = TrainingConfig {
            ema_decay: Some(decay),
            ..tcfg(3, 8)
        };
        let out = run(&data, &m, &opt(1e-2), &t, 6).unwrap();
        let ckpt = Checkpoint::decode(&out.checkpoint).unwrap();
        assert_eq!(ckpt.meta.ema_decay, Some(decay));
        let ema = ckpt.ema.clone().unwrap();
        assert!(
            max_abs_diff(
                &params_of(&m, &data, &ema),
                &params_of(&m, &data, &ckpt.weights)
            ) > 1e-4
        );
        // Validation and evaluation read the average.
        let as_plain = |weights: Vec<u8>| {
            Checkpoint {
                meta: CheckpointMeta {
                    ema_decay: None,
                    ..ckpt.meta.clone()
                },
                weights,
                optimizer: ckpt.optimizer.clone(),
                ema: None,
            }
            .encode()
        };
        let predict = |bytes: &[u8]| crate::eval::predict(&data, &m, bytes, &data.test).unwrap();
        let evaluated = predict(&out.checkpoint);
        assert_eq!(evaluated, predict(&as_plain(ema.clone())));
        assert_ne!(evaluated, predict(&as_plain(ckpt.weights.clone())));
        let dims = Dims::of(&data);
        let targets = Targets {
            std: ckpt.meta.target_std.clone(),
            smoothing: t.label_smoothing,
            price_weight: t.price_weight,
        };
        let averaged = model::load(&m, dims, &ema, &Device::flex()).unwrap();
        let val = mean_loss(
            averaged.as_ref(),
            &data.val,
            dims,
            &targets,
            &Device::flex(),
        )
        .unwrap();
        assert_eq!(out.log.final_val_loss, val);
    }

    #[test]
    fn plateau_and_early_stopping_need_validation_windows() {
        let data = toy_dataset([16, 0, 0], 15);
        let t = TrainingConfig {
            schedule: "plateau".into(),
            ..tcfg(2, 8)
        };
        let err = run(&data, &cfg("mlp"), &opt(1e-3), &t, 1).err().unwrap();
        assert!(
            err.to_string().contains("val split has no windows"),
            "{err}"
        );
        let t = TrainingConfig {
            patience: Some(1),
            ..tcfg(2, 8)
        };
        assert!(run(&data, &cfg("mlp"), &opt(1e-3), &t, 1).is_err());
    }

    /// bf16 and f16 forward/backward passes on flex, with f32 master weights: every model
    /// trains, the loss falls, runs are bit-identical across thread counts, and the
    /// checkpoint holds f32 weights that differ from the f32 run's.
    #[test]
    fn reduced_precision_trains_every_model_deterministically() {
        let data = toy_dataset([32, 8, 0], 16);
        let models = variants().into_iter().filter(|m| !pools_mean(m));
        for m in models {
            let m = quiet(m);
            let f32_run = run(&data, &m, &opt(1e-2), &tcfg(10, 8), 3).unwrap();
            for precision in [Precision::Bf16, Precision::F16] {
                let name = format!("{} in {}", label(&m), precision.name());
                let t = TrainingConfig {
                    precision,
                    ..tcfg(10, 8)
                };
                let in_pool = |threads: usize| {
                    let pool = rayon::ThreadPoolBuilder::new()
                        .num_threads(threads)
                        .build()
                        .unwrap();
                    pool.install(|| run(&data, &m, &opt(1e-2), &t, 3))
                        .unwrap_or_else(|e| panic!("{name}: {e}"))
                };
                let one = in_pool(1);
                let (first, last) = (&one.log.epochs[0], &one.log.epochs[9]);
                assert!(
                    last.train_loss < 0.9 * first.train_loss,
                    "{name}: {} -> {}",
                    first.train_loss,
                    last.train_loss
                );
                // f16 may skip a few steps while the loss scale finds its level; bf16 has
                // f32's range and never does.
                let skipped = one.log.skipped_steps;
                match precision {
                    Precision::F16 => assert!(skipped < 10, "{name}: {skipped} skipped"),
                    _ => assert_eq!(skipped, 0, "{name}"),
                }
                assert!(
                    one.checkpoint == in_pool(2).checkpoint,
                    "{name}: threads differ"
                );
                let ckpt = Checkpoint::decode(&one.checkpoint).unwrap();
                let net = model::load(&m, Dims::of(&data), &ckpt.weights, &Device::flex()).unwrap();
                for p in net.flat_params().values() {
                    assert_eq!(p.dtype(), DType::F32, "{name}: master weights are f32");
                }
                assert!(one.checkpoint != f32_run.checkpoint, "{name}: same as f32");
            }
        }
    }

    #[test]
    fn f16_loss_scale_backs_off_on_overflow_and_grows_back() {
        let mut s = LossScale::new(Some(FloatDType::F16));
        assert_eq!(s.scale, 65_536.0);
        assert!(s.back_off());
        assert_eq!(s.scale, 32_768.0);
        for _ in 0..LossScale::GROWTH_INTERVAL {
            s.grow();
        }
        assert_eq!(s.scale, 65_536.0);
        while s.scale > 1.0 {
            assert!(s.back_off());
        }
        assert!(!s.back_off(), "at scale 1 an overflow is a divergence");
        // bf16 and f32 never scale: an overflow is a divergence.
        let mut fixed = LossScale::new(Some(FloatDType::BF16));
        assert_eq!(fixed.scale, 1.0);
        assert!(!fixed.back_off());
    }

    #[test]
    fn a_backend_missing_from_the_build_is_a_clear_error() {
        let data = toy_dataset([8, 0, 0], 17);
        let t = TrainingConfig {
            device: "cuda:1".into(),
            ..tcfg(1, 8)
        };
        if !cfg!(feature = "cuda") {
            let err = run(&data, &cfg("mlp"), &opt(1e-3), &t, 1).err().unwrap();
            assert!(err.to_string().contains("--features cuda"), "{err}");
        }
        let t = TrainingConfig {
            device: "tpu".into(),
            ..tcfg(1, 8)
        };
        let err = run(&data, &cfg("mlp"), &opt(1e-3), &t, 1).err().unwrap();
        assert!(err.to_string().contains("unknown device `tpu`"), "{err}");
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

    /// Resuming from any mid-run checkpoint ends bit-identical to the uninterrupted run,
    /// with dropout, gradient accumulation, a moving average and the plateau schedule.
    #[test]
    fn resuming_from_a_checkpoint_equals_the_uninterrupted_run() {
        let data = toy_dataset([22, 8, 6], 21);
        let m = cfg("mlp");
        assert!(m.dropout > 0.0);
        let t = TrainingConfig {
            grad_accum_steps: 2,
            ema_decay: Some(0.9),
            schedule: "plateau".into(),
            checkpoint_every: Some(2),
            ..tcfg(4, 4)
        };
        let init = model::init_weights(&m, 3, 3, 4, 2).unwrap();
        let go = |from: Option<Vec<u8>>, saved: &mut Vec<(usize, Vec<u8>)>| {
            let mut save = |step: usize, bytes: Vec<u8>| {
                saved.push((step, bytes));
                Ok(())
            };
            let resume = Resume {
                from,
                save: &mut save,
            };
            let out = train_resumable(
                &data,
                &m,
                &opt(1e-2),
                &t,
                3,
                &init,
                &mut |_| {},
                Some(resume),
            );
            let mut out = out.unwrap();
            for e in &mut out.log.epochs {
                e.samples_per_sec = 0.0;
            }
            out
        };
        let mut saved = Vec::new();
        let reference = go(None, &mut saved);
        let steps: Vec<usize> = saved.iter().map(|(s, _)| *s).collect();
        assert_eq!(steps, [2, 4, 6, 8, 10, 12]);
        assert_eq!(
            reference.checkpoint,
            run(&data, &m, &opt(1e-2), &t, 3).unwrap().checkpoint
        );
        for (step, bytes) in saved {
            let mut again = Vec::new();
            let resumed = go(Some(bytes), &mut again);
            assert!(
                resumed.checkpoint == reference.checkpoint,
                "resumed at step {step}"
            );
            assert_eq!(resumed.log, reference.log, "resumed at step {step}");
            assert!(again.iter().all(|(s, _)| *s > step));
        }
    }
}
