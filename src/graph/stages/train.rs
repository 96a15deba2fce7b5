//! The `train` stage: the trained checkpoint and the training log, with the partial
//! checkpoints an interrupted training resumes from and the final state a longer training
//! continues from (`continuation`). Its version is the model implementation's plus the
//! stage's own, so a kernel change to one model re-runs that model's trainings only.

use std::collections::BTreeMap;

use serde_json::json;

use super::continuation::{self, Found};
use super::{Stage, StageError, StageInputs, StageOutput, load_dataset};
use crate::config::Experiment;
use crate::store::{Digest, PinKind};

/// The train stage's own version, added to the model implementation's.
/// 1: the checkpoint holds the selected epoch's weights (`training.select`, default
/// `best_val`) instead of the last epoch's, and the log records the selected epoch.
/// 2: the initial weights' validation loss is epoch 0 for `best_val` and early stopping: a
/// run that never beats its initial weights keeps them.
/// 3: the same bits on every x86-64 CPU (issue 24): the losses of the log summed in a fixed
/// order, log/softmax/layer norm and the schedules' cosine on the `libm` crate or in a fixed
/// order, gemm's kc pinned, dit's noise by `model::normal`.
const OWN_VERSION: u32 = 3;

/// The trained checkpoint and the training log.
pub struct Train {
    /// The version of a model type's implementation (`model.type`).
    pub model_version: fn(&str) -> u32,
    /// `train`, or `fold_train` for a walk-forward fold (`fold`).
    pub name: &'static str,
    pub fold: Option<usize>,
}

/// The train stage with the model registry's versions.
pub const TRAIN: Train = Train {
    model_version,
    name: "train",
    fold: None,
};

/// The training of walk-forward fold `fold` (`graph::stages::folds`): the train stage on
/// the fold's dataset, under its own name.
pub fn fold_train(fold: usize) -> Train {
    Train {
        model_version,
        name: "fold_train",
        fold: Some(fold),
    }
}

/// The version of the implementation of `model_type`, from the model registry
/// ([`crate::model::ModelSpec::version`], where its history is kept): bumping one model's
/// version re-runs that model's trainings only. A type the registry does not know never gets
/// this far (config validation names it); 0 keeps the function total.
fn model_version(model_type: &str) -> u32 {
    crate::model::implementation_version(model_type).unwrap_or(0)
}

/// `builds/partial-<key>.json`: the latest resumable checkpoint of an unfinished training.
#[derive(serde::Serialize, serde::Deserialize)]
struct Partial {
    step: usize,
    digest: String,
}

