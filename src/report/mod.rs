//! `hft report`: the self-contained HTML report.

mod axis;
mod chart;
mod data;
pub mod html;
mod interactive;
mod plots;
mod runs;
mod sweep;
mod symbols;
mod tables;
mod time_plots;
