//! [`MemKvEngine`]: an in-memory KV engine for tests and simulation.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use kvproto_lite::raft_serverpb::{RaftApplyState, RegionLocalState};

use crate::write_batch::WriteOp;
use crate::{keys, KvEngine, KvSnapshot, RawVisitor, Result, WriteBatch};

type Map = BTreeMap<Vec<u8>, Vec<u8>>;

fn apply(map: &mut Map, op: &WriteOp) {
    match op {
        WriteOp::Put(k, v) => {
            // An overwrite reuses the key and the old value's buffer.
            if let Some(old) = map.get_mut(k.as_slice()) {
                old.clear();
                old.extend_from_slice(v);
            } else {
                map.insert(k.clone(), v.clone());
            }
        }
        WriteOp::Delete(k) => {
            map.remove(k);
        }
        WriteOp::DeleteRange(start, end) => remove_range(map, start, end),
    }
}

/// [`apply`] for an operation the caller gives away: nothing is copied.
fn apply_owned(map: &mut Map, op: WriteOp) {
    match op {
        WriteOp::Put(k, v) => {
            map.insert(k, v);
        }
        WriteOp::Delete(k) => {
            map.remove(&k);
        }
        WriteOp::DeleteRange(start, end) => remove_range(map, &start, &end),
    }
}

fn remove_range(map: &mut Map, start: &[u8], end: &[u8]) {
    let doomed: Vec<Vec<u8>> = map
        .range::<[u8], _>((Bound::Included(start), Bound::Excluded(end)))
        .map(|(k, _)| k.clone())
        .collect();
    for k in doomed {
        map.remove(&k);
    }
}

/// Data pairs of `map` with user keys in `[start, end)`, at most `limit`.
fn scan_data(map: &Map, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let lower = keys::data_key(start);
    let upper = keys::data_end_key(end);
    if lower >= upper {
        return Ok(Vec::new());
    }
    map.range::<[u8], _>((Bound::Included(&lower[..]), Bound::Excluded(&upper[..])))
        .take(limit)
        .map(|(k, v)| Ok((keys::origin_key(k)?.to_vec(), v.clone())))
        .collect()
}

fn get_message<M: protobuf::Message>(map: &Map, key: &[u8]) -> Result<Option<M>> {
    map.get(key)
        .map(|bytes| protobuf::Message::parse_from_bytes(bytes).map_err(Into::into))
        .transpose()
}

#[derive(Debug, Default)]
struct Inner {
    /// What readers see. Shared with snapshots; a write after a snapshot
    /// copies the map (copy-on-write).
    live: Arc<Map>,
    /// What survives [`MemKvEngine::crash`].
    durable: Map,
    /// Writes since the last sync, in order (at most
    /// [`MAX_UNSYNCED_OPS`]).
    pending: VecDeque<WriteOp>,
}

/// The most unsynced write operations a [`MemKvEngine`] keeps losable.
/// Beyond it the oldest half is made durable, as a real engine's background
/// flush would: a crash still loses the newest unsynced writes (at least
/// the last `MAX_UNSYNCED_OPS / 2`), and memory stays bounded under a
/// workload that never syncs.
pub const MAX_UNSYNCED_OPS: usize = 65_536;

impl Inner {
    fn make_durable(&mut self) {
        let n = self.pending.len();
        self.make_oldest_durable(n);
    }

    fn make_oldest_durable(&mut self, n: usize) {
        for op in self.pending.drain(..n) {
            apply_owned(&mut self.durable, op);
        }
    }
}

/// An in-memory [`KvEngine`] **for tests and simulation**, over a `BTreeMap`;
/// nothing is written to disk.
///
/// It models durability so a simulation can crash a store:
/// [`crash`](MemKvEngine::crash) discards every write made with
/// `sync = false` since the last `write(.., sync = true)` or
/// [`sync`](KvEngine::sync); synced writes (and everything before them) are
/// kept. Snapshots are O(1); the first write after a snapshot copies the map.
///
/// Unsynced writes are kept in an in-memory log until the next sync; past
/// [`MAX_UNSYNCED_OPS`] the oldest of them become durable on their own, as
/// a real engine may persist unsynced data at any time. A crash loses only
/// what is still in the log.
///
/// Clones share the same storage.
///
/// # Examples
///
/// ```
/// use engine::{KvEngine, KvWriteBatch, MemKvEngine};
///
/// let kv = MemKvEngine::new();
/// let mut wb = kv.write_batch();
/// wb.put(b"k1", b"v1");
/// kv.write(&mut wb, true).unwrap();
/// wb.put(b"k2", b"v2");
/// kv.write(&mut wb, false).unwrap();
///
/// kv.crash(); // the unsynced write is lost
/// assert_eq!(kv.get(b"k1").unwrap(), Some(b"v1".to_vec()));
/// assert_eq!(kv.get(b"k2").unwrap(), None);
/// ```
#[derive(Clone, Debug, Default)]
pub struct MemKvEngine {
    inner: Arc<RwLock<Inner>>,
}

impl MemKvEngine {
    /// An empty engine.
    pub fn new() -> Self {
        Self::default()
    }

    /// Simulates a crash and restart: every write that was not made durable
    /// is discarded; synced writes are kept. Existing snapshots are unchanged.
    pub fn crash(&self) {
        let mut inner = self.write_lock();
        inner.pending.clear();
        inner.live = Arc::new(inner.durable.clone());
    }

