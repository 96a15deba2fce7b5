//! The terminal: warnings, whole-block printing, tables fitted to the width, colours and the
//! training progress bar.
//!
//! A leaf: it imports nothing of hft, so every layer (store, graph, train, cli) may print
//! through it. Everything goes through one lock so that parallel stages never interleave
//! half lines.

use std::io::Write;
use std::sync::Mutex;

static OUTPUT: Mutex<()> = Mutex::new(());

/// Warnings printed by this process (a status that warned is not memoised: its replay
/// would not warn).
static WARNED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// How many warnings this process has printed.
pub fn warnings() -> usize {
    WARNED.load(std::sync::atomic::Ordering::Relaxed)
}

/// A warning on stderr (corrupt blob, unreadable record, ...): the build continues.
pub fn warn(message: &str) {
    WARNED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let _guard = OUTPUT.lock();
    let _ = writeln!(std::io::stderr(), "warning: {message}");
}

/// Prints a block of lines to stdout at once.
pub fn print_block(lines: &[String]) {
    print_blocks([lines]);
}

/// Prints blocks of lines to stdout, one after the other, none interleaved with another
/// thread's output.
///
/// Why buffered: stdout flushes at every newline, so the 10,000 answers a large project's
/// build replays from its memo were 10,000 writes; they are now written a buffer at a time.
pub fn print_blocks<'a>(blocks: impl IntoIterator<Item = &'a [String]>) {
    let _guard = OUTPUT.lock();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for line in blocks.into_iter().flatten() {
        let _ = writeln!(out, "{line}");
    }
    let _ = out.flush();
}

/// A bar's timestamp (Unix seconds, UTC) as a date, with the time of day when it has one.
pub fn date(ts: i64) -> String {
    let format = if ts.rem_euclid(86_400) == 0 {
        "%Y-%m-%d"
    } else {
        "%Y-%m-%d %H:%M"
    };
    chrono::DateTime::from_timestamp(ts, 0)
        .map(|d| d.format(format).to_string())
        .unwrap_or_else(|| ts.to_string())
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

/// Whether progress goes to a live bar (a terminal, not `--quiet`) or to plain lines.
static QUIET: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, std::sync::atomic::Ordering::Relaxed);
}

fn live_progress() -> bool {
    use std::io::IsTerminal;
    !QUIET.load(std::sync::atomic::Ordering::Relaxed) && std::io::stderr().is_terminal()
}

/// Progress of one training run: a bar (epoch, step, loss, samples/s, ETA) on a terminal;
/// one line per epoch in CI or with `--quiet`. Trainings that run side by side each have a
/// live bar of their own in one [`indicatif::MultiProgress`]; a bar appears with the first
/// step (when its length is known) and is cleared when its training ends, so the scrollback
/// keeps the epoch lines, not frozen bars.
pub struct TrainingProgress {
    label: String,
    live: bool,
    bar: Mutex<Option<indicatif::ProgressBar>>,
}

/// The bars of every running training.
fn bars() -> &'static indicatif::MultiProgress {
    static BARS: std::sync::OnceLock<indicatif::MultiProgress> = std::sync::OnceLock::new();
    BARS.get_or_init(indicatif::MultiProgress::new)
}

impl TrainingProgress {
    /// `total_steps` is taken from the first step (0: not known yet).
    pub fn new(label: &str, _total_steps: u64) -> TrainingProgress {
        TrainingProgress {
            label: label.to_string(),
            live: live_progress(),
            bar: Mutex::new(None),
        }
    }

    /// After each optimizer step.
    pub fn step(&self, epoch: usize, step: u64, total_steps: u64, loss: f64, samples_per_sec: f64) {
        if !self.live {
            return;
        }
        let Ok(mut slot) = self.bar.lock() else {
            return;
        };
        let bar = slot.get_or_insert_with(|| {
            // Hidden until the group owns it: a bar drawn on its own first would leave a
            // frozen copy in the scrollback.
            let bar = indicatif::ProgressBar::with_draw_target(
                Some(total_steps),
                indicatif::ProgressDrawTarget::hidden(),
            );
            let style = indicatif::ProgressStyle::with_template(
                "{prefix} [{bar:30}] {pos}/{len} steps {msg} ETA {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> ");
            bar.set_style(style);
            bar.set_prefix(self.label.clone());
            bars().add(bar)
        });
        bar.set_length(total_steps);
        bar.set_position(step);
        bar.set_message(format!(
            "epoch {epoch} loss {loss:.4} {samples_per_sec:.0} samples/s"
        ));
    }

    /// After each epoch's validation.
    pub fn epoch(&self, line: &str) {
        let line = format!("{}: {line}", self.label);
        if self.live {
            let _guard = OUTPUT.lock();
            // Above the live bars, which are redrawn below it.
            if bars().println(&line).is_ok() {
                return;
            }
        }
        print_err_line(&line);
    }

    pub fn finish(&self) {
        if let Some(bar) = self.bar.lock().ok().and_then(|mut slot| slot.take()) {
            bar.finish_and_clear();
            bars().remove(&bar);
        }
    }
}

