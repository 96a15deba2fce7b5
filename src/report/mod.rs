//! `hft report`: the self-contained HTML report.

pub mod html;
