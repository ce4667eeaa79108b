//! Store configuration.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Configuration of a raft store (both of its batch systems).
///
/// All fields have defaults ([`Config::default`]); deserialising a partial
/// document fills in the rest. Call [`Config::validate`] before use;
/// [`create_raft_batch_system`](crate::create_raft_batch_system) does.
///
/// # Examples
///
/// ```
/// let mut cfg = raftstore::Config::default();
/// cfg.store_pool_size = 1;
/// cfg.validate().unwrap();
/// cfg.raft_heartbeat_ticks = 0;
/// assert!(cfg.validate().is_err());
/// ```
///
/// # Defaults
///
/// Every default value, checked by this example (with 100 ms ticks an
/// election takes 1 to 2 s after the leader is lost, heartbeats go out
/// every 200 ms):
///
/// ```
/// let cfg = raftstore::Config::default();
/// assert_eq!(cfg.store_pool_size, 2);
/// assert_eq!(cfg.store_max_batch_size, 256);
/// assert_eq!(cfg.raft_base_tick_interval_ms, 100);
/// assert_eq!(cfg.raft_election_timeout_ticks, 10);
/// assert_eq!(cfg.raft_heartbeat_ticks, 2);
/// assert!(cfg.raft_election_jitter);
/// assert_eq!(cfg.raft_max_size_per_msg, 1024 * 1024);
/// assert_eq!(cfg.raft_max_inflight_msgs, 256);
/// assert_eq!(cfg.raft_entry_max_size, 8 * 1024 * 1024);
/// assert!(cfg.pre_vote);
/// assert!(cfg.raft_skip_bcast_commit);
/// assert!(!cfg.raft_batch_append);
/// assert_eq!(cfg.messages_per_round, 4096);
/// assert_eq!(cfg.peer_mailbox_capacity, 4096);
/// assert_eq!(cfg.store_mailbox_capacity, 65536);
/// assert!(cfg.sync_log);
/// assert!(cfg.group_commit);
/// assert_eq!(cfg.store_io_pool_size, 0);
/// assert_eq!(cfg.raft_log_gc_threshold, 512);
/// assert_eq!(cfg.raft_log_gc_tick_interval, 30);
/// assert_eq!(cfg.raft_engine_purge_interval_ticks, 300);
/// assert_eq!(cfg.memory_quota, raftstore::default_memory_quota());
/// assert!(cfg.read_index_leader_check);
/// // The apply system's part.
/// assert_eq!(cfg.apply.pool_size, 2);
/// assert_eq!(cfg.apply.max_batch_size, 256);
/// assert_eq!(cfg.apply.max_entries_per_round, 256);
/// assert_eq!(cfg.apply.max_bytes_per_round, 4 * 1024 * 1024);
/// assert_eq!(cfg.apply.messages_per_round, 1024);
/// assert_eq!(cfg.apply.mailbox_capacity, 1024);
/// assert_eq!(cfg.apply.control_mailbox_capacity, 65536);
/// assert!(!cfg.apply.sync_write);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Number of raft poller threads.
    pub store_pool_size: usize,
    /// Most peer FSMs one raft poller handles in one round.
    pub store_max_batch_size: usize,
    /// Configuration of the apply batch system.
    pub apply: apply::Config,
    /// Wall-clock length of one raft tick, in milliseconds. Only the store's
    /// timer thread reads it; FSM logic sees ticks as messages.
    pub raft_base_tick_interval_ms: u64,
    /// Election timeout in ticks.
    pub raft_election_timeout_ticks: usize,
    /// Heartbeat interval in ticks; must be smaller than the election timeout.
    pub raft_heartbeat_ticks: usize,
    /// Randomise each peer's election timeout in
    /// `[election, 2 * election)` ticks (raft-rs's default). When `false`,
    /// the timeout is still in that range but a pure function of the peer
    /// id and the current term (it changes with every term, so no peer wins
    /// the race to time out first in every term), which makes runs
    /// reproducible (the simulation sets this).
    pub raft_election_jitter: bool,
    /// Largest append message a leader sends, in bytes.
    pub raft_max_size_per_msg: u64,
    /// Most in-flight append messages per follower.
    pub raft_max_inflight_msgs: usize,
    /// A command whose encoded size exceeds this is refused with
    /// `RaftEntryTooLarge`.
    pub raft_entry_max_size: u64,
    /// Enable raft's pre-vote (a partitioned peer does not disturb the
    /// group when it comes back).
    pub pre_vote: bool,
    /// Do not send an extra append just to tell followers that the commit
    /// index moved; they learn it from the next append or heartbeat
    /// (raft-rs `skip_bcast_commit`; conf changes still broadcast). Halves
    /// the raft messages per write under load; followers apply a little
    /// later. Leaders acknowledge writes the same way either way.
    pub raft_skip_bcast_commit: bool,
    /// Merge the append messages raft produces for one follower within one
    /// Ready into one (raft-rs `batch_append`).
    ///
    /// **Unsafe with raft-rs 0.7; keep it `false`.** Its `try_batching`
    /// appends new entries to a pending `MsgAppend` for the same follower
    /// without checking that they follow the message's `index`: after a
    /// rejected append lowers the follower's `next_idx`, entries starting at
    /// `next_idx` get glued onto an empty probe for a *later* index. The
    /// follower accepts the malformed append and acknowledges an index it
    /// does not have; the leader counts that acknowledgement towards a
    /// quorum (commit without a majority) and later panics the follower with
    /// a commit index beyond its log. Found by the simulation (seed 16).
    pub raft_batch_append: bool,
    /// Most messages one peer handles from its mailbox in one poll round.
    pub messages_per_round: usize,
    /// Capacity of a peer's mailbox; beyond it commands get `ServerIsBusy`.
    pub peer_mailbox_capacity: usize,
    /// Capacity of the store (control) mailbox.
    pub store_mailbox_capacity: usize,
    /// fsync the raft log before acknowledging persistence. Turning this off
    /// loses durability; only for experiments.
    pub sync_log: bool,
    /// Persist every ready peer of a poll round in one log batch with one
    /// fsync (group commit). `false` writes and syncs each peer's Ready on
    /// its own, which exists to measure what group commit is worth.
    pub group_commit: bool,
    /// Store I/O writer threads. `0` (inline mode): each raft poller writes
    /// its round's log batch itself, with one fsync, before it advances
    /// raft and sends the messages that wait for persistence. `N > 0`: `N`
    /// writer threads write the raft log; a poller hands its round's log
    /// writes to them (one task per writer per round; a writer writes all
    /// it has queued as one batch with one fsync) and goes on, and each
    /// peer finishes its Readies when its writer reports them durable (see
    /// `docs/write-pipeline.md`). At most [`MAX_STORE_IO_POOL_SIZE`].
    ///
    /// Default: `0` (inline), chosen by measurement (`cluster-bench
    /// --store-io 0|1`, docs/benchmarks.md): on a 2-core machine running
    /// three stores one writer per store delivered 0.65-1.0x the inline
    /// writes/s at about the same CPU per write, because each Ready then
    /// needs a second poll round (after the writer's report) and each
    /// store one more thread to wake. Writers pay off where fsyncs are
    /// slow and spare cores can run them.
    pub store_io_pool_size: usize,
    /// A leader proposes log compaction when more than this many applied
    /// entries are kept.
    pub raft_log_gc_threshold: u64,
    /// How often (in ticks) a leader considers log compaction.
    pub raft_log_gc_tick_interval: usize,
    /// A leader compacts its log up to its applied index, past followers
    /// that have not replicated it (they catch up by snapshot), once more
    /// than this many applied entries are kept.
    pub raft_log_gc_count_limit: u64,
    /// The same once the kept entries are estimated at more than this many
    /// bytes.
    pub raft_log_gc_size_limit: u64,
    /// The same once a lagging follower has held compaction back for this
    /// many ticks (the age limit of the kept log).
    pub raft_log_gc_max_ticks: u64,
    /// Largest chunk of snapshot data in one transport message.
    pub snap_chunk_size: usize,
    /// Most snapshot sends under way at once on a store.
    pub snap_max_concurrent_sends: usize,
    /// Most snapshot receptions under way at once on a store.
    pub snap_max_concurrent_receives: usize,
    /// How often (in store ticks) the store asks its raft log engine to
    /// reclaim space freed by compaction (`RaftLogEngine::purge_expired`).
    pub raft_engine_purge_interval_ticks: u64,
    /// Hibernate idle regions (default `true`): when a leader sees every
    /// peer matched at its last index, everything committed and applied
    /// and nothing pending, it asks the followers to sleep; the region then
    /// stops ticking and heartbeating (it costs no CPU per tick) until a
    /// command, a raft message with news, a store of one of its peers
    /// becoming unreachable or reachable, or a follower's liveness check
    /// wakes it. `false` ticks every region all the time.
    pub hibernate_regions: bool,
    /// How often (in store ticks) a hibernated follower wakes to check on
    /// its leader, so that a leader that died while its region slept is
    /// replaced (each region's check falls somewhere in
    /// `[n, 2n)` ticks after it fell asleep). Default 3000 (5 minutes at
    /// the default 100 ms tick).
    pub hibernate_check_leader_ticks: u64,
    /// The most two stores' clocks may drift apart over one lease, in
    /// milliseconds. A leader's lease lasts the election timeout minus one
    /// tick minus this; a lease read is only linearizable if the real drift
    /// stays within it. At or above `(raft_election_timeout_ticks - 1) *
    /// raft_base_tick_interval_ms` the lease is empty and every lease read
    /// falls back to ReadIndex.
    pub raft_lease_max_drift_ms: u64,
    /// Bytes of accepted, unfinished work the store may hold before it
    /// refuses new commands with `ServerIsBusy` (reason: memory quota):
    /// commands waiting to be proposed, committed or applied, committed
    /// entries waiting for the apply system, and raft messages a poll
    /// round queued for the transport. Accepted work is never dropped;
    /// once it completes and the total falls below the quota, commands are
    /// accepted again. See [`MemoryQuota`](crate::MemoryQuota).
    ///
    /// Default: [`default_memory_quota`](crate::default_memory_quota), a
    /// quarter of the memory the process may use (machine total or cgroup
    /// limit). Several stores in one process should split it.
    pub memory_quota: u64,
    /// Confirm ReadIndex reads on a leader with store-level leader checks
    /// (one message per store pair and poll round, answered from shared
    /// cells without activating the followers' peers) instead of a
    /// heartbeat round per region (see [`crate::leader_check`]). Anything
    /// unusual (a configuration change, a leadership transfer, no answer
    /// within an election timeout) still uses raft's read index; lease
    /// reads falling back to ReadIndex always do (only raft's read index
    /// renews a lease). Default `true`.
    pub read_index_leader_check: bool,
}

