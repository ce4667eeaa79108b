//! What a store records through the `metrics` facade. The program running
//! the store installs the exporter (the `node` binary: Prometheus); with
//! none installed every handle is a no-op.
//!
//! | name | kind | labels | what |
//! |---|---|---|---|
//! | `raftstore_poll_rounds_total` | counter | | raft poll rounds |
//! | `raftstore_readies_total` | counter | | peer Readies persisted (Readies per fsync: its rate over `raftstore_log_syncs_total`'s) |
//! | `raftstore_committed_entries_total` | counter | | committed entries handed to apply |
//! | `raftstore_log_writes_total` | counter | | raft log batches written |
//! | `raftstore_log_syncs_total` | counter | | raft log fsyncs |
//! | `raftstore_log_write_duration_seconds` | histogram | `sync` (`true`, `false`) | one raft log batch write, fsync included when `sync` |
//! | `raftstore_proposals_total` | counter | | entries proposed (several commands of a round merge into one entry) |
//! | `raftstore_commit_duration_seconds` | histogram | | from a proposal to its entry being committed and handed to apply |
//! | `raftstore_command_errors_total` | counter | `kind` | client commands refused before proposal, by error detail (`not_leader`, `epoch_not_match`, ...) |
//! | `raftstore_peer_mailbox_depth` | gauge | | the longest peer mailbox seen in the last poll round (messages waiting when the peer was handled) |
//! | `raftstore_rejected_raft_messages_total` | counter | `reason` | raft messages from other stores dropped by validation before raft-rs saw them (`RejectReason::as_str`) |
//!
//! Durations are read from the clock only here, for these histograms: no
//! decision depends on them, so a simulation running the same code stays
//! deterministic.

use metrics::{counter, gauge, histogram, Counter, Gauge, Histogram};

/// Counts `n` entries proposed.
pub(crate) fn proposed(n: u64) {
    counter!("raftstore_proposals_total").increment(n);
}

/// The handles one raft poller records through (registered once, so
/// recording is an atomic update).
pub(crate) struct PollerMetrics {
    pub(crate) rounds: Counter,
    pub(crate) readies: Counter,
    pub(crate) committed_entries: Counter,
    pub(crate) log_writes: Counter,
    pub(crate) log_syncs: Counter,
    pub(crate) log_write_synced: Histogram,
    pub(crate) log_write_unsynced: Histogram,
    pub(crate) commit_duration: Histogram,
    pub(crate) mailbox_depth: Gauge,
}

impl PollerMetrics {
    pub(crate) fn new() -> PollerMetrics {
        PollerMetrics {
            rounds: counter!("raftstore_poll_rounds_total"),
            readies: counter!("raftstore_readies_total"),
            committed_entries: counter!("raftstore_committed_entries_total"),
            log_writes: counter!("raftstore_log_writes_total"),
            log_syncs: counter!("raftstore_log_syncs_total"),
            log_write_synced: histogram!("raftstore_log_write_duration_seconds", "sync" => "true"),
            log_write_unsynced: histogram!("raftstore_log_write_duration_seconds", "sync" => "false"),
            commit_duration: histogram!("raftstore_commit_duration_seconds"),
            mailbox_depth: gauge!("raftstore_peer_mailbox_depth"),
        }
    }
}

/// Counts a client command refused before proposal.
pub(crate) fn command_refused(err: &kvproto_lite::errorpb::Error) {
    counter!("raftstore_command_errors_total", "kind" => kvproto_lite::util::error_kind(err))
        .increment(1);
}

/// Counts a raft message dropped by validation.
pub(crate) fn raft_message_rejected(reason: &'static str) {
    counter!("raftstore_rejected_raft_messages_total", "reason" => reason).increment(1);
}
