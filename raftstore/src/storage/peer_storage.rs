//! `PeerStorage`: raft-rs's `Storage` over the store's raft log engine.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;

use engine::{RaftLogBatch, RaftLogEngine};
use kvproto_lite::eraftpb::{Entry, HardState, Snapshot};
use kvproto_lite::metapb::Region;
use kvproto_lite::raft_serverpb::{RaftApplyState, RaftLocalState};
use raft::{GetEntriesContext, RaftState, Storage, StorageError};

pub use crate::snapshot::conf_state_from_region;
use crate::snapshot::{GenSlot, SnapshotMeta};

/// Most entries kept in the in-memory entry cache of one peer.
const MAX_CACHED_ENTRIES: usize = 1024;

/// A peer's raft log and state as raft-rs sees it.
///
/// Reads go to a small cache of recent entries first, then to the raft log
/// engine. Writes are not made here: [`PeerStorage::append`] adds a Ready's
/// entries and hard state to the poll round's shared log batch, which the
/// poller writes (with one fsync for every peer in the round) before
/// advancing raft. Until then raft keeps those entries in its own unstable
/// log, so they are always readable.
///
/// # Snapshots
///
/// [`Storage::snapshot`] never builds a snapshot on the raft thread: the
/// first call records a request and answers
/// `SnapshotTemporarilyUnavailable`; the peer then hands the request to the
/// store's snapshot worker (`PeerStorage::take_snapshot_request`), which
/// fills a [`GenSlot`]; a later call (raft retries on every heartbeat
/// response) returns the finished snapshot. See [`crate::snapshot`].
///
/// # Recovery
///
/// A received snapshot is written to the KV engine (data, apply state,
/// region state: one synced batch) before the raft log is rewritten. If a
/// crash falls between the two, [`PeerStorage::new`] finds an apply state
/// whose truncated position the raft log does not continue and restarts the
/// log at that position (see `reconcile_raft_state`).
pub struct PeerStorage<ER: RaftLogEngine> {
    engine: ER,
    region: Region,
    raft_state: RaftLocalState,
    apply_state: RaftApplyState,
    /// A contiguous suffix of the log, most recent entries.
    cache: VecDeque<Entry>,
    /// Async I/O mode: `(ready number, first index)` of each staged append
    /// a store writer has not made durable yet, oldest first. Cached
    /// entries at or above the lowest such index are the only copy raft
    /// can read until the write lands, so they are never evicted. Empty in
    /// inline mode.
    unpersisted: VecDeque<(u64, u64)>,
    /// Snapshot generation for raft-rs's `Storage::snapshot` (which takes
    /// `&self`).
    gen: RefCell<GenState>,
    /// `(index, term)` of the last entry whose term was read from the
    /// engine (not the cache): raft asks for the term of the last index
    /// on every vote and append it handles, and after a restart (empty
    /// cache) each ask would read and copy the whole entry. Forgotten
    /// whenever the log changes (`cache_append`, `apply_snapshot`).
    engine_term: Cell<Option<(u64, u64)>>,
}

/// Where a leader's snapshot generation stands.
#[derive(Default)]
enum GenState {
    /// Nothing asked for.
    #[default]
    Idle,
    /// raft-rs asked; the peer has not scheduled the generation yet.
    Requested,
    /// The worker builds it into this slot.
    Generating(GenSlot),
}

/// Whether the persisted raft log continues the persisted apply state: the
/// log must reach the truncated index, and an entry it holds at that index
/// must have the truncated term. A snapshot written to the KV engine whose
/// raft state write was lost by a crash breaks this; the raft state is then
/// restarted at the truncated position (an empty log whose last index is
/// the truncated index; term at least the truncated term; commit raised to
/// it), which `Some` returns. The entries of the old log are stale: the
/// caller cleans them.
///
/// # Errors
///
/// An engine error reading the entry at the truncated index.
pub fn reconcile_raft_state<ER: RaftLogEngine>(
    engine: &ER,
    region_id: u64,
    raft_state: &RaftLocalState,
    apply_state: &RaftApplyState,
) -> crate::Result<Option<RaftLocalState>> {
    let truncated = apply_state.get_truncated_state();
    let (t_index, t_term) = (truncated.get_index(), truncated.get_term());
    let behind = raft_state.get_last_index() < t_index;
    // Usually the log no longer holds the entry at the truncated index
    // (compaction removes it): the engine's in-memory index says so
    // without reading an entry, which with raft-engine may mean a hop to
    // its reader thread (see `engine::RaftEngineLogEngine`), once per
    // region at start.
    let holds = |engine: &ER| {
        engine.first_index(region_id).is_some_and(|f| f <= t_index)
            && engine.last_index(region_id).is_some_and(|l| l >= t_index)
    };
    let diverged = !behind
        && holds(engine)
        && engine
            .get_entry(region_id, t_index)?
            .is_some_and(|e| e.get_term() != t_term);
    if !behind && !diverged {
        return Ok(None);
    }
    let mut state = raft_state.clone();
    state.set_last_index(t_index);
    let hs = state.mut_hard_state();
    if hs.get_term() < t_term {
        hs.set_term(t_term);
        hs.set_vote(0);
    }
    if hs.get_commit() < t_index {
        hs.set_commit(t_index);
    }
    Ok(Some(state))
}