impl Stage for Train {
    fn name(&self) -> &'static str {
        self.name
    }

    fn version(&self, e: &Experiment) -> u32 {
        OWN_VERSION + (self.model_version)(&e.model.kind)
    }

    /// The model config is read again to rebuild the architecture the weights fit.
    fn config(&self, e: &Experiment) -> serde_json::Value {
        json!({
            "model": e.model.key_value(),
            "optimizer": e.optimizer.key_value(),
            "training": e.training.key_value(),
            "seed": e.seed,
        })
    }

    fn execute(&self, inputs: &StageInputs) -> Result<StageOutput, StageError> {
        let e = inputs.experiment;
        let weights = inputs.blob(0, "weights")?;
        let dataset = load_dataset(inputs, 1)?;
        let label = match self.fold {
            Some(k) => format!("{} fold {k}", e.name),
            None => e.name.clone(),
        };
        let progress = crate::term::TrainingProgress::new(&label, 0);
        let store = inputs.store;
        // The resumable checkpoint pins its blob until the training ends.
        let partial = inputs.key.map(|k| k.0.clone());
        // A checkpoint left by an interrupted run, if its blob still verifies.
        let resumable = partial
            .as_deref()
            .and_then(|id| store.get_pin_record::<Partial>(PinKind::Checkpoint, id));
        let from = resumable
            .as_ref()
            .and_then(|p| Digest::from_hex(&p.digest))
            .and_then(|d| store.get_blob(&d));
        if let (Some(p), Some(_)) = (&resumable, &from) {
            // Said where it shows: the build's output, or a Slurm job's log.
            progress.epoch(&format!(
                "resuming from the checkpoint of step {} (training.checkpoint_every)",
                p.step
            ));
        }
        // Without one, the final state of this training with fewer epochs, if it may.
        let prefix = (inputs.key.is_some() && continuation::applies(e))
            .then(|| continuation::prefix_key(self, e, &inputs.deps));
        let mut continued = match (&from, &prefix) {
            (None, Some(prefix)) => continuation::find(store, prefix, e, &dataset),
            _ => None,
        };
        if let Some(c) = &continued {
            progress.epoch(&format!(
                "continued from the {}-epoch training (epochs {} -> {})",
                c.epochs, c.last_epoch, e.training.epochs
            ));
        }
        let from = from.or_else(|| continued.as_mut().map(|c| std::mem::take(&mut c.bytes)));
        // The pinned resumable checkpoint: each new one supersedes it, and the finished
        // training supersedes the last.
        let mut pinned: Option<Digest> = partial
            .as_deref()
            .and_then(|id| store.get_pin_record::<Partial>(PinKind::Checkpoint, id))
            .and_then(|p| Digest::from_hex(&p.digest));
        let mut save = |step: usize, bytes: Vec<u8>| -> Result<(), String> {
            let Some(id) = &partial else { return Ok(()) };
            let blob = store.put_blob(&bytes).map_err(|e| e.to_string())?;
            let digest = blob.digest.to_hex();
            store
                .put_pin_record(PinKind::Checkpoint, id, &Partial { step, digest })
                .map_err(|e| e.to_string())?;
            if let Some(old) = pinned.replace(blob.digest)
                && old != blob.digest
            {
                store.discard_checkpoint_blob(&old);
            }
            Ok(())
        };
        let output = crate::train::train_resumable(
            &dataset,
            &e.model,
            &e.optimizer,
            &e.training,
            e.seed,
            &weights,
            &mut |p: &crate::train::Progress| match &p.finished_epoch {
                Some(log) => progress.epoch(&epoch_line(log, p.epochs)),
                None => progress.step(
                    p.epoch,
                    p.step as u64,
                    p.total_steps as u64,
                    p.loss,
                    p.samples_per_sec,
                ),
            },
            Some(crate::train::Resume {
                from,
                save: &mut save,
                keep_final: prefix.is_some(),
            }),
        );
        progress.finish();
        let output = output.map_err(|err| StageError::Failed(err.to_string()))?;
        if let (Some(Found { last_epoch, .. }), Some(stopped)) =
            (&continued, output.log.stopped_early)
            && stopped <= *last_epoch
        {
            progress.epoch(&format!(
                "early stopping ended it after epoch {stopped}, and so ends this training"
            ));
        }
        if let (Some(prefix), Some(key), Some(state)) = (&prefix, inputs.key, &output.continuation)
        {
            let ran = output
                .log
                .epochs
                .last()
                .map_or((0, 0), |l| (l.epoch, l.step));
            let kept =
                continuation::keep(store, prefix, key, (e.training.epochs, ran.0, ran.1), state);
            if let Err(err) = kept {
                crate::term::warn(&format!(
                    "{label}: cannot keep the final state for a longer training: {err}"
                ));
            }
        }
        if let Some(id) = &partial {
            store.remove_pin_record(PinKind::Checkpoint, id);
            // The final checkpoint is an output of its own: the resumable one is dead weight
            // and goes now, not at the next gc.
            if let Some(last) = &pinned {
                store.discard_checkpoint_blob(last);
            }
        }
        // Outputs must be pure functions of the key, so wall-clock figures stay out of the
        // log blob and go to the action record's summary instead.
        let mut log =
            serde_json::to_value(&output.log).map_err(|err| StageError::Failed(err.to_string()))?;
        if let Some(epochs) = log["epochs"].as_array_mut() {
            for epoch in epochs {
                if let Some(o) = epoch.as_object_mut() {
                    o.remove("samples_per_sec");
                }
            }
        }
        let log =
            serde_json::to_vec_pretty(&log).map_err(|err| StageError::Failed(err.to_string()))?;
        let speeds: Vec<f64> = output
            .log
            .epochs
            .iter()
            .map(|l| l.samples_per_sec)
            .collect();
        Ok(StageOutput {
            summary: json!({
                // Steps that ran: early stopping or skipped f16 steps end short.
                "steps": output.log.epochs.last().map(|l| l.step).unwrap_or(0),
                "planned_steps": output.log.total_steps,
                "stopped_early": output.log.stopped_early,
                "best_epoch": output.log.best_epoch,
                "best_val_loss": output.log.best_val_loss,
                "final_val_loss": output.log.final_val_loss,
                // The epoch whose weights the checkpoint holds (the ones evaluated).
                "select": output.log.select,
                "selected_epoch": output.log.selected_epoch,
                "selected_val_loss": output.log.selected_val_loss,
                "samples_per_sec": speeds,
                // The epoch a shorter training had reached when this one continued from
                // it: epochs after it are all this execution trained.
                "continued_from_epoch": continued.as_ref().map(|c| c.last_epoch),
            }),
            blobs: BTreeMap::from([
                ("checkpoint".to_string(), output.checkpoint),
                ("log".to_string(), log),
            ]),
            ..StageOutput::default()
        })
    }
}

