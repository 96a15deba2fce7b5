//! The data layer's error type, and how its messages name a column or a row.

use std::fmt;

/// Everything that can go wrong in the data layer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DataError {
    /// A problem at a specific place in a source file.
    #[error("{file}:{line}: {}{message}", ColumnPrefix(.column.as_deref()))]
    Source {
        file: String,
        /// 1-based line in the file; the header is line 1.
        line: u64,
        /// The column as written in the file's header, when one is to blame.
        column: Option<String>,
        message: String,
    },
    /// A problem in a file whose rows have no lines (Parquet), or in a file as a whole.
    #[error("{file}: {}{}{message}", RowPrefix(.row.as_ref()), ColumnPrefix(.column.as_deref()))]
    Table {
        file: String,
        /// 1-based data row (the first row of the first row group is row 1), when one row
        /// is to blame.
        row: Option<u64>,
        /// The column as named in the file, when one is to blame.
        column: Option<String>,
        message: String,
    },
    /// In-memory bars that break an invariant (synthetic data, decoded blobs).
    #[error("bars: row {index}: {}{message}", ColumnPrefix(.column.as_deref()))]
    Bars {
        index: usize,
        column: Option<String>,
        message: String,
    },
    /// The feature stage cannot produce a table.
    #[error("features for '{symbol}': {message}")]
    Features { symbol: String, message: String },
    /// The dataset stage cannot produce a dataset.
    #[error("dataset: {0}")]
    Dataset(String),
}

pub(super) struct ColumnPrefix<'a>(pub(super) Option<&'a str>);

impl fmt::Display for ColumnPrefix<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(c) => write!(f, "column '{c}': "),
            None => Ok(()),
        }
    }
}

struct RowPrefix<'a>(Option<&'a u64>);

impl fmt::Display for RowPrefix<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(r) => write!(f, "row {r} (counting data rows from 1): "),
            None => Ok(()),
        }
    }
}

/// Long garbage values are cut in messages.
pub(super) fn shorten(s: &str) -> String {
    const MAX: usize = 40;
    if s.chars().count() <= MAX {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(MAX).collect();
        out.push_str("...");
        out
    }
}
