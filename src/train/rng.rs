//! The training's random streams: shuffles and dropout seeds as pure functions of
//! `(seed, stream, index)`, from a splitmix64 fully specified here so they never change
//! with a dependency upgrade.

pub(super) const SHUFFLE_STREAM: u64 = 1;
pub(super) const DROPOUT_STREAM: u64 = 2;
/// Dropout seeds of the further devices of a data-parallel step, from the micro-batch's.
pub(super) const SHARD_STREAM: u64 = 3;

/// A seed for draw `index` of stream `stream`, independent across streams and indices.
pub(super) fn stream(seed: u64, stream: u64, index: u64) -> u64 {
    let mut s = SplitMix64(seed ^ stream.wrapping_mul(0xA076_1D64_78BD_642F));
    s.0 ^= s.next().wrapping_add(index);
    s.next()
}

/// A seeded permutation of `0..n` (Fisher-Yates).
pub(super) fn permutation(n: usize, seed: u64) -> Vec<usize> {
    let mut rng = SplitMix64(seed);
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        // Multiply-shift maps 64 random bits onto 0..=i without modulo bias worth noticing.
        let j = ((u128::from(rng.next()) * (i as u128 + 1)) >> 64) as usize;
        order.swap(i, j);
    }
    order
}

/// splitmix64 (Steele, Lea, Flood 2014): tiny, fast, and fully specified here, so shuffles
/// never change with a dependency upgrade.
pub(super) struct SplitMix64(pub(super) u64);

impl SplitMix64 {
    pub(super) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutation_is_seeded_and_complete() {
        let a = permutation(50, 7);
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
        assert_eq!(a, permutation(50, 7));
        assert_ne!(a, permutation(50, 8));
        assert_ne!(stream(1, SHUFFLE_STREAM, 0), stream(1, DROPOUT_STREAM, 0));
        assert_ne!(stream(1, SHUFFLE_STREAM, 0), stream(1, SHUFFLE_STREAM, 1));
    }
}
