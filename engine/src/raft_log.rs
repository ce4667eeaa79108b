//! The raft log storage traits: [`RaftLogEngine`] and its [`RaftLogBatch`].

use kvproto_lite::raft_serverpb::RaftLocalState;
use raft::eraftpb::Entry;

use crate::Result;

/// Stores the raft logs and raft states (hard state + last index) of many
/// regions.
///
/// Writes go through a [`RaftLogBatch`] that may hold many regions' appends
/// and states; [`consume`](RaftLogEngine::consume) writes the whole batch
/// atomically with at most one fsync, so a store persists every ready region
/// of a poll round with one disk sync.
///
/// Log invariants every implementation enforces (and the conformance suite
/// checks): a region's entries are contiguous; an append starting at index
/// `i` replaces every entry `>= i`; an append may not start after
/// `last_index + 1` ([`Error::LogGap`](crate::Error::LogGap)) nor before
/// `first_index` ([`Error::OverwriteCompacted`](crate::Error::OverwriteCompacted));
/// a region without entries (new, cleaned or compacted to the end) accepts
/// an append at any index. A batch that breaks a rule is rejected whole.
///
/// Batches touching the same region must not be consumed concurrently from
/// different threads (raftstore writes a region from one poller at a time).
pub trait RaftLogEngine: Clone + Send + Sync + 'static {
    /// The batch type of this engine.
    type LogBatch: RaftLogBatch;

    /// A new, empty batch with room for about `capacity` items.
    fn log_batch(&self, capacity: usize) -> Self::LogBatch;

    /// Writes the whole batch atomically (one fsync if `sync`), leaves it
    /// empty and returns the number of bytes written.
    ///
    /// With `sync = true` every earlier write is durable too when this
    /// returns.
    ///
    /// # Errors
    ///
    /// [`Error::LogGap`](crate::Error::LogGap) or
    /// [`Error::OverwriteCompacted`](crate::Error::OverwriteCompacted) when an
    /// append breaks the log invariants; then nothing is written and the
    /// batch is left as it was. I/O errors from the underlying store; the
    /// batch's content is unspecified then: drop it and build a new one.
    fn consume(&self, batch: &mut Self::LogBatch, sync: bool) -> Result<usize>;

    /// The region's last stored raft state, if any.
    ///
    /// # Errors
    ///
    /// A stored state that cannot be decoded, or an I/O error.
    fn get_raft_state(&self, region_id: u64) -> Result<Option<RaftLocalState>>;

    /// The entry at `index`, or `None` if the region's log does not hold it.
    ///
    /// # Errors
    ///
    /// An entry that cannot be read or decoded.
    fn get_entry(&self, region_id: u64, index: u64) -> Result<Option<Entry>>;

    /// Pushes entries `[low, high)` onto `buf` and returns how many it pushed.
    ///
    /// With `max_size`, stops before the total encoded size
    /// (`protobuf::Message::compute_size` of each entry) exceeds it, but
    /// always pushes at least one entry. `low >= high` pushes nothing.
    ///
    /// # Errors
    ///
    /// [`Error::EntriesCompacted`](crate::Error::EntriesCompacted) when `low`
    /// is below the first index, [`Error::EntriesUnavailable`](crate::Error::EntriesUnavailable)
    /// when `high - 1` is beyond the last index or the region has no entries.
    /// Nothing is pushed on error.
    fn fetch_entries_to(
        &self,
        region_id: u64,
        low: u64,
        high: u64,
        max_size: Option<usize>,
        buf: &mut Vec<Entry>,
    ) -> Result<usize>;

    /// Index of the region's first entry; `None` if the region has no entries.
    fn first_index(&self, region_id: u64) -> Option<u64>;

    /// Index of the region's last entry; `None` if the region has no entries.
    fn last_index(&self, region_id: u64) -> Option<u64>;

    /// Removes entries with index `< compact_to`; returns how many were removed.
    ///
    /// Compaction is not synced by itself: after a crash, compacted entries
    /// may come back until a later synced write or [`sync`](RaftLogEngine::sync).
    ///
    /// # Errors
    ///
    /// I/O errors from the underlying store.
    fn compact_to(&self, region_id: u64, compact_to: u64) -> Result<u64>;

    /// Region ids that have a raft state (for recovery after restart), ascending.
    ///
    /// # Errors
    ///
    /// I/O errors from the underlying store.
    fn region_ids(&self) -> Result<Vec<u64>>;

    /// Makes every earlier write durable.
    ///
    /// # Errors
    ///
    /// I/O errors from the underlying store.
    fn sync(&self) -> Result<()>;

    /// Reclaims space freed by [`compact_to`](Self::compact_to) and
    /// [`RaftLogBatch::clean`] where the engine does that in the background
    /// of its own (raft-engine's log files); a no-op where space is freed at
    /// once. Stores call it periodically, off the hot path.
    ///
    /// # Errors
    ///
    /// I/O errors from the underlying store.
    fn purge_expired(&self) -> Result<()> {
        Ok(())
    }
}

/// A batch of raft log writes for many regions, written by
/// [`RaftLogEngine::consume`].
///
/// Items apply in the order they were added, so `clean` followed by `append`
/// in the same batch restarts a region's log (as after applying a snapshot).
pub trait RaftLogBatch: Send {
    /// Appends entries (contiguous, ascending); overwrites any existing
    /// entries from `entries[0].index` on. An empty `entries` does nothing.
    ///
    /// # Errors
    ///
    /// [`Error::NonContiguousEntries`](crate::Error::NonContiguousEntries) if
    /// the indexes are not `i, i+1, ...`; the batch is unchanged then.
    fn append(&mut self, region_id: u64, entries: Vec<Entry>) -> Result<()>;

    /// Stores the region's raft state (replacing the previous one).
    ///
    /// # Errors
    ///
    /// The state cannot be encoded.
    fn put_raft_state(&mut self, region_id: u64, state: &RaftLocalState) -> Result<()>;

    /// Removes the region's whole log and raft state.
    ///
    /// # Errors
    ///
    /// Implementation-specific; the provided implementations never fail.
    fn clean(&mut self, region_id: u64) -> Result<()>;

    /// `true` if the batch holds nothing.
    fn is_empty(&self) -> bool;

    /// Approximate number of bytes the batch will write.
    fn approximate_size(&self) -> usize;
}