fn print_err_line(line: &str) {
    let _guard = OUTPUT.lock();
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Renders rows as an aligned text table (first row is the header). On a terminal the
/// table is fitted to its width: the widest columns are narrowed and their cells cut with
/// `…`; piped output keeps every character, for scripts.
pub fn table<R: AsRef<[String]>>(rows: &[R]) -> Vec<String> {
    table_within(rows, terminal_width())
}

/// The width of stdout when it is a terminal.
pub fn terminal_width() -> Option<usize> {
    console::Term::stdout()
        .size_checked()
        .map(|(_, cols)| cols as usize)
}

/// Whether to colour output: stdout is a terminal and `NO_COLOR` is unset or empty
/// (<https://no-color.org>).
pub fn colours() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && terminal_width().is_some()
}

/// `text` in a colour (`green`, `yellow`, `red`) when [`colours`] allows.
pub fn paint(text: &str, colour: &str) -> String {
    if !colours() {
        return text.to_string();
    }
    let code = match colour {
        "green" => 32,
        "yellow" => 33,
        "red" => 31,
        _ => return text.to_string(),
    };
    format!("\x1b[{code}m{text}\x1b[0m")
}

/// [`table`] fitted to `max_width` columns of text, if given.
pub fn table_within<R: AsRef<[String]>>(rows: &[R], max_width: Option<usize>) -> Vec<String> {
    const GAP: usize = 2;
    const NARROWEST: usize = 6;
    let columns = rows.iter().map(|r| r.as_ref().len()).max().unwrap_or(0);
    let mut widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .map(|r| r.as_ref().get(c).map_or(0, |s| visible_len(s)))
                .max()
                .unwrap_or(0)
        })
        .collect();
    if let Some(max) = max_width {
        let total = |w: &[usize]| w.iter().sum::<usize>() + GAP * w.len().saturating_sub(1);
        while total(&widths) > max {
            let Some((widest, &w)) = widths.iter().enumerate().max_by_key(|(_, w)| **w) else {
                break;
            };
            if w <= NARROWEST {
                break;
            }
            widths[widest] = w - 1;
        }
    }
    // Each line written into one string (a table per row of cells, joined, then trimmed,
    // was most of printing a 10,000-experiment project's results).
    let line_width = widths.iter().sum::<usize>() + GAP * columns;
    rows.iter()
        .map(|r| {
            let mut line = String::with_capacity(line_width);
            for (i, (cell, &w)) in r.as_ref().iter().zip(&widths).enumerate() {
                if i > 0 {
                    line.extend(std::iter::repeat_n(' ', GAP));
                }
                let len = visible_len(cell);
                if len > w {
                    let plain = console::strip_ansi_codes(cell);
                    line.extend(plain.chars().take(w.saturating_sub(1)));
                    line.push('…');
                } else {
                    line.push_str(cell);
                    line.extend(std::iter::repeat_n(' ', w - len));
                }
            }
            line.truncate(line.trim_end().len());
            line
        })
        .collect()
}

/// Characters a cell takes on screen: colour escapes take none.
fn visible_len(s: &str) -> usize {
    // Printable ASCII (nearly every cell) is one column a byte: the table of a
    // 10,000-experiment project measured each of its cells through the escape-stripping path.
    if s.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return s.len();
    }
    console::measure_text_width(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows() -> Vec<Vec<String>> {
        vec![
            vec!["experiment".into(), "model".into(), "note".into()],
            vec![
                "a-very-long-experiment-name".into(),
                "lstm".into(),
                "x".into(),
            ],
        ]
    }

    #[test]
    fn tables_align_and_keep_everything_without_a_width() {
        let t = table_within(&rows(), None);
        assert_eq!(t[0], "experiment                   model  note");
        assert_eq!(t[1], "a-very-long-experiment-name  lstm   x");
    }

    #[test]
    fn tables_narrow_the_widest_column_to_fit() {
        let t = table_within(&rows(), Some(24));
        assert!(t.iter().all(|l| l.chars().count() <= 24), "{t:?}");
        assert!(t[1].starts_with("a-very-lon…"), "{t:?}");
        assert!(t[1].contains("lstm"));
    }

    #[test]
    fn colour_escapes_take_no_width() {
        let rows = vec![
            vec!["state".into(), "x".into()],
            vec!["\x1b[32mbuilt\x1b[0m".into(), "y".into()],
        ];
        let t = table_within(&rows, None);
        assert_eq!(t[0], "state  x");
        assert!(t[1].ends_with("built\x1b[0m  y"), "{t:?}");
    }

    #[test]
    fn widths_count_columns_on_screen_not_bytes() {
        assert_eq!(visible_len("lstm-ref 0.123"), 14);
        assert_eq!(visible_len("\x1b[31mfailed\x1b[0m"), 6);
        // Two columns per CJK character, one per accented letter (two bytes each).
        assert_eq!(visible_len("日本"), 4);
        assert_eq!(visible_len("é"), 1);
        let t = table_within(
            &[
                vec!["日本".to_string(), "x".into()],
                vec!["ab".into(), "y".into()],
            ],
            None,
        );
        assert_eq!(t[1], "ab    y");
    }
}