impl<ER: RaftLogEngine> PeerStorage<ER> {
    /// Builds the storage of a peer from its persisted states.
    ///
    /// # Errors
    ///
    /// An engine error, or `engine::Error` describing inconsistent states
    /// (a last index below the truncated index).
    pub fn new(
        engine: ER,
        region: Region,
        mut raft_state: RaftLocalState,
        apply_state: RaftApplyState,
    ) -> crate::Result<PeerStorage<ER>> {
        let region_id = region.get_id();
        if let Some(fixed) = reconcile_raft_state(&engine, region_id, &raft_state, &apply_state)? {
            // A snapshot reached the KV engine but its raft state did not
            // reach the log: restart the log where the snapshot ends.
            let mut lb = engine.log_batch(0);
            lb.clean(region_id)?;
            lb.put_raft_state(region_id, &fixed)?;
            engine.consume(&mut lb, true)?;
            raft_state = fixed;
        }
        // Applied entries are committed even if the persisted commit index
        // lagged behind (it is written lazily), and raft-rs refuses an
        // applied index above its commit index.
        let applied = apply_state.get_applied_index();
        if raft_state.get_hard_state().get_commit() < applied {
            raft_state.mut_hard_state().set_commit(applied);
        }
        Ok(PeerStorage {
            engine,
            region,
            raft_state,
            apply_state,
            cache: VecDeque::new(),
            unpersisted: VecDeque::new(),
            gen: RefCell::new(GenState::Idle),
            engine_term: Cell::new(None),
        })
    }

    /// A snapshot generation raft-rs asked for and nobody scheduled yet:
    /// returns the slot the worker must fill (the storage now waits for it).
    pub(crate) fn take_snapshot_request(&mut self) -> Option<GenSlot> {
        let state = self.gen.get_mut();
        if !matches!(state, GenState::Requested) {
            return None;
        }
        let slot = GenSlot::default();
        *state = GenState::Generating(slot.clone());
        Some(slot)
    }

