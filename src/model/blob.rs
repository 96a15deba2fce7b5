//! The byte container shared by weights blobs and checkpoints.
//!
//! Layout, integers little-endian:
//!
//! ```text
//! magic (8 bytes) | format version u32 | section count u32
//! per section:      tag (4 ASCII bytes) | length u64 | bytes
//! blake3 hash (32 bytes) of everything before it
//! ```
//!
//! The hash is checked before any section is parsed, so a damaged or truncated file gives a
//! clear error instead of reaching burn's decoders, which are not hardened against bad input.

use super::ModelError;

/// Bumped when the layout above changes.
const FORMAT_VERSION: u32 = 1;
const HASH_LEN: usize = 32;

/// Serialises `sections` (in the given order) under `magic`.
pub(crate) fn encode(magic: &[u8; 8], sections: &[([u8; 4], &[u8])]) -> Vec<u8> {
    let body: usize = sections.iter().map(|(_, b)| 12 + b.len()).sum();
    let mut out = Vec::with_capacity(16 + body + HASH_LEN);
    out.extend_from_slice(magic);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(sections.len() as u32).to_le_bytes());
    for (tag, bytes) in sections {
        out.extend_from_slice(tag);
        out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        out.extend_from_slice(bytes);
    }
    let hash = blake3::hash(&out);
    out.extend_from_slice(hash.as_bytes());
    out
}

/// The sections of a verified container.
pub(crate) struct Sections<'a> {
    what: &'static str,
    items: Vec<([u8; 4], &'a [u8])>,
}

impl<'a> Sections<'a> {
    /// The section tagged `tag`.
    pub(crate) fn get(&self, tag: &[u8; 4]) -> Result<&'a [u8], ModelError> {
        self.items
            .iter()
            .find(|(t, _)| t == tag)
            .map(|(_, b)| *b)
            .ok_or_else(|| {
                ModelError::Blob(format!(
                    "{} has no `{}` section",
                    self.what,
                    String::from_utf8_lossy(tag)
                ))
            })
    }
}

/// Checks magic, version and hash, then splits the container into its sections.
/// `what` names the blob in error messages ("checkpoint", "weights blob").
pub(crate) fn decode<'a>(
    bytes: &'a [u8],
    magic: &[u8; 8],
    what: &'static str,
) -> Result<Sections<'a>, ModelError> {
    let bad = |msg: String| ModelError::Blob(format!("{what} is unreadable: {msg}"));
    if bytes.len() < 16 + HASH_LEN || &bytes[..8] != magic {
        return Err(bad(format!(
            "it does not start with the `{}` header",
            String::from_utf8_lossy(magic)
        )));
    }
    let (body, hash) = bytes.split_at(bytes.len() - HASH_LEN);
    if blake3::hash(body).as_bytes() != hash {
        return Err(bad("checksum mismatch (damaged or truncated)".into()));
    }
    let mut reader = Reader { rest: &body[8..] };
    let version = reader.u32()?;
    if version != FORMAT_VERSION {
        return Err(bad(format!(
            "format version {version}, this build reads {FORMAT_VERSION}"
        )));
    }
    let count = reader.u32()?;
    let mut items = Vec::new();
    for _ in 0..count {
        let tag: [u8; 4] = reader.take(4)?.try_into().map_err(|_| truncated())?;
        let len = usize::try_from(reader.u64()?).map_err(|_| truncated())?;
        items.push((tag, reader.take(len)?));
    }
    if !reader.rest.is_empty() {
        return Err(bad("trailing bytes after the last section".into()));
    }
    Ok(Sections { what, items })
}

fn truncated() -> ModelError {
    ModelError::Blob("container section runs past the end".into())
}

struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ModelError> {
        if n > self.rest.len() {
            return Err(truncated());
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32, ModelError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, ModelError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage_detection() {
        let bytes = encode(b"HFT-TEST", &[(*b"AAAA", b"one"), (*b"BBBB", b"")]);
        let s = decode(&bytes, b"HFT-TEST", "test blob").unwrap();
        assert_eq!(s.get(b"AAAA").unwrap(), b"one");
        assert_eq!(s.get(b"BBBB").unwrap(), b"");
        assert!(s.get(b"CCCC").is_err());

        let mut damaged = bytes.clone();
        damaged[20] ^= 1;
        let err = decode(&damaged, b"HFT-TEST", "test blob").err().unwrap();
        assert!(err.to_string().contains("checksum"), "{err}");
        assert!(decode(&bytes[..bytes.len() - 1], b"HFT-TEST", "x").is_err());
        assert!(decode(&bytes, b"HFT-OTHR", "x").is_err());
        assert!(decode(b"", b"HFT-TEST", "x").is_err());
    }
}