    fn read_lock(&self) -> RwLockReadGuard<'_, Inner> {
        // Updates cannot fail half-way, so a poisoned lock is still consistent.
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_lock(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }
}

impl KvEngine for MemKvEngine {
    type WriteBatch = WriteBatch;
    type Snapshot = MemKvSnapshot;

    fn write_batch(&self) -> WriteBatch {
        WriteBatch::default()
    }

    fn write(&self, batch: &mut WriteBatch, sync: bool) -> Result<()> {
        let ops = batch.ops()?;
        let mut inner = self.write_lock();
        let live = Arc::make_mut(&mut inner.live);
        for op in ops {
            apply(live, op);
        }
        // The batch's operations move on (to the durable map or the log of
        // unsynced writes) instead of being copied a second time; the
        // batch keeps its capacity for the next round.
        let ops = batch.drain_ops();
        if sync {
            inner.make_durable();
            // Durable as they are: no need to log them first.
            for op in ops {
                apply_owned(&mut inner.durable, op);
            }
        } else {
            inner.pending.extend(ops);
            if inner.pending.len() > MAX_UNSYNCED_OPS {
                let excess = inner.pending.len() - MAX_UNSYNCED_OPS / 2;
                inner.make_oldest_durable(excess);
            }
        }
        drop(inner);
        crate::KvWriteBatch::clear(batch);
        Ok(())
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.read_lock().live.get(&keys::data_key(key)).cloned())
    }

    fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        scan_data(&self.read_lock().live, start, end, limit)
    }

    fn snapshot(&self) -> MemKvSnapshot {
        MemKvSnapshot {
            map: Arc::clone(&self.read_lock().live),
        }
    }

    fn get_apply_state(&self, region_id: u64) -> Result<Option<RaftApplyState>> {
        get_message(&self.read_lock().live, &keys::apply_state_key(region_id))
    }

    fn get_region_state(&self, region_id: u64) -> Result<Option<RegionLocalState>> {
        get_message(&self.read_lock().live, &keys::region_state_key(region_id))
    }

    fn region_states(&self) -> Result<Vec<RegionLocalState>> {
        let inner = self.read_lock();
        let (start, end) = keys::local_kind_range(keys::REGION_STATE_KIND);
        inner
            .live
            .range(start..end)
            .map(|(_, v)| protobuf::Message::parse_from_bytes(v).map_err(Into::into))
            .collect()
    }

    fn region_and_apply_states(&self) -> Result<Vec<(RegionLocalState, Option<RaftApplyState>)>> {
        let inner = self.read_lock();
        let (start, end) = keys::local_kind_range(keys::REGION_STATE_KIND);
        let regions = inner.live.range(start..end).map(Ok);
        let (start, end) = keys::local_kind_range(keys::APPLY_STATE_KIND);
        let applies = inner.live.range(start..end).map(Ok);
        crate::kv::join_region_and_apply_states(regions, applies)
    }

    fn sync(&self) -> Result<()> {
        self.write_lock().make_durable();
        Ok(())
    }
}

/// A point-in-time view of a [`MemKvEngine`].
#[derive(Clone, Debug)]
pub struct MemKvSnapshot {
    map: Arc<Map>,
}

impl KvSnapshot for MemKvSnapshot {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.map.get(&keys::data_key(key)).cloned())
    }

    fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        scan_data(&self.map, start, end, limit)
    }

    fn get_raw(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.map.get(key).cloned())
    }

    fn scan_raw(&self, start: &[u8], end: &[u8], f: &mut RawVisitor<'_>) -> Result<()> {
        if start >= end {
            return Ok(());
        }
        for (k, v) in self
            .map
            .range::<[u8], _>((Bound::Included(start), Bound::Excluded(end)))
        {
            if !f(k, v)? {
                break;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod unsynced_tests {
    use super::*;
    use crate::KvWriteBatch;

    fn put(kv: &MemKvEngine, i: usize, sync: bool) {
        let mut wb = kv.write_batch();
        wb.put(format!("k{i:08}").as_bytes(), b"v");
        kv.write(&mut wb, sync).unwrap();
    }

    fn has(kv: &MemKvEngine, i: usize) -> bool {
        kv.get(format!("k{i:08}").as_bytes()).unwrap().is_some()
    }

    #[test]
    fn the_unsynced_log_is_bounded_and_a_crash_loses_only_its_tail() {
        let kv = MemKvEngine::new();
        let n = MAX_UNSYNCED_OPS * 2 + 10;
        for i in 0..n {
            put(&kv, i, false);
            assert!(kv.read_lock().pending.len() <= MAX_UNSYNCED_OPS);
        }
        kv.crash();
        // The oldest writes were made durable on the way, the newest were
        // still losable and are gone; what survives is a prefix.
        assert!(has(&kv, 0));
        assert!(!has(&kv, n - 1));
        let survivors = (0..n).filter(|&i| has(&kv, i)).count();
        assert!(survivors >= n - MAX_UNSYNCED_OPS, "{survivors}");
        assert!(survivors <= n - MAX_UNSYNCED_OPS / 2, "{survivors}");
        assert!((0..survivors).all(|i| has(&kv, i)));
    }

    #[test]
    fn a_synced_write_makes_everything_before_it_durable() {
        let kv = MemKvEngine::new();
        put(&kv, 1, false);
        put(&kv, 2, true);
        put(&kv, 3, false);
        kv.crash();
        assert!(has(&kv, 1) && has(&kv, 2) && !has(&kv, 3));
        assert!(kv.read_lock().pending.is_empty());
    }
}
