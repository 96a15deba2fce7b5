//! `store::hash_file` (memory-mapped, multi-threaded above a size threshold) gives the plain
//! blake3 of the bytes at every size, and the stat cache answers from the fingerprint.

use std::io::Write;

use hft::store::{Digest, StatCache, Store, hash_file};

fn bytes(n: usize) -> Vec<u8> {
    let mut state = 0x9E37_79B9_7F4A_7C15_u64 ^ n as u64;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

#[test]
fn hash_file_is_blake3_of_the_bytes_at_every_size() {
    let dir = tempfile::tempdir().unwrap();
    let sizes = [
        0,
        1,
        1023,
        1024,
        1025,
        16 << 10,
        (4 << 20) - 1,
        4 << 20,
        (4 << 20) + 1,
        (9 << 20) + 12345,
        40 << 20,
    ];
    for n in sizes {
        let data = bytes(n);
        let path = dir.path().join(format!("f{n}"));
        std::fs::File::create(&path)
            .unwrap()
            .write_all(&data)
            .unwrap();
        assert_eq!(hash_file(&path).unwrap(), Digest::of(&data), "{n} bytes");
    }
    assert!(hash_file(&dir.path().join("missing")).is_err());
}

#[test]
fn stat_cache_rehashes_only_changed_files() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("cache")).unwrap();
    let path = dir.path().join("data.csv");
    std::fs::write(&path, bytes(5 << 20)).unwrap();
    let mut cache = StatCache::load(&store);
    let (first, fp) = cache.digest(&path).unwrap();
    assert_eq!(first, Digest::of(&bytes(5 << 20)));
    cache.save(&store).unwrap();
    let mut cache = StatCache::load(&store);
    assert_eq!(cache.digest(&path).unwrap(), (first, fp));
    std::fs::write(&path, b"other").unwrap();
    assert_eq!(cache.digest(&path).unwrap().0, Digest::of(b"other"));
}
