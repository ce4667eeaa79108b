//! What the apply system records through the `metrics` facade (the program
//! running the store installs the exporter; with none, every handle is a
//! no-op).
//!
//! | name | kind | labels | what |
//! |---|---|---|---|
//! | `apply_rounds_total` | counter | | apply poll rounds that wrote or answered something |
//! | `apply_entries_total` | counter | | committed entries executed |
//! | `apply_write_duration_seconds` | histogram | `sync` (`true`, `false`) | one round's KV write batch, fsync included when `sync` |
//! | `apply_write_failures_total` | counter | | rounds whose write failed (their entries are applied again) |
//!
//! The write is timed for the histogram only; nothing depends on the
//! clock reading.

use metrics::{counter, histogram, Counter, Histogram};

/// The handles one apply poller records through.
pub(crate) struct ApplyMetrics {
    pub(crate) rounds: Counter,
    pub(crate) entries: Counter,
    pub(crate) write_synced: Histogram,
    pub(crate) write_unsynced: Histogram,
    pub(crate) write_failures: Counter,
}

impl ApplyMetrics {
    pub(crate) fn new() -> ApplyMetrics {
        ApplyMetrics {
            rounds: counter!("apply_rounds_total"),
            entries: counter!("apply_entries_total"),
            write_synced: histogram!("apply_write_duration_seconds", "sync" => "true"),
            write_unsynced: histogram!("apply_write_duration_seconds", "sync" => "false"),
            write_failures: counter!("apply_write_failures_total"),
        }
    }
}
