//! [`MemKvEngine`]: an in-memory KV engine for tests and simulation.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use kvproto_lite::raft_serverpb::{RaftApplyState, RegionLocalState};

use crate::write_batch::WriteOp;
use crate::{keys, KvEngine, KvSnapshot, Result, WriteBatch};

type Map = BTreeMap<Vec<u8>, Vec<u8>>;

fn apply(map: &mut Map, op: &WriteOp) {
    match op {
        WriteOp::Put(k, v) => {
            map.insert(k.clone(), v.clone());
        }
        WriteOp::Delete(k) => {
            map.remove(k);
        }
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
    /// Writes since the last sync, in order.
    pending: Vec<WriteOp>,
}

impl Inner {
    fn make_durable(&mut self) {
        for op in std::mem::take(&mut self.pending) {
            match op {
                WriteOp::Put(k, v) => {
                    self.durable.insert(k, v);
                }
                WriteOp::Delete(k) => {
                    self.durable.remove(&k);
                }
            }
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
/// Unsynced writes are also kept in an in-memory log until the next sync,
/// so a workload that never syncs makes that log grow.
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
        inner.pending.extend(ops.iter().cloned());
        if sync {
            inner.make_durable();
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
}
