//! Large files written around the page cache (`O_DIRECT`, Linux).
//!
//! Every store write is fsynced before it counts, so its bytes go to the disk before the
//! writer moves on whatever the path. Through the page cache they are first copied into
//! freshly allocated cache pages (with a full page cache, each one reclaimed first): for
//! the feature pipeline's 400 MB of blobs that copy cost more CPU than parsing the CSV
//! (BENCHMARKS.md, issue 22). With `O_DIRECT` the disk reads the bytes from a small
//! aligned buffer instead. Files that would not be read back soon anyway (a blob read by
//! the next stage of the same build comes from memory, `store::blobs`) lose nothing;
//! another process reads them from the disk rather than the cache.
//!
//! Any filesystem that refuses `O_DIRECT` (tmpfs, some network filesystems) gets the
//! ordinary buffered write, as does every other OS.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;

/// Files smaller than this are written through the page cache: the saving is small and
/// the records read back soon (action records, indexes).
pub(super) const DIRECT_MIN_BYTES: usize = 8 << 20;

/// `bytes` as a new file at `path` (created or truncated), not yet fsynced: around the page
/// cache when the file is large and the filesystem allows it, else buffered.
pub(super) fn write_new_file(path: &Path, bytes: &[u8]) -> io::Result<File> {
    #[cfg(target_os = "linux")]
    if bytes.len() >= DIRECT_MIN_BYTES {
        match linux::write_direct(path, bytes) {
            Ok(file) => return Ok(file),
            // Not supported here (or an alignment the device refuses): write it buffered.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
            Err(e) => return Err(e),
        }
    }
    let mut file = File::create(path)?;
    file.write_all(bytes)?;
    Ok(file)
}

#[cfg(target_os = "linux")]
mod linux {
    use std::alloc::{Layout, alloc, dealloc};
    use std::fs::{File, OpenOptions};
    use std::io::{self, Write};
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    use std::path::Path;

    /// Offsets, lengths and buffer addresses of direct I/O are multiples of the device's
    /// logical block size; 4096 covers every common device.
    const ALIGN: usize = 4096;
    /// Bytes per write: large enough for the disk's full speed, small enough to stay in
    /// the CPU's cache while copied in.
    const CHUNK: usize = 8 << 20;

    /// An aligned buffer of [`CHUNK`] bytes.
    struct Aligned {
        ptr: *mut u8,
        layout: Layout,
    }

    impl Aligned {
        fn new() -> io::Result<Aligned> {
            let layout = Layout::from_size_align(CHUNK, ALIGN).map_err(io::Error::other)?;
            // SAFETY: the layout has a non-zero size.
            let ptr = unsafe { alloc(layout) };
            if ptr.is_null() {
                return Err(io::Error::from(io::ErrorKind::OutOfMemory));
            }
            Ok(Aligned { ptr, layout })
        }

        /// The first `len` bytes, `bytes` copied in.
        fn fill(&mut self, bytes: &[u8]) -> &[u8] {
            let len = bytes.len().min(CHUNK);
            // SAFETY: `ptr` owns CHUNK bytes, `len <= CHUNK`, and `bytes` cannot overlap a
            // buffer this struct allocated.
            unsafe {
                std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.ptr, len);
                std::slice::from_raw_parts(self.ptr, len)
            }
        }
    }

    impl Drop for Aligned {
        fn drop(&mut self) {
            // SAFETY: allocated in `new` with this layout.
            unsafe { dealloc(self.ptr, self.layout) }
        }
    }

    /// The whole blocks through `O_DIRECT`, the tail (under one block) buffered.
    pub(super) fn write_direct(path: &Path, bytes: &[u8]) -> io::Result<File> {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .custom_flags(libc::O_DIRECT)
            .open(path)?;
        let whole = bytes.len() / ALIGN * ALIGN;
        let mut buffer = Aligned::new()?;
        for chunk in bytes[..whole].chunks(CHUNK) {
            file.write_all(buffer.fill(chunk))?;
        }
        let fd = file.as_raw_fd();
        // SAFETY: fcntl on a descriptor this function owns; clears only O_DIRECT.
        let cleared = unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFL);
            flags >= 0 && libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_DIRECT) == 0
        };
        if !cleared {
            return Err(io::Error::last_os_error());
        }
        file.write_all(&bytes[whole..])?;
        Ok(file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_files_read_back_byte_for_byte() {
        let dir = std::env::temp_dir().join(format!("hft-direct-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // Whole chunks, a partial chunk and a tail shorter than a block; and exact blocks.
        for len in [
            DIRECT_MIN_BYTES + (8 << 20) + 3 * 4096 + 17,
            DIRECT_MIN_BYTES,
        ] {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let path = dir.join(format!("{len}.bin"));
            let file = write_new_file(&path, &bytes).unwrap();
            file.sync_all().unwrap();
            drop(file);
            assert!(std::fs::read(&path).unwrap() == bytes, "{len} bytes");
            // Rewriting a file truncates it.
            write_new_file(&path, &bytes[..len / 2]).unwrap();
            assert_eq!(std::fs::read(&path).unwrap().len(), len / 2);
        }
        std::fs::remove_dir_all(dir).unwrap();
    }
}
