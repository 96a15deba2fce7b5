//! The sections the training stages read, by their old paths: `config::sections::X` is
//! kept so that code written against it keeps compiling. Each section has its own module
//! now (`model`, `optimizer`, `training`, `resources`, `evaluation`); the type-specific
//! option types live with their registry entries in `model` and `optim`.

pub use super::evaluation::{EvaluationConfig, Signal};
pub use super::model::ModelConfig;
pub use super::optimizer::OptimizerConfig;
pub use super::options::Invalid;
pub use super::resources::Resources;
pub use super::training::{
    Backend, DEFAULT_MIN_LR_RATIO, DEFAULT_WARMUP_STEPS, Devices, Precision, TrainingConfig,
};
