//! The process's allocator: the system's (glibc's, tuned by `cli::tune_allocator`), with
//! every large block marked for transparent huge pages.
//!
//! Why: a build's large buffers (a CSV read into memory, parsed rows, feature columns, each
//! stage's blob, training's tensors) are fresh memory, and the kernel backs fresh memory one
//! 4 KiB page per fault. Where THP is `madvise` (the common default), those faults are most
//! of a feature run's system time: 120,000 of them for a 2M-row file, several microseconds
//! each in a VM. Marked `MADV_HUGEPAGE` before their first touch, the same blocks fault in
//! 2 MiB at a time (BENCHMARKS.md). Where THP is `never` the advice is ignored; where it is
//! `always` it changes nothing.
//!
//! Only whole 2 MiB extents inside a block are marked, so the advice never reaches memory
//! the block does not own; small blocks are left alone. The bytes a block holds, and so
//! every result, are the same either way.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Blocks at least this large are marked.
const LARGE: usize = 4 << 20;
/// A transparent huge page on x86-64 and most arm64 kernels.
const HUGE_PAGE: usize = 2 << 20;

/// [`System`], with blocks of [`LARGE`] bytes or more marked for transparent huge pages.
pub struct HugePageAlloc;

/// The extent marked last: a block inside it is not marked again (the heap is reused and
/// not trimmed, so most large blocks land in memory already marked). Updated without a
/// lock; a race only costs a second `madvise` of the same extent. A block mapped anew where
/// a marked one was unmapped (blocks over glibc's mmap threshold) may go unmarked: that
/// costs page faults, nothing else.
static MARKED_START: AtomicUsize = AtomicUsize::new(0);
static MARKED_END: AtomicUsize = AtomicUsize::new(0);

fn mark(ptr: *mut u8, size: usize) {
    if ptr.is_null() || size < LARGE {
        return;
    }
    let start = (ptr as usize).next_multiple_of(HUGE_PAGE);
    let end = (ptr as usize + size) / HUGE_PAGE * HUGE_PAGE;
    if end <= start {
        return;
    }
    let (marked_start, marked_end) = (
        MARKED_START.load(Ordering::Relaxed),
        MARKED_END.load(Ordering::Relaxed),
    );
    if marked_start <= start && end <= marked_end {
        return;
    }
    #[cfg(target_os = "linux")]
    // SAFETY: the range is page-aligned and inside a block this allocator just handed out;
    // MADV_HUGEPAGE changes how its pages are backed, never their contents.
    unsafe {
        libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
    }
    // Grow the remembered extent when the new one touches it, else remember the new one.
    if start <= marked_end && marked_start <= end && marked_end > marked_start {
        MARKED_START.store(start.min(marked_start), Ordering::Relaxed);
        MARKED_END.store(end.max(marked_end), Ordering::Relaxed);
    } else {
        MARKED_START.store(start, Ordering::Relaxed);
        MARKED_END.store(end, Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded to `System` with the same arguments; `mark` only advises
// the kernel about memory inside the block returned.
unsafe impl GlobalAlloc for HugePageAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as given.
        let ptr = unsafe { System.alloc(layout) };
        mark(ptr, layout.size());
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as given.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        mark(ptr, layout.size());
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as given.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded as given.
        let ptr = unsafe { System.realloc(ptr, layout, new_size) };
        mark(ptr, new_size);
        ptr
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Large and small blocks, grown and shrunk, keep their bytes.
    #[test]
    fn blocks_keep_their_bytes() {
        let a = HugePageAlloc;
        for size in [64, LARGE - 1, LARGE, 3 * LARGE + 12_345] {
            let layout = Layout::from_size_align(size, 8).unwrap();
            // SAFETY: a valid non-zero layout; every pointer is used within its block.
            unsafe {
                let p = a.alloc(layout);
                assert!(!p.is_null());
                for i in (0..size).step_by(4093) {
                    *p.add(i) = (i % 251) as u8;
                }
                let q = a.realloc(p, layout, 2 * size);
                assert!(!q.is_null());
                for i in (0..size).step_by(4093) {
                    assert_eq!(*q.add(i), (i % 251) as u8);
                }
                a.dealloc(q, Layout::from_size_align(2 * size, 8).unwrap());
                let z = a.alloc_zeroed(layout);
                assert!((0..size).step_by(4093).all(|i| *z.add(i) == 0));
                a.dealloc(z, layout);
            }
        }
    }
}
