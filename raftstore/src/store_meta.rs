//! Store-wide facts shared between pollers and observers: who leads which
//! region, and counters of the work done.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

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
    /// Times a peer of this store fell asleep (hibernated).
    pub hibernations: AtomicU64,
    /// Times a hibernated peer of this store woke.
    pub wakes: AtomicU64,
    /// How long each raft log write took, fsync included: the part of a
    /// poll round spent waiting for the disk.
    pub log_write_duration: DurationHistogram,
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
            log_write_duration: self.log_write_duration.snapshot(),
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
    /// Durations of the raft log writes, fsync included.
    pub log_write_duration: HistogramSnapshot,
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