    /// Takes a received snapshot into memory: the region, apply state and
    /// raft state it restores (the raft log restarts after its index), and
    /// stages in `batch` the log's removal and the new raft state. The KV
    /// engine must already hold the snapshot's data and states (written
    /// synced), so a crash before `batch` is written is repaired by
    /// `reconcile_raft_state` at the next start.
    ///
    /// # Errors
    ///
    /// An engine error from the batch; nothing in memory changes then.
    pub(crate) fn apply_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        apply_state: RaftApplyState,
        batch: &mut ER::LogBatch,
    ) -> crate::Result<()> {
        let region_id = self.region.get_id();
        let index = meta.key.index;
        let mut state = self.raft_state.clone();
        state.set_last_index(index);
        let hs = state.mut_hard_state();
        if hs.get_commit() < index {
            hs.set_commit(index);
        }
        if hs.get_term() < meta.key.term {
            hs.set_term(meta.key.term);
        }
        batch.clean(region_id)?;
        batch.put_raft_state(region_id, &state)?;
        self.raft_state = state;
        self.apply_state = apply_state;
        self.region = meta.region.clone();
        self.cache = VecDeque::new();
        self.engine_term.set(None);
        Ok(())
    }

    /// The region this peer belongs to, as last known.
    pub fn region(&self) -> &Region {
        &self.region
    }

    /// Replaces the region metadata (after a conf change or split).
    pub fn set_region(&mut self, region: Region) {
        self.region = region;
    }

    /// Whether the peer has region metadata (a peer created from a message
    /// for an unknown region is not initialised until it gets a snapshot).
    pub fn is_initialized(&self) -> bool {
        !self.region.get_peers().is_empty()
    }

    /// The persisted (or about to be persisted) raft state.
    pub fn raft_state(&self) -> &RaftLocalState {
        &self.raft_state
    }

    /// The apply state last reported by the apply system.
    pub fn apply_state(&self) -> &RaftApplyState {
        &self.apply_state
    }

    /// Records the apply system's progress. Drops cached entries that are
    /// applied, keeping a few for followers that are slightly behind.
    pub fn set_apply_state(&mut self, state: RaftApplyState) {
        self.apply_state = state;
    }

    /// Drops cached entries at or below `index` and releases spare memory
    /// once the cache is empty (an idle region should stay small).
    pub fn compact_cache_to(&mut self, index: u64) {
        let index = index.min(self.pin_floor().saturating_sub(1));
        while self.cache.front().is_some_and(|e| e.get_index() <= index) {
            self.cache.pop_front();
        }
        if self.cache.is_empty() {
            self.cache = VecDeque::new();
        }
    }

    /// Releases the entry cache's spare capacity when it is mostly empty
    /// (the peer calls this on ticks).
    pub fn shrink_cache(&mut self) {
        if self.cache.capacity() > 2 * self.cache.len() + 8 {
            self.cache.shrink_to_fit();
        }
    }

    /// Drops the whole entry cache and its memory. Every cached entry is in
    /// the raft log engine too, so later reads return the same entries,
    /// from the engine; for a region that is going to sleep.
    pub fn release_cache(&mut self) {
        if !self.unpersisted.is_empty() {
            // Entries of writes in flight stay: raft reads them from here.
            self.compact_cache_to(u64::MAX);
            return;
        }
        self.cache = VecDeque::new();
    }

    /// The lowest index of an entry staged for a store writer and not
    /// durable yet (`u64::MAX` when none is).
    fn pin_floor(&self) -> u64 {
        self.unpersisted
            .iter()
            .map(|&(_, first)| first)
            .min()
            .unwrap_or(u64::MAX)
    }

    /// Async I/O mode: takes a Ready's entries and hard state into memory
    /// (raft state, entry cache) like [`PeerStorage::append`], but instead
    /// of adding them to a log batch returns what the store writer must
    /// write: the entries and the new raft state (`None`: nothing to
    /// write). The entries stay cached (never evicted) until
    /// [`PeerStorage::on_persisted`] reports Ready `number` durable.
    pub(crate) fn append_async(
        &mut self,
        number: u64,
        entries: &[Entry],
        hard_state: Option<&HardState>,
    ) -> Option<(Vec<Entry>, RaftLocalState)> {
        if entries.is_empty()
            && hard_state.map_or(true, |hs| hs == self.raft_state.get_hard_state())
        {
            return None;
        }
        let mut new_state = self.raft_state.clone();
        if let Some(last) = entries.last() {
            new_state.set_last_index(last.get_index());
        }
        if let Some(hs) = hard_state {
            new_state.set_hard_state(hs.clone());
        }
        if new_state == self.raft_state && entries.is_empty() {
            return None;
        }
        self.raft_state = new_state.clone();
        if let Some(first) = entries.first() {
            self.unpersisted.push_back((number, first.get_index()));
            self.cache_append(first.get_index(), entries);
        }
        Some((entries.to_vec(), new_state))
    }

    /// Async I/O mode: the Readies up to `number` are durable; their
    /// entries may leave the cache like any other.
    pub(crate) fn on_persisted(&mut self, number: u64) {
        while self.unpersisted.front().is_some_and(|&(n, _)| n <= number) {
            self.unpersisted.pop_front();
        }
    }

    /// Forgets the writes in flight (the store stopped: they will never
    /// be durable, and nothing reads this storage again).
    pub(crate) fn forget_unpersisted(&mut self) {
        self.unpersisted.clear();
    }

    /// Index of the last entry removed by log compaction.
    pub fn truncated_index(&self) -> u64 {
        self.apply_state.get_truncated_state().get_index()
    }

    /// Term of the last entry removed by log compaction.
    pub fn truncated_term(&self) -> u64 {
        self.apply_state.get_truncated_state().get_term()
    }

    /// Index of the last entry in the log.
    pub fn last_index(&self) -> u64 {
        self.raft_state.get_last_index()
    }

    /// The raft log engine.
    pub fn engine(&self) -> &ER {
        &self.engine
    }

    /// Adds a Ready's entries and hard state to `batch` and updates the
    /// in-memory state. Returns whether anything was added.
    ///
    /// # Errors
    ///
    /// An engine error from the batch; nothing in memory changes then.
    pub fn append(
        &mut self,
        entries: &[Entry],
        hard_state: Option<&HardState>,
        batch: &mut ER::LogBatch,
    ) -> crate::Result<bool> {
        let region_id = self.region.get_id();
        if entries.is_empty()
            && hard_state.map_or(true, |hs| hs == self.raft_state.get_hard_state())
        {
            // Most Readies of a busy store only carry messages or commits:
            // no state to write, so no clone of it either.
            return Ok(false);
        }
        let mut new_state = self.raft_state.clone();
        if let Some(last) = entries.last() {
            batch.append(region_id, entries.to_vec())?;
            new_state.set_last_index(last.get_index());
        }
        if let Some(hs) = hard_state {
            new_state.set_hard_state(hs.clone());
        }
        if new_state == self.raft_state && entries.is_empty() {
            return Ok(false);
        }
        batch.put_raft_state(region_id, &new_state)?;
        self.raft_state = new_state;
        if let Some(first) = entries.first() {
            self.cache_append(first.get_index(), entries);
        }
        Ok(true)
    }

    /// Records a commit index learned after persistence (written with the
    /// next batch; losing it on a crash is harmless).
    pub fn set_commit_index(&mut self, commit: u64) -> bool {
        if commit > self.raft_state.get_hard_state().get_commit() {
            self.raft_state.mut_hard_state().set_commit(commit);
            true
        } else {
            false
        }
    }

    /// Adds the current raft state to `batch`.
    ///
    /// # Errors
    ///
    /// An engine error from the batch.
    pub fn persist_raft_state(&self, batch: &mut ER::LogBatch) -> crate::Result<()> {
        batch.put_raft_state(self.region.get_id(), &self.raft_state)?;
        Ok(())
    }

    fn cache_append(&mut self, first_index: u64, entries: &[Entry]) {
        // The entries replace any from `first_index` on.
        self.engine_term.set(None);
        // Drop the conflicting suffix, or everything if the new entries do
        // not continue the cached run.
        match self.cache.front().map(|e| e.get_index()) {
            Some(front)
                if first_index > front && first_index <= front + self.cache.len() as u64 =>
            {
                self.cache.truncate((first_index - front) as usize);
            }
            Some(_) => self.cache.clear(),
            None => {}
        }
        self.cache.extend(entries.iter().cloned());
        let floor = self.pin_floor();
        while self.cache.len() > MAX_CACHED_ENTRIES
            && self.cache.front().is_some_and(|e| e.get_index() < floor)
        {
            self.cache.pop_front();
        }
    }

    /// Appends the cached entries `[low, high)` to `out` (which already
    /// holds `size` bytes of entries) while they fit in `max_size`; the
    /// first entry of the answer is always taken, as raft requires.
    fn push_cached(
        &self,
        low: u64,
        high: u64,
        mut size: u64,
        max_size: Option<u64>,
        out: &mut Vec<Entry>,
    ) {
        for index in low..high {
            let Some(e) = self.cached(index) else { break };
            size += u64::from(protobuf::Message::compute_size(e));
            if !out.is_empty() && max_size.is_some_and(|m| size > m) {
                break;
            }
            out.push(e.clone());
        }
    }

    fn cached(&self, index: u64) -> Option<&Entry> {
        let front = self.cache.front()?.get_index();
        if index < front {
            return None;
        }
        self.cache.get((index - front) as usize)
    }

    fn check_range(&self, low: u64, high: u64) -> raft::Result<()> {
        if low > high {
            return Err(raft::Error::Store(StorageError::Other(
                format!("invalid range [{low}, {high})").into(),
            )));
        }
        if low <= self.truncated_index() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.last_index() + 1 {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        Ok(())
    }
}

