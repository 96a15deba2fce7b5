//! The CSV reader: the layout of the file ([`super::sniff`]), then data rows to checked
//! rows (large files in parallel chunks of whole lines), with physical line numbers for
//! every message.

use std::path::Path;

use super::DataError;
use super::columns::{Layout, TimeSource};
use super::dates::TimeFormat;
use super::numbers::{NumberFormat, parse_number, short_decimal};
use super::pipeline::{BadRows, IngestOptions, Problem, Source, Validated, validate_rows};
use super::rows::{RawBar, Row, make_row};
use super::sink::{RowSink, Slots};
use super::sniff::{Plan, decode, plan};
use super::split::{Fields, LineCounter, csv_reader, for_each_record, splittable};

/// Data rows looked at to tell a problem of every row (the file's layout) from a problem
/// of some rows.
const SAME_PROBLEM_SAMPLE: usize = 20;

/// The row checks and the order phase of a CSV file.
pub(super) fn validate_csv(
    path: &Path,
    bytes: &[u8],
    opts: &IngestOptions,
) -> Result<Validated, DataError> {
    let mode = opts.on_bad_rows;
    let file = path.display().to_string();
    let (text, encoding) = decode(bytes).map_err(|m| Source::csv(path, 1).file_error(None, m))?;
    let bytes: &[u8] = &text;
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(Source::csv(path, 1).file_error(
            None,
            "the file is empty (no header row); a data file starts with a header such \
             as Date,Open,High,Low,Close,Volume"
                .into(),
        ));
    }
    // The header is on the first line that is not empty (the reader skips empty ones).
    let leading = bytes
        .iter()
        .position(|b| !matches!(b, b'\r' | b'\n'))
        .unwrap_or(0);
    let header_line = 1 + memchr::memchr_iter(b'\n', &bytes[..leading]).count() as u64;
    let source = Source::csv(path, header_line);
    let plan = plan(bytes, &opts.format, &opts.columns)
        .map_err(|(column, message)| source.file_error(Some(&column), message))?;
    let mut reader = csv_reader(bytes, plan.delimiter);
    // One record buffer, reused for every row (what `byte_records()` would allocate anew).
    let mut header = csv::ByteRecord::new();
    for _ in 0..plan.skip {
        match reader.read_byte_record(&mut header) {
            Ok(_) => {}
            Err(e) => return Err(csv_error(&file, &e)),
        }
    }
    let names = &plan.names;
    let layout = Layout::from_names(names, &plan.mapped).map_err(|(column, message)| {
        source.file_error(Some(&column), format!("{message}{}", plan.header_hint))
    })?;

    // Where the data rows start; the reader may point at the `\n` of a CRLF.
    let data_start = (reader.position().byte() as usize).min(bytes.len());
    let data = bytes.get(data_start..).unwrap_or_default();
    let rows = CsvRows {
        bytes,
        width: names.len(),
        layout: &layout,
        names,
        mode,
        plan: &plan,
    };
    // Large files are parsed in chunks of whole lines in parallel. A quote could hide a
    // line break inside a field, so a file with any quote is read in one pass (each chunk
    // looks for one).
    let parsed = if data.len() >= 2 * PARALLEL_CSV_CHUNK {
        rows.parallel(data_start)
    } else {
        None
    };
    // A row that cannot be read in a recognised layout says which layout it was read as.
    let in_layout = |e: DataError| match (e, &plan.layout) {
        (
            DataError::Source {
                file,
                line,
                column,
                message,
            },
            Some(layout),
        ) => DataError::Source {
            file,
            line,
            column,
            message: format!("{message} [read as: {layout}]"),
        },
        (e, _) => e,
    };
    let (rows_read, problems) = match parsed {
        Some(parsed) => parsed,
        None => match rows.parse(&mut reader, 0, LineCounter::new(bytes), usize::MAX) {
            Ok(parsed) => parsed,
            Err(RowsError::Row(p)) => {
                return Err(in_layout(rows.first_bad_row(&source, data_start, p)));
            }
            Err(RowsError::Csv(e)) => return Err(csv_error(&file, &e)),
            // A vector always has room, and the one-pass reader handles quotes.
            Err(RowsError::Full | RowsError::Quoted) => {
                return Err(source.file_error(None, "ran out of row slots".to_string()));
            }
        },
    };
    let time_column = names
        .get(layout.time_column())
        .map_or("?", String::as_str)
        .to_string();
    let mut v = validate_rows(source, rows_read, problems, time_column, mode)?;
    v.layout = match (encoding, plan.layout) {
        (None, layout) => layout,
        (Some(e), None) => Some(e.to_string()),
        (Some(e), Some(l)) => Some(format!("{e}; {l}")),
    };
    Ok(v)
}

