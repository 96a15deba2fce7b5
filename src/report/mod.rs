//! `hft report`: the self-contained HTML report.

mod data;
pub mod html;
mod plots;
mod tables;
