//! CSV bytes to records: the `csv` crate's reader as every path configures it, physical
//! line numbers for its records ([`LineCounter`]), and a direct splitter for stretches
//! without quotes ([`for_each_record`]): the records and fields the crate reads from the
//! same bytes (unquoted fields, any width, empty lines skipped), split at line breaks and
//! delimiters without the crate's per-byte state machine. Stretches it cannot read exactly
//! as the crate does (a lone `\r`, which the crate also ends records at) are left to the
//! crate.

/// A record's fields, however it was split.
pub(super) trait Fields {
    /// The number of fields.
    fn len(&self) -> usize;
    /// Field `col` without surrounding ASCII whitespace; empty past the last field.
    fn field(&self, col: usize) -> &[u8];
}

impl Fields for csv::ByteRecord {
    fn len(&self) -> usize {
        csv::ByteRecord::len(self)
    }
    fn field(&self, col: usize) -> &[u8] {
        self.get(col).unwrap_or_default().trim_ascii()
    }
}

/// One line of a stretch and where its fields end (reused from line to line).
pub(super) struct LineFields<'a> {
    line: &'a [u8],
    ends: Vec<usize>,
}

impl Fields for LineFields<'_> {
    fn len(&self) -> usize {
        self.ends.len()
    }
    fn field(&self, col: usize) -> &[u8] {
        let Some(&end) = self.ends.get(col) else {
            return &[];
        };
        let start = match col {
            0 => 0,
            _ => self.ends.get(col - 1).map_or(0, |e| e + 1),
        };
        self.line.get(start..end).unwrap_or_default().trim_ascii()
    }
}

/// Whether [`for_each_record`] reads `chunk` exactly as the `csv` crate would: no quote,
/// and every `\r` the end of a CRLF.
pub(super) fn splittable(chunk: &[u8], delimiter: u8) -> bool {
    !matches!(delimiter, b'\r' | b'\n' | b'"')
        && memchr::memchr(b'"', chunk).is_none()
        && memchr::memchr_iter(b'\r', chunk).all(|i| chunk.get(i + 1) == Some(&b'\n'))
}

/// Calls `f` with each record of `chunk` (see [`splittable`]) and its 0-based line in the
/// chunk; stops at the first error.
pub(super) fn for_each_record<E>(
    chunk: &[u8],
    delimiter: u8,
    mut f: impl FnMut(&LineFields<'_>, u64) -> Result<(), E>,
) -> Result<(), E> {
    let mut fields = LineFields {
        line: &[],
        ends: Vec::with_capacity(16),
    };
    let mut start = 0;
    let mut line = 0u64;
    while start < chunk.len() {
        let rest = chunk.get(start..).unwrap_or_default();
        let (len, next) = match memchr::memchr(b'\n', rest) {
            Some(i) => (i, start + i + 1),
            None => (rest.len(), chunk.len()),
        };
        let mut text = rest.get(..len).unwrap_or_default();
        if let [head @ .., b'\r'] = text {
            text = head;
        }
        // The crate skips empty lines: they are no record.
        if !text.is_empty() {
            fields.line = text;
            fields.ends.clear();
            fields.ends.extend(memchr::memchr_iter(delimiter, text));
            fields.ends.push(text.len());
            f(&fields, line)?;
        }
        line += 1;
        start = next;
    }
    Ok(())
}

/// The reader every CSV path uses: no header handling (ours), rows of any width (reported
/// by us with their line). Fields are trimmed where they are read ([`field`]): the csv
/// crate's own trimming builds a new record, two allocations per row.
pub(super) fn csv_reader(bytes: &[u8], delimiter: u8) -> csv::Reader<&[u8]> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .from_reader(bytes)
}

/// Physical line numbers from byte offsets. The csv crate's own line count is one short on
/// every row of a file with CRLF line endings; counting `\n` bytes gives what an editor
/// shows.
/// Rows arrive in file order, so counting on from the previous row keeps it one pass.
pub(super) struct LineCounter<'a> {
    pub bytes: &'a [u8],
    pub at: usize,
    pub line: u64,
}

impl<'a> LineCounter<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Self {
        LineCounter {
            bytes,
            at: 0,
            line: 1,
        }
    }

    /// The 1-based line of the record starting at byte offset `byte`. After a CRLF the
    /// reader reports the record as starting at the `\n`; a record never starts with a line
    /// break, so those are skipped first.
    pub(super) fn line_at(&mut self, mut byte: usize) -> u64 {
        while matches!(self.bytes.get(byte), Some(b'\r' | b'\n')) {
            byte += 1;
        }
        if byte < self.at {
            (self.at, self.line) = (0, 1);
        }
        let end = byte.min(self.bytes.len());
        let newlines = self
            .bytes
            .get(self.at..end)
            .map_or(0, |s| s.iter().filter(|&&b| b == b'\n').count());
        self.line += newlines as u64;
        self.at = end;
        self.line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every record and field the crate reads, with the line each starts on.
    fn by_crate(bytes: &[u8], delimiter: u8) -> Vec<(u64, Vec<Vec<u8>>)> {
        let mut r = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .delimiter(delimiter)
            .from_reader(bytes);
        let mut out = Vec::new();
        let mut record = csv::ByteRecord::new();
        while r.read_byte_record(&mut record).unwrap() {
            let at = record.position().unwrap().byte() as usize;
            let mut at = at;
            while matches!(bytes.get(at), Some(b'\r' | b'\n')) {
                at += 1;
            }
            let line = bytes[..at].iter().filter(|&&b| b == b'\n').count() as u64;
            let fields = (0..Fields::len(&record))
                .map(|c| Fields::field(&record, c).to_vec())
                .collect();
            out.push((line, fields));
        }
        out
    }

    fn by_splitter(bytes: &[u8], delimiter: u8) -> Vec<(u64, Vec<Vec<u8>>)> {
        let mut out = Vec::new();
        for_each_record::<()>(bytes, delimiter, |f, line| {
            out.push((line, (0..f.len()).map(|c| f.field(c).to_vec()).collect()));
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn records_and_fields_are_the_csv_crates() {
        let cases: [&[u8]; 9] = [
            b"a,b,c\n1,2,3\n",
            b"a,b,c\r\n1, 2 ,3\r\n\r\n\n4,5\n",
            b"1,2,3",
            b"\n\n1,,3,\n ,\n,\n",
            b"x;y\n1;2\n3;4;5\r\n",
            b"",
            b"\r\n\r\n",
            b"1,2\n  \n3,4\n\n",
            b"1\t2\n3\t4",
        ];
        for bytes in cases {
            for d in [b',', b';', b'\t'] {
                assert!(splittable(bytes, d));
                assert_eq!(
                    by_splitter(bytes, d),
                    by_crate(bytes, d),
                    "{:?}",
                    String::from_utf8_lossy(bytes)
                );
            }
        }
        // Past the last field: empty, as the crate's reader gives it.
        let mut seen = 0;
        for_each_record::<()>(b"1,2\n", b',', |f, _| {
            assert_eq!((f.len(), f.field(5)), (2, &b""[..]));
            seen += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, 1);
    }

    #[test]
    fn quotes_and_lone_carriage_returns_are_left_to_the_crate() {
        assert!(!splittable(b"a,\"b\"\n", b','));
        assert!(!splittable(b"1,2\r3,4\n", b','));
        assert!(!splittable(b"1,2\r", b','));
        assert!(!splittable(b"1\r2\n", b'\r'));
        assert!(splittable(b"1,2\r\n3,4\r\n", b','));
    }
}