/// Bytes of CSV data rows per task when a large file is parsed in parallel. Tiny in unit
/// tests, so that every test file of a few lines goes through the parallel path too.
#[cfg(not(test))]
const PARALLEL_CSV_CHUNK: usize = 4 << 20;
#[cfg(test)]
const PARALLEL_CSV_CHUNK: usize = 64;

/// Rows in file order, and the row-level problems (under [`BadRows::Drop`]).
type ParsedRows = (Vec<Row>, Vec<Problem>);

/// Why parsing CSV rows stopped.
enum RowsError {
    /// The first bad row, under [`BadRows::Error`].
    Row(Problem),
    /// The csv reader itself failed.
    Csv(csv::Error),
    /// More rows than the slots a chunk was given ([`Slots`]).
    Full,
    /// A quote in a chunk: its line breaks may be inside fields.
    Quoted,
}

/// What parsing a file's data rows needs.
struct CsvRows<'a> {
    /// The whole file (after a BOM), which line numbers count in.
    bytes: &'a [u8],
    /// Fields in the header.
    width: usize,
    layout: &'a Layout,
    names: &'a [String],
    mode: BadRows,
    plan: &'a Plan,
}

impl CsvRows<'_> {
    /// The error for the first bad row under [`BadRows::Error`]. When every data row looked
    /// at has a problem in the same place, the problem is the file's layout, not some rows:
    /// skipping rows (`data.on_bad_rows: drop`) would skip them all, so it is not offered.
    fn first_bad_row(&self, source: &Source, data_start: usize, p: Problem) -> DataError {
        let sample = CsvRows {
            mode: BadRows::Drop,
            ..*self
        };
        let data = self.bytes.get(data_start..).unwrap_or_default();
        let mut reader = csv_reader(data, self.plan.delimiter);
        let lines = LineCounter {
            bytes: self.bytes,
            at: data_start,
            line: 1 + memchr::memchr_iter(b'\n', self.bytes.get(..data_start).unwrap_or_default())
                .count() as u64,
        };
        let Ok((rows, problems)) =
            sample.parse(&mut reader, data_start, lines, SAME_PROBLEM_SAMPLE)
        else {
            return source.row_error(p);
        };
        let same = problems.len() >= 2
            && rows.is_empty()
            && problems
                .iter()
                .all(|q| q.column == p.column && same_kind(&q.message, &p.message));
        if !same {
            return source.row_error(p);
        }
        let extra = if p.column.is_none() && p.message.starts_with("row has ") {
            self.width_advice()
        } else {
            String::new()
        };
        source.error_at(
            p.at,
            p.column.as_deref(),
            format!(
                "{}{extra} (every one of the first {} data rows has this problem, so it is the \
                 file's layout, not a few bad rows)",
                p.message,
                problems.len()
            ),
        )
    }

    /// What to do when every row's width differs from the header's.
    fn width_advice(&self) -> String {
        format!(
            "; every row needs one value per name in the header: fix the header (a name \
             missing or one too many){}, or map the columns by position in `data.columns` (1 \
             is the first column)",
            match self.plan.delimiter {
                b',' => String::new(),
                d => format!(
                    " (read as separated by '{}')",
                    char::from(d).escape_default()
                ),
            }
        )
    }

    /// The rows `reader` yields, in file order, and (under [`BadRows::Drop`]) the problems.
    /// Its byte offsets count from `base` in the file; `lines` is positioned at or before
    /// `base`.
    fn parse<R: std::io::Read>(
        &self,
        reader: &mut csv::Reader<R>,
        base: usize,
        lines: LineCounter<'_>,
        limit: usize,
    ) -> Result<ParsedRows, RowsError> {
        let mut rows: Vec<Row> = Vec::new();
        let problems = self.parse_into(reader, base, lines, limit, &mut rows)?;
        Ok((rows, problems))
    }

    /// [`CsvRows::parse`] into `rows`, returning the problems.
    fn parse_into<R: std::io::Read, S: RowSink>(
        &self,
        reader: &mut csv::Reader<R>,
        base: usize,
        mut lines: LineCounter<'_>,
        limit: usize,
        rows: &mut S,
    ) -> Result<Vec<Problem>, RowsError> {
        let mut problems = Vec::new();
        let mut record = csv::ByteRecord::new();
        let mut first = true;
        while rows.len() + problems.len() < limit {
            match reader.read_byte_record(&mut record) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => return Err(RowsError::Csv(e)),
            }
            if first {
                // Data rows are roughly the same length: reserve from the first one's.
                let at = base + record.position().map_or(0, |p| p.byte() as usize);
                let rest = self.bytes.get(at..).unwrap_or_default();
                let len = memchr::memchr(b'\n', rest).map_or(rest.len(), |i| i + 1);
                rows.reserve(rest.len() / len.max(16) + 1);
                first = false;
            }
            let line = record
                .position()
                .map_or(0, |p| lines.line_at(base + p.byte() as usize));
            self.take(&record, line, rows, &mut problems)?;
        }
        Ok(problems)
    }

    /// One record read at `line`: its row into `rows`, or its problem into `problems`
    /// (under [`BadRows::Drop`]; the error under [`BadRows::Error`]).
    fn take<F: Fields, S: RowSink>(
        &self,
        record: &F,
        line: u64,
        rows: &mut S,
        problems: &mut Vec<Problem>,
    ) -> Result<(), RowsError> {
        let result = if record.len() == self.width {
            csv_row(
                record,
                line,
                self.layout,
                &self.plan.numbers,
                &self.plan.time,
            )
            .map_err(|(col, message)| Problem {
                at: line,
                column: Some(self.names.get(col).map_or("?", String::as_str).to_string()),
                message,
            })
        } else if record.len() == 1 && record.field(0).is_empty() {
            // A line of blanks (the reader already skips empty ones).
            return Ok(());
        } else {
            Err(Problem {
                at: line,
                column: None,
                message: format!(
                    "row has {} fields but the header has {}",
                    record.len(),
                    self.width
                ),
            })
        };
        match result {
            Ok(row) => {
                if !rows.push(row) {
                    return Err(RowsError::Full);
                }
            }
            Err(p) if self.mode == BadRows::Error => return Err(RowsError::Row(p)),
            Err(p) => problems.push(p),
        }
        Ok(())
    }

    /// One chunk of whole lines starting at byte `at`, line `line` of the file, into
    /// `sink`: split directly where it has no quote and no lone `\r`, else by the reader.
    /// A quote anywhere is [`RowsError::Quoted`] (the file is read in one pass).
    fn chunk<S: RowSink>(
        &self,
        at: usize,
        len: usize,
        line: u64,
        sink: &mut S,
    ) -> Result<Vec<Problem>, RowsError> {
        let chunk = self.bytes.get(at..at + len).unwrap_or_default();
        if splittable(chunk, self.plan.delimiter) {
            let mut problems = Vec::new();
            for_each_record(chunk, self.plan.delimiter, |record, i| {
                self.take(record, line + i, sink, &mut problems)
            })?;
            return Ok(problems);
        }
        if memchr::memchr(b'"', chunk).is_some() {
            return Err(RowsError::Quoted);
        }
        let mut reader = csv_reader(chunk, self.plan.delimiter);
        let lines = LineCounter {
            bytes: self.bytes,
            at,
            line,
        };
        self.parse_into(&mut reader, at, lines, usize::MAX, sink)
    }

    /// [`CsvRows::parse`] of the data rows from `data_start` on, in chunks of whole lines
    /// in parallel, concatenated in file order: the same rows and problems, and under
    /// [`BadRows::Error`] the same first bad row. `None` if a chunk's reader failed (the
    /// caller reads the file in one pass for the message).
    fn parallel(&self, data_start: usize) -> Option<ParsedRows> {
        use rayon::prelude::*;
        // Chunk boundaries just after a `\n`.
        let mut bounds = vec![data_start];
        let mut at = data_start;
        while self.bytes.len() - at > PARALLEL_CSV_CHUNK {
            let probe = at + PARALLEL_CSV_CHUNK;
            match memchr::memchr(b'\n', self.bytes.get(probe..)?) {
                Some(i) if probe + i + 1 < self.bytes.len() => {
                    at = probe + i + 1;
                    bounds.push(at);
                }
                _ => break,
            }
        }
        bounds.push(self.bytes.len());
        // The line each chunk starts on.
        let newlines: Vec<u64> = bounds
            .par_windows(2)
            .map(|w| {
                memchr::memchr_iter(b'\n', self.bytes.get(w[0]..w[1]).unwrap_or_default()).count()
                    as u64
            })
            .collect();
        let before = memchr::memchr_iter(b'\n', self.bytes.get(..data_start)?).count() as u64;
        let start_lines: Vec<u64> = newlines
            .iter()
            .scan(before + 1, |line, n| {
                let this = *line;
                *line += n;
                Some(this)
            })
            .collect();
        // Every chunk parses into its own stretch of one vector, as many slots as it has
        // lines (a row is a line; a file whose records end in a lone `\r` overflows them and
        // is read in one pass), and the stretches are then closed up: no per-chunk vectors
        // to allocate and concatenate. Every chunk but the last ends with its `\n`, so it
        // has exactly one line per `\n`: full chunks leave no gaps and nothing moves.
        let last = newlines.len().saturating_sub(1);
        let slots: Vec<usize> = newlines
            .iter()
            .enumerate()
            .map(|(i, &n)| n as usize + usize::from(i == last))
            .collect();
        let mut rows: Vec<Row> = Vec::with_capacity(slots.iter().sum());
        let mut stretches = Vec::with_capacity(slots.len());
        let mut spare = &mut rows.spare_capacity_mut()[..];
        for &n in &slots {
            let (head, tail) = spare.split_at_mut(n);
            stretches.push(head);
            spare = tail;
        }
        let chunks: Vec<Result<(usize, Vec<Problem>), RowsError>> = bounds
            .par_windows(2)
            .zip(start_lines.par_iter())
            .zip(stretches.into_par_iter())
            .map(|((w, &line), slots)| {
                let mut sink = Slots { slots, len: 0 };
                let problems = self.chunk(w[0], w[1] - w[0], line, &mut sink)?;
                Ok((sink.len, problems))
            })
            .collect();
        let mut problems = Vec::new();
        let (mut from, mut to) = (0usize, 0usize);
        for (chunk, n) in chunks.into_iter().zip(&slots) {
            match chunk {
                Ok((len, mut p)) => {
                    if from != to {
                        rows.spare_capacity_mut().copy_within(from..from + len, to);
                    }
                    to += len;
                    problems.append(&mut p);
                }
                // A bad row (under `BadRows::Error`), a reader failure or too few slots:
                // the one-pass read finds and reports it exactly as for a small file.
                Err(_) => return None,
            }
            from += n;
        }
        // SAFETY: chunk i wrote its first `len_i` slots (`Slots::push`), and those were
        // moved, in order, to the first `to` slots of the capacity.
        unsafe { rows.set_len(to) };
        Some((rows, problems))
    }
}

