//! Model registry (filled in by the training work).

/// Names accepted by `model.type`.
pub const MODEL_NAMES: &[&str] = &["mlp", "lstm", "transformer"];
