//! [`MemRaftLogEngine`]: an in-memory raft log engine for tests and simulation.

use std::collections::VecDeque;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use kvproto_lite::raft_serverpb::RaftLocalState;
use protobuf::Message;
use raft::eraftpb::Entry;

use crate::id_hash::IdMap;
use crate::log_check::{check_changes, entries_span, SpanChange};
use crate::{Error, RaftLogBatch, RaftLogEngine, Result};

/// One region's log and raft state.
#[derive(Clone, Debug, Default)]
struct RegionLog {
    /// Index of `entries[0]` (meaningless while `entries` is empty).
    first_index: u64,
    entries: VecDeque<Entry>,
    state: Option<RaftLocalState>,
}

impl RegionLog {
    fn span(&self) -> Option<(u64, u64)> {
        let len = self.entries.len() as u64;
        (len > 0).then(|| (self.first_index, self.first_index + len - 1))
    }

    fn get(&self, index: u64) -> Option<&Entry> {
        let offset = usize::try_from(index.checked_sub(self.first_index)?).ok()?;
        self.entries.get(offset)
    }
}

/// A logged write, replayed onto the durable copy when it becomes durable.
#[derive(Clone, Debug)]
enum LogOp {
    Append(u64, Vec<Entry>),
    PutState(u64, RaftLocalState),
    Clean(u64),
    Compact(u64, u64),
}

type Regions = IdMap<RegionLog>;

/// Makes room in `log` for entries starting at `first_new` (already checked:
/// no gap, nothing compacted is overwritten).
fn prepare_append(log: &mut RegionLog, first_new: u64) {
    match log.span() {
        Some((log_first, _)) if first_new >= log_first => {
            let keep = usize::try_from(first_new - log_first).unwrap_or(usize::MAX);
            log.entries.truncate(keep);
        }
        _ => {
            log.entries.clear();
            log.first_index = first_new;
        }
    }
}

/// Applies one already-checked operation, cloning what it keeps.
fn apply(regions: &mut Regions, op: &LogOp) -> u64 {
    match op {
        LogOp::Append(region_id, entries) => {
            if let Some(first) = entries.first() {
                let log = regions.entry(*region_id).or_default();
                prepare_append(log, first.index);
                log.entries.extend(entries.iter().cloned());
            }
            0
        }
        LogOp::PutState(region_id, state) => {
            regions.entry(*region_id).or_default().state = Some(state.clone());
            0
        }
        LogOp::Clean(region_id) => {
            regions.remove(region_id);
            0
        }
        LogOp::Compact(region_id, compact_to) => compact(regions, *region_id, *compact_to),
    }
}

/// Applies one already-checked operation, moving its contents.
fn apply_owned(regions: &mut Regions, op: LogOp) {
    match op {
        LogOp::Append(region_id, entries) => {
            if let Some(first) = entries.first() {
                let log = regions.entry(region_id).or_default();
                prepare_append(log, first.index);
                log.entries.extend(entries);
            }
        }
        LogOp::PutState(region_id, state) => {
            regions.entry(region_id).or_default().state = Some(state);
        }
        op @ (LogOp::Clean(_) | LogOp::Compact(..)) => {
            apply(regions, &op);
        }
    }
}

/// Removes entries `< compact_to`; returns how many were removed.
fn compact(regions: &mut Regions, region_id: u64, compact_to: u64) -> u64 {
    let Some(log) = regions.get_mut(&region_id) else {
        return 0;
    };
    let Some((first, last)) = log.span() else {
        return 0;
    };
    let end = compact_to.min(last + 1);
    if end <= first {
        return 0;
    }
    let removed = end - first;
    log.entries
        .drain(..usize::try_from(removed).unwrap_or(usize::MAX));
    log.first_index = end;
    if log.entries.capacity() > 2 * log.entries.len() + 64 {
        log.entries.shrink_to_fit();
    }
    removed
}

#[derive(Debug, Default)]
struct Inner {
    /// What readers see: every consumed batch.
    live: Regions,
    /// What survives [`MemRaftLogEngine::crash`]: every write up to the last sync.
    durable: Regions,
    /// Writes since the last sync, in order.
    pending: Vec<LogOp>,
}

impl Inner {
    fn make_durable(&mut self) {
        for op in std::mem::take(&mut self.pending) {
            apply_owned(&mut self.durable, op);
        }
    }
}

/// An in-memory [`RaftLogEngine`] **for tests and simulation**; nothing is
/// written to disk.
///
/// It models durability so a simulation can crash a store:
/// [`crash`](MemRaftLogEngine::crash) discards every write not yet made
/// durable, i.e. everything consumed with `sync = false` (and every
/// [`compact_to`](RaftLogEngine::compact_to)) since the last
/// `consume(.., sync = true)` or [`sync`](RaftLogEngine::sync). The price is a
/// second copy of the log, kept up to date at each sync.
///
/// Unsynced writes are also kept in an in-memory log until the next sync,
/// so a workload that never syncs makes that log grow.
///
/// Clones share the same storage.
///
/// # Examples
///
/// ```
/// use engine::{MemRaftLogEngine, RaftLogBatch, RaftLogEngine};
/// use raft::eraftpb::Entry;
///
/// let raft = MemRaftLogEngine::new();
/// let entry = |index| Entry { index, term: 1, ..Default::default() };
/// let mut batch = raft.log_batch(1);
/// batch.append(1, vec![entry(1), entry(2)]).unwrap();
/// raft.consume(&mut batch, true).unwrap();
/// batch.append(1, vec![entry(3)]).unwrap();
/// raft.consume(&mut batch, false).unwrap();
/// assert_eq!(raft.last_index(1), Some(3));
///
/// raft.crash(); // the unsynced append is lost
/// assert_eq!(raft.last_index(1), Some(2));
/// ```
#[derive(Clone, Debug, Default)]
pub struct MemRaftLogEngine {
    inner: Arc<RwLock<Inner>>,
}

