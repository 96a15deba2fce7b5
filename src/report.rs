//! What a build tells the user: warnings, per-stage lines, the results table.
//!
//! Everything goes through here so that parallel stages never interleave half lines.

use std::io::Write;
use std::sync::Mutex;

static OUTPUT: Mutex<()> = Mutex::new(());

/// A warning on stderr (corrupt blob, unreadable record, ...): the build continues.
pub fn warn(message: &str) {
    let _guard = OUTPUT.lock();
    let _ = writeln!(std::io::stderr(), "warning: {message}");
}

/// Prints a block of lines to stdout at once.
pub fn print_block(lines: &[String]) {
    let _guard = OUTPUT.lock();
    let mut out = std::io::stdout().lock();
    for line in lines {
        let _ = writeln!(out, "{line}");
    }
}

/// Formats a duration for stage lines: `0.012s`, `3.4s`, `2m05s`.
pub fn duration(secs: f64) -> String {
    if secs < 1.0 {
        format!("{secs:.3}s")
    } else if secs < 60.0 {
        format!("{secs:.1}s")
    } else {
        let m = (secs / 60.0).floor();
        format!("{}m{:02}s", m as u64, (secs - m * 60.0).round() as u64)
    }
}
