//! hft: train stock-forecasting models the way a build system builds software.
//! See ARCHITECTURE.md for the map.

pub mod audit;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod data;
pub mod eval;
pub mod fetch;
pub mod graph;
pub mod lock;
pub mod model;
pub mod optim;
pub mod report;
pub mod store;
pub mod train;
