//! Column roles: which header (CSV) or schema (Parquet) column is the date, the time,
//! each price and the volume, found by name the same way in every format.

use super::format::{ColumnMap, ColumnRef};
use super::rows::Field;

/// Header names reduced to what identifies them: lowercase letters and digits only.
pub(super) fn normalise(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

/// The role of a header column, after [`normalise`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    DateTime,
    Date,
    Time,
    Open,
    High,
    Low,
    Close,
    AdjClose,
    Volume,
}

pub(super) fn role(normalised: &str) -> Option<Role> {
    Some(match normalised {
        "datetime" | "timestamp" => Role::DateTime,
        "date" => Role::Date,
        "time" => Role::Time,
        "open" => Role::Open,
        "high" => Role::High,
        "low" => Role::Low,
        "close" => Role::Close,
        "adjclose" | "adjustedclose" => Role::AdjClose,
        "volume" | "vol" => Role::Volume,
        _ => return None,
    })
}

/// How a row's timestamp is assembled from its columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TimeSource {
    /// One column holding a full date-time or (when `allow_unix`) Unix seconds.
    Single { col: usize, allow_unix: bool },
    /// A date column plus a time-of-day column.
    DateAndTime { date: usize, time: usize },
}

/// Where the bar columns are, as indexes into the header (CSV) or the schema (Parquet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Layout {
    pub time: TimeSource,
    pub open: usize,
    pub high: usize,
    pub low: usize,
    pub close: usize,
    pub adj: Option<usize>,
    pub volume: Option<usize>,
}

impl Layout {
    /// Finds each role among the column names, after the roles already `mapped` to a
    /// column (by `data.columns` or a recognised layout), which those columns then keep.
    /// The error names the column to blame (as written, or the role's name when it is
    /// missing) and what is wrong.
    pub(super) fn from_names(
        names: &[String],
        mapped: &[(Role, usize)],
    ) -> Result<Layout, (String, String)> {
        let name_of = |i: usize| names.get(i).map_or("?", String::as_str);
        let mut found: Vec<(Role, usize)> = mapped.to_vec();
        let get =
            |found: &[(Role, usize)], r: Role| found.iter().find(|(x, _)| *x == r).map(|&(_, i)| i);
        // A mapped full date-time stands for the date and time roles too, and the reverse.
        let time_mapped = mapped
            .iter()
            .any(|(r, _)| matches!(r, Role::DateTime | Role::Date | Role::Time));
        for (i, name) in names.iter().enumerate() {
            let Some(r) = role(&normalise(name)) else {
                continue;
            };
            let is_time = matches!(r, Role::DateTime | Role::Date | Role::Time);
            if mapped.iter().any(|&(m, c)| m == r || c == i) || (is_time && time_mapped) {
                continue;
            }
            if let Some(prev) = get(&found, r) {
                return Err((
                    name.clone(),
                    format!(
                        "column appears twice (columns {} '{}' and {} '{}' mean the same); \
                         rename or remove one",
                        prev + 1,
                        name_of(prev),
                        i + 1,
                        name
                    ),
                ));
            }
            found.push((r, i));
        }
        let found_list = || {
            names
                .iter()
                .map(|n| format!("'{n}'"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let time = match (
            get(&found, Role::DateTime),
            get(&found, Role::Date),
            get(&found, Role::Time),
        ) {
            (Some(col), _, _) => TimeSource::Single {
                col,
                allow_unix: true,
            },
            (None, Some(date), Some(time)) => TimeSource::DateAndTime { date, time },
            (None, Some(col), None) => TimeSource::Single {
                col,
                allow_unix: false,
            },
            (None, None, Some(col)) => TimeSource::Single {
                col,
                allow_unix: true,
            },
            (None, None, None) => {
                return Err((
                    "date".to_string(),
                    format!(
                        "missing required column (a date, datetime or timestamp column); \
                         found {}",
                        found_list()
                    ),
                ));
            }
        };
        let mut required = [0usize; 4];
        for (slot, (r, label)) in required.iter_mut().zip([
            (Role::Open, "open"),
            (Role::High, "high"),
            (Role::Low, "low"),
            (Role::Close, "close"),
        ]) {
            *slot = get(&found, r).ok_or_else(|| {
                (
                    label.to_string(),
                    format!("missing required column; found {}", found_list()),
                )
            })?;
        }
        let [open, high, low, close] = required;
        if let Some(&(_, c)) = found.iter().find(|&&(_, c)| c >= names.len()) {
            return Err((
                format!("column {}", c + 1),
                format!(
                    "data.columns names column {} but the file has {} columns",
                    c + 1,
                    names.len()
                ),
            ));
        }
        Ok(Layout {
            time,
            open,
            high,
            low,
            close,
            adj: get(&found, Role::AdjClose),
            volume: get(&found, Role::Volume),
        })
    }

    /// The column a [`Field`] is read from (volume falls back to close: it never fails when
    /// there is no volume column, since it is then 0).
    pub(super) fn column(&self, field: Field) -> usize {
        match field {
            Field::Open => self.open,
            Field::High => self.high,
            Field::Low => self.low,
            Field::Close => self.close,
            Field::AdjClose => self.adj.unwrap_or(self.close),
            Field::Volume => self.volume.unwrap_or(self.close),
        }
    }

    /// The column duplicate and ordering problems are blamed on.
    pub(super) fn time_column(&self) -> usize {
        match self.time {
            TimeSource::Single { col, .. } | TimeSource::DateAndTime { date: col, .. } => col,
        }
    }

    /// Every column the layout reads, ascending.
    pub(super) fn columns(&self) -> Vec<usize> {
        let mut out = vec![self.open, self.high, self.low, self.close];
        match self.time {
            TimeSource::Single { col, .. } => out.push(col),
            TimeSource::DateAndTime { date, time } => out.extend([date, time]),
        }
        out.extend(self.adj);
        out.extend(self.volume);
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// `data.columns` as roles at column indexes of `names`. The error names the mapped
/// column and what is wrong.
pub(super) fn resolve_map(
    map: &ColumnMap,
    names: &[String],
) -> Result<Vec<(Role, usize)>, (String, String)> {
    let mut out = Vec::new();
    for (key, col) in map.entries() {
        let r = match key {
            "timestamp" => Role::DateTime,
            "date" => Role::Date,
            "time" => Role::Time,
            "open" => Role::Open,
            "high" => Role::High,
            "low" => Role::Low,
            "close" => Role::Close,
            "adj_close" => Role::AdjClose,
            _ => Role::Volume,
        };
        let index = match col {
            ColumnRef::Position(p) => p.saturating_sub(1),
            ColumnRef::Name(n) => {
                let exact = names.iter().position(|x| x == n);
                let loose = || {
                    let want = normalise(n);
                    names.iter().position(|x| normalise(x) == want)
                };
                exact.or_else(loose).ok_or_else(|| {
                    (
                        n.clone(),
                        format!(
                            "data.columns.{key} names a column the file does not have; found {}",
                            names
                                .iter()
                                .map(|n| format!("'{n}'"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    )
                })?
            }
        };
        if index >= names.len() {
            return Err((
                format!("column {}", index + 1),
                format!(
                    "data.columns.{key} is column {} but the file has {} columns",
                    index + 1,
                    names.len()
                ),
            ));
        }
        out.push((r, index));
    }
    Ok(out)
}
