//! `ClientOptions`: deadlines and backoff of client operations.

use std::time::Duration;

use crate::backoff::{Backoff, Deadline};

/// Options of a [`Client`](crate::Client) (and of each [`Call`](crate::Call)).
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Total time an operation may take, retries included.
    pub timeout: Duration,
    /// Time to wait for one attempt's answer.
    pub attempt_timeout: Duration,
    /// First backoff after a busy/stale/no-leader answer; doubles up to
    /// `max_backoff`.
    pub initial_backoff: Duration,
    /// Longest backoff.
    pub max_backoff: Duration,
    /// Writes carry a client session (client id + sequence), so retries
    /// after timeouts and unknown outcomes apply at most once. Turning it
    /// off makes such retries unsafe; it exists to demonstrate that.
    pub sessions: bool,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            timeout: Duration::from_secs(20),
            attempt_timeout: Duration::from_secs(3),
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(200),
            sessions: true,
        }
    }
}

impl ClientOptions {
    /// A fresh backoff for one operation.
    pub fn backoff(&self) -> Backoff {
        Backoff::new(self.initial_backoff, self.max_backoff)
    }

    /// The deadline of an operation started at `now`.
    pub fn deadline(&self, now: Duration) -> Deadline {
        Deadline::new(now, self.timeout)
    }
}
