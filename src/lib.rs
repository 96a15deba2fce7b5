//! hft: train stock-forecasting models the way a build system builds software.
//! See ARCHITECTURE.md for the map.

// Bad input is an error message, never a panic: no unwrap/expect/panic outside tests
// (clippy.toml allows them in tests). An invariant that cannot fail says why where it is
// allowed.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod audit;
pub mod catalog;
pub mod checkpoint;
pub mod cli;
pub mod config;
pub mod data;
pub mod eval;
pub mod gc;
pub mod graph;
pub mod huge_pages;
pub mod lock;
pub mod model;
pub mod optim;
pub mod report;
pub mod search;
pub mod sources;
pub mod store;
pub mod term;
pub mod train;
pub mod usecase;
pub mod waits;
