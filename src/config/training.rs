//! `training`: how a model is trained (epochs, batches, clipping, early stopping, devices,
//! precision). The learning-rate schedule is a registry entry (`optim::schedule::SCHEDULES`):
//! config holds its name, the two settings several schedules share (`warmup_steps`,
//! `min_lr_ratio`) and the raw sub-section of the selected one, and the entry checks which
//! of them it reads.

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::options::{Invalid, Options, fail};
use super::resources::Resources;

/// Upper bounds that keep per-epoch and per-step bookkeeping far from overflow or an
/// allocation abort.
pub const MAX_EPOCHS: usize = 1_000_000;
pub const MAX_STEPS: usize = 1_000_000_000;
pub const MAX_BATCH_SIZE: usize = 1 << 20;

/// `warmup_steps` when not given.
pub const DEFAULT_WARMUP_STEPS: usize = 50;
/// `min_lr_ratio` when not given.
pub const DEFAULT_MIN_LR_RATIO: f64 = 0.1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainingConfig {
    /// Passes over the train windows. Default 10.
    pub epochs: usize,
    /// Stop after this many optimizer steps, if set (overrides `epochs`).
    pub max_steps: Option<usize>,
    /// Windows per micro-batch (one forward/backward pass). Default 32.
    pub batch_size: usize,
    /// Micro-batches whose gradients are summed into one optimizer step: the effective batch
    /// is `batch_size * grad_accum_steps`. Default 1.
    pub grad_accum_steps: usize,
    /// Learning-rate schedule, a name in `optim::schedule::SCHEDULES`. Default
    /// `warmup_cosine`.
    pub schedule: String,
    /// Linear warm-up steps; read by every schedule but `one_cycle`. Default 50.
    pub warmup_steps: Option<usize>,
    /// Floor of the schedule as a share of `lr`; read by `warmup_cosine`,
    /// `warmup_hold_cosine` and `plateau`. Default 0.1.
    pub min_lr_ratio: Option<f64>,
    /// Clip gradients to this global norm; 0 disables. Default 1.0.
    pub grad_clip: f64,
    /// Cross-entropy label smoothing on the action head. Default 0.1.
    pub label_smoothing: f64,
    /// Weight of the price MSE beside the action cross-entropy. Default 0.5.
    pub price_weight: f64,
    /// Early stopping: stop after this many epochs without the validation loss improving by
    /// more than `min_delta`. Default: off.
    pub patience: Option<usize>,
    /// Early stopping's smallest improvement that counts; read only with `patience`.
    /// Default 0.
    pub min_delta: Option<f64>,
    /// Keep an exponential moving average of the weights with this decay, validate and
    /// evaluate on it (the checkpoint carries both). Default: off.
    pub ema_decay: Option<f64>,
    /// Which epoch's weights the checkpoint holds (and so what `evaluate` scores):
    /// `best_val`, the epoch with the lowest validation loss (early stopping restores it), or
    /// `last`. With no validation windows `best_val` falls back to `last`. Default `best_val`.
    pub select: Select,
    /// Where to train: `cpu` (burn's flex backend), `wgpu`, `cuda` or `cuda:N` (GPU `N`).
    /// GPU backends need a build with the cargo feature of the same name. Default `cpu`.
    pub device: String,
    /// Data-parallel training on several GPUs of one node: a count `N` (GPUs 0..N) or a list
    /// of GPU indices. Each micro-batch is split into one shard per device and the shards'
    /// gradients are averaged into one optimizer step, which equals one device with the
    /// whole batch up to float summation order. Default 1; `cpu` has one device.
    pub devices: Devices,
    /// Float format of the forward and backward passes: `f32`, `bf16` or `f16`. Reduced
    /// precision keeps f32 master weights (the optimizer and checkpoint see only those);
    /// `f16` adds dynamic loss scaling. Default `f32`.
    pub precision: Precision,
    /// Save a resumable checkpoint every this many optimizer steps, so an interrupted build
    /// resumes instead of restarting. Default off. Not in the train key: a resumed run ends
    /// bit-identical to an uninterrupted one, so it cannot change results.
    pub checkpoint_every: Option<usize>,
    /// What a Slurm job of this experiment's train (and evaluate) stage asks for
    /// (`hft build --executor slurm`). Not in any key: resources do not change outputs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    /// The selected schedule's own settings (`one_cycle: {...}`, ...), read and checked by
    /// its registry entry; after loading, with their defaults filled in.
    #[serde(flatten)]
    pub options: Options,
}

