fn main() -> std::process::ExitCode {
    // `hft status` trains nothing; its threads parse records and allocate small blocks, and
    // with one arena they spent a quarter of its time waiting on the allocator's lock.
    let trains = std::env::args_os().nth(1).is_none_or(|a| a != "status");
    keep_freed_memory_for_reuse(trains);
    hft::cli::main()
}

/// Training allocates and frees the same large tensors every step. glibc serves blocks over
/// its mmap threshold (128 KiB to 32 MiB, adapting) with fresh mappings, so each step paid
/// page faults and kernel page zeroing again: about 13% of transformer-ref's training time
/// in a profile. Served from the heap and not trimmed back, freed blocks are reused: 1.1x faster
/// training, the same peak RSS (BENCHMARKS.md). One arena: the worker threads' own arenas
/// (64 MiB heaps, unmapped when empty) still faulted in a fresh heap for large tensors, 10%
/// of transformer-ref's time; with one arena it trained 1.12x faster (BENCHMARKS.md).
fn keep_freed_memory_for_reuse(one_arena: bool) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; it is called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        if one_arena {
            libc::mallopt(libc::M_ARENA_MAX, 1);
        }
    }
}
