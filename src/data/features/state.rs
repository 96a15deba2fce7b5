//! [`FeatureState`]: what continuing the feature computation needs (the recursive averages
//! after the last bar, a digest of the bars a continuation reads again), and its own
//! versioned, checksummed binary format.

use super::Recursive;
use crate::data::ingest::DataError;

/// What [`FeatureState::from_bytes`] names as the symbol in its errors (a state has none).
const STATE_SUBJECT: &str = "saved feature state";
const STATE_MAGIC: &[u8; 8] = b"HFTFSTAT";
const STATE_VERSION: u32 = 1;
pub(super) const DIGEST_LEN: usize = 32;

/// Everything needed to continue the feature computation after the last bar of the bars it was
/// computed from: the recursive averages at that bar (EMAs, the MACD EMAs and signal, the Wilder
/// RSI averages) and a digest of the bars the continuation reads again. Rolling means, standard
/// deviations and extremes need no saved accumulator: they re-sum from scratch every `w` bars,
/// so [`extend`] replays them exactly from the last re-summation point.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureState {
    /// The selected features, in column order.
    pub(super) names: Vec<String>,
    /// Bars consumed.
    pub(super) bars: usize,
    /// Timestamp of the last bar consumed.
    pub(super) last_timestamp: i64,
    /// blake3 of the last `CONTEXT_BARS` bars consumed (see `extend::context_digest`).
    pub(super) context_digest: [u8; DIGEST_LEN],
    /// Recursive averages after the last bar, by key (see `extend::recursive_keys`), sorted by key.
    pub(super) recursive: Recursive,
}

impl FeatureState {
    /// The number of bars this state has consumed.
    pub fn bars(&self) -> usize {
        self.bars
    }

    /// The features this state belongs to, in column order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Version 1, little-endian: magic `HFTFSTAT`, version u32, bars u64, last timestamp i64,
    /// context digest (32 bytes), names (u32 count, then u32 length + UTF-8 each), recursive
    /// averages (u32 count, then u32 length + UTF-8 key + f64 bits each), and a blake3 digest of
    /// everything before it (32 bytes).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128 + 16 * (self.names.len() + self.recursive.len()));
        out.extend_from_slice(STATE_MAGIC);
        out.extend_from_slice(&STATE_VERSION.to_le_bytes());
        out.extend_from_slice(&(self.bars as u64).to_le_bytes());
        out.extend_from_slice(&self.last_timestamp.to_le_bytes());
        out.extend_from_slice(&self.context_digest);
        let put_str = |out: &mut Vec<u8>, s: &str| {
            out.extend_from_slice(&(s.len() as u32).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
        };
        out.extend_from_slice(&(self.names.len() as u32).to_le_bytes());
        for name in &self.names {
            put_str(&mut out, name);
        }
        out.extend_from_slice(&(self.recursive.len() as u32).to_le_bytes());
        for (key, value) in &self.recursive {
            put_str(&mut out, key);
            out.extend_from_slice(&value.to_bits().to_le_bytes());
        }
        let checksum = blake3::hash(&out);
        out.extend_from_slice(checksum.as_bytes());
        out
    }

    /// Decodes [`FeatureState::to_bytes`]; errors (never panics) on truncated, corrupted or
    /// foreign bytes, naming the byte offset.
    pub fn from_bytes(bytes: &[u8]) -> Result<FeatureState, DataError> {
        let fail = |at: usize, what: String| DataError::Features {
            symbol: STATE_SUBJECT.to_string(),
            message: format!(
                "byte {at}: {what}; discard the state and compute the features in full"
            ),
        };
        let header = STATE_MAGIC.len() + 4;
        if bytes.len() < header + DIGEST_LEN {
            return Err(fail(
                bytes.len(),
                format!(
                    "truncated: {} bytes, a state has at least {}",
                    bytes.len(),
                    header + DIGEST_LEN
                ),
            ));
        }
        if !bytes.starts_with(STATE_MAGIC) {
            return Err(fail(0, "not a feature state (bad magic)".into()));
        }
        let mut r = StateReader {
            bytes,
            at: STATE_MAGIC.len(),
        };
        let version = u32::from_le_bytes(r.array().map_err(|e| fail(r.at, e))?);
        if version != STATE_VERSION {
            return Err(fail(
                STATE_MAGIC.len(),
                format!("version {version}, this build reads version {STATE_VERSION}"),
            ));
        }
        let body_len = bytes.len() - DIGEST_LEN;
        let (body, checksum) = bytes.split_at(body_len);
        if blake3::hash(body).as_bytes() != checksum {
            return Err(fail(body_len, "checksum mismatch (corrupted)".into()));
        }
        r.bytes = body;
        let bars = u64::from_le_bytes(r.array().map_err(|e| fail(r.at, e))?);
        let bars = usize::try_from(bars)
            .map_err(|_| fail(r.at, format!("{bars} bars do not fit this machine")))?;
        let last_timestamp = i64::from_le_bytes(r.array().map_err(|e| fail(r.at, e))?);
        let context_digest: [u8; DIGEST_LEN] = r.array().map_err(|e| fail(r.at, e))?;
        let count = r.count(4).map_err(|e| fail(r.at, e))?;
        let mut names = Vec::with_capacity(count);
        for _ in 0..count {
            names.push(r.string().map_err(|e| fail(r.at, e))?);
        }
        let count = r.count(12).map_err(|e| fail(r.at, e))?;
        let mut recursive: Recursive = Vec::with_capacity(count);
        for _ in 0..count {
            let key = r.string().map_err(|e| fail(r.at, e))?;
            let value = f64::from_bits(u64::from_le_bytes(r.array().map_err(|e| fail(r.at, e))?));
            if recursive.last().is_some_and(|(last, _)| *last >= key) {
                return Err(fail(r.at, format!("key '{key}' out of order")));
            }
            recursive.push((key, value));
        }
        if r.at != body.len() {
            return Err(fail(
                r.at,
                format!("{} unexpected trailing bytes", body.len() - r.at),
            ));
        }
        Ok(FeatureState {
            names,
            bars,
            last_timestamp,
            context_digest,
            recursive,
        })
    }
}

