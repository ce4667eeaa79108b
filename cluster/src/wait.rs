//! Waiting for a condition in tests: poll with a growing pause, up to a
//! deadline, never sleep-and-hope.

use std::time::{Duration, Instant};

/// Polls `cond` until it holds (returns `true`) or `timeout` passes
/// (returns `false`).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// let mut n = 0;
/// assert!(cluster::wait_until(Duration::from_secs(5), || { n += 1; n == 3 }));
/// assert!(!cluster::wait_until(Duration::ZERO, || false));
/// ```
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(1);
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}
