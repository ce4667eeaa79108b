//! [`FjallKvEngine`]: a durable KV engine over the
//! [fjall](https://crates.io/crates/fjall) 3 LSM tree.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode, Readable};
use kvproto_lite::raft_serverpb::{RaftApplyState, RegionLocalState};

use crate::open::{guarded_open, prepare_dir, IfMissing};
use crate::write_batch::WriteOp;
use crate::{keys, KvEngine, KvSnapshot, KvWriteBatch, RawVisitor, Result, WriteBatch};

const ENGINE_NAME: &str = "fjall";

/// The one keyspace holding data and metadata, kept apart by key prefix
/// (see [`keys`](crate::keys)).
const KEYSPACE: &str = "kv";

/// A durable [`KvEngine`] over fjall 3.
///
/// - One keyspace (`"kv"`) holds user data and per-region metadata, kept apart
///   by the prefixes in [`keys`](crate::keys). A single LSM tree means one
///   memtable and one journal entry per batch, and data and apply state are
///   trivially in the same atomic batch.
/// - [`write`](KvEngine::write) with `sync = true` commits with
///   `PersistMode::SyncData` (journal `fdatasync` before returning); with
///   `sync = false`, `PersistMode::Buffer` (handed to the OS: survives a
///   process crash, not a power loss). [`sync`](KvEngine::sync) persists
///   the journal with `PersistMode::SyncAll`. fjall's own default for batches
///   is `Buffer`, which is **not** durable: this engine never relies on it
///   where durability is promised.
/// - Recovery replays the journal; a torn, unsynced tail batch is dropped
///   whole, so a batch is never half-applied.
///
/// Clones share the same database.
///
/// # Examples
///
/// ```
/// use engine::{FjallKvEngine, KvEngine, KvWriteBatch};
///
/// let dir = tempfile::tempdir().unwrap();
/// let kv = FjallKvEngine::open(dir.path()).unwrap();
/// let mut wb = kv.write_batch();
/// wb.put(b"k", b"v");
/// kv.write(&mut wb, true).unwrap();
/// drop(kv);
///
/// let kv = FjallKvEngine::open(dir.path()).unwrap();
/// assert_eq!(kv.get(b"k").unwrap(), Some(b"v".to_vec()));
/// ```
#[derive(Clone)]
pub struct FjallKvEngine {
    db: Database,
    kv: Keyspace,
    path: Arc<PathBuf>,
}

impl std::fmt::Debug for FjallKvEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FjallKvEngine")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl FjallKvEngine {
    /// Opens (or creates) the database in directory `dir`, recovering every
    /// write made before.
    ///
    /// # Errors
    ///
    /// [`Error::Open`](crate::Error::Open) if `dir` is not a usable
    /// directory, holds corrupted files, or is locked by another open engine.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        Self::open_inner(dir.as_ref(), IfMissing::Create)
    }

    /// Like [`open`](Self::open), but fails when `dir` does not exist (for a
    /// restart, where a missing directory means lost data).
    ///
    /// # Errors
    ///
    /// [`Error::DirectoryNotFound`](crate::Error::DirectoryNotFound) if `dir`
    /// does not exist, otherwise as [`open`](Self::open).
    pub fn open_existing(dir: impl AsRef<Path>) -> Result<Self> {
        Self::open_inner(dir.as_ref(), IfMissing::Fail)
    }

    fn open_inner(dir: &Path, if_missing: IfMissing) -> Result<Self> {
        prepare_dir(ENGINE_NAME, dir, if_missing)?;
        let (db, kv) = guarded_open(ENGINE_NAME, dir, || {
            let db = Database::builder(dir).open()?;
            let kv = db.keyspace(KEYSPACE, KeyspaceCreateOptions::default)?;
            Ok((db, kv))
        })?;
        Ok(FjallKvEngine {
            db,
            kv,
            path: Arc::new(dir.to_path_buf()),
        })
    }

    /// The database directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn get_message<M: protobuf::Message>(&self, key: &[u8]) -> Result<Option<M>> {
        match self.kv.get(key)? {
            Some(bytes) => Ok(Some(protobuf::Message::parse_from_bytes(&bytes)?)),
            None => Ok(None),
        }
    }
}

/// Data pairs of an iterator over encoded keys, with the prefix removed.
fn collect_data(iter: fjall::Iter, limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    iter.take(limit)
        .map(|guard| {
            let (k, v) = guard.into_inner()?;
            Ok((keys::origin_key(&k)?.to_vec(), v.to_vec()))
        })
        .collect()
}

/// The encoded `[lower, upper)` of a user-key scan, `None` if it is empty.
fn data_range(start: &[u8], end: &[u8], limit: usize) -> Option<(Vec<u8>, Vec<u8>)> {
    let lower = keys::data_key(start);
    let upper = keys::data_end_key(end);
    (limit > 0 && lower < upper).then_some((lower, upper))
}