/// A bounds-checked cursor over state bytes; errors say what was expected.
struct StateReader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl StateReader<'_> {
    fn take(&mut self, len: usize) -> Result<&[u8], String> {
        let end = self.at.checked_add(len);
        match end.and_then(|end| self.bytes.get(self.at..end)) {
            Some(s) => {
                self.at += len;
                Ok(s)
            }
            None => Err(format!(
                "truncated: needs {len} bytes, {} left",
                self.bytes.len().saturating_sub(self.at)
            )),
        }
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let s = self.take(N)?;
        let mut out = [0; N];
        out.copy_from_slice(s);
        Ok(out)
    }

    /// A u32 count of items of at least `min_item` bytes each, checked against what is left
    /// (so garbage cannot make us allocate).
    fn count(&mut self, min_item: usize) -> Result<usize, String> {
        let count = u32::from_le_bytes(self.array()?) as usize;
        let left = self.bytes.len().saturating_sub(self.at);
        if count.saturating_mul(min_item) > left {
            return Err(format!("{count} items cannot fit in the {left} bytes left"));
        }
        Ok(count)
    }

    fn string(&mut self) -> Result<String, String> {
        let len = u32::from_le_bytes(self.array()?) as usize;
        let s = self.take(len)?;
        String::from_utf8(s.to_vec()).map_err(|_| "a name that is not UTF-8".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::features::compute_with_state;

    #[test]
    fn state_bytes_round_trip_and_reject_garbage() {
        let bars = crate::data::synthetic::generate(19, 400, 40.0, 300);
        let (_, state) =
            compute_with_state(&bars, "S", &crate::data::features::tests::all_names()).unwrap();
        let bytes = state.to_bytes();
        let back = FeatureState::from_bytes(&bytes).unwrap();
        assert_eq!(back, state);
        assert_eq!(back.to_bytes(), bytes);
        // Every truncation, every flipped byte, extra bytes, and garbage.
        for len in 0..bytes.len() {
            assert!(
                FeatureState::from_bytes(&bytes[..len]).is_err(),
                "truncated to {len}"
            );
        }
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x5a;
            assert!(FeatureState::from_bytes(&b).is_err(), "byte {i} flipped");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(FeatureState::from_bytes(&longer).is_err());
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for len in [0, 1, 7, 44, 45, 100, 4096] {
            let garbage: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            assert!(FeatureState::from_bytes(&garbage).is_err());
        }
        // Well-formed checksums over bad bodies: a huge count, a bad version, a bad name.
        let seal = |mut body: Vec<u8>| {
            let sum = blake3::hash(&body);
            body.extend_from_slice(sum.as_bytes());
            body
        };
        let mut head_only = bytes[..8 + 4 + 8 + 8 + 32].to_vec();
        head_only.extend_from_slice(&u32::MAX.to_le_bytes());
        let e = FeatureState::from_bytes(&seal(head_only)).unwrap_err();
        assert!(e.to_string().contains("cannot fit"), "{e}");
        let mut body = bytes[..bytes.len() - 32].to_vec();
        body[8] = 2;
        let e = FeatureState::from_bytes(&seal(body)).unwrap_err();
        assert!(e.to_string().contains("version 2"), "{e}");
        let mut body = bytes[..bytes.len() - 32].to_vec();
        body[8 + 4 + 8 + 8 + 32 + 4 + 4] = 0xff; // the first byte of the first name
        let e = FeatureState::from_bytes(&seal(body)).unwrap_err();
        assert!(e.to_string().contains("UTF-8"), "{e}");
        let e = FeatureState::from_bytes(b"HFTFSTAT").unwrap_err();
        assert!(e.to_string().contains("truncated"), "{e}");
    }
}
