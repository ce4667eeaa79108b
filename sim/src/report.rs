//! What a run reports: its counters, its digest, its history and the
//! first failure found.

use crate::checker::Violation;
use crate::history::Operation;

/// A correctness (or liveness) problem found by a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The client history is not linearizable.
    NotLinearizable(Box<Violation>),
    /// The checker ran out of steps on a key.
    CheckerGaveUp {
        /// The key.
        key: usize,
        /// Steps taken.
        steps: u64,
    },
    /// After the workload, with the network healed and every store up, not
    /// every key could be read.
    FinalReadsIncomplete {
        /// Keys without a successful final read.
        missing: Vec<usize>,
    },
    /// After the final reads, the stores' KV contents differ from each
    /// other or from what the final reads returned.
    ReplicasDiverge {
        /// What differs.
        detail: String,
    },
    /// The stores never went idle: some FSM kept itself busy forever.
    NoQuiescence {
        /// Simulated time it happened at.
        time: u64,
    },
    /// A successful response without the expected content.
    MalformedResponse {
        /// What was wrong.
        detail: String,
    },
    /// A store could not be restarted from its engines.
    RestartFailed {
        /// The store.
        store: u64,
        /// The error.
        error: String,
    },
    /// Stores dropped raft messages as malformed (`raftstore::validate`)
    /// although the network corrupted none: some store sent a message a
    /// correct raft peer never sends.
    InvalidMessages {
        /// Messages the stores dropped.
        count: u64,
    },
    /// The cluster could not be set up (bootstrap or first start).
    Setup(String),
    /// The production code panicked (caught by [`run_seed`](crate::run_seed)).
    Panic(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::NotLinearizable(v) => write!(f, "{v}"),
            Failure::CheckerGaveUp { key, steps } => {
                write!(f, "checker gave up on key k{key} after {steps} steps")
            }
            Failure::FinalReadsIncomplete { missing } => {
                write!(f, "final reads did not complete for keys {missing:?}")
            }
            Failure::ReplicasDiverge { detail } => write!(f, "replicas diverge: {detail}"),
            Failure::NoQuiescence { time } => write!(f, "stores never went idle at time {time}"),
            Failure::MalformedResponse { detail } => write!(f, "malformed response: {detail}"),
            Failure::RestartFailed { store, error } => {
                write!(f, "store {store} failed to restart: {error}")
            }
            Failure::InvalidMessages { count } => write!(
                f,
                "stores dropped {count} malformed raft messages that the network did not corrupt"
            ),
            Failure::Setup(e) => write!(f, "set-up failed: {e}"),
            Failure::Panic(msg) => write!(f, "panic: {msg}"),
        }
    }
}

/// Counters of what a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Events processed.
    pub events: u64,
    /// Raft messages sent by stores.
    pub messages_sent: u64,
    /// Messages lost (random loss, partitions, down or refusing stores).
    pub messages_lost: u64,
    /// Messages delivered twice.
    pub messages_duplicated: u64,
    /// Messages corrupted on the way (`MessageFaults::corrupt`).
    pub messages_corrupted: u64,
    /// Poll rounds that handled at least one FSM.
    pub poll_rounds: u64,
    /// Poll rounds (with [`SimConfig::two_pollers`](crate::SimConfig::two_pollers))
    /// that began while the other poller of the same kind (raft or apply)
    /// of the same store held FSMs in a round of its own.
    pub overlapping_rounds: u64,
    /// Store crashes (with `two_pollers`) while a poller of the store held
    /// FSMs in the middle of a round.
    pub crashes_mid_round: u64,
    /// Store crashes.
    pub crashes: u64,
    /// Write tasks (a raft poll round's log writes for one writer) made
    /// durable by store I/O writers.
    pub async_writes: u64,
    /// Store crashes while a store I/O writer held tasks not yet written.
    pub crashes_with_writes_in_flight: u64,
    /// Network faults injected (partitions, one-way cuts, isolations).
    pub net_faults: u64,
    /// Stores crashed or isolated while leading a hibernated region.
    pub sleeping_leader_faults: u64,
    /// Split commands sent to a leader.
    pub splits: u64,
    /// Membership changes sent to a leader.
    pub conf_changes: u64,
    /// Membership changes answered with success (the region changed).
    pub conf_changes_applied: u64,
    /// Planned restarts: stores told to evict their leaders, then stopped.
    pub planned_restarts: u64,
    /// Leaderships a store held when told to evict them and had handed to
    /// another store by the time it stopped.
    pub handed_off: u64,
    /// Leaderships a store still held when it stopped after being told to
    /// evict them.
    pub not_handed_off: u64,
    /// Operations acknowledged (written or read).
    pub ops_ok: u64,
    /// Operations that definitely failed.
    pub ops_failed: u64,
    /// Operations with an unknown outcome.
    pub ops_unknown: u64,
    /// Attempts sent to stores.
    pub attempts: u64,
    /// Times a region replica fell asleep (hibernated), over all stores.
    pub hibernations: u64,
    /// Times a hibernated region replica woke, over all stores.
    pub wakes: u64,
    /// Raft messages the stores dropped in validation as malformed
    /// (`raftstore::validate::RejectedMessages::malformed`), over all
    /// stores.
    pub rejected_messages: u64,
    /// Snapshots applied by the stores' peers, over all stores.
    pub snapshots_applied: u64,
    /// Snapshot transfers that did not complete (a store at either end
    /// down, the network cut or lossy, the receiver refusing).
    pub snapshot_transfers_failed: u64,
    /// Stores crashed in the middle of snapshot work.
    pub snapshot_crashes: u64,
    /// Attempts whose outcome was unknown (timed out, or answered "outcome
    /// unknown"), each retried by its call: what client sessions protect.
    pub attempts_unknown: u64,
    /// Lease reads the stores' local readers served off the raft thread.
    pub lease_reads_local: u64,
    /// Lease-mode reads handed on to the raft thread (no valid lease
    /// there and then).
    pub lease_fallbacks: u64,
    /// Gets issued through the log (final reads included), by ReadIndex,
    /// by lease and as follower reads.
    pub gets_log: u64,
    /// See [`gets_log`](Self::gets_log).
    pub gets_read_index: u64,
    /// See [`gets_log`](Self::gets_log).
    pub gets_lease: u64,
    /// See [`gets_log`](Self::gets_log).
    pub gets_follower: u64,
    /// ReadIndex batches sent through a store-level leader check
    /// (`raftstore::leader_check`), over all stores.
    pub leader_check_batches: u64,
    /// Of those, batches a quorum's answers confirmed.
    pub leader_check_confirmed: u64,
    /// Batches that fell back to raft's read index because too many
    /// stores answered no.
    pub leader_check_refused: u64,
    /// Batches that fell back to raft's read index because no quorum
    /// answered in time.
    pub leader_check_timed_out: u64,
    /// Region questions of leader checks answered no, over all stores.
    pub leader_check_answers_no: u64,
    /// Leader check messages held back by the `leader_check_delay` fault.
    pub leader_checks_delayed: u64,
}

/// The result of one seed.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// The seed.
    pub seed: u64,
    /// Digest of the whole event trace and history: equal for two runs of
    /// one seed.
    pub digest: u64,
    /// Simulated time at the end.
    pub end_time: u64,
    /// What happened.
    pub stats: SimStats,
    /// The client history.
    pub history: Vec<Operation>,
    /// The first problem found, if any.
    pub failure: Option<Failure>,
}
