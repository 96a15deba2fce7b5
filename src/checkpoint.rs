//! The checkpoint file formats: `HFT-CKPT` (a trained model: weights, optimizer state,
//! step, seed, target scaling and, with a moving average, its weights) and `HFT-RSUM` (a
//! mid-run checkpoint: an `HFT-CKPT` plus the training loop's cursor and, with
//! `training.select: best_val`, the checkpoint of the best epoch so far).
//!
//! Separate from `train` because more than training reads them: evaluation loads the
//! weights, the audit inspects them, and neither needs the training loop.

use burn::optim::OptimizerRecord;
use burn::tensor::Bytes;
use serde::{Deserialize, Serialize};

use crate::model::{self, Dims, ModelError};

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

/// The optimizer state as burnpack bytes with tensors in name order (burn writes them in
/// hash-map order; reading a pack back yields name order).
pub(crate) fn optimizer_bytes(optim: &burn::optim::ModuleOptimizer) -> Result<Vec<u8>, ModelError> {
    let fail = |e: burn::store::RecordError| {
        ModelError::Blob(format!("cannot serialise the optimizer state: {e}"))
    };
    let bytes = optim.into_bytes().map_err(fail)?;
    let sorted = OptimizerRecord::from_bytes(bytes).map_err(fail)?;
    Ok(sorted.into_bytes().map_err(fail)?.to_vec())
}

/// Reads an optimizer record a training wrote (for resuming and for checks).
pub fn read_optimizer(bytes: &[u8]) -> Result<OptimizerRecord, ModelError> {
    OptimizerRecord::from_bytes(Bytes::from_bytes_vec(bytes.to_vec()))
        .map_err(|e| ModelError::Blob(format!("optimizer state is unreadable: {e}")))
}

/// Where a resumable checkpoint left off, beyond weights, optimizer state and moving
/// average. Floats are kept as bits: JSON need not round-trip them exactly.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Cursor {
    /// The epoch in progress (1-based) and the next optimizer-step group in its shuffle,
    /// which is a pure function of (seed, epoch).
    pub(crate) epoch: usize,
    pub(crate) group: usize,
    pub(crate) loss_sum: u64,
    pub(crate) seen: usize,
    pub(crate) lr: u64,
    /// `(epoch, step, train_loss, val_loss, lr, samples_per_sec)` of finished epochs.
    pub(crate) epochs: Vec<(usize, usize, u64, Option<u64>, u64, u64)>,
    /// The initial weights' validation loss (epoch 0).
    #[serde(default)]
    pub(crate) initial_val_loss: Option<u64>,
    pub(crate) best_epoch: Option<usize>,
    pub(crate) best_val_loss: Option<u64>,
    pub(crate) final_val_loss: Option<u64>,
    pub(crate) skipped_steps: usize,
    pub(crate) stopping: (Option<u64>, usize),
    pub(crate) plateau: (u64, Option<u64>, usize),
    pub(crate) loss_scale: (u64, usize),
    /// The optimizer steps the run that wrote it planned (absent in cursors written before
    /// it was recorded, which only ever resume their own run). A run of another length
    /// continues from it only where the schedule's rates of the steps done do not depend
    /// on the length.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) total_steps: Option<usize>,
    /// Early stopping asked to stop after the last finished epoch. Set only in the final
    /// state of a finished run: a longer run continuing from it stops there too, as it
    /// would have had it run from the start.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) stop: bool,
}

const RESUME_MAGIC: &[u8; 8] = b"HFT-RSUM";

/// A resumable checkpoint: the state of the run so far and where its loop left off.
#[derive(Debug)]
pub(crate) struct Resumable {
    pub(crate) checkpoint: Checkpoint,
    pub(crate) cursor: Cursor,
    /// The state at the end of the best epoch so far, which becomes the run's checkpoint
    /// with `training.select: best_val`: a resumed run must end with the same one.
    pub(crate) best: Option<Checkpoint>,
}

/// Why a resumable checkpoint could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ResumableError {
    /// The container or its checkpoint is damaged.
    #[error(transparent)]
    Blob(#[from] ModelError),
    /// The cursor section is not the JSON [`Cursor`].
    #[error("unreadable cursor: {0}")]
    Cursor(String),
}