/// One CSV record (of the header's width) as a checked row; the error names the column
/// index to blame.
fn csv_row(
    record: &impl Fields,
    line: u64,
    layout: &Layout,
    numbers: &NumberFormat,
    time: &TimeFormat,
) -> Result<Row, (usize, String)> {
    let text = |col: usize| -> Result<&str, (usize, String)> {
        std::str::from_utf8(record.field(col))
            .map_err(|_| (col, "invalid UTF-8 in value".to_string()))
    };
    let plain = *numbers == NumberFormat::PLAIN;
    let number = |col: usize| -> Result<f64, (usize, String)> {
        // Most cells are short plain decimals, read straight from their bytes.
        if plain && let Some(v) = short_decimal(record.field(col)) {
            return Ok(v);
        }
        parse_number(text(col)?, numbers).map_err(|m| (col, m))
    };
    let timestamp = match layout.time {
        TimeSource::Single { col, allow_unix } => {
            time.stamp(text(col)?, allow_unix).map_err(|m| (col, m))?
        }
        TimeSource::DateAndTime {
            date,
            time: time_col,
        } => time
            .date_and_time(text(date)?, text(time_col)?)
            .map_err(|(is_date, m)| (if is_date { date } else { time_col }, m))?,
    };
    let raw = RawBar {
        open: number(layout.open)?,
        high: number(layout.high)?,
        low: number(layout.low)?,
        close: number(layout.close)?,
        adj: layout.adj.map(number).transpose()?,
        volume: match layout.volume {
            Some(c) => number(c)?,
            None => 0.0,
        },
    };
    make_row(line, timestamp, raw).map_err(|(field, m)| (layout.column(field), m))
}

