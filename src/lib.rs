//! hft: train stock-forecasting models the way a build system builds software.
//! See ARCHITECTURE.md for the map.

pub mod config;
pub mod data;
pub mod model;
pub mod optim;