fn epoch_line(l: &crate::train::EpochLog, epochs: usize) -> String {
    let val = l
        .val_loss
        .map(|v| format!("{v:.4}"))
        .unwrap_or_else(|| "-".to_string());
    format!(
        "epoch {}/{epochs} step {} train loss {:.4} val loss {val} lr {:.2e} {:.0} samples/s",
        l.epoch, l.step, l.train_loss, l.lr, l.samples_per_sec
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::exec::key_from_inputs;
    use crate::graph::{StageKind, StageSpec};

    fn experiment(model: &str) -> Experiment {
        let mut e = Experiment {
            name: format!("e-{model}"),
            ..Default::default()
        };
        e.model.kind = model.to_string();
        e
    }

    /// The train stage's spec and key for `e`, under the train stage `train`.
    fn train_key(e: &Experiment, train: &Train) -> crate::store::StageKey {
        let plan = crate::graph::plan(e, &[]);
        let planned = plan
            .stages
            .iter()
            .find(|s| s.kind == StageKind::Train)
            .unwrap();
        let spec = StageSpec {
            version: train.version(e),
            ..planned.clone()
        };
        let inputs = vec![("init.weights".to_string(), "00".repeat(32))];
        key_from_inputs(&spec, &inputs)
    }

    #[test]
    fn bumping_one_model_implementation_changes_the_train_keys_of_that_model_only() {
        let bumped = Train {
            name: "train",
            fold: None,
            model_version: |m| {
                if m == "lstm" {
                    model_version(m) + 1
                } else {
                    model_version(m)
                }
            },
        };
        let (lstm, gru) = (experiment("lstm"), experiment("gru"));
        // The plan uses the registry's versions: the same keys as `TRAIN`.
        let plan = crate::graph::plan(&lstm, &[]);
        let spec = plan
            .stages
            .iter()
            .find(|s| s.kind == StageKind::Train)
            .unwrap();
        assert_eq!(spec.version, TRAIN.version(&lstm));
        assert_ne!(train_key(&lstm, &TRAIN), train_key(&lstm, &bumped));
        assert_eq!(train_key(&gru, &TRAIN), train_key(&gru, &bumped));
    }
}