/// Whether two problems are the same kind (the same message up to the values quoted in
/// it and the numbers, which differ from row to row).
/// Quoted values are left out whole.
fn same_kind(a: &str, b: &str) -> bool {
    fn shape(s: &str) -> String {
        let mut out = String::new();
        let mut quoted = false;
        for c in s.chars() {
            if c == '\'' {
                quoted = !quoted;
                out.push(c);
            } else if !quoted && !c.is_ascii_digit() && c != '.' && c != '-' {
                out.push(c);
            }
        }
        out
    }
    shape(a) == shape(b)
}

fn csv_error(file: &str, e: &csv::Error) -> DataError {
    DataError::Source {
        file: file.to_string(),
        line: e.position().map_or(0, |p| p.line()),
        column: None,
        message: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::ingest::testutil::*;
    #[allow(unused_imports)]
    use crate::data::ingest::*;

    #[test]
    fn line_numbers_are_physical_lines_whatever_the_line_endings() {
        let mut rows = vec!["Date,Open,High,Low,Close,Volume".to_string()];
        for d in 1..=20 {
            rows.push(format!("2020-01-{d:02},10,11,9,10.5,100"));
        }
        rows[11] = "2020-01-11,10,11,9,abc,100".to_string();
        for (ending, name) in [("\n", "LF"), ("\r\n", "CRLF")] {
            let text = rows.join(ending) + ending;
            let m = message(&text);
            assert!(
                m.starts_with("data/TEST.csv:12: column 'Close'"),
                "{name}: {m}"
            );
            // A quoted field spanning two lines counts both.
            let quoted = text.replacen("2020-01-03,10,", "2020-01-03,\"10\n\",", 1);
            let m = message(&quoted);
            assert!(
                m.contains("data/TEST.csv:13:") || m.contains("data/TEST.csv:4:"),
                "{m}"
            );
        }
    }

    #[test]
    fn large_files_parse_in_parallel_chunks_exactly_as_in_one_pass() {
        // 3000 rows in 64-byte chunks (the test-build chunk size): a few hundred chunks,
        // boundaries at every kind of place, blank lines and bad rows among them.
        let mut lines = vec!["Date,Open,High,Low,Close,Volume".to_string()];
        for i in 0..3000u32 {
            let day = chrono::NaiveDate::from_ymd_opt(2000, 1, 1).unwrap()
                + chrono::Days::new(u64::from(i));
            lines.push(match i {
                500 => String::new(),
                901 => "   ".to_string(),
                1200 => format!("{day},10,11,9,x,100"),
                2999 => format!("{day},10,11,9,10.5"),
                _ => format!("{day},10.{},11.5,9,10.5,{}", i % 7, 100 + i),
            });
        }
        for ending in ["\n", "\r\n"] {
            let text = lines.join(ending) + ending;
            let bytes = text.as_bytes();
            let layout = Layout::from_names(
                &lines[0].split(',').map(str::to_string).collect::<Vec<_>>(),
                &[],
            )
            .unwrap();
            let plan = plan(
                bytes,
                &crate::data::ingest::FileFormat::NONE,
                &crate::data::ingest::ColumnMap::NONE,
            )
            .unwrap();
            let names: Vec<String> = lines[0].split(',').map(str::to_string).collect();
            let rows = CsvRows {
                bytes,
                width: 6,
                layout: &layout,
                names: &names,
                mode: BadRows::Drop,
                plan: &plan,
            };
            let mut reader = csv_reader(bytes, b',');
            let mut header = csv::ByteRecord::new();
            assert!(reader.read_byte_record(&mut header).unwrap());
            let start = reader.position().byte() as usize;
            let Ok(one_pass) = rows.parse(&mut reader, 0, LineCounter::new(bytes), usize::MAX)
            else {
                panic!("one pass failed");
            };
            let chunked = rows.parallel(start).unwrap();
            assert_eq!(chunked.0, one_pass.0, "{ending:?}: rows");
            assert_eq!(chunked.1, one_pass.1, "{ending:?}: problems");
            assert_eq!(one_pass.0.len(), 2996);
            let at: Vec<u64> = one_pass.1.iter().map(|p| p.at).collect();
            assert_eq!(at, [1202, 3001], "{ending:?}");
            // Under `error` the first bad row is reported, with its line.
            let m = message(&text);
            assert!(m.starts_with("data/TEST.csv:1202: column 'Close'"), "{m}");
        }
    }

    #[test]
    fn iso_dates() {
        let b = parse(
            "Date,Open,High,Low,Close,Volume\n\
             2020-01-02,10,11,9,10.5,100\n\
             2020-01-03,10.5,12,10,11,200\n",
        )
        .unwrap();
        assert_eq!(
            b.timestamps,
            vec![ts("2020-01-02 00:00:00"), ts("2020-01-03 00:00:00")]
        );
        assert_eq!(b.open, vec![10.0, 10.5]);
        assert_eq!(b.high, vec![11.0, 12.0]);
        assert_eq!(b.low, vec![9.0, 10.0]);
        assert_eq!(b.close, vec![10.5, 11.0]);
        assert_eq!(b.volume, vec![100.0, 200.0]);
        validate(&b).unwrap();
    }

    #[test]
    fn us_dates_descending_and_extra_columns() {
        let b = parse(
            "date,open,high,low,close,volume,OpenInterest,Symbol\n\
             01/03/2020,10.5,12,10,11,200,7,X\n\
             1/2/2020,10,11,9,10.5,100,7,X\n",
        )
        .unwrap();
        assert_eq!(
            b.timestamps,
            vec![ts("2020-01-02 00:00:00"), ts("2020-01-03 00:00:00")]
        );
        assert_eq!(b.close, vec![10.5, 11.0]);
        assert_eq!(b.volume, vec![100.0, 200.0]);
    }

    #[test]
    fn separate_time_column_and_missing_volume() {
        let b = parse(
            "Date,Time,Open,High,Low,Close\n\
             2006-01-02,09:05:00,1,2,1,2\n\
             2006-01-02,09:10,2,3,2,3\n",
        )
        .unwrap();
        assert_eq!(
            b.timestamps,
            vec![ts("2006-01-02 09:05:00"), ts("2006-01-02 09:10:00")]
        );
        assert_eq!(b.volume, vec![0.0, 0.0]);
    }

    #[test]
    fn datetime_and_unix_columns() {
        let b = parse(
            "datetime,open,high,low,close\n\
             2020-01-02T09:30:00Z,1,2,1,2\n\
             2020-01-02 09:31,1,2,1,2\n\
             2020-01-02T09:32:00+00:00,1,2,1,2\n",
        )
        .unwrap();
        assert_eq!(
            b.timestamps,
            vec![
                ts("2020-01-02 09:30:00"),
                ts("2020-01-02 09:31:00"),
                ts("2020-01-02 09:32:00")
            ]
        );
        // pandas writes tz-aware indexes with a space and an offset.
        let b = parse("Datetime,Open,High,Low,Close\n2020-01-02 09:30:00-05:00,1,2,1,2\n").unwrap();
        assert_eq!(b.timestamps, vec![ts("2020-01-02 14:30:00")]);
        let b = parse("timestamp,open,high,low,close\n1577957400,1,2,1,2\n").unwrap();
        assert_eq!(b.timestamps, vec![1_577_957_400]);
        assert!(
            message("timestamp,open,high,low,close\n1577957400000,1,2,1,2\n")
                .contains("milliseconds")
        );
    }

    #[test]
    fn whitespace_bom_and_crlf() {
        let b = parse("\u{feff}Date , Open,High,Low,Close\r\n 2020-01-02 , 1 ,2,1,2\r\n").unwrap();
        assert_eq!(b.close, vec![2.0]);
    }

    #[test]
    fn errors_name_file_line_and_column() {
        let head = "Date,Open,High,Low,Close,Volume\n2020-01-01,10,11,9,10,5\n";
        let cases = [
            (
                "2020-01-02,10,10.5,9,11,5\n",
                "data/TEST.csv:3: column 'High': high 10.5 is below max(open, close) = 11.0",
            ),
            (
                "2020-01-02,10,12,10.5,11,5\n",
                "data/TEST.csv:3: column 'Low': low 10.5 is above min(open, close) = 10.0",
            ),
            (
                "2020-01-02,abc,12,9,11,5\n",
                "data/TEST.csv:3: column 'Open': cannot parse 'abc'",
            ),
            (
                "2020-01-02,10,12,9,-1,5\n",
                "data/TEST.csv:3: column 'Close': close must be",
            ),
            (
                "2020-01-02,10,12,9,inf,5\n",
                "data/TEST.csv:3: column 'Close': close must be",
            ),
            (
                "2020-01-02,0,12,9,11,5\n",
                "data/TEST.csv:3: column 'Open': open must be",
            ),
            (
                "2020-01-02,10,12,9,11,-5\n",
                "data/TEST.csv:3: column 'Volume': volume -5.0 is negative",
            ),
            (
                "2020-13-45,10,12,9,11,5\n",
                "data/TEST.csv:3: column 'Date': cannot parse '2020-13-45'",
            ),
            (
                "2020-01-02,10,12,9,11\n",
                "data/TEST.csv:3: row has 5 fields but the header has 6",
            ),
            (
                "2020-01-02,10,12,9,,5\n",
                "data/TEST.csv:3: column 'Close': empty value",
            ),
            (
                "2020-01-02,10,12,9,11,5\n2020-01-01,10,12,9,11,5\n",
                "data/TEST.csv:4: column 'Date': duplicate timestamp 2020-01-01 00:00:00 (also on line 2)",
            ),
        ];
        for (rows, expected) in cases {
            let m = message(&format!("{head}{rows}"));
            assert!(
                m.starts_with(expected),
                "{m:?} should start with {expected:?}"
            );
        }
        let m = message("Date,Open,High,Low,Volume\n2020-01-01,1,1,1,1\n");
        assert!(m.starts_with("data/TEST.csv:1: column 'close': missing required column; found 'Date', 'Open', 'High', 'Low', 'Volume'"), "{m}");
        let m = message("Day,Open,High,Low,Close\n2020-01-01,1,1,1,1\n");
        assert!(
            m.starts_with("data/TEST.csv:1: column 'date': missing required column"),
            "{m}"
        );
        let m = message("Date,Close,close,Open,High,Low\n");
        assert!(
            m.contains(":1: column 'close': column appears twice"),
            "{m}"
        );
        assert!(message("").starts_with("data/TEST.csv:1: the file is empty"));
        assert!(message("Date,Open,High,Low,Close\n").contains(":1: no data rows"));
        let m = message("Date,Open,High,Low,Close,Adj Close\n2020-01-01,1,1,1,1,0\n");
        assert!(
            m.starts_with("data/TEST.csv:2: column 'Adj Close': adjusted close"),
            "{m}"
        );
        let m = message("Date,Time,Open,High,Low,Close\n2020-01-01,25:00,1,1,1,1\n");
        assert!(
            m.starts_with("data/TEST.csv:2: column 'Time': cannot parse '25:00'"),
            "{m}"
        );
        let m = parse_csv(
            Path::new("x.csv"),
            b"Date,Open,High,Low,Close\n2020-01-01,\xff,1,1,1\n",
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            m,
            format!("x.csv:2: column 'Open': invalid UTF-8 in value {DROP_HINT}")
        );
    }

    #[test]
    fn row_level_errors_say_how_to_skip_the_row() {
        let m = message(&format!(
            "{HEAD}2020-01-01,10,11,9,10,5\n2020-01-02,10,12,9,-1,5\n"
        ));
        assert!(
            m.starts_with("data/TEST.csv:3: column 'Close': close must be"),
            "{m}"
        );
        assert!(m.ends_with(DROP_HINT), "{m}");
        // File-level problems have no such way out.
        assert!(!message("").contains("on_bad_rows"));
        assert!(!message("Date,Open,High,Low\n2020-01-01,1,1,1\n").contains("on_bad_rows"));
    }

    #[test]
    fn currency_symbols_and_thousands_separators_are_named() {
        let m = message(&format!("{HEAD}2020-01-01,$10,11,9,10,5\n"));
        assert!(
            m.starts_with("data/TEST.csv:2: column 'Open': cannot parse '$10' as a number: remove the currency symbol"),
            "{m}"
        );
        let m = message(&format!("{HEAD}2020-01-01,10,11,9,10,\"1,234.50\"\n"));
        assert!(
            m.starts_with("data/TEST.csv:2: column 'Volume': cannot parse '1,234.50' as a number: remove the thousands separator"),
            "{m}"
        );
    }

    #[test]
    fn garbage_never_panics() {
        // A small xorshift stream: random bytes, and random mutations of a valid file.
        let mut state = 0x9E37_79B9_7F4A_7C15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let valid = b"Date,Time,Open,High,Low,Close,Adj Close,Volume\n2020-01-02,09:30,10,11,9,10.5,5,100\n2020-01-03,09:30,10.5,12,10,11,6,200\n";
        let alphabet = b"0123456789,.-:/ \n\r\"TZtimeDaOpnHighLowClsVu\xff\xfe";
        for round in 0..1500 {
            let bytes: Vec<u8> = if round % 2 == 0 {
                let len = (next() % 200) as usize;
                (0..len)
                    .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                    .collect()
            } else {
                let mut v = valid.to_vec();
                for _ in 0..(next() % 4 + 1) {
                    let i = (next() % v.len() as u64) as usize;
                    v[i] = (next() & 0xff) as u8;
                }
                v
            };
            if let Ok(b) = parse_csv(Path::new("g.csv"), &bytes) {
                validate(&b).unwrap();
            }
        }
    }
}