impl<ER: RaftLogEngine> Storage for PeerStorage<ER> {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(
            self.raft_state.get_hard_state().clone(),
            conf_state_from_region(&self.region),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        self.check_range(low, high)?;
        let max_size = max_size.into();
        let mut out = Vec::with_capacity((high - low) as usize);
        if low == high {
            return Ok(out);
        }
        // Whole range in the cache: serve it from memory.
        if self.cached(low).is_some() && self.cached(high - 1).is_some() {
            self.push_cached(low, high, 0, max_size, &mut out);
            return Ok(out);
        }
        let region_id = self.region.get_id();
        if let (false, Some(front)) = (self.unpersisted.is_empty(), self.cache.front()) {
            let front = front.get_index();
            if low < front && self.cached(high - 1).is_some() {
                // Async I/O mode: the older part is durable (in the engine),
                // the newer part may be in flight (only in the cache).
                let max = max_size.map(|m| m as usize);
                self.engine
                    .fetch_entries_to(region_id, low, front, max, &mut out)
                    .map_err(raft::Error::from)?;
                if out.len() < (front - low) as usize {
                    // Cut by the size limit.
                    return Ok(out);
                }
                let size: u64 = out
                    .iter()
                    .map(|e| u64::from(protobuf::Message::compute_size(e)))
                    .sum();
                self.push_cached(front, high, size, max_size, &mut out);
                return Ok(out);
            }
        }
        self.engine
            .fetch_entries_to(region_id, low, high, max_size.map(|m| m as usize), &mut out)
            .map_err(raft::Error::from)?;
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx == self.truncated_index() {
            return Ok(self.truncated_term());
        }
        self.check_range(idx, idx + 1)?;
        if let Some(e) = self.cached(idx) {
            return Ok(e.get_term());
        }
        if let Some((index, term)) = self.engine_term.get() {
            if index == idx {
                return Ok(term);
            }
        }
        match self.engine.get_entry(self.region.get_id(), idx) {
            Ok(Some(e)) => {
                self.engine_term.set(Some((idx, e.get_term())));
                Ok(e.get_term())
            }
            Ok(None) => Err(raft::Error::Store(StorageError::Unavailable)),
            Err(e) => Err(e.into()),
        }
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.truncated_index() + 1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last_index())
    }

    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        // raft-rs treats any other error as fatal: only a finished snapshot
        // or "temporarily unavailable" may come back.
        let mut state = self.gen.borrow_mut();
        match &*state {
            GenState::Idle => *state = GenState::Requested,
            GenState::Requested => {}
            GenState::Generating(slot) => {
                if let Some(res) = slot.take() {
                    // Finished: use it if it is recent enough and its
                    // configuration has the peer it goes to (one generated
                    // before that peer was added would be refused by it),
                    // otherwise (or after a failure) ask for another.
                    *state = GenState::Requested;
                    if let Ok(snap) = res {
                        let index = snap.get_metadata().get_index();
                        if index >= request_index
                            && index >= self.truncated_index()
                            && conf_has(snap.get_metadata().get_conf_state(), to)
                        {
                            *state = GenState::Idle;
                            return Ok(snap);
                        }
                    }
                }
            }
        }
        Err(raft::Error::Store(
            StorageError::SnapshotTemporarilyUnavailable,
        ))
    }
}

