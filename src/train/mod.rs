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
//!
//! The loop is here; its parts live beside it: [`batches`] (loss targets, device batches,
//! the validation loss), [`parallel`] (one micro-batch's gradients, sharded over devices),
//! [`devices`] (opening `training.device(s)`), [`precision`] (working copies and loss
//! scaling), [`rng`] (shuffles and dropout seeds) and [`resume`] (mid-run checkpoints and
//! Ctrl-C). The checkpoint formats are [`crate::checkpoint`].

use std::sync::atomic::Ordering;
use std::time::Instant;

use burn::optim::GradientsParams;
use burn::tensor::{Bytes, Device};
use serde::{Deserialize, Serialize};

use crate::checkpoint::{Resumable, optimizer_bytes};
use crate::config::training::Select;
use crate::config::{ModelConfig, OptimizerConfig, TrainingConfig};
use crate::data::Dataset;
use crate::model::{self, Dims, ModelError, Net};
use crate::optim::{self, OptimError};

mod batches;
#[cfg(test)]
mod continue_tests;
mod devices;
mod parallel;
mod precision;
mod resume;
mod rng;
#[cfg(test)]
pub(crate) mod tests;

use batches::{Targets, mean_loss, target_std};
use devices::open_device;
use parallel::{MicroBatch, replicate};
use precision::LossScale;
use rng::{DROPOUT_STREAM, SHARD_STREAM, SHUFFLE_STREAM, permutation, stream};

// The checkpoint format moved to `crate::checkpoint`; these paths stay for callers.
pub use crate::checkpoint::{Checkpoint, CheckpointMeta, read_optimizer};
pub use resume::{INTERRUPTED, RESUMABLE_RUNNING, Resume};

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
    /// The validation loss of the initial weights: epoch 0, before any step. `best_val`
    /// and early stopping count it, so a run that never beats its initialisation keeps it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_val_loss: Option<f64>,
    /// The epoch with the lowest validation loss (earliest on ties; 0 is the initial
    /// weights), and that loss.
    pub best_epoch: Option<usize>,
    pub best_val_loss: Option<f64>,
    /// Validation loss of the last epoch's weights (the moving average with `ema_decay`).
    pub final_val_loss: Option<f64>,
    /// The rule that chose the checkpoint's epoch (`training.select`): `best_val` or `last`;
    /// `last` when `best_val` was asked for but the val split has no windows.
    #[serde(default)]
    pub select: String,
    /// Why `select` is not what `training.select` asked for, when it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub select_note: Option<String>,
    /// The epoch whose weights the checkpoint holds (the ones evaluated), and its
    /// validation loss.
    #[serde(default)]
    pub selected_epoch: Option<usize>,
    #[serde(default)]
    pub selected_val_loss: Option<f64>,
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
    /// With [`Resume::keep_final`]: the `HFT-RSUM` bytes of the finished run's final state
    /// (weights, optimizer state, best epoch, early stopping, the cursor after the last
    /// epoch), from which the same training with more epochs continues ([`may_continue`]).
    pub continuation: Option<Vec<u8>>,
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

/// Optimizer steps per epoch and planned in all for `n` train windows.
fn plan_steps(n: usize, tcfg: &TrainingConfig) -> (usize, usize) {
    let steps_per_epoch = n.div_ceil(tcfg.batch_size).div_ceil(tcfg.grad_accum_steps);
    let total_steps = tcfg
        .max_steps
        .unwrap_or(tcfg.epochs.saturating_mul(steps_per_epoch));
    (steps_per_epoch, total_steps)
}

