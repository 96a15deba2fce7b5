//! Where bars come from when they are not local files: the I/O side of the data layer.
//!
//! `data/` is pure functions over bytes; this module does the network and store I/O that
//! feeds it: [`api`] downloads a provider's bars as a canonical CSV, and [`snapshot`]
//! records that CSV in the store so builds reuse it offline (`data.source: api`).

pub mod api;
pub mod snapshot;
