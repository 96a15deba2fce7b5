//! The safetensors layer of every blob: a [`Writer`] that lays tensors out (large copies in
//! parallel) with the fixed metadata, and a [`Reader`] that checks each tensor's dtype and
//! shape before decoding it.

use std::collections::HashMap;
use std::mem::MaybeUninit;
use std::sync::Arc;

use rayon::prelude::*;
use safetensors::tensor::{Dtype, Metadata, SafeTensors, TensorInfo};
use serde::{Deserialize, Serialize};

use super::{BlobError, Header, META_KEY};
use crate::data::F64s;

pub(super) enum Source<'a> {
    F64(&'a [f64]),
    I64(&'a [i64]),
    U32(&'a [u32]),
}

impl Source<'_> {
    pub(super) fn byte_len(&self) -> usize {
        match self {
            Source::F64(v) => v.len() * 8,
            Source::I64(v) => v.len() * 8,
            Source::U32(v) => v.len() * 4,
        }
    }

    /// Writes the little-endian bytes into `out` (exactly `byte_len` long): every byte.
    pub(super) fn write(&self, out: &mut [MaybeUninit<u8>]) {
        match self {
            Source::F64(v) => write_le(v, out, |x| x.to_le_bytes()),
            Source::I64(v) => write_le(v, out, |x| x.to_le_bytes()),
            Source::U32(v) => write_le(v, out, |x| x.to_le_bytes()),
        }
    }
}

/// Tensors above this many bytes are copied by several threads.
pub(super) const PARALLEL_COPY_BYTES: usize = 8 << 20;

/// `v` as little-endian bytes into `out` (`out.len() == v.len() * N`): every byte of it.
pub(super) fn write_le<T: Copy + Sync, const N: usize>(
    v: &[T],
    out: &mut [MaybeUninit<u8>],
    f: fn(T) -> [u8; N],
) {
    let copy = |v: &[T], out: &mut [MaybeUninit<u8>]| {
        for (dst, &x) in out.chunks_exact_mut(N).zip(v) {
            dst.write_copy_of_slice(&f(x));
        }
    };
    if out.len() >= PARALLEL_COPY_BYTES {
        const PER_TASK: usize = 1 << 16;
        out.par_chunks_mut(PER_TASK * N)
            .zip(v.par_chunks(PER_TASK))
            .for_each(|(o, v)| copy(v, o));
    } else {
        copy(v, out);
    }
}

/// The little-endian values of `data` (a trailing partial value is ignored); large tensors
/// are decoded by several threads, each into its stretch of the one vector.
pub(super) fn read_le<T: Send, const N: usize>(data: &[u8], f: fn([u8; N]) -> T) -> Vec<T> {
    let one = |c: &[u8]| {
        let mut b = [0u8; N];
        b.copy_from_slice(c);
        f(b)
    };
    if data.len() >= PARALLEL_COPY_BYTES {
        data.par_chunks_exact(N)
            .with_min_len(1 << 16)
            .map(one)
            .collect()
    } else {
        data.chunks_exact(N).map(one).collect()
    }
}

/// Collects tensors, then serialises them with the one metadata entry into one exact-size
/// buffer. The header is the safetensors crate's own (same ordering, same JSON, same
/// padding), so the bytes equal `safetensors::serialize` of the same tensors.
pub(super) struct Writer<'a> {
    pub(super) tensors: Vec<(String, Dtype, Vec<usize>, Source<'a>)>,
}

impl<'a> Writer<'a> {
    pub(super) fn new() -> Self {
        Writer {
            tensors: Vec::new(),
        }
    }

    /// Adds a tensor. If the struct's lengths disagree with its declared dimensions the data
    /// is stored flat (1-D), so encoding never fails and decoding reports the mismatch.
    pub(super) fn tensor(&mut self, name: &str, dtype: Dtype, data: Source<'a>, shape: &[usize]) {
        let bytes = data.byte_len();
        let elements = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        let size = dtype.bitsize() / 8;
        let shape = if elements.and_then(|e| e.checked_mul(size)) == Some(bytes) {
            shape.to_vec()
        } else {
            vec![bytes / size.max(1)]
        };
        self.tensors.push((name.to_string(), dtype, shape, data));
    }

    pub(super) fn f64(&mut self, name: &str, v: &'a [f64], shape: &[usize]) {
        self.tensor(name, Dtype::F64, Source::F64(v), shape);
    }

    pub(super) fn i64(&mut self, name: &str, v: &'a [i64], shape: &[usize]) {
        self.tensor(name, Dtype::I64, Source::I64(v), shape);
    }

    pub(super) fn u32(&mut self, name: &str, v: &'a [u32], shape: &[usize]) {
        self.tensor(name, Dtype::U32, Source::U32(v), shape);
    }

    /// The blob.
    pub(super) fn finish(self, meta: &impl Serialize) -> Vec<u8> {
        // Serialising a struct of strings and integers cannot fail.
        let json = serde_json::to_string(meta).unwrap_or_default();
        let info = HashMap::from([(META_KEY.to_string(), json)]);
        // As `safetensors::serialize` does: sort by descending dtype, then by name; data
        // offsets in that order; the header JSON padded with spaces to a multiple of 8.
        let mut tensors = self.tensors;
        tensors.sort_by(|(ln, ld, ..), (rn, rd, ..)| rd.cmp(ld).then(ln.cmp(rn)));
        let mut infos = Vec::with_capacity(tensors.len());
        let mut offset = 0;
        for (name, dtype, shape, data) in &tensors {
            let n = data.byte_len();
            infos.push((
                name.clone(),
                TensorInfo {
                    dtype: *dtype,
                    shape: shape.clone(),
                    data_offsets: (offset, offset + n),
                },
            ));
            offset += n;
        }
        // Offsets are contiguous by construction and names are unique (each encoder names
        // its tensors distinctly), so the crate's validation cannot fail; its only other
        // failure, a header over 100 MB, names and shapes cannot reach. No input reaches
        // this: it is an invariant of our own encoders.
        #[allow(clippy::expect_used)]
        let metadata = Metadata::new(Some(info), infos)
            .expect("safetensors metadata of contiguous tensors is valid");
        let mut header = serde_json::to_string(&metadata)
            .unwrap_or_default()
            .into_bytes();
        header.resize(header.len().next_multiple_of(8), b' ');
        let start = 8 + header.len();
        let total = start + offset;
        // Written once, without zeroing first: the allocator hands back reused memory,
        // which a zeroed vector would clear on one core.
        let mut buffer: Vec<u8> = Vec::with_capacity(total);
        let (head, mut rest) = buffer.spare_capacity_mut()[..total].split_at_mut(start);
        let prefix = (header.len() as u64).to_le_bytes();
        for (d, &b) in head.iter_mut().zip(prefix.iter().chain(&header)) {
            d.write(b);
        }
        for (_, _, _, data) in &tensors {
            let n = data.byte_len();
            let (here, tail) = rest.split_at_mut(n);
            data.write(here);
            rest = tail;
        }
        // SAFETY: the first `total` bytes of the capacity are written: `start` by the
        // prefix and header (8 + header.len() bytes), then each tensor's `byte_len` bytes,
        // whose sum is `offset` (`Source::write` writes every byte of its stretch).
        unsafe { buffer.set_len(total) };
        buffer
    }
}

/// A parsed blob plus typed tensor accessors that check dtype and shape.
pub(super) struct Reader<'a> {
    pub(super) st: SafeTensors<'a>,
    pub(super) meta: String,
}