impl Resumable {
    /// Layout: the container of `model/blob.rs` with magic `HFT-RSUM` and sections `CKPT`
    /// ([`Checkpoint::encode`] bytes), `CURS` (JSON [`Cursor`]) and, when there is one,
    /// `BEST` (the best epoch's [`Checkpoint::encode`] bytes).
    pub(crate) fn encode(&self) -> Vec<u8> {
        // A struct of numbers: serialisation cannot fail.
        let cursor = serde_json::to_vec(&self.cursor).unwrap_or_default();
        let checkpoint = self.checkpoint.encode();
        let best = self.best.as_ref().map(Checkpoint::encode);
        let mut sections: Vec<([u8; 4], &[u8])> =
            vec![(*b"CKPT", &checkpoint), (*b"CURS", &cursor)];
        if let Some(best) = &best {
            sections.push((*b"BEST", best));
        }
        model::encode_blob(RESUME_MAGIC, &sections)
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Resumable, ResumableError> {
        let sections = model::decode_blob(bytes, RESUME_MAGIC, "resumable checkpoint")?;
        let checkpoint = Checkpoint::decode(sections.get(b"CKPT")?)?;
        let cursor = serde_json::from_slice(sections.get(b"CURS")?)
            .map_err(|e| ResumableError::Cursor(e.to_string()))?;
        // Absent when no epoch had a validation loss yet (or with `select: last`).
        let best = match sections.get(b"BEST") {
            Ok(bytes) => Some(Checkpoint::decode(bytes)?),
            Err(_) => None,
        };
        Ok(Resumable {
            checkpoint,
            cursor,
            best,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkpoint(ema: Option<Vec<u8>>) -> Checkpoint {
        Checkpoint {
            meta: CheckpointMeta {
                model: "mlp".into(),
                optimizer: "adamw".into(),
                dims: Dims {
                    num_features: 3,
                    sequence_length: 4,
                    horizon: 2,
                },
                step: 7,
                epochs: 3,
                seed: 11,
                target_std: vec![0.5, 1.0],
                ema_decay: ema.as_ref().map(|_| 0.9),
            },
            weights: b"weights".to_vec(),
            optimizer: b"optimizer".to_vec(),
            ema,
        }
    }

    #[test]
    fn a_checkpoint_round_trips_with_and_without_a_moving_average() {
        for ema in [None, Some(b"average".to_vec())] {
            let ckpt = checkpoint(ema);
            let bytes = ckpt.encode();
            assert_eq!(&bytes[..8], CHECKPOINT_MAGIC);
            let back = Checkpoint::decode(&bytes).unwrap();
            assert_eq!(back, ckpt);
            let evaluated: &[u8] = ckpt.ema.as_deref().unwrap_or(b"weights");
            assert_eq!(back.eval_weights(), evaluated);
            assert!(Checkpoint::decode(&bytes[1..]).is_err());
        }
    }

    #[test]
    fn a_checkpoint_with_the_wrong_number_of_target_scales_is_refused() {
        let mut ckpt = checkpoint(None);
        ckpt.meta.target_std.pop();
        let err = Checkpoint::decode(&ckpt.encode()).unwrap_err();
        assert!(
            err.to_string()
                .contains("1 target scales for a horizon of 2"),
            "{err}"
        );
    }

    #[test]
    fn a_resumable_checkpoint_round_trips_and_names_a_bad_cursor() {
        let cursor = Cursor {
            epoch: 2,
            group: 1,
            loss_sum: 1.5f64.to_bits(),
            seen: 8,
            lr: 1e-3f64.to_bits(),
            epochs: vec![(1, 4, 0.7f64.to_bits(), None, 1e-3f64.to_bits(), 0)],
            initial_val_loss: None,
            best_epoch: None,
            best_val_loss: None,
            final_val_loss: None,
            skipped_steps: 0,
            stopping: (None, 0),
            plateau: (1.0f64.to_bits(), None, 0),
            loss_scale: (1.0f64.to_bits(), 0),
            total_steps: Some(12),
            stop: true,
        };
        let resumable = Resumable {
            checkpoint: checkpoint(Some(b"average".to_vec())),
            cursor,
            best: Some(checkpoint(None)),
        };
        let bytes = resumable.encode();
        assert_eq!(&bytes[..8], RESUME_MAGIC);
        let back = Resumable::decode(&bytes).unwrap();
        assert_eq!(back.checkpoint, resumable.checkpoint);
        assert_eq!(back.best, resumable.best);
        assert_eq!(
            serde_json::to_string(&back.cursor).unwrap(),
            serde_json::to_string(&resumable.cursor).unwrap()
        );
        // A checkpoint is not a resumable checkpoint.
        let plain = resumable.checkpoint.encode();
        assert!(matches!(
            Resumable::decode(&plain),
            Err(ResumableError::Blob(_))
        ));
        let sections: [([u8; 4], &[u8]); 2] = [(*b"CKPT", &plain), (*b"CURS", b"{")];
        let bad = model::encode_blob(RESUME_MAGIC, &sections);
        let err = Resumable::decode(&bad).unwrap_err();
        assert!(err.to_string().starts_with("unreadable cursor: "), "{err}");
    }
}
