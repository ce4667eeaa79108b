//! Store-wide facts shared between pollers and observers: who leads which
//! region ([`StoreMeta`]), how far each region's peer has got
//! ([`RegionProgress`]), and counters of the work done ([`StoreStats`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use kvproto_lite::metapb;

use crate::leader_check::LeaderChecks;
use crate::snapshot::SnapshotStats;
use crate::validate::RejectedMessages;

/// What a store knows about one of its regions' leadership.
///
/// `leader_id` is the leader a client should be sent to: 0 when this store's
/// peer knows no leader it can reach (during an election, after an
/// election timeout without hearing from the leader, or while the leader's
/// store is reported unreachable), which is also when a command to this
/// peer is answered `NotLeader` without a hint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LeaderInfo {
    /// The raft term this was observed in.
    pub term: u64,
    /// The leader's peer id (0 = unknown or unreachable).
    pub leader_id: u64,
    /// The store of the leader's peer (0 = unknown or unreachable).
    pub leader_store_id: u64,
    /// Whether this store's peer is the leader.
    pub is_leader: bool,
}

impl LeaderInfo {
    /// Whether a reachable leader is known.
    pub fn has_leader(&self) -> bool {
        self.leader_id != 0
    }

    /// The leader as a `metapb::Peer` (id and store), if one is known.
    pub fn leader_peer(&self) -> Option<metapb::Peer> {
        if !self.has_leader() {
            return None;
        }
        let mut peer = metapb::Peer::default();
        peer.set_id(self.leader_id);
        peer.set_store_id(self.leader_store_id);
        Some(peer)
    }
}

/// Leadership of every region on a store: each peer publishes what it knows
/// whenever that changes (rarely); readers are clients looking for a
/// leader, operators, tests and benchmarks.
///
/// A region appears here as soon as its peer is created (with no leader
/// known) and disappears when the peer is destroyed, so
/// [`StoreMeta::wait_for_leaders`] waits for every region of the store.
#[derive(Debug, Default)]
pub struct StoreMeta {
    leaders: Mutex<HashMap<u64, LeaderInfo>>,
    /// How many entries of `leaders` say this store leads the region
    /// (changed under the `leaders` lock, read without it).
    led: AtomicUsize,
    /// Notified on every change of `leaders`.
    changed: Condvar,
    /// Every peer's leader-check cell (see [`crate::leader_check`]).
    pub(crate) leader_checks: Arc<LeaderChecks>,
}

impl StoreMeta {
    /// A store meta whose peers register their leader-check cells in
    /// `checks` (the store's, shared with its router).
    pub(crate) fn with_leader_checks(checks: Arc<LeaderChecks>) -> StoreMeta {
        StoreMeta {
            leader_checks: checks,
            ..StoreMeta::default()
        }
    }