/// Most store I/O writers a store may run ([`Config::store_io_pool_size`]).
pub const MAX_STORE_IO_POOL_SIZE: usize = 64;

impl Default for Config {
    fn default() -> Config {
        Config {
            store_pool_size: 2,
            store_max_batch_size: 256,
            apply: apply::Config::default(),
            raft_base_tick_interval_ms: 100,
            raft_election_timeout_ticks: 10,
            raft_heartbeat_ticks: 2,
            raft_election_jitter: true,
            raft_max_size_per_msg: 1024 * 1024,
            raft_max_inflight_msgs: 256,
            raft_entry_max_size: 8 * 1024 * 1024,
            pre_vote: true,
            raft_skip_bcast_commit: true,
            raft_batch_append: false,
            messages_per_round: 4096,
            peer_mailbox_capacity: 4096,
            store_mailbox_capacity: 65536,
            sync_log: true,
            group_commit: true,
            store_io_pool_size: 0,
            raft_log_gc_threshold: 512,
            raft_log_gc_tick_interval: 30,
            raft_log_gc_count_limit: 20_000,
            raft_log_gc_size_limit: 64 * 1024 * 1024,
            raft_log_gc_max_ticks: 6_000,
            snap_chunk_size: 1024 * 1024,
            snap_max_concurrent_sends: 4,
            snap_max_concurrent_receives: 4,
            raft_engine_purge_interval_ticks: 300,
            hibernate_regions: true,
            hibernate_check_leader_ticks: 3000,
            raft_lease_max_drift_ms: 100,
            memory_quota: crate::memory::default_memory_quota(),
            read_index_leader_check: true,
        }
    }
}