impl<'a> Reader<'a> {
    pub(super) fn open(bytes: &'a [u8]) -> Result<Self, BlobError> {
        let (_, metadata) =
            SafeTensors::read_metadata(bytes).map_err(|e| BlobError::Format(e.to_string()))?;
        let meta = metadata
            .metadata()
            .as_ref()
            .and_then(|m| m.get(META_KEY))
            .cloned()
            .ok_or_else(|| BlobError::Metadata(format!("no '{META_KEY}' metadata entry")))?;
        let st = SafeTensors::deserialize(bytes).map_err(|e| BlobError::Format(e.to_string()))?;
        Ok(Reader { st, meta })
    }

    /// Parses the metadata as `T` after checking its kind and version.
    pub(super) fn meta<T: for<'de> Deserialize<'de>>(
        &self,
        expected: &'static str,
        expected_version: u32,
    ) -> Result<T, BlobError> {
        let header: Header =
            serde_json::from_str(&self.meta).map_err(|e| BlobError::Metadata(e.to_string()))?;
        if header.kind != expected || header.version != expected_version {
            return Err(BlobError::Kind {
                expected,
                expected_version,
                found: header.kind,
                version: header.version,
            });
        }
        serde_json::from_str(&self.meta).map_err(|e| BlobError::Metadata(e.to_string()))
    }

    pub(super) fn bad(&self, name: &str, message: String) -> BlobError {
        BlobError::Tensor {
            name: name.to_string(),
            message,
        }
    }

    /// The raw bytes of a tensor of `dtype`, and its shape; `shape` (if given) must match.
    pub(super) fn raw(
        &self,
        name: &str,
        dtype: Dtype,
        shape: Option<&[usize]>,
    ) -> Result<(Vec<usize>, &'a [u8]), BlobError> {
        let view = self
            .st
            .tensor(name)
            .map_err(|_| BlobError::Missing(name.to_string()))?;
        if view.dtype() != dtype {
            return Err(self.bad(
                name,
                format!("dtype {:?}, expected {dtype:?}", view.dtype()),
            ));
        }
        match shape {
            Some(s) if view.shape() != s => {
                Err(self.bad(name, format!("shape {:?}, expected {s:?}", view.shape())))
            }
            None if view.shape().len() != 1 => Err(self.bad(
                name,
                format!("shape {:?}, expected one dimension", view.shape()),
            )),
            _ => Ok((view.shape().to_vec(), view.data())),
        }
    }

    pub(super) fn f64(
        &self,
        name: &str,
        shape: Option<&[usize]>,
    ) -> Result<(Vec<usize>, Vec<f64>), BlobError> {
        let (shape, data) = self.raw(name, Dtype::F64, shape)?;
        Ok((shape, read_le(data, f64::from_le_bytes)))
    }

    /// [`Reader::f64`], read in place in `blob` (the bytes this reader opened) where it can.
    pub(super) fn f64_in(
        &self,
        blob: &Arc<Vec<u8>>,
        name: &str,
        shape: &[usize],
    ) -> Result<F64s, BlobError> {
        let (_, data) = self.raw(name, Dtype::F64, Some(shape))?;
        Ok(F64s::in_blob(blob, data, || {
            read_le(data, f64::from_le_bytes)
        }))
    }

    pub(super) fn i64(
        &self,
        name: &str,
        shape: Option<&[usize]>,
    ) -> Result<(Vec<usize>, Vec<i64>), BlobError> {
        let (shape, data) = self.raw(name, Dtype::I64, shape)?;
        Ok((shape, read_le(data, i64::from_le_bytes)))
    }

    pub(super) fn u32(&self, name: &str, shape: &[usize]) -> Result<Vec<u32>, BlobError> {
        let (_, data) = self.raw(name, Dtype::U32, Some(shape))?;
        Ok(read_le(data, u32::from_le_bytes))
    }
}
