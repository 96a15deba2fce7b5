#![no_main]

#[path = "../harness.rs"]
mod harness;

/// The Parquet reader turns a panic inside the parquet crate's decoders into a "corrupt
/// file" error (`catch_unwind` around each batch). libFuzzer's panic hook aborts on every
/// panic, caught or not, so it is replaced by a silent one here: what this target checks is
/// that no panic escapes `parse_parquet` (one that does still aborts in `fuzz_target!`),
/// exactly what `tests/fuzz_corpus.rs` replays.
static QUIET_HOOK: std::sync::Once = std::sync::Once::new();

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    QUIET_HOOK.call_once(|| std::panic::set_hook(Box::new(|_| {})));
    harness::parquet(data)
});
