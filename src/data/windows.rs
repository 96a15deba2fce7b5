//! A split's input windows, materialised or cut on demand from the rows they read.
//!
//! Consecutive windows overlap in all but one row, so materialising them takes
//! `sequence_length` times the memory of their rows (a 200 MB CSV of minute bars became
//! 7.5 GB of windows). A decoded dataset blob keeps the rows instead and cuts each window
//! when a batch asks for it, with the very function that built it
//! (`dataset::normalise_window`), so the values are bit for bit the materialised ones and
//! memory grows with rows times features, not with the sequence length.

use std::borrow::Cow;
use std::sync::Arc;

use super::dataset::normalise_window;

/// f64 values: in memory of their own, or read in place in the blob that holds them (a
/// little-endian, aligned tensor: training cuts its windows straight from the stored feature
/// rows, with no second copy of them).
#[derive(Clone)]
pub enum F64s {
    Owned(Vec<f64>),
    /// `len` values from byte `start` of `blob`; made only by [`F64s::in_blob`], which
    /// checks that they lie inside it, aligned for `f64`.
    InBlob {
        blob: Arc<Vec<u8>>,
        start: usize,
        len: usize,
    },
}

impl F64s {
    /// The little-endian f64s of `data`, a stretch of `blob`'s bytes: read in place where
    /// this machine can (little-endian, `data` aligned for f64), else decoded by `decode`.
    pub fn in_blob(blob: &Arc<Vec<u8>>, data: &[u8], decode: impl FnOnce() -> Vec<f64>) -> F64s {
        let start = (data.as_ptr() as usize).wrapping_sub(blob.as_ptr() as usize);
        let inside = start
            .checked_add(data.len())
            .is_some_and(|end| end <= blob.len());
        let aligned = bytemuck::try_cast_slice::<u8, f64>(data).is_ok();
        if cfg!(target_endian = "little") && inside && aligned {
            F64s::InBlob {
                blob: Arc::clone(blob),
                start,
                len: data.len() / 8,
            }
        } else {
            F64s::Owned(decode())
        }
    }
}

impl std::ops::Deref for F64s {
    type Target = [f64];

    fn deref(&self) -> &[f64] {
        match self {
            F64s::Owned(v) => v,
            // `in_blob` checked the range and its alignment; the blob's bytes never move.
            F64s::InBlob { blob, start, len } => {
                bytemuck::cast_slice(&blob[*start..*start + len * 8])
            }
        }
    }
}

impl std::fmt::Debug for F64s {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl PartialEq for F64s {
    fn eq(&self, other: &F64s) -> bool {
        **self == **other
    }
}

impl From<Vec<f64>> for F64s {
    fn from(v: Vec<f64>) -> F64s {
        F64s::Owned(v)
    }
}

/// The rows a dataset's windows are cut from, shared by its splits.
#[derive(Debug)]
pub struct RowSource {
    /// Per symbol: its stored rows' values `[r, k]` and closes `[r]`.
    pub rows: Vec<(F64s, F64s)>,
    /// `(relative, mean, std)` of each position of a window's `S * k` values.
    pub tiled: Vec<(bool, f64, f64)>,
    pub sequence_length: usize,
    pub features: usize,
}

/// `n` windows of `sequence_length * features` normalised values each.
#[derive(Debug, Clone)]
pub enum Windows {
    /// `[n, S, k]` in memory (what `dataset::build` returns).
    Dense(Vec<f32>),
    /// Cut on demand: window `i` ends at row `end[i]` of symbol `symbol[i]`'s stored rows
    /// (checked in range when decoded).
    Rows {
        source: Arc<RowSource>,
        symbol: Vec<u32>,
        end: Vec<u32>,
    },
}

impl Default for Windows {
    fn default() -> Self {
        Windows::Dense(Vec::new())
    }
}

impl Windows {
    /// How many windows of `width` values this holds; `None` when the layout does not
    /// divide into them (a dense buffer of the wrong length, a row source of another width).
    pub fn count(&self, width: usize) -> Option<usize> {
        match self {
            Windows::Dense(v) if width == 0 => v.is_empty().then_some(0),
            Windows::Dense(v) => v.len().is_multiple_of(width).then(|| v.len() / width),
            Windows::Rows { source, end, .. } => {
                (source.sequence_length * source.features == width).then_some(end.len())
            }
        }
    }

    /// Writes window `i` (`out.len()` values, its width) into `out`.
    pub fn fill(&self, i: usize, out: &mut [f32]) {
        let width = out.len();
        match self {
            Windows::Dense(v) => {
                if let Some(w) = v.get(i * width..(i + 1) * width) {
                    out.copy_from_slice(w);
                }
            }
            Windows::Rows {
                source,
                symbol,
                end,
            } => {
                let (s, k) = (source.sequence_length, source.features);
                let (Some(&sym), Some(&e)) = (symbol.get(i), end.get(i)) else {
                    return;
                };
                let Some((values, close)) = source.rows.get(sym as usize) else {
                    return;
                };
                let e = e as usize;
                let first = (e + 1).saturating_sub(s);
                if let (Some(rows), Some(&c)) = (values.get(first * k..(e + 1) * k), close.get(e)) {
                    normalise_window(rows, c, &source.tiled, out);
                }
            }
        }
    }

