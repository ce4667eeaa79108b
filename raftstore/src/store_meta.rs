//! Store-wide facts shared between pollers and observers: who leads which
//! region, and counters of the work done.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use raft::StateRole;

/// What a store knows about one of its regions' leadership.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaderInfo {
    /// The raft term this was observed in.
    pub term: u64,
    /// The leader's peer id (0 = unknown).
    pub leader_id: u64,
    /// Whether this store's peer is the leader.
    pub is_leader: bool,
}

/// Leadership of every region on a store, updated when a peer's role
/// changes (rarely), read by tests, benchmarks and clients that want a hint.
#[derive(Debug, Default)]
pub struct StoreMeta {
    leaders: Mutex<HashMap<u64, LeaderInfo>>,
}

impl StoreMeta {
    pub(crate) fn set_role(&self, region_id: u64, role: StateRole, term: u64, leader_id: u64) {
        let info = LeaderInfo {
            term,
            leader_id,
            is_leader: role == StateRole::Leader,
        };
        self.leaders
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(region_id, info);
    }

    pub(crate) fn remove(&self, region_id: u64) {
        self.leaders
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&region_id);
    }

    /// The latest leadership observation for `region_id`.
    pub fn leader_info(&self, region_id: u64) -> Option<LeaderInfo> {
        self.leaders
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&region_id)
            .copied()
    }

    /// Regions whose peer on this store is the leader.
    pub fn leader_regions(&self) -> Vec<u64> {
        let map = self.leaders.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<u64> = map
            .iter()
            .filter(|(_, i)| i.is_leader)
            .map(|(r, _)| *r)
            .collect();
        v.sort_unstable();
        v
    }
}

/// Counters of a store's raft work (monotonic; read them twice and subtract
/// for rates).
#[derive(Debug, Default)]
pub struct StoreStats {
    /// Raft log batches written.
    pub log_writes: AtomicU64,
    /// fsyncs of the raft log.
    pub log_syncs: AtomicU64,
    /// Peer Readies persisted.
    pub readies: AtomicU64,
    /// Committed entries handed to the apply system.
    pub committed_entries: AtomicU64,
    /// Poll rounds run.
    pub rounds: AtomicU64,
}

impl StoreStats {
    /// A snapshot of the counters.
    pub fn snapshot(&self) -> StoreStatsSnapshot {
        StoreStatsSnapshot {
            log_writes: self.log_writes.load(Ordering::Relaxed),
            log_syncs: self.log_syncs.load(Ordering::Relaxed),
            readies: self.readies.load(Ordering::Relaxed),
            committed_entries: self.committed_entries.load(Ordering::Relaxed),
            rounds: self.rounds.load(Ordering::Relaxed),
        }
    }
}

/// Plain values of [`StoreStats`] at one moment.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StoreStatsSnapshot {
    /// Raft log batches written.
    pub log_writes: u64,
    /// fsyncs of the raft log.
    pub log_syncs: u64,
    /// Peer Readies persisted.
    pub readies: u64,
    /// Committed entries handed to the apply system.
    pub committed_entries: u64,
    /// Poll rounds run.
    pub rounds: u64,
}
