//! A store's disk failure: the first raft-log or KV write that failed.
//! Once recorded, the store writes nothing more and answers every command
//! with an error naming it (see `docs/overload.md`, "Disk errors").

use std::sync::OnceLock;

use kvproto_lite::errorpb;

/// The first failed disk write of one store, shared by its raft and apply
/// pollers (it travels inside the [`ApplyRouter`](crate::ApplyRouter)).
///
/// Set once, never cleared: a store that failed a write stops writing, and
/// only a restart (which recovers from what is durable) brings it back.
///
/// # Examples
///
/// ```
/// let failure = apply::DiskFailure::default();
/// assert!(failure.reason().is_none());
/// assert!(failure.record("kv write: disk full"));
/// assert!(!failure.record("a later failure is not the cause"));
/// assert_eq!(failure.reason(), Some("kv write: disk full"));
/// let err = failure.outcome_unknown_error().unwrap();
/// assert!(err.get_message().contains("kv write: disk full"));
/// ```
#[derive(Debug, Default)]
pub struct DiskFailure {
    reason: OnceLock<String>,
}

impl DiskFailure {
    /// Records `reason` as the store's failure; returns `false` (and keeps
    /// the first reason) if one was recorded already.
    pub fn record(&self, reason: impl Into<String>) -> bool {
        self.reason.set(reason.into()).is_ok()
    }

    /// The recorded failure, if any.
    pub fn reason(&self) -> Option<&str> {
        self.reason.get().map(String::as_str)
    }

    /// Whether a failure was recorded.
    pub fn is_failed(&self) -> bool {
        self.reason.get().is_some()
    }

    /// The error for a command that was accepted before the store stopped
    /// (untyped: its entry may still commit through the other replicas, so
    /// its outcome is unknown).
    pub fn outcome_unknown_error(&self) -> Option<errorpb::Error> {
        let reason = self.reason()?;
        Some(kvproto_lite::util::new_error(format!(
            "store stopped after a failed disk write ({reason}): outcome unknown"
        )))
    }
}