/// Whether a training of `tcfg` on `dataset` at peak rate `lr` may continue from the final
/// state of the same training with fewer epochs that took `steps` optimizer steps: every
/// one of those steps has the rate it has in this run (the schedule's fixed steps, see
/// [`optim::schedule::Curve::fixed_steps`]). Everything else the loop does in an epoch is a
/// function of (seed, epoch, step) and of the state the continuation carries, so the
/// continued run ends bit-identical to this run from the start. Not with `max_steps`,
/// which makes the length independent of `epochs`.
pub fn may_continue(dataset: &Dataset, lr: f64, tcfg: &TrainingConfig, steps: usize) -> bool {
    let (_, total_steps) = plan_steps(dataset.train.n, tcfg);
    tcfg.max_steps.is_none()
        && steps <= total_steps
        && optim::Scheduler::new(lr, tcfg, total_steps).fixed_steps() >= steps
}

/// Trains from `init_weights` (an [`model::init_weights`] blob) and returns the checkpoint
/// of the selected epoch (`training.select`) and the log. Validation runs after every epoch.
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
    let (steps_per_epoch, total_steps) = plan_steps(n, tcfg);
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

    // `best_val` needs a validation loss; without val windows the last epoch is kept.
    let keep_best = tcfg.select == Select::BestVal && dataset.val.n > 0;
    let mut log = TrainLog {
        // Bounded: `max_steps` can make `epochs` large, and the log grows as it runs.
        epochs: Vec::with_capacity(epochs.min(1024)),
        total_steps,
        initial_val_loss: None,
        best_epoch: None,
        best_val_loss: None,
        final_val_loss: None,
        select: if keep_best {
            Select::BestVal
        } else {
            Select::Last
        }
        .name()
        .to_string(),
        select_note: (tcfg.select == Select::BestVal && !keep_best).then(|| {
            "best_val needs validation windows and the val split has none: \
             the last epoch is kept"
                .to_string()
        }),
        selected_epoch: None,
        selected_val_loss: None,
        stopped_early: None,
        skipped_steps: 0,
    };
    let mut loss_scale = LossScale::new(compute.dtype);
    let mut stopping = EarlyStopping::default();
    let mut step = 0;
    let mut epochs_done = 0;
    let mut cursor = None;
    // Early stopping asked to stop after the last finished epoch (it ends the run unless
    // that was the last epoch; a longer run continuing from this one stops there).
    let mut stop = false;
    // The state at the end of the best epoch so far (with `keep_best`).
    let mut best: Option<Checkpoint> = None;
    // The checkpoint's META but for the step and epoch counts, which change as it runs.
    let meta = CheckpointMeta {
        model: model_cfg.kind.clone(),
        optimizer: opt.kind.clone(),
        dims,
        step: 0,
        epochs: 0,
        seed,
        target_std: targets.std.clone(),
        ema_decay: tcfg.ema_decay,
    };
    if let Some(bytes) = resume.as_mut().and_then(|r| r.from.take()) {
        let bad = |e: String| TrainError::Resume(e);
        let Resumable {
            checkpoint: ckpt,
            cursor: c,
            best: b,
        } = Resumable::decode(&bytes)?;
        best = b;
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
        // A run of another length: its steps must have had the rates they have here.
        if c.total_steps.is_some_and(|t| t != total_steps)
            && (m.step > total_steps || schedule.fixed_steps() < m.step)
        {
            return Err(bad(format!(
                "it comes from a run of {} steps, and the rates of its {} steps under \
                 training.schedule `{}` depend on the run's length ({total_steps} steps here)",
                c.total_steps.unwrap_or_default(),
                m.step,
                tcfg.schedule
            )));
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
        resume::restore(&c, &mut log, &mut stopping, &mut schedule, &mut loss_scale);
        stop = c.stop;
        cursor = Some(c);
    }
    if cursor.is_none() {
        // Epoch 0: the initial weights, scored before any step (a resumed run has this in
        // its cursor). The heads start at zero, so this is the persistence forecast with
        // no preferred action: an epoch must beat it to be selected.
        let v0 = mean_loss(net.as_ref(), &dataset.val, dims, &targets, &compute.device)?;
        if let Some(v) = v0.filter(|v| !v.is_finite()) {
            return Err(TrainError::Diverged {
                epoch: 0,
                step: 0,
                what: format!("the validation loss of the initial weights is {v}"),
            });
        }
        if let Some(v) = v0 {
            log.initial_val_loss = Some(v);
            log.best_epoch = Some(0);
            log.best_val_loss = Some(v);
            stopping.best = Some(v);
            if keep_best {
                best = Some(snapshot(&meta, 0, 0, net.as_ref(), &optim, &ema)?);
            }
        }
    }
    let every = tcfg.checkpoint_every.filter(|&k| k > 0);
    let _running = resume.is_some().then(resume::RunningGuard::new);
    // A shorter run that early stopping asked to stop: this run stops where it did.
    let last_epoch = log.epochs.last().map_or(0, |l| l.epoch);
    if stop && last_epoch < epochs {
        log.stopped_early = Some(last_epoch);
    }
    let first_epoch = cursor.as_ref().map_or(1, |c| c.epoch);
    for epoch in first_epoch..=if stop { 0 } else { epochs } {
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
                let state = Resumable {
                    checkpoint: snapshot(&meta, step, epochs_done, net.as_ref(), &optim, &ema)?,
                    cursor: resume::cursor(
                        (epoch, g + 1),
                        (loss_sum, seen, lr),
                        &log,
                        &stopping,
                        &schedule,
                        &loss_scale,
                        false,
                    ),
                    best: best.clone(),
                };
                (r.save)(step, state.encode()).map_err(TrainError::Resume)?;
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
            if keep_best {
                best = Some(snapshot(
                    &meta,
                    step,
                    epochs_done,
                    net.as_ref(),
                    &optim,
                    &ema,
                )?);
            }
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
        stop = matches!((tcfg.patience, val_loss),
            (Some(patience), Some(v)) if stopping.should_stop(v, patience, tcfg.min_delta()));
        if stop && epoch < epochs {
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
    // The state after the last epoch, with the cursor at the start of the next.
    let mut last = None;
    let mut continuation = None;
    if resume.as_ref().is_some_and(|r| r.keep_final) {
        let state = Resumable {
            checkpoint: snapshot(&meta, step, epochs_done, net.as_ref(), &optim, &ema)?,
            cursor: resume::cursor(
                (epochs_done + 1, 0),
                (0.0, 0, 0.0),
                &log,
                &stopping,
                &schedule,
                &loss_scale,
                stop,
            ),
            best: best.take(),
        };
        continuation = Some(state.encode());
        (last, best) = (Some(state.checkpoint), state.best);
    }
    let checkpoint = match (best, last) {
        (Some(best), _) if keep_best => best,
        (_, Some(last)) => last,
        _ => snapshot(&meta, step, epochs_done, net.as_ref(), &optim, &ema)?,
    };
    (log.selected_epoch, log.selected_val_loss) = if keep_best {
        (log.best_epoch, log.best_val_loss)
    } else {
        (log.epochs.last().map(|l| l.epoch), log.final_val_loss)
    };
    Ok(TrainOutput {
        checkpoint: checkpoint.encode(),
        log,
        continuation,
    })
}

/// The run's state as a checkpoint: `meta` with the step and epoch counts of now.
fn snapshot(
    meta: &CheckpointMeta,
    step: usize,
    epochs: usize,
    net: &dyn Net,
    optim: &burn::optim::ModuleOptimizer,
    ema: &Option<(Box<dyn Net>, f64)>,
) -> Result<Checkpoint, ModelError> {
    Ok(Checkpoint {
        meta: CheckpointMeta {
            step,
            epochs,
            ..meta.clone()
        },
        weights: net.weights()?,
        optimizer: optimizer_bytes(optim)?,
        ema: ema.as_ref().map(|(a, _)| a.weights()).transpose()?,
    })
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

fn per_sec(samples: usize, since: Instant) -> f64 {
    samples as f64 / since.elapsed().as_secs_f64().max(1e-9)
}