impl Config {
    /// Checks every field, returning the first problem found.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] naming the field.
    pub fn validate(&self) -> Result<()> {
        let positive: [(&str, u64); 17] = [
            ("raft_log_gc_count_limit", self.raft_log_gc_count_limit),
            ("raft_log_gc_size_limit", self.raft_log_gc_size_limit),
            ("raft_log_gc_max_ticks", self.raft_log_gc_max_ticks),
            ("snap_chunk_size", self.snap_chunk_size as u64),
            (
                "snap_max_concurrent_sends",
                self.snap_max_concurrent_sends as u64,
            ),
            (
                "snap_max_concurrent_receives",
                self.snap_max_concurrent_receives as u64,
            ),
            ("store_pool_size", self.store_pool_size as u64),
            ("store_max_batch_size", self.store_max_batch_size as u64),
            (
                "raft_base_tick_interval_ms",
                self.raft_base_tick_interval_ms,
            ),
            (
                "raft_election_timeout_ticks",
                self.raft_election_timeout_ticks as u64,
            ),
            ("raft_heartbeat_ticks", self.raft_heartbeat_ticks as u64),
            ("raft_max_size_per_msg", self.raft_max_size_per_msg),
            ("raft_max_inflight_msgs", self.raft_max_inflight_msgs as u64),
            ("raft_entry_max_size", self.raft_entry_max_size),
            ("messages_per_round", self.messages_per_round as u64),
            ("peer_mailbox_capacity", self.peer_mailbox_capacity as u64),
            ("store_mailbox_capacity", self.store_mailbox_capacity as u64),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(Error::InvalidConfig(format!(
                    "{name} must be greater than 0"
                )));
            }
        }
        if self.raft_heartbeat_ticks >= self.raft_election_timeout_ticks {
            return Err(Error::InvalidConfig(format!(
                "raft_heartbeat_ticks ({}) must be smaller than raft_election_timeout_ticks ({})",
                self.raft_heartbeat_ticks, self.raft_election_timeout_ticks
            )));
        }
        if self.raft_engine_purge_interval_ticks == 0 {
            return Err(Error::InvalidConfig(
                "raft_engine_purge_interval_ticks must be greater than 0".to_owned(),
            ));
        }
        if self.hibernate_check_leader_ticks == 0 {
            return Err(Error::InvalidConfig(
                "hibernate_check_leader_ticks must be greater than 0".to_owned(),
            ));
        }
        if self.memory_quota == 0 {
            return Err(Error::InvalidConfig(
                "memory_quota must be greater than 0".to_owned(),
            ));
        }
        if self.store_io_pool_size > MAX_STORE_IO_POOL_SIZE {
            return Err(Error::InvalidConfig(format!(
                "store_io_pool_size ({}) must be at most {MAX_STORE_IO_POOL_SIZE}",
                self.store_io_pool_size
            )));
        }
        if self.raft_log_gc_tick_interval == 0 {
            return Err(Error::InvalidConfig(
                "raft_log_gc_tick_interval must be greater than 0".to_owned(),
            ));
        }
        self.apply.validate()?;
        Ok(())
    }

    /// [`Config::raft_lease_max_drift_ms`] as a duration.
    pub fn lease_max_clock_drift(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.raft_lease_max_drift_ms)
    }

    /// The raft-rs configuration for one peer.
    pub(crate) fn raft_config(&self, peer_id: u64, applied: u64) -> raft::Config {
        let election = self.raft_election_timeout_ticks;
        // Without jitter raft-rs still draws from [min, max) with its own
        // thread-local RNG, but the peer overrides every draw with a timeout
        // derived from (peer id, term): see
        // `raft_compat::pin_election_timeout`.
        let (min, max) = (election, 2 * election);
        raft::Config {
            id: peer_id,
            election_tick: election,
            heartbeat_tick: self.raft_heartbeat_ticks,
            applied,
            max_size_per_msg: self.raft_max_size_per_msg,
            max_inflight_msgs: self.raft_max_inflight_msgs,
            check_quorum: true,
            pre_vote: self.pre_vote,
            skip_bcast_commit: self.raft_skip_bcast_commit,
            batch_append: self.raft_batch_append,
            min_election_tick: min,
            max_election_tick: max,
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_is_valid() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn zero_pool_size_is_rejected_by_name() {
        let cfg = Config {
            store_pool_size: 0,
            ..Config::default()
        };
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains("store_pool_size"), "{err}");
    }

    #[test]
    fn heartbeat_must_be_shorter_than_election() {
        let cfg = Config {
            raft_heartbeat_ticks: 10,
            ..Config::default()
        };
        assert!(cfg.validate().is_err());
    }

    #[test]
    fn partial_json_fills_defaults() {
        let cfg: Config = serde_json::from_str(r#"{"store_pool_size": 3}"#).unwrap();
        assert_eq!(cfg.store_pool_size, 3);
        assert_eq!(
            cfg.raft_heartbeat_ticks,
            Config::default().raft_heartbeat_ticks
        );
    }

    /// Regression (simulation seed 16): raft-rs 0.7's `batch_append` can
    /// produce a `MsgAppend` whose entries do not follow its index, making a
    /// follower acknowledge entries it does not have.
    #[test]
    fn batch_append_is_off_by_default_because_raft_0_7_batching_is_unsafe() {
        let cfg = Config::default();
        assert!(!cfg.raft_batch_append);
        assert!(!cfg.raft_config(1, 0).batch_append);
    }

    #[test]
    fn fixed_election_timeouts_are_valid_raft_configs() {
        let cfg = Config {
            raft_election_jitter: false,
            ..Config::default()
        };
        for peer_id in 1..50 {
            let rc = cfg.raft_config(peer_id, 0);
            rc.validate().unwrap();
            assert_eq!(rc.min_election_tick, cfg.raft_election_timeout_ticks);
            assert_eq!(rc.max_election_tick, 2 * cfg.raft_election_timeout_ticks);
        }
    }
}
