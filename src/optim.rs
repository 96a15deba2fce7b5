//! Optimizer registry (filled in by the training work).

/// Names accepted by `optimizer.type`.
pub const OPTIMIZER_NAMES: &[&str] = &["adamw"];