impl KvEngine for FjallKvEngine {
    type WriteBatch = WriteBatch;
    type Snapshot = FjallKvSnapshot;

    fn write_batch(&self) -> WriteBatch {
        WriteBatch::default()
    }

    fn write(&self, batch: &mut WriteBatch, sync: bool) -> Result<()> {
        let ops = batch.ops()?;
        if ops.is_empty() {
            batch.clear(); // drops save points, as after any write
            return if sync { self.sync() } else { Ok(()) };
        }
        let mode = if sync {
            PersistMode::SyncData
        } else {
            PersistMode::Buffer
        };
        // fjall has no range delete in a batch: a range delete becomes the
        // deletes of the keys stored in the range now (and put earlier in
        // the batch).
        let ops = crate::write_batch::expand_ranges(ops, &mut |start, end| {
            let mut keys = Vec::new();
            for guard in self.kv.range(start.to_vec()..end.to_vec()) {
                keys.push(guard.key()?.to_vec());
            }
            Ok(keys)
        })?;
        let mut fb = fjall::OwnedWriteBatch::with_capacity(self.db.clone(), ops.len())
            .durability(Some(mode));
        for op in ops.iter() {
            match op {
                WriteOp::Put(k, v) => fb.insert(&self.kv, k.as_slice(), v.as_slice()),
                WriteOp::Delete(k) => fb.remove(&self.kv, k.as_slice()),
                WriteOp::DeleteRange(..) => {
                    return Err(crate::Error::Corruption(
                        "a range delete was left in an expanded batch".to_owned(),
                    ))
                }
            }
        }
        fb.commit()?;
        batch.clear();
        Ok(())
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.kv.get(keys::data_key(key))?.map(|v| v.to_vec()))
    }

    fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        match data_range(start, end, limit) {
            Some((lower, upper)) => collect_data(self.kv.range(lower..upper), limit),
            None => Ok(Vec::new()),
        }
    }

    fn snapshot(&self) -> FjallKvSnapshot {
        FjallKvSnapshot {
            snapshot: self.db.snapshot(),
            kv: self.kv.clone(),
        }
    }

    fn get_apply_state(&self, region_id: u64) -> Result<Option<RaftApplyState>> {
        self.get_message(&keys::apply_state_key(region_id))
    }

    fn get_region_state(&self, region_id: u64) -> Result<Option<RegionLocalState>> {
        self.get_message(&keys::region_state_key(region_id))
    }

    fn region_states(&self) -> Result<Vec<RegionLocalState>> {
        let (start, end) = keys::local_kind_range(keys::REGION_STATE_KIND);
        self.kv
            .range(start..end)
            .map(|guard| {
                let (_, v) = guard.into_inner()?;
                Ok(protobuf::Message::parse_from_bytes(&v)?)
            })
            .collect()
    }

    fn region_and_apply_states(&self) -> Result<Vec<(RegionLocalState, Option<RaftApplyState>)>> {
        let (start, end) = keys::local_kind_range(keys::REGION_STATE_KIND);
        let regions = self.kv.range(start..end).map(|g| Ok(g.into_inner()?));
        let (start, end) = keys::local_kind_range(keys::APPLY_STATE_KIND);
        let applies = self.kv.range(start..end).map(|g| Ok(g.into_inner()?));
        crate::kv::join_region_and_apply_states(regions, applies)
    }

    fn sync(&self) -> Result<()> {
        Ok(self.db.persist(PersistMode::SyncAll)?)
    }
}

/// A point-in-time view of a [`FjallKvEngine`] (an MVCC snapshot: it pins
/// old versions, so drop it when done).
pub struct FjallKvSnapshot {
    snapshot: fjall::Snapshot,
    kv: Keyspace,
}

impl std::fmt::Debug for FjallKvSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FjallKvSnapshot").finish_non_exhaustive()
    }
}

impl KvSnapshot for FjallKvSnapshot {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self
            .snapshot
            .get(&self.kv, keys::data_key(key))?
            .map(|v| v.to_vec()))
    }

    fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        match data_range(start, end, limit) {
            Some((lower, upper)) => {
                collect_data(self.snapshot.range(&self.kv, lower..upper), limit)
            }
            None => Ok(Vec::new()),
        }
    }

    fn get_raw(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.snapshot.get(&self.kv, key)?.map(|v| v.to_vec()))
    }

    fn scan_raw(&self, start: &[u8], end: &[u8], f: &mut RawVisitor<'_>) -> Result<()> {
        if start >= end {
            return Ok(());
        }
        for guard in self.snapshot.range(&self.kv, start.to_vec()..end.to_vec()) {
            let (k, v) = guard.into_inner()?;
            if !f(&k, &v)? {
                break;
            }
        }
        Ok(())
    }
}