    /// The store's leader checks: counters of the ReadIndex confirmations
    /// batched per store pair (see [`crate::leader_check`]).
    pub fn leader_checks(&self) -> &Arc<LeaderChecks> {
        &self.leader_checks
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, LeaderInfo>> {
        self.leaders.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a region whose peer was just created (nothing known yet).
    pub(crate) fn add_region(&self, region_id: u64) {
        self.lock().entry(region_id).or_default();
        self.changed.notify_all();
    }

    pub(crate) fn set_leader(&self, region_id: u64, info: LeaderInfo) {
        let mut map = self.lock();
        let was = map.insert(region_id, info).is_some_and(|i| i.is_leader);
        match (was, info.is_leader) {
            (false, true) => {
                self.led.fetch_add(1, Ordering::Relaxed);
            }
            (true, false) => {
                self.led.fetch_sub(1, Ordering::Relaxed);
            }
            _ => {}
        }
        drop(map);
        self.changed.notify_all();
    }

    pub(crate) fn remove(&self, region_id: u64) {
        let mut map = self.lock();
        if map.remove(&region_id).is_some_and(|i| i.is_leader) {
            self.led.fetch_sub(1, Ordering::Relaxed);
        }
        drop(map);
        self.changed.notify_all();
    }

    /// How many regions this store's peers lead, without taking the lock
    /// the peers publish their leadership under: a cheap progress figure
    /// for code that waits for thousands of regions to elect (compare
    /// [`leader_regions`](Self::leader_regions), which lists them).
    ///
    /// # Examples
    ///
    /// ```
    /// let meta = raftstore::StoreMeta::default();
    /// assert_eq!(meta.leader_count(), 0);
    /// ```
    pub fn leader_count(&self) -> usize {
        self.led.load(Ordering::Relaxed)
    }

    /// The latest leadership observation for `region_id`; `None` when the
    /// region has no peer on this store.
    pub fn leader_info(&self, region_id: u64) -> Option<LeaderInfo> {
        self.lock().get(&region_id).copied()
    }

    /// The region's leader (peer id and store id) as this store knows it,
    /// if it knows a reachable one.
    pub fn leader(&self, region_id: u64) -> Option<metapb::Peer> {
        self.leader_info(region_id).and_then(|i| i.leader_peer())
    }

    /// Regions whose peer on this store is the leader, sorted.
    pub fn leader_regions(&self) -> Vec<u64> {
        let map = self.lock();
        let mut v: Vec<u64> = map
            .iter()
            .filter(|(_, i)| i.is_leader)
            .map(|(r, _)| *r)
            .collect();
        v.sort_unstable();
        v
    }

    /// Every region with a peer on this store, sorted.
    pub fn regions(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self.lock().keys().copied().collect();
        v.sort_unstable();
        v
    }

    /// Regions of this store whose peer knows no reachable leader, sorted.
    pub fn regions_without_leader(&self) -> Vec<u64> {
        let map = self.lock();
        let mut v: Vec<u64> = map
            .iter()
            .filter(|(_, i)| !i.has_leader())
            .map(|(r, _)| *r)
            .collect();
        v.sort_unstable();
        v
    }

    /// Blocks until `done` holds for the leadership map or `timeout`
    /// passes; returns whether it held. Woken by every change, so it does
    /// not poll.
    pub(crate) fn wait_until(
        &self,
        timeout: Duration,
        mut done: impl FnMut(&HashMap<u64, LeaderInfo>) -> bool,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        let mut map = self.lock();
        loop {
            if done(&map) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            map = self
                .changed
                .wait_timeout(map, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Waits until every region on this store knows a reachable leader
    /// (this store's peer or another), for start-up: after
    /// [`RaftBatchSystem::spawn`](crate::RaftBatchSystem::spawn) of every
    /// store, call it on each to know that commands can be routed.
    ///
    /// # Errors
    ///
    /// [`Error::NoLeader`](crate::Error::NoLeader) with the regions still
    /// without a leader when `timeout` passes.
    pub fn wait_for_leaders(&self, timeout: Duration) -> crate::Result<()> {
        if self.wait_until(timeout, |map| map.values().all(LeaderInfo::has_leader)) {
            Ok(())
        } else {
            Err(crate::Error::NoLeader(self.regions_without_leader()))
        }
    }
}

/// How far one region's peer on a store has got, read by
/// [`StoreStats::region_progress`]: enough to tell when a restarted store
/// has caught up (its `applied_index` reaches the leader's `commit_index`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RegionProgress {
    /// The region.
    pub region_id: u64,
    /// The last log index applied to this store's KV engine.
    pub applied_index: u64,
    /// The commit index this peer knows: on the leader, the region's
    /// commit index; on a follower, what the leader has told it so far.
    pub commit_index: u64,
    /// The last index in this peer's log.
    pub last_index: u64,
    /// This peer's raft term.
    pub term: u64,
    /// Whether this peer is the leader.
    pub is_leader: bool,
}

impl RegionProgress {
    /// Whether this peer has applied everything `leader` had committed when
    /// `leader` was read (pass the leader store's progress of the region).
    pub fn caught_up_with(&self, leader: &RegionProgress) -> bool {
        self.applied_index >= leader.commit_index
    }
}

/// One region's progress, written by its peer (relaxed atomics: each field
/// is exact, a read of several may mix two rounds).
#[derive(Debug, Default)]
pub(crate) struct ProgressCell {
    applied_index: AtomicU64,
    commit_index: AtomicU64,
    last_index: AtomicU64,
    term: AtomicU64,
    is_leader: AtomicBool,
}

impl ProgressCell {
    pub(crate) fn store(&self, applied: u64, commit: u64, last: u64, term: u64, leader: bool) {
        self.applied_index.store(applied, Ordering::Relaxed);
        self.commit_index.store(commit, Ordering::Relaxed);
        self.last_index.store(last, Ordering::Relaxed);
        self.term.store(term, Ordering::Relaxed);
        self.is_leader.store(leader, Ordering::Relaxed);
    }

    fn load(&self, region_id: u64) -> RegionProgress {
        RegionProgress {
            region_id,
            applied_index: self.applied_index.load(Ordering::Relaxed),
            commit_index: self.commit_index.load(Ordering::Relaxed),
            last_index: self.last_index.load(Ordering::Relaxed),
            term: self.term.load(Ordering::Relaxed),
            is_leader: self.is_leader.load(Ordering::Relaxed),
        }
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
    /// Peer writes made durable by the store's I/O writers (async I/O
    /// mode, `Config::store_io_pool_size > 0`; one per peer per writer
    /// batch).
    pub async_writes: AtomicU64,
    /// Committed entries handed to the apply system.
    pub committed_entries: AtomicU64,
    /// Poll rounds run.
    pub rounds: AtomicU64,
    /// Times a peer of this store fell asleep (hibernated).
    pub hibernations: AtomicU64,
    /// Times a hibernated peer of this store woke.
    pub wakes: AtomicU64,
    /// Tombstone messages sent to peers that missed their own removal.
    pub tombstones_sent: AtomicU64,
    /// Peers of this store destroyed (removed by a conf change, or told by
    /// a tombstone message that they were).
    pub peers_destroyed: AtomicU64,
    /// How long each raft log write took, fsync included: the part of a
    /// poll round spent waiting for the disk.
    pub log_write_duration: DurationHistogram,
    /// The stages of a write on its leader (see [`WriteStages`]).
    pub stages: WriteStages,
    /// Raft messages from other stores dropped by validation, per reason
    /// (see [`crate::validate`]).
    pub rejected_messages: RejectedMessages,
    /// Snapshots generated, sent, received and applied, bytes moved, and
    /// sends and receptions under way (see [`crate::snapshot`]).
    pub snapshots: Arc<SnapshotStats>,
    /// The store's memory quota and the bytes of accepted, unfinished work
    /// it accounts (see [`crate::MemoryQuota`]); its capacity is
    /// `Config::memory_quota`.
    pub memory: Arc<crate::memory::MemoryQuota>,
    /// Per-region progress; each peer holds its own cell and writes it
    /// without taking this lock.
    progress: Mutex<HashMap<u64, Arc<ProgressCell>>>,
}

impl StoreStats {
    /// Empty statistics with a memory quota of `bytes`.
    pub fn with_memory_quota(bytes: u64) -> StoreStats {
        let stats = StoreStats::default();
        stats.memory.set_capacity(bytes);
        stats
    }

    fn progress_map(&self) -> MutexGuard<'_, HashMap<u64, Arc<ProgressCell>>> {
        self.progress.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The progress cell of `region_id`, created on first use.
    pub(crate) fn progress_cell(&self, region_id: u64) -> Arc<ProgressCell> {
        self.progress_map().entry(region_id).or_default().clone()
    }

    pub(crate) fn remove_region(&self, region_id: u64) {
        self.progress_map().remove(&region_id);
    }

    /// The progress of `region_id`'s peer on this store (`None` if it has
    /// no peer here, or its peer has not been polled yet).
    pub fn region_progress(&self, region_id: u64) -> Option<RegionProgress> {
        self.progress_map()
            .get(&region_id)
            .map(|c| c.load(region_id))
    }

    /// The progress of every region on this store, sorted by region id.
    pub fn regions(&self) -> Vec<RegionProgress> {
        let mut v: Vec<RegionProgress> = self
            .progress_map()
            .iter()
            .map(|(id, c)| c.load(*id))
            .collect();
        v.sort_unstable_by_key(|p| p.region_id);
        v
    }

    /// A snapshot of the counters.
    pub fn snapshot(&self) -> StoreStatsSnapshot {
        StoreStatsSnapshot {
            log_writes: self.log_writes.load(Ordering::Relaxed),
            log_syncs: self.log_syncs.load(Ordering::Relaxed),
            readies: self.readies.load(Ordering::Relaxed),
            committed_entries: self.committed_entries.load(Ordering::Relaxed),
            rounds: self.rounds.load(Ordering::Relaxed),
            log_write_duration: self.log_write_duration.snapshot(),
            propose_wait: self.stages.propose_wait.snapshot(),
            commit: self.stages.commit.snapshot(),
            apply: self.stages.apply.snapshot(),
        }
    }
}

/// Where a write spends its time on the leader's store, one histogram per
/// stage, so the next bottleneck is visible. The stages follow each other:
///
/// 1. `propose_wait`: from the command's [`Callback`](crate::Callback)
///    being made (the client handing the command over) to the peer taking
///    it from its mailbox, to be proposed at the end of that round: the
///    mailbox and the wait for the peer's turn in a poll round (one sample
///    per command that passed the leader's checks, reads included);
/// 2. `commit`: from the proposal to the leader handing the committed
///    entry to apply: its own log write (also in
///    [`StoreStats::log_write_duration`]), replication and a quorum's
///    acknowledgements (one sample per entry; commands of one round share
///    an entry);
/// 3. `apply`: from there to the response being sent: the apply queue,
///    execution, the KV write and the callback (one sample per entry).
///
/// Followers record nothing here. The clock is read only for these
/// histograms: no decision depends on them.
#[derive(Debug, Default)]
pub struct WriteStages {
    /// Command handed over → proposed.
    pub propose_wait: DurationHistogram,
    /// Proposed → committed and handed to apply.
    pub commit: DurationHistogram,
    /// Handed to apply → answered.
    pub apply: DurationHistogram,
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
    /// Durations of the raft log writes, fsync included.
    pub log_write_duration: HistogramSnapshot,
    /// [`WriteStages::propose_wait`].
    pub propose_wait: HistogramSnapshot,
    /// [`WriteStages::commit`].
    pub commit: HistogramSnapshot,
    /// [`WriteStages::apply`].
    pub apply: HistogramSnapshot,
}

impl StoreStatsSnapshot {
    /// What happened between `earlier` and `self` (counters never go
    /// backwards; a mismatched pair saturates at zero instead of wrapping).
    pub fn since(&self, earlier: &StoreStatsSnapshot) -> StoreStatsSnapshot {
        StoreStatsSnapshot {
            log_writes: self.log_writes.saturating_sub(earlier.log_writes),
            log_syncs: self.log_syncs.saturating_sub(earlier.log_syncs),
            readies: self.readies.saturating_sub(earlier.readies),
            committed_entries: self
                .committed_entries
                .saturating_sub(earlier.committed_entries),
            rounds: self.rounds.saturating_sub(earlier.rounds),
            log_write_duration: self.log_write_duration.since(&earlier.log_write_duration),
            propose_wait: self.propose_wait.since(&earlier.propose_wait),
            commit: self.commit.since(&earlier.commit),
            apply: self.apply.since(&earlier.apply),
        }
    }

    /// Adds `other`'s counts to these (to sum several stores).
    pub fn add(&mut self, other: &StoreStatsSnapshot) {
        self.log_writes += other.log_writes;
        self.log_syncs += other.log_syncs;
        self.readies += other.readies;
        self.committed_entries += other.committed_entries;
        self.rounds += other.rounds;
        self.log_write_duration.add(&other.log_write_duration);
        self.propose_wait.add(&other.propose_wait);
        self.commit.add(&other.commit);
        self.apply.add(&other.apply);
    }
}

/// Buckets of a [`DurationHistogram`]: bucket `i` counts durations from
/// 2^i up to (not including) 2^(i+1) microseconds; bucket 0 also counts
/// anything under a microsecond, the last bucket anything longer.
pub const HISTOGRAM_BUCKETS: usize = 32;

/// A lock-free histogram of durations in power-of-two microsecond buckets:
/// cheap enough to record every raft log write, precise to a factor of two.
///
/// # Examples
///
/// ```
/// use raftstore::DurationHistogram;
/// use std::time::Duration;
///
/// let h = DurationHistogram::default();
/// for _ in 0..99 {
///     h.record(Duration::from_micros(150)); // bucket [128, 256) µs
/// }
/// h.record(Duration::from_millis(20)); // bucket [16.4, 32.8) ms
/// let snap = h.snapshot();
/// assert_eq!(snap.count(), 100);
/// assert_eq!(snap.quantile(0.5), Some(Duration::from_micros(256)));
/// assert_eq!(snap.quantile(0.99), Some(Duration::from_micros(256)));
/// assert_eq!(snap.quantile(1.0), Some(Duration::from_micros(32_768)));
/// ```
#[derive(Debug, Default)]
pub struct DurationHistogram {
    buckets: [AtomicU64; HISTOGRAM_BUCKETS],
}

impl DurationHistogram {
    /// Counts one duration.
    pub fn record(&self, d: Duration) {
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let bucket = if micros < 2 {
            0
        } else {
            (63 - micros.leading_zeros() as usize).min(HISTOGRAM_BUCKETS - 1)
        };
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
    }

    /// The counts so far.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut buckets = [0; HISTOGRAM_BUCKETS];
        for (out, b) in buckets.iter_mut().zip(&self.buckets) {
            *out = b.load(Ordering::Relaxed);
        }
        HistogramSnapshot { buckets }
    }
}

/// The counts of a [`DurationHistogram`] at one moment.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HistogramSnapshot {
    /// Count per bucket (see [`HISTOGRAM_BUCKETS`] for the bounds).
    pub buckets: [u64; HISTOGRAM_BUCKETS],
}

impl HistogramSnapshot {
    /// Durations counted.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// The upper bound of the bucket holding the `q`-quantile (`q` in
    /// `0.0..=1.0`, clamped): at least a fraction `q` of the durations were
    /// shorter. `None` when nothing was counted.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let count = self.count();
        if count == 0 {
            return None;
        }
        let q = if q.is_nan() { 1.0 } else { q.clamp(0.0, 1.0) };
        let rank = ((q * count as f64).ceil() as u64).clamp(1, count);
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(Duration::from_micros(1u64 << (i + 1)));
            }
        }
        Some(Duration::from_micros(1u64 << HISTOGRAM_BUCKETS))
    }