/// `training.select`: which epoch's weights a training keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Select {
    /// The epoch with the lowest validation loss (earliest on ties).
    #[default]
    BestVal,
    /// The last epoch trained.
    Last,
}

impl Select {
    pub fn name(self) -> &'static str {
        match self {
            Select::BestVal => "best_val",
            Select::Last => "last",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    F32,
    Bf16,
    F16,
}

impl Precision {
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
            Precision::F16 => "f16",
        }
    }
}

/// `training.devices`: how many devices train data-parallel, or which.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Devices {
    /// Devices `0..N`.
    Count(usize),
    /// These device indices, in shard order.
    List(Vec<usize>),
}

/// By hand, for an error that says what is expected (an untagged enum's says only that
/// no variant matched).
impl<'de> Deserialize<'de> for Devices {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Devices;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a device count such as 2, or a list of device indices such as [0, 2]")
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Devices, E> {
                usize::try_from(n)
                    .map(Devices::Count)
                    .map_err(|_| E::custom(format!("{n} devices is too many")))
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Devices, E> {
                match u64::try_from(n) {
                    Ok(n) => self.visit_u64(n),
                    Err(_) => Err(E::invalid_value(serde::de::Unexpected::Signed(n), &self)),
                }
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Devices, A::Error> {
                let mut list = Vec::new();
                while let Some(index) = seq.next_element::<usize>()? {
                    list.push(index);
                }
                Ok(Devices::List(list))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl Default for Devices {
    fn default() -> Self {
        Devices::Count(1)
    }
}

impl Devices {
    /// How many devices share each micro-batch: what changes results (float summation
    /// order), so what the train key holds; which devices they are does not.
    pub fn count(&self) -> usize {
        match self {
            Devices::Count(n) => *n,
            Devices::List(list) => list.len(),
        }
    }

    /// The device indices, in shard order.
    pub fn indices(&self) -> Vec<usize> {
        match self {
            Devices::Count(n) => (0..*n).collect(),
            Devices::List(list) => list.clone(),
        }
    }

    /// Range checks that need no hardware: at least one device, no index twice, and only
    /// device 0 (or a count of 1) where the backend has one device or names its own index.
    pub(super) fn validate(&self, device: &str, backend: Backend) -> Result<(), Invalid> {
        let key = "training.devices";
        let indices = self.indices();
        if indices.is_empty() {
            return fail(
                key,
                "must be at least 1 (or a non-empty list of device indices)",
            );
        }
        if indices.len() > 1024 {
            return fail(key, "at most 1024 devices");
        }
        let mut sorted = indices.clone();
        sorted.sort_unstable();
        if let Some(pair) = sorted.windows(2).find(|w| w.first() == w.get(1)) {
            let index = pair.first().copied().unwrap_or_default();
            return fail(key, format!("lists device {index} twice"));
        }
        if *self == Devices::Count(1) {
            return Ok(());
        }
        match backend {
            Backend::Cuda(_) if device != "cuda" => fail(
                key,
                format!(
                    "training.device `{device}` names one GPU; with training.devices write \
                     `device: cuda` and list the GPUs in training.devices"
                ),
            ),
            Backend::Cpu if indices != [0] => fail(
                key,
                format!(
                    "`{device}` (burn's flex backend) has one device, so data-parallel training \
                     needs a GPU backend (training.device: wgpu or cuda); set training.devices: 1"
                ),
            ),
            Backend::Cpu | Backend::Cuda(_) | Backend::Wgpu => Ok(()),
        }
    }
}

/// A parsed `training.device`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// burn's pure-Rust CPU backend (flex).
    Cpu,
    /// wgpu's default adapter (Vulkan, Metal or DirectX).
    Wgpu,
    /// CUDA GPU with this index.
    Cuda(usize),
}

impl Backend {
    /// The backend kind, without a device index: what the train key holds, since the index
    /// does not change results and the kind does.
    pub fn kind(self) -> &'static str {
        match self {
            Backend::Cpu => "cpu",
            Backend::Wgpu => "wgpu",
            Backend::Cuda(_) => "cuda",
        }
    }

    /// Whether this build has the backend compiled in.
    pub fn compiled_in(self) -> bool {
        match self {
            Backend::Cpu => true,
            Backend::Wgpu => cfg!(feature = "wgpu"),
            Backend::Cuda(_) => cfg!(feature = "cuda"),
        }
    }

    /// Whether the backend can train in `precision` at all (a device may still lack it,
    /// which training checks when it opens the device).
    pub fn trains_in(self, precision: Precision) -> bool {
        match (self, precision) {
            // WGSL has no bf16.
            (Backend::Wgpu, Precision::Bf16) => false,
            _ => true,
        }
    }
}

impl Default for TrainingConfig {
    fn default() -> Self {
        TrainingConfig {
            epochs: 10,
            max_steps: None,
            batch_size: 32,
            grad_accum_steps: 1,
            schedule: "warmup_cosine".to_string(),
            warmup_steps: None,
            min_lr_ratio: None,
            grad_clip: 1.0,
            label_smoothing: 0.1,
            price_weight: 0.5,
            patience: None,
            min_delta: None,
            ema_decay: None,
            select: Select::BestVal,
            device: "cpu".to_string(),
            devices: Devices::default(),
            precision: Precision::F32,
            checkpoint_every: None,
            resources: None,
            options: Options::new(),
        }
    }
}

impl TrainingConfig {
    /// The section's own keys, in order (for unknown-key messages).
    pub const FIELDS: &'static [&'static str] = &[
        "epochs",
        "max_steps",
        "batch_size",
        "grad_accum_steps",
        "schedule",
        "warmup_steps",
        "min_lr_ratio",
        "grad_clip",
        "label_smoothing",
        "price_weight",
        "patience",
        "min_delta",
        "ema_decay",
        "select",
        "device",
        "devices",
        "precision",
        "checkpoint_every",
        "resources",
    ];

    /// `min_lr_ratio` with its default (whether the schedule reads it is the schedule's
    /// business).
    pub fn min_lr_ratio(&self) -> f64 {
        self.min_lr_ratio.unwrap_or(DEFAULT_MIN_LR_RATIO)
    }

    pub fn min_delta(&self) -> f64 {
        self.min_delta.unwrap_or(0.0)
    }

    /// Parses `device`.
    pub fn backend(&self) -> Result<Backend, Invalid> {
        let bad = || {
            (
                "training.device".to_string(),
                format!(
                    "unknown device `{}`; expected cpu, wgpu, cuda or cuda:N",
                    self.device
                ),
            )
        };
        match self.device.as_str() {
            "cpu" => Ok(Backend::Cpu),
            "wgpu" => Ok(Backend::Wgpu),
            "cuda" => Ok(Backend::Cuda(0)),
            other => match other.strip_prefix("cuda:") {
                Some(index) if !index.is_empty() && index.bytes().all(|b| b.is_ascii_digit()) => {
                    index.parse().map(Backend::Cuda).map_err(|_| bad())
                }
                _ => Err(bad()),
            },
        }
    }

    /// The shared part of what the `train` key hashes: every setting the run reads,
    /// defaults filled in. The schedule's entry adds what it reads (`warmup_steps`,
    /// `min_lr_ratio`, its sub-section): `TrainingConfig::key_value`, in `optim::schedule`.
    pub fn shared_key_value(&self) -> serde_json::Value {
        let mut v = json!({
            "epochs": self.epochs,
            "max_steps": self.max_steps,
            "batch_size": self.batch_size,
            "grad_accum_steps": self.grad_accum_steps,
            "schedule": self.schedule,
            "grad_clip": self.grad_clip,
            "label_smoothing": self.label_smoothing,
            "price_weight": self.price_weight,
            "patience": self.patience,
        "ema_decay": self.ema_decay,
            "device": self.backend().map_or("invalid", Backend::kind),
            "precision": self.precision,
        });
        // Only when not 1, so keys from before `devices` existed stay the same.
        if self.devices.count() != 1 {
            v["devices"] = json!(self.devices.count());
        }
        if self.patience.is_some() {
            v["min_delta"] = json!(self.min_delta());
        }
        // Which epoch the checkpoint holds changes the checkpoint. Only when not the default
        // `best_val`, so the pinned key values stay; the train stage's own version (1) is
        // what separates default keys from those of before `select`, which kept `last`.
        if self.select != Select::BestVal {
            v["select"] = json!(self.select.name());
        }
        v
    }

    pub fn validate(&self) -> Result<(), Invalid> {
        if self.epochs == 0 && self.max_steps.is_none() {
            return fail("training.epochs", "must be at least 1 (or set max_steps)");
        }
        if self.epochs > MAX_EPOCHS {
            return fail(
                "training.epochs",
                format!("must be at most {MAX_EPOCHS} (got {})", self.epochs),
            );
        }
        if let Some(steps) = self.max_steps
            && !(1..=MAX_STEPS).contains(&steps)
        {
            return fail(
                "training.max_steps",
                format!("must be between 1 and {MAX_STEPS} (got {steps})"),
            );
        }
        if !(1..=MAX_BATCH_SIZE).contains(&self.batch_size) {
            return fail(
                "training.batch_size",
                format!(
                    "must be between 1 and {MAX_BATCH_SIZE} (got {})",
                    self.batch_size
                ),
            );
        }
        if !(1..=1_000_000).contains(&self.grad_accum_steps) {
            return fail("training.grad_accum_steps", "must be between 1 and 1000000");
        }
        // Whether the schedule reads them is its entry's check; their ranges are shared.
        if !(0.0..=1.0).contains(&self.min_lr_ratio()) {
            return fail("training.min_lr_ratio", "must be in [0, 1]");
        }
        if !(self.grad_clip.is_finite() && self.grad_clip >= 0.0) {
            return fail("training.grad_clip", "must be >= 0 (0 disables clipping)");
        }
        if !(0.0..1.0).contains(&self.label_smoothing) {
            return fail("training.label_smoothing", "must be in [0, 1)");
        }
        if !(self.price_weight.is_finite() && self.price_weight >= 0.0) {
            return fail("training.price_weight", "must be >= 0");
        }
        if self.patience == Some(0) {
            return fail("training.patience", "must be at least 1");
        }
        if let Some(d) = self.min_delta {
            if self.patience.is_none() {
                return fail(
                    "training.min_delta",
                    "is an early-stopping setting, read only with training.patience",
                );
            }
            if !(d.is_finite() && d >= 0.0) {
                return fail("training.min_delta", "must be >= 0");
            }
        }
        if let Some(d) = self.ema_decay
            && !(d.is_finite() && d > 0.0 && d < 1.0)
        {
            return fail("training.ema_decay", "must be in (0, 1)");
        }
        let backend = self.backend()?;
        if !backend.compiled_in() {
            let kind = backend.kind();
            return fail(
                "training.device",
                format!(
                    "`{}` needs the `{kind}` backend, which this build of hft does not have; \
                     rebuild with `cargo build --release --features {kind}`",
                    self.device
                ),
            );
        }
        self.devices.validate(&self.device, backend)?;
        if !backend.trains_in(self.precision) {
            return fail(
                "training.precision",
                format!(
                    "the {} backend cannot train in {}; use f16 or f32",
                    backend.kind(),
                    self.precision.name()
                ),
            );
        }
        if let Some(r) = &self.resources {
            r.validate()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn training_devices_are_checked_and_only_their_count_is_keyed() {
        let on = |device: &str, devices: Devices| TrainingConfig {
            device: device.into(),
            devices,
            ..TrainingConfig::default()
        };
        // One device keeps the keys of configs from before `devices` existed.
        let one = on("cpu", Devices::Count(1));
        one.validate().unwrap();
        assert!(one.shared_key_value().get("devices").is_none());
        assert_eq!(
            one.shared_key_value(),
            TrainingConfig::default().shared_key_value()
        );
        on("cpu", Devices::List(vec![0])).validate().unwrap();
        // flex has one device: data parallel on it is a config error naming the key.
        for devices in [
            Devices::Count(2),
            Devices::List(vec![1]),
            Devices::List(vec![0, 1]),
        ] {
            let (key, msg) = on("cpu", devices).validate().unwrap_err();
            assert_eq!(key, "training.devices");
            assert!(msg.contains("one device"), "{msg}");
        }
        for (devices, why) in [
            (Devices::Count(0), "at least 1"),
            (Devices::List(vec![]), "at least 1"),
            (Devices::List(vec![0, 2, 0]), "device 0 twice"),
        ] {
            let (key, msg) = devices.validate("cuda", Backend::Cuda(0)).unwrap_err();
            assert_eq!(key, "training.devices");
            assert!(msg.contains(why), "{msg}");
        }
        // The count changes the float summation order, so it is keyed; which GPUs is not.
        let two = on("cuda", Devices::Count(2));
        let listed = on("cuda", Devices::List(vec![2, 3]));
        assert_eq!(two.shared_key_value()["devices"], json!(2));
        assert_eq!(two.shared_key_value(), listed.shared_key_value());
        assert_ne!(
            two.shared_key_value(),
            on("cuda", Devices::Count(1)).shared_key_value()
        );
        Devices::Count(2)
            .validate("cuda", Backend::Cuda(0))
            .unwrap();
        Devices::Count(2).validate("wgpu", Backend::Wgpu).unwrap();
        let (key, msg) = Devices::Count(2)
            .validate("cuda:1", Backend::Cuda(1))
            .unwrap_err();
        assert_eq!(key, "training.devices");
        assert!(msg.contains("device: cuda"), "{msg}");
        if cfg!(feature = "cuda") {
            two.validate().unwrap();
        } else {
            // The missing backend is reported first, under its own key.
            assert_eq!(two.validate().unwrap_err().0, "training.device");
        }
        let parsed: TrainingConfig =
            serde_json::from_value(json!({"device": "cuda", "devices": [0, 2]})).unwrap();
        assert_eq!(parsed.devices, Devices::List(vec![0, 2]));
        let parsed: TrainingConfig = serde_json::from_value(json!({"devices": 3})).unwrap();
        assert_eq!(parsed.devices, Devices::Count(3));
    }

    #[test]
    fn devices_parse_and_missing_backends_are_config_errors() {
        let on = |device: &str| TrainingConfig {
            device: device.into(),
            ..TrainingConfig::default()
        };
        assert_eq!(on("cpu").backend(), Ok(Backend::Cpu));
        assert_eq!(on("cuda").backend(), Ok(Backend::Cuda(0)));
        assert_eq!(on("cuda:3").backend(), Ok(Backend::Cuda(3)));
        for bad in ["gpu", "cuda:", "cuda:x", "cuda:-1", "CPU"] {
            let (key, msg) = on(bad).validate().unwrap_err();
            assert_eq!(key, "training.device", "{bad}");
            assert!(msg.contains("expected cpu, wgpu, cuda or cuda:N"), "{msg}");
        }
        for (device, feature) in [("wgpu", "wgpu"), ("cuda:1", "cuda")] {
            let result = on(device).validate();
            if cfg!(feature = "wgpu") && feature == "wgpu"
                || cfg!(feature = "cuda") && feature == "cuda"
            {
                result.unwrap();
            } else {
                let (key, msg) = result.unwrap_err();
                assert_eq!(key, "training.device");
                assert!(msg.contains(&format!("--features {feature}")), "{msg}");
            }
        }
        // The index is not part of the key; the kind and the precision are.
        assert_eq!(
            on("cuda:0").shared_key_value(),
            on("cuda:1").shared_key_value()
        );
        assert_ne!(on("cpu").shared_key_value(), on("cuda").shared_key_value());
        let bf16 = TrainingConfig {
            precision: Precision::Bf16,
            ..on("cpu")
        };
        bf16.validate().unwrap();
        assert_ne!(bf16.shared_key_value(), on("cpu").shared_key_value());
        assert!(!Backend::Wgpu.trains_in(Precision::Bf16));
    }

    /// Checkpointing cannot change results (a resumed run is bit-identical), so it stays
    /// out of the train key and turning it on reuses the cache.
    #[test]
    fn checkpoint_every_is_not_in_the_train_key() {
        let on = TrainingConfig {
            checkpoint_every: Some(5),
            ..TrainingConfig::default()
        };
        assert_eq!(
            on.shared_key_value(),
            TrainingConfig::default().shared_key_value()
        );
    }

    #[test]
    fn select_last_moves_the_key_and_the_default_is_best_val() {
        let default = TrainingConfig::default();
        assert_eq!(default.select, Select::BestVal);
        assert!(default.shared_key_value().get("select").is_none());
        let last = TrainingConfig {
            select: Select::Last,
            ..TrainingConfig::default()
        };
        assert_eq!(last.shared_key_value()["select"], json!("last"));
        let parsed: TrainingConfig = serde_json::from_value(json!({"select": "last"})).unwrap();
        assert_eq!(parsed.select, Select::Last);
        assert!(serde_json::from_value::<TrainingConfig>(json!({"select": "best"})).is_err());
    }
}
