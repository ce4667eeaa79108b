//! Backoff and deadlines with the time passed in: the core never reads a
//! clock, so a blocking driver, an async one and a simulation with its own
//! time all compute the same waits.
//!
//! Times are `Duration`s since an epoch the driver chooses (the blocking
//! [`Client`](crate::Client) measures from its creation; a simulation uses
//! its simulated time).

use std::time::Duration;

/// Exponential backoff: the first wait is `initial`, each next one doubles,
/// never beyond `max`.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use client::Backoff;
///
/// let mut b = Backoff::new(Duration::from_millis(5), Duration::from_millis(12));
/// let waits: Vec<u128> = (0..4).map(|_| b.next_delay().as_millis()).collect();
/// assert_eq!(waits, vec![5, 10, 12, 12]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    /// A backoff starting at `initial`, capped at `max`.
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            next: initial.min(max),
            max,
        }
    }

    /// The wait before the next attempt; the one after it doubles.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        delay
    }
}

/// The point in time after which an operation stops retrying.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use client::Deadline;
///
/// let ms = Duration::from_millis;
/// let d = Deadline::new(ms(100), ms(50));
/// assert!(!d.expired(ms(150)));
/// assert!(d.expired(ms(151)));
/// assert_eq!(d.remaining(ms(120)), ms(30));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    at: Duration,
}

impl Deadline {
    /// `budget` after `start`.
    pub fn new(start: Duration, budget: Duration) -> Deadline {
        Deadline {
            at: start.saturating_add(budget),
        }
    }

    /// Whether the budget is used up at `now` (strictly past the deadline).
    pub fn expired(&self, now: Duration) -> bool {
        now > self.at
    }

    /// Time left at `now` (zero once expired).
    pub fn remaining(&self, now: Duration) -> Duration {
        self.at.saturating_sub(now)
    }
}