    /// Window `i` of `width` values, borrowed when it is in memory.
    pub fn window(&self, i: usize, width: usize) -> Cow<'_, [f32]> {
        match self {
            Windows::Dense(v) => Cow::Borrowed(v.get(i * width..(i + 1) * width).unwrap_or(&[])),
            Windows::Rows { .. } => {
                let mut out = vec![0.0; width];
                self.fill(i, &mut out);
                Cow::Owned(out)
            }
        }
    }

    /// The values when they are in memory (to build or edit a split by hand).
    pub fn dense_mut(&mut self) -> Option<&mut Vec<f32>> {
        match self {
            Windows::Dense(v) => Some(v),
            Windows::Rows { .. } => None,
        }
    }

    /// How many values it holds (`n * width`).
    pub fn value_count(&self) -> usize {
        match self {
            Windows::Dense(v) => v.len(),
            Windows::Rows { source, end, .. } => {
                end.len() * source.sequence_length * source.features
            }
        }
    }

    /// Every value, materialised (tests and comparisons).
    pub fn values(&self) -> Cow<'_, [f32]> {
        match self {
            Windows::Dense(v) => Cow::Borrowed(v),
            Windows::Rows { source, end, .. } => {
                let width = source.sequence_length * source.features;
                let mut out = vec![0.0; end.len() * width];
                if width > 0 {
                    for (i, chunk) in out.chunks_mut(width).enumerate() {
                        self.fill(i, chunk);
                    }
                }
                Cow::Owned(out)
            }
        }
    }
}

impl FromIterator<f32> for Windows {
    fn from_iter<I: IntoIterator<Item = f32>>(values: I) -> Windows {
        Windows::Dense(values.into_iter().collect())
    }
}

/// Equal when they hold the same values, however they hold them.
impl PartialEq for Windows {
    fn eq(&self, other: &Windows) -> bool {
        self.values() == other.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f64s_are_read_in_place_only_when_aligned_and_inside_their_blob() {
        let values = [1.5f64, -2.25, 3.0, 1e300];
        let mut bytes: Vec<u8> = vec![0; 8];
        bytes.extend(values.iter().flat_map(|v| v.to_le_bytes()));
        bytes.push(0);
        let blob = Arc::new(bytes);
        let decode = |data: &[u8]| {
            data.chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
                .collect::<Vec<_>>()
        };
        // An aligned stretch: in place (little-endian hosts), the same values.
        let aligned = &blob[8..40];
        let read = F64s::in_blob(&blob, aligned, || decode(aligned));
        assert_eq!(&*read, &values);
        if cfg!(target_endian = "little") {
            assert!(matches!(read, F64s::InBlob { .. }));
        }
        // Shifted by one byte: decoded.
        let shifted = &blob[9..41];
        let read = F64s::in_blob(&blob, shifted, || decode(shifted));
        assert!(matches!(read, F64s::Owned(_)));
        assert_eq!(&*read, &decode(shifted)[..]);
        // Bytes of another buffer: decoded, never read through the wrong blob.
        let other: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let read = F64s::in_blob(&blob, &other, || decode(&other));
        assert!(matches!(read, F64s::Owned(_)));
        assert_eq!(&*read, &values);
    }

    #[test]
    fn row_windows_are_the_dense_ones() {
        // One symbol, 6 rows of 2 plain features, windows of 3 rows.
        let values: Vec<f64> = (0..12).map(|v| v as f64).collect();
        let close = vec![1.0; 6];
        let tiled =
            crate::data::dataset::tiled_constants(&[false, false], &[1.0, 2.0], &[2.0, 4.0], 3);
        let source = Arc::new(RowSource {
            rows: vec![(values.clone().into(), close.into())],
            tiled,
            sequence_length: 3,
            features: 2,
        });
        let rows = Windows::Rows {
            source,
            symbol: vec![0, 0],
            end: vec![2, 5],
        };
        let expected: Vec<f32> = [0..6, 6..12]
            .into_iter()
            .flat_map(|r| {
                values[r]
                    .iter()
                    .enumerate()
                    .map(|(j, v)| {
                        if j % 2 == 0 {
                            ((v - 1.0) / 2.0) as f32
                        } else {
                            ((v - 2.0) / 4.0) as f32
                        }
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        let dense = Windows::Dense(expected.clone());
        assert_eq!(rows.values().as_ref(), expected.as_slice());
        assert_eq!(rows, dense);
        assert_eq!((rows.count(6), dense.count(6)), (Some(2), Some(2)));
        assert_eq!((rows.count(5), dense.count(5)), (None, None));
        assert_eq!(rows.window(1, 6).as_ref(), &expected[6..]);
        assert_eq!(Windows::default().count(6), Some(0));
    }
}