/// Whether `id` is a voter or learner of `cs`, in either half of a joint
/// configuration.
fn conf_has(cs: &kvproto_lite::eraftpb::ConfState, id: u64) -> bool {
    cs.get_voters().contains(&id)
        || cs.get_learners().contains(&id)
        || cs.get_voters_outgoing().contains(&id)
        || cs.get_learners_next().contains(&id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{
        initial_apply_state, initial_raft_state, RAFT_INIT_LOG_INDEX, RAFT_INIT_LOG_TERM,
    };
    use engine::MemRaftLogEngine;
    use kvproto_lite::metapb::{Peer, PeerRole};

    fn region() -> Region {
        let mut r = Region::default();
        r.set_id(1);
        for (id, store) in [(11, 1), (12, 2)] {
            let mut p = Peer::default();
            p.set_id(id);
            p.set_store_id(store);
            r.mut_peers().push(p);
        }
        let mut learner = Peer::default();
        learner.set_id(13);
        learner.set_store_id(3);
        learner.set_role(PeerRole::Learner);
        r.mut_peers().push(learner);
        r
    }

    fn storage() -> PeerStorage<MemRaftLogEngine> {
        PeerStorage::new(
            MemRaftLogEngine::new(),
            region(),
            initial_raft_state(),
            initial_apply_state(),
        )
        .unwrap()
    }

    fn entry(index: u64, term: u64) -> Entry {
        let mut e = Entry::default();
        e.set_index(index);
        e.set_term(term);
        e.set_data(vec![index as u8; 10].into());
        e
    }

    fn append(s: &mut PeerStorage<MemRaftLogEngine>, entries: &[Entry]) {
        let mut batch = s.engine().log_batch(0);
        assert!(s.append(entries, None, &mut batch).unwrap());
        s.engine().consume(&mut batch, true).unwrap();
    }

    fn read(s: &PeerStorage<MemRaftLogEngine>, low: u64, high: u64) -> Vec<u64> {
        s.entries(low, high, None, GetEntriesContext::empty(false))
            .unwrap()
            .iter()
            .map(|e| e.get_index())
            .collect()
    }

    /// The term read from the engine for an index is remembered, and
    /// forgotten when the log changes: an entry rewritten at another term
    /// answers with its new term, from the cache and, once the cache is
    /// dropped, from the engine.
    #[test]
    fn a_term_read_from_the_engine_is_forgotten_when_the_log_changes() {
        let mut s = storage();
        append(&mut s, &[entry(6, 6), entry(7, 6)]);
        s.release_cache();
        assert_eq!(s.term(7).unwrap(), 6);
        assert_eq!(s.term(7).unwrap(), 6, "remembered");
        assert_eq!(s.term(6).unwrap(), 6);
        append(&mut s, &[entry(7, 7)]);
        assert_eq!(s.term(7).unwrap(), 7);
        s.release_cache();
        assert_eq!(s.term(7).unwrap(), 7, "read again after the rewrite");
        assert_eq!(s.term(6).unwrap(), 6);
    }

    #[test]
    fn append_async_returns_what_the_writer_must_write_and_nothing_when_unchanged() {
        let mut s = storage();
        let (entries, state) = s
            .append_async(1, &[entry(6, 6), entry(7, 6)], None)
            .expect("entries to write");
        assert_eq!(entries.len(), 2);
        assert_eq!(state.get_last_index(), 7);
        assert_eq!(s.last_index(), 7);
        let same = s.raft_state().get_hard_state().clone();
        assert!(s.append_async(2, &[], Some(&same)).is_none());
        // Nothing reached the engine: the writer writes it.
        assert_eq!(s.engine().last_index(1), None);
    }

    #[test]
    fn entries_of_writes_in_flight_stay_readable_until_reported_durable() {
        let mut s = storage();
        let n = MAX_CACHED_ENTRIES as u64 + 100;
        let entries: Vec<Entry> = (6..6 + n).map(|i| entry(i, 6)).collect();
        assert!(s.append_async(1, &entries, None).is_some());
        // More than the cache keeps, none in the engine: all still served.
        assert_eq!(read(&s, 6, 6 + n).len() as u64, n);
        // Neither log GC of the cache nor a sleeping region's release drops
        // them.
        s.compact_cache_to(5 + n);
        s.release_cache();
        assert_eq!(s.term(6).unwrap(), 6);
        assert_eq!(read(&s, 6, 6 + n).len() as u64, n);

        // Written and reported: the cache may let them go again.
        let mut batch = s.engine().log_batch(0);
        batch.append(1, entries).unwrap();
        s.engine().consume(&mut batch, true).unwrap();
        s.on_persisted(1);
        s.compact_cache_to(5 + n);
        assert!(s.cache.is_empty());
        assert_eq!(read(&s, 6, 6 + n).len() as u64, n);
    }

    #[test]
    fn a_read_across_durable_and_in_flight_entries_joins_engine_and_cache() {
        let mut s = storage();
        append(&mut s, &[entry(6, 6), entry(7, 6), entry(8, 6)]);
        s.compact_cache_to(7);
        assert!(s
            .append_async(1, &[entry(9, 6), entry(10, 6)], None)
            .is_some());
        assert_eq!(read(&s, 6, 11), vec![6, 7, 8, 9, 10]);
        assert_eq!(read(&s, 7, 10), vec![7, 8, 9]);
    }

    #[test]
    fn bootstrapped_storage_starts_truncated_at_the_init_position() {
        let s = storage();
        let state = s.initial_state().unwrap();
        assert_eq!(state.hard_state.get_term(), RAFT_INIT_LOG_TERM);
        assert_eq!(state.conf_state.get_voters(), &[11, 12]);
        assert_eq!(state.conf_state.get_learners(), &[13]);
        assert_eq!(Storage::first_index(&s).unwrap(), RAFT_INIT_LOG_INDEX + 1);
        assert_eq!(Storage::last_index(&s).unwrap(), RAFT_INIT_LOG_INDEX);
        assert_eq!(s.term(RAFT_INIT_LOG_INDEX).unwrap(), RAFT_INIT_LOG_TERM);
    }

    #[test]
    fn a_region_in_a_joint_configuration_restarts_raft_in_it() {
        let mut region = Region::default();
        for (id, role) in [
            (11, PeerRole::Voter),
            (12, PeerRole::DemotingVoter),
            (13, PeerRole::IncomingVoter),
            (14, PeerRole::Learner),
        ] {
            let mut p = Peer::default();
            p.set_id(id);
            p.set_role(role);
            region.mut_peers().push(p);
        }
        // Treating a demoting voter as a voter after a restart let two
        // peers that were learners elect a leader (simulation, seed 50).
        let cs = conf_state_from_region(&region);
        assert_eq!(cs.get_voters(), &[11, 13]);
        assert_eq!(cs.get_voters_outgoing(), &[11, 12]);
        assert_eq!(cs.get_learners(), &[14]);
        assert_eq!(cs.get_learners_next(), &[12]);
        assert!(cs.get_auto_leave());
    }

    #[test]
    fn terms_and_entries_outside_the_log_are_errors_not_panics() {
        let mut s = storage();
        append(&mut s, &[entry(6, 6), entry(7, 6)]);
        assert!(matches!(
            s.term(4),
            Err(raft::Error::Store(StorageError::Compacted))
        ));
        assert!(matches!(
            s.term(9),
            Err(raft::Error::Store(StorageError::Unavailable))
        ));
        let ctx = GetEntriesContext::empty(false);
        assert!(matches!(
            s.entries(5, 7, None, ctx),
            Err(raft::Error::Store(StorageError::Compacted))
        ));
        let ctx = GetEntriesContext::empty(false);
        assert!(matches!(
            s.entries(6, 9, None, ctx),
            Err(raft::Error::Store(StorageError::Unavailable))
        ));
        let ctx = GetEntriesContext::empty(false);
        assert!(s.entries(7, 6, None, ctx).is_err());
    }

    #[test]
    fn appended_entries_are_read_back_from_cache_and_engine() {
        let mut s = storage();
        append(&mut s, &[entry(6, 6), entry(7, 6), entry(8, 7)]);
        let ctx = GetEntriesContext::empty(false);
        let got = s.entries(6, 9, None, ctx).unwrap();
        assert_eq!(
            got.iter().map(|e| e.get_index()).collect::<Vec<_>>(),
            vec![6, 7, 8]
        );
        // With the cache emptied, the same comes from the engine.
        s.compact_cache_to(8);
        let ctx = GetEntriesContext::empty(false);
        assert_eq!(s.entries(6, 9, None, ctx).unwrap(), got);
        assert_eq!(s.term(8).unwrap(), 7);
        // A size limit still returns at least one entry.
        let ctx = GetEntriesContext::empty(false);
        assert_eq!(s.entries(6, 9, Some(1), ctx).unwrap().len(), 1);
    }

    #[test]
    fn a_conflicting_append_replaces_the_suffix() {
        let mut s = storage();
        append(&mut s, &[entry(6, 6), entry(7, 6), entry(8, 6)]);
        append(&mut s, &[entry(7, 8)]);
        assert_eq!(s.last_index(), 7);
        assert_eq!(s.term(7).unwrap(), 8);
        assert!(s.term(8).is_err());
        s.compact_cache_to(100);
        assert_eq!(s.term(7).unwrap(), 8);
    }

    #[test]
    fn a_log_that_ends_before_the_truncated_index_restarts_at_it() {
        let mut raft_state = initial_raft_state();
        raft_state.set_last_index(2);
        let s = PeerStorage::new(
            MemRaftLogEngine::new(),
            region(),
            raft_state,
            initial_apply_state(),
        )
        .unwrap();
        assert_eq!(s.last_index(), RAFT_INIT_LOG_INDEX);
        assert_eq!(
            s.engine()
                .get_raft_state(1)
                .unwrap()
                .unwrap()
                .get_last_index(),
            RAFT_INIT_LOG_INDEX,
            "the repaired state is persisted"
        );
    }

    mod snapshot_crash {
        use super::*;
        use crate::snapshot::{generate, restored_apply_state, write_to_kv, GeneratedSnapshot};
        use engine::{KvEngine, KvWriteBatch, MemKvEngine, RaftLogBatch};
        use kvproto_lite::raft_serverpb::RegionLocalState;

        /// A receiver whose peer has a log 6..=last (term 6), applied 15.
        fn receiver(last: u64) -> (MemKvEngine, MemRaftLogEngine) {
            let (kv, raft) = (MemKvEngine::new(), MemRaftLogEngine::new());
            let mut lb = raft.log_batch(0);
            lb.append(1, (6..=last).map(|i| entry(i, 6)).collect())
                .unwrap();
            let mut rs = initial_raft_state();
            rs.set_last_index(last);
            rs.mut_hard_state().set_term(6);
            rs.mut_hard_state().set_commit(15);
            lb.put_raft_state(1, &rs).unwrap();
            raft.consume(&mut lb, true).unwrap();
            let mut wb = kv.write_batch();
            wb.put(b"a", b"old");
            wb.put(b"stale", b"old");
            let mut applied = initial_apply_state();
            applied.set_applied_index(15);
            applied.set_commit_index(15);
            applied.set_commit_term(6);
            wb.put_apply_state(1, &applied);
            let mut state = RegionLocalState::default();
            state.set_region(region());
            wb.put_region_state(1, &state);
            kv.write(&mut wb, true).unwrap();
            (kv, raft)
        }

        /// A snapshot of region 1 at index 40, term 7.
        fn snapshot() -> GeneratedSnapshot {
            let kv = MemKvEngine::new();
            let mut wb = kv.write_batch();
            wb.put(b"a", b"new");
            wb.put(b"b", b"new");
            let mut applied = initial_apply_state();
            applied.set_applied_index(40);
            applied.set_commit_index(40);
            applied.set_commit_term(7);
            wb.put_apply_state(1, &applied);
            let mut state = RegionLocalState::default();
            state.set_region(region());
            wb.put_region_state(1, &state);
            kv.write(&mut wb, true).unwrap();
            generate(&kv.snapshot(), 1, 16).unwrap()
        }

        /// Restarts the peer from what survived, as the store does.
        fn restart(kv: &MemKvEngine, raft: &MemRaftLogEngine) -> PeerStorage<MemRaftLogEngine> {
            kv.crash();
            raft.crash();
            let raft_state = raft.get_raft_state(1).unwrap().unwrap_or_default();
            let apply_state = kv.get_apply_state(1).unwrap().unwrap();
            let region = kv
                .get_region_state(1)
                .unwrap()
                .unwrap()
                .get_region()
                .clone();
            PeerStorage::new(raft.clone(), region, raft_state, apply_state).unwrap()
        }

        fn assert_old(s: &PeerStorage<MemRaftLogEngine>, kv: &MemKvEngine, last: u64) {
            assert_eq!(s.last_index(), last);
            assert_eq!(s.apply_state().get_applied_index(), 15);
            assert_eq!(s.term(last).unwrap(), 6);
            assert_eq!(kv.get(b"a").unwrap(), Some(b"old".to_vec()));
            assert_eq!(kv.get(b"b").unwrap(), None);
        }

        fn assert_new(s: &PeerStorage<MemRaftLogEngine>, kv: &MemKvEngine) {
            assert_eq!(s.last_index(), 40);
            assert_eq!(Storage::first_index(s).unwrap(), 41);
            assert_eq!(s.term(40).unwrap(), 7);
            assert!(s.raft_state().get_hard_state().get_term() >= 7);
            assert_eq!(s.raft_state().get_hard_state().get_commit(), 40);
            assert_eq!(s.engine().first_index(1), None, "the old log is gone");
            assert_eq!(kv.get(b"a").unwrap(), Some(b"new".to_vec()));
            assert_eq!(kv.get(b"b").unwrap(), Some(b"new".to_vec()));
            assert_eq!(kv.get(b"stale").unwrap(), None);
            // raft-rs accepts the state (a commit past the log would panic).
            let cfg = raft::Config {
                id: 11,
                applied: 40,
                ..Default::default()
            };
            let logger = slog::Logger::root(slog::Discard, slog::o!());
            assert!(raft::RawNode::new(&cfg, restart_clone(s), &logger).is_ok());
        }

        fn restart_clone(s: &PeerStorage<MemRaftLogEngine>) -> PeerStorage<MemRaftLogEngine> {
            PeerStorage::new(
                s.engine().clone(),
                s.region().clone(),
                s.raft_state().clone(),
                s.apply_state().clone(),
            )
            .unwrap()
        }

        /// Applies the snapshot as a peer does, crashing after `steps` of
        /// its two writes (0: none, 1: the KV batch, 2: both).
        fn apply_and_crash(
            last: u64,
            steps: usize,
        ) -> (MemKvEngine, PeerStorage<MemRaftLogEngine>) {
            let (kv, raft) = receiver(last);
            let g = snapshot();
            let data = g.chunks.concat();
            let mut s = restart(&kv, &raft);
            if steps >= 1 {
                write_to_kv(&kv, &g.meta, &data, None).unwrap();
            }
            if steps >= 2 {
                let mut lb = raft.log_batch(0);
                s.apply_snapshot(&g.meta, restored_apply_state(&g.meta), &mut lb)
                    .unwrap();
                raft.consume(&mut lb, true).unwrap();
            }
            let s = restart(&kv, &raft);
            (kv, s)
        }

        #[test]
        fn a_crash_at_any_step_of_applying_a_snapshot_restarts_into_the_old_or_the_new_state() {
            for last in [20, 60] {
                let (kv, s) = apply_and_crash(last, 0);
                assert_old(&s, &kv, last);
                for steps in [1, 2] {
                    let (kv, s) = apply_and_crash(last, steps);
                    assert_new(&s, &kv);
                }
            }
        }

        #[test]
        fn a_log_that_diverges_at_the_snapshot_index_is_replaced() {
            // The old log has index 40 with term 6; the snapshot says 7.
            let (kv, raft) = receiver(60);
            let g = snapshot();
            write_to_kv(&kv, &g.meta, &g.chunks.concat(), None).unwrap();
            let s = restart(&kv, &raft);
            assert_new(&s, &kv);
            // A log that continues the truncated position is kept.
            let (kv, raft) = receiver(60);
            let mut wb = kv.write_batch();
            let mut applied = initial_apply_state();
            applied.set_applied_index(30);
            applied.mut_truncated_state().set_index(20);
            applied.mut_truncated_state().set_term(6);
            wb.put_apply_state(1, &applied);
            kv.write(&mut wb, true).unwrap();
            let s = restart(&kv, &raft);
            assert_eq!(s.last_index(), 60);
        }
    }

    #[test]
    fn commit_index_is_raised_to_the_applied_index_on_load() {
        let mut raft_state = initial_raft_state();
        raft_state.set_last_index(10);
        raft_state.mut_hard_state().set_commit(5);
        let mut apply_state = initial_apply_state();
        apply_state.set_applied_index(9);
        let s =
            PeerStorage::new(MemRaftLogEngine::new(), region(), raft_state, apply_state).unwrap();
        assert_eq!(s.raft_state().get_hard_state().get_commit(), 9);
    }
}