impl MemRaftLogEngine {
    /// An empty engine.
    pub fn new() -> Self {
        Self::default()
    }

    /// Simulates a crash and restart: every write that was not made durable
    /// is discarded; synced writes are kept.
    pub fn crash(&self) {
        let mut inner = self.write();
        inner.pending.clear();
        inner.live = inner.durable.clone();
    }

    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        // A panic while holding the lock cannot leave `Inner` half-updated in
        // a way that breaks its invariants (updates are checked first), so a
        // poisoned lock is recovered.
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// The [`RaftLogBatch`] of [`MemRaftLogEngine`].
#[derive(Debug, Default)]
pub struct MemLogBatch {
    ops: Vec<LogOp>,
    changes: Vec<(u64, SpanChange)>,
    size: usize,
}

impl RaftLogBatch for MemLogBatch {
    fn append(&mut self, region_id: u64, entries: Vec<Entry>) -> Result<()> {
        let Some((first, last)) = entries_span(region_id, &entries)? else {
            return Ok(());
        };
        self.size += entries
            .iter()
            .map(|e| e.compute_size() as usize)
            .sum::<usize>();
        self.changes
            .push((region_id, SpanChange::Append { first, last }));
        self.ops.push(LogOp::Append(region_id, entries));
        Ok(())
    }

    fn put_raft_state(&mut self, region_id: u64, state: &RaftLocalState) -> Result<()> {
        self.size += state.compute_size() as usize;
        self.ops.push(LogOp::PutState(region_id, state.clone()));
        Ok(())
    }

    fn clean(&mut self, region_id: u64) -> Result<()> {
        self.changes.push((region_id, SpanChange::Clean));
        self.ops.push(LogOp::Clean(region_id));
        Ok(())
    }

    fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    fn approximate_size(&self) -> usize {
        self.size
    }
}

impl RaftLogEngine for MemRaftLogEngine {
    type LogBatch = MemLogBatch;

    fn log_batch(&self, capacity: usize) -> MemLogBatch {
        MemLogBatch {
            ops: Vec::with_capacity(capacity),
            changes: Vec::with_capacity(capacity),
            size: 0,
        }
    }

    fn consume(&self, batch: &mut MemLogBatch, sync: bool) -> Result<usize> {
        let mut inner = self.write();
        check_changes(&batch.changes, |id| {
            inner.live.get(&id).and_then(RegionLog::span)
        })?;
        let size = batch.size;
        batch.changes.clear();
        batch.size = 0;
        let ops = std::mem::take(&mut batch.ops);
        for op in &ops {
            apply(&mut inner.live, op);
        }
        inner.pending.extend(ops);
        if sync {
            inner.make_durable();
        }
        Ok(size)
    }

    fn get_raft_state(&self, region_id: u64) -> Result<Option<RaftLocalState>> {
        Ok(self
            .read()
            .live
            .get(&region_id)
            .and_then(|log| log.state.clone()))
    }

    fn get_entry(&self, region_id: u64, index: u64) -> Result<Option<Entry>> {
        Ok(self
            .read()
            .live
            .get(&region_id)
            .and_then(|log| log.get(index).cloned()))
    }

    fn fetch_entries_to(
        &self,
        region_id: u64,
        low: u64,
        high: u64,
        max_size: Option<usize>,
        buf: &mut Vec<Entry>,
    ) -> Result<usize> {
        if low >= high {
            return Ok(0);
        }
        let inner = self.read();
        let log = inner.live.get(&region_id);
        let Some((first, last)) = log.and_then(RegionLog::span) else {
            return Err(Error::EntriesUnavailable);
        };
        if low < first {
            return Err(Error::EntriesCompacted);
        }
        if high > last + 1 {
            return Err(Error::EntriesUnavailable);
        }
        let mut total = 0usize;
        let mut pushed = 0;
        for index in low..high {
            let Some(entry) = log.and_then(|l| l.get(index)) else {
                return Err(Error::EntriesUnavailable);
            };
            let size = entry.compute_size() as usize;
            total += size;
            if let Some(max) = max_size {
                if pushed > 0 && total > max {
                    break;
                }
            }
            buf.push(entry.clone());
            pushed += 1;
        }
        Ok(pushed)
    }

    fn first_index(&self, region_id: u64) -> Option<u64> {
        let inner = self.read();
        inner.live.get(&region_id)?.span().map(|(f, _)| f)
    }

    fn last_index(&self, region_id: u64) -> Option<u64> {
        let inner = self.read();
        inner.live.get(&region_id)?.span().map(|(_, l)| l)
    }

    fn compact_to(&self, region_id: u64, compact_to: u64) -> Result<u64> {
        let mut inner = self.write();
        let op = LogOp::Compact(region_id, compact_to);
        let removed = apply(&mut inner.live, &op);
        if removed > 0 {
            inner.pending.push(op);
        }
        Ok(removed)
    }

    fn region_ids(&self) -> Result<Vec<u64>> {
        let inner = self.read();
        let mut ids: Vec<u64> = inner
            .live
            .iter()
            .filter(|(_, log)| log.state.is_some())
            .map(|(&id, _)| id)
            .collect();
        ids.sort_unstable();
        Ok(ids)
    }

    fn sync(&self) -> Result<()> {
        self.write().make_durable();
        Ok(())
    }
}
