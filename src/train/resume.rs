//! Resumable training: mid-run checkpoints ([`Resume`]), what the loop's cursor records
//! besides the weights, and the Ctrl-C flags that make a resumable run stop cleanly.

use std::sync::atomic::{AtomicBool, Ordering};

use super::precision::LossScale;
use super::{EarlyStopping, EpochLog, TrainError, TrainLog};
use crate::checkpoint::{Cursor, ResumableError};
use crate::optim::Scheduler;

/// Set by the Ctrl-C handler: a training with a [`Resume`] sink saves a checkpoint and stops
/// with [`TrainError::Interrupted`] after its current step.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);
/// Whether a training that can stop cleanly is running; without one, Ctrl-C exits at once.
pub static RESUMABLE_RUNNING: AtomicBool = AtomicBool::new(false);

/// Mid-run checkpoints for [`train_resumable`](super::train_resumable).
pub struct Resume<'a> {
    /// Bytes once given to `save`: the run continues from there.
    pub from: Option<Vec<u8>>,
    /// Receives `(step, bytes)` every `training.checkpoint_every` optimizer steps and when
    /// interrupted.
    pub save: &'a mut dyn FnMut(usize, Vec<u8>) -> Result<(), String>,
    /// Return the finished run's final resumable state too
    /// ([`TrainOutput::continuation`](super::TrainOutput::continuation)), from which a
    /// longer run of the same training continues.
    pub keep_final: bool,
}

impl From<ResumableError> for TrainError {
    fn from(e: ResumableError) -> TrainError {
        match e {
            ResumableError::Blob(e) => TrainError::Model(e),
            cursor @ ResumableError::Cursor(_) => TrainError::Resume(cursor.to_string()),
        }
    }
}

fn bits(v: Option<f64>) -> Option<u64> {
    v.map(f64::to_bits)
}

fn unbits(v: Option<u64>) -> Option<f64> {
    v.map(f64::from_bits)
}

/// The cursor of a run at `(epoch, group)` (the next optimizer-step group of the epoch)
/// with the epoch's `(loss_sum, seen, lr)` so far; `stop` when early stopping asked to stop
/// after the last finished epoch.
pub(super) fn cursor(
    (epoch, group): (usize, usize),
    (loss_sum, seen, lr): (f64, usize, f64),
    log: &TrainLog,
    stopping: &EarlyStopping,
    schedule: &Scheduler,
    loss_scale: &LossScale,
    stop: bool,
) -> Cursor {
    Cursor {
        epoch,
        group,
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
        initial_val_loss: bits(log.initial_val_loss),
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
        total_steps: Some(log.total_steps),
        stop,
    }
}

/// Puts back what [`cursor`] recorded of the log, early stopping, the plateau schedule and
/// the loss scale (the loop reads the epoch's position and `stop` from the cursor itself).
pub(super) fn restore(
    c: &Cursor,
    log: &mut TrainLog,
    stopping: &mut EarlyStopping,
    schedule: &mut Scheduler,
    loss_scale: &mut LossScale,
) {
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
    log.initial_val_loss = unbits(c.initial_val_loss);
    log.best_epoch = c.best_epoch;
    log.best_val_loss = unbits(c.best_val_loss);
    log.final_val_loss = unbits(c.final_val_loss);
    log.skipped_steps = c.skipped_steps;
    *stopping = EarlyStopping {
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
}

/// Marks a resumable training as running, so Ctrl-C asks it to stop instead of exiting.
pub(super) struct RunningGuard;

impl RunningGuard {
    pub(super) fn new() -> RunningGuard {
        RESUMABLE_RUNNING.store(true, Ordering::SeqCst);
        RunningGuard
    }
}

impl Drop for RunningGuard {
    fn drop(&mut self) {
        RESUMABLE_RUNNING.store(false, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TrainingConfig;
    use crate::model;
    use crate::model::tests::cfg;
    use crate::train::tests::{misleading_dataset, opt, quiet, run, tcfg, toy_dataset};
    use crate::train::train_resumable;

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
                keep_final: false,
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

    /// With `select: best_val` the best epoch's state is part of what a resumed run needs:
    /// resuming at any step after the best epoch still ends with that epoch's bytes.
    #[test]
    fn resuming_after_the_best_epoch_keeps_the_best_epoch() {
        let data = misleading_dataset([24, 8, 0], 16);
        let m = quiet(cfg("mlp"));
        let t = TrainingConfig {
            checkpoint_every: Some(1),
            ema_decay: Some(0.5),
            price_weight: 20.0,
            ..tcfg(4, 8)
        };
        let init = model::init_weights(&m, 5, 3, 4, 2).unwrap();
        let go = |from: Option<Vec<u8>>, saved: &mut Vec<(usize, Vec<u8>)>| {
            let mut save = |step: usize, bytes: Vec<u8>| {
                saved.push((step, bytes));
                Ok(())
            };
            let resume = Resume {
                from,
                save: &mut save,
                keep_final: false,
            };
            let mut out = train_resumable(
                &data,
                &m,
                &opt(5e-2),
                &t,
                5,
                &init,
                &mut |_| {},
                Some(resume),
            )
            .unwrap();
            for e in &mut out.log.epochs {
                e.samples_per_sec = 0.0;
            }
            out
        };
        let mut saved = Vec::new();
        let reference = go(None, &mut saved);
        let b = reference.log.selected_epoch.unwrap();
        assert!(b < 4, "{:?}", reference.log.epochs);
        assert!(reference.checkpoint == run(&data, &m, &opt(5e-2), &t, 5).unwrap().checkpoint);
        // 3 steps an epoch: these come after the best epoch.
        for (step, bytes) in saved.into_iter().filter(|(s, _)| *s > 3 * b) {
            let resumed = go(Some(bytes), &mut Vec::new());
            assert!(
                resumed.checkpoint == reference.checkpoint,
                "resumed at step {step}"
            );
            assert_eq!(resumed.log, reference.log, "resumed at step {step}");
        }
    }
}
