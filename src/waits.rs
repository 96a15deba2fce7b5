//! Time a stage spends waiting (for its share of the cores, for burn's process-wide RNG)
//! rather than working: stage lines show it apart, so a stage that waited ten seconds for a
//! training to release the RNG does not look like ten seconds of work.
//!
//! A leaf: per thread, added by [`waited`] around a blocking acquisition and collected by
//! [`take`] on the thread that ran the stage.

use std::cell::Cell;
use std::time::Instant;

thread_local! {
    static WAITED: Cell<f64> = const { Cell::new(0.0) };
}

/// Runs `acquire` (a blocking wait) and counts its time as waiting.
pub fn waited<T>(acquire: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let out = acquire();
    let secs = started.elapsed().as_secs_f64();
    WAITED.with(|w| w.set(w.get() + secs));
    out
}

/// The waiting counted on this thread since the last call, in seconds.
pub fn take() -> f64 {
    WAITED.with(|w| w.replace(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_are_counted_per_thread_and_taken_once() {
        take();
        waited(|| std::thread::sleep(std::time::Duration::from_millis(20)));
        std::thread::spawn(|| waited(|| std::thread::sleep(std::time::Duration::from_millis(50))))
            .join()
            .unwrap();
        let here = take();
        assert!((0.015..0.045).contains(&here), "{here}");
        assert_eq!(take(), 0.0);
    }
}