    /// The durations counted between `earlier` and `self`.
    pub fn since(&self, earlier: &HistogramSnapshot) -> HistogramSnapshot {
        let mut buckets = self.buckets;
        for (b, e) in buckets.iter_mut().zip(&earlier.buckets) {
            *b = b.saturating_sub(*e);
        }
        HistogramSnapshot { buckets }
    }

    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &HistogramSnapshot) {
        for (b, o) in self.buckets.iter_mut().zip(&other.buckets) {
            *b += o;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_powers_of_two_microseconds() {
        let h = DurationHistogram::default();
        h.record(Duration::ZERO);
        h.record(Duration::from_nanos(1_999)); // 1 µs: bucket 0
        h.record(Duration::from_micros(2)); // bucket 1: [2, 4)
        h.record(Duration::from_micros(3));
        h.record(Duration::from_micros(1024)); // bucket 10
        h.record(Duration::from_secs(1 << 40)); // clamped into the last bucket
        let s = h.snapshot();
        assert_eq!(s.buckets[0], 2);
        assert_eq!(s.buckets[1], 2);
        assert_eq!(s.buckets[10], 1);
        assert_eq!(s.buckets[HISTOGRAM_BUCKETS - 1], 1);
        assert_eq!(s.count(), 6);
        assert_eq!(s.quantile(0.0), Some(Duration::from_micros(2)));
        assert_eq!(s.quantile(0.5), Some(Duration::from_micros(4)));
        assert_eq!(s.quantile(5.0 / 6.0), Some(Duration::from_micros(2048)));
        assert_eq!(
            s.quantile(1.0),
            Some(Duration::from_micros(1 << HISTOGRAM_BUCKETS))
        );
        // Out-of-range and NaN quantiles are clamped, not a panic.
        assert_eq!(s.quantile(-3.0), s.quantile(0.0));
        assert_eq!(s.quantile(f64::NAN), s.quantile(1.0));
    }

    fn led_by(leader_id: u64, leader_store_id: u64) -> LeaderInfo {
        LeaderInfo {
            term: 6,
            leader_id,
            leader_store_id,
            is_leader: false,
        }
    }

    #[test]
    fn leader_count_follows_leadership_changes_and_removals() {
        let meta = StoreMeta::default();
        let leading = LeaderInfo {
            is_leader: true,
            ..led_by(11, 1)
        };
        meta.add_region(1);
        meta.add_region(2);
        assert_eq!(meta.leader_count(), 0);
        meta.set_leader(1, leading);
        meta.set_leader(1, LeaderInfo { term: 7, ..leading });
        meta.set_leader(2, leading);
        assert_eq!(meta.leader_count(), 2);
        meta.set_leader(2, led_by(12, 2));
        assert_eq!(meta.leader_count(), 1);
        meta.remove(1);
        meta.remove(2);
        meta.remove(3);
        assert_eq!(meta.leader_count(), 0);
        assert_eq!(meta.leader_count(), meta.leader_regions().len());
    }

    #[test]
    fn wait_for_leaders_names_the_regions_without_one_and_wakes_on_a_change() {
        let meta = std::sync::Arc::new(StoreMeta::default());
        meta.add_region(1);
        meta.add_region(2);
        meta.set_leader(1, led_by(11, 1));
        match meta.wait_for_leaders(Duration::ZERO) {
            Err(crate::Error::NoLeader(missing)) => assert_eq!(missing, vec![2]),
            other => panic!("expected NoLeader, got {other:?}"),
        }
        let writer = {
            let meta = meta.clone();
            std::thread::spawn(move || meta.set_leader(2, led_by(22, 2)))
        };
        meta.wait_for_leaders(Duration::from_secs(30)).unwrap();
        writer.join().unwrap();
        let leader = meta.leader(2).unwrap();
        assert_eq!((leader.get_id(), leader.get_store_id()), (22, 2));
        // Adding a known region again keeps what is known about it.
        meta.add_region(2);
        assert!(meta.leader_info(2).unwrap().has_leader());
        meta.remove(2);
        assert_eq!(meta.regions(), vec![1]);
        assert_eq!(meta.leader_info(2), None);
    }

    #[test]
    fn unknown_leader_has_no_peer() {
        let info = LeaderInfo::default();
        assert!(!info.has_leader());
        assert_eq!(info.leader_peer(), None);
    }

    #[test]
    fn region_progress_is_listed_until_the_region_is_removed() {
        let stats = StoreStats::default();
        stats.progress_cell(3).store(7, 9, 10, 6, false);
        stats.progress_cell(1).store(9, 9, 9, 6, true);
        let follower = stats.region_progress(3).unwrap();
        assert_eq!(
            (
                follower.applied_index,
                follower.commit_index,
                follower.last_index
            ),
            (7, 9, 10)
        );
        let ids: Vec<u64> = stats.regions().iter().map(|p| p.region_id).collect();
        assert_eq!(ids, vec![1, 3]);
        let leader = RegionProgress {
            commit_index: 8,
            ..RegionProgress::default()
        };
        assert!(follower.caught_up_with(&RegionProgress {
            commit_index: 7,
            ..leader
        }));
        assert!(!follower.caught_up_with(&leader));
        stats.remove_region(3);
        assert_eq!(stats.region_progress(3), None);
    }

    #[test]
    fn empty_histogram_has_no_quantiles() {
        let s = DurationHistogram::default().snapshot();
        assert_eq!(s.count(), 0);
        assert_eq!(s.quantile(0.5), None);
    }

    #[test]
    fn snapshots_subtract_and_add() {
        let stats = StoreStats::default();
        stats.log_syncs.fetch_add(3, Ordering::Relaxed);
        stats.log_write_duration.record(Duration::from_micros(100));
        let before = stats.snapshot();
        stats.log_syncs.fetch_add(2, Ordering::Relaxed);
        stats.rounds.fetch_add(7, Ordering::Relaxed);
        stats.log_write_duration.record(Duration::from_millis(20));
        let delta = stats.snapshot().since(&before);
        assert_eq!(delta.log_syncs, 2);
        assert_eq!(delta.rounds, 7);
        assert_eq!(delta.log_write_duration.count(), 1);
        assert_eq!(
            delta.log_write_duration.quantile(1.0),
            Some(Duration::from_micros(32_768))
        );
        // A reversed pair saturates instead of wrapping.
        assert_eq!(before.since(&stats.snapshot()).log_syncs, 0);

        let mut sum = delta;
        sum.add(&delta);
        assert_eq!(sum.log_syncs, 4);
        assert_eq!(sum.log_write_duration.count(), 2);
    }
}
