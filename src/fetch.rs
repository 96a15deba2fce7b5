//! The old path of the API snapshots: they live in [`crate::sources::snapshot`] now.

pub use crate::sources::snapshot::*;
